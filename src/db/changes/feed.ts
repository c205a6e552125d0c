import postgres from 'postgres';
import { sql as pgsql } from 'pg-sql2';
import { connect, type Sql } from '../connect.ts';
import { runSql } from '../run.ts';
import { ChangeError } from './errors.ts';
import { captureInstalled, cleanup, hasUnstamped, readAfter, readLog, stamp, topPosition, type Change, type LoggedChange } from './log.ts';
import { CHANNEL } from './schema.ts';
import { captureStatus, type WalStatus } from './wal-install.ts';
import { startWalReader, type WalReader } from './wal-reader.ts';
import { walConfirmed, walLogSnapshot, type LogSnapshot } from './wal-snapshot.ts';

export interface ChangeBatch {
  /** The changes of one stamping, in position order (never empty). */
  changes: Change[];
  /** Position of the last change: the feed's head once this batch is delivered. */
  position: string;
  /**
   * How old the batch's newest change was when the feed read it (seconds since its writing
   * transaction began, on the database's clock): the change feed's lag, for the metrics.
   */
  lagSeconds: number;
}

export type ChangeListener = (batch: ChangeBatch) => void | Promise<void>;

export interface ChangeFeedOptions {
  /** Connection string for the feed's own LISTEN connection (the same database as `sql`). */
  url: string;
  /** Pool for stamping and reading; the feed does not close it. */
  sql: Sql;
  /** The data schema (config `database.schema`); informational, the log is in `rowgate`. */
  schema: string;
  /** Stamped changes older than this are deleted (config `changeLog.retentionHours`). */
  retentionHours: number;
  /** Safety-net interval: stamp and read even without a notification (default 500 ms). */
  pollMs?: number;
  /** How often retention runs (default 5 minutes). */
  cleanupMs?: number;
  /** Rows per stamping and per read (default 10 000). */
  batchSize?: number;
  /** Where errors of listeners, stamping and cleanup go (default: console.error). */
  onError?: (err: unknown) => void;
  /**
   * WAL capture's operator lines (leadership, resyncs, stream errors); default: stderr. The feed
   * runs a WAL reader (wal-reader.ts) whenever the database has WAL capture installed.
   */
  onLog?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
  /** How often a WAL reader that is not the leader tries to become it (default 1 s). */
  leaderRetryMs?: number;
}

/** What `/readyz` and `rowgate capture --status` report of the capture in use. */
export interface CaptureInfo extends WalStatus {
  /** Whether this feed's WAL reader is the one streaming the slot (false in trigger mode). */
  leading: boolean;
}

export interface ChangeFeed {
  /** Calls `listener` with every batch delivered from now on; returns the unsubscribe function. */
  onChanges(listener: ChangeListener): () => void;
  /** Calls `listener` when `ready()` changes; returns the unsubscribe function. */
  onStatus(listener: (ready: boolean) => void): () => void;
  /** Changes after `position`, up to `head()` at the time of the call. POSITION_EXPIRED past retention. */
  readAfter(position: string, limit: number): Promise<Change[]>;
  /** Position of the last delivered change. */
  head(): string;
  /** False while the LISTEN connection or the database is down. */
  ready(): boolean;
  /** The oldest position retention kept, as of the last cleanup (null before the first one). */
  oldestRetained(): string | null;
  /** Stamps what can be stamped now and delivers it; resolves when delivered (tests, shutdown). */
  poll(): Promise<void>;
  /** Runs retention now. */
  cleanup(): Promise<{ deleted: number; oldest: string | null }>;
  /** The capture in use ('wal' or 'triggers'), as the feed found it at start. */
  mode: 'wal' | 'triggers';
  /**
   * WAL capture: runs a change-stream evaluation in a snapshot the log explains (wal-snapshot.ts).
   * Undefined with triggers, where every snapshot's log holds every commit it sees.
   */
  logSnapshot?: LogSnapshot;
  /** The capture's state now: mode, slot, its confirmed position and retained WAL, leadership. */
  capture(): Promise<CaptureInfo>;
  close(): Promise<void>;
}

const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 5_000;

/**
 * Starts delivering committed changes from the change log (README: "The feed"). The head starts
 * at the newest stamped position, so a new feed does not replay history.
 */
