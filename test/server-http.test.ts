import { getIntrospectionQuery } from 'graphql';
import { describe, expect, it } from 'vitest';
import { connect, freePort } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { codes, startTiny, type TinyGateway } from './support/server.ts';

const db = useTestDatabase();

async function auth(gw: TinyGateway): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await signToken(gw.config, { sender: 'alice' })}` };
}

/** `{ node { child { … { name } } } }` with `depth` levels of fields. */
function nested(depth: number): string {
  let inner = 'name';
  for (let i = 1; i < depth - 1; i++) inner = `child { ${inner} }`;
  return `{ node { ${inner} } }`;
}

describe('routes', async () => {
  const gw = await startTiny();

  it('/healthz answers 200 while the process runs', async () => {
    const res = await fetch(`${gw.base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers 404 outside /graphql, /healthz and /readyz', async () => {
    for (const path of ['/', '/graphiql', '/graphql/extra', '/health']) {
      const res = await fetch(`${gw.base}${path}`);
      expect(res.status, path).toBe(404);
      await res.body?.cancel();
    }
  });

  it('serves GraphiQL to a browser, with every asset in the page (no CDN: it works offline)', async () => {
    const res = await fetch(gw.url, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).toContain('YogaGraphiQL.renderYogaGraphiQL(');
    // Nothing loaded from elsewhere: no script or stylesheet with a URL.
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+rel="stylesheet"[^>]+href="https?:/i);
    expect(html).not.toContain('unpkg.com');
  });

  it('opens GraphiQL with the headers and query it is given (the demo pre-fills a token)', async () => {
    const tiny = await startTiny({}, { graphiql: { headers: '{"Authorization": "Bearer demo-token"}', defaultQuery: '# where the tokens are\n{ whoami }' } });
    const html = await (await fetch(tiny.url, { headers: { accept: 'text/html' } })).text();
    expect(html).toContain(JSON.stringify('{"Authorization": "Bearer demo-token"}'));
    expect(html).toContain('where the tokens are');
  });

  it('runs queries over GET and POST', async () => {
    const headers = await auth(gw);
    const get = await fetch(`${gw.url}?query=${encodeURIComponent('{ whoami }')}`, { headers: { ...headers, accept: 'application/json' } });
    expect(await get.json()).toEqual({ data: { whoami: 'alice' } });
    expect((await gw.post({ query: '{ whoami }' }, headers)).body).toEqual({ data: { whoami: 'alice' } });
  });
});

describe('/readyz', async () => {
  const healthy = await startTiny({}, { databaseUrl: db.url });
  const deadPool = connect(`postgres://nobody:nothing@127.0.0.1:${await freePort()}/none`, { max: 1, connect_timeout: 1 });
  const broken = await startTiny({}, { sql: deadPool });
  const notYet = await startTiny({}, { databaseUrl: db.url, readiness: [async () => false] });

  it('answers 200 when SELECT 1 succeeds', async () => {
    const res = await fetch(`${healthy.base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready' });
  });

  it('answers 503 when the database cannot be reached', async () => {
    const res = await fetch(`${broken.base}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'unavailable' });
    await deadPool.end({ timeout: 1 });
  });

  it('answers 503 while another readiness check fails', async () => {
    const res = await fetch(`${notYet.base}/readyz`);
    expect(res.status).toBe(503);
    await res.body?.cancel();
  });
});

