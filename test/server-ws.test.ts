import { SignJWT } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ADMIN_SECRET,
  SECRET,
  run,
  startTransportGateway,
  upgradeStatus,
  within,
  wsClient,
  type TestClient,
  type TransportGateway,
} from './support/transports.ts';

/**
 * The graphql-ws transport against a real gateway and the real graphql-ws client: auth at
 * connection_init, expiry, Origin, the per-socket limit, bad input, shutdown.
 */

const COUNTDOWN = 'subscription ($from: Int!) { countdown(from: $from) }';
const WAIT = 5_000;

const clients: TestClient[] = [];
function open(...args: Parameters<typeof wsClient>): TestClient {
  const c = wsClient(...args);
  clients.push(c);
  return c;
}
afterAll(async () => {
  await Promise.all(clients.map((c) => c.client.dispose()));
});

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('graphql-ws transport', () => {
  let gw: TransportGateway;
  it('starts', async () => {
    gw = await startTransportGateway({ auth: { allowedOrigins: ['https://app.example'] }, limits: { maxSubscriptionsPerSocket: 2 } });
  });

  it('streams a subscription to the end, and runs queries', async () => {
    const { client } = open(gw.wsUrl, bearer(await gw.token('alice')));
    const countdown = await within(run(client, COUNTDOWN, { from: 3 }).done, WAIT, 'the countdown');
    expect(countdown.errors).toBeNull();
    expect(countdown.values.map((v) => v.data?.['countdown'])).toEqual([3, 2, 1, 0]);
    const hello = await within(run(client, '{ hello }').done, WAIT, 'the query');
    expect(hello.values).toEqual([{ data: { hello: 'world' } }]);
  });

  it('gives resolvers the caller of the socket, with the token in `headers` too', async () => {
    const flat = open(gw.wsUrl, bearer(await gw.token('alice')));
    const nested = open(gw.wsUrl, { headers: bearer(await gw.token('bob')) });
    const [a, b] = await Promise.all([
      within(run(flat.client, 'subscription { whoami }').done, WAIT, 'whoami'),
      within(run(nested.client, 'subscription { whoami }').done, WAIT, 'whoami'),
    ]);
    expect(a.values).toEqual([{ data: { whoami: 'alice' } }]);
    expect(b.values).toEqual([{ data: { whoami: 'bob' } }]);
  });

  it('accepts the admin secret inside `headers`', async () => {
    const { client } = open(gw.wsUrl, { headers: { 'x-rowgate-admin-secret': ADMIN_SECRET } });
    const outcome = await within(run(client, 'subscription { whoami }').done, WAIT, 'whoami');
    expect(outcome.values).toEqual([{ data: { whoami: 'admin:' } }]);
  });

  it.each([
    ['no connection params', undefined, /authentication required/],
    ['no token', { hello: 'there' }, /authentication required/],
    ['a malformed token', bearer('not.a.jwt'), /malformed/],
    ['a token with a bad signature', 'bad-signature', /bad signature/],
    ['an expired token', 'expired', /expired/],
    ['a token without exp', 'no-exp', /no "exp" claim/],
    ['a wrong admin secret', { headers: { 'x-rowgate-admin-secret': 'guess' } }, /admin-secret is wrong/],
  ] as const)('closes the socket with 4403 at connection_init for %s', async (_name, params, reason) => {
    let connectionParams: Record<string, unknown> | undefined;
    if (params === 'bad-signature') {
      connectionParams = bearer(await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(`${SECRET}x`)));
    } else if (params === 'expired') {
      connectionParams = bearer(await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(new TextEncoder().encode(SECRET)));
    } else if (params === 'no-exp') {
      connectionParams = bearer(await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET)));
    } else connectionParams = params;
    const c = open(gw.wsUrl, connectionParams);
    let acknowledged = false;
    void c.connected.then(() => (acknowledged = true));
    const closed = await within(c.closed, WAIT, 'the close event');
    expect(closed.code).toBe(4403);
    expect(closed.reason).toMatch(reason);
    expect(acknowledged).toBe(false);
  });

  it('closes the socket with 4403 when the token expires, ending its subscriptions', async () => {
    // `expires` in seconds from now: exp is one to two seconds ahead.
    const token = await gw.token('alice', 2);
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number };
    const c = open(gw.wsUrl, bearer(token));
    await within(c.connected, WAIT, 'the ack');
    const returnedBefore = gw.probe.returned;
    const long = run(c.client, COUNTDOWN, { from: 1_000_000 });
    await within(long.received(1), WAIT, 'the first value');
    const closed = await within(c.closed, 5_000, 'the expiry close');
    expect(closed).toEqual({ code: 4403, reason: 'token expired' });
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
    const outcome = await within(long.done, WAIT, 'the subscription to end');
    expect(outcome.closed?.code).toBe(4403);
    await within(
      gw.probe.until(() => gw.probe.returned > returnedBefore),
      WAIT,
      "the generator's return()",
    );
  });

  it('refuses an upgrade from a disallowed Origin with 403, cookies or not', async () => {
    const plain = await upgradeStatus(gw.wsUrl, {}, 'https://evil.example');
    expect(plain.status).toBe(403);
    expect(JSON.parse(plain.body)).toMatchObject({ errors: [{ extensions: { code: 'FORBIDDEN' } }] });
    const withCookie = await upgradeStatus(gw.wsUrl, { cookie: 'session=stolen' }, 'https://evil.example');
    expect(withCookie.status).toBe(403);
  });

  it('accepts an upgrade from an allowed Origin and one without Origin', async () => {
    expect((await upgradeStatus(gw.wsUrl, {}, 'https://app.example')).status).toBe(101);
    expect((await upgradeStatus(gw.wsUrl, {})).status).toBe(101);
    const { client } = open(gw.wsUrl, bearer(await gw.token('alice')), { origin: 'https://app.example' });
    const outcome = await within(run(client, 'subscription { whoami }').done, WAIT, 'whoami');
    expect(outcome.values).toEqual([{ data: { whoami: 'alice' } }]);
  });

  it('refuses upgrades on other paths with 404', async () => {
    expect((await upgradeStatus(gw.wsUrl.replace(/\/graphql$/, '/other'), {})).status).toBe(404);
  });

  it('refuses a subscription past maxSubscriptionsPerSocket with LIMIT_EXCEEDED; the others go on', async () => {
    const { client, closed } = open(gw.wsUrl, bearer(await gw.token('alice')));
    let socketClosed = false;
    void closed.then(() => (socketClosed = true));
    const first = run(client, COUNTDOWN, { from: 1_000_000 });
    const second = run(client, COUNTDOWN, { from: 1_000_000 });
    await within(Promise.all([first.received(1), second.received(1)]), WAIT, 'two streams');

    const third = await within(run(client, COUNTDOWN, { from: 3 }).done, WAIT, 'the third subscription');
    expect(third.values).toEqual([]);
    expect(third.errors?.map((e) => e.extensions?.['code'])).toEqual(['LIMIT_EXCEEDED']);
    expect(third.errors?.[0]?.message).toMatch(/maxSubscriptionsPerSocket/);

    // Queries are not subscriptions: they still run.
    expect((await within(run(client, '{ hello }').done, WAIT, 'a query')).values).toEqual([{ data: { hello: 'world' } }]);

    // The first two keep streaming.
    const seen = [first.values.length, second.values.length];
    await within(Promise.all([first.received((seen[0] ?? 0) + 3), second.received((seen[1] ?? 0) + 3)]), WAIT, 'more values');

    // Once one completes, a new one fits.
    const returned = gw.probe.returned;
    first.stop();
    await within(gw.probe.until(() => gw.probe.returned > returned), WAIT, 'the first to end');
    const fourth = await within(run(client, COUNTDOWN, { from: 2 }).done, WAIT, 'a new subscription');
    expect(fourth.errors).toBeNull();
    expect(fourth.values.map((v) => v.data?.['countdown'])).toEqual([2, 1, 0]);
    second.stop();
    expect(socketClosed).toBe(false);
  });

  it('answers bad operations with an error for that operation; the socket goes on', async () => {
    const { client, closed } = open(gw.wsUrl, bearer(await gw.token('alice')));
    let socketClosed = false;
    void closed.then(() => (socketClosed = true));

    const unknown = await within(run(client, 'subscription { nope }').done, WAIT, 'the unknown field');
    expect(unknown.errors?.map((e) => e.extensions)).toEqual([{ code: 'GRAPHQL_VALIDATION_FAILED' }]);
    expect(unknown.errors?.[0]?.message).toMatch(/nope/);

    const parse = await within(run(client, 'subscription {').done, WAIT, 'the parse error');
    expect(parse.errors?.map((e) => e.extensions?.['code'])).toEqual(['GRAPHQL_PARSE_FAILED']);

    const variables = await within(run(client, COUNTDOWN, { from: 'ten' }).done, WAIT, 'the bad variable');
    const codes = [...(variables.errors ?? []), ...variables.values.flatMap((v) => v.errors ?? [])].map((e) => e.extensions?.['code']);
    expect(codes).toEqual(['BAD_USER_INPUT']);

    const good = await within(run(client, COUNTDOWN, { from: 1 }).done, WAIT, 'the next subscription');
    expect(good.values.map((v) => v.data?.['countdown'])).toEqual([1, 0]);
    expect(socketClosed).toBe(false);
  });

  it('masks an error thrown inside a stream and logs it on the server only', async () => {
    const { client, closed } = open(gw.wsUrl, bearer(await gw.token('alice')));
    let socketClosed = false;
    void closed.then(() => (socketClosed = true));
    const before = gw.internalErrors.length;
    const outcome = await within(run(client, 'subscription { boom }').done, WAIT, 'the failing stream');
    expect(outcome.values).toEqual([{ data: { boom: 1 } }]);
    expect(JSON.stringify(outcome.errors)).not.toMatch(/secret_internal_table|10\.0\.0\.7/);
    expect(outcome.errors?.map((e) => e.extensions?.['code'])).toEqual(['INTERNAL_SERVER_ERROR']);
    expect(gw.internalErrors.length).toBeGreaterThan(before);
    expect((await within(run(client, '{ hello }').done, WAIT, 'a query')).values).toEqual([{ data: { hello: 'world' } }]);
    expect(socketClosed).toBe(false);
  });

  it('counts open sockets and subscriptions', async () => {
    const before = gw.gateway.stats();
    const { client } = open(gw.wsUrl, bearer(await gw.token('alice')));
    const long = run(client, COUNTDOWN, { from: 1_000_000 });
    await within(long.received(1), WAIT, 'the first value');
    const during = gw.gateway.stats();
    expect(during.sockets).toBe(before.sockets + 1);
    expect(during.subscriptions).toBe(before.subscriptions + 1);
    const returned = gw.probe.returned;
    long.stop();
    await within(gw.probe.until(() => gw.probe.returned > returned), WAIT, 'the end');
    await within(
      (async () => {
        while (gw.gateway.stats().subscriptions !== before.subscriptions) await new Promise((r) => setImmediate(r));
      })(),
      WAIT,
      'the count to drop',
    );
  });
});

