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
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  return db;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
