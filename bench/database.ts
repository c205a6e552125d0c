import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, startEmbedded } from '../src/db/index.ts';

export interface BenchDatabase {
  /** The benchmark's own database (created empty). */
  url: string;
  /** `server_version` of the server, for the printed figures. */
  pgVersion: string;
  /** The embedded server's data directory; null with DATABASE_URL. */
  dataDir: string | null;
}

/**
 * The database a benchmark runs in: `database` on DATABASE_URL's server, else on an embedded
 * PostgreSQL in a temp dir (`tempPrefix…`), dropped first if it exists. Undoing it (dropping the
 * database unless BENCH_KEEP_DB=1, stopping the embedded server) is pushed onto `cleanup`.
 */
export async function openBenchDatabase(database: string, tempPrefix: string, cleanup: (() => Promise<void>)[], log: (line: string) => void): Promise<BenchDatabase> {
  let serverUrl = process.env['DATABASE_URL'];
  let dataDir: string | null = null;
  if (!serverUrl) {
    const dir = await mkdtemp(join(tmpdir(), tempPrefix));
    // The server runs as an unprivileged user when we are root; it must be able to enter the directory.
    await chmod(dir, 0o755);
    log(`starting embedded PostgreSQL in ${dir} …`);
    dataDir = join(dir, 'pgdata');
    const embedded = await startEmbedded({ dataDir, persistent: false });
    cleanup.push(async () => {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    });
    serverUrl = embedded.url;
  }
  const server = serverUrl;
  const admin = connect(server, { max: 1 });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${database}`);
  const [{ server_version: pgVersion } = { server_version: '?' }] = await admin.unsafe<{ server_version: string }[]>('SHOW server_version');
  await admin.end();
  if (process.env['BENCH_KEEP_DB'] !== '1') {
    cleanup.push(async () => {
      const a = connect(server, { max: 1 });
      await a.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await a.end();
    });
  }
  const url = new URL(server);
  url.pathname = `/${database}`;
  return { url: url.toString(), pgVersion, dataDir };
}

/**
 * Steps that undo what a benchmark set up, run in reverse order by `run()` at the end, or at
 * once on SIGINT (the process then exits 130).
 */
export function cleanupSteps(log: (line: string) => void): { steps: (() => Promise<void>)[]; run(): Promise<void> } {
  const steps: (() => Promise<void>)[] = [];
  const run = async () => {
    while (steps.length) await steps.pop()!().catch((e: unknown) => log(`cleanup: ${String(e)}`));
  };
  process.once('SIGINT', () => void run().finally(() => process.exit(130)));
  return { steps, run };
}
