import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { capture } from '../src/cli/capture.ts';
import { connect, type Sql } from '../src/db/index.ts';
import { installCapture, removeCapture, startChangeFeed, type Change, type ChangeFeed } from '../src/db/changes/index.ts';
import { collect, ofTable, type Collector } from './support/changes.ts';
import { useTestDatabase } from './support/db.ts';

// Trigger capture only (WAL capture has changes-wal*.test.ts): what is tested here is the
// triggers themselves, their install and removal. Change capture (db/ README): triggers write every committed change to rowgate.change_log,
// whoever writes it; the feed delivers them. Writes here go through a connection of their own,
// as another service's would.
const db = useTestDatabase();
let writer: Sql;

/** Triggers, functions and the log table, with their row versions: equal means nothing was rewritten. */
async function captureState(sql: Sql): Promise<unknown[]> {
  const rows = await sql`
    SELECT 'trigger' AS kind, c.relname || '.' || t.tgname AS name, t.oid::text AS oid, t.xmin::text AS version
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE 'rowgate%'
    UNION ALL
    SELECT 'function', p.proname, p.oid::text, p.xmin::text FROM pg_proc p WHERE p.pronamespace = 'rowgate'::regnamespace
    UNION ALL
    SELECT 'relation', c.relname, c.oid::text, c.xmin::text FROM pg_class c WHERE c.relnamespace = 'rowgate'::regnamespace
    ORDER BY 1, 2`;
  return [...rows];
}

async function triggersOn(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT DISTINCT c.relname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE t.tgname LIKE 'rowgate_capture%' ORDER BY 1`;
  return rows.map((r) => r.name);
}

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, tags jsonb, big bigint, price numeric(10,2));
    CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b));
    CREATE TABLE nokey (x int, y text);
    CREATE TABLE bulk (id int PRIMARY KEY, payload text);
    CREATE TABLE other (id int PRIMARY KEY);
    CREATE VIEW item_names AS SELECT name FROM item;
  `);
  writer = connect(db.url, { max: 1 });
});
afterAll(async () => {
  await writer?.end({ timeout: 5 });
});

describe('installCapture', () => {
  it('is idempotent, and removes the triggers of tables no longer listed', async () => {
    const first = await installCapture(db.sql, 'public', ['item', 'other'], 'triggers');
    expect(first).toEqual({ mode: 'triggers', installed: ['item', 'other'], unchanged: [], removed: [] });
    const state = await captureState(db.sql);
    expect(state.filter((s) => (s as { kind: string }).kind === 'trigger')).toHaveLength(6);

    const again = await installCapture(db.sql, 'public', ['other', 'item', 'item'], 'triggers');
    expect(again).toEqual({ mode: 'triggers', installed: [], unchanged: ['item', 'other'], removed: [] });
    expect(await captureState(db.sql)).toEqual(state);

    const shrunk = await installCapture(db.sql, 'public', ['item', 'pair', 'nokey', 'bulk'], 'triggers');
    expect(shrunk).toEqual({ mode: 'triggers', installed: ['bulk', 'nokey', 'pair'], unchanged: ['item'], removed: ['other'] });
    expect(await triggersOn(db.sql)).toEqual(['bulk', 'item', 'nokey', 'pair']);
  });

  it('repairs a trigger that was disabled or whose key changed', async () => {
    await db.sql`ALTER TABLE item DISABLE TRIGGER rowgate_capture_update`;
    expect((await installCapture(db.sql, 'public', ['item', 'pair', 'nokey', 'bulk'], 'triggers')).installed).toEqual(['item']);
    await db.sql`ALTER TABLE nokey ADD COLUMN id serial PRIMARY KEY`;
    expect((await installCapture(db.sql, 'public', ['item', 'pair', 'nokey', 'bulk'], 'triggers')).installed).toEqual(['nokey']);
    await db.sql`ALTER TABLE nokey DROP CONSTRAINT nokey_pkey`;
    await db.sql`ALTER TABLE nokey DROP COLUMN id`;
    expect((await installCapture(db.sql, 'public', ['item', 'pair', 'nokey', 'bulk'], 'triggers')).installed).toEqual(['nokey']);
  });

  it('refuses views and unknown tables with a clear error, changing nothing', async () => {
    const before = await captureState(db.sql);
    await expect(installCapture(db.sql, 'public', ['item', 'item_names'], 'triggers')).rejects.toMatchObject({ code: 'NOT_A_TABLE', message: expect.stringContaining('not a table') });
    await expect(installCapture(db.sql, 'public', ['nope'], 'triggers')).rejects.toMatchObject({ code: 'NOT_A_TABLE', message: expect.stringContaining('no such table') });
    expect(await captureState(db.sql)).toEqual(before);
  });
});

