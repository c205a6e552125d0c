/**
 * `npm run bench:fanout`: live-query fan-out. N graphql-ws subscribers with distinct identities
 * (u1…uN, one socket each) run `subscription { account { id name players { level score } } }` over
 * the demo's rules while a writer commits changes; the same gateway is measured with multiplexed
 * statements (limits.subscribersPerStatement = 1000) and per subscriber (= 1), side by side.
 * See bench/README.md for what is measured and how to read it.
 *
 * Environment: DATABASE_URL (else an embedded PostgreSQL in a temp dir), BENCH_FANOUT_SIZES
 * (1000,5000,10000), BENCH_FANOUT_MODES (1000,1: subscribersPerStatement values), BENCH_FANOUT_DURATION
 * (s of writing per run, 20), BENCH_FANOUT_ONE_ROW (s of one-row commits alone before it, 15), BENCH_FANOUT_DRAIN (s to wait for the gateway to catch up after the writer
 * stops, 30), BENCH_FANOUT_WIDE (accounts whose players one wide transaction updates, 200),
 * BENCH_ACCOUNTS (max size + 5000), BENCH_FANOUT_PROFILE=DIR (CPU profile of the gateway during the
 * largest multiplexed run's writing, summarised), BENCH_FANOUT_EXPLAIN=0 (skip EXPLAIN), BENCH_KEEP_DB=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config/index.ts';
import { connect, type Sql } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { openBenchDatabase } from './database.ts';
import { loadData } from './data.ts';
import type { ClientReport, ToClient } from './fanout-client.ts';
import { FANOUT_QUERY, SCORE_BASE } from './fanout-shared.ts';
import type { GatewayStats, ToGateway } from './fanout-gateway.ts';
import { summariseProfile } from './fanout-profile.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATABASE = 'rowgate_fanout';
const TARGET_P99_MS = 250;
const TARGET_RSS_BYTES = 20 * 1024;
const TARGET_SUBSCRIBERS_PER_STATEMENT = 1000;

const log = (line: string) => process.stderr.write(`${line}\n`);

function envList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`${name} must be a comma-separated list of positive integers, not "${raw}"`);
  return list;
}
function envInt(name: string, fallback: number): number {
  return envList(name, [fallback])[0]!;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU seconds used so far by process `pid` (user + system), from /proc. */
