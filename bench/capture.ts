// npm run bench:capture — what change capture costs writers (bench/README.md). Side by side in one
// run: no capture, trigger capture, WAL capture, each with a change feed consuming as a gateway
// does; pgbench writes single-row updates, single-row inserts and 10k-row batches with 4 and 16
// connections. Prints tps, p50/p99 commit latency and the ratio to "no capture", and the CPU the
// walsender (decoding) used.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCapture, startChangeFeed, type ChangeFeed } from '../src/db/changes/index.ts';
import { connect, startEmbedded, type EmbeddedServer } from '../src/db/index.ts';

const SECONDS = Number(process.env['BENCH_DURATION'] ?? 8);
const BATCH_SECONDS = Number(process.env['BENCH_BATCH_DURATION'] ?? 4);
const ROWS = 100_000;
type Mode = 'none' | 'triggers' | 'wal';
const MODES: Mode[] = ['none', 'triggers', 'wal'];
const WORKLOADS = {
  'update 1 row': `\\set id random(1, ${ROWS})\nUPDATE t SET v = v + 1 WHERE id = :id;\n`,
  'insert 1 row': `INSERT INTO ins (v, name) VALUES (1, 'x');\n`,
  'insert 10k rows': `INSERT INTO ins (v, name) SELECT g, 'x' FROM generate_series(1, 10000) AS g;\n`,
} as const;
type Workload = keyof typeof WORKLOADS;
const CONNECTIONS = [4, 16];

interface Cell { tps: number; p50: number; p99: number; walsenderCpu: number | null; drainMs: number | null }

const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'rowgate-bench-capture-'));
  chmodSync(work, 0o755); // the embedded server runs as another user and needs to reach its data dir
  let server: EmbeddedServer | null = null;
  let base = process.env['DATABASE_URL'];
  if (!base) {
    server = await startEmbedded({ dataDir: join(work, 'data'), persistent: false });
    base = server.url;
  }
  console.log(`load before: ${uptime()}`);
  const results = new Map<string, Cell>();
  try {
    for (const mode of MODES) {
      const url = await freshDatabase(base, `rowgate_bench_capture_${mode}`);
      const sql = connect(url, { max: 4 });
      try {
        if (mode !== 'none') {
          const report = await installCapture(sql, 'public', ['t', 'ins'], mode);
          if (report.mode !== mode) throw new Error(`asked for ${mode} capture, got ${report.mode}`);
        }
        for (const [workload, script] of Object.entries(WORKLOADS) as [Workload, string][]) {
          for (const clients of CONNECTIONS) {
            const feed = mode === 'none' ? null : await startChangeFeed({ url, sql, schema: 'public', retentionHours: 24, onLog: () => {} });
            let consumed = 0;
            feed?.onChanges((b) => void (consumed += b.changes.length));
            if (feed) await settle(feed);
            const cell = await runCell(url, mode, script, clients, workload === 'insert 10k rows' ? BATCH_SECONDS : SECONDS, work, feed);
            results.set(`${mode}|${workload}|${clients}`, cell);
            console.log(`${mode.padEnd(8)} ${workload.padEnd(16)} c=${String(clients).padEnd(2)} ${cell.tps.toFixed(0).padStart(7)} tps  p50 ${cell.p50.toFixed(2)} ms  p99 ${cell.p99.toFixed(2)} ms${feed ? `  consumed ${consumed}` : ''}`);
            await feed?.close();
            await sql.unsafe(`TRUNCATE ins${mode === 'none' ? '' : ', rowgate.change_log'}`);
          }
        }
      } finally {
        await sql.end({ timeout: 5 });
      }
    }
  } finally {
    console.log(`load after:  ${uptime()}`);
    if (server) await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
  printTable(results);
}