describe('query limits', async () => {
  const gw = await startTiny();
  const headers = await auth(gw);

  it('accepts a query at the depth limit (10) and refuses one level more with LIMIT_EXCEEDED', async () => {
    const ok = await gw.post({ query: nested(10) }, headers);
    expect(ok.body.errors).toBeUndefined();
    const tooDeep = await gw.post({ query: nested(11) }, headers);
    expect(codes(tooDeep.body)).toEqual(['LIMIT_EXCEEDED']);
    expect(tooDeep.body.errors?.[0]?.message).toMatch(/nested 11 levels deep; the limit is 10/);
    expect(tooDeep.body.data ?? null).toBeNull();
  });

  it('counts depth through fragments and inline fragments', async () => {
    const viaFragments = `
      query { node { child { ...Deep } } }
      fragment Deep on Node { child { ... on Node { child { ...Deeper } } } }
      fragment Deeper on Node { child { child { child { child { child { child { name } } } } } } }`;
    expect(codes((await gw.post({ query: viaFragments }, headers)).body)).toEqual(['LIMIT_EXCEEDED']);
    const shallow = `query { ...Root } fragment Root on Query { node { ... on Node { child { name } } } }`;
    expect((await gw.post({ query: shallow }, headers)).body).toEqual({ data: { node: { child: { name: 'node' } } } });
  });

  it('lets the standard introspection queries through', async () => {
    for (const query of [
      getIntrospectionQuery(),
      getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true, oneOf: true }),
    ]) {
      const res = await gw.post({ query }, headers);
      expect(res.body.errors).toBeUndefined();
      expect((res.body.data?.['__schema'] as { queryType: { name: string } }).queryType.name).toBe('Query');
    }
    const ofTypes = 12;
    const query = `{ __type(name: "Node") { fields { type { ${'ofType { '.repeat(ofTypes)}name${' }'.repeat(ofTypes)} } } } }`;
    const type = await gw.post({ query }, headers);
    expect(type.body.errors).toBeUndefined();
  });

  it('still refuses an introspection query that nests lists abusively (graphql-js MaxIntrospectionDepthRule)', async () => {
    const query = '{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }';
    const res = await gw.post({ query }, headers);
    expect(codes(res.body)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
  });

  it('does not exempt fields that are merely named like introspection', async () => {
    const query = `query __schema { node { ...__schema } } fragment __schema on Node { ${'child { '.repeat(11)}name${' }'.repeat(11)} }`;
    expect(codes((await gw.post({ query }, headers)).body)).toContain('LIMIT_EXCEEDED');
  });

  it('refuses more than 100 aliases, counting fragments per spread', async () => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `a${i}: whoami`).join(' ');
    expect((await gw.post({ query: `{ ${fields(100)} }` }, headers)).body.errors).toBeUndefined();
    expect(codes((await gw.post({ query: `{ ${fields(101)} }` }, headers)).body)).toEqual(['LIMIT_EXCEEDED']);
    const spread = `{ ...F ...F2 } fragment F on Query { ${fields(60)} } fragment F2 on Query { x: node { ...G } } fragment G on Node { ${Array.from({ length: 60 }, (_, i) => `n${i}: name`).join(' ')} }`;
    expect(codes((await gw.post({ query: spread }, headers)).body)).toEqual(['LIMIT_EXCEEDED']);
  });
});

describe('request size', async () => {
  const gw = await startTiny();
  const headers = await auth(gw);
  const big = JSON.stringify({ query: '{ whoami }', variables: { pad: 'x'.repeat(2 * 1024 * 1024) } });

  it('answers an oversized body with 413 and LIMIT_EXCEEDED, before running anything', async () => {
    const res = await gw.post(big, headers);
    expect(res.status).toBe(413);
    expect(res.body).toEqual({ errors: [{ message: expect.stringMatching(/larger than 1048576 bytes/), extensions: { code: 'LIMIT_EXCEEDED' } }] });
    expect(gw.state.calls).toBe(0);
  });

  it('also counts a streamed body that announces no length', async () => {
    const bytes = new TextEncoder().encode(big);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 64 * 1024) controller.enqueue(bytes.subarray(i, i + 64 * 1024));
        controller.close();
      },
    });
    const res = await fetch(gw.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code).toBe('LIMIT_EXCEEDED');
  });

  it('accepts a body just under the limit', async () => {
    const body = JSON.stringify({ query: '{ whoami }', variables: { pad: 'x'.repeat(1024 * 1024 - 100) } });
    expect((await gw.post(body, headers)).body).toEqual({ data: { whoami: 'alice' } });
  });
});

