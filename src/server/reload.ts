import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { capturedTables } from '../cli/capture.ts';
import { ConfigError, loadConfig, type Config } from '../config/index.ts';
import { DDL_CHANNEL, installCapture, installDdlNotice } from '../db/changes/index.ts';
import { readCatalog, type Catalog, type Sql } from '../db/index.ts';
import type { ChangeSource, LiveEngine } from '../live/index.ts';
import { checkedRules, RuleConfigError, type CompiledRules } from '../rules/index.ts';
import { buildApi } from '../schema/index.ts';
import { createAuthenticator, noAuthenticationWarning } from './auth.ts';
import type { Gateway, ReloadOutcome } from './http.ts';
import type { Logger } from './log.ts';

/**
 * Reloading the config and the catalog while serving (SIGHUP, `serve --watch`; docs/configuration.md).
 * A reload builds a whole new schema and live engine beside the running ones and swaps them in only
 * when everything loaded, compiled and verified: until then, and after any failure, the old schema
 * is served as if nothing happened. Sockets stay open; subscriptions on the old engine go on unless
 * the reload changed a table or view they read (engine.ts `retire`). Secrets, keys and most limits
 * are applied too (HOT_KEYS); the keys that need a restart are named in the log.
 */

/** What a schema was built from, and the engine behind its subscriptions. */
export interface Served {
  config: Config;
  catalog: Catalog;
  rules: CompiledRules;
  live: LiveEngine | null;
}

export interface ReloaderOptions {
  configPath: string;
  /** The queries' pool (catalog, rule checks, capture install). */
  sql: Sql;
  /** The live engine's pool. */
  liveSql: Sql;
  changes: ChangeSource;
  /** The capture the feed follows (resolved at startup): a reload installs the same one. */
  captureMode?: 'wal' | 'triggers';
  gateway: Gateway;
  logger: Logger;
  served: Served;
}

export interface Reloader {
  /** Reloads now (after any reload still running); resolves with the outcome, never rejects. */
  reload(reason: string): Promise<ReloadOutcome>;
  /** What is served now. */
  served(): Served;
  /** Closes every live engine, the current one and those of earlier schemas (at shutdown). */
  close(): void;
}

/**
 * What a reload does with each key of the config (the table in docs/configuration.md).
 * `tables` and `functions` build the schema. The HOT ones take effect at once too, without a
 * restart, as operators rotating a JWT secret or key, the admin secret, or a limit expect: `auth`
 * (whole: the authenticator is made again), `limits` but those below, and `log`. The others are read once when the gateway starts (pools, listeners, plugins,
 * the capture, the watcher); a reload that finds one changed keeps the running value and names it
 * in its log line (`needRestart`).
 */
const SCHEMA_KEYS = new Set(['tables', 'functions', '$schema']);
const HOT_KEYS = new Set(['auth', 'limits', 'log']);
/** Limits fixed at startup: the pools' statement_timeout, the prepared-statement budget, the WebSocket server's largest message. */
const RESTART_LIMITS = ['statementTimeoutMs', 'preparedStatements', 'maxBodyBytes'] as const;

/** The keys of `loaded` that differ from the running config and need a restart, as paths (`database`, `limits.maxBodyBytes`). */
function needingRestart(loaded: Config, running: Config): string[] {
  const differ = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);
  const keys = (Object.keys(loaded) as (keyof Config)[]).filter((k) => !SCHEMA_KEYS.has(k) && !HOT_KEYS.has(k) && differ(loaded[k], running[k]));
  return [...keys, ...RESTART_LIMITS.filter((k) => differ(loaded.limits[k], running.limits[k])).map((k) => `limits.${k}`)];
}

/** The config a reload serves: the file's schema and hot keys, the running values of the others. */
function nextConfig(loaded: Config, running: Config): Config {
  const limits = { ...loaded.limits };
  for (const k of RESTART_LIMITS) limits[k] = running.limits[k];
  return { ...running, tables: loaded.tables, functions: loaded.functions, auth: loaded.auth, limits, log: loaded.log };
}

