import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, freePort, startEmbedded, type Sql } from '../src/db/index.ts';
import { installCapture, readAfter, startChangeFeed, type Change, type ChangeFeed } from '../src/db/changes/index.ts';
import { collect, status, type Collector } from './support/changes.ts';
import { useTestDatabase } from './support/db.ts';
import { serverDir } from './support/server-dir.ts';

// Trigger capture only: this file is about the feed's LISTEN connection and stamping recovering from lost notifications and dropped connections (the WAL reader's faults are in changes-wal*.test.ts).
// What a feed does when things go wrong: a lost NOTIFY, a dropped connection, a restarted
// server, a client resuming from a position, and retention.
const db = useTestDatabase();
let writer: Sql;
let admin: Sql;
const dbName = (): string => new URL(db.url).pathname.slice(1);

beforeAll(async () => {
  await db.sql.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
  await installCapture(db.sql, 'public', ['t'], 'triggers');
  writer = connect(db.url, { max: 1 });
  // ALTER DATABASE and pg_terminate_backend from outside the test database.
  const server = new URL(db.url);
  server.pathname = '/postgres';
  admin = connect(server.toString(), { max: 1 });
});
afterAll(async () => {
  await writer?.end({ timeout: 5 });
  await admin?.end({ timeout: 5 });
});

const ids = (changes: Change[]): unknown[] => changes.map((c) => c.key['id']);

describe('lost notifications and dropped connections', () => {
  let feed: ChangeFeed;
  let pool: Sql;
  let seen: Collector;
  beforeAll(async () => {
    pool = connect(db.url, { max: 2, connection: { application_name: 'feed-pool' } });
    // No regular timer: notifications, reconnects, and the quick retries for held-back changes
    // (other test files' open transactions hold the cluster's xmin) are what wake this feed.
    // Its pool is dropped on purpose below; the failure it reports then is expected.
    feed = await startChangeFeed({ url: db.url, sql: pool, schema: 'public', retentionHours: 24, pollMs: 3_600_000, onError: () => {} });
    seen = collect(feed);
  });
  afterAll(async () => {
    seen?.stop();
    await feed?.close();
    await pool?.end({ timeout: 5 });
  });

  it('catches up on changes committed while the LISTEN connection was gone', async () => {
    await writer`INSERT INTO t VALUES (1, 'before')`;
    await seen.until((c) => c.length === 1);
    expect(feed.ready()).toBe(true);

    // Keep the feed from reconnecting until the write is done, so its NOTIFY is surely lost.
    await admin.unsafe(`ALTER DATABASE ${dbName()} WITH ALLOW_CONNECTIONS false`);
    try {
      const down = status(feed, false);
      const [killed] = await admin<{ n: number }[]>`
        SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE datname = ${dbName()} AND application_name = 'rowgate-change-feed'`;
      expect(killed!.n).toBe(1);
      await down;
      await writer`INSERT INTO t VALUES (2, 'while away'), (3, 'while away')`;
    } finally {
      await admin.unsafe(`ALTER DATABASE ${dbName()} WITH ALLOW_CONNECTIONS true`);
    }
    await status(feed, true);
    const got = await seen.until((c) => c.length === 3);
    expect(ids(got)).toEqual([1, 2, 3]);
  });

  it('reports not ready when all its connections are dropped, then reconnects and delivers', async () => {
    const down = status(feed, false);
    const [killed] = await admin<{ n: number }[]>`
      SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
       WHERE datname = ${dbName()} AND application_name IN ('rowgate-change-feed', 'feed-pool')`;
    expect(killed!.n).toBeGreaterThanOrEqual(2);
    await down;
    await writer`INSERT INTO t VALUES (4, 'after drop')`;
    await status(feed, true);
    const got = await seen.until((c) => c.length === 4);
    expect(ids(got)).toEqual([1, 2, 3, 4]);
  });
});

describe('resuming with readAfter', () => {
  let feed: ChangeFeed;
  let seen: Collector;
  beforeAll(async () => {
    feed = await startChangeFeed({ url: db.url, sql: db.sql, schema: 'public', retentionHours: 24 });
    seen = collect(feed);
  });
  afterAll(async () => {
    seen?.stop();
    await feed?.close();
  });

  it('returns exactly the changes after a position, page by page, up to the head', async () => {
    const start = feed.head();
    for (let i = 100; i < 110; i++) await writer`INSERT INTO t VALUES (${i}::int, 'r')`;
    await writer`UPDATE t SET v = 'u' WHERE id >= 100 AND id < 105`;
    const delivered = await seen.until((c) => c.length === 15);

    expect(await feed.readAfter(start, 100)).toEqual(delivered);
    // From every position a client may hold, in pages of 4: the rest, nothing more, nothing less.
    for (let k = 0; k < delivered.length; k++) {
      const pages: Change[] = [];
      let after = delivered[k]!.position;
      for (;;) {
        const page = await feed.readAfter(after, 4);
        if (page.length === 0) break;
        pages.push(...page);
        after = page.at(-1)!.position;
      }
      expect(pages).toEqual(delivered.slice(k + 1));
    }
    expect(await feed.readAfter(feed.head(), 10)).toEqual([]);
  });

  it('rejects a position that is not one', async () => {
    for (const bad of ['', 'abc', '-1', '1.5', '01', ' 1', '99999999999999999999']) {
      await expect(feed.readAfter(bad, 10)).rejects.toMatchObject({ code: 'INVALID_POSITION' });
    }
  });
});

