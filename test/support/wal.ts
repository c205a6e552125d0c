import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, inject } from 'vitest';
import { connect, readCatalog, startEmbedded, type EmbeddedServer } from '../../src/db/index.ts';
import { dropSlots, withDatabase, type TestDatabase } from './db.ts';
import { serverDir } from './server-dir.ts';

/**
 * A database of this file's own on a server that decodes the WAL: the run's server when it has
 * `wal_level = logical` (the embedded one), else an embedded server started for this file (the
 * machine's PostgreSQL runs with `replica`, and its settings are not ours to change).
 */
export function useWalDatabase(): TestDatabase & { serverUrl(): string } {
  const name = `rowgate_w_${randomBytes(6).toString('hex')}`;
  let server: EmbeddedServer | null = null;
  let dir: string | null = null;
  let serverUrl = inject('databaseUrl');
  const db = {
    sql: undefined as unknown as TestDatabase['sql'],
    url: '',
    catalog: (schema = 'public') => readCatalog(db.sql, schema),
    serverUrl: () => serverUrl,
  };
  beforeAll(async () => {
    const probe = connect(serverUrl, { max: 1 });
    const [row] = await probe<{ level: string }[]>`SELECT current_setting('wal_level') AS level`;
    await probe.end();
    if (row?.level !== 'logical') {
      dir = serverDir('rowgate-wal-pg-');
      server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: false });
      serverUrl = server.url;
    }
    const admin = connect(serverUrl, { max: 1 });
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.end();
    db.url = withDatabase(serverUrl, name);
    db.sql = connect(db.url, { max: 4, connection: { jit: 'off', application_name: 'test-runner' } });
  });
  afterAll(async () => {
    await db.sql?.end({ timeout: 5 });
    const admin = connect(serverUrl, { max: 1 });
    await dropSlots(admin, name);
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return db;
}