export function createReloader(options: ReloaderOptions): Reloader {
  const { configPath, sql, gateway, logger } = options;
  let served = options.served;
  // Engines of earlier schemas that still run subscriptions: each later reload may end some of them.
  let retired: LiveEngine[] = [];
  let queue: Promise<unknown> = Promise.resolve();

  async function attempt(reason: string): Promise<ReloadOutcome> {
    try {
      const loaded = await loadConfig(configPath);
      const config = nextConfig(loaded, served.config);
      const needRestart = needingRestart(loaded, served.config);
      const applied = [...HOT_KEYS].filter((k) => JSON.stringify(config[k as keyof Config]) !== JSON.stringify(served.config[k as keyof Config]));
      // Made before anything is swapped: an auth section that cannot work fails the reload.
      const authenticator = createAuthenticator(config.auth);
      const catalog = await readCatalog(sql, config.database.schema);
      const rules = await checkedRules(sql, config, catalog);
      const changed = changedRelations(served, config, catalog);
      if (changed.size === 0 && applied.length === 0 && catalogKey(catalog) === catalogKey(served.catalog)) {
        logger.info({ reason, outcome: 'unchanged', ...(needRestart.length ? { needRestart } : {}) }, 'reload: nothing changed');
        return 'unchanged';
      }
      const built = buildApi({ config, catalog, rules, sql, liveSql: options.liveSql, changes: options.changes, ...(served.live ? { liveStats: served.live.stats } : {}) });
      try {
        // New tables (and those their rules read) are captured before anyone can subscribe to them.
        await installCapture(sql, config.database.schema, capturedTables(rules, catalog, Object.keys(config.tables)).tables, options.captureMode ?? 'triggers');
      } catch (err) {
        built.live?.close();
        throw err;
      }
      gateway.swap(built.schema, built.live, { config, authenticator });
      const warning = applied.includes('auth') ? noAuthenticationWarning(config.auth) : null;
      if (warning) logger.warn({ reason }, warning);
      if (served.live) retired.push(served.live);
      for (const engine of retired) engine.retire(changed);
      retired = retired.filter((engine) => !engine.isClosed);
      served = { config, catalog, rules, live: built.live };
      logger.info({ reason, outcome: 'applied', changed: [...changed].sort(), ...(applied.length ? { applied } : {}), ...(needRestart.length ? { needRestart } : {}) }, 'reload: serving the new schema');
      return 'applied';
    } catch (err) {
      // The config's and the rules' own messages say where the fault is (table, rule, line, column).
      const expected = err instanceof ConfigError || err instanceof RuleConfigError;
      logger.error({ reason, outcome: 'failed', error: err instanceof Error ? err.message : String(err), ...(expected ? {} : { err }) }, 'reload failed: still serving the previous schema');
      return 'failed';
    }
  }

  return {
    reload(reason) {
      const run = queue.then(() => attempt(reason));
      queue = run;
      return run.then((outcome) => {
        gateway.reloaded(outcome);
        return outcome;
      });
    },
    served: () => served,
    close() {
      for (const engine of retired) engine.close();
      served.live?.close();
    },
  };
}

/**
 * Tables and views whose config entry or catalog entry (columns and their types, keys, foreign
 * keys, a view's reads) differ, or that appeared or went, and tables whose computed fields'
 * functions were replaced (CREATE OR REPLACE: a new body computes other values); root functions
 * (`functions`) listed or unlisted, or replaced, by name. A subscription reading one of them ends.
 */
