import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { within } from './support/transports.ts';

// Issue 15.5: what a socket starts is counted from the moment it is accepted and is gone when the
// socket closes, whatever the client sends in one burst. A hand-written graphql-transport-ws
// client, so that messages go out back to back, before the gateway has finished starting any.
const db = useTestDatabase();
const LIMIT = 3;
const QUERY = 'subscription { doc(order_by: {id: asc}) { id title } }';
const WAIT = 10_000;
let gw: LiveGateway;

beforeAll(async () => {
  await db.sql.unsafe(`CREATE TABLE doc (id int PRIMARY KEY, title text NOT NULL)`);
  await db.sql.unsafe(`INSERT INTO doc VALUES (1, 'one')`);
  gw = await startLiveGateway(db, { tables: { doc: { select: 'public' } }, limits: { maxSubscriptionsPerSocket: LIMIT } });
});
afterAll(() => gw?.stop());

interface Message {
  id?: string;
  type: string;
  payload?: unknown;
}

interface RawClient {
  ws: WebSocket;
  received: Message[];
  /** Resolves once a message matching `check` has come (checked against those already received too). */
  until(check: (m: Message) => boolean, what: string): Promise<Message>;
  closed: Promise<void>;
}

async function rawClient(sender: string): Promise<RawClient> {
  const ws = new WebSocket(gw.wsUrl, 'graphql-transport-ws');
  ws.on('error', () => {});
  const received: Message[] = [];
  const waiters: { check: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  ws.on('message', (data) => {
    const message = JSON.parse(String(data)) as Message;
    received.push(message);
    for (const w of waiters.splice(0)) {
      if (w.check(message)) w.resolve(message);
      else waiters.push(w);
    }
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  const until = (check: (m: Message) => boolean, what: string) => {
    const seen = received.find(check);
    return within(seen ? Promise.resolve(seen) : new Promise<Message>((resolve) => waiters.push({ check, resolve })), WAIT, what);
  };
  await within(new Promise((resolve) => ws.once('open', resolve)), WAIT, 'the socket to open');
  ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${await gw.token(sender)}` } }));
  await until((m) => m.type === 'connection_ack', 'the ack');
  return { ws, received, until, closed };
}

const subscribe = (id: string, query = QUERY, variables?: Record<string, unknown>) => JSON.stringify({ id, type: 'subscribe', payload: { query, variables } });
const complete = (id: string) => JSON.stringify({ id, type: 'complete' });

/** Polls (never a fixed wait) until `check` holds; fails after WAIT. */
async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const titles = (m: Message) => ((m.payload as { data?: { doc?: { title: string }[] } }).data?.doc ?? []).map((d) => d.title);

/** The most engine subscribers seen, sampled every millisecond (the end state is checked apart). */
function peakOfSubscribers(): { peak(): number; stop(): void } {
  let peak = 0;
  const sample = () => (peak = Math.max(peak, gw.live.stats.subscriptions));
  const timer = setInterval(sample, 1);
  return { peak: () => (sample(), peak), stop: () => clearInterval(timer) };
}

/** Closes the socket and waits until neither the engine nor the transport holds anything of it. */
async function closeAndDrain(client: RawClient, how: 'close' | 'terminate'): Promise<void> {
  if (how === 'close') client.ws.close();
  else client.ws.terminate();
  await within(client.closed, WAIT, 'the close');
  await eventually(() => gw.live.stats.subscriptions === 0, `the engine's subscribers to be gone (still ${gw.live.stats.subscriptions})`);
  await eventually(() => gw.gateway.stats().subscriptions === 0, 'the transport to count none');
  await eventually(() => gw.live.stats.shapes === 0, `the engine's shapes to be gone (still ${gw.live.stats.shapes})`);
}

describe('a burst of subscribe and complete on one socket', () => {
  it('reusing one id: only the last subscribe stays live, and nothing survives the socket', async () => {
    const client = await rawClient('alice');
    const sampler = peakOfSubscribers();
    try {
      for (let i = 0; i < 8; i++) {
        client.ws.send(subscribe('a'));
        client.ws.send(complete('a'));
      }
      client.ws.send(subscribe('a'));
      // The last subscribe of "a" was never completed: it streams, and sees later commits.
      await client.until((m) => m.id === 'a' && m.type === 'next' && titles(m).includes('one'), "the last subscription's first result");
      await db.sql`INSERT INTO doc VALUES (2, 'two')`;
      await client.until((m) => m.id === 'a' && m.type === 'next' && titles(m).includes('two'), 'the last subscription to see a commit');
      expect(gw.live.stats.subscriptions).toBe(1);
      expect(sampler.peak()).toBeLessThanOrEqual(LIMIT);
      expect(gw.gateway.stats().subscriptions).toBe(1);
      // Nothing the client did not complete was ended or refused by the server.
      expect(client.received.filter((m) => m.type === 'error' || m.type === 'complete')).toEqual([]);
    } finally {
      sampler.stop();
      await closeAndDrain(client, 'close');
    }
  });

  it('distinct ids past the limit: those still starting count, and a dropped connection ends the rest', async () => {
    const client = await rawClient('alice');
    const sampler = peakOfSubscribers();
    try {
      for (let i = 0; i < 8; i++) {
        client.ws.send(subscribe(`p${i}`));
        client.ws.send(complete(`p${i}`));
      }
      for (let i = 0; i < LIMIT + 2; i++) client.ws.send(subscribe(`s${i}`));
      // Every s<i> gets an answer: data, or LIMIT_EXCEEDED while completed p<i> are still ending.
      for (let i = 0; i < LIMIT + 2; i++) await client.until((m) => m.id === `s${i}` && (m.type === 'next' || m.type === 'error'), `an answer for s${i}`);
      const live = [...new Set(client.received.filter((m) => m.id?.startsWith('s') && m.type === 'next').map((m) => m.id))];
      const refused = client.received.filter((m) => m.id?.startsWith('s') && m.type === 'error');
      expect(refused.every((m) => JSON.stringify(m.payload).includes('LIMIT_EXCEEDED'))).toBe(true);
      expect(live.length + refused.length).toBe(LIMIT + 2);
      expect(live.length).toBeLessThanOrEqual(LIMIT);
      await eventually(() => gw.live.stats.subscriptions === live.length, `the engine to hold the ${live.length} live ones (holds ${gw.live.stats.subscriptions})`);
      expect(sampler.peak()).toBeLessThanOrEqual(LIMIT);
    } finally {
      sampler.stop();
      await closeAndDrain(client, 'terminate');
    }
  });

  it('subscriptions completed before they started leave no shape behind', async () => {
    const client = await rawClient('alice');
    // Each with its own values, so each would be a shape of its own.
    for (let i = 0; i < 8; i++) {
      client.ws.send(subscribe(`q${i}`, 'subscription ($id: Int!) { doc(where: {id: {_eq: $id}}) { id } }', { id: 100 + i }));
      client.ws.send(complete(`q${i}`));
    }
    client.ws.send(subscribe('last'));
    await client.until((m) => m.id === 'last' && m.type === 'next', "the last subscription's first result");
    await closeAndDrain(client, 'close');
  });

  it('a second subscribe for an id whose reuse is still waiting is one too many: 4409, and nothing is left', async () => {
    const client = await rawClient('alice');
    let code = 0;
    client.ws.once('close', (c) => (code = c));
    client.ws.send(subscribe('a'));
    client.ws.send(complete('a'));
    client.ws.send(subscribe('a'));
    client.ws.send(subscribe('a'));
    await within(client.closed, WAIT, 'the close');
    expect(code).toBe(4409);
    await eventually(() => gw.live.stats.subscriptions === 0, `the engine's subscribers to be gone (still ${gw.live.stats.subscriptions})`);
    await eventually(() => gw.gateway.stats().subscriptions === 0, 'the transport to count none');
  });
});