async function freshDatabase(base: string, name: string): Promise<string> {
  const admin = connect(base, { max: 1 });
  await admin.unsafe(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '${name}'`);
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  const url = u.toString();
  const sql = connect(url, { max: 1 });
  await sql.unsafe(`
    CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, name text NOT NULL, at timestamptz NOT NULL DEFAULT now());
    INSERT INTO t (id, v, name) SELECT g, 0, 'name ' || g FROM generate_series(1, ${ROWS}) AS g;
    CREATE TABLE ins (id bigserial PRIMARY KEY, v int NOT NULL, name text NOT NULL, at timestamptz NOT NULL DEFAULT now());`);
  await sql.unsafe('VACUUM ANALYZE t');
  await sql.end();
  return url;
}

/** Waits until the feed has delivered everything committed so far (its reader caught up). */
async function settle(feed: ChangeFeed): Promise<number> {
  const started = performance.now();
  await feed.poll();
  return performance.now() - started;
}

async function runCell(url: string, mode: Mode, script: string, clients: number, seconds: number, work: string, feed: ChangeFeed | null): Promise<Cell> {
  const file = join(work, 'script.sql');
  writeFileSync(file, script);
  const prefix = join(work, `log-${mode}-${clients}-${Date.now()}`);
  const walsender = mode === 'wal' ? await walsenderPid(url) : null;
  const cpuBefore = walsender ? cpuSeconds(walsender) : null;
  const run = spawnSync('pgbench', ['-n', '-c', String(clients), '-j', String(Math.min(clients, 4)), '-T', String(seconds), '-f', file, '-l', `--log-prefix=${prefix}`, url], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`pgbench failed: ${run.stderr}`);
  const cpuAfter = walsender ? cpuSeconds(walsender) : null;
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(run.stdout)?.[1] ?? NaN);
  const latencies: number[] = [];
  const dir = join(prefix, '..');
  const stem = prefix.slice(dir.length + 1);
  for (const f of readdirSync(dir).filter((n) => n.startsWith(stem))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (Number.isFinite(us) && line) latencies.push(us / 1000);
    }
    rmSync(join(dir, f));
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  const drainMs = feed ? await settle(feed) : null;
  return { tps, p50: at(0.5), p99: at(0.99), walsenderCpu: cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null, drainMs };
}

async function walsenderPid(url: string): Promise<number | null> {
  const sql = connect(url, { max: 1 });
  try {
    for (let i = 0; i < 100; i++) {
      const [row] = await sql<{ pid: number | null }[]>`SELECT active_pid AS pid FROM pg_replication_slots WHERE database = current_database()`;
      if (row?.pid) return row.pid;
      await new Promise((r) => setTimeout(r, 50));
    }
    return null;
  } finally {
    await sql.end();
  }
}

/** utime + stime of a process, in seconds (/proc/<pid>/stat, clock ticks of 100 Hz). */
function cpuSeconds(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

function printTable(results: Map<string, Cell>): void {
  console.log('\nworkload         conns | none tps  p50/p99 ms     | triggers tps  p50/p99 ms   ratio | wal tps  p50/p99 ms   ratio  walsender CPU  drain');
  for (const workload of Object.keys(WORKLOADS) as Workload[]) {
    for (const clients of CONNECTIONS) {
      const none = results.get(`none|${workload}|${clients}`)!;
      const trig = results.get(`triggers|${workload}|${clients}`)!;
      const wal = results.get(`wal|${workload}|${clients}`)!;
      const lat = (c: Cell) => `${c.p50.toFixed(2)}/${c.p99.toFixed(2)}`.padEnd(13);
      const duration = workload === 'insert 10k rows' ? BATCH_SECONDS : SECONDS;
      const cpu = wal.walsenderCpu === null ? '-' : `${wal.walsenderCpu.toFixed(2)} s (${((100 * wal.walsenderCpu) / duration).toFixed(0)} % of a core)`;
      console.log(
        `${workload.padEnd(16)} ${String(clients).padStart(5)} | ${none.tps.toFixed(0).padStart(8)}  ${lat(none)} | ${trig.tps.toFixed(0).padStart(12)}  ${lat(trig)} ${(trig.tps / none.tps).toFixed(2).padStart(5)} | ${wal.tps.toFixed(0).padStart(7)}  ${lat(wal)} ${(wal.tps / none.tps).toFixed(2).padStart(5)}  ${cpu.padEnd(22)} ${wal.drainMs === null ? '-' : `${wal.drainMs.toFixed(0)} ms`}`,
      );
    }
  }
  console.log('\nratio: tps / tps of no capture. walsender CPU: the decoding backend during the run. drain: from the end of the run until the feed had every change (WAL).');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