export async function startChangeFeed(options: ChangeFeedOptions): Promise<ChangeFeed> {
  const { sql: db, retentionHours } = options;
  const pollMs = options.pollMs ?? 500;
  const cleanupMs = options.cleanupMs ?? 5 * 60_000;
  const batchSize = options.batchSize ?? 10_000;
  const onError = options.onError ?? ((err: unknown) => console.error('rowgate change feed:', err));

  if (!(await captureInstalled(db))) {
    throw new ChangeError('CAPTURE_NOT_INSTALLED', 'change capture is not installed in this database; run `rowgate capture` first');
  }
  const installed = await captureStatus(db);
  const mode = installed.mode === 'wal' ? 'wal' : 'triggers';
  const onLog = options.onLog ?? ((level, message, fields) => console.error(`rowgate ${level}: ${message}`, fields ?? ''));
  // Every gateway runs a reader; the leader lock lets one of them stream at a time.
  const reader: WalReader | null =
    mode === 'wal' ? startWalReader({ url: options.url, sql: db, slot: installed.slot, log: onLog, ...(options.leaderRetryMs ? { retryMs: options.leaderRetryMs } : {}) }) : null;

  const listeners = new Set<ChangeListener>();
  const statusListeners = new Set<(ready: boolean) => void>();
  let closed = false;
  let started = false; // set once the pump exists; a wake-up before that is covered by the first pump
  let listening = false;
  let databaseUp = true;
  let lastReady = false;
  let oldest: string | null = null;

  const emitStatus = (): void => {
    const now = listening && databaseUp && !closed;
    if (now === lastReady) return;
    lastReady = now;
    for (const l of statusListeners) {
      try {
        l(now);
      } catch (err) {
        onError(err);
      }
    }
  };

  // The LISTEN connection is a pool of one of our own rather than `sql.listen`: that one
  // re-listens after a drop but says nothing while it is down, and gives up when its first
  // attempt fails. Here a drop makes the feed not ready, and every successful LISTEN is followed
  // by a catch-up read, since notifications sent while we were away are lost.
  let reconnectDelay = RECONNECT_MIN_MS;
  let reconnectTimer: NodeJS.Timeout | null = null;
  const listenOptions = {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    connection: { application_name: 'rowgate-change-feed' },
    onnotify: () => wake(),
    onclose: () => {
      if (closed) return;
      listening = false;
      emitStatus();
      scheduleListen();
    },
  };
  const listenSql = connect(options.url, listenOptions as postgres.Options<Record<string, postgres.PostgresType>>);

  const doListen = async (): Promise<void> => {
    reconnectTimer = null;
    if (closed) return;
    try {
      await listenSql`LISTEN ${listenSql(CHANNEL)}`;
      if (closed) return;
      listening = true;
      reconnectDelay = RECONNECT_MIN_MS;
      emitStatus();
      wake();
    } catch {
      if (closed) return;
      listening = false;
      emitStatus();
      scheduleListen();
    }
  };
  const scheduleListen = (): void => {
    if (closed || reconnectTimer) return;
    const delay = reconnectDelay;
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    reconnectTimer = setTimeout(() => void doListen(), delay);
    reconnectTimer.unref();
  };
  // Subscribe before reading the head: a change stamped in between is then either below the head
  // (history) or announced by a notification still to come.
  let cursor: string;
  try {
    await doListen();
    cursor = await topPosition(db);
  } catch (err) {
    closed = true;
    if (reconnectTimer) clearTimeout(reconnectTimer);
    await listenSql.end({ timeout: 1 });
    await reader?.close();
    throw err;
  }

  // One pump at a time; a wake-up during a pump makes it go round once more.
  let pumping: Promise<void> | null = null;
  let again = false;

  const deliver = async (rows: LoggedChange[]): Promise<void> => {
    const last = rows[rows.length - 1];
    if (!last) return;
    cursor = last.change.position;
    const batch: ChangeBatch = { changes: rows.map((r) => r.change), position: cursor, lagSeconds: last.age };
    const pending: Promise<void>[] = [];
    for (const l of [...listeners]) {
      try {
        const r = l(batch);
        if (r) pending.push(r.catch(onError));
      } catch (err) {
        onError(err);
      }
    }
    // Wait for async listeners: backpressure, so a slow consumer does not make the feed buffer.
    if (pending.length) await Promise.all(pending);
  };

  const readAndDeliver = async (): Promise<void> => {
    for (;;) {
      let rows: LoggedChange[] = await readLog(db, cursor, batchSize);
      if (closed || rows.length === 0) return;
      const full = rows.length === batchSize;
      if (full) {
        // The page may end inside a stamping; leave that stamping for the next read, unless it
        // alone fills the page (a stamping larger than a page is then delivered in pieces).
        const lastBatch = rows[rows.length - 1]!.batch;
        let cut = rows.length;
        while (cut > 0 && rows[cut - 1]!.batch === lastBatch) cut--;
        if (cut > 0) rows = rows.slice(0, cut);
      }
      let start = 0;
      for (let i = 1; i <= rows.length; i++) {
        if (i === rows.length || rows[i]!.batch !== rows[start]!.batch) {
          await deliver(rows.slice(start, i));
          if (closed) return;
          start = i;
        }
      }
      if (!full) return;
    }
  };

  /** Stamps and delivers; returns whether committed changes are left unstamped (held back). */
  const pumpOnce = async (): Promise<boolean> => {
    while ((await stamp(db, batchSize)).stamped === batchSize) {
      if (closed) return false;
    }
    await readAndDeliver();
    return hasUnstamped(db);
  };

  let failures = 0;
  let heldRounds = 0;
  const pump = (): Promise<void> => {
    if (pumping) {
      again = true;
      return pumping;
    }
    pumping = (async () => {
      try {
        do {
          again = false;
          if (closed) return;
          try {
            const held = await pumpOnce();
            heldRounds = held ? heldRounds + 1 : 0;
            failures = 0;
            if (!databaseUp) {
              databaseUp = true;
              emitStatus();
            }
          } catch (err) {
            if (closed) return;
            failures++;
            if (databaseUp) {
              databaseUp = false;
              emitStatus();
            }
            if (failures === 1) onError(err);
            return;
          }
        } while (again);
      } finally {
        pumping = null;
        schedulePoll();
      }
    })();
    return pumping;
  };

  function wake(): void {
    if (started && !closed) void pump();
  }

  // The safety net, re-armed after every pump. Normally every pollMs: a NOTIFY lost while the
  // LISTEN connection was down. Sooner while changes are held back: the old transaction holding
  // them may end without notifying anyone (a rollback, or a write in another database of the
  // cluster), so retry at 20 ms, 40 ms, … up to pollMs. Backing off while the database is down.
  let pollTimer: NodeJS.Timeout | null = null;
  function schedulePoll(): void {
    if (closed) return;
    if (pollTimer) clearTimeout(pollTimer);
    const delay =
      failures > 0
        ? Math.min(RECONNECT_MIN_MS * 2 ** failures, RECONNECT_MAX_MS)
        : heldRounds > 0
          ? Math.min(10 * 2 ** heldRounds, pollMs)
          : pollMs;
    pollTimer = setTimeout(() => void pump(), delay);
    pollTimer.unref();
  }
  schedulePoll();

  const runCleanup = async (): Promise<{ deleted: number; oldest: string | null }> => {
    const result = await cleanup(db, retentionHours);
    oldest = result.oldest;
    return result;
  };
  const cleanupTimer = setInterval(() => {
    runCleanup().catch((err: unknown) => {
      if (databaseUp) onError(err);
    });
  }, cleanupMs);
  cleanupTimer.unref();

  started = true;
  emitStatus();
  wake();

  return {
    onChanges(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    onStatus(listener) {
      statusListeners.add(listener);
      return () => void statusListeners.delete(listener);
    },
    readAfter(position, limit) {
      if (closed) return Promise.reject(new ChangeError('FEED_CLOSED', 'the change feed is closed'));
      return readAfter(db, position, limit, cursor);
    },
    head: () => cursor,
    ready: () => listening && databaseUp && !closed,
    oldestRetained: () => oldest,
    async poll() {
      if (closed) throw new ChangeError('FEED_CLOSED', 'the change feed is closed');
      if (reader) {
        // WAL capture: the caller's commits are in the log once the slot is confirmed up to the WAL written now.
        const [now] = await runSql<{ lsn: string }>(db, pgsql`SELECT pg_current_wal_lsn()::text AS lsn`);
        await walConfirmed(db, installed.slot, now!.lsn, () => closed);
      }
      // A pump already running may have read before the caller's commit: pump() then makes it go
      // round once more before its promise resolves.
      await pump();
    },
    cleanup: runCleanup,
    mode,
    ...(reader ? { logSnapshot: walLogSnapshot(db, installed.slot, () => closed) } : {}),
    async capture() {
      return { ...(await captureStatus(db)), leading: reader?.leading() ?? false };
    },
    async close() {
      if (closed) return;
      closed = true;
      if (pollTimer) clearTimeout(pollTimer);
      if (reconnectTimer) clearTimeout(reconnectTimer);
      clearInterval(cleanupTimer);
      listeners.clear();
      emitStatus();
      statusListeners.clear();
      await pumping?.catch(() => {});
      await reader?.close();
      await listenSql.end({ timeout: 1 });
    },
  };
}
