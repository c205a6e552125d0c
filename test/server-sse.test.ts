import { describe, expect, it } from 'vitest';
import { readAll, sse, startTransportGateway, within, type TransportGateway } from './support/transports.ts';

/**
 * Subscriptions over SSE (yoga's "distinct connections" mode: one request, one operation) against
 * a real gateway and `fetch`: the same auth, Origin check, error codes and masking as HTTP, and a
 * client that goes away ends its subscription.
 */

const COUNTDOWN = 'subscription ($from: Int!) { countdown(from: $from) }';
const WAIT = 5_000;

describe('SSE transport', () => {
  let gw: TransportGateway;
  let auth: Record<string, string>;
  it('starts', async () => {
    gw = await startTransportGateway({ auth: { allowedOrigins: ['https://app.example'] } });
    auth = { authorization: `Bearer ${await gw.token('alice')}` };
  });

  it('streams a countdown over POST and ends with `complete`', async () => {
    const stream = await sse(gw.url, { query: COUNTDOWN, variables: { from: 3 } }, auth);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const { next, events } = await within(readAll(stream), WAIT, 'the stream');
    expect(next).toEqual([3, 2, 1, 0].map((n) => ({ data: { countdown: n } })));
    expect(events.at(-1)?.event).toBe('complete');
  });

  it('streams over GET too', async () => {
    const query = new URLSearchParams({ query: COUNTDOWN, variables: JSON.stringify({ from: 1 }) });
    const res = await fetch(`${gw.url}?${query.toString()}`, { headers: { accept: 'text/event-stream', ...auth } });
    expect(res.status).toBe(200);
    const text = await within(res.text(), WAIT, 'the body');
    expect(text).toContain('event: next\ndata: {"data":{"countdown":1}}');
    expect(text).toContain('event: complete');
  });

  it('gives resolvers the caller from the Authorization header', async () => {
    const stream = await sse(gw.url, { query: 'subscription { whoami }' }, auth);
    expect((await within(readAll(stream), WAIT, 'whoami')).next).toEqual([{ data: { whoami: 'alice' } }]);
  });

  it('refuses a request without a token with 401 UNAUTHENTICATED and runs nothing', async () => {
    const stream = await sse(gw.url, { query: 'subscription { whoami }' });
    expect(stream.status).toBe(401);
    const { next } = await within(readAll(stream), WAIT, 'the answer');
    expect(next).toHaveLength(1);
    expect(next[0]).not.toHaveProperty('data');
    expect(JSON.stringify(next[0])).toContain('"code":"UNAUTHENTICATED"');
  });

  it('refuses an expired token', async () => {
    const stream = await sse(gw.url, { query: 'subscription { whoami }' }, { authorization: `Bearer ${await gw.token('alice', -60)}` });
    expect(stream.status).toBe(401);
    expect(JSON.stringify((await within(readAll(stream), WAIT, 'the answer')).next)).toMatch(/expired.*UNAUTHENTICATED/);
  });

  it('refuses a disallowed Origin with 403 before any GraphQL runs, cookies or not', async () => {
    for (const extra of [{}, { cookie: 'session=stolen' }]) {
      const res = await fetch(gw.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', origin: 'https://evil.example', ...auth, ...extra },
        body: JSON.stringify({ query: 'subscription { whoami }' }),
      });
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ errors: [{ extensions: { code: 'FORBIDDEN' } }] });
    }
    const allowed = await sse(gw.url, { query: 'subscription { whoami }' }, { ...auth, origin: 'https://app.example' });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect((await within(readAll(allowed), WAIT, 'whoami')).next).toEqual([{ data: { whoami: 'alice' } }]);
  });

  it('answers bad operations with coded errors', async () => {
    const unknown = await readAll(await sse(gw.url, { query: 'subscription { nope }' }, auth));
    expect(JSON.stringify(unknown.next)).toContain('"code":"GRAPHQL_VALIDATION_FAILED"');
    const parse = await readAll(await sse(gw.url, { query: 'subscription {' }, auth));
    expect(JSON.stringify(parse.next)).toContain('"code":"GRAPHQL_PARSE_FAILED"');
    const variables = await readAll(await sse(gw.url, { query: COUNTDOWN, variables: { from: 'ten' } }, auth));
    expect(JSON.stringify(variables.next)).toContain('"code":"BAD_USER_INPUT"');
  });

  it('masks an error thrown inside a stream', async () => {
    const before = gw.internalErrors.length;
    const { next } = await within(readAll(await sse(gw.url, { query: 'subscription { boom }' }, auth)), WAIT, 'the stream');
    expect(next[0]).toEqual({ data: { boom: 1 } });
    expect(JSON.stringify(next)).not.toMatch(/secret_internal_table|10\.0\.0\.7/);
    expect(JSON.stringify(next[1])).toContain('"code":"INTERNAL_SERVER_ERROR"');
    expect(gw.internalErrors.length).toBeGreaterThan(before);
  });

  it('ends the stream with UNAUTHENTICATED when its token expires, releasing the subscription', async () => {
    // `expires` in seconds from now: exp is one to two seconds ahead.
    const token = await gw.token('alice', 2);
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number };
    const returned = gw.probe.returned;
    const stream = await sse(gw.url, { query: COUNTDOWN, variables: { from: 1_000_000 } }, { authorization: `Bearer ${token}` });
    const { next, events } = await within(readAll(stream), 6_000, 'the stream to end at expiry');
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
    expect(next.length).toBeGreaterThan(1);
    expect(JSON.stringify(next.at(-1))).toMatch(/token expired.*"code":"UNAUTHENTICATED"/);
    expect(events.at(-1)?.event).toBe('complete');
    await within(gw.probe.until(() => gw.probe.returned > returned), WAIT, "the generator's return()");
  });

  it("ends the subscription (calls the iterator's return()) when the client goes away", async () => {
    const returned = gw.probe.returned;
    const stream = await sse(gw.url, { query: COUNTDOWN, variables: { from: 1_000_000 } }, auth);
    const first = await within(stream.events.next(), WAIT, 'the first event');
    expect(first.value).toMatchObject({ event: 'next' });
    expect(gw.gateway.stats().sseStreams).toBeGreaterThanOrEqual(1);
    stream.abort();
    await within(
      gw.probe.until(() => gw.probe.returned > returned),
      WAIT,
      "the generator's return()",
    );
    await within(
      (async () => {
        while (gw.gateway.stats().sseStreams !== 0) await new Promise((r) => setImmediate(r));
      })(),
      WAIT,
      'the stream count to drop',
    );
  });
});

describe('SSE on shutdown', () => {
  it('close() ends open streams and returns their iterators', async () => {
    const gw = await startTransportGateway();
    const stream = await sse(gw.url, { query: COUNTDOWN, variables: { from: 1_000_000 } }, { authorization: `Bearer ${await gw.token('alice')}` });
    await within(stream.events.next(), WAIT, 'the first event');
    const returned = gw.probe.returned;
    await within(gw.gateway.close(), WAIT, 'close()');
    await within(
      (async () => {
        // The response ends (or breaks off); either way the reader finishes.
        try {
          for await (const _ of stream.events) void _;
        } catch {
          // cut off
        }
      })(),
      WAIT,
      'the stream to end',
    );
    await within(
      gw.probe.until(() => gw.probe.returned > returned),
      WAIT,
      "the generator's return()",
    );
  });
});
