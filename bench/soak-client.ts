/**
 * The clients of `npm run bench:soak`, as one child process: one graphql-ws socket per client, each
 * with one persistent subscription (a change stream resumed with `after`, or a live query), churning:
 * temporary subscriptions that come and go beside it, reconnects (close the socket, open a new one,
 * resubscribe; streams resume after the last position received), token refreshes (tokens live
 * `tokenSeconds`; a new socket with a new token before expiry) and, for `expiring` clients, tokens
 * left to expire: the gateway must close the socket with 4403 at `exp`, then the client reconnects.
 *
 * Every change-stream subscription is recorded as a Segment (after, events); bench/soak.ts checks
 * each one against the change log. Anything unexpected is an error: a GraphQL error, a subscription
 * error, a close code other than our own close or an expiring token's 4403, a 4403 that comes early
 * or late, a connect that fails, a first result that does not come.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../src/config/index.ts';
import { comparePositions } from '../src/live/index.ts';
import { signToken } from '../src/server/token.ts';
import { LIVES, STREAMS, type ClientSpec, type ClientStats, type FinalReport, type PhaseOptions, type Segment, type StreamKind, type ToClient } from './soak-shared.ts';

const send = (message: unknown) => process.send!(message);
const DROP = Number(process.env['BENCH_SOAK_DROP'] ?? 0) || 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

interface Conn {
  client: Client;
  exp: number;
  /** Set before we close it ourselves: whatever it reports afterwards is ignored. */
  closing: boolean;
  /** Set once the gateway closed it with an expected 4403. */
  expired: boolean;
}

interface State {
  spec: ClientSpec;
  conn: Conn | null;
  busy: Promise<void> | null;
  /** Last position received on the persistent stream. */
  lastPos: string;
  persistent: Segment | null;
  /** Last live-query result (data) of the persistent live query. */
  lastLive: unknown;
  liveGotFirst: boolean;
  temps: Set<{ stop: () => void; segment: Segment | null }>;
  timers: Set<NodeJS.Timeout>;
}

let options: PhaseOptions | null = null;
let config: Config | null = null;
let states: State[] = [];
let segments: Segment[] = [];
let churning = false;
const counters = { events: 0, connects: 0, reconnects: 0, refreshes: 0, expiries: 0, tempSubscriptions: 0, errors: 0 };
let expiryDelays: number[] = [];
let errorSamples: string[] = [];
let errorKinds: Record<string, number> = {};

function error(kind: string, text: string): void {
  counters.errors++;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  if (errorSamples.length < 20) errorSamples.push(`${new Date().toISOString().slice(11, 19)} ${kind}: ${text.slice(0, 300)}`);
}

function later(state: State, ms: number, fn: () => void): void {
  const timer = setTimeout(() => {
    state.timers.delete(timer);
    fn();
  }, ms);
  state.timers.add(timer);
}

function describe(err: unknown): string {
  if (Array.isArray(err)) return JSON.stringify(err);
  if (err instanceof Error) return err.message;
  const e = err as { code?: number; reason?: string; type?: string };
  if (typeof e?.code === 'number') return `close ${e.code} ${e.reason ?? ''}`;
  return JSON.stringify(err);
}
const isCloseEvent = (err: unknown) => typeof (err as { code?: unknown })?.code === 'number' && 'reason' in (err as object);

/** Opens a socket with a fresh token; resolves once `connection_ack` came. */
async function open(state: State, tokenSeconds: number): Promise<Conn> {
  const exp = Math.floor(Date.now() / 1000) + tokenSeconds;
  const token = await signToken(config!, { sender: state.spec.sender, expires: exp - Math.floor(Date.now() / 1000) });
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const connected = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const conn: Conn = { client: null as unknown as Client, exp, closing: false, expired: false };
  conn.client = createClient({
    url: options!.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: () => {},
    connectionParams: { Authorization: `Bearer ${token}` },
    on: {
      connected: () => resolve(),
      closed: (event) => {
        const e = event as { code?: number; reason?: string };
        reject(new Error(`closed ${e.code ?? '?'} ${e.reason ?? ''} before connection_ack`));
        onClosed(state, conn, e.code ?? 0, e.reason ?? '');
      },
      error: (err) => reject(new Error(describe(err))),
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([connected, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('no connection_ack within 20 s')), 20_000)))]);
  } catch (err) {
    conn.closing = true;
    void conn.client.dispose();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  counters.connects++;
  return conn;
}