function processCpu(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
/** CPU seconds the whole machine has been busy (all cores). */
function machineCpu(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds of an embedded PostgreSQL: the postmaster, its live children (backends, walwriter …)
 * and the children that have exited (the postmaster's cutime/cstime). Null for a server we did not start.
 */
function postgresCpu(dataDir: string | null): number | null {
  if (!dataDir) return null;
  try {
    const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    let total = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue;
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pid = Number(entry);
      const ppid = Number(fields[1]);
      if (pid === postmaster) total += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      else if (ppid === postmaster) total += Number(fields[11]) + Number(fields[12]);
    }
    return total / 100;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes with an IPC channel

/** Subscribers opened and closed before the baseline is measured (see runOnce). */
const WARM_SUBSCRIBERS = 100;

interface Child {
  name: string;
  child: ChildProcess;
  request<T>(message: unknown, reply: string, timeoutMs: number): Promise<T>;
  stderr(): string;
}

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, readyType: string, timeoutMs = 120_000): Promise<{ child: Child; ready: Record<string, unknown> }> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const waiters = new Map<string, ((m: Record<string, unknown>) => void)[]>();
  proc.on('message', (raw) => {
    const m = raw as Record<string, unknown>;
    if (m['type'] === 'error') log(`${name}: ${String(m['message'])}`);
    const list = waiters.get(String(m['type']));
    const first = list?.shift();
    if (first) first(m);
  });
  const wait = <T>(type: string, ms: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no "${type}" within ${ms} ms\n${err.slice(-3000)}`)), ms);
      const onExit = (code: number | null) => reject(new Error(`${name} exited with ${code} while waiting for "${type}"\n${err.slice(-3000)}`));
      proc.once('exit', onExit);
      const list = waiters.get(type) ?? [];
      list.push((m) => {
        clearTimeout(timer);
        proc.off('exit', onExit);
        resolve(m as T);
      });
      waiters.set(type, list);
    });
  const child: Child = {
    name,
    child: proc,
    request: <T>(message: unknown, reply: string, ms: number) => {
      const answer = wait<T>(reply, ms);
      proc.send(message as never);
      return answer;
    },
    stderr: () => err,
  };
  return wait<Record<string, unknown>>(readyType, timeoutMs).then((ready) => ({ child, ready }));
}

async function stopChild(child: Child, message: unknown, graceMs: number): Promise<void> {
  const proc = child.child;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    if (proc.connected) proc.send(message as never);
  } catch {
    /* gone */
  }
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// The writer

interface Commit {
  seq: number;
  kind: 'name' | 'wide' | 'none';
  /** Account ids whose subscriber should receive this change (none for `none`). */
  targets: number[];
  at: number;
}

/**
 * Commits for `durationMs` (and at most 10,000 commits), one at a time on one connection:
 * - every 50–100 ms, one account's name → `n-<seq>-<epochms>` (one subscriber sees it);
 * - every 2 s, one transaction setting the score of `wide` accounts' players (that many subscribers; none when `wide` is 0);
 * - every 1 s, the name of an account nobody subscribed to (no subscriber sees it).
 */
async function write(sql: Sql, subscribers: number, accounts: number, admins: number, wide: number, durationMs: number, firstSeq: number): Promise<Commit[]> {
  const commits: Commit[] = [];
  const started = Date.now();
  let seq = firstSeq;
  let nextWide = started + 1000;
  let nextNone = started + 500;
  const random = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
  while (Date.now() - started < durationMs && commits.length < 10_000) {
    const now = Date.now();
    if (wide > 0 && now >= nextWide) {
      nextWide += 2000;
      const ids = new Set<number>();
      while (ids.size < Math.min(wide, subscribers)) ids.add(random(1, subscribers));
      const s = ++seq;
      const targets = [...ids].sort((a, b) => a - b);
      await sql.begin(async (tx) => {
        await tx.unsafe(`UPDATE player SET score = $1::bigint WHERE id = ANY($2::int[])`, [String(SCORE_BASE + s), targets]);
      });
      commits.push({ seq: s, kind: 'wide', targets, at: Date.now() });
    } else if (now >= nextNone && accounts - admins > subscribers) {
      nextNone += 1000;
      const s = ++seq;
      await sql.unsafe(`UPDATE account SET name = $1 WHERE id = $2`, [`n-${s}-${Date.now()}`, random(subscribers + 1, accounts - admins)]);
      commits.push({ seq: s, kind: 'none', targets: [], at: Date.now() });
    } else {
      const s = ++seq;
      const id = random(1, subscribers);
      await sql.unsafe(`UPDATE account SET name = $1 WHERE id = $2`, [`n-${s}-${Date.now()}`, id]);
      commits.push({ seq: s, kind: 'name', targets: [id], at: Date.now() });
    }
    await sleep(random(50, 100));
  }
  return commits;
}

// ---------------------------------------------------------------------------------------------
// One run: one gateway, N subscribers, one mode

interface RunResult {
  subscribers: number;
  perStatement: number;
  connected: number;
  connectMs: number;
  firstResults: number;
  subscribeMs: number;
  /** Gateway RSS / heap (after GC): before any socket, with N idle sockets, with N idle subscriptions. */
  rss0: number;
  rss1: number;
  rss2: number;
  heap0: number;
  heap1: number;
  heap2: number;
  commits: number;
  commitsByKind: Record<string, number>;
  writeSeconds: number;
  /** Deliveries expected (sum of the commits' subscribed targets), received, and latencies (ms). */
  expected: number;
  delivered: number;
  unexpected: number;
  latencies: number[];
  latenciesByKind: Record<string, number[]>;
  /** Expected deliveries of commits made during writing that had not arrived when the writer stopped. */
  backlogAtStop: number;
  /** From the writer's stop to the last delivery (ms). */
  drainMs: number;
  drainCapped: boolean;
  statements: number;
  /** Statements during writing + drain, and the engine's DB wall time (ms) and rows returned. */
  liveDbMs: number;
  liveRows: number;
  gatewayCpuWrite: number;
  gatewayCpuTotal: number;
  clientCpu: number;
  /** Everything else on the machine (PostgreSQL included, and whatever else runs there). */
  otherCpu: number;
  /** The embedded PostgreSQL's processes alone (null with DATABASE_URL). */
  pgCpu: number | null;
  wallSeconds: number;
  loopDelayMax: number;
  leaks: number;
  leakSamples: string[];
  errors: number;
  errorSamples: string[];
  ended: number;
  /** Subscribers whose last result differs from the database at the end (or who never got one). */
  stale: number;
  staleSamples: string[];
  statementForExplain: { text: string; values: unknown[]; subscribers: number } | null;
  profile: string | null;
  /** The one-row phase before the mixed writing: its commits (name and none only), statements and latencies. */
  oneRow: { commits: number; statements: number; expected: number; latencies: number[]; drainCapped: boolean };
  /** 1-minute load average at the start and at the end of the run. */
  load: [number, number];
}

async function runOnce(opts: {
  n: number;
  perStatement: number;
  benchUrl: string;
  demo: Record<string, unknown>;
  configDir: string;
  sql: Sql;
  accounts: number;
  admins: number;
  wide: number;
  durationMs: number;
  oneRowMs: number;
  drainMs: number;
  firstSeq: number;
  profileDir: string | null;
  childEnv: NodeJS.ProcessEnv;
  extraLimits: Record<string, number>;
  pgDataDir: string | null;
}): Promise<RunResult> {
  const { n, perStatement, sql } = opts;
  const loadAtStart = loadavg()[0]!;
  const label = `N=${n} per-statement=${perStatement}`;
  const configPath = join(opts.configDir, `fanout-${n}-${perStatement}.json`);
  const limits = { ...((opts.demo['limits'] as object | undefined) ?? {}), ...opts.extraLimits, subscribersPerStatement: perStatement, maxSubscriptionsPerSocket: 100 };
  await writeFile(configPath, JSON.stringify({ ...opts.demo, database: { url: opts.benchUrl }, limits }, null, 2));

  log(`${label}: starting the gateway …`);
  const { child: gateway, ready } = await startChild(
    'gateway',
    ['--expose-gc', '--max-old-space-size=8192', '--import', 'tsx', 'bench/fanout-gateway.ts', configPath],
    opts.childEnv,
    'listening',
  );
  const url = String(ready['url']);
  const { child: client } = await startChild('client', ['--max-old-space-size=8192', '--import', 'tsx', 'bench/fanout-client.ts'], opts.childEnv, 'ready');
  const stats = (gc = false) => gateway.request<GatewayStats>({ type: 'stats', gc } satisfies ToGateway, 'stats', 30_000);
  try {
    // Warm the GraphQL path once over HTTP, so the baseline includes code every run needs anyway.
    const config = parseConfig({ ...opts.demo, database: { url: opts.benchUrl } }, {});
    const token = await signToken(config, { sender: 'u1', expires: '1h' });
    const warm = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: FANOUT_QUERY.replace(/^subscription/, 'query') }),
    });
    if (warm.status !== 200) throw new Error(`warm-up query: HTTP ${warm.status} ${await warm.text()}`);
    await warm.text();
    // And the subscription path, with a few sockets that then go: the code it compiles and the
    // connections the engine opens are paid once, not per subscriber, so they belong in the
    // baseline, and RSS per subscriber is what each one adds.
    const { child: warmClient } = await startChild('warm-up client', ['--import', 'tsx', 'bench/fanout-client.ts'], opts.childEnv, 'ready');
    try {
      await warmClient.request({ type: 'connect', url, configPath, count: WARM_SUBSCRIBERS, concurrency: 16, timeoutMs: 60_000 } satisfies ToClient, 'connected', 70_000);
      await warmClient.request({ type: 'subscribe', timeoutMs: 60_000 } satisfies ToClient, 'subscribed', 70_000);
      await warmClient.request({ type: 'close' } satisfies ToClient, 'closed', 30_000);
    } finally {
      await stopChild(warmClient, { type: 'close' }, 5_000);
    }
    while ((await stats()).subscriptions > 0) await sleep(100);

    const s0 = await stats(true);
    log(`${label}: connecting ${n} sockets …`);
    const connected = await client.request<{ connected: number; failed: number; ms: number; failures: string[] }>(
      { type: 'connect', url, configPath, count: n, concurrency: 64, timeoutMs: 180_000 } satisfies ToClient,
      'connected',
      200_000,
    );
    if (connected.failed > 0) log(`${label}: ${connected.failed} sockets failed: ${connected.failures.join('; ')}`);
    await sleep(500);
    const s1 = await stats(true);
    log(`${label}: ${connected.connected} sockets in ${connected.ms} ms; subscribing …`);
    const subscribed = await client.request<{ firstResults: number; ms: number }>({ type: 'subscribe', timeoutMs: 300_000 } satisfies ToClient, 'subscribed', 320_000);
    log(`${label}: ${subscribed.firstResults} first results in ${subscribed.ms} ms`);
    // Idle: wait until the engine runs no more statements (bounded).
    let last = (await stats()).statements;
    for (let i = 0; i < 60; i++) {
      await sleep(500);
      const now = (await stats()).statements;
      if (now === last) break;
      last = now;
    }
    const s2 = await stats(true);

    await client.request({ type: 'mark' } satisfies ToClient, 'marked', 30_000);
    // Drain: until the engine has been idle for 1 s, at most drainMs after `from`. True when capped.
    const drain = async (from: number): Promise<boolean> => {
      let idleSince = Date.now();
      let prev = (await stats()).statements;
      while (Date.now() - from < opts.drainMs) {
        await sleep(250);
        const now = (await stats()).statements;
        if (now !== prev) {
          prev = now;
          idleSince = Date.now();
        } else if (Date.now() - idleSince >= 1000) return false;
      }
      return true;
    };

    // One-row commits alone (a name seen by one subscriber, or by nobody): the statements they cost.
    log(`${label}: one-row commits for ${opts.oneRowMs / 1000} s …`);
    const o0 = await stats();
    const oneRowCommits = await write(sql, n, opts.accounts, opts.admins, 0, opts.oneRowMs, opts.firstSeq);
    const oneRowCapped = await drain(Date.now());
    const o1 = await stats();
    const firstSeq = opts.firstSeq + oneRowCommits.length + 10;

    const profiling = opts.profileDir !== null;
    if (profiling) await gateway.request({ type: 'profile-start' } satisfies ToGateway, 'profile-started', 30_000);
    const w0 = await stats();
    const machine0 = machineCpu();
    const pg0 = postgresCpu(opts.pgDataDir);
    const client0 = processCpu(client.child.pid);
    const self0 = process.cpuUsage();
    log(`${label}: writing for ${opts.durationMs / 1000} s …`);
    const writeStarted = Date.now();
    const commits = await write(sql, n, opts.accounts, opts.admins, opts.wide, opts.durationMs, firstSeq);
    const writeStopped = Date.now();
    const w1 = await stats();
    let profile: string | null = null;
    if (profiling) {
      const file = join(opts.profileDir!, `gateway-${n}-${perStatement}.cpuprofile`);
      await gateway.request({ type: 'profile-stop', file } satisfies ToGateway, 'profile-stopped', 60_000);
      profile = file;
    }

    log(`${label}: ${commits.length} commits; waiting for the gateway to catch up (≤ ${opts.drainMs / 1000} s) …`);
    const drainCapped = await drain(writeStopped);
    const w2 = await stats();
    const machine1 = machineCpu();
    const pg1 = postgresCpu(opts.pgDataDir);
    const clientCpu = processCpu(client.child.pid) - client0;
    const selfUsage = process.cpuUsage(self0);
    const wallSeconds = (Date.now() - writeStarted) / 1000;
    const report = await client.request<ClientReport>({ type: 'report' } satisfies ToClient, 'report', 60_000);
    const statement = opts.perStatement > 1 ? (await gateway.request<{ statement: RunResult['statementForExplain'] }>({ type: 'last-statement' }, 'last-statement', 30_000)).statement : null;

    // Latencies: each delivery against the commit that carried its value.
    const bySeq = new Map([...oneRowCommits, ...commits].map((c) => [c.seq, c]));
    const oneRowSeqs = new Set(oneRowCommits.map((c) => c.seq));
    const oneRowLatencies: number[] = [];
    const latencies: number[] = [];
    const latenciesByKind: Record<string, number[]> = { name: [], wide: [] };
    let unexpected = 0;
    let lastDelivery = writeStopped;
    let backlogAtStop = 0;
    const deliveredKeys = new Set<string>();
    for (const [index, , seq, at] of report.deliveries) {
      const commit = bySeq.get(seq);
      if (!commit || !commit.targets.includes(index + 1)) {
        unexpected++;
        continue;
      }
      if (oneRowSeqs.has(seq)) {
        oneRowLatencies.push(at - commit.at);
        continue;
      }
      deliveredKeys.add(`${seq}:${index}`);
      latencies.push(at - commit.at);
      latenciesByKind[commit.kind]!.push(at - commit.at);
      if (at > lastDelivery) lastDelivery = at;
      if (at > writeStopped) backlogAtStop++;
    }
    const expected = commits.reduce((a, c) => a + c.targets.length, 0);
    // Expected but never delivered (coalesced or still pending) also counted as backlog at the stop.
    backlogAtStop += expected - deliveredKeys.size;

    // Misses: each subscriber's last result against the database.
    const rows = await sql.unsafe<{ id: number; name: string; score: string }[]>(
      `SELECT a.id, a.name, p.score::text AS score FROM account a JOIN player p ON p.id = a.id WHERE a.id <= $1 ORDER BY a.id`,
      [n],
    );
    let stale = 0;
    const staleSamples: string[] = [];
    for (const row of rows) {
      const final = report.finals[row.id - 1];
      if (!final || final[0] !== row.name || final[1] !== row.score) {
        stale++;
        if (staleSamples.length < 5) staleSamples.push(`u${row.id}: got ${JSON.stringify(final)}, database has ${JSON.stringify([row.name, row.score])}`);
      }
    }
    const commitsByKind: Record<string, number> = {};
    for (const c of commits) commitsByKind[c.kind] = (commitsByKind[c.kind] ?? 0) + 1;
    const gatewayCpuWrite = (w1.cpuUser + w1.cpuSystem - w0.cpuUser - w0.cpuSystem) / 1e6;
    const gatewayCpuTotal = (w2.cpuUser + w2.cpuSystem - w0.cpuUser - w0.cpuSystem) / 1e6;
    const self = (selfUsage.user + selfUsage.system) / 1e6;
    log(`${label}: done (${latencies.length}/${expected} deliveries, ${stale} stale, ${report.leaks} leaks)`);
    return {
      subscribers: n,
      perStatement,
      connected: connected.connected,
      connectMs: connected.ms,
      firstResults: subscribed.firstResults,
      subscribeMs: subscribed.ms,
      rss0: s0.rss,
      rss1: s1.rss,
      rss2: s2.rss,
      heap0: s0.heapUsed,
      heap1: s1.heapUsed,
      heap2: s2.heapUsed,
      commits: commits.length,
      commitsByKind,
      writeSeconds: (writeStopped - writeStarted) / 1000,
      expected,
      delivered: latencies.length,
      unexpected,
      latencies,
      latenciesByKind,
      backlogAtStop,
      drainMs: lastDelivery - writeStopped,
      drainCapped,
      statements: w2.statements - w0.statements,
      liveDbMs: w2.liveDbMs - w0.liveDbMs,
      liveRows: w2.liveRows - w0.liveRows,
      gatewayCpuWrite,
      gatewayCpuTotal,
      clientCpu,
      otherCpu: Math.max(0, machine1 - machine0 - gatewayCpuTotal - clientCpu - self),
      pgCpu: pg0 !== null && pg1 !== null ? pg1 - pg0 : null,
      wallSeconds,
      loopDelayMax: Math.max(w1.loopDelayMax, w2.loopDelayMax),
      leaks: report.leaks,
      leakSamples: report.leakSamples,
      errors: report.errors,
      errorSamples: report.errorSamples,
      ended: report.ended,
      stale,
      staleSamples,
      statementForExplain: statement,
      profile,
      oneRow: {
        commits: oneRowCommits.length,
        statements: o1.statements - o0.statements,
        expected: oneRowCommits.reduce((a, c) => a + c.targets.length, 0),
        latencies: oneRowLatencies,
        drainCapped: oneRowCapped,
      },
      load: [loadAtStart, loadavg()[0]!],
    };
  } finally {
    await stopChild(client, { type: 'close' } satisfies ToClient, 30_000);
    await stopChild(gateway, { type: 'stop' } satisfies ToGateway, 30_000);
  }
}

// ---------------------------------------------------------------------------------------------
// Output

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const fmt = (v: number | null, digits = 0) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits));

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

const modeName = (perStatement: number) => (perStatement === 1 ? 'per-subscriber (1)' : `multiplexed (${perStatement})`);

async function explain(sql: Sql, statement: NonNullable<RunResult['statementForExplain']>): Promise<void> {
  console.log('');
  console.log(`EXPLAIN (ANALYZE, BUFFERS) of the last multiplexed statement (${statement.subscribers} subscribers):`);
  console.log(statement.text.replace(/\s+/g, ' ').slice(0, 4000));
  const run = (text: string, prefix = '') =>
    sql.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL jit = off`);
      return tx.unsafe<Record<string, string>[]>(`${prefix}${text}`, statement.values as never[]);
    });
  const plan = await run(statement.text, 'EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ');
  console.log(plan.map((r) => r['QUERY PLAN']).join('\n'));

  // The planner pulls the LATERAL projections up, so `v` (the whole JSON subquery) is evaluated once
  // per reference: md5(), and the CASE. OFFSET 0 keeps t0 a subquery: the JSON is built once per subscriber.
  // A proposal for src/live/live-query.ts, measured here on the same values; results must be identical.
  const marker = "AS text) AS t0";
  if (!statement.text.includes(marker)) return;
  const once = statement.text.replace(marker, "AS text OFFSET 0) AS t0");
  const timed = async (text: string) => {
    const times: number[] = [];
    let rows: Record<string, string>[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      rows = await run(text);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return { ms: times[2]!, rows: rows.map((r) => `${r['sid']} ${r['hash']} ${r['result'] ?? ''}`).sort() };
  };
  const a = await timed(statement.text);
  const b = await timed(once);
  const same = a.rows.length === b.rows.length && a.rows.every((r, i) => r === b.rows[i]);
  console.log('');
  console.log(
    `the same statement with the JSON built once per subscriber (t0 kept as a subquery with OFFSET 0): ` +
      `${a.ms.toFixed(1)} ms → ${b.ms.toFixed(1)} ms (median of 5, ${statement.subscribers} subscribers); results ${same ? 'identical' : 'DIFFER'}`,
  );
}

async function main(): Promise<void> {
  const sizes = envList('BENCH_FANOUT_SIZES', [1000, 5000, 10000]);
  const modes = envList('BENCH_FANOUT_MODES', [1000, 1]);
  const durationMs = envInt('BENCH_FANOUT_DURATION', 20) * 1000;
  const oneRowMs = envInt('BENCH_FANOUT_ONE_ROW', 15) * 1000;
  const drainMs = envInt('BENCH_FANOUT_DRAIN', 30) * 1000;
  const wide = envInt('BENCH_FANOUT_WIDE', 200);
  const maxN = Math.max(...sizes);
  const admins = 50;
  const accounts = envInt('BENCH_ACCOUNTS', maxN + 5000);
  if (accounts < maxN + admins + 1) throw new Error(`BENCH_ACCOUNTS (${accounts}) must exceed the largest size + 50 admins`);
  const profileRoot = process.env['BENCH_FANOUT_PROFILE'] || null;

  const cleanup: (() => Promise<void>)[] = [];
  const runCleanup = async () => {
    for (const step of cleanup.reverse()) await step().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    cleanup.length = 0;
  };
  process.once('SIGINT', () => void runCleanup().finally(() => process.exit(130)));

  try {
    const { url: benchUrl, pgVersion, dataDir: pgDataDir } = await openBenchDatabase(DATABASE, 'rowgate-fanout-', cleanup, log);
    const sql: Sql = connect(benchUrl, { max: 2 });
    cleanup.push(() => sql.end({ timeout: 5 }));

    const started = Date.now();
    const counts = await loadData(sql, { accounts, admins, groups: 1000, documents: 1000, senders: 100 }, new URL('../demo/schema.sql', import.meta.url));
    const [{ ok } = { ok: 0 }] = await sql.unsafe<{ ok: number }[]>(`SELECT count(*)::int AS ok FROM account WHERE id <= $1 AND identity = 'u' || id`, [maxN]);
    if (ok !== maxN) throw new Error(`account ids do not follow identities u1…u${maxN}: the leak check relies on id = n for u<n>`);
    log(`loaded ${Object.entries(counts).map(([t, c]) => `${t} ${c}`).join(', ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const demo = JSON.parse(await readFile(join(ROOT, 'demo/rowgate.config.json'), 'utf8')) as Record<string, unknown>;
    const configDir = await mkdtemp(join(tmpdir(), 'rowgate-fanout-config-'));
    cleanup.push(() => rm(configDir, { recursive: true, force: true }));
    // LOG_LEVEL warn: the gateway's request lines (one per request at info) are not what is measured.
    const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn', DATABASE_URL: benchUrl };
    for (const name of ['ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET', 'PORT']) delete childEnv[name];

    // The subscription's worst case (1,000 accounts × 1,000 players at the default maxRows) is above the
    // default limits.maxTotalRows (100,000) where that limit exists: raise it, the bench measures fan-out.
    const extraLimits: Record<string, number> = {};
    try {
      parseConfig({ ...demo, database: { url: benchUrl }, limits: { maxTotalRows: 10_000_000 } }, {});
      extraLimits['maxTotalRows'] = 10_000_000;
    } catch {
      /* an older config schema without maxTotalRows */
    }
    const results: RunResult[] = [];
    let seq = 0;
    for (const n of sizes) {
      for (const perStatement of modes) {
        const profileDir = profileRoot && n === maxN && perStatement > 1 ? profileRoot : null;
        if (profileDir) await mkdir(profileDir, { recursive: true });
        const r = await runOnce({ n, perStatement, benchUrl, demo, configDir, sql, accounts, admins, wide, durationMs, oneRowMs, drainMs, firstSeq: seq, profileDir, childEnv, extraLimits, pgDataDir });
        seq += r.oneRow.commits + r.commits + 20;
        results.push(r);
        // Let autovacuum and the client's closed sockets settle between runs.
        await sql.unsafe('VACUUM (ANALYZE) account, player');
        await sleep(2000);
      }
    }

    // The figures.
    const cpu = cpus();
    console.log('');
    console.log(`bench:fanout — ${durationMs / 1000} s of writing per run, drain ≤ ${drainMs / 1000} s, wide transaction = ${wide} accounts' players`);
    console.log(`machine: node ${process.version}, PostgreSQL ${pgVersion}${process.env['DATABASE_URL'] ? '' : ' (embedded)'}, ${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'})`);
    console.log(`data: ${Object.entries(counts).map(([t, c]) => `${t} ${c}`).join(', ')}`);
    console.log(`subscription (one socket per identity u1…uN): ${FANOUT_QUERY}`);
    console.log('');
    console.log(
      table([
        ['N', 'mode', 'commits', 'delivered/expected', 'p50 ms', 'p99 ms', 'max ms', 'backlog@stop', 'drain ms', 'stmts/commit', 'DB ms/commit', 'gw CPU %', 'gw CPU ms/commit', 'PG CPU ms/commit', 'rest CPU ms/commit', 'client CPU ms/commit', 'RSS/sub KB', 'RSS/socket KB', 'heap/sub KB', 'leaks', 'stale', 'errors'],
        ...results.map((r) => {
          const sorted = [...r.latencies].sort((a, b) => a - b);
          return [
            String(r.subscribers),
            modeName(r.perStatement),
            String(r.commits),
            `${r.delivered}/${r.expected}`,
            fmt(percentile(sorted, 50)),
            fmt(percentile(sorted, 99)),
            fmt(percentile(sorted, 100)),
            String(r.backlogAtStop),
            `${fmt(r.drainMs)}${r.drainCapped ? ' (capped)' : ''}`,
            fmt(r.statements / r.commits, 1),
            fmt(r.liveDbMs / r.commits, 1),
            fmt((r.gatewayCpuWrite / r.writeSeconds) * 100, 0),
            fmt((r.gatewayCpuTotal * 1000) / r.commits, 1),
            fmt(r.pgCpu === null ? null : (r.pgCpu * 1000) / r.commits, 1),
            fmt(((r.pgCpu === null ? r.otherCpu : r.otherCpu - r.pgCpu) * 1000) / r.commits, 1),
            fmt((r.clientCpu * 1000) / r.commits, 1),
            fmt((r.rss2 - r.rss0) / r.subscribers / 1024, 1),
            fmt((r.rss1 - r.rss0) / r.subscribers / 1024, 1),
            fmt((r.heap2 - r.heap0) / r.subscribers / 1024, 1),
            String(r.leaks + r.unexpected),
            String(r.stale),
            String(r.errors + (r.connected < r.subscribers ? r.subscribers - r.connected : 0) + (r.firstResults < r.connected ? r.connected - r.firstResults : 0)),
          ];
        }),
      ]),
    );
    console.log('');
    console.log(`One-row commits alone, ${oneRowMs / 1000} s before the mixed writing (a name seen by one subscriber, every 1 s one seen by nobody); load = 1-min load average at the run's start → end:`);
    console.log(
      table([
        ['N', 'mode', 'commits', 'delivered/expected', 'stmts/commit', 'p50 ms', 'p99 ms', 'max ms', 'load'],
        ...results.map((r) => {
          const sorted = [...r.oneRow.latencies].sort((a, b) => a - b);
          return [
            String(r.subscribers),
            modeName(r.perStatement),
            String(r.oneRow.commits),
            `${r.oneRow.latencies.length}/${r.oneRow.expected}`,
            `${fmt(r.oneRow.statements / r.oneRow.commits, 2)}${r.oneRow.drainCapped ? ' (drain capped)' : ''}`,
            fmt(percentile(sorted, 50)),
            fmt(percentile(sorted, 99)),
            fmt(percentile(sorted, 100)),
            `${r.load[0].toFixed(1)} → ${r.load[1].toFixed(1)}`,
          ];
        }),
      ]),
    );
    console.log('');
    console.log('Per kind of commit (p50 / p99 ms): name = one subscriber, wide = one transaction for many subscribers\' players, none = seen by nobody');
    for (const r of results) {
      const kinds = Object.entries(r.latenciesByKind).map(([k, v]) => {
        const s = [...v].sort((a, b) => a - b);
        return `${k} ${r.commitsByKind[k] ?? 0} commits: ${fmt(percentile(s, 50))} / ${fmt(percentile(s, 99))}`;
      });
      console.log(
        `  N=${r.subscribers} ${modeName(r.perStatement)}: ${kinds.join('; ')}; none ${r.commitsByKind['none'] ?? 0} commits; ` +
          `connect ${r.connectMs} ms, first results ${r.firstResults}/${r.connected} in ${r.subscribeMs} ms; RSS ${fmt(r.rss0 / 2 ** 20)} → ${fmt(r.rss1 / 2 ** 20)} (sockets) → ${fmt(r.rss2 / 2 ** 20)} MiB (subscribed); ` +
          `${r.statements} statements, ${r.liveRows} rows back; gateway CPU ${fmt(r.gatewayCpuTotal, 1)} s over ${fmt(r.wallSeconds, 1)} s; event-loop delay max ${fmt(r.loopDelayMax)} ms`,
      );
      for (const s of [...r.leakSamples, ...r.errorSamples, ...r.staleSamples]) console.log(`    ${s}`);
    }

    // Targets.
    console.log('');
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT MET');
    for (const r of results.filter((x) => x.perStatement > 1)) {
      const shapes = 1;
      const bound = shapes * Math.ceil(r.subscribers / TARGET_SUBSCRIBERS_PER_STATEMENT);
      const perCommit = r.statements / r.commits;
      console.log(
        `N=${r.subscribers} multiplexed: statements/commit ${fmt(perCommit, 2)} ≤ ${bound} (1 shape, ≤ 1 per ${TARGET_SUBSCRIBERS_PER_STATEMENT} subscribers re-evaluated): ${verdict(perCommit <= bound)}`,
      );
    }
    for (const r of results.filter((x) => x.subscribers === maxN)) {
      const p99 = percentile([...r.latencies].sort((a, b) => a - b), 99);
      const complete = r.delivered + r.stale > 0 && r.stale === 0;
      console.log(`N=${r.subscribers} ${modeName(r.perStatement)}: p99 ${fmt(p99)} ms < ${TARGET_P99_MS} ms: ${verdict(p99 !== null && p99 < TARGET_P99_MS && complete)}${complete ? '' : ' (not every subscriber caught up)'}`);
    }
    for (const r of results.filter((x) => x.perStatement > 1)) {
      const perSub = (r.rss2 - r.rss0) / r.subscribers;
      const perSubscription = (r.rss2 - r.rss1) / r.subscribers;
      console.log(
        `N=${r.subscribers} multiplexed: RSS per idle subscriber (socket + subscription) ${fmt(perSub / 1024, 1)} KB < 20 KB: ${verdict(perSub < TARGET_RSS_BYTES)}; ` +
          `the subscription alone (socket excluded) ${fmt(perSubscription / 1024, 1)} KB: ${verdict(perSubscription < TARGET_RSS_BYTES)}`,
      );
    }
    const leaks = results.reduce((a, r) => a + r.leaks + r.unexpected, 0);
    const staleMultiplexed = results.filter((r) => r.perStatement > 1).reduce((a, r) => a + r.stale, 0);
    console.log(`correctness: ${leaks} leaked payloads (must be 0); ${staleMultiplexed} multiplexed subscribers stale at the end (must be 0)${leaks || staleMultiplexed ? ' — FAILED' : ''}`);

    if (process.env['BENCH_FANOUT_EXPLAIN'] !== '0') {
      const last = [...results].reverse().find((r) => r.statementForExplain);
      if (last?.statementForExplain) await explain(sql, last.statementForExplain);
    }
    for (const r of results) if (r.profile) console.log(`\n${await summariseProfile(r.profile, 25)}`);
    if (leaks) process.exitCode = 1;
  } finally {
    await runCleanup();
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
