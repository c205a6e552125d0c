/**
 * The subscribers of `npm run bench:peers`, as a child process: one graphql-ws socket per identity
 * (the caller is fixed at `connection_init`), each with one subscription, against either server:
 *   - rowgate:     `subscription { account(…) { id name players { level score } } }` (a live query)
 *   - postgraphile: `subscription { benchChanges { query { allAccounts(…) { nodes { rowId name playerByRowId { level score } } } } } }`
 * Both are reduced to the same list of accounts. Every payload is checked: it must hold exactly the
 * accounts the subscriber may see (`own`: its own account; `firstK`: accounts 1…K, for admins), anything
 * else is a leak. Changes are recognised by the values the writer embeds (`name = n-<seq>-<epochms>`,
 * `score = SCORE_BASE + seq`); the parent turns (seq, received at) into commit-to-client latency.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { loadConfig } from '../src/config/index.ts';
import { signToken } from '../src/server/token.ts';
import { SCORE_BASE } from './fanout-shared.ts';

export type PeerServer = 'rowgate' | 'postgraphile';
/** `own`: each subscriber sees its own account only; `firstK`: admins, `limit K` ordered by id. */
export type Visible = { kind: 'own' } | { kind: 'firstK'; k: number };

export type ToPeerClient =
  | { type: 'connect'; server: PeerServer; url: string; configPath: string; senders: string[]; concurrency: number; timeoutMs: number }
  | { type: 'subscribe'; visible: Visible; timeoutMs: number }
  | { type: 'mark' }
  | { type: 'report' }
  | { type: 'close' };

/** [subscriber index, account id, kind 0 name / 1 score, seq, received at (ms)]. */
export type PeerDelivery = [number, number, 0 | 1, number, number];

export interface PeerReport {
  type: 'report';
  deliveries: PeerDelivery[];
  leaks: number;
  leakSamples: string[];
  /** `next` messages since the last mark, and their total JSON size (bytes). */
  payloads: number;
  payloadBytes: number;
  errors: number;
  errorSamples: string[];
  ended: number;
  /** Per subscriber: account id → "name|score" of its last result (only for `own`: one entry). */
  finals: (string | null)[];
}

export function subscriptionQuery(server: PeerServer, visible: Visible): string {
  if (server === 'rowgate') {
    const args = visible.kind === 'firstK' ? `(limit: ${visible.k}, order_by: {id: asc})` : '';
    return `subscription { account${args} { id name players { level score } } }`;
  }
  const args = visible.kind === 'firstK' ? `(first: ${visible.k}, orderBy: ROW_ID_ASC)` : '';
  return `subscription { benchChanges { query { allAccounts${args} { nodes { rowId name playerByRowId { level score } } } } } }`;
}

interface Acc {
  id: number;
  name: string;
  score: string;
}

/** The payload as a list of accounts, whatever the server; null when it has no data. */
export function accountsOf(server: PeerServer, value: unknown): Acc[] | null {
  const data = (value as { data?: Record<string, unknown> | null }).data;
  if (!data) return null;
  if (server === 'rowgate') {
    const list = data['account'] as { id: number; name: string; players: { score: string | number }[] }[] | undefined;
    if (!Array.isArray(list)) return null;
    return list.map((a) => ({ id: Number(a.id), name: a.name, score: a.players.length === 1 ? String(a.players[0]!.score) : `players:${a.players.length}` }));
  }
  const nodes = (data['benchChanges'] as { query?: { allAccounts?: { nodes?: unknown } } } | null)?.query?.allAccounts?.nodes as
    | { rowId: number; name: string; playerByRowId: { score: string | number } | null }[]
    | undefined;
  if (!Array.isArray(nodes)) return null;
  return nodes.map((a) => ({ id: Number(a.rowId), name: a.name, score: a.playerByRowId ? String(a.playerByRowId.score) : 'players:0' }));
}

interface Sub {
  index: number;
  own: number;
  client: Client;
  connected: boolean;
  closed: boolean;
  first: boolean;
  last: Map<number, Acc>;
}

const send = (message: unknown) => process.send!(message);
const subs: Sub[] = [];
let server: PeerServer = 'rowgate';
let visible: Visible = { kind: 'own' };
let deliveries: PeerDelivery[] = [];
let leaks = 0;
const leakSamples: string[] = [];
let payloads = 0;
let payloadBytes = 0;
let errors = 0;
const errorSamples: string[] = [];
let ended = 0;

function noteError(text: string): void {
  errors++;
  if (errorSamples.length < 5) errorSamples.push(text.slice(0, 300));
}

