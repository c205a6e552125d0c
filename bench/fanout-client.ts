/**
 * The subscribers of `npm run bench:fanout`, as a child process: one graphql-ws client (over `ws`)
 * per identity u1…uN — the caller is fixed per socket at `connection_init`, so distinct identities
 * need distinct sockets — each running one live query over the rules.
 *
 * Started by bench/fanout.ts with an IPC channel; see `ToClient` for the messages. Every payload is
 * checked as it arrives: it must hold exactly the subscriber's own account (anything else is a leak).
 * Changes are recognised by the values the writer embeds (`name = n-<seq>-<epochms>`,
 * `score = SCORE_BASE + seq`); the parent turns (seq, received at) into commit-to-client latency.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { loadConfig } from '../src/config/index.ts';
import { signToken } from '../src/server/token.ts';
import { FANOUT_QUERY, SCORE_BASE } from './fanout-shared.ts';

export type ToClient =
  | { type: 'connect'; url: string; configPath: string; count: number; concurrency: number; timeoutMs: number }
  | { type: 'subscribe'; timeoutMs: number }
  | { type: 'mark' }
  | { type: 'report' }
  | { type: 'close' };

/** One change seen by a subscriber: [subscriber index (0-based; account id = index + 1), kind 0 name / 1 score, seq, received at (ms)]. */
export type Delivery = [number, 0 | 1, number, number];

export interface ClientReport {
  type: 'report';
  deliveries: Delivery[];
  /** Payloads whose account list was not exactly the subscriber's own account. */
  leaks: number;
  leakSamples: string[];
  /** Payloads received since the last mark (every `next` message). */
  payloads: number;
  /** `next` messages that carried GraphQL errors, and subscriptions that ended with an error. */
  errors: number;
  errorSamples: string[];
  /** Subscriptions that completed or whose socket closed. */
  ended: number;
  /** The last result of each subscriber: [name, score of its one player] or null before the first. */
  finals: ([string, string] | null)[];
}

const send = (message: unknown) => process.send!(message);

interface Sub {
  index: number;
  client: Client;
  connected: boolean;
  closed: boolean;
  first: boolean;
  name: string | null;
  score: string | null;
}

const subs: Sub[] = [];
let deliveries: Delivery[] = [];
let leaks = 0;
const leakSamples: string[] = [];
let payloads = 0;
let errors = 0;
const errorSamples: string[] = [];
let ended = 0;

function noteError(text: string): void {
  errors++;
  if (errorSamples.length < 5) errorSamples.push(text.slice(0, 300));
}

function onResult(sub: Sub, value: unknown, at: number): void {
  payloads++;
  const result = value as { data?: { account?: { id: number; name: string; players: { level: number; score: string }[] }[] }; errors?: unknown[] };
  if (result.errors?.length) noteError(JSON.stringify(result.errors));
  const accounts = result.data?.account;
  if (!Array.isArray(accounts)) return;
  const own = sub.index + 1;
  if (accounts.length !== 1 || accounts[0]!.id !== own) {
    leaks++;
    if (leakSamples.length < 5) leakSamples.push(`u${own}: ${JSON.stringify(accounts.map((a) => a.id)).slice(0, 200)}`);
    return;
  }
  const account = accounts[0]!;
  const score = account.players.length === 1 ? String(account.players[0]!.score) : `players:${account.players.length}`;
  if (sub.first) {
    sub.first = false;
  } else {
    if (account.name !== sub.name) {
      const m = /^n-(\d+)-\d+$/.exec(account.name);
      if (m) deliveries.push([sub.index, 0, Number(m[1]), at]);
    }
    if (score !== sub.score && /^\d+$/.test(score) && Number(score) >= SCORE_BASE) deliveries.push([sub.index, 1, Number(score) - SCORE_BASE, at]);
  }
  sub.name = account.name;
  sub.score = score;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

async function connectAll(url: string, configPath: string, count: number, concurrency: number, timeoutMs: number): Promise<{ connected: number; failed: number; ms: number; failures: string[] }> {
  const config = await loadConfig(configPath);
  const wsUrl = url.replace(/^http/, 'ws');
  const started = Date.now();
  const deadline = started + timeoutMs;
  let failed = 0;
  const failures: string[] = [];
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < count && Date.now() < deadline) {
      const index = next++;
      const token = await signToken(config, { sender: `u${index + 1}`, expires: '6h' });
      let resolveConnected!: () => void;
      let rejectConnected!: (e: Error) => void;
      const connected = new Promise<void>((res, rej) => {
        resolveConnected = res;
        rejectConnected = rej;
      });
      const sub: Sub = { index, client: null as unknown as Client, connected: false, closed: false, first: true, name: null, score: null };
      sub.client = createClient({
        url: wsUrl,
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 0,
        connectionParams: { Authorization: `Bearer ${token}` },
        on: {
          connected: () => {
            sub.connected = true;
            resolveConnected();
          },
          closed: (event) => {
            if (!sub.closed && sub.connected) ended++;
            sub.closed = true;
            const e = event as { code?: number; reason?: string };
            rejectConnected(new Error(`closed ${e.code ?? ''} ${e.reason ?? ''}`));
          },
          error: (err) => rejectConnected(err instanceof Error ? err : new Error(String((err as { message?: string }).message ?? err))),
        },
      });
      subs[index] = sub;
      try {
        await within(connected, Math.max(1000, deadline - Date.now()), `u${index + 1} connect`);
      } catch (err) {
        failed++;
        if (failures.length < 5) failures.push(`u${index + 1}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
  return { connected: subs.filter((s) => s?.connected && !s.closed).length, failed: failed + (count - next), ms: Date.now() - started, failures };
}

async function subscribeAll(timeoutMs: number): Promise<{ firstResults: number; ms: number }> {
  const started = Date.now();
  let firsts = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const live = subs.filter((s) => s?.connected && !s.closed);
  if (live.length === 0) resolveAll();
  for (const sub of live) {
    let counted = false;
    sub.client.subscribe(
      { query: FANOUT_QUERY },
      {
        next: (value) => {
          onResult(sub, value, Date.now());
          if (!counted) {
            counted = true;
            if (++firsts === live.length) resolveAll();
          }
        },
        error: (err) => {
          noteError(`u${sub.index + 1}: ${JSON.stringify(err)}`);
          ended++;
        },
        complete: () => {},
      },
    );
  }
  await within(all, timeoutMs, 'first results').catch(() => {});
  return { firstResults: firsts, ms: Date.now() - started };
}

process.on('message', (raw) => {
  const message = raw as ToClient;
  void (async () => {
    try {
      if (message.type === 'connect') {
        send({ type: 'connected', ...(await connectAll(message.url, message.configPath, message.count, message.concurrency, message.timeoutMs)) });
      } else if (message.type === 'subscribe') {
        send({ type: 'subscribed', ...(await subscribeAll(message.timeoutMs)) });
      } else if (message.type === 'mark') {
        deliveries = [];
        payloads = 0;
        send({ type: 'marked' });
      } else if (message.type === 'report') {
        const report: ClientReport = {
          type: 'report',
          deliveries,
          leaks,
          leakSamples,
          payloads,
          errors,
          errorSamples,
          ended,
          finals: subs.map((s) => (s && !s.first ? [s.name ?? '', s.score ?? ''] : null)),
        };
        send(report);
      } else if (message.type === 'close') {
        // Close in bounded steps; the parent kills the process if this takes too long.
        await Promise.allSettled(subs.filter(Boolean).map((s) => s.client.dispose()));
        send({ type: 'closed' });
        setTimeout(() => process.exit(0), 100);
      }
    } catch (err) {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
