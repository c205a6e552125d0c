/**
 * `npm run bench:soak`: churn against a gateway child process for BENCH_SOAK_MINUTES (10) on the demo
 * schema, scaled up a little. Clients (bench/soak-client.ts, one child process) subscribe and
 * unsubscribe, reconnect (resuming change streams with `after`), refresh short-lived tokens by
 * reconnecting, and let some expire (the gateway must close those sockets with 4403), while a writer
 * commits changes through mutations and through direct SQL. Every change-stream subscription is
 * checked against a reference computed from `rowgate.change_log` with the compiled rules (no loss, no
 * duplicate, nothing extra); live queries must end at their exact visible result. Gateway RSS and open
 * handles after GC, with no client, at the start (after a warm-up) and at the end, must agree within 10 %.
 * See bench/README.md.
 *
 * Environment: DATABASE_URL (else an embedded PostgreSQL in a temp dir), BENCH_SOAK_MINUTES (10),
 * BENCH_SOAK_WARMUP (s, 45), BENCH_SOAK_CLIENTS (240), BENCH_SOAK_RATE (commits/s, 8),
 * BENCH_SOAK_TOKEN (token lifetime, s, 60), BENCH_SOAK_CHURN (mean s between churn actions per client, 10),
 * BENCH_SOAK_SETTLE (s to wait at the end of a phase for the engine to go idle, 180),
 * BENCH_KEEP_DB=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql as pg, type SQL } from 'pg-sql2';
import { loadAll, type Loaded } from '../src/cli/context.ts';
import { parseConfig, type Config } from '../src/config/index.ts';
import { compileSql, connect, type Sql } from '../src/db/index.ts';
import { and, BatchParams } from '../src/rules/index.ts';
import { signToken } from '../src/server/token.ts';
import { openBenchDatabase } from './database.ts';
import { loadData } from './data.ts';
import type { SoakGatewayStats, ToSoakGateway } from './soak-gateway.ts';
import { LIVES, STREAMS, type ClientSpec, type ClientStats, type FinalReport, type LiveKind, type Segment, type StreamKind, type ToClient } from './soak-shared.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATABASE = 'rowgate_soak';
const ACCOUNTS = 2000;
const ADMINS = 50;
const SENDERS = 200;

const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${raw}"`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Child processes with an IPC channel (as in bench/fanout.ts)

interface Child {
  name: string;
  child: ChildProcess;
  request<T>(message: unknown, reply: string, timeoutMs: number): Promise<T>;
  output(): string;
}

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, readyType: string, timeoutMs = 120_000): Promise<{ child: Child; ready: Record<string, unknown> }> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let out = '';
  const collect = (chunk: string) => {
    out += chunk;
    if (out.length > 400_000) out = out.slice(-200_000);
  };
  proc.stdout!.setEncoding('utf8').on('data', collect);
  proc.stderr!.setEncoding('utf8').on('data', collect);
  const waiters = new Map<string, ((m: Record<string, unknown>) => void)[]>();
  proc.on('message', (raw) => {
    const m = raw as Record<string, unknown>;
    if (m['type'] === 'error') log(`${name}: ${String(m['message'])}`);
    const first = waiters.get(String(m['type']))?.shift();
    if (first) first(m);
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
    child: proc,
    request: <T>(message: unknown, reply: string, ms: number) => {
      const answer = wait<T>(reply, ms);
      proc.send(message as never);
      return answer;
    },
    output: () => out,
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
// The writer: mutations through the gateway (as the row's owner) and direct SQL, one commit at a time

interface WriterState {
  deletedPlayers: Set<number>;
  /** Documents each bench sender authored (it may update and delete them through mutations). */
  docs: Map<string, number[]>;
  /** (sender, group) pairs where the sender may insert documents (perms with 'w'). */
  inserters: { sender: string; grp: number }[];
  tokens: Map<string, string>;
  commits: number;
  mutations: number;
  sqlWrites: number;
  errors: number;
  errorSamples: string[];
  seq: number;
  /** Runs a commit of a table only rules read (membership, admin) while the reference records the moves it causes. */
  moves: (changed: 'membership' | 'admin', sender: string, commit: () => Promise<void>) => Promise<void>;
  /** Bench senders with a subscription (whose views such commits move rows in and out of). */
  watched: string[];
}

const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)]!;
const randInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