function onResult(sub: Sub, value: unknown, at: number): void {
  payloads++;
  if (process.env['BENCH_PEERS_DUMP'] === '1' && payloads < 12) process.stderr.write(`payload ${sub.index}: ${JSON.stringify(value).slice(0, 300)}\n`);
  payloadBytes += JSON.stringify(value).length;
  const result = value as { errors?: unknown[] };
  if (result.errors?.length) noteError(JSON.stringify(result.errors));
  const accounts = accountsOf(server, value);
  if (!accounts) return;
  const expected = visible.kind === 'own' ? [sub.own] : Array.from({ length: visible.k }, (_, i) => i + 1);
  if (accounts.length !== expected.length || accounts.some((a, i) => a.id !== expected[i])) {
    leaks++;
    if (leakSamples.length < 5) leakSamples.push(`subscriber ${sub.index}: ${JSON.stringify(accounts.map((a) => a.id)).slice(0, 200)}`);
    return;
  }
  for (const a of accounts) {
    const before = sub.last.get(a.id);
    if (!sub.first && before) {
      if (a.name !== before.name) {
        const m = /^n-(\d+)-\d+$/.exec(a.name);
        if (m) deliveries.push([sub.index, a.id, 0, Number(m[1]), at]);
      }
      if (a.score !== before.score && /^\d+$/.test(a.score) && Number(a.score) >= SCORE_BASE) deliveries.push([sub.index, a.id, 1, Number(a.score) - SCORE_BASE, at]);
    }
    sub.last.set(a.id, a);
  }
  sub.first = false;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

async function connectAll(url: string, configPath: string, senders: string[], concurrency: number, timeoutMs: number): Promise<{ connected: number; failed: number; ms: number; failures: string[] }> {
  const config = await loadConfig(configPath);
  const wsUrl = url.replace(/^http/, 'ws');
  const started = Date.now();
  const deadline = started + timeoutMs;
  let failed = 0;
  const failures: string[] = [];
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < senders.length && Date.now() < deadline) {
      const index = next++;
      const sender = senders[index]!;
      const token = await signToken(config, { sender, expires: '6h' });
      let resolveConnected!: () => void;
      let rejectConnected!: (e: Error) => void;
      const connected = new Promise<void>((res, rej) => {
        resolveConnected = res;
        rejectConnected = rej;
      });
      const sub: Sub = { index, own: Number(sender.slice(1)), client: null as unknown as Client, connected: false, closed: false, first: true, last: new Map() };
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
        await within(connected, Math.max(1000, deadline - Date.now()), `${sender} connect`);
      } catch (err) {
        failed++;
        if (failures.length < 5) failures.push(`${sender}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
  return { connected: subs.filter((s) => s?.connected && !s.closed).length, failed: failed + (senders.length - next), ms: Date.now() - started, failures };
}

async function subscribeAll(timeoutMs: number): Promise<{ firstResults: number; ms: number }> {
  const started = Date.now();
  let firsts = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const live = subs.filter((s) => s?.connected && !s.closed);
  if (live.length === 0) resolveAll();
  const query = subscriptionQuery(server, visible);
  for (const sub of live) {
    let counted = false;
    sub.client.subscribe(
      { query },
      {
        next: (value) => {
          onResult(sub, value, Date.now());
          if (!counted) {
            counted = true;
            if (++firsts === live.length) resolveAll();
          }
        },
        error: (err) => {
          noteError(`subscriber ${sub.index}: ${JSON.stringify(err)}`);
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
  const message = raw as ToPeerClient;
  void (async () => {
    try {
      if (message.type === 'connect') {
        server = message.server;
        send({ type: 'connected', ...(await connectAll(message.url, message.configPath, message.senders, message.concurrency, message.timeoutMs)) });
      } else if (message.type === 'subscribe') {
        visible = message.visible;
        send({ type: 'subscribed', ...(await subscribeAll(message.timeoutMs)) });
      } else if (message.type === 'mark') {
        deliveries = [];
        payloads = 0;
        payloadBytes = 0;
        send({ type: 'marked' });
      } else if (message.type === 'report') {
        const report: PeerReport = {
          type: 'report',
          deliveries,
          leaks,
          leakSamples,
          payloads,
          payloadBytes,
          errors,
          errorSamples,
          ended,
          finals: subs.map((s) => {
            if (!s || s.first) return null;
            const a = s.last.get(s.own);
            return a ? `${a.name}|${a.score}` : null;
          }),
        };
        send(report);
      } else if (message.type === 'close') {
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
