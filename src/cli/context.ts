import { loadConfig, DEFAULT_CONFIG_PATH, type Config } from '../config/index.ts';
import { readCatalog, type Catalog, type Database } from '../db/index.ts';
import { openForCommand } from './database.ts';
import { compileRules, loadParser, verifyRules, type CompiledRules } from '../rules/index.ts';

export interface Loaded {
  config: Config;
  db: Database;
  catalog: Catalog;
  rules: CompiledRules;
}

/**
 * What every command that touches the database needs: the config, a connection (or the
 * embedded server), the catalog, and the rules compiled and checked against it.
 * Throws ConfigError or RuleConfigError (with every problem) when something is wrong.
 */
export async function loadAll(
  configPath: string = DEFAULT_CONFIG_PATH,
  options: { handleSignals?: boolean; prepare?: (db: Database, config: Config) => Promise<void>; env?: NodeJS.ProcessEnv } = {},
): Promise<Loaded> {
  const config = await loadConfig(configPath, options.env);
  const db = await openForCommand(config, {
    ...(options.handleSignals === undefined ? {} : { handleSignals: options.handleSignals }),
    statementTimeoutMs: config.limits.statementTimeoutMs,
  });
  try {
    // The demo creates its tables here, before the catalog is read.
    await options.prepare?.(db, config);
    await loadParser();
    const catalog = await readCatalog(db.sql, config.database.schema);
    const rules = compileRules(config, catalog);
    await verifyRules(db.sql, rules);
    return { config, db, catalog, rules };
  } catch (err) {
    await db.close();
    throw err;
  }
}