describe('capture of writes made outside the gateway', () => {
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

  const only = (table: string) => (changes: Change[]) => changes.filter(ofTable(table));

  it('delivers inserts, updates and deletes with op, key, old and new', async () => {
    await writer`INSERT INTO item (id, name, tags, big, price) VALUES (1, 'one', '{"a":[1,2]}', 9007199254740993, 1.50)`;
    await writer`UPDATE item SET name = 'uno' WHERE id = 1`;
    await writer`DELETE FROM item WHERE id = 1`;
    const got = only('item')(await seen.until((c) => only('item')(c).length >= 3));
    const image = { id: 1, name: 'one', tags: { a: [1, 2] }, big: '9007199254740993', price: '1.50' };
    expect(got.map(({ position, ...rest }) => rest)).toEqual([
      { table: 'item', op: 'INSERT', key: { id: 1 }, old: null, new: image },
      { table: 'item', op: 'UPDATE', key: { id: 1 }, old: image, new: { ...image, name: 'uno' } },
      { table: 'item', op: 'DELETE', key: { id: 1 }, old: { ...image, name: 'uno' }, new: null },
    ]);
    const positions = got.map((c) => BigInt(c.position));
    expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : 1)));
    expect(feed.head()).toBe(got[2]!.position);
  });

  it('captures writes of a role with no rights on the rowgate schema', async () => {
    const role = `rowgate_writer_${Math.random().toString(36).slice(2, 10)}`;
    await db.sql.unsafe(`CREATE ROLE ${role} NOLOGIN; GRANT INSERT, UPDATE, DELETE ON item TO ${role}`);
    try {
      await writer.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL ROLE ${role}`);
        await tx`INSERT INTO item (id, name) VALUES (77, 'by another role')`;
      });
      const got = only('item')(await seen.until((c) => only('item')(c).some((x) => x.key['id'] === 77)));
      expect(got.find((x) => x.key['id'] === 77)?.new?.['name']).toBe('by another role');
    } finally {
      await writer`DELETE FROM item WHERE id = 77`;
      await db.sql.unsafe(`REVOKE ALL ON item FROM ${role}; DROP ROLE ${role}`);
    }
  });

  it('keys composite primary keys by their columns and key-less tables by the whole row', async () => {
    await writer`INSERT INTO pair VALUES (1, 'x', 10)`;
    await writer`UPDATE pair SET b = 'y' WHERE a = 1`;
    await writer`INSERT INTO nokey VALUES (5, 'five')`;
    await writer`DELETE FROM nokey`;
    await seen.until((c) => only('pair')(c).length >= 2 && only('nokey')(c).length >= 2);
    expect(only('pair')(seen.changes()).map((c) => [c.op, c.key, c.old])).toEqual([
      ['INSERT', { a: 1, b: 'x' }, null],
      // An update that changes the key: `key` is the new row's, `old` still has the old key.
      ['UPDATE', { a: 1, b: 'y' }, { a: 1, b: 'x', v: 10 }],
    ]);
    expect(only('nokey')(seen.changes()).map((c) => [c.op, c.key])).toEqual([
      ['INSERT', { x: 5, y: 'five' }],
      ['DELETE', { x: 5, y: 'five' }],
    ]);
  });

  it('writes nothing for an UPDATE that changes nothing', async () => {
    await writer`INSERT INTO item (id, name, tags) VALUES (2, 'two', '{"k":1}')`;
    await seen.until((c) => c.some((x) => x.table === 'item' && x.key['id'] === 2));
    const [before] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM rowgate.change_log`;
    // json columns have no equality operator: the comparison must not need one.
    await writer`UPDATE item SET name = name, tags = tags WHERE id = 2`;
    await writer`UPDATE item SET name = 'two' WHERE id = 2`;
    const [after] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM rowgate.change_log`;
    expect(after!.n).toBe(before!.n);
    // A marker behind them: when it arrives, anything the no-op updates wrote would have, too.
    await writer`INSERT INTO other VALUES (1)`.catch(() => {});
    await writer`INSERT INTO pair VALUES (2, 'marker', 0)`;
    await seen.until((c) => c.some((x) => x.table === 'pair' && x.key['b'] === 'marker'));
    expect(seen.changes().filter((c) => c.table === 'item' && c.key['id'] === 2).map((c) => c.op)).toEqual(['INSERT']);
  });

  it('delivers a multi-row transaction as one delivery', async () => {
    const deliveries = seen.batches.length;
    await writer.begin(async (tx) => {
      await tx`INSERT INTO item (id, name) VALUES (10, 'ten'), (11, 'eleven')`;
      await tx`UPDATE item SET name = 'TEN' WHERE id = 10`;
      await tx`INSERT INTO pair VALUES (10, 'ten', 10)`;
      await tx`DELETE FROM item WHERE id = 11`;
    });
    await seen.until((c) => c.some((x) => x.table === 'item' && x.op === 'DELETE' && x.key['id'] === 11));
    const batch = seen.batches.at(-1)!;
    expect(seen.batches.length).toBe(deliveries + 1);
    expect(batch.changes.map((c) => [c.table, c.op, c.key])).toEqual([
      ['item', 'INSERT', { id: 10 }],
      ['item', 'INSERT', { id: 11 }],
      ['item', 'UPDATE', { id: 10 }],
      ['pair', 'INSERT', { a: 10, b: 'ten' }],
      ['item', 'DELETE', { id: 11 }],
    ]);
    expect(batch.position).toBe(batch.changes.at(-1)!.position);
  });

  it('does not deliver a rolled-back transaction', async () => {
    await writer.begin(async (tx) => {
      await tx`INSERT INTO item (id, name) VALUES (20, 'never')`;
      await tx`SELECT 1/0`;
    }).catch(() => {});
    await writer`INSERT INTO pair VALUES (20, 'after rollback', 0)`;
    await seen.until((c) => c.some((x) => x.table === 'pair' && x.key['a'] === 20));
    expect(seen.changes().some((c) => c.table === 'item' && c.key['id'] === 20)).toBe(false);
  });

  it('captures a bulk 10 000-row INSERT and DELETE, one notification per statement', async () => {
    await writer`INSERT INTO bulk SELECT g, repeat('x', 50) FROM generate_series(1, 10000) AS g`;
    const inserted = only('bulk')(await seen.until((c) => only('bulk')(c).length >= 10_000, 60_000));
    expect(inserted).toHaveLength(10_000);
    expect(new Set(inserted.map((c) => c.key['id'])).size).toBe(10_000);
    expect(inserted.every((c) => c.op === 'INSERT' && c.new?.['payload'] === 'x'.repeat(50))).toBe(true);
    await writer`DELETE FROM bulk`;
    const all = only('bulk')(await seen.until((c) => only('bulk')(c).length >= 20_000, 60_000));
    expect(all.slice(10_000).every((c) => c.op === 'DELETE' && c.old !== null && c.new === null)).toBe(true);
  });

  it('a new feed starts at the present and does not replay history', async () => {
    const second = await startChangeFeed({ url: db.url, sql: db.sql, schema: 'public', retentionHours: 24 });
    try {
      expect(second.head()).toBe(feed.head());
      const fresh = collect(second);
      await writer`INSERT INTO item (id, name) VALUES (30, 'thirty')`;
      const got = await fresh.until((c) => c.length >= 1);
      expect(got.map((c) => c.key)).toEqual([{ id: 30 }]);
      fresh.stop();
    } finally {
      await second.close();
    }
  });
});

describe('rowgate capture (CLI) and removeCapture', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rowgate-capture-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('installs on the listed tables and every table their rules read, then --drop removes it all', async () => {
    await db.sql.unsafe(`
      CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL);
      CREATE TABLE acl (identity text PRIMARY KEY);
      CREATE TABLE note (id int PRIMARY KEY, account_id int REFERENCES account(id));
    `);
    const config = join(dir, 'rowgate.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        database: { url: db.url },
        changeLog: { capture: 'triggers' },
        tables: {
          account: { select: ['SELECT account.* FROM account JOIN acl ON acl.identity = :sender'] },
          note: { select: ['SELECT n.* FROM note n JOIN account a ON a.id = n.account_id'] },
        },
      }),
    );
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      expect(await capture(config, 'install')).toBe(0);
      // acl is not exposed but account's rule reads it; the tables of the earlier tests are dropped.
      expect(await triggersOn(db.sql)).toEqual(['account', 'acl', 'note']);
      expect(log.mock.calls.map((c) => String(c[0]))).toContain('removed:   item');
      expect(await capture(config, 'install')).toBe(0);
      expect(log.mock.calls.map((c) => String(c[0]))).toContain('unchanged: acl');

      expect(await capture(config, 'drop')).toBe(0);
      expect(await triggersOn(db.sql)).toEqual([]);
      const [schema] = await db.sql`SELECT to_regnamespace('rowgate') AS oid`;
      expect(schema!['oid']).toBeNull();
      // Removing twice is fine, and writes still work without capture.
      expect(await removeCapture(db.sql, 'public')).toEqual({ removed: [] });
      await writer`INSERT INTO acl VALUES ('someone')`;
    } finally {
      log.mockRestore();
    }
  });

  it('removing capture leaves other objects of the rowgate schema (the policies\' helpers) alone', async () => {
    await installCapture(db.sql, 'public', ['acl'], 'triggers');
    await db.sql`CREATE FUNCTION rowgate.kept() RETURNS int LANGUAGE sql AS 'SELECT 1'`;
    await removeCapture(db.sql, 'public');
    const [row] = await db.sql`SELECT rowgate.kept() AS one, to_regclass('rowgate.change_log') AS log`;
    expect(row).toEqual({ one: 1, log: null });
    await db.sql`DROP FUNCTION rowgate.kept()`;
    await removeCapture(db.sql, 'public');
    const [schema] = await db.sql`SELECT to_regnamespace('rowgate') AS oid`;
    expect(schema!['oid']).toBeNull();
  });
});
