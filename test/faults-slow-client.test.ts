import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { SlowSocket } from '../src/server/ws.ts';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { run, within } from './support/transports.ts';

// Hardening §2, slow clients: a WebSocket client that stops reading, subscribed to a large live
// query that changes often. The gateway must not queue results for it without bound: once the
// socket's outgoing buffer passes limits.maxSocketBufferBytes it is closed (1013, "try again
// later"), and meanwhile a healthy client on the same query gets every update.
const db = useTestDatabase();
const ROWS = 100;
const PAYLOAD = 4_000; // ~400 KB per result
const CAP = 4 * 1024 * 1024; // the default of limits.maxSocketBufferBytes
const QUERY = 'subscription { big(order_by: {id: asc}) { id v payload } }';
let gw: LiveGateway;
const slowReports: SlowSocket[] = [];
let onSlow: (info: SlowSocket) => void = () => {};

beforeAll(async () => {
  await db.sql.unsafe(`CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, payload text NOT NULL)`);
  await db.sql.unsafe(`INSERT INTO big SELECT i, 0, repeat('x', ${PAYLOAD}) FROM generate_series(1, ${ROWS}) AS i`);
  gw = await startLiveGateway(db, { tables: { big: { select: 'public' } } }, 0, {
    onSlowSocket: (info) => {
      slowReports.push(info);
      onSlow(info);
    },
  });
});
afterAll(() => gw?.stop());

type Row = { id: number; v: number; payload: string };
const rowsOf = (payload: unknown): Row[] => (payload as { data: { big: Row[] } }).data.big;

/** A graphql-ws client written out by hand, so that it can stop reading its socket. */
async function slowClient(token: string): Promise<{ ws: WebSocket; tcp: Socket; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(gw.wsUrl, 'graphql-transport-ws');
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => {});
  await within(new Promise((resolve) => ws.once('open', resolve)), 10_000, 'the slow client to connect');
  const first = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string };
      if (msg.type === 'connection_ack') ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: QUERY } }));
      if (msg.type === 'next') resolve();
    });
  });
  ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token}` } }));
  await within(first, 10_000, 'the slow client\'s first result');
  const tcp = (ws as unknown as { _socket: Socket })._socket;
  // From here on the client reads nothing: the kernel's buffers fill, then the gateway's.
  tcp.pause();
  return { ws, tcp, closed };
}

describe('a WebSocket client that never reads', () => {
  it('is closed with 1013 once its buffer passes the cap, while a healthy client gets every update', async () => {
    const rssBefore = process.memoryUsage().rss;
    const healthy = await gw.ws('alice');
    const live = run(healthy.client, QUERY);
    await within(live.received(1), 10_000, 'the healthy client\'s first result');
    const slow = await slowClient(await gw.token('bob'));
    expect(gw.gateway.stats()).toMatchObject({ sockets: 2, subscriptions: 2 });

    // Once the gateway gives up on it, the slow client reads again: it must then find the close frame.
    const reported = new Promise<SlowSocket>((resolve) => {
      onSlow = (info) => {
        slow.tcp.resume();
        resolve(info);
      };
    });
    let slowClosedAt: number | null = null;
    void reported.then(() => (slowClosedAt = step));

    const seen = () => Math.max(...rowsOf(live.values.at(-1)).map((r) => r.v));
    const latencies: number[] = [];
    let step = 0;
    // Each step changes one row (a new ~400 KB result for both clients) and waits until the healthy
    // client has it. Stop a few steps after the slow socket was closed; bounded either way.
    for (step = 1; step <= 200; step++) {
      const started = Date.now();
      await db.sql`UPDATE big SET v = ${step}, payload = repeat(chr(65 + ${step % 26}), ${PAYLOAD}) WHERE id = ${(step % ROWS) + 1}`;
      await within(
        (async () => {
          while (seen() < step) await live.received(live.values.length + 1);
        })(),
        10_000,
        `step ${step} at the healthy client`,
      );
      latencies.push(Date.now() - started);
      if (slowClosedAt !== null && step >= slowClosedAt + 5) break;
    }
    expect(slowClosedAt, `the slow socket was never closed (stats ${JSON.stringify(gw.gateway.stats())})`).not.toBeNull();

    // Closed because its buffer passed the cap, by at most one result: memory per socket is bounded.
    const [report] = slowReports;
    expect(slowReports).toHaveLength(1);
    expect(report!.limit).toBe(CAP);
    expect(report!.bufferedAmount).toBeGreaterThan(CAP);
    expect(report!.bufferedAmount).toBeLessThan(CAP + 2 * ROWS * (PAYLOAD + 100));
    // The client, reading again, gets the reason; the gateway released its subscription.
    const closed = await within(slow.closed, 10_000, 'the slow client\'s close event');
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/too slowly/);
    await within(
      (async () => {
        while (gw.gateway.stats().sockets !== 1 || gw.live.stats.subscriptions !== 1) await new Promise((r) => setImmediate(r));
      })(),
      10_000,
      'the slow socket and its subscription to be released',
    );
    expect(gw.gateway.stats()).toMatchObject({ sockets: 1, subscriptions: 1 });

    // The healthy client got every step, in order, and is still subscribed.
    const versions = live.values.map((v) => Math.max(...rowsOf(v).map((r) => r.v)));
    for (let k = 1; k < versions.length; k++) expect(versions[k]).toBeGreaterThan(versions[k - 1]!);
    expect(versions.at(-1)).toBe(step);
    expect(latencies).toHaveLength(step);
    // Loose: a runaway queue for the slow client would be hundreds of MB by now.
    const grown = process.memoryUsage().rss - rssBefore;
    expect(grown).toBeLessThan(512 * 1024 * 1024);
    console.log(
      `slow client closed after step ${slowClosedAt} with ${report!.bufferedAmount} bytes queued; healthy client: ${live.values.length} results, median step ${[...latencies].sort((a, b) => a - b)[latencies.length >> 1]} ms; rss +${Math.round(grown / 1048576)} MiB`,
    );
    live.stop();
  });
});