async function writeOne(sql: Sql, url: string, config: Config, w: WriterState): Promise<void> {
  const seq = ++w.seq;
  const sender = () => `u${randInt(1, SENDERS)}`;
  const token = async (s: string) => {
    let t = w.tokens.get(s);
    if (!t) w.tokens.set(s, (t = await signToken(config, { sender: s, expires: '2h' })));
    return t;
  };
  const mutate = async (as: string, query: string, variables: Record<string, unknown>): Promise<Record<string, unknown> | null> => {
    w.mutations++;
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(as)}` },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(15_000),
    });
    const body = (await response.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
    if (response.status !== 200 || body.errors?.length) throw new Error(`mutation as ${as}: HTTP ${response.status} ${JSON.stringify(body).slice(0, 300)}`);
    return body.data ?? null;
  };
  const affected = (data: Record<string, unknown> | null, field: string) => (data?.[field] as { affected_rows?: number } | undefined)?.affected_rows;
  const m = Math.random();
  if (m < 0.04) {
    // SQL: grant or revoke a read membership (the group's documents enter or leave the member's view).
    // Memberships with 'w' stay: the writer inserts documents through them.
    w.sqlWrites++;
    const s = pick(w.watched);
    const grp = randInt(1, 200);
    if (w.inserters.some((i) => i.sender === s && i.grp === grp)) return;
    await w.moves('membership', s, async () => {
      const gone = await sql.unsafe('DELETE FROM membership WHERE member = $1 AND grp_id = $2 RETURNING 1', [s, grp]);
      if (!gone.length) await sql.unsafe("INSERT INTO membership (grp_id, member, perms) VALUES ($1, $2, 'r')", [grp, s]);
    });
    w.commits++;
    return;
  }
  if (m < 0.045) {
    // SQL: make a watched sender an admin, or no longer one (every account and player enters or leaves its view).
    w.sqlWrites++;
    const s = pick(w.watched);
    await w.moves('admin', s, async () => {
      const gone = await sql.unsafe('DELETE FROM admin WHERE identity = $1 RETURNING 1', [s]);
      if (!gone.length) await sql.unsafe('INSERT INTO admin (identity) VALUES ($1)', [s]);
    });
    w.commits++;
    return;
  }
  const r = Math.random();
  if (r < 0.18) {
    // SQL: an account's name (a bench sender's, or anyone's: only admins see those).
    w.sqlWrites++;
    const id = Math.random() < 0.7 ? randInt(1, SENDERS) : randInt(1, ACCOUNTS);
    await sql.unsafe('UPDATE account SET name = $1 WHERE id = $2', [`sql-${seq}`, id]);
  } else if (r < 0.32) {
    const s = sender();
    const data = await mutate(s, 'mutation M($id: Int!, $name: String!) { update_account(where: { id: { _eq: $id } }, _set: { name: $name }) { affected_rows } }', { id: Number(s.slice(1)), name: `mut-${seq}` });
    if (affected(data, 'update_account') !== 1) throw new Error(`update_account as ${s}: ${JSON.stringify(data)}`);
  } else if (r < 0.42) {
    // SQL: one transaction over several players' scores.
    w.sqlWrites++;
    const ids = Array.from({ length: randInt(2, 12) }, () => randInt(1, SENDERS + 100));
    await sql.begin(async (tx) => {
      await tx.unsafe('UPDATE player SET score = score + 1 WHERE id = ANY($1::int[])', [ids]);
    });
  } else if (r < 0.56) {
    // Mutation: a player's level (moves it across the `level > 50` of the player_hi streams).
    const s = sender();
    const id = Number(s.slice(1));
    const data = await mutate(s, 'mutation M($id: Int!, $level: Int!) { update_player(where: { id: { _eq: $id } }, _set: { level: $level }) { affected_rows } }', { id, level: randInt(1, 100) });
    const want = w.deletedPlayers.has(id) ? 0 : 1;
    if (affected(data, 'update_player') !== want) throw new Error(`update_player as ${s}: ${JSON.stringify(data)} (expected ${want})`);
  } else if (r < 0.62) {
    // SQL: delete a player, or bring a deleted one back.
    w.sqlWrites++;
    const back = [...w.deletedPlayers];
    if (back.length && Math.random() < 0.5) {
      const id = pick(back);
      await sql.unsafe('INSERT INTO player (id, level, score) VALUES ($1, $2, 0)', [id, randInt(1, 100)]);
      w.deletedPlayers.delete(id);
    } else {
      const id = randInt(1, SENDERS);
      if (!w.deletedPlayers.has(id)) {
        await sql.unsafe('DELETE FROM player WHERE id = $1', [id]);
        w.deletedPlayers.add(id);
      }
    }
  } else if (r < 0.7) {
    const { sender: s, grp } = pick(w.inserters);
    const data = await mutate(s, 'mutation M($g: Int!, $t: String!) { insert_document_one(object: { grp_id: $g, title: $t, body: "soak" }) { id } }', { g: grp, t: `ins-${seq}` });
    const id = (data?.['insert_document_one'] as { id?: number } | null)?.id;
    if (typeof id !== 'number') throw new Error(`insert_document_one as ${s}: ${JSON.stringify(data)}`);
    w.docs.set(s, [...(w.docs.get(s) ?? []), id]);
  } else if (r < 0.78) {
    const authors = [...w.docs.keys()].filter((a) => w.docs.get(a)!.length);
    const s = pick(authors);
    const data = await mutate(s, 'mutation M($id: Int!, $t: String!) { update_document(where: { id: { _eq: $id } }, _set: { title: $t }) { affected_rows } }', { id: pick(w.docs.get(s)!), t: `upd-${seq}` });
    if (affected(data, 'update_document') !== 1) throw new Error(`update_document as ${s}: ${JSON.stringify(data)}`);
  } else if (r < 0.82) {
    const authors = [...w.docs.keys()].filter((a) => w.docs.get(a)!.length > 3);
    if (!authors.length) return;
    const s = pick(authors);
    const list = w.docs.get(s)!;
    const id = list.splice(Math.floor(Math.random() * list.length), 1)[0]!;
    const data = await mutate(s, 'mutation M($id: Int!) { delete_document(where: { id: { _eq: $id } }) { affected_rows } }', { id });
    if (affected(data, 'delete_document') !== 1) throw new Error(`delete_document as ${s}: ${JSON.stringify(data)}`);
  } else if (r < 0.9) {
    // SQL: move a document to another group (it leaves some members' view and enters others').
    w.sqlWrites++;
    await sql.unsafe('UPDATE document SET grp_id = $1, title = $2 WHERE id = (SELECT id FROM document WHERE id >= $3 ORDER BY id LIMIT 1)', [randInt(1, 200), `mv-${seq}`, randInt(1, 2000)]);
  } else if (r < 0.95) {
    // SQL: insert a document by a bench sender, or delete one nobody tracks.
    w.sqlWrites++;
    if (Math.random() < 0.6) {
      const s = sender();
      const [row] = await sql.unsafe<{ id: number }[]>("INSERT INTO document (grp_id, author, title, body) VALUES ($1, $2, $3, 'sql') RETURNING id", [randInt(1, 200), s, `sqlins-${seq}`]);
      w.docs.set(s, [...(w.docs.get(s) ?? []), row!.id]);
    } else {
      const tracked = new Set([...w.docs.values()].flat());
      const rows = await sql.unsafe<{ id: number }[]>('SELECT id FROM document WHERE id >= $1 ORDER BY id LIMIT 20', [randInt(1, 2000)]);
      const victim = rows.find((x) => !tracked.has(x.id));
      if (victim) await sql.unsafe('DELETE FROM document WHERE id = $1', [victim.id]);
    }
  } else {
    // SQL: one transaction over three tables.
    w.sqlWrites++;
    const id = randInt(1, SENDERS);
    await sql.begin(async (tx) => {
      await tx.unsafe('UPDATE account SET name = $1 WHERE id = $2', [`tx-${seq}`, id]);
      await tx.unsafe('UPDATE player SET score = score + 7 WHERE id = $1', [id]);
      await tx.unsafe('UPDATE document SET title = $1 WHERE id = (SELECT id FROM document WHERE author = $2 ORDER BY id LIMIT 1)', [`tx-${seq}`, `u${id}`]);
    });
  }
  w.commits++;
}

/** Writes at `rate` commits/s until `stop()` says so. */
async function writeLoop(sql: Sql, url: string, config: Config, w: WriterState, rate: number, stop: () => boolean): Promise<void> {
  const interval = 1000 / rate;
  while (!stop()) {
    const started = Date.now();
    try {
      await writeOne(sql, url, config, w);
    } catch (err) {
      w.errors++;
      if (w.errorSamples.length < 10) w.errorSamples.push((err as Error).message.slice(0, 300));
    }
    await sleep(Math.max(0, interval * (0.5 + Math.random()) - (Date.now() - started)));
  }
}

// ---------------------------------------------------------------------------------------------
// The reference: which events each (stream kind, sender) must receive, from the change log and the
// compiled rules (rendered for a batch of senders, as the live engine does), independent of the
// gateway's live engine.

/** Hand-written equivalents of the streams' `where` arguments, on the image. */
const STREAM_WHERE: Record<StreamKind, ((row: symbol) => SQL) | null> = {
  account: null,
  player: null,
  player_hi: (row) => pg`${pg.identifier(row, 'level')} > 50`,
  document: null,
};

/** docs/delivery.md: INSERT/UPDATE to whoever may see the new image, DELETE to whoever could see the old one; moves become INSERT/DELETE. */
function expectedOp(op: string, n: boolean, o: boolean): string | null {
  if (op === 'INSERT') return n ? 'I' : null;
  if (op === 'DELETE') return o ? 'D' : null;
  if (n && o) return 'U';
  if (n) return 'I';
  return o ? 'D' : null;
}

/**
 * Positions as numbers that keep the gateway's order (live/source.ts): a move `p:n` comes after
 * `p - 1` and before `p` itself, so `p:n` is p·10⁶ + n and `p` is p·10⁶ + 999,999, which is also
 * `through(p)`, the last key at p.
 */
const SUB = 1_000_000;
const through = (p: number) => p * SUB + SUB - 1;
const posKey = (position: string) => {
  const [p, n] = position.split(':');
  return n === undefined ? through(Number(p)) : Number(p) * SUB + Number(n);
};
const posText = (key: number) => (key % SUB === SUB - 1 ? `${Math.floor(key / SUB)}` : `${Math.floor(key / SUB)}:${key % SUB}`);

class Reference {
  /** kind|sender → events in position order: [position key, 'op:id']. */
  readonly events = new Map<string, [number, string][]>();
  /** The last position judged (a plain position; its moves are included). */
  upTo = 0;
  /** Extending and recording a move run one at a time (a commit judged with the state after a later one would be wrong). */
  private queue: Promise<unknown> = Promise.resolve();
  constructor(
    private readonly loaded: Loaded,
    private readonly senders: string[],
  ) {}

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => {});
    return run;
  }

  private push(kind: StreamKind, sender: string, key: number, event: string): void {
    const k = `${kind}|${sender}`;
    let list = this.events.get(k);
    if (!list) this.events.set(k, (list = []));
    list.push([key, event]);
  }

  /** Visibility AND the stream's `where` of `kind` on `row`, for every sender of `params`. */
  private matches(kind: StreamKind, row: symbol, params: BatchParams): SQL {
    const where = STREAM_WHERE[kind];
    return and([this.loaded.rules.visibility(STREAMS[kind].table, row, params), where ? where(row) : pg.true]);
  }

  private relation(params: BatchParams, senders: string[] = this.senders): SQL {
    return params.relation(senders.map((s) => ({ id: s, identity: { sender: s, claims: { sub: s } } })));
  }

  /**
   * Judges every stamped change up to `to` with the tables as they are now. That is the state at
   * their positions because the writer is the only one and extends the reference to the present
   * before each commit of a table only rules read (`moves`), so no such commit lies between a
   * change and its judgement.
   */
  extend(to: number): Promise<void> {
    return this.exclusive(() => this.judge(to));
  }

  private async judge(to: number): Promise<void> {
    if (to <= this.upTo) return;
    const { db, config } = this.loaded;
    for (const kind of Object.keys(STREAMS) as StreamKind[]) {
      const table = STREAMS[kind].table;
      const params = new BatchParams();
      const N = Symbol('n_image');
      const O = Symbol('o_image');
      const nOk = this.matches(kind, N, params);
      const oOk = this.matches(kind, O, params);
      const relation = this.relation(params);
      const t = pg.identifier(config.database.schema, table);
      const image = (column: string, alias: symbol, ok: SQL) =>
        pg`CASE WHEN l.${pg.identifier(column)} IS NULL THEN false ELSE coalesce((SELECT ${ok} FROM jsonb_populate_record(NULL::${t}, l.${pg.identifier(column)}) AS ${pg.identifier(alias)}), false) END`;
      const { text, values } = compileSql(
        pg`SELECT ${params.sid} AS sender, l.pos::text AS pos, l.op, ${image('new', N, nOk)} AS n, ${image('old', O, oOk)} AS o,
                  coalesce(l.new ->> 'id', l.old ->> 'id') AS id
             FROM rowgate.change_log AS l CROSS JOIN ${relation}
            WHERE l.tbl = ${pg.value(table)} AND l.pos > ${pg.value(String(this.upTo))}::bigint AND l.pos <= ${pg.value(String(to))}::bigint
            ORDER BY l.pos`,
      );
      const rows = await db.sql.unsafe<{ sender: string; pos: string; op: string; n: boolean; o: boolean; id: string }[]>(text, values as never[]);
      for (const row of rows) {
        const op = expectedOp(row.op, row.n, row.o);
        if (op) this.push(kind, row.sender, posKey(row.pos), `${op}:${row.id}`);
      }
    }
    this.upTo = to;
  }

  /** The ids of `kind`'s rows `sender` may see now (and its `where` admits). */
  private async visible(kind: StreamKind, sender: string): Promise<Set<number>> {
    const params = new BatchParams();
    const X = Symbol('x');
    const ok = this.matches(kind, X, params);
    const t = pg.identifier(this.loaded.config.database.schema, STREAMS[kind].table);
    const { text, values } = compileSql(pg`SELECT ${pg.identifier(X, 'id')} AS id FROM ${this.relation(params, [sender])} CROSS JOIN ${t} AS ${pg.identifier(X)} WHERE ${ok}`);
    const rows = await this.loaded.db.sql.unsafe<{ id: number }[]>(text, values as never[]);
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Runs `commit` (one row of `changed`, a table no stream is of) and records the moves it causes,
   * as docs/delivery.md promises them: at the commit's position p, per subscriber, a DELETE for
   * each row that left its view and an INSERT for each that entered it, at p:1, p:2, … in the
   * order of their keys as text (`[12]` before `[3]`). Found by comparing the visible rows just
   * before and just after the commit (nothing else writes meanwhile) of `sender`, the member or
   * admin the commit is about: under the demo's rules no one else's view depends on that row (were
   * that wrong, the gateway's moves for others would count as extra).
   */
  moves(changed: string, sender: string, commit: () => Promise<void>, settled: () => Promise<number>): Promise<void> {
    return this.exclusive(async () => {
      await this.judge(await settled());
      const kinds = (Object.keys(STREAMS) as StreamKind[]).filter((k) => this.loaded.rules.readsTables(STREAMS[k].table).has(changed));
      const before = await Promise.all(kinds.map((k) => this.visible(k, sender)));
      await commit();
      const at = await settled();
      const after = await Promise.all(kinds.map((k) => this.visible(k, sender)));
      kinds.forEach((kind, i) => {
        const was = before[i]!;
        const is = after[i]!;
        const moved = [...[...was].filter((id) => !is.has(id)).map((id) => [id, 'D'] as const), ...[...is].filter((id) => !was.has(id)).map((id) => [id, 'I'] as const)];
        moved.sort((x, y) => (`[${x[0]}]` < `[${y[0]}]` ? -1 : 1));
        moved.forEach(([id, op], n) => this.push(kind, sender, at * SUB + n + 1, `${op}:${id}`));
      });
      // The commit's own change is of no stream's table: nothing else to judge up to it.
      this.upTo = at;
    });
  }

  /** Events of (kind, sender) with keys in (after, upper]. */
  range(kind: StreamKind, sender: string, after: number, upper: number): [number, string][] {
    const list = this.events.get(`${kind}|${sender}`) ?? [];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]![0] <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: [number, string][] = [];
    for (let i = lo; i < list.length && list[i]![0] <= upper; i++) out.push(list[i]!);
    return out;
  }
}

interface Check {
  segments: number;
  events: number;
  /** Reference events in a segment's range that it did not receive. */
  lost: number;
  /** Of those, the ones past the segment's last received event (open persistent segments at the end): still undelivered, a lag unless the engine settled. */
  tail: number;
  /** Positions received twice, or out of order, within a segment. */
  duplicates: number;
  /** Received events the reference does not have (or with another op or row). */
  extra: number;
  samples: string[];
}

/**
 * Every segment against the reference, up to its last received event; open persistent ones up to `top`
 * when `final`. Events past what the reference covers (they arrived after it was extended) wait for the next check.
 */
function check(ref: Reference, segments: Segment[], final: boolean, top: number): Check {
  const c: Check = { segments: segments.length, events: 0, lost: 0, tail: 0, duplicates: 0, extra: 0, samples: [] };
  const sample = (s: string) => c.samples.length < 10 && c.samples.push(s);
  for (const seg of segments) {
    c.duplicates += seg.disorder;
    const after = posKey(seg.after);
    const events = seg.events.filter((e) => posKey(e[0]) <= through(ref.upTo));
    c.events += events.length;
    const upper = final && seg.persistent && seg.open ? through(top) : Math.max(after, ...events.map((e) => posKey(e[0])));
    const want = ref.range(seg.kind, seg.sender, after, upper);
    const got = new Map<number, string>();
    for (const [pos, op, id] of events) {
      const p = posKey(pos);
      if (got.has(p)) {
        c.duplicates++;
        sample(`client ${seg.client} ${seg.kind} ${seg.sender}: position ${posText(p)} twice`);
      }
      got.set(p, `${op}:${id}`);
    }
    const wanted = new Map(want);
    const lastGot = Math.max(after, ...events.map((e) => posKey(e[0])));
    for (const [p, e] of want) {
      if (!got.has(p)) {
        c.lost++;
        if (p > lastGot) c.tail++;
        sample(`client ${seg.client} ${seg.kind} ${seg.sender} after ${posText(after)}: missing ${posText(p)} ${e}${seg.persistent ? ' (persistent)' : ''}`);
      }
    }
    for (const [p, e] of got) {
      const w = wanted.get(p);
      if (w !== e) {
        c.extra++;
        sample(`client ${seg.client} ${seg.kind} ${seg.sender} after ${posText(after)}: received ${posText(p)} ${e}, reference ${w ?? 'nothing'}`);
      }
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padStart(widths[i]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const minutes = envNumber('BENCH_SOAK_MINUTES', 10);
  const warmupS = envNumber('BENCH_SOAK_WARMUP', 45);
  const clientCount = Math.round(envNumber('BENCH_SOAK_CLIENTS', 240));
  const rate = envNumber('BENCH_SOAK_RATE', 8);
  const tokenSeconds = Math.round(envNumber('BENCH_SOAK_TOKEN', 60));
  const churnSeconds = envNumber('BENCH_SOAK_CHURN', 10);
  const settleS = envNumber('BENCH_SOAK_SETTLE', 180);
  // Everything is bounded: a watchdog ends the run (with cleanup) well after it should have finished.
  const budgetMs = (warmupS + minutes * 60 + 2 * settleS) * 1000 + 8 * 60_000;

  const cleanup: (() => Promise<void>)[] = [];
  const runCleanup = async () => {
    for (const step of cleanup.reverse()) await step().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    cleanup.length = 0;
  };
  process.once('SIGINT', () => void runCleanup().finally(() => process.exit(130)));
  const watchdog = setTimeout(() => {
    log(`watchdog: the run exceeded ${budgetMs / 1000} s; cleaning up`);
    void runCleanup().finally(() => process.exit(3));
  }, budgetMs);
  watchdog.unref();

  try {
    const server = process.env['DATABASE_URL'];
    if (server && !/^postgres(ql)?:\/\/[^/]*@?(127\.0\.0\.1|localhost)[:/]/.test(server)) log(`note: DATABASE_URL is not on 127.0.0.1: ${new URL(server).host}`);
    const { url: benchUrl, pgVersion } = await openBenchDatabase(DATABASE, 'rowgate-soak-', cleanup, log);
    const sql: Sql = connect(benchUrl, { max: 2 });
    cleanup.push(() => sql.end({ timeout: 5 }));
    const counts = await loadData(sql, { accounts: ACCOUNTS, admins: ADMINS, groups: 200, documents: 2000, senders: SENDERS }, new URL('../demo/schema.sql', import.meta.url));
    log(`loaded ${Object.entries(counts).map(([t, c]) => `${t} ${c}`).join(', ')}`);

    const demo = JSON.parse(await readFile(join(ROOT, 'demo/rowgate.config.json'), 'utf8')) as Record<string, unknown>;
    const configDir = await mkdtemp(join(tmpdir(), 'rowgate-soak-config-'));
    cleanup.push(() => rm(configDir, { recursive: true, force: true }));
    const configPath = join(configDir, 'soak.json');
    await writeFile(configPath, JSON.stringify({ ...demo, database: { url: benchUrl }, limits: { ...((demo['limits'] as object | undefined) ?? {}), maxSubscriptionsPerSocket: 100 } }, null, 2));
    const config = parseConfig({ ...demo, database: { url: benchUrl } }, {});
    // LOG_LEVEL warn: the gateway's request lines (one per request at info) are not what is measured.
    const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn', DATABASE_URL: benchUrl };
    for (const name of ['ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET', 'PORT']) delete childEnv[name];

    log('starting the gateway …');
    const { child: gateway, ready } = await startChild('gateway', ['--expose-gc', '--import', 'tsx', 'bench/soak-gateway.ts', configPath], childEnv, 'listening');
    cleanup.push(() => stopChild(gateway, { type: 'stop' } satisfies ToSoakGateway, 30_000));
    const url = String(ready['url']);
    const { child: clients } = await startChild('clients', ['--import', 'tsx', 'bench/soak-client.ts'], childEnv, 'ready');
    cleanup.push(() => stopChild(clients, { type: 'exit' } satisfies ToClient, 30_000));
    const gwStats = (gc = false) => gateway.request<SoakGatewayStats>({ type: 'stats', gc } satisfies ToSoakGateway, 'stats', 30_000);
    const clientStats = () => clients.request<ClientStats>({ type: 'stats' } satisfies ToClient, 'stats', 30_000);

    // The rules, compiled by the orchestrator itself (after the gateway installed capture).
    // The child's environment: DATABASE_URL names the bench database, not the server's default one.
    const loaded = await loadAll(configPath, { handleSignals: false, env: childEnv });
    cleanup.push(() => loaded.db.close());

    // Clients: change streams over four kinds (ten admins on account, who see every account change),
    // live queries over three; every 10th client lets its tokens expire.
    const specs: ClientSpec[] = [];
    const streamKinds = Object.keys(STREAMS) as StreamKind[];
    const liveKinds = Object.keys(LIVES) as LiveKind[];
    const streamClients = Math.round(clientCount * 0.6);
    for (let i = 0; i < clientCount; i++) {
      const id = i;
      const expiring = i % 10 === 9;
      if (i < streamClients) {
        const admin = i < 10;
        specs.push({ id, sender: admin ? `u${ACCOUNTS - i}` : `u${1 + (i % SENDERS)}`, stream: admin ? 'account' : streamKinds[i % streamKinds.length]!, expiring });
      } else {
        specs.push({ id, sender: `u${1 + ((i * 7) % SENDERS)}`, live: liveKinds[i % liveKinds.length]!, expiring });
      }
    }
    const senders = [...new Set(specs.map((s) => s.sender))].sort();
    const ref = new Reference(loaded, senders);

    // Writer state.
    const memberships = await sql.unsafe<{ member: string; grp_id: number }[]>("SELECT member, grp_id FROM membership WHERE perms LIKE '%w%' AND member = ANY($1::text[])", [Array.from({ length: SENDERS }, (_, i) => `u${i + 1}`)]);
    const authored = await sql.unsafe<{ author: string; id: number }[]>('SELECT author, id FROM document WHERE author = ANY($1::text[]) ORDER BY id', [Array.from({ length: SENDERS }, (_, i) => `u${i + 1}`)]);
    const topPosition = async () => {
      const [row] = await sql.unsafe<{ top: string; held: boolean }[]>('SELECT COALESCE(max(pos), 0)::text AS top, EXISTS (SELECT 1 FROM rowgate.change_log WHERE pos IS NULL) AS held FROM rowgate.change_log');
      return { top: Number(row!.top), held: row!.held };
    };
    /** The last position once every committed change is stamped (the gateway's feed stamps them). */
    const stampedTop = async () => {
      for (;;) {
        const { top, held } = await topPosition();
        if (!held) return top;
        await sleep(20);
      }
    };
    const writer: WriterState = {
      deletedPlayers: new Set(),
      docs: new Map(),
      inserters: memberships.map((m) => ({ sender: m.member, grp: m.grp_id })),
      tokens: new Map(),
      commits: 0,
      mutations: 0,
      sqlWrites: 0,
      errors: 0,
      errorSamples: [],
      seq: 0,
      moves: (changed, sender, commit) => ref.moves(changed, sender, commit, stampedTop),
      watched: senders,
    };
    for (const d of authored) writer.docs.set(d.author, [...(writer.docs.get(d.author) ?? []), d.id]);

    /** Until the writer's changes are stamped and the live engine ran no statement for 2 s (≤ capMs). */
    const settle = async (capMs: number) => {
      const deadline = Date.now() + capMs;
      let last = await gwStats();
      let quietSince = Date.now();
      while (Date.now() < deadline) {
        await sleep(500);
        const now = await gwStats();
        const { held } = await topPosition();
        if (now.statements !== last.statements || held) quietSince = Date.now();
        last = now;
        if (Date.now() - quietSince >= 2000) return true;
      }
      return false;
    };
    /** Clients gone, engine idle, GC: the gateway at rest. */
    const rest = async (label: string) => {
      await clients.request({ type: 'leave' } satisfies ToClient, 'left', 60_000);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const s = await gwStats();
        if ((s.sockets === 0 && s.subscriptions === 0 && s.wsSubscriptions === 0) || Date.now() > deadline) break;
        await sleep(250);
      }
      await settle(15_000);
      // RSS after a GC is read until it stops moving (the allocator returns freed pages to the system
      // late, and the engine's resume histories live 60 s): a single early reading measures how
      // recently the peak was, not what is held. At most 90 s.
      let s = await gwStats(true);
      for (let i = 0; i < 18; i++) {
        await sleep(5000);
        const next = await gwStats(true);
        const moved = Math.abs(next.rss - s.rss) / s.rss;
        s = next;
        if (moved < 0.01 && i >= 12) break;
      }
      log(`${label}: RSS ${mib(s.rss)} MiB, heap ${mib(s.heapUsed)} MiB, active resources ${s.resources} ${JSON.stringify(s.resourceKinds)}, handles ${s.handles}, sockets ${s.sockets}, subscriptions ${s.subscriptions}`);
      return s;
    };

    interface PhaseResult {
      rows: string[][];
      check: Check;
      client: ClientStats;
      final: FinalReport;
      commits: number;
      writerErrors: number;
      writerSamples: string[];
      gatewayStderr: number;
      settled: boolean;
    }

    const runPhase = async (name: string, durationMs: number, printEveryMs: number): Promise<PhaseResult> => {
      const { top: after } = await topPosition();
      await ref.extend(after);
      const stderr0 = (await gwStats()).stderrLines;
      const writer0 = { commits: writer.commits, errors: writer.errors };
      log(`${name}: ${specs.length} clients (${streamClients} change streams, ${specs.length - streamClients} live queries, ${specs.filter((s) => s.expiring).length} letting tokens expire), after position ${after}, ${durationMs / 1000} s`);
      await clients.request({ type: 'start', url, configPath, clients: specs, after: String(after), tokenSeconds, churnSeconds, reconnectShare: 0.2 } satisfies ToClient, 'started', 120_000);
      let stopped = false;
      const writing = writeLoop(sql, url, config, writer, rate, () => stopped);
      const started = Date.now();
      const rows: string[][] = [['min', 'clients', 'subs (gw)', 'shapes', 'events/s', 'commits/s', 'reconnects', 'refreshes', '4403 (exp)', 'RSS MiB', 'heap MiB', 'handles', 'resources', 'gw CPU %', 'load', 'errors', 'lost', 'dup/extra']];
      let prev = { at: started, events: 0, commits: writer.commits, cpu: 0 };
      const g0 = await gwStats();
      prev.cpu = g0.cpuUser + g0.cpuSystem;
      let lastCheck: Check = { segments: 0, events: 0, lost: 0, tail: 0, duplicates: 0, extra: 0, samples: [] };
      const row = async (label: string) => {
        const [g, c] = [await gwStats(), await clientStats()];
        const { top } = await topPosition();
        await ref.extend(top);
        const { segments } = await clients.request<{ segments: Segment[] }>({ type: 'segments' } satisfies ToClient, 'segments', 60_000);
        lastCheck = check(ref, segments, false, top);
        const now = Date.now();
        const secs = (now - prev.at) / 1000;
        const cpu = g.cpuUser + g.cpuSystem;
        rows.push([
          label,
          String(c.connected),
          String(g.wsSubscriptions),
          String(g.shapes),
          ((c.events - prev.events) / secs).toFixed(1),
          ((writer.commits - prev.commits) / secs).toFixed(1),
          String(c.reconnects),
          String(c.refreshes),
          String(c.expiries),
          mib(g.rss),
          mib(g.heapUsed),
          String(g.handles),
          String(g.resources),
          (((cpu - prev.cpu) / 1e6 / secs) * 100).toFixed(0),
          loadavg()[0]!.toFixed(1),
          String(c.errors + writer.errors - writer0.errors + g.stderrLines - stderr0),
          String(lastCheck.lost),
          String(lastCheck.duplicates + lastCheck.extra),
        ]);
        prev = { at: now, events: c.events, commits: writer.commits, cpu };
        log(`${name} ${rows.at(-1)!.join(' ')}`);
      };
      let minute = 1;
      while (Date.now() - started < durationMs) {
        const next = Math.min(started + minute * printEveryMs, started + durationMs);
        await sleep(Math.max(0, next - Date.now()));
        await row(String(minute));
        minute++;
      }
      stopped = true;
      await writing;
      log(`${name}: writer stopped (${writer.commits - writer0.commits} commits); quiescing the clients (final reconnect, resuming) …`);
      await clients.request({ type: 'quiesce', timeoutMs: 120_000 } satisfies ToClient, 'quiesced', 180_000);
      const settled = await settle(settleS * 1000);
      const { top } = await topPosition();
      await ref.extend(top);
      const { segments } = await clients.request<{ segments: Segment[] }>({ type: 'segments' } satisfies ToClient, 'segments', 60_000);
      const finalCheck = check(ref, segments, true, top);
      const final = await clients.request<FinalReport>({ type: 'final' } satisfies ToClient, 'final', 120_000);
      const client = await clientStats();
      const g = await gwStats();
      rows.push([
        'end',
        String(client.connected),
        String(g.wsSubscriptions),
        String(g.shapes),
        '-',
        '-',
        String(client.reconnects),
        String(client.refreshes),
        String(client.expiries),
        mib(g.rss),
        mib(g.heapUsed),
        String(g.handles),
        String(g.resources),
        '-',
        loadavg()[0]!.toFixed(1),
        String(client.errors + writer.errors - writer0.errors + g.stderrLines - stderr0),
        String(finalCheck.lost),
        String(finalCheck.duplicates + finalCheck.extra),
      ]);
      return {
        rows,
        check: finalCheck,
        client,
        final,
        commits: writer.commits - writer0.commits,
        writerErrors: writer.errors - writer0.errors,
        writerSamples: writer.errorSamples.slice(),
        gatewayStderr: g.stderrLines - stderr0,
        settled,
      };
    };

    // Warm-up: the same churn, briefly; then everyone leaves and the gateway at rest is the baseline.
    const warm = await runPhase('warm-up', warmupS * 1000, warmupS * 1000);
    const start = await rest('start (after warm-up, no clients, after GC)');
    const soak = await runPhase('soak', minutes * 60_000, 60_000);
    const end = await rest('end (all clients left, after GC)');

    // Figures.
    const cpu = cpus();
    const out = (line = '') => console.log(line);
    out('');
    out(`bench:soak — ${minutes} min of churn (+ ${warmupS} s warm-up), ${specs.length} clients, writer ≈ ${rate} commits/s, tokens of ${tokenSeconds} s`);
    out(`machine: node ${process.version}, PostgreSQL ${pgVersion}${process.env['DATABASE_URL'] ? '' : ' (embedded)'}, ${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'})`);
    out(`data: ${Object.entries(counts).map(([t, c]) => `${t} ${c}`).join(', ')}`);
    out('');
    out(table(soak.rows));
    out('');
    out('(min: clients = sockets connected; subs (gw) = subscriptions the gateway holds; RSS/heap/handles without GC while running;');
    out(' handles = process._getActiveHandles().length, resources = process.getActiveResourcesInfo().length; errors cumulative;');
    out(' lost / dup+extra: every change-stream segment so far checked against the reference up to its last event, and at the end up to the last position)');
    out('');
    for (const [label, p] of [['warm-up', warm], ['soak', soak]] as const) {
      const c = p.client;
      out(
        `${label}: ${p.commits} commits (writer errors ${p.writerErrors}); client connects ${c.connects}, reconnects ${c.reconnects}, token refreshes ${c.refreshes}, ` +
          `expiries closed with 4403 ${c.expiries} (delay after exp: max ${c.expiryDelays.length ? Math.max(...c.expiryDelays) : '-'} ms), temporary subscriptions ${c.tempSubscriptions}, ` +
          `events+results received ${c.events}; change-stream segments ${p.check.segments} with ${p.check.events} events checked: lost ${p.check.lost} (of which ${p.check.tail} past the last event received: not delivered by the time of the check), duplicates/out of order ${p.check.duplicates}, extra/wrong ${p.check.extra}; ` +
          `live queries at the end: ${p.final.liveChecked - p.final.liveMismatches}/${p.final.liveChecked} exact; client errors ${c.errors} ${JSON.stringify(c.errorKinds)}; gateway stderr lines ${p.gatewayStderr}${p.settled ? '' : `; the engine did NOT settle within ${settleS} s`}`,
      );
      for (const s of [...c.errorSamples.slice(0, 10), ...p.writerSamples.slice(0, 5), ...p.check.samples, ...p.final.mismatchSamples]) out(`    ${s}`);
    }
    if (soak.gatewayStderr + warm.gatewayStderr > 0) out(`gateway output (tail):\n${gateway.output().slice(-3000)}`);
    out('');
    out(`gateway at rest, after GC: start RSS ${mib(start.rss)} MiB, heap ${mib(start.heapUsed)} MiB, handles ${start.handles}, resources ${start.resources} ${JSON.stringify(start.resourceKinds)}`);
    out(`                           end   RSS ${mib(end.rss)} MiB, heap ${mib(end.heapUsed)} MiB, handles ${end.handles}, resources ${end.resources} ${JSON.stringify(end.resourceKinds)}`);
    out('');
    const within = (a: number, b: number) => Math.abs(b - a) <= 0.1 * a;
    const pct = (a: number, b: number) => `${b >= a ? '+' : ''}${(((b - a) / a) * 100).toFixed(1)} %`;
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT MET');
    const errors = [warm, soak].reduce((a, p) => a + p.client.errors + p.writerErrors + p.gatewayStderr + p.final.liveMismatches + (p.settled ? 0 : 1), 0);
    const lost = [warm, soak].reduce((a, p) => a + p.check.lost + p.check.duplicates + p.check.extra, 0);
    const targets = [
      [`RSS within 10 % (${mib(start.rss)} → ${mib(end.rss)} MiB, ${pct(start.rss, end.rss)})`, within(start.rss, end.rss)],
      [`handles within 10 % (${start.handles} → ${end.handles}; active resources ${start.resources} → ${end.resources})`, within(start.handles, end.handles) && within(start.resources, end.resources)],
      [`errors 0 (client errors, writer errors, gateway stderr lines, live queries not at their visible result: ${errors})`, errors === 0],
      [`lost 0 (missing + duplicated + extra change-stream events: ${lost})`, lost === 0],
    ] as const;
    for (const [what, ok] of targets) out(`${what}: ${verdict(ok)}`);
    if (targets.some(([, ok]) => !ok)) process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
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
