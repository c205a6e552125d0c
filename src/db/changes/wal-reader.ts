import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import postgres from 'postgres';
import { sql } from 'pg-sql2';
import { connect, type Sql } from '../connect.ts';
import { runSql } from '../run.ts';
import { appendTransactions, type DecodedChange, type DecodedTransaction } from './wal-append.ts';
import { CHANNEL, LEADER_LOCK, LOCK_CLASS, PUBLICATION, SWITCH_PREFIX } from './schema.ts';
import { ensureSlot } from './wal-install.ts';

export interface WalReaderOptions {
  url: string;
  /** Pool for appends and slot checks (the feed's). */
  sql: Sql;
  slot: string;
  /** Lines for the operator's log: leadership, resyncs, stream errors. */
  log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
  /** How often a follower tries to become the leader (default 1 s). */
  retryMs?: number;
  /** Most rows per append (whole transactions; default 10 000). */
  batchRows?: number;
  /**
   * Decoded rows of complete transactions held at most before the stream is paused (default five
   * appends' worth): a leader far behind reads the slot only as fast as the log takes it.
   */
  maxQueuedRows?: number;
}

export interface WalReader {
  /** Whether this process holds the leader lock and streams the slot. */
  leading(): boolean;
  close(): Promise<void>;
}

const IDENTITY = (text: unknown): unknown => text;
/** How often an idle leader asks the server for a keepalive (to confirm the slot up to it). */
const PING_MS = 200;

/**
 * The WAL reader (README, "WAL capture"): every gateway runs one; the one that holds the session
 * advisory lock LEADER_LOCK streams the slot and appends each decoded transaction to the log,
 * stamped; the others try for the lock every `retryMs`, so one takes over within about that long
 * after the leader's connection ends.
 */