describe('retention', () => {
  it('deletes old changes as a prefix, keeps the newest, and expires positions before it', async () => {
    const feed = await startChangeFeed({ url: db.url, sql: db.sql, schema: 'public', retentionHours: 1 });
    const seen = collect(feed);
    try {
      for (let i = 200; i < 206; i++) await writer`INSERT INTO t VALUES (${i}::int, 'old')`;
      const old = await seen.until((c) => c.length === 6);
      for (let i = 206; i < 209; i++) await writer`INSERT INTO t VALUES (${i}::int, 'new')`;
      const all = await seen.until((c) => c.length === 9);
      const lastOld = old.at(-1)!.position;
      // Age everything up to the last 'old' change past the 1-hour retention.
      await db.sql`UPDATE rowgate.change_log SET at = now() - interval '2 hours' WHERE pos <= ${lastOld}::text::bigint`;

      const result = await feed.cleanup();
      expect(result.oldest).toBe(all[6]!.position);
      expect(feed.oldestRetained()).toBe(all[6]!.position);
      const [left] = await db.sql<{ n: number; min: string }[]>`SELECT count(*)::int AS n, min(pos)::text AS min FROM rowgate.change_log`;
      expect(left).toEqual({ n: 3, min: all[6]!.position });

      // The last deleted position is still a valid resume point; anything before it is not.
      expect(ids(await feed.readAfter(lastOld, 10))).toEqual([206, 207, 208]);
      const expired = feed.readAfter(old.at(-2)!.position, 10);
      await expect(expired).rejects.toMatchObject({ code: 'POSITION_EXPIRED', message: expect.stringContaining('older than the change log keeps') });
      await expect(readAfter(db.sql, '0', 10)).rejects.toMatchObject({ code: 'POSITION_EXPIRED' });

      // Even when everything is old, the newest change stays: positions go on from it.
      await db.sql`UPDATE rowgate.change_log SET at = now() - interval '2 hours'`;
      await feed.cleanup();
      const [rest] = await db.sql<{ n: number; max: string }[]>`SELECT count(*)::int AS n, max(pos)::text AS max FROM rowgate.change_log`;
      expect(rest).toEqual({ n: 1, max: all[8]!.position });
      await writer`INSERT INTO t VALUES (209, 'after cleanup')`;
      const next = await seen.until((c) => c.length === 10);
      expect(BigInt(next[9]!.position)).toBe(BigInt(all[8]!.position) + 1n);
    } finally {
      seen.stop();
      await feed.close();
    }
  });
});

describe('a server restart', () => {
  let dir: string;
  beforeAll(() => {
    dir = serverDir('rowgate-restart-');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes the feed not ready until the server is back, then it catches up', async () => {
    // A server of this test's own, since it is stopped and started again.
    const port = await freePort();
    let server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: true, port });
    const sql = connect(server.url, { max: 2 });
    const other = connect(server.url, { max: 1 });
    let feed: ChangeFeed | null = null;
    const errors: unknown[] = [];
    try {
      await sql`CREATE TABLE r (id int PRIMARY KEY)`;
      await installCapture(sql, 'public', ['r'], 'triggers');
      // While the server is down a pump may fail; the feed reports that (once) through onError.
      feed = await startChangeFeed({ url: server.url, sql, schema: 'public', retentionHours: 24, pollMs: 100, onError: (e) => errors.push(e) });
      const seen = collect(feed);
      await other`INSERT INTO r VALUES (1)`;
      await seen.until((c) => c.length === 1);

      const down = status(feed, false);
      await server.stop();
      await down;
      server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: true, port });
      // Written before the feed is back (its LISTEN may not be): caught up either way.
      await other`INSERT INTO r VALUES (2)`;
      await status(feed, true, 30_000);
      await other`INSERT INTO r VALUES (3)`;
      const got = await seen.until((c) => c.length === 3, 30_000);
      expect(ids(got)).toEqual([1, 2, 3]);
      expect(got.map((c) => c.position)).toEqual(['1', '2', '3']);
      seen.stop();
    } finally {
      await feed?.close();
      await other.end({ timeout: 5 });
      await sql.end({ timeout: 5 });
      await server.stop();
    }
  });
});
