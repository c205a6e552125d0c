/**
 * `npm run bench:query`: the gateway against the floor (hand-written SQL behind node:http) on the same
 * nested query with visibility rules on every level, over ~100k rows, at concurrency 32.
 * See bench/README.md for what is measured and how to read it.
 *
 * Environment: DATABASE_URL (else an embedded PostgreSQL in a temp dir), BENCH_DURATION (s, 15),
 * BENCH_WARMUP (s, 3), BENCH_CONNECTIONS (32), BENCH_ROUNDS (1; more alternate the order), BENCH_ACCOUNTS (100000), BENCH_GROUPS (10000),
 * BENCH_DOCUMENTS (50000), BENCH_SENDERS (1000), BENCH_EXPLAIN=1 (print EXPLAIN ANALYZE of both
 * servers' SQL), BENCH_KEEP_DB=1 (keep the rowgate_bench database), FLOOR_PREPARE=0 (floors without
 * prepared statements), BENCH_TUNED=0 (skip the third, informational server: the floor with its
 * ORs of rules written as UNIONs), BENCH_CPU_PROF=DIR (the gateway writes a V8 CPU profile into DIR),
 * BENCH_PEER=0 (skip PostGraphile with hand-written RLS policies, bench/query-peer.ts, and the simple query).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { deepStrictEqual } from 'node:assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { parseConfig } from '../src/config/index.ts';
import { connect, type Sql } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { openBenchDatabase } from './database.ts';
import { loadData, scaleFromEnv } from './data.ts';
import { explainBoth } from './explain.ts';
import { BENCH_QUERY } from './floor-sql.ts';
import { fromPeer, installPeer, PEER_QUERY, PEER_ROLE, PEER_SETTING, PEER_SIMPLE_QUERY, SIMPLE_QUERY, type BenchAnswer } from './query-peer.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATABASE = 'rowgate_bench';
const TARGET = 0.7;
/** rowgate against the PostGraphile peer, on both queries (issue 13). */
const PEER_TARGET = 1.5;

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${raw}"`);
  return n;
}


const log = (line: string) => process.stderr.write(`${line}\n`);

/** Spawns a server and resolves with the URL it prints (`pattern`'s first group is the port or URL). */
function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, pattern: RegExp): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`${name} did not start in 60 s`)), 60_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${e.message}\n--- ${name} stdout ---\n${out}\n--- ${name} stderr ---\n${err}`));
    };
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(timer);
        const found = m[1]!;
        resolve({ child, url: /^\d+$/.test(found) ? `http://127.0.0.1:${found}/graphql` : found });
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk;
      if (err.length > 100_000) err = err.slice(-50_000);
    });
    child.on('exit', (code) => fail(new Error(`${name} exited with ${code}`)));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function post(url: string, token: string, query: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query }),
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/** Order is unspecified for account (no order_by) and players: sort those; documents are ordered. */
function normalize(answer: BenchAnswer): BenchAnswer {
  const account = [...answer.data.account]
    .sort((a, b) => a.id - b.id)
    .map((a) => (a.players ? { ...a, players: [...a.players].sort((x, y) => x.level - y.level || x.score.localeCompare(y.score)) } : a));
  return { data: { account, ...(answer.data.document ? { document: answer.data.document } : {}) } };
}

/** What is sent to the floor (or the peer) instead of the gateway's query, and how its answer reads. */
interface Other {
  gatewayQuery: string;
  query: string;
  answer: (body: unknown) => BenchAnswer;
}
const SAME: Other = { gatewayQuery: BENCH_QUERY, query: BENCH_QUERY, answer: (body) => body as BenchAnswer };