function changedRelations(before: Served, config: Config, catalog: Catalog): Set<string> {
  const names = new Set([...Object.keys(before.config.tables), ...Object.keys(config.tables), ...before.catalog.tables.keys(), ...catalog.tables.keys()]);
  const changed = new Set<string>();
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const computed = (served: { config: Config; catalog: Catalog }, table: string) => Object.values(served.config.tables[table]?.computedFields ?? {}).map((f) => definitions(served.catalog, f.function));
  const after = { config, catalog };
  for (const name of names) {
    const unchanged = same(before.config.tables[name], config.tables[name]) && same(before.catalog.tables.get(name), catalog.tables.get(name)) && same(computed(before, name), computed(after, name));
    if (!unchanged) changed.add(name);
  }
  for (const fn of new Set([...before.config.functions, ...config.functions])) {
    const listed = (c: Config) => c.functions.includes(fn);
    if (listed(before.config) !== listed(config) || !same(definitions(before.catalog, fn), definitions(catalog, fn))) changed.add(fn);
  }
  return changed;
}

/** The configured schema's functions named `name`, as the catalog describes them (digest included). */
function definitions(catalog: Catalog, name: string): unknown[] {
  return (catalog.functions.get(name) ?? []).filter((f) => f.schema === catalog.schema);
}

/** The whole catalog as text, to tell whether anything in it changed (maps as their entries). */
function catalogKey(catalog: Catalog): string {
  return JSON.stringify(catalog, (_key, value: unknown) => (value instanceof Map ? [...value.entries()] : value));
}

/** How long a burst of events (an editor's save, a migration's statements) is waited out before one reload. */
const DEBOUNCE_MS = 250;
export interface WatchOptions {
  configPath: string;
  sql: Sql;
  reloader: Reloader;
  logger: Logger;
  /** Without the DDL event trigger (not a superuser), the catalog is compared this often (`watch.catalogPollMs`). */
  pollMs: number;
}

/**
 * `serve --watch`: reloads when the config file changes and after DDL. The file's folder is
 * watched, not the file: editors that save by writing a new file and renaming it over the old one
 * would leave a watch on the old file with nothing to report. DDL is announced by an event trigger
 * (installDdlNotice) on DDL_CHANNEL; when it cannot be installed, the catalog is polled.
 * Returns the function that stops watching.
 */
export async function watchForReloads(options: WatchOptions): Promise<() => Promise<void>> {
  const { reloader, logger, sql } = options;
  const path = resolve(options.configPath);
  const file = basename(path);
  let timer: NodeJS.Timeout | null = null;
  const reasons = new Set<string>();
  const schedule = (reason: string) => {
    reasons.add(reason);
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      const why = [...reasons].join(', ');
      reasons.clear();
      void reloader.reload(why);
    }, DEBOUNCE_MS);
  };

  const watcher: FSWatcher = watch(dirname(path), (_event, name) => {
    // Some platforms do not name the file; then any change in the folder may be it.
    if (name === null || name === file) schedule('config file');
  });
  watcher.on('error', (err) => logger.error({ err }, 'watching the config file failed; SIGHUP still reloads'));

  let stopDdl: () => Promise<void>;
  if (await installDdlNotice(sql)) {
    let listened = false;
    const listening = await sql.listen(
      DDL_CHANNEL,
      () => schedule('ddl'),
      () => {
        // A reconnect after the first LISTEN: notifications sent while it was down are lost.
        if (listened) schedule('ddl listener reconnected');
        listened = true;
      },
    );
    stopDdl = () => listening.unlisten();
    logger.info({ config: path, ddl: 'event trigger' }, 'watching the config file and the catalog');
  } else {
    const { pollMs } = options;
    const poll = setInterval(() => {
      const { catalog } = reloader.served();
      readCatalog(sql, catalog.schema).then(
        (now) => {
          if (catalogKey(now) !== catalogKey(reloader.served().catalog)) schedule('catalog poll');
        },
        (err: unknown) => logger.warn({ err }, 'reading the catalog failed; will try again'),
      );
    }, pollMs);
    stopDdl = async () => clearInterval(poll);
    logger.warn({ config: path, ddl: 'polling', pollMs }, 'watching the config file; the DDL event trigger needs a superuser, so the catalog is compared every pollMs (watch.catalogPollMs)');
  }

  return async () => {
    watcher.close();
    if (timer) clearTimeout(timer);
    await stopDdl();
  };
}
