/**
 * `npm run bench:starvation`: how long a normal caller's `doc_by_pk` takes at rest and while one
 * other caller keeps 12 heavy queries in flight, with `limits.perCallerConcurrency` off (0) and on
 * (default 4). The gateway is a child process (`rowgate serve`); the bench is the clients.
 * See bench/README.md.
 *
 * Environment: DATABASE_URL (else an embedded PostgreSQL in a temp dir), BENCH_REST (s, 10),
 * BENCH_ATTACK (s, 15), BENCH_RATE (normal requests per second, 20), BENCH_ATTACKERS (heavy queries
 * in flight, 12), BENCH_LIMITS (the perCallerConcurrency of each run, "0,4"; 0 is off),
 * BENCH_TIMEOUT_MS (limits.statementTimeoutMs, 2000), BENCH_KEEP_DB=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config/index.ts';
import { connect } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { cleanupSteps, openBenchDatabase } from './database.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATABASE = 'rowgate_starvation';
const SECRET = 'starvation-bench-secret-0123456789abcdef';
/** Normal callers, each the owner of one document; requests rotate over them so none meets its own limit. */
const NORMAL_CALLERS = 10;
const DOCS = 20_000;
const TAGS_PER_DOC = 10;

// `tag.doc_id` has no index: each document's tags are found by scanning the table, so the heavy
// query (1,000 documents, a few tags each) costs ~100M row visits and runs to the statement
// timeout, while `doc_by_pk` is one index lookup.
const SCHEMA = `
  CREATE TABLE doc (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL);
  CREATE TABLE tag (id int PRIMARY KEY, doc_id int NOT NULL REFERENCES doc(id), label text NOT NULL);
  INSERT INTO doc SELECT g, CASE WHEN g <= ${NORMAL_CALLERS} THEN 'n' || g ELSE 'mallory' END, 'doc ' || g FROM generate_series(1, ${DOCS}) g;
  INSERT INTO tag SELECT g, 1 + g % ${DOCS}, 'tag ' || g FROM generate_series(1, ${DOCS * TAGS_PER_DOC}) g;
`;
const TABLES = {
  doc: { select: 'SELECT * FROM doc WHERE owner = :sender' },
  tag: { select: 'SELECT tag.* FROM tag JOIN doc ON doc.id = tag.doc_id WHERE doc.owner = :sender' },
};
const HEAVY = '{ doc(limit: 1000, order_by: {id: desc}) { id tags(limit: 5) { label } } }';
const NORMAL = 'query($id: Int!) { doc_by_pk(id: $id) { id title } }';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${raw}"`);
  return n;
}