function onClosed(state: State, conn: Conn, code: number, reason: string): void {
  // Before connection_ack (state.conn is not this one yet) a close is reported by open() instead.
  if (conn.closing || state.conn !== conn) return;
  conn.closing = true;
  const now = Date.now();
  if (code === 4403 && state.spec.expiring && now >= conn.exp * 1000 - 1000) {
    conn.expired = true;
    counters.expiries++;
    const delay = now - conn.exp * 1000;
    expiryDelays.push(delay);
    if (delay > 5000) error('late-4403', `u=${state.spec.sender}: 4403 came ${delay} ms after exp`);
  } else {
    error(`close-${code}`, `client ${state.spec.id} (${state.spec.sender}): closed ${code} ${reason} (token exp in ${conn.exp * 1000 - now} ms)`);
  }
  if (state.conn === conn) {
    closeSegments(state);
    // Reconnect after a short pause (the token expired or the socket was closed on us).
    if (churning) later(state, rand(200, 2000), () => void reconnect(state, 'after-close'));
  }
}

function closeSegments(state: State): void {
  if (state.persistent) state.persistent.open = false;
  state.persistent = null;
  for (const t of state.temps) if (t.segment) t.segment.open = false;
  state.temps.clear();
}

/** Subscribes a change stream from `after`; events are recorded in a new segment. */
function subscribeStream(state: State, conn: Conn, kind: StreamKind, after: string, persistent: boolean): { stop: () => void; segment: Segment } {
  const segment: Segment = { client: state.spec.id, sender: state.spec.sender, kind, after, persistent, open: true, events: [], disorder: 0 };
  segments.push(segment);
  const { query, field } = STREAMS[kind];
  // Positions of moves are `p:n` (docs/delivery.md): compared as the gateway orders them.
  let last = after;
  const stop = conn.client.subscribe(
    { query, variables: { after } },
    {
      next: (value) => {
        if (conn.closing || !segment.open) return;
        counters.events++;
        const v = value as { data?: Record<string, { op: string; position: string; row: { id: number } | null; old: { id: number } | null } | null>; errors?: unknown[] };
        if (v.errors?.length) return error('graphql', `${kind}: ${JSON.stringify(v.errors)}`);
        const ev = v.data?.[field];
        if (!ev) return error('empty', `${kind}: ${JSON.stringify(value)}`);
        // Self-test of the checker (BENCH_SOAK_DROP=0.01): forget a share of the events, as a lossy gateway would.
        if (DROP > 0 && Math.random() < DROP) return;
        if (comparePositions(ev.position, last) <= 0) segment.disorder++;
        last = ev.position;
        segment.events.push([ev.position, ev.op[0]!, Number(ev.row?.id ?? ev.old?.id ?? -1)]);
        if (persistent) state.lastPos = ev.position;
      },
      error: (err) => {
        if (conn.closing || !segment.open || isCloseEvent(err)) return;
        segment.open = false;
        error('subscription', `${kind} after ${after}: ${describe(err)}`);
      },
      complete: () => {
        if (conn.closing || !segment.open) return;
        segment.open = false;
        error('completed', `${kind}: the gateway completed a change stream`);
      },
    },
  );
  return { stop, segment };
}

/** Subscribes a live query; resolves with the first result (or rejects after 30 s). */
function subscribeLive(state: State, conn: Conn, kind: keyof typeof LIVES, onResult: (data: unknown) => void): { stop: () => void; first: Promise<void> } {
  let gotFirst!: () => void;
  const first = new Promise<void>((r) => (gotFirst = r));
  let ended = false;
  const stop = conn.client.subscribe(
    { query: LIVES[kind].query },
    {
      next: (value) => {
        if (conn.closing || ended) return;
        counters.events++;
        const v = value as { data?: unknown; errors?: unknown[] };
        if (v.errors?.length) return error('graphql', `live ${kind}: ${JSON.stringify(v.errors)}`);
        onResult(v.data);
        gotFirst();
      },
      error: (err) => {
        if (conn.closing || ended || isCloseEvent(err)) return;
        ended = true;
        error('subscription', `live ${kind}: ${describe(err)}`);
      },
      complete: () => {
        if (conn.closing || ended) return;
        ended = true;
        error('completed', `live ${kind}: the gateway completed a live query`);
      },
    },
  );
  let timer: NodeJS.Timeout;
  const timed = Promise.race([first, new Promise<void>((_, rej) => (timer = setTimeout(() => rej(new Error('no first result within 30 s')), 30_000)))]).finally(() => clearTimeout(timer));
  return {
    stop: () => {
      ended = true;
      stop();
    },
    first: timed,
  };
}

