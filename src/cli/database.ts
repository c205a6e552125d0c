import type { Config } from '../config/index.ts';
import { databaseAddress, openDatabase, type Database, type Settings } from '../db/index.ts';

/**
 * Opens the config's database for a command and says on stderr which one it is (host:port/db,
 * never the password), so nobody checks an empty embedded database believing it is theirs.
 */
export async function openForCommand(config: Config, options: { handleSignals?: boolean } & Settings = {}): Promise<Database> {
  const db = await openDatabase(config.database.url, options);
  process.stderr.write(`rowgate: database ${describeDatabase(db)}\n`);
  return db;
}

export function describeDatabase(db: Database, env: NodeJS.ProcessEnv = process.env): string {
  const address = databaseAddress(db.url);
  if (!db.embedded) return `${address} (from ${env['DATABASE_URL'] ? 'DATABASE_URL' : 'database.url in the config'})`;
  const by = db.embedded.startedBy === 'this process' ? 'started for this command' : `already running as PostgreSQL process ${db.embedded.startedBy.pid} (npm start?)`;
  return `${address}: no DATABASE_URL or database.url is set, so this is the embedded demo database in ${db.embedded.dataDir}, ${by}`;
}
