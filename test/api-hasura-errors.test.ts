import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { signToken } from '../src/server/token.ts';
import { readAll, run, sse, within } from './support/transports.ts';

// graphql.errorCodes: "hasura": extensions.code is Hasura's error class on every transport, for
// clients migrated from Hasura that branch on it; rowgate's code stays in extensions.rowgate_code.
const db = useTestDatabase();
let gw: LiveGateway;

beforeAll(async () => {
  await db.sql.unsafe(`CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL); INSERT INTO note VALUES (1, 'ann', 'hi');`);
  gw = await startLiveGateway(db, {
    graphql: { errorCodes: 'hasura' },
    tables: { note: { select: 'SELECT * FROM note WHERE owner = :sender', insert: { check: "SELECT * FROM note WHERE owner = :sender AND body <> 'no'", set: { owner: ':sender' } } } },
  });
});
afterAll(() => gw.stop());

const codes = (res: { errors?: { extensions?: Record<string, unknown> }[] }) => (res.errors ?? []).map((e) => [e.extensions?.['code'], e.extensions?.['rowgate_code']]);

describe('Hasura error classes', () => {
  it('over HTTP: constraint, permission, validation', async () => {
    expect(codes(await gw.gql('ann', 'mutation { insert_note_one(object: {id: 1, body: "dup"}) { id } }'))).toEqual([['constraint-violation', 'CONSTRAINT_VIOLATION']]);
    expect(codes(await gw.gql('ann', 'mutation { insert_note_one(object: {id: 2, body: "no"}) { id } }'))).toEqual([['permission-error', 'FORBIDDEN']]);
    expect(codes(await gw.gql('ann', '{ note { nope } }'))).toEqual([['validation-failed', 'GRAPHQL_VALIDATION_FAILED']]);
    expect(codes(await gw.gql('ann', '{ note(limit: -1) { id } }'))).toEqual([['validation-failed', 'BAD_USER_INPUT']]);
  });

  it('over HTTP: a bad token is invalid-jwt', async () => {
    const res = await fetch(gw.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer not.a.token' }, body: JSON.stringify({ query: '{ note { id } }' }) });
    expect(codes((await res.json()) as { errors?: { extensions?: Record<string, unknown> }[] })).toEqual([['invalid-jwt', 'UNAUTHENTICATED']]);
  });

  it('over WebSocket', async () => {
    const client = await gw.ws('ann');
    const outcome = await run(client.client, 'subscription { note { nope } }').done;
    expect(codes({ errors: outcome.errors ?? [] })).toEqual([['validation-failed', 'GRAPHQL_VALIDATION_FAILED']]);
    // Refused when the stream starts: an error result (next), then complete.
    const bad = await run(client.client, 'subscription { note_changes(after: "01") { op } }').done;
    const errors = [...(bad.errors ?? []), ...bad.values.flatMap((v) => (v.errors ?? []) as unknown as { extensions?: Record<string, unknown> }[])];
    expect(codes({ errors })).toEqual([['validation-failed', 'BAD_USER_INPUT']]);
  });

  it('over SSE', async () => {
    const stream = await sse(gw.url, { query: 'subscription { note_changes(after: "01") { op } }' }, { authorization: `Bearer ${await gw.token('ann')}` });
    const events: string[] = [];
    for await (const e of stream.events) {
      events.push(e.data);
      if (e.event === 'next') break;
    }
    stream.abort();
    const errors = events.flatMap((d) => (d ? ((JSON.parse(d) as { errors?: { extensions?: Record<string, unknown> }[] }).errors ?? []) : []));
    expect(codes({ errors })).toEqual([['validation-failed', 'BAD_USER_INPUT']]);
  });

  it('over SSE, inside a stream: the error that ends it at token expiry', async () => {
    const token = await signToken(gw.config, { sender: 'ann', expires: 2 });
    const stream = await sse(gw.url, { query: 'subscription { note { id } }' }, { authorization: `Bearer ${token}` });
    const { next } = await within(readAll(stream), 6_000, 'the stream to end at expiry');
    expect(next[0]).toEqual({ data: { note: [{ id: 1 }] } });
    expect(codes(next.at(-1) as { errors?: { extensions?: Record<string, unknown> }[] })).toEqual([['invalid-jwt', 'UNAUTHENTICATED']]);
  });
});
