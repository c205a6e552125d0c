import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, subscribe, type ExecutionResult } from 'graphql';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { capture } from '../src/cli/capture.ts';
import { installCapture, startChangeFeed, type Change } from '../src/db/changes/index.ts';
import { connect, type Sql } from '../src/db/index.ts';
import { collect } from './support/changes.ts';
import { asCaller, startLive, type LiveHarness } from './support/live.ts';
import { useWalDatabase } from './support/wal.ts';

// WAL capture's edges: switching a database that has trigger capture, a replication slot that is
// gone (a resync), and TRUNCATE, which triggers never saw.
const db = useWalDatabase();
const LOCK = 0x726f7767;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE s (id int PRIMARY KEY, w int NOT NULL);
    CREATE TABLE note (id int PRIMARY KEY, title text NOT NULL);`);
});

describe('switching from triggers to WAL', () => {
  it('loses and repeats nothing while writers go on', async () => {
    expect((await installCapture(db.sql, 'public', ['s'], 'triggers')).mode).toBe('triggers');
    const writers = [connect(db.url, { max: 1 }), connect(db.url, { max: 1 })];
    const written: number[][] = [[], []];
    let switched = false;
    const write = async (w: number) => {
      for (let i = 0; !switched || i < 200; i++) {
        const id = (w + 1) * 10_000 + i;
        await writers[w]!`INSERT INTO s VALUES (${id}, ${w})`;
        written[w]!.push(id);
        if (i > 5000) throw new Error('the switch never finished');
      }
    };
    const writing = Promise.all([write(0), write(1)]);
    // The switch itself, while both writers commit: create the slot, drop the triggers, mark it.
    await new Promise((r) => setTimeout(r, 200));
    expect((await installCapture(db.sql, 'public', ['s', 'note'], 'wal')).mode).toBe('wal');
    switched = true;
    await writing;
    for (const w of writers) await w.end();
    const pool = connect(db.url, { max: 3 });
    const feed = await startChangeFeed({ url: db.url, sql: pool, schema: 'public', retentionHours: 24, onLog: () => {} });
    try {
      await feed.poll();
      const log = await db.sql<{ id: number; w: number; pos: string }[]>`SELECT (l.new ->> 'id')::int AS id, (l.new ->> 'w')::int AS w, l.pos::text AS pos FROM rowgate.change_log AS l WHERE l.tbl = 's' ORDER BY l.pos`;
      const all = [...written[0]!, ...written[1]!].sort((x, y) => x - y);
      // Some by the triggers, some from the WAL: every row once, each writer's in commit order.
      expect(log.map((r) => r.id).sort((x, y) => x - y)).toEqual(all);
      for (const w of [0, 1]) expect(log.filter((r) => r.w === w).map((r) => r.id)).toEqual(written[w]);
      const positions = log.map((r) => Number(r.pos));
      expect(positions).toEqual(positions.map((_, i) => positions[0]! + i));
      const [triggers] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE 'rowgate_capture%'`;
      expect(triggers!.n).toBe(0);
    } finally {
      await feed.close();
      await pool.end();
    }
  });
});

