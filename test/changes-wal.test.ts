import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureStatus, installCapture, readAfter, removeCapture, startChangeFeed, type Change, type ChangeFeed } from '../src/db/changes/index.ts';
import { startWalReader } from '../src/db/changes/wal-reader.ts';
import { walConfirmed } from '../src/db/changes/wal-snapshot.ts';
import { connect, type Sql } from '../src/db/index.ts';
import { collect } from './support/changes.ts';
import { useWalDatabase } from './support/wal.ts';

// WAL capture (logical decoding) end to end on a server with wal_level = logical: images as the
// trigger capture writes them, two gateways, a leader killed mid-stream, a gateway down while
// writes go on, a dropped slot, TRUNCATE, and the switch from triggers.
const db = useWalDatabase();
const feeds: ChangeFeed[] = [];
const pools: Sql[] = [];

async function feed(): Promise<ChangeFeed> {
  const pool = connect(db.url, { max: 3, connection: { application_name: 'rowgate-live' } });
  pools.push(pool);
  const f = await startChangeFeed({ url: db.url, sql: pool, schema: 'public', retentionHours: 24, pollMs: 200, leaderRetryMs: 200, onLog: () => {}, onError: () => {} });
  feeds.push(f);
  return f;
}

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE t (id int PRIMARY KEY, v text);
    CREATE TYPE mood AS ENUM ('ok', 'meh');
    CREATE TABLE odd (id bigint PRIMARY KEY, s text, j jsonb, js json, n numeric, a int[], at timestamptz, m mood, p point, b bytea, big text);
    CREATE TABLE nokey (x int, y text);`);
});
afterAll(async () => {
  for (const f of feeds) await f.close();
  for (const p of pools) await p.end({ timeout: 5 });
});

describe('WAL capture', () => {
  it('installs a publication, REPLICA IDENTITY FULL and a permanent slot, and no triggers', async () => {
    const report = await installCapture(db.sql, 'public', ['t', 'odd', 'nokey'], 'wal');
    expect(report.mode).toBe('wal');
    const status = await captureStatus(db.sql);
    expect(status.mode).toBe('wal');
    expect(status.slotState?.walStatus).not.toBeNull();
    const [slot] = await db.sql<{ temporary: boolean; plugin: string }[]>`SELECT temporary, plugin FROM pg_replication_slots WHERE slot_name = ${status.slot}`;
    expect(slot).toEqual({ temporary: false, plugin: 'pgoutput' });
    const identity = await db.sql<{ relname: string; relreplident: string }[]>`SELECT relname, relreplident FROM pg_class WHERE relname IN ('t', 'odd', 'nokey') ORDER BY relname`;
    expect(identity.map((r) => r.relreplident)).toEqual(['f', 'f', 'f']);
    const [triggers] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE 'rowgate_capture%'`;
    expect(triggers!.n).toBe(0);
  });

  it('logs each change once, with the images to_jsonb gives the row (as the triggers wrote them)', async () => {
    const f = await feed();
    const seen = collect(f);
    const big = 'x'.repeat(20_000); // TOASTed: an UPDATE that does not touch it still carries it
    await db.sql`INSERT INTO odd VALUES (9007199254740993, ${'quo"te \\ back, (paren) {brace}'}, '{"a": [1, 2.50]}', '{"b" : 1}', 1.50, '{1,NULL,3}', '2026-01-02 03:04:05.123456+00', 'meh', '(1,2)', '\\x00ff', ${big})`;
    await db.sql`INSERT INTO odd (id) VALUES (2)`;
    await db.sql`UPDATE odd SET s = 'changed' WHERE id = 9007199254740993`;
    await db.sql`UPDATE odd SET s = s WHERE id = 2`; // no change: nothing logged, as with triggers
    await db.sql`INSERT INTO nokey VALUES (1, 'a')`;
    await db.sql`DELETE FROM nokey`;
    await f.poll();
    const changes = await seen.until((c) => c.length >= 5);
    expect(changes.map((c) => [c.table, c.op])).toEqual([
      ['odd', 'INSERT'], ['odd', 'INSERT'], ['odd', 'UPDATE'], ['nokey', 'INSERT'], ['nokey', 'DELETE'],
    ]);
    const logged = await db.sql<{ new: string | null; old: string | null; key: string }[]>`SELECT new::text, old::text, key::text FROM rowgate.change_log WHERE tbl = 'odd' ORDER BY pos`;
    const [now] = await db.sql<{ j: string }[]>`SELECT to_jsonb(o)::text AS j FROM odd AS o WHERE id = 9007199254740993`;
    expect(logged[2]!.new).toBe(now!.j);
    expect(logged[2]!.old).toContain(big);
    expect(logged[0]!.key).toBe('{"id": 9007199254740993}');
    const [nk] = await db.sql<{ key: string }[]>`SELECT key::text FROM rowgate.change_log WHERE tbl = 'nokey' AND op = 'DELETE'`;
    expect(nk!.key).toBe('{"x": 1, "y": "a"}');
    expect(changes.map((c) => c.position)).toEqual(changes.map((_, i) => String(Number(changes[0]!.position) + i)));
  });

  it('generated columns: stored ones are in the images with their values (PostgreSQL 18); tables WAL capture cannot carry are refused', async () => {
    const [v] = await db.sql<{ n: number }[]>`SELECT current_setting('server_version_num')::int AS n`;
    await db.sql`CREATE TABLE gen (id int PRIMARY KEY, a int, s int GENERATED ALWAYS AS (a * 2) STORED, b text)`;
    if (v!.n < 180000) {
      // Before PostgreSQL 18 pgoutput does not send them.
      await expect(installCapture(db.sql, 'public', ['t', 'odd', 'nokey', 'gen'], 'wal')).rejects.toMatchObject({ code: 'WAL_UNAVAILABLE', message: expect.stringContaining('gen.s') });
      return;
    }
    // A virtual one is never published: REPLICA IDENTITY FULL would make its table's UPDATEs fail.
    await db.sql`CREATE TABLE genv (id int PRIMARY KEY, a int, v int GENERATED ALWAYS AS (a * 3) VIRTUAL)`;
    await expect(installCapture(db.sql, 'public', ['t', 'odd', 'nokey', 'gen', 'genv'], 'wal')).rejects.toMatchObject({ code: 'WAL_UNAVAILABLE', message: expect.stringContaining('genv.v') });
    await installCapture(db.sql, 'public', ['t', 'odd', 'nokey', 'gen'], 'wal');
    const f = await feed();
    await db.sql`INSERT INTO gen (id, a, b) VALUES (1, 5, 'x')`;
    await db.sql`UPDATE gen SET a = 6 WHERE id = 1`;
    await db.sql`DELETE FROM gen`;
    await f.poll();
    const logged = await db.sql<{ op: string; old: string | null; new: string | null }[]>`SELECT op, old::text, new::text FROM rowgate.change_log WHERE tbl = 'gen' ORDER BY pos`;
    // As the trigger's to_jsonb(NEW) has them.
    expect(logged).toEqual([
      { op: 'INSERT', old: null, new: '{"a": 5, "b": "x", "s": 10, "id": 1}' },
      { op: 'UPDATE', old: '{"a": 5, "b": "x", "s": 10, "id": 1}', new: '{"a": 6, "b": "x", "s": 12, "id": 1}' },
      { op: 'DELETE', old: '{"a": 6, "b": "x", "s": 12, "id": 1}', new: null },
    ]);
  });

  it('two gateways give identical positions; killing the leader while it streams loses and repeats nothing', async () => {
    const a = await feed();
    const b = await feed();
    await a.poll();
    await b.poll();
    const ca = collect(a);
    const cb = collect(b);
    const writers = [connect(db.url, { max: 1 }), connect(db.url, { max: 1 })];
    pools.push(...writers);
    const written: number[][] = [[], []];
    // The leader is whoever holds the advisory lock: end its lock connection and its walsender,
    // three times while the writers go on (between two of writer 0's commits, so while the leader
    // is decoding or appending writer 1's).
    let killed = 0;
    const kill = async () => {
      const [lock] = await db.sql<{ n: number }[]>`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x726f7767} AND objid = 3 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
      await db.sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`;
      killed += lock!.n;
    };
    const write = async (w: number) => {
      for (let i = 0; i < 120; i++) {
        const id = 100_000 * (w + 1) + i * 100;
        const rows = i % 10 === 0 ? 60 : 1; // now and then a bigger transaction
        await writers[w]!`INSERT INTO t (id, v) SELECT ${id} + g, 'w' FROM generate_series(0, ${rows - 1}) AS g`;
        for (let g = 0; g < rows; g++) written[w]!.push(id + g);
        if (w === 0 && i % 30 === 29) await kill();
      }
    };
    await Promise.all([write(0), write(1)]);
    expect(killed).toBeGreaterThan(0);
    const all = [...written[0]!, ...written[1]!];
    const ofT = (c: Change[]) => c.filter((x) => x.table === 't');
    await ca.until((c) => ofT(c).length >= all.length, 60_000);
    await cb.until((c) => ofT(c).length >= all.length, 60_000);
    await a.poll();
    await b.poll();
    const ids = (c: Change[]) => ofT(c).map((x) => Number(x.key['id']));
    // Each write exactly once, each writer's in the order it committed them.
    expect([...ids(ca.changes())].sort((x, y) => x - y)).toEqual([...all].sort((x, y) => x - y));
    for (const w of [0, 1]) expect(ids(ca.changes()).filter((id) => written[w]!.includes(id))).toEqual(written[w]);
    // Both gateways: the same changes at the same positions, and positions dense.
    expect(cb.changes().map((c) => [c.position, c.table, c.key])).toEqual(ca.changes().map((c) => [c.position, c.table, c.key]));
    const positions = ca.changes().map((c) => Number(c.position));
    expect(positions).toEqual(positions.map((_, i) => positions[0]! + i));
    const [log] = await db.sql<{ n: number; distinct: number }[]>`SELECT count(*)::int AS n, count(DISTINCT key)::int AS distinct FROM rowgate.change_log WHERE tbl = 't'`;
    expect(log).toEqual({ n: all.length, distinct: all.length });
    expect(a.mode).toBe('wal');
  });

  it('a gateway down while writes go on gets every change on restart, once, in commit order; the slot holds the WAL meanwhile', async () => {
    const before = await feed();
    await before.poll();
    const from = before.head();
    for (const f of feeds.splice(0)) await f.close();
    for (let i = 0; i < 50; i++) await db.sql`UPDATE t SET v = ${`down ${i}`} WHERE id = 100000`;
    await db.sql`DELETE FROM t WHERE id BETWEEN 100001 AND 100009`;
    const down = await captureStatus(db.sql);
    expect(down.slotState?.active).toBe(false);
    expect(Number(down.slotState?.retainedBytes)).toBeGreaterThan(0);
    const after = await feed();
    await after.poll();
    const missed = await after.readAfter(from, 1000);
    expect(missed.map((c) => [c.op, c.op === 'UPDATE' ? c.new?.['v'] : c.key['id']])).toEqual([
      ...Array.from({ length: 50 }, (_, i) => ['UPDATE', `down ${i}`]),
      ...Array.from({ length: 9 }, (_, i) => ['DELETE', 100001 + i]),
    ]);
    expect(after.head()).toBe(missed.at(-1)!.position);
  });

  it('a leader far behind pauses the stream instead of holding every decoded transaction, and appends each once, in order', async () => {
    for (const f of feeds.splice(0)) await f.close();
    const [start] = await db.sql<{ top: string }[]>`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    for (let i = 0; i < 300; i++) await db.sql`UPDATE t SET v = ${`behind ${i}`} WHERE id = 100000`;
    const [written] = await db.sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`;
    const lines: string[] = [];
    const pool = connect(db.url, { max: 3 });
    pools.push(pool);
    const slot = (await captureStatus(db.sql)).slot;
    // Appends of 10 rows, paused past 20 queued: far behind from the first transaction on.
    const reader = startWalReader({ url: db.url, sql: pool, slot, log: (_level, message) => lines.push(message), retryMs: 100, batchRows: 10, maxQueuedRows: 20 });
    try {
      await walConfirmed(pool, slot, written!.lsn, () => false);
    } finally {
      await reader.close();
    }
    expect(lines.filter((l) => l.includes('far behind'))).toHaveLength(1);
    const appended = await readAfter(db.sql, start!.top, 1000);
    expect(appended.map((c) => c.new?.['v'])).toEqual(Array.from({ length: 300 }, (_, i) => `behind ${i}`));
  });
});