/** Both servers must give the same answer to the same caller before anything is timed. */
async function assertSameAnswers(gatewayUrl: string, floorName: string, floorUrl: string, senders: string[], tokenOf: (s: string) => string, other: Other = SAME): Promise<void> {
  let documents = 0;
  let hiddenGroups = 0;
  for (const sender of senders) {
    const [g, f] = await Promise.all([post(gatewayUrl, tokenOf(sender), other.gatewayQuery), post(floorUrl, tokenOf(sender), other.query)]);
    const describe = () => `sender ${sender}\n gateway (${g.status}): ${JSON.stringify(g.body)}\n ${floorName} (${f.status}): ${JSON.stringify(f.body)}`;
    if (g.status !== 200 || f.status !== 200) throw new Error(`a server did not answer 200 for ${describe()}`);
    const ga = g.body as BenchAnswer;
    const fb = f.body as { errors?: unknown } | null;
    if (!ga.data || 'errors' in ga || !fb || typeof fb !== 'object' || fb.errors) throw new Error(`a server answered with errors for ${describe()}`);
    try {
      deepStrictEqual(normalize(ga), normalize(other.answer(f.body)));
    } catch {
      throw new Error(`the gateway and the ${floorName} disagree for ${describe()}`);
    }
    if (ga.data.account.length !== 1 || (ga.data.account[0]!.players ?? [{}]).length !== 1) throw new Error(`unexpected data for ${describe()}`);
    documents += ga.data.document?.length ?? 0;
    hiddenGroups += ga.data.document?.filter((d) => d.grp === null).length ?? 0;
  }
  log(`same answers from the gateway and the ${floorName} for ${senders.length} senders (${documents} documents, ${hiddenGroups} with a hidden grp)`);
  if (documents === 0 && other.gatewayQuery === BENCH_QUERY) throw new Error('no documents visible to the checked senders: the data does not exercise the rules');
}

/** CPU seconds used so far by process `pid` (user + system), from /proc; null where there is none. */
function processCpu(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

/** CPU seconds the whole machine has been busy (all cores, everything but idle and iowait). */
function machineCpu(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
  } catch {
    return null;
  }
}

interface Measured {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  non2xx: number;
  graphqlErrors: number;
  /** CPU ms per request: the server's process, the load generator (this process), and the rest (PostgreSQL). */
  serverCpu: number | null;
  loaderCpu: number | null;
  otherCpu: number | null;
}