describe('a resync, and TRUNCATE', () => {
  let h: LiveHarness;
  let admin: Sql;
  beforeAll(async () => {
    await db.sql`INSERT INTO note VALUES (1, 'one')`;
    h = await startLive(db, { note: { select: 'SELECT * FROM note' } }, { capture: 'wal' });
    // Row 1 is decoded after the feed started: let it pass before anyone subscribes.
    await h.feed.poll();
    admin = db.sql;
  });
  const CHANGES = 'subscription { note_changes { op position row { id } } }';
  /** A change stream's first outcome: its error ends it, thrown from next() (as graphql-ws sends it). */
  const firstOutcome = async (query: string): Promise<{ code: unknown; registered: Promise<void> }> => {
    const result = await subscribe({ schema: h.schema, document: parse(query), contextValue: { caller: asCaller('admin') } });
    if (!(Symbol.asyncIterator in result)) throw new Error(JSON.stringify(result.errors));
    const before = h.live.stats.subscriptions;
    const outcome = result[Symbol.asyncIterator]().next().then(
      (step) => (step.value as ExecutionResult | undefined)?.errors?.[0]?.extensions?.['code'] ?? 'an event',
      (err: { extensions?: Record<string, unknown> }) => err.extensions?.['code'],
    );
    // It starts on the first next(): wait until the engine has it.
    const registered = (async () => {
      while (h.live.stats.subscriptions === before) await new Promise((r) => setTimeout(r, 10));
    })();
    await registered;
    return { code: outcome, registered };
  };
  const LIVE = 'subscription { note(order_by: {id: asc}) { id } }';

  it('a slot dropped while running: change streams end with CHANGES_RESYNC, live queries are evaluated again', async () => {
    const stream = await firstOutcome(CHANGES);
    const live = await h.open('admin', LIVE);
    expect((await live.next()).data).toEqual({ note: [{ id: 1 }] });
    const seen = collect(h.feed);
    // Keep every reader out: end the leader (lock connection and walsender) and hold its lock.
    const reserved = await admin.reserve();
    try {
      for (let held = false; !held; ) {
        await admin`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = ${LOCK} AND objid = 3 AND granted AND pid <> ${(await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid}`;
        held = (await reserved<{ ok: boolean }[]>`SELECT pg_try_advisory_lock(${LOCK}, 3) AS ok`)[0]!.ok;
      }
      for (let dropped = false; !dropped; ) {
        await admin`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`;
        dropped = await admin`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`.then(() => true, () => false);
      }
      // Committed while no slot exists: no log will ever have it.
      await admin`INSERT INTO note VALUES (2, 'lost')`;
      await reserved`SELECT pg_advisory_unlock(${LOCK}, 3)`;
    } finally {
      reserved.release();
    }
    const resync = await seen.until((c) => c.some((x) => x.op === 'RESYNC'));
    expect(resync.filter((c) => c.op === 'RESYNC')).toHaveLength(1);
    expect(await stream.code).toBe('CHANGES_RESYNC');
    // Only the full evaluation the resync caused can know of row 2.
    expect((await live.next(20_000)).data).toEqual({ note: [{ id: 1 }, { id: 2 }] });
    // And capture goes on from the new slot.
    await admin`INSERT INTO note VALUES (3, 'after')`;
    expect((await live.next(20_000)).data).toEqual({ note: [{ id: 1 }, { id: 2 }, { id: 3 }] });
    await live.close();
  });

  it('TRUNCATE reaches subscribers: the feed has a TRUNCATE change, live queries empty, change streams end with CHANGES_RESYNC', async () => {
    const stream = await firstOutcome(CHANGES);
    const live = await h.open('admin', LIVE);
    expect((await live.next()).data).toEqual({ note: [{ id: 1 }, { id: 2 }, { id: 3 }] });
    const seen = collect(h.feed);
    await admin`TRUNCATE note`;
    const changes: Change[] = await seen.until((c) => c.some((x) => x.op === 'TRUNCATE'));
    expect(changes.find((x) => x.op === 'TRUNCATE')).toMatchObject({ table: 'note', key: {}, old: null, new: null });
    expect((await live.next(20_000)).data).toEqual({ note: [] });
    expect(await stream.code).toBe('CHANGES_RESYNC');
    // A client resuming from before the truncation is told the same.
    const resumed = await firstOutcome(`subscription { note_changes(after: "${Number(changes.find((x) => x.op === 'TRUNCATE')!.position) - 1}") { op } }`);
    expect(await resumed.code).toBe('CHANGES_RESYNC');
    await live.close();
  });
});

describe('rowgate capture --status and --drop', () => {
  it('--status prints mode, slot, confirmed LSN and retained WAL; --drop removes slot, publication and log, and the database can be dropped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rowgate-wal-cli-'));
    const config = join(dir, 'rowgate.config.json');
    writeFileSync(config, JSON.stringify({ database: { url: db.url }, changeLog: { capture: 'wal' }, tables: { note: { select: 'SELECT * FROM note' } } }));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      expect(await capture(config, 'install')).toBe(0);
      expect(await capture(config, 'status')).toBe(0);
      const lines = log.mock.calls.map((c) => String(c[0]));
      expect(lines).toContain('mode: wal');
      expect(lines.find((l) => l.startsWith('slot: '))).toMatch(/^slot: rowgate_rowgate_w_[0-9a-f]+ \(reserved|extended|unreserved, /);
      expect(lines.find((l) => l.startsWith('confirmed lsn: '))).toMatch(/^confirmed lsn: [0-9A-F]+\/[0-9A-F]+$/);
      expect(lines.find((l) => l.startsWith('retained wal bytes: '))).toMatch(/^retained wal bytes: \d+$/);
      expect(await capture(config, 'drop')).toBe(0);
      const [left] = await db.sql<{ slots: number; pubs: number; log: string | null }[]>`
        SELECT (SELECT count(*)::int FROM pg_replication_slots WHERE database = current_database()) AS slots,
               (SELECT count(*)::int FROM pg_publication) AS pubs, to_regclass('rowgate.change_log')::text AS log`;
      expect(left).toEqual({ slots: 0, pubs: 0, log: null });
      log.mockClear();
      expect(await capture(config, 'status')).toBe(0);
      expect(log.mock.calls.map((c) => String(c[0]))).toEqual(['mode: none']);
    } finally {
      log.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
