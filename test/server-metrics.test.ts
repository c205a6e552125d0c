import { beforeAll, describe, expect, it, vi } from 'vitest';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { metric, parseMetrics, type Sample } from './support/metrics.ts';
import { codes, startTiny, type TinyGateway } from './support/server.ts';
import { ADMIN_SECRET as TRANSPORT_ADMIN, readAll, run, sse, startTransportGateway, within } from './support/transports.ts';

// Prometheus /metrics: who may read it, and that what it says follows what the gateway did.
const db = useTestDatabase();

const ADMIN = 'metrics-test-admin-secret';
const TOKEN = 'metrics-test-token-0123456789';

async function scrape(url: string, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }): Promise<Sample[]> {
  const res = await fetch(url, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

async function alice(gw: TinyGateway): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await signToken(gw.config, { sender: 'alice' })}` };
}

describe('/metrics on the main port', async () => {
  const gw = await startTiny({ auth: { adminSecret: ADMIN }, metrics: { token: TOKEN } });
  const metricsUrl = `${gw.base}/metrics`;

  it('refuses a scrape without the admin secret or the metrics token, even with a valid caller token', async () => {
    for (const headers of [{}, { authorization: `Bearer ${TOKEN}x` }, { 'x-rowgate-admin-secret': `${ADMIN}x` }, await alice(gw)]) {
      const res = await fetch(metricsUrl, { headers });
      expect(res.status).toBe(401);
      const body = (await res.json()) as { errors: { extensions: { code: string } }[] };
      expect(body.errors[0]?.extensions.code).toBe('UNAUTHENTICATED');
    }
  });

  it('answers the admin secret and the metrics token, with process metrics too', async () => {
    const byAdmin = await scrape(metricsUrl, { 'x-rowgate-admin-secret': ADMIN });
    expect(metric(byAdmin, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    const byToken = await scrape(metricsUrl);
    expect(byToken.some((s) => s.name === 'rowgate_websocket_sockets')).toBe(true);
  });

  it('counts operations by type, errors by code and request latencies', async () => {
    const ops = { transport: 'http', operation_type: 'query' };
    const before = await scrape(metricsUrl);
    const headers = await alice(gw);
    expect((await gw.post({ query: 'query Who { whoami }' }, headers)).body).toEqual({ data: { whoami: 'alice' } });
    expect(codes((await gw.post({ query: '{ nope }' }, headers)).body)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    expect(codes((await gw.post({ query: '{ whoami boom }' }, headers)).body)).toEqual(['INTERNAL_SERVER_ERROR']);
    expect(codes((await gw.post({ query: '{ whoami }' })).body)).toEqual(['UNAUTHENTICATED']);
    expect(codes((await gw.post({ query: '{ whoami ' }, headers)).body)).toEqual(['GRAPHQL_PARSE_FAILED']);
    const tooBig = await gw.post(JSON.stringify({ query: '{ whoami }', variables: { pad: 'x'.repeat(2 * 1024 * 1024) } }), headers);
    expect(tooBig.status).toBe(413);
    const after = await scrape(metricsUrl);

    const delta = (name: string, labels: Record<string, string>) => metric(after, name, labels) - metric(before, name, labels);
    expect(delta('rowgate_graphql_operations_total', ops)).toBe(4);
    // The parse failure and the oversized body never had an operation.
    expect(delta('rowgate_graphql_operations_total', { transport: 'http', operation_type: 'unknown' })).toBe(2);
    for (const code of ['GRAPHQL_VALIDATION_FAILED', 'INTERNAL_SERVER_ERROR', 'UNAUTHENTICATED', 'GRAPHQL_PARSE_FAILED', 'LIMIT_EXCEEDED']) {
      expect(delta('rowgate_graphql_errors_total', { transport: 'http', code }), code).toBe(1);
    }
    expect(delta('rowgate_http_request_duration_seconds_count', { operation_type: 'query' })).toBe(4);
    expect(delta('rowgate_http_request_duration_seconds_count', { operation_type: 'unknown', status: '413' })).toBe(1);
    expect(delta('rowgate_http_request_duration_seconds_bucket', { operation_type: 'query', le: '+Inf' })).toBe(4);
    expect(delta('rowgate_http_request_duration_seconds_sum', { operation_type: 'query' })).toBeGreaterThan(0);
  });
});

describe('/metrics on its own port (metrics.port)', async () => {
  const gw = await startTiny({ auth: { adminSecret: ADMIN }, metrics: { port: 0 } });

  it('serves /metrics there without credentials, and not on the main port', async () => {
    expect(gw.metricsUrl).toMatch(/\/metrics$/);
    expect(gw.metricsUrl).not.toBe(`${gw.base}/metrics`);
    expect(metric(await scrape(gw.metricsUrl!, {}), 'rowgate_websocket_sockets')).toBe(0);
    const main = await fetch(`${gw.base}/metrics`, { headers: { 'x-rowgate-admin-secret': ADMIN } });
    expect(main.status).toBe(404);
    await main.body?.cancel();
    const other = await fetch(gw.metricsUrl!.replace(/\/metrics$/, '/graphql'));
    expect(other.status).toBe(404);
    await other.body?.cancel();
  });
});

describe('metrics.enabled: false', async () => {
  const gw = await startTiny({ auth: { adminSecret: ADMIN }, metrics: { enabled: false } });

  it('has no /metrics', async () => {
    const res = await fetch(`${gw.base}/metrics`, { headers: { 'x-rowgate-admin-secret': ADMIN } });
    expect(res.status).toBe(404);
    await res.body?.cancel();
  });
});

describe('errors inside an SSE stream', async () => {
  const gw = await startTransportGateway();
  const metricsUrl = gw.url.replace(/\/graphql$/, '/metrics');
  const admin = { 'x-rowgate-admin-secret': TRANSPORT_ADMIN };

  it('are counted by code as the stream sends them', async () => {
    const labels = { transport: 'sse', code: 'INTERNAL_SERVER_ERROR' };
    const before = await scrape(metricsUrl, admin);
    const { next } = await within(readAll(await sse(gw.url, { query: 'subscription { boom }' }, { authorization: `Bearer ${await gw.token('alice')}` })), 5_000, 'the stream');
    expect(JSON.stringify(next[1])).toContain('"code":"INTERNAL_SERVER_ERROR"');
    const after = await scrape(metricsUrl, admin);
    expect(metric(after, 'rowgate_graphql_errors_total', labels) - metric(before, 'rowgate_graphql_errors_total', labels)).toBe(1);
    const ops = { transport: 'sse', operation_type: 'subscription' };
    expect(metric(after, 'rowgate_graphql_operations_total', ops) - metric(before, 'rowgate_graphql_operations_total', ops)).toBe(1);
  });
});

describe('subscriptions and live evaluations', () => {
  let gw: LiveGateway;
  let metricsUrl: string;

  beforeAll(async () => {
    await db.sql.unsafe(`CREATE TABLE note (id int PRIMARY KEY, body text NOT NULL); INSERT INTO note VALUES (1, 'one');`);
    gw = await startLiveGateway(db, { tables: { note: { select: 'public' } }, metrics: { token: TOKEN } });
    metricsUrl = gw.url.replace(/\/graphql$/, '/metrics');
    return () => gw.stop();
  });

  it('a live query and a change stream show in the active gauges while they run, and leave them when they end', async () => {
    const before = await scrape(metricsUrl);
    expect(metric(before, 'rowgate_live_subscriptions')).toBe(0);
    expect(metric(before, 'rowgate_websocket_sockets')).toBe(0);

    const client = await gw.ws('alice');
    const live = run(client.client, 'subscription { note(order_by: {id: asc}) { id body } }');
    const changes = run(client.client, 'subscription { note_changes { op row { id } } }');
    await live.received(1);
    // The change stream has no first event: it is running once the live engine counts it.
    await vi.waitFor(async () => expect(metric(await scrape(metricsUrl), 'rowgate_live_subscriptions')).toBe(2));

    await db.sql`INSERT INTO note VALUES (2, 'two')`;
    await live.received(2);
    await changes.received(1);
    const running = await scrape(metricsUrl);
    expect(metric(running, 'rowgate_websocket_sockets')).toBe(1);
    expect(metric(running, 'rowgate_websocket_subscriptions')).toBe(2);
    expect(metric(running, 'rowgate_live_shapes')).toBe(2);
    expect(metric(running, 'rowgate_graphql_operations_total', { transport: 'ws', operation_type: 'subscription' }) - metric(before, 'rowgate_graphql_operations_total', { transport: 'ws', operation_type: 'subscription' })).toBe(2);
    // The first result, then the insert: at least two live-query evaluations, one change-stream evaluation.
    expect(metric(running, 'rowgate_live_evaluation_duration_seconds_count', { kind: 'live_query' })).toBeGreaterThanOrEqual(2);
    expect(metric(running, 'rowgate_live_evaluation_duration_seconds_count', { kind: 'change_stream' })).toBeGreaterThanOrEqual(1);
    expect(metric(running, 'rowgate_live_statements_total')).toBeGreaterThan(metric(before, 'rowgate_live_statements_total'));
    // The insert came through the change feed: one delivered batch, a few ms to a poll interval old.
    expect(metric(running, 'rowgate_change_feed_lag_seconds_count') - metric(before, 'rowgate_change_feed_lag_seconds_count')).toBe(1);
    expect(metric(running, 'rowgate_change_feed_lag_seconds_sum')).toBeGreaterThan(0);

    live.stop();
    changes.stop();
    await Promise.all([live.done, changes.done]);
    await vi.waitFor(async () => {
      const after = await scrape(metricsUrl);
      expect(metric(after, 'rowgate_live_subscriptions')).toBe(0);
      expect(metric(after, 'rowgate_websocket_subscriptions')).toBe(0);
    });
  });

  it('an SSE subscription is counted when it starts and shows in the stream gauge until the client leaves', async () => {
    const ops = { transport: 'sse', operation_type: 'subscription' };
    const before = await scrape(metricsUrl);
    const abort = new AbortController();
    const res = await fetch(gw.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${await gw.token('alice')}` },
      body: JSON.stringify({ query: 'subscription Notes { note { id } }' }),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('event: next')) text += new TextDecoder().decode((await reader.read()).value);
    const running = await scrape(metricsUrl);
    expect(metric(running, 'rowgate_sse_streams')).toBe(1);
    expect(metric(running, 'rowgate_live_subscriptions')).toBe(1);
    expect(metric(running, 'rowgate_graphql_operations_total', ops) - metric(before, 'rowgate_graphql_operations_total', ops)).toBe(1);
    abort.abort();
    await vi.waitFor(async () => {
      const after = await scrape(metricsUrl);
      expect(metric(after, 'rowgate_sse_streams')).toBe(0);
      expect(metric(after, 'rowgate_live_subscriptions')).toBe(0);
      // Counted once, at the start, not again when it ended.
      expect(metric(after, 'rowgate_graphql_operations_total', ops) - metric(before, 'rowgate_graphql_operations_total', ops)).toBe(1);
    });
  });

  it('counts errors sent on a WebSocket by code', async () => {
    const before = await scrape(metricsUrl);
    const client = await gw.ws('alice');
    const outcome = await run(client.client, 'subscription { nope }').done;
    expect(outcome.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
    const after = await scrape(metricsUrl);
    const labels = { transport: 'ws', code: 'GRAPHQL_VALIDATION_FAILED' };
    expect(metric(after, 'rowgate_graphql_errors_total', labels) - metric(before, 'rowgate_graphql_errors_total', labels)).toBe(1);
  });
});
