import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, startEmbedded, type EmbeddedServer, type Sql } from '../src/db/index.ts';
import { serverDir } from './support/server-dir.ts';

// The embedded PostgreSQL (`npm start`, tests without TEST_DATABASE_URL) runs with logical
// decoding available: a server of this file's own, on a throw-away data directory.
let dir: string;
let server: EmbeddedServer;
let sql: Sql;

beforeAll(async () => {
  dir = serverDir('rowgate-embedded-');
  server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: false });
  sql = connect(server.url, { max: 1 });
}, 60_000);
afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('starts with wal_level = logical and room for replication slots and WAL senders', async () => {
  const [row] = await sql<{ wal_level: string; slots: number; senders: number }[]>`
    SELECT current_setting('wal_level') AS wal_level,
           current_setting('max_replication_slots')::int AS slots,
           current_setting('max_wal_senders')::int AS senders`;
  expect(row).toEqual({ wal_level: 'logical', slots: 10, senders: 10 });
});

it('can create, decode from and drop a permanent logical replication slot', async () => {
  const slot = `rowgate_embedded_test`;
  await sql`CREATE TABLE t (id int PRIMARY KEY, name text)`;
  await sql`SELECT pg_create_logical_replication_slot(${slot}, 'test_decoding')`;
  try {
    await sql`INSERT INTO t VALUES (1, 'a')`;
    const changes = await sql<{ data: string }[]>`SELECT data FROM pg_logical_slot_get_changes(${slot}, NULL, NULL)`;
    expect(changes.map((c) => c.data).filter((d) => d.startsWith('table'))).toEqual([`table public.t: INSERT: id[integer]:1 name[text]:'a'`]);
  } finally {
    await sql`SELECT pg_drop_replication_slot(${slot})`;
  }
});