/** Closes the current socket (if any), opens a new one with a new token, resubscribes. Serialized per client. */
function reconnect(state: State, why: 'start' | 'churn' | 'refresh' | 'after-close' | 'final', tokenSeconds = options!.tokenSeconds): Promise<void> {
  const run = async () => {
    const old = state.conn;
    state.conn = null;
    if (old) {
      old.closing = true;
      closeSegments(state);
      await old.client.dispose();
    }
    if (why === 'churn' || why === 'after-close' || why === 'final') counters.reconnects++;
    if (why === 'refresh') counters.refreshes++;
    let conn: Conn;
    try {
      conn = await open(state, tokenSeconds);
    } catch (err) {
      error('connect', `client ${state.spec.id} (${state.spec.sender}): ${describe(err)}`);
      if (churning) later(state, rand(1000, 3000), () => void reconnect(state, 'after-close'));
      return;
    }
    state.conn = conn;
    if (state.spec.stream) {
      state.persistent = subscribeStream(state, conn, state.spec.stream, state.lastPos, true).segment;
    } else if (state.spec.live) {
      state.liveGotFirst = false;
      const sub = subscribeLive(state, conn, state.spec.live, (data) => {
        state.lastLive = data;
        state.liveGotFirst = true;
      });
      try {
        await sub.first;
      } catch (err) {
        if (!conn.closing) error('first-result', `live ${state.spec.live} (${state.spec.sender}): ${describe(err)}`);
      }
    }
    if (!churning) return;
    // The next token refresh (or, for an expiring client, the watchdog that expects the 4403).
    const ageMs = tokenSeconds * 1000;
    if (state.spec.expiring) {
      later(state, ageMs + 10_000, () => {
        if (state.conn === conn && !conn.closing) error('no-4403', `client ${state.spec.id}: socket still open 10 s after its token expired`);
      });
    } else {
      later(state, rand(ageMs * 0.5, ageMs * 0.75), () => {
        if (state.conn === conn) void reconnect(state, 'refresh');
      });
    }
  };
  const prior = state.busy ?? Promise.resolve();
  const next = prior.then(run, run);
  const tracked: Promise<void> = next.finally(() => {
    if (state.busy === tracked) state.busy = null;
  });
  state.busy = tracked;
  return next;
}

/** One churn action, then the next one. */
function churn(state: State): void {
  later(state, rand(0.5, 1.5) * options!.churnSeconds * 1000, () => {
    if (!churning) return;
    const conn = state.conn;
    if (conn && !conn.closing && !state.busy) {
      if (!state.spec.expiring && Math.random() < options!.reconnectShare) {
        void reconnect(state, 'churn');
      } else if (state.temps.size < 3) {
        counters.tempSubscriptions++;
        const kinds = Object.keys(STREAMS) as StreamKind[];
        let temp: { stop: () => void; segment: Segment | null };
        if (Math.random() < 0.6) {
          temp = subscribeStream(state, conn, kinds[Math.floor(Math.random() * kinds.length)]!, state.lastPos, false);
        } else {
          const lives = Object.keys(LIVES) as (keyof typeof LIVES)[];
          const kind = lives[Math.floor(Math.random() * lives.length)]!;
          const sub = subscribeLive(state, conn, kind, () => {});
          sub.first.catch((err: unknown) => {
            if (!conn.closing && state.temps.has(temp)) error('first-result', `temporary live ${kind}: ${describe(err)}`);
          });
          temp = { stop: sub.stop, segment: null };
        }
        state.temps.add(temp);
        later(state, rand(2000, 10_000), () => {
          if (!state.temps.delete(temp)) return;
          if (temp.segment) temp.segment.open = false;
          temp.stop();
        });
      }
    }
    churn(state);
  });
}