const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `rowgate serve` on a free port; resolves with its URL once it prints it. */
function startGateway(configPath: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    // DATABASE_URL would override the config's URL, which names the bench database.
    const { DATABASE_URL: _server, ...env } = process.env;
    const child = spawn(process.execPath, ['bin/rowgate.mjs', 'serve', '--config', configPath, '--port', '0'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error('the gateway did not start in 60 s')), 60_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${e.message}\n--- stdout ---\n${out}\n--- stderr ---\n${err}`));
    };
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const m = /serving (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]! });
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      err = (err + chunk).slice(-20_000);
    });
    child.once('exit', (code) => fail(new Error(`the gateway exited with ${code}`)));
  });
}

function stopGateway(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.removeAllListeners('exit');
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

interface Answer {
  ms: number;
  /** The first error's code, or null for an answer without errors. */
  code: string | null;
  message: string | null;
}

async function post(url: string, token: string, query: string, variables?: Record<string, unknown>): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
  const error = body.errors?.[0];
  return { ms: performance.now() - started, code: error ? (error.extensions?.code ?? 'NO_CODE') : null, message: error?.message ?? null };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface PhaseResult {
  latencies: number[];
  /** Normal requests answered with an error, by code. */
  normalErrors: Map<string, number>;
  heavy: { timedOut: number; refused: number; other: number };
}

/**
 * Normal callers at a fixed rate (open loop: a slow answer does not delay the next request) for
 * `seconds`; with `attackers`, one caller keeps that many heavy queries in flight meanwhile. A heavy
 * query refused by the per-caller limit is sent again after 100 ms, as a client honouring 429 would.
 */
async function phase(url: string, normalTokens: string[], heavyToken: string, rate: number, seconds: number, attackers: number): Promise<PhaseResult> {
  const result: PhaseResult = { latencies: [], normalErrors: new Map(), heavy: { timedOut: 0, refused: 0, other: 0 } };
  let attacking = attackers > 0;
  const attack = Array.from({ length: attackers }, async () => {
    while (attacking) {
      const a = await post(url, heavyToken, HEAVY);
      if (a.message?.includes('perCallerConcurrency')) {
        result.heavy.refused++;
        await sleep(100);
      } else if (a.message?.includes('statementTimeoutMs')) result.heavy.timedOut++;
      else result.heavy.other++;
    }
  });
  // Let the attack take the pool before measuring.
  if (attackers > 0) await sleep(1_000);
  const normal: Promise<void>[] = [];
  const total = Math.round(rate * seconds);
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const who = i % NORMAL_CALLERS;
    normal.push(
      post(url, normalTokens[who]!, NORMAL, { id: who + 1 }).then((a) => {
        if (a.code === null) result.latencies.push(a.ms);
        else result.normalErrors.set(a.code, (result.normalErrors.get(a.code) ?? 0) + 1);
      }),
    );
  }
  await Promise.all(normal);
  attacking = false;
  await Promise.all(attack);
  result.latencies.sort((x, y) => x - y);
  return result;
}

async function main(): Promise<void> {
  const rest = envInt('BENCH_REST', 10);
  const attackSeconds = envInt('BENCH_ATTACK', 15);
  const rate = envInt('BENCH_RATE', 20);
  const attackers = envInt('BENCH_ATTACKERS', 12);
  const limits = (process.env['BENCH_LIMITS'] ?? '0,4').split(',').map((v) => {
    const n = Number(v.trim());
    if (!Number.isInteger(n) || n < 0) throw new Error(`BENCH_LIMITS must list integers ≥ 0, not "${v}"`);
    return n;
  });
  const timeoutMs = envInt('BENCH_TIMEOUT_MS', 2000);
  const { steps: cleanup, run: runCleanup } = cleanupSteps(log);

  try {
    const { url: benchUrl, pgVersion } = await openBenchDatabase(DATABASE, 'rowgate-starvation-', cleanup, log);
    const sql = connect(benchUrl, { max: 1 });
    await sql.unsafe(SCHEMA);
    await sql.unsafe('VACUUM ANALYZE');
    await sql.end();
    log(`loaded ${DOCS} documents and ${DOCS * TAGS_PER_DOC} tags`);

    const configDir = await mkdtemp(join(tmpdir(), 'rowgate-bench-config-'));
    cleanup.push(() => rm(configDir, { recursive: true, force: true }));
    const base = { database: { url: benchUrl }, auth: { jwt: { secret: SECRET } }, tables: TABLES };
    const config = parseConfig(base, {});
    const normalTokens = await Promise.all(Array.from({ length: NORMAL_CALLERS }, (_, i) => signToken(config, { sender: `n${i + 1}`, expires: '2h' })));
    const heavyToken = await signToken(config, { sender: 'mallory', expires: '2h' });

    const rows: string[][] = [];
    for (const perCallerConcurrency of limits) {
      const mode = perCallerConcurrency === 0 ? 'limit off' : `limit ${perCallerConcurrency}`;
      const configPath = join(configDir, `${perCallerConcurrency}.json`);
      await writeFile(configPath, JSON.stringify({ ...base, limits: { statementTimeoutMs: timeoutMs, perCallerConcurrency } }));
      const { child, url } = await startGateway(configPath);
      try {
        // The heavy query must be heavy for a reason, not for the load: alone, it reaches the timeout.
        const alone = await post(url, heavyToken, HEAVY);
        if (!alone.message?.includes('statementTimeoutMs')) throw new Error(`the heavy query alone should time out after ${timeoutMs} ms; it answered in ${alone.ms.toFixed(0)} ms: ${alone.message ?? 'data'}`);
        for (let i = 0; i < 50; i++) await post(url, normalTokens[i % NORMAL_CALLERS]!, NORMAL, { id: (i % NORMAL_CALLERS) + 1 });
        for (const [name, seconds, n] of [
          ['at rest', rest, 0],
          [`attack: ${attackers} heavy queries`, attackSeconds, attackers],
        ] as const) {
          log(`${mode}, ${name}: ${seconds} s …`);
          const r = await phase(url, normalTokens, heavyToken, rate, seconds, n);
          const heavy = n === 0 ? '–' : `${r.heavy.timedOut} / ${r.heavy.refused} / ${r.heavy.other}`;
          rows.push([mode, name, percentile(r.latencies, 50).toFixed(1), percentile(r.latencies, 99).toFixed(1), (r.latencies.at(-1) ?? NaN).toFixed(1), String(r.latencies.length), [...r.normalErrors].map(([c, k]) => `${k} ${c}`).join(', ') || '0', heavy]);
        }
      } finally {
        await stopGateway(child);
      }
    }

    const [load1] = loadavg();
    console.log(`
rowgate bench:starvation — ${cpus().length} × ${cpus()[0]?.model ?? '?'}, node ${process.version}, PostgreSQL ${pgVersion}, load ${load1?.toFixed(2)}
normal callers: doc_by_pk at ${rate}/s (open loop, ${NORMAL_CALLERS} senders); attacker: one sender, ${attackers} heavy queries in flight; statementTimeoutMs ${timeoutMs}; query pool 10
heavy: ${HEAVY}

| mode | phase | doc_by_pk p50 ms | p99 ms | max ms | answered | errors | heavy: timed out / refused / other |
|---|---|---:|---:|---:|---:|---:|---|
${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}
`);
  } finally {
    await runCleanup();
  }
}

await main();