export function startWalReader(options: WalReaderOptions): WalReader {
  const retryMs = options.retryMs ?? 1000;
  const batchRows = options.batchRows ?? 10_000;
  const maxQueuedRows = options.maxQueuedRows ?? 5 * batchRows;
  const { log, slot, sql: db } = options;
  let closed = false;
  let isLeader = false;
  let stopSession: (() => void) | null = null;
  let wakeSleep: (() => void) | null = null;

  // The lock lives on this connection, held as long as the connection is, and nothing else runs on
  // it. (Appends run on the feed's pool: an append by a leader that just lost the lock is still
  // exact, since appends serialize on the stamping lock and skip what the progress row covers.)
  // A connection that ended is replaced by a new
  // pool rather than left to postgres.js's reconnect (a query issued into that reconnect was seen
  // to wait for the connect timeout).
  let lockLost = false;
  let lockDead = false;
  const lockPool = (): Sql => {
    const pool: Sql = connect(options.url, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      connection: { application_name: 'rowgate-wal-leader' },
      onclose: () => {
        if (pool !== lockSql) return;
        lockDead = true;
        if (!isLeader) return;
        lockLost = true;
        stopSession?.();
      },
    } as postgres.Options<Record<string, postgres.PostgresType>>);
    return pool;
  };
  let lockSql = lockPool();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeSleep = null;
        resolve();
      }
      wakeSleep = done;
    });

  const loop = async (): Promise<void> => {
    let failures = 0;
    while (!closed) {
      try {
        if (lockDead && !isLeader) {
          void lockSql.end({ timeout: 1 });
          lockSql = lockPool();
          lockDead = false;
        }
        if (!isLeader) {
          const [row] = await runSql<{ ok: boolean }>(lockSql, sql`SELECT pg_try_advisory_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(LEADER_LOCK))}::text::int4) AS ok`);
          if (row?.ok !== true) {
            await sleep(retryMs);
            continue;
          }
          isLeader = true;
          lockLost = false;
          log('info', 'WAL reader: leading (streaming the slot)', { slot });
        }
        await ensureReadableSlot();
        if (closed) break;
        await stream();
        failures = 0;
      } catch (err) {
        if (closed) break;
        failures++;
        if (failures === 1 || failures % 30 === 0) log('error', 'WAL reader: stream failed, retrying', { slot, err: String(err), code: (err as { code?: string }).code });
        await sleep(Math.min(100 * 2 ** Math.min(failures, 5), 2000));
      }
      if (lockLost) {
        isLeader = false;
        log('warn', 'WAL reader: lost the leader lock (its connection ended); following', { slot });
      }
    }
  };

  /**
   * A missing slot, or one PostgreSQL invalidated (`wal_status = 'lost'`: max_slot_wal_keep_size
   * exceeded), has lost changes nobody can read any more. It is recreated, and a RESYNC entry is
   * appended after everything already in the log: subscribers re-fetch instead of missing a gap.
   */
  async function ensureReadableSlot(): Promise<void> {
    const [state] = await runSql<{ installed: boolean; wal_status: string | null; exists: boolean }>(
      db,
      sql`SELECT to_regclass('rowgate.wal_progress') IS NOT NULL AS installed,
                 (SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)}) AS wal_status,
                 EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)}) AS exists`,
    );
    if (!state?.installed) throw new Error('WAL capture is not installed (rowgate.wal_progress is missing); run `rowgate capture`');
    if (state.exists && state.wal_status !== 'lost') return;
    log('error', state.exists ? 'WAL reader: the replication slot was invalidated (wal_status lost); recreating it, subscribers get a resync' : 'WAL reader: the replication slot is missing; recreating it, subscribers get a resync', { slot });
    if (state.exists) await runSql(db, sql`SELECT pg_drop_replication_slot(${sql.value(slot)})`);
    await ensureSlot(db, slot);
    // After the new slot: every transaction it does not decode committed before this entry.
    await db.begin(async (tx) => {
      const run = (q: Parameters<typeof runSql>[1]) => runSql(tx as unknown as Sql, q);
      await run(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, 1)`);
      await run(sql`SELECT rowgate.stamp(1000000)`);
      await run(sql`INSERT INTO rowgate.change_log (tbl, op, key, pos) SELECT '', 'RESYNC', '{}', COALESCE(max(pos), 0) + 1 FROM rowgate.change_log`);
      await run(sql`UPDATE rowgate.wal_progress SET lsn = '0/0', awaiting = NULL WHERE slot = ${sql.value(slot)}`);
      await run(sql`SELECT pg_notify(${sql.value(CHANNEL)}, '')`);
    });
  }

  /** One replication session: resolves or rejects when it ends. */
  async function stream(): Promise<void> {
    const service = new LogicalReplicationService(
      { connectionString: options.url, application_name: 'rowgate-wal-reader' },
      // The library would confirm every received LSN (and, on a 10 s timer, the last one) unless
      // told not to: the slot is confirmed here only up to what the log durably holds.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true });

    let current: DecodedTransaction | null = null;
    const queue: DecodedTransaction[] = [];
    let queuedRows = 0;
    // Backpressure: with the library's flow control off (see README), nothing stops the server
    // sending faster than appends go. Past maxQueuedRows the socket is paused (as the library's own
    // flow control does) and resumed once an append's worth is left. Only complete transactions
    // count: the one being decoded must be read to its end before anything of it can be appended.
    let paused = false;
    let saidBehind = false;
    const socket = () => (service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } })._connection?.stream;
    const pressure = () => {
      if (!paused && queuedRows > maxQueuedRows) {
        paused = true;
        socket()?.pause();
        if (!saidBehind) log('info', 'WAL reader: far behind; reading the slot only as fast as the log takes it', { slot, queuedRows });
        saidBehind = true;
      } else if (paused && queuedRows <= batchRows) {
        paused = false;
        socket()?.resume();
      }
    };
    let appending = false;
    let durable = 0n; // end of the last transaction the log holds (or skipped as held there)
    let failure: unknown = null;
    let ended = false;

    // Standby status: acknowledge() sends lsn + 1 as "flushed up to", so pass one byte less.
    let confirmed = 0n; // the highest position reported to the server this session
    const confirm = (lsn: bigint, ping = false) => {
      if (lsn > confirmed) confirmed = lsn;
      if (lsn > 0n && !ended) void service.acknowledge(formatLsn(lsn - 1n), ping);
    };
    const end = (err: unknown) => {
      if (ended) return;
      ended = true;
      failure ??= err;
      void service.stop();
    };
    stopSession = () => end(new Error('the leader lock connection ended'));

    const drain = async (): Promise<void> => {
      if (appending) return;
      appending = true;
      try {
        while (queue.length && !ended) {
          let rows = 0;
          let take = 0;
          while (take < queue.length && (take === 0 || rows + queue[take]!.changes.length <= batchRows)) rows += queue[take++]!.changes.length;
          const txs = queue.slice(0, take);
          const result = await appendTransactions(db, slot, txs);
          if (result.held) {
            // Trigger-written rows of a switch wait for an older transaction: try again shortly.
            await new Promise((r) => setTimeout(r, 50));
            continue;
          }
          queue.splice(0, take);
          for (const t of txs) queuedRows -= weight(t);
          pressure();
          durable = txs[txs.length - 1]!.end;
          // With nothing else decoded, ask for a keepalive at once: its position (past our own
          // append) is then confirmed too, and a poll() waiting on the slot returns sooner.
          confirm(durable, queue.length === take && current === null);
        }
      } catch (err) {
        end(err);
      } finally {
        appending = false;
      }
    };

    service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
      try {
        switch (msg.tag) {
          case 'relation':
            // Values stay text: PostgreSQL builds the images from them (wal-append.ts).
            for (const column of msg.columns) column.parser = IDENTITY;
            return;
          case 'begin':
            current = { end: 0n, commitMicros: BigInt(msg.commitTime as bigint), xid: msg.xid, changes: [], markers: [] };
            return;
          case 'insert':
            current?.changes.push(change(msg.relation, 'INSERT', null, msg.new));
            return;
          case 'update': {
            const c = change(msg.relation, 'UPDATE', msg.old, msg.new);
            // As the trigger: an UPDATE whose row text is unchanged is no change.
            if (c.old !== c.new) current?.changes.push(c);
            return;
          }
          case 'delete':
            current?.changes.push(change(msg.relation, 'DELETE', msg.old, null));
            return;
          case 'truncate':
            for (const r of msg.relations) current?.changes.push({ schema: r.schema, table: r.name, op: 'TRUNCATE', old: null, new: null });
            return;
          case 'message':
            if (msg.prefix === SWITCH_PREFIX) current?.markers.push(Buffer.from(msg.content).toString('utf8'));
            return;
          case 'commit':
            if (!current) return;
            current.end = parseLsn(msg.commitEndLsn);
            queue.push(current);
            queuedRows += weight(current);
            current = null;
            pressure();
            void drain();
            return;
          default:
            return;
        }
      } catch (err) {
        end(err);
      }
    });
    // Keepalives: with nothing decoded and waiting, everything the server sent is in the log (or
    // not ours), so the slot may move up to the keepalive's position; otherwise up to the log.
    const idle = () => current === null && queue.length === 0 && !appending;
    service.on('heartbeat', (lsn: string) => {
      confirm(idle() ? parseLsn(lsn) : durable);
    });
    // The server sends keepalives on its own only when it catches up with the WAL (or every
    // wal_sender_timeout / 2): with other databases writing it may not catch up for long, and the
    // slot (and a poll() waiting on it) would stay behind. So while idle, ask for one regularly;
    // its answer is confirmed by the handler above.
    // (Before anything was confirmed this session, position 1: below the slot's, so it moves nothing.)
    const pinger = setInterval(() => {
      if (idle()) confirm(confirmed > 0n ? confirmed : 1n, true);
    }, PING_MS);
    service.on('error', (err: unknown) => end(err));

    try {
      if (lockLost || closed) return;
      await service.subscribe(plugin, slot);
    } catch (err) {
      failure ??= err;
    } finally {
      clearInterval(pinger);
      ended = true;
      stopSession = null;
      await service.stop().catch(() => {});
    }
    if (failure && !closed) throw failure;
  }

  const running = loop();

  return {
    leading: () => isLeader,
    async close() {
      closed = true;
      stopSession?.();
      wakeSleep?.();
      // Ending the pool also ends a lock attempt in flight.
      await lockSql.end({ timeout: 1 });
      await running.catch(() => {});
    },
  };
}

/** What a queued transaction counts for backpressure: its rows, and at least one (a queue of empty ones grows too). */
const weight = (t: DecodedTransaction) => Math.max(1, t.changes.length);

function change(relation: Pgoutput.MessageRelation, op: DecodedChange['op'], old: Record<string, unknown> | null, next: Record<string, unknown> | null): DecodedChange {
  return { schema: relation.schema, table: relation.name, op, old: old && rowText(relation, old), new: next && rowText(relation, next) };
}

/**
 * A tuple as JSON text of each column's text by name (null for NULL), in the relation's column
 * order; wal-append.ts builds the row from it in the table's own column order, so a column the
 * relation leaves out (a virtual generated column) is NULL, as in the trigger's image.
 */
export function rowText(relation: Pgoutput.MessageRelation, tuple: Record<string, unknown>): string {
  const fields: Record<string, string | null> = {};
  for (const c of relation.columns) {
    const v = tuple[c.name];
    fields[c.name] = v === null || v === undefined ? null : String(v);
  }
  return JSON.stringify(fields);
}

export function parseLsn(lsn: string | null): bigint {
  if (!lsn) return 0n;
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
