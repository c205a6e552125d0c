import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, inject } from 'vitest';
import { connect, readCatalog, type Catalog, type Sql } from '../../src/db/index.ts';

export interface TestDatabase {
  sql: Sql;
  url: string;
  catalog(schema?: string): Promise<Catalog>;
}

/** A database of this test file's own, created before its tests and dropped after them. */
export function useTestDatabase(): TestDatabase {
  const serverUrl = inject('databaseUrl');
  const name = `rowgate_t_${randomBytes(6).toString('hex')}`;
  const url = withDatabase(serverUrl, name);
  const db: TestDatabase = {
    sql: undefined as unknown as Sql,
    url,
    catalog: (schema = 'public') => readCatalog(db.sql, schema),
  };
  beforeAll(async () => {
    const admin = connect(serverUrl, { max: 1 });
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.end();
    // Named apart from the gateway's pools ('rowgate…'), so fault tests can kill those alone.
    db.sql = connect(url, { max: 4, connection: { jit: 'off', application_name: 'test-runner' } });
  });
  afterAll(async () => {
    await db.sql.end({ timeout: 5 });
    const admin = connect(serverUrl, { max: 1 });
    await dropSlots(admin, name);
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  return db;
}

/**
 * Which capture the test support installs: ROWGATE_TEST_CAPTURE (`wal`, `triggers`, `auto`), else
 * `triggers` (`rowgate serve`'s default is `auto`; CI runs the suite once per mode, each named).
 */
export function testCapture(): 'wal' | 'triggers' | 'auto' {
  const mode = process.env['ROWGATE_TEST_CAPTURE'] ?? 'triggers';
  if (mode !== 'wal' && mode !== 'triggers' && mode !== 'auto') throw new Error(`ROWGATE_TEST_CAPTURE must be wal, triggers or auto, not ${mode}`);
  return mode;
}

/** A database with a replication slot cannot be dropped: its slots go first (a reader still streaming is ended). */
export async function dropSlots(admin: Sql, database: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await admin`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = ${database} AND active_pid IS NOT NULL`;
      await admin`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = ${database}`;
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006' || attempt > 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