describe('errors', async () => {
  const gw = await startTiny({}, { databaseUrl: db.url });
  const headers = await auth(gw);

  it('answers malformed JSON with BAD_REQUEST', async () => {
    const res = await gw.post('{"query": "{ whoami }"', headers);
    expect(codes(res.body)).toEqual(['BAD_REQUEST']);
    expect(JSON.stringify(res.body)).not.toContain('originalError');
  });

  it('answers malformed GraphQL with GRAPHQL_PARSE_FAILED', async () => {
    expect(codes((await gw.post({ query: '{ whoami ' }, headers)).body)).toEqual(['GRAPHQL_PARSE_FAILED']);
  });

  it('answers an unknown field with GRAPHQL_VALIDATION_FAILED', async () => {
    expect(codes((await gw.post({ query: '{ nope }' }, headers)).body)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
  });

  it('masks a raw Error as INTERNAL_SERVER_ERROR and logs it on the server', async () => {
    const res = await gw.post({ query: '{ whoami boom }' }, headers);
    expect(res.body.data).toEqual({ whoami: 'alice', boom: null });
    expect(res.body.errors).toEqual([
      { message: 'Internal server error', locations: [{ line: 1, column: 10 }], path: ['boom'], extensions: { code: 'INTERNAL_SERVER_ERROR' } },
    ]);
    expect(JSON.stringify(res.body)).not.toMatch(/secret_internal_table|10\.0\.0\.7|stack/);
    expect(String(gw.internalErrors.at(-1))).toMatch(/secret_internal_table/);
  });

  it('masks a PostgreSQL error: nothing from the database reaches the client', async () => {
    const res = await gw.post({ query: '{ database }' }, headers);
    expect(codes(res.body)).toEqual(['INTERNAL_SERVER_ERROR']);
    expect(res.body.errors?.[0]?.message).toBe('Internal server error');
    expect(JSON.stringify(res.body)).not.toMatch(/secret_missing_table|relation|42P01/);
    expect(String(gw.internalErrors.at(-1))).toMatch(/secret_missing_table/);
  });
});

describe('allowed origins', async () => {
  const gw = await startTiny({ auth: { allowedOrigins: ['http://app.example', 'http://admin.example'] } });
  const headers = await auth(gw);

  it('refuses a request from an unlisted Origin with 403 before any GraphQL runs', async () => {
    const calls = gw.state.calls;
    const res = await gw.post({ query: '{ whoami }' }, { ...headers, origin: 'http://evil.example' });
    expect(res.status).toBe(403);
    expect(codes(res.body)).toEqual(['FORBIDDEN']);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(gw.state.calls).toBe(calls);
    const preflight = await fetch(gw.url, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(403);
    await preflight.body?.cancel();
  });

  it('sends CORS headers to a listed Origin', async () => {
    const res = await gw.post({ query: '{ whoami }' }, { ...headers, origin: 'http://admin.example' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { whoami: 'alice' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('http://admin.example');
    const preflight = await fetch(gw.url, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    await preflight.body?.cancel();
  });

  it('allows requests without an Origin header (servers, CLIs)', async () => {
    expect((await gw.post({ query: '{ whoami }' }, headers)).body).toEqual({ data: { whoami: 'alice' } });
  });
});

describe('shutdown', async () => {
  const gw = await startTiny();
  const headers = await auth(gw);

  it('stops accepting, lets the request in flight finish, then resolves close()', async () => {
    let release!: () => void;
    gw.state.release = new Promise<void>((r) => (release = r));
    const started = new Promise<void>((r) => (gw.state.slowStarted = r));
    const inFlight = gw.post({ query: '{ slow }' }, headers);
    await started;
    let closed = false;
    const closing = gw.gateway.close().then(() => (closed = true));
    // New connections are refused at once, while the old request still runs.
    await expect(fetch(`${gw.base}/healthz`, { headers: { connection: 'close' } })).rejects.toThrow();
    expect(closed).toBe(false);
    release();
    expect((await inFlight).body).toEqual({ data: { slow: 'done' } });
    await closing;
    expect(gw.gateway.server.listening).toBe(false);
  });
});
