import postgres from 'postgres';
import { EMBEDDED_DATA_DIR, runningEmbedded, startEmbedded, type EmbeddedServer } from './embedded.ts';

export type Sql = postgres.Sql;

/** `application_name` of the live engine's pool (database.livePoolSize). */
export const LIVE_APPLICATION_NAME = 'rowgate-live';

export interface Database {
  sql: Sql;
  url: string;
  /** The embedded server's data directory and whether this process started it; null for a given url. */
  embedded: { dataDir: string; startedBy: 'this process' | { pid: number } } | null;
  /** Closes the pool and, when this process started the server, stops it. */
  close(): Promise<void>;
}

export interface Settings {
  /** `statement_timeout` of every statement on the pool (limits.statementTimeoutMs); 0 = none. */
  statementTimeoutMs?: number;
  /** `application_name` of the pool's connections (pg_stat_activity tells the pools apart); default `rowgate`. */
  applicationName?: string;
}

export function connect(url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}, settings: Settings = {}): Sql {
  const timeout = settings.statementTimeoutMs ? { statement_timeout: settings.statementTimeoutMs } : {};
  return postgres(url, {
    max: 10,
    onnotice: () => {},
    // Compiled visibility nests EXISTS inside OR; on small, unanalysed tables the planner's cost
    // estimates switch JIT on and a 1 ms query takes 200 ms compiling. Gateway queries are short.
    // application_name tells the gateway's connections apart (pg_stat_activity, fault tests).
    connection: { jit: 'off', application_name: settings.applicationName ?? 'rowgate', ...timeout },
    ...options,
  });
}

/** Where `url` points, for people: host:port/database, never the user or password. */
export function databaseAddress(url: string): string {
  try {
    const u = new URL(url);
    const host = u.hostname || (u.searchParams.get('host') ?? 'localhost');
    return `${host}:${u.port || '5432'}${u.pathname.length > 1 ? u.pathname : '/'}`;
  } catch {
    return '(an unparsable database URL)';
  }
}

/**
 * The one way the gateway reaches PostgreSQL: `url` when given (DATABASE_URL or the config),
 * otherwise the embedded server whose data lives in `./.rowgate/pgdata`: the one another process
 * (`npm start`) already runs there, else one started for this process.
 */
export async function openDatabase(url: string | null, options: { handleSignals?: boolean } & Settings = {}): Promise<Database> {
  let embedded: EmbeddedServer | null = null;
  let where: Database['embedded'] = null;
  const running = url ? null : runningEmbedded();
  if (running) {
    url = running.url;
    where = { dataDir: EMBEDDED_DATA_DIR, startedBy: { pid: running.pid } };
  } else if (!url) {
    embedded = await startEmbedded({ persistent: true });
    where = { dataDir: EMBEDDED_DATA_DIR, startedBy: 'this process' };
    url = embedded.url;
    const stop = embedded.stop;
    // Stop the child server even when the process is interrupted, unless the caller (`serve`)
    // shuts down on signals itself and closes the database last.
    for (const signal of options.handleSignals === false ? [] : (['SIGINT', 'SIGTERM'] as const)) {
      process.once(signal, () => {
        void stop().finally(() => process.exit(130));
      });
    }
  }
  const sql = connect(url, {}, options);
  return {
    sql,
    url,
    embedded: where,
    close: async () => {
      await sql.end({ timeout: 5 });
      await embedded?.stop();
    },
  };
}

const CONNECTION_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', '57P01', '57P02', '57P03']);

/** True for errors that say the connection (not the statement) failed: retrying can succeed. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (CONNECTION_CODES.has(code) || code.startsWith('08'));
}

/**
 * Runs `task`, retrying with backoff (50 ms doubling to 2 s, for up to `forMs`) while it fails
 * because the database connection dropped; postgres.js opens a new connection on the next query.
 */
export async function retryOnDisconnect<T>(task: () => Promise<T>, forMs = 30_000): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let wait = 50; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      return await task();
    } catch (err) {
      if (!isConnectionError(err) || Date.now() + wait > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}
