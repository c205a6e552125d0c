import { describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { createLogger } from '../src/server/log.ts';
import { signToken } from '../src/server/token.ts';
import { startTiny } from './support/server.ts';

// The runtime log: one JSON line per request with its id, operation, status, duration and error
// codes, and nothing a caller sent (tokens, variables, query text).

interface Line {
  level: number;
  msg: string;
  reqId?: string;
  [key: string]: unknown;
}

describe('request ids and request lines', async () => {
  const raw: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void raw.push(line) });
  const gw = await startTiny({}, { logger });
  const token = await signToken(gw.config, { sender: 'alice' });
  const headers = { authorization: `Bearer ${token}` };
  const lines = () => raw.map((line) => JSON.parse(line) as Line);
  /** The request's line: written when its response closes, which can be just after the client has read it. */
  const lineOf = (reqId: string) => vi.waitFor(() => {
    const line = lines().find((l) => l.reqId === reqId && l.msg === 'request');
    if (!line) throw new Error(`no line for ${reqId} yet`);
    return line;
  });

  it('echoes an incoming x-request-id and logs the request under it, without the token, the query or the variables', async () => {
    const res = await gw.post({ query: 'query Who($pad: String) { whoami claim(name: $pad) }', variables: { pad: 'variable-value-xyz' } }, { ...headers, 'x-request-id': 'trace-abc.123' });
    expect(res.headers.get('x-request-id')).toBe('trace-abc.123');
    const line = await lineOf('trace-abc.123');
    expect(line).toMatchObject({ level: 30, name: 'rowgate', method: 'POST', path: '/graphql', status: 200, operationType: 'query', operationName: 'Who' });
    expect(typeof line.durationMs).toBe('number');
    expect(typeof line['time']).toBe('string');
    expect(line['errors']).toBeUndefined();
    const all = raw.join('\n');
    for (const secret of [token, 'variable-value-xyz', 'whoami']) expect(all).not.toContain(secret);
  });

  it('gives a request without an id (or with one that is not a plain token) a new one', async () => {
    for (const incoming of [undefined, 'has spaces and "quotes"', 'x'.repeat(129)]) {
      const res = await gw.post({ query: '{ whoami }' }, { ...headers, ...(incoming ? { 'x-request-id': incoming } : {}) });
      const id = res.headers.get('x-request-id');
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect((await lineOf(id!)).status).toBe(200);
    }
  });

  it('lists the error codes a response carried', async () => {
    const refused = await gw.post({ query: '{ whoami }' });
    expect((await lineOf(refused.headers.get('x-request-id')!))['errors']).toEqual(['UNAUTHENTICATED']);
    const invalid = await gw.post({ query: 'query Bad { nope }' }, headers);
    expect(await lineOf(invalid.headers.get('x-request-id')!)).toMatchObject({ operationName: 'Bad', errors: ['GRAPHQL_VALIDATION_FAILED'] });
    const big = await gw.post(JSON.stringify({ query: '{ whoami }', variables: { pad: 'x'.repeat(2 * 1024 * 1024) } }), headers);
    expect(await lineOf(big.headers.get('x-request-id')!)).toMatchObject({ status: 413, errors: ['LIMIT_EXCEEDED'] });
  });

  it("logs the document's operation name, never a client's operationName text", async () => {
    const claimed = `Claimed${'x'.repeat(5000)}`;
    const res = await gw.post({ query: 'query Who { whoami }', operationName: claimed }, headers);
    const line = await lineOf(res.headers.get('x-request-id')!);
    expect(line['operationName']).toBeUndefined();
    expect(raw.join('\n')).not.toContain(claimed.slice(0, 100));
  });

  it('logs probes at debug only, so at info they leave no line', async () => {
    const res = await fetch(`${gw.base}/healthz`, { headers: { 'x-request-id': 'probe-1' } });
    expect(res.headers.get('x-request-id')).toBe('probe-1');
    await res.body?.cancel();
    // A request after the probe has its line: had the probe one, it would be there by now.
    const after = await gw.post({ query: '{ whoami }' }, { ...headers, 'x-request-id': 'after-probe' });
    await lineOf(after.headers.get('x-request-id')!);
    expect(lines().some((l) => l.reqId === 'probe-1')).toBe(false);
  });
});

describe('internal errors go to the log when no other logger is given', async () => {
  const raw: string[] = [];
  const gw = await startTiny({}, { logger: createLogger('info', { write: (line: string) => void raw.push(line) }), logInternalError: null });

  it('logs the masked error at level error, with its message', async () => {
    const res = await gw.post({ query: '{ whoami boom }' }, { authorization: `Bearer ${await signToken(gw.config, { sender: 'alice' })}` });
    expect(res.body.errors?.[0]?.message).toBe('Internal server error');
    const line = await vi.waitFor(() => {
      const found = raw.map((l) => JSON.parse(l) as Line).find((l) => l.msg === 'internal error');
      if (!found) throw new Error('not logged yet');
      return found;
    });
    expect(line.level).toBe(50);
    expect(JSON.stringify(line['err'])).toContain('secret_internal_table');
  });
});

describe('log.level', () => {
  it('defaults to info, LOG_LEVEL overrides it, and an unknown level is refused', () => {
    expect(parseConfig({ tables: {} }, {}).log.level).toBe('info');
    expect(parseConfig({ tables: {}, log: { level: 'warn' } }, {}).log.level).toBe('warn');
    expect(parseConfig({ tables: {}, log: { level: 'warn' } }, { LOG_LEVEL: 'debug' }).log.level).toBe('debug');
    expect(() => parseConfig({ tables: {} }, { LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL must be one of/);
    expect(() => parseConfig({ tables: {}, log: { level: 'loud' } }, {})).toThrow(/log\.level/);
  });
});