async function load(name: string, url: string, query: string, tokens: string[], duration: number, connections: number): Promise<Measured> {
  let next = 0;
  const body = JSON.stringify({ query });
  const result = await autocannon({
    url,
    connections,
    duration,
    pipelining: 1,
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body,
    // A different caller on every request: rotates over all senders, the same sequence for both servers.
    requests: [
      {
        setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${tokens[next++ % tokens.length]!}` } }),
      },
    ],
    // A 200 that carries GraphQL errors is a failure too (counted as a mismatch).
    verifyBody: (text) => !String(text ?? '').includes('"errors"'),
  });
  return {
    name,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    graphqlErrors: (result as unknown as { mismatches?: number }).mismatches ?? 0,
    serverCpu: null,
    loaderCpu: null,
    otherCpu: null,
  };
}

async function measure(name: string, pid: number | undefined, url: string, tokens: string[], warmup: number, duration: number, connections: number, query = BENCH_QUERY): Promise<Measured> {
  log(`${name}: warming up ${warmup} s …`);
  await load(name, url, query, tokens, warmup, connections);
  log(`${name}: measuring ${duration} s at ${connections} connections …`);
  const server0 = processCpu(pid);
  const machine0 = machineCpu();
  const loader0 = process.cpuUsage();
  const m = await load(name, url, query, tokens, duration, connections);
  const loaderUsage = process.cpuUsage(loader0);
  const loader = (loaderUsage.user + loaderUsage.system) / 1e6;
  const server1 = processCpu(pid);
  const machine1 = machineCpu();
  const perRequest = (seconds: number | null) => (seconds === null || m.requests === 0 ? null : (seconds * 1000) / m.requests);
  const server = server0 !== null && server1 !== null ? server1 - server0 : null;
  m.serverCpu = perRequest(server);
  m.loaderCpu = perRequest(loader);
  m.otherCpu = machine0 !== null && machine1 !== null && server !== null ? perRequest(Math.max(0, machine1 - machine0 - server - loader)) : null;
  log(`${name}: ${m.rps.toFixed(0)} req/s, p50 ${m.p50} ms, p99 ${m.p99} ms`);
  return m;
}

/** Rounds summed: req/s over all of them; latency percentiles and CPU averaged, weighted by requests. */
function combine(name: string, runs: Measured[]): Measured {
  if (runs.length === 1) return { ...runs[0]!, name };
  const requests = runs.reduce((a, m) => a + m.requests, 0);
  const weighted = (pick: (m: Measured) => number | null) =>
    runs.some((m) => pick(m) === null) ? null : runs.reduce((a, m) => a + pick(m)! * m.requests, 0) / requests;
  return {
    name: `${name} (all rounds)`,
    rps: runs.reduce((a, m) => a + m.rps, 0) / runs.length,
    p50: Math.round(weighted((m) => m.p50)!),
    p99: Math.round(weighted((m) => m.p99)!),
    requests,
    errors: runs.reduce((a, m) => a + m.errors, 0),
    non2xx: runs.reduce((a, m) => a + m.non2xx, 0),
    graphqlErrors: runs.reduce((a, m) => a + m.graphqlErrors, 0),
    serverCpu: weighted((m) => m.serverCpu),
    loaderCpu: weighted((m) => m.loaderCpu),
    otherCpu: weighted((m) => m.otherCpu),
  };
}

const ms = (v: number | null) => (v === null ? '-' : v.toFixed(2));

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const duration = envInt('BENCH_DURATION', 15);
  const warmup = envInt('BENCH_WARMUP', 3);
  const connections = envInt('BENCH_CONNECTIONS', 32);
  const scale = scaleFromEnv();
  const cleanup: (() => Promise<void>)[] = [];
  const runCleanup = async () => {
    for (const step of cleanup.reverse()) await step().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    cleanup.length = 0;
  };
  process.once('SIGINT', () => void runCleanup().finally(() => process.exit(130)));

  try {
    // 1. The database server: DATABASE_URL, else an embedded one in a temp dir.
    const { url: benchUrl, pgVersion } = await openBenchDatabase(DATABASE, 'rowgate-bench-', cleanup, log);

    // 2. The data.
    const sql: Sql = connect(benchUrl, { max: 2 });
    cleanup.push(() => sql.end({ timeout: 5 }));
    const started = Date.now();
    const counts = await loadData(sql, scale, new URL('../demo/schema.sql', import.meta.url));
    log(`loaded ${Object.entries(counts).map(([t, n]) => `${t} ${n}`).join(', ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // 3. The gateway's config: the demo's rules over the bench database.
    const demo = JSON.parse(await readFile(join(ROOT, 'demo/rowgate.config.json'), 'utf8')) as Record<string, unknown>;
    const configDir = await mkdtemp(join(tmpdir(), 'rowgate-bench-config-'));
    cleanup.push(() => rm(configDir, { recursive: true, force: true }));
    const configPath = join(configDir, 'rowgate.config.json');
    await writeFile(configPath, JSON.stringify({ ...demo, database: { url: benchUrl } }, null, 2));
    const config = parseConfig({ ...demo, database: { url: benchUrl } }, {});
    const secret = config.auth.jwt.secret!;

    const senders = Array.from({ length: scale.senders }, (_, i) => `u${i + 1}`);
    const tokenBySender = new Map<string, string>();
    for (const s of senders) tokenBySender.set(s, await signToken(config, { sender: s, expires: '6h' }));
    const tokens = senders.map((s) => tokenBySender.get(s)!);
    const tokenOf = (s: string) => tokenBySender.get(s) ?? (() => { throw new Error(`no token for ${s}`); })();

    // 4. Both servers as child processes (each its own event loop); only one is under load at a time.
    // LOG_LEVEL warn: the gateway's request lines (one per request at info) are not what is measured.
    const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn', DATABASE_URL: benchUrl };
    for (const name of ['ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET', 'PORT']) delete childEnv[name];
    log('starting the gateway (node bin/rowgate.mjs serve) and the floor (bench/floor.ts) …');
    // BENCH_CPU_PROF=DIR: the gateway writes a V8 CPU profile there when it stops (open it in Chrome DevTools).
    const prof = process.env['BENCH_CPU_PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_CPU_PROF']}`] : [];
    const gateway = await startChild('gateway', [...prof, 'bin/rowgate.mjs', 'serve', '--config', configPath, '--port', '0'], childEnv, /serving (http:\/\/\S+)/);
    cleanup.push(() => stopChild(gateway.child));
    const floor = await startChild(
      'floor',
      ['--import', 'tsx', 'bench/floor.ts'],
      { ...childEnv, FLOOR_DATABASE_URL: benchUrl, FLOOR_JWT_SECRET: secret, FLOOR_MAX_ROWS: String(config.limits.maxRows), FLOOR_PORT: '0' },
      /listening (\d+)/,
    );
    cleanup.push(() => stopChild(floor.child));
    const withTuned = process.env['BENCH_TUNED'] !== '0';
    const tuned = withTuned
      ? await startChild(
          'floor (tuned)',
          ['--import', 'tsx', 'bench/floor.ts'],
          { ...childEnv, FLOOR_DATABASE_URL: benchUrl, FLOOR_JWT_SECRET: secret, FLOOR_MAX_ROWS: String(config.limits.maxRows), FLOOR_PORT: '0', FLOOR_VARIANT: 'tuned' },
          /listening (\d+)/,
        )
      : null;
    if (tuned) cleanup.push(() => stopChild(tuned.child));
    // The peer a user would pick: PostGraphile with hand-written policies, as its role (no BYPASSRLS).
    const withPeer = process.env['BENCH_PEER'] !== '0';
    let peer: { child: ChildProcess; url: string } | null = null;
    if (withPeer) {
      const uninstall = await installPeer(sql);
      cleanup.push(uninstall);
      const peerUrl = new URL(benchUrl);
      peerUrl.username = PEER_ROLE;
      peerUrl.password = PEER_ROLE;
      peer = await startChild(
        'PostGraphile',
        ['--import', 'tsx', 'bench/peers-postgraphile.ts'],
        { ...childEnv, PEER_DATABASE_URL: peerUrl.toString(), PEER_JWT_SECRET: secret, PEER_SENDER_CLAIM: config.auth.jwt.senderClaim, PEER_SETTING, PEER_PORT: '0' },
        /listening (\d+)/,
      );
      const started = peer;
      cleanup.push(() => stopChild(started.child));
    }
    const gatewayUrl = gateway.url.endsWith('/graphql') ? gateway.url : `${gateway.url.replace(/\/$/, '')}/graphql`;

    // 5. Same JSON for a handful of senders (some with write-only memberships, some authors).
    const check = ['u1', 'u2', 'u3', 'u9', 'u10', 'u11', 'u42', 'u500', senders[senders.length - 1]!].filter((s) => tokenBySender.has(s));
    await assertSameAnswers(gatewayUrl, 'floor', floor.url, check, tokenOf);
    if (tuned) await assertSameAnswers(gatewayUrl, 'tuned floor', tuned.url, check, tokenOf);
    if (peer) {
      await assertSameAnswers(gatewayUrl, 'PostGraphile', peer.url, check, tokenOf, { gatewayQuery: BENCH_QUERY, query: PEER_QUERY, answer: fromPeer });
      await assertSameAnswers(gatewayUrl, 'PostGraphile (simple query)', peer.url, check, tokenOf, { gatewayQuery: SIMPLE_QUERY, query: PEER_SIMPLE_QUERY, answer: fromPeer });
    }

    if (process.env['BENCH_EXPLAIN'] === '1') await explainBoth(sql, config, benchUrl, 'u1', tokenOf('u1'));

    // 6. One after the other: the machine has few cores, and PostgreSQL and autocannon share them.
    // BENCH_ROUNDS > 1 alternates the order (gateway first, then floor first, …) and sums the rounds.
    const rounds = envInt('BENCH_ROUNDS', 1);
    const all: Measured[][] = [[], [], [], [], [], []];
    for (let r = 0; r < rounds; r++) {
      const suffix = rounds > 1 ? ` #${r + 1}` : '';
      const runGateway = async () => all[0]!.push(await measure(`gateway${suffix}`, gateway.child.pid, gatewayUrl, tokens, warmup, duration, connections));
      const runFloor = async () => all[1]!.push(await measure(`floor${suffix}`, floor.child.pid, floor.url, tokens, warmup, duration, connections));
      if (r % 2 === 0) {
        await runGateway();
        await runFloor();
      } else {
        await runFloor();
        await runGateway();
      }
      if (tuned) all[2]!.push(await measure(`floor, tuned SQL${suffix}`, tuned.child.pid, tuned.url, tokens, warmup, duration, connections));
      if (peer) {
        all[3]!.push(await measure(`PostGraphile, RLS${suffix}`, peer.child.pid, peer.url, tokens, warmup, duration, connections, PEER_QUERY));
        all[4]!.push(await measure(`gateway, simple${suffix}`, gateway.child.pid, gatewayUrl, tokens, warmup, duration, connections, SIMPLE_QUERY));
        all[5]!.push(await measure(`PostGraphile, RLS, simple${suffix}`, peer.child.pid, peer.url, tokens, warmup, duration, connections, PEER_SIMPLE_QUERY));
      }
    }
    const g = combine('gateway', all[0]!);
    const f = combine('floor', all[1]!);
    const t = tuned ? combine('floor, tuned SQL', all[2]!) : null;
    const peers = peer ? (['PostGraphile, RLS', 'gateway, simple', 'PostGraphile, RLS, simple'] as const).map((name, i) => combine(name, all[3 + i]!)) : [];
    const [pg, gs, ps] = peers;
    const measured = [[g, all[0]!], [f, all[1]!], ...(t ? [[t, all[2]!]] : []), ...peers.map((m, i) => [m, all[3 + i]!])] as [Measured, Measured[]][];
    const rows = rounds > 1 ? measured.flatMap(([sum, runs]) => [...runs, sum]) : measured.map(([sum]) => sum);

    // 7. The figures.
    const ratio = g.rps / f.rps;
    const cpu = cpus();
    console.log('');
    console.log(`bench:query — ${connections} connections, ${duration} s each after ${warmup} s warm-up, ${rounds} round(s), ${senders.length} rotating senders`);
    console.log(`machine: node ${process.version}, PostgreSQL ${pgVersion}${process.env['DATABASE_URL'] ? '' : ' (embedded)'}, ${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'})`);
    console.log(`data: ${Object.entries(counts).map(([t, n]) => `${t} ${n}`).join(', ')}`);
    console.log(`query: ${BENCH_QUERY.replace(/\s+/g, ' ')}`);
    if (peer) console.log(`PostGraphile (hand-written RLS, bench/query-peer.ts): ${PEER_QUERY.replace(/\s+/g, ' ')}; simple: ${SIMPLE_QUERY} / ${PEER_SIMPLE_QUERY}`);
    console.log('');
    console.log(
      table([
        ['server', 'req/s', 'p50 ms', 'p99 ms', 'requests', 'errors', 'non-2xx', 'gql errors', 'CPU ms/req: server', 'PostgreSQL+rest', 'autocannon'],
        ...rows.map((m) => [
          m.name,
          m.rps.toFixed(0),
          String(m.p50),
          String(m.p99),
          String(m.requests),
          String(m.errors),
          String(m.non2xx),
          String(m.graphqlErrors),
          ms(m.serverCpu),
          ms(m.otherCpu),
          ms(m.loaderCpu),
        ]),
      ]),
    );
    console.log('');
    console.log(`gateway / floor throughput: ${(ratio * 100).toFixed(1)} % (target ≥ ${TARGET * 100} %): ${ratio >= TARGET ? 'TARGET MET' : 'TARGET NOT MET'}`);
    if (t) {
      console.log(
        `(informational) gateway / tuned floor: ${((g.rps / t.rps) * 100).toFixed(1)} %; floor / tuned floor: ${((f.rps / t.rps) * 100).toFixed(1)} % ` +
          '(the tuned floor writes each OR of rules as a UNION of index lookups; see bench/README.md)',
      );
    }
    if (pg && gs && ps) {
      const nested = g.rps / pg.rps;
      const simple = gs.rps / ps.rps;
      const met = (r: number) => (r >= PEER_TARGET ? 'TARGET MET' : 'TARGET NOT MET');
      console.log(`gateway / PostGraphile (hand-written RLS): nested ${nested.toFixed(2)}× (${met(nested)}), simple ${simple.toFixed(2)}× (${met(simple)}) (target ≥ ${PEER_TARGET}×)`);
    }
    const failures = [g, f, ...(t ? [t] : []), ...peers].reduce((n, m) => n + m.errors + m.non2xx + m.graphqlErrors, 0);
    if (failures > 0) console.log(`WARNING: ${failures} failed requests; the figures above are not trustworthy`);
  } finally {
    await runCleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
