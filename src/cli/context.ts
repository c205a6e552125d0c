import { loadConfig, DEFAULT_CONFIG_PATH, type Config } from '../config/index.ts';
import { readCatalog, type Catalog, type Database } from '../db/index.ts';
import { openForCommand } from './database.ts';
import { checkedRules, formatProblem, loadParser, type CompiledRules } from '../rules/index.ts';

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
    const rules = await checkedRules(db.sql, config, catalog);
    return { config, db, catalog, rules };
  } catch (err) {
    await db.close();
    throw err;
  }
}

/**
 * Without a `claims` list, each rule parameter other than `:sender`, for `check` and `serve` to
 * print: a misspelt `:sendr` is a claim no token carries, null, and its rule quietly matches nothing.
 */
export function undeclaredClaimWarnings(config: Config, rules: CompiledRules): string[] {
  if (config.claims) return [];
  const hint = (name: string, effect: string) =>
    `A token without "${name}" makes it null, which ${effect}. If tokens carry it, list it: "claims": ["${name}"] (a parameter not listed is then an error); else fix the name (:sender is the caller).`;
  const message = (name: string) => `:${name} is read from the caller's token, and the config declares no "claims"`;
  return [
    ...rules.claimUses().map(({ name, site, position }) => `rowgate: warning: ${formatProblem({ site, position, message: message(name), hint: hint(name, 'matches nothing') })}`),
    ...rules.presetClaims().map(({ name, where }) => `rowgate: warning: ${formatProblem({ site: null, position: null, message: `${where}: ${message(name)}`, hint: hint(name, 'the preset writes') })}`),
  ];
}
