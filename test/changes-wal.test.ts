import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureStatus, installCapture, removeCapture, startChangeFeed, type Change, type ChangeFeed } from '../src/db/changes/index.ts';
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
});