function stats(): ClientStats {
  return {
    type: 'stats',
    connected: states.filter((s) => s.conn && !s.conn.closing).length,
    subscriptions: states.reduce((a, s) => a + (s.conn && !s.conn.closing ? 1 + s.temps.size : 0), 0),
    ...counters,
    expiryDelays,
    errorSamples,
    errorKinds,
  };
}

async function final(): Promise<FinalReport> {
  const report: FinalReport = { type: 'final', liveChecked: 0, liveMismatches: 0, mismatchSamples: [] };
  for (const state of states) {
    if (!state.spec.live) continue;
    report.liveChecked++;
    const token = await signToken(config!, { sender: state.spec.sender, expires: '5m' });
    const response = await fetch(options!.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: LIVES[state.spec.live].query.replace(/^subscription/, 'query') }),
      signal: AbortSignal.timeout(20_000),
    });
    const body = (await response.json()) as { data?: unknown; errors?: unknown[] };
    if (body.errors?.length) error('final-query', JSON.stringify(body.errors));
    const want = JSON.stringify(body.data);
    const got = JSON.stringify(state.lastLive);
    if (want !== got || !state.liveGotFirst) {
      report.liveMismatches++;
      if (report.mismatchSamples.length < 5) report.mismatchSamples.push(`${state.spec.sender} ${state.spec.live}: live ${got?.slice(0, 200)} vs query ${want.slice(0, 200)}`);
    }
  }
  return report;
}

async function leave(): Promise<void> {
  churning = false;
  for (const s of states) for (const t of s.timers) clearTimeout(t);
  await Promise.allSettled(states.map((s) => s.busy));
  await Promise.allSettled(
    states.map(async (s) => {
      const conn = s.conn;
      s.conn = null;
      if (!conn) return;
      conn.closing = true;
      closeSegments(s);
      await conn.client.dispose();
    }),
  );
  states = [];
}

process.on('message', (raw) => {
  const message = raw as ToClient;
  void (async () => {
    try {
      if (message.type === 'start') {
        const { type: _, ...rest } = message;
        options = rest;
        config = await loadConfig(options.configPath);
        segments = [];
        for (const k of Object.keys(counters) as (keyof typeof counters)[]) counters[k] = 0;
        expiryDelays = [];
        errorSamples = [];
        errorKinds = {};
        churning = true;
        states = options.clients.map((spec) => ({ spec, conn: null, busy: null, lastPos: options!.after, persistent: null, lastLive: null, liveGotFirst: false, temps: new Set(), timers: new Set() }));
        // Connect in waves of 16, spreading the token expiries (and so the refreshes) over time.
        for (let i = 0; i < states.length; i += 16) {
          await Promise.all(states.slice(i, i + 16).map((s) => reconnect(s, 'start')));
        }
        for (const s of states) churn(s);
        send({ ...stats(), type: 'started' });
      } else if (message.type === 'stats') {
        send(stats());
      } else if (message.type === 'segments') {
        send({ type: 'segments', segments });
      } else if (message.type === 'quiesce') {
        churning = false;
        for (const s of states) for (const t of s.timers) clearTimeout(t);
        for (const s of states) for (const t of s.timers) s.timers.delete(t);
        await Promise.allSettled(states.map((s) => s.busy));
        for (const s of states) {
          for (const t of s.temps) {
            if (t.segment) t.segment.open = false;
            t.stop();
          }
          s.temps.clear();
        }
        // One last reconnect for everyone, with tokens that outlive the checks.
        const deadline = Date.now() + message.timeoutMs;
        for (let i = 0; i < states.length && Date.now() < deadline; i += 16) {
          await Promise.all(states.slice(i, i + 16).map((s) => reconnect(s, 'final', 600)));
        }
        await sleep(200);
        send({ ...stats(), type: 'quiesced' });
      } else if (message.type === 'final') {
        send(await final());
      } else if (message.type === 'leave') {
        await leave();
        send({ ...stats(), type: 'left' });
      } else if (message.type === 'exit') {
        await leave();
        setTimeout(() => process.exit(0), 50);
      }
    } catch (err) {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