describe('graphql-ws with anonymous access', () => {
  it('acknowledges a socket without a token and gives it no sender', async () => {
    const gw = await startTransportGateway({ auth: { anonymous: true } });
    const { client } = open(gw.wsUrl, undefined);
    const outcome = await within(run(client, 'subscription { whoami }').done, WAIT, 'whoami');
    expect(outcome.values).toEqual([{ data: { whoami: null } }]);
    // A bad token is still refused, never downgraded to anonymous.
    const bad = open(gw.wsUrl, bearer('not.a.jwt'));
    expect((await within(bad.closed, WAIT, 'the close')).code).toBe(4403);
  });
});

describe('graphql-ws and clock tolerance', () => {
  it('closes at exp + auth.jwt.clockTolerance', async () => {
    const gw = await startTransportGateway({ auth: { jwt: { clockTolerance: 1 } } });
    const token = await gw.token('alice', 1);
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number };
    const c = open(gw.wsUrl, bearer(token));
    await within(c.connected, WAIT, 'the ack');
    expect(await within(c.closed, 5_000, 'the expiry close')).toEqual({ code: 4403, reason: 'token expired' });
    expect(Date.now()).toBeGreaterThanOrEqual((exp + 1) * 1000);
  });
});

describe('graphql-ws on shutdown', () => {
  it('closes every socket with 1001 and refuses new upgrades', async () => {
    const gw = await startTransportGateway();
    const a = open(gw.wsUrl, bearer(await gw.token('alice')));
    const b = open(gw.wsUrl, bearer(await gw.token('bob')));
    const returned = gw.probe.returned;
    const long = run(a.client, COUNTDOWN, { from: 1_000_000 });
    await within(Promise.all([long.received(1), b.connected]), WAIT, 'two sockets');

    await within(gw.gateway.close(), WAIT, 'close()');
    expect(await within(a.closed, WAIT, 'a to close')).toEqual({ code: 1001, reason: 'going away' });
    expect((await within(b.closed, WAIT, 'b to close')).code).toBe(1001);
    await within(
      gw.probe.until(() => gw.probe.returned > returned),
      WAIT,
      "the generator's return()",
    );
    expect(gw.gateway.stats()).toMatchObject({ sockets: 0, sseStreams: 0 });
    await expect(upgradeStatus(gw.wsUrl, {})).rejects.toThrow(/ECONNREFUSED/);
  });
});
