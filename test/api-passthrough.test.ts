import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_QUERY } from '../src/cli/demo.ts';
import { passThroughOf, type PassThrough } from '../src/resolvers/index.ts';
import { useTestDatabase } from './support/db.ts';
import { ADMIN_SECRET, startGateway, type TestGateway } from './support/gateway.ts';
import { wsClient } from './support/transports.ts';

// The pass-through (PostgreSQL's JSON text sent as it is) against the ordinary path (graphql-js
// executing over parsed JSON), on the same data and the same operations: every response must be
// the same bytes, status and content type, for every identity, whichever path answered it.
const db = useTestDatabase();
const demoConfig = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as { tables: Record<string, unknown> };
let passing: TestGateway;
let ordinary: TestGateway;
let counts: PassThrough;

const MAX_TOTAL_ROWS = 30;

beforeAll(async () => {
  await db.sql.unsafe(readFileSync(new URL('../demo/schema.sql', import.meta.url), 'utf8'));
  await db.sql.unsafe(`
    -- alice's document in ops, whose group she cannot see: its grp is null for her.
    INSERT INTO document (grp_id, author, title, body, created_at) VALUES (2, 'alice', 'Side', 'ops notes', '2024-02-29 12:34:56.789+00');
    CREATE TABLE quirk (
      id int PRIMARY KEY, owner text NOT NULL, body text, n numeric, f float8, j jsonb, d date,
      ts timestamptz, t timestamp, u uuid, flag boolean, tags text[], big bigint, small smallint
    );
    INSERT INTO quirk VALUES
      (1, 'alice', E'quote " backslash \\\\ slash / tab \\t newline \\n cr \\r bs \\b ff \\f ctl \\x01\\x1f del \\x7f', 1.50, 0.1, '{"b": 1, "a": [1.0, 2]}', '2024-02-29', '2024-02-29 23:59:59.999999+00', '2024-01-01 00:00:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, '{x,"y z"}', 9007199254740993, -32768),
      (2, 'alice', E'é 中文 😀 \\u2028 \\u2029 <script>', -0.000, 1e21, 'null', NULL, NULL, NULL, NULL, false, '{}', NULL, NULL),
      (3, 'alice', '', NULL, 1e-7, '"s"', '0001-01-01', '1970-01-01 00:00:00+00', NULL, NULL, NULL, NULL, -1, 0),
      (4, 'alice', NULL, 1e30, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (5, 'bob', repeat('{', 40), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    INSERT INTO quirk (id, owner) SELECT g, 'quinn' FROM generate_series(100, 140) g;
    -- Returns matching rows, hidden or not: the rules hide them.
    CREATE FUNCTION search_document(q text) RETURNS SETOF document LANGUAGE sql STABLE
      AS $$ SELECT * FROM document WHERE title LIKE '%' || q || '%' $$;
    CREATE TABLE tally (id int PRIMARY KEY, amount text NOT NULL);
    INSERT INTO tally VALUES (1, '5'), (2, 'lots');
  `);
  const tables = {
    ...demoConfig.tables,
    quirk: { select: ['SELECT * FROM quirk WHERE owner = :sender'] },
    // The rule's cast raises on the stored 'lots': reading row 2 fails for every caller.
    tally: { select: ['SELECT * FROM tally WHERE amount::int > 0'] },
  };
  const config = { tables, functions: ['search_document'], limits: { maxTotalRows: MAX_TOTAL_ROWS } };
  passing = await startGateway(db, config);
  ordinary = await startGateway(db, config, 5, { passThrough: false });
  counts = passThroughOf(passing.gateway.yoga.getEnveloped({}).schema)!;
});

type Who = 'alice' | 'bob' | 'carol' | 'dave' | 'quinn' | 'admin' | null;
const WHO: Who[] = ['alice', 'bob', 'carol', 'dave', 'quinn', 'admin', null];

interface Case {
  name: string;
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  /** Whether the pass-through answers it (rather than handing it to graphql-js), per caller. */
  passes: boolean | ((who: Who) => boolean);
}

const BENCH_QUERY = '{ account { id name players { level score } } document(limit: 20, order_by: {id: desc}) { id title grp { name } } }';
const DOCS = `
  query Docs($where: document_bool_exp, $limit: Int, $order_by: [document_order_by!]) {
    document(where: $where, limit: $limit, order_by: $order_by) { id title created_at grp { name } }
  }
  query DocById($id: Int!) { document_by_pk(id: $id) { id title } }
  query DocCount($where: document_bool_exp) { document_aggregate(where: $where) { aggregate { count max { id } } } }
`;

// Operations of the existing tests (api-demo, api-root-batch, the bench), then the features one by one.
const CORPUS: Case[] = [
  { name: 'the bench query', query: BENCH_QUERY, passes: true },
  { name: "GraphiQL's opening query", query: DEFAULT_QUERY, passes: true },
  { name: 'every table, ordered', query: '{ account(order_by: {id: asc}) { identity } player(order_by: {id: asc}) { id } grp(order_by: {id: asc}) { name } document(order_by: {id: asc}) { id } }', passes: true },
  { name: 'an aggregate beside lists', query: '{ account(order_by: {id: asc}) { identity } document_aggregate { aggregate { count } } }', passes: false },
  { name: 'memberships (self-join rule)', query: '{ membership(order_by: [{grp_id: asc}, {member: asc}]) { grp_id member perms } }', passes: true },
  { name: 'bigint by primary key', query: '{ player_by_pk(id: 3) { score } }', passes: true },
  { name: 'bigint variable', query: 'query($s: bigint) { player(where: {score: {_eq: $s}}) { id } }', variables: { s: '9007199254740993' }, passes: true },
  { name: 'named operation with a fenced where', query: DOCS, operationName: 'Docs', variables: { where: { title: { _ilike: 'road%' } }, limit: 10, order_by: [{ id: 'desc' }] }, passes: true },
  { name: 'by primary key, visible', query: DOCS, operationName: 'DocById', variables: { id: 1 }, passes: true },
  { name: 'by primary key, hidden or missing', query: DOCS, operationName: 'DocById', variables: { id: 3 }, passes: true },
  { name: 'by primary key, none', query: DOCS, operationName: 'DocById', variables: { id: 999 }, passes: true },
  { name: 'aggregate operation', query: DOCS, operationName: 'DocCount', variables: { where: { author: { _eq: 'alice' } } }, passes: false },
  { name: 'object relationship to a hidden row', query: '{ document(order_by: {id: asc}) { title author grp { id name } } }', passes: true },
  { name: 'aliases', query: '{ a: account(order_by: {id: asc}) { n: name i: id } b: account(order_by: {id: desc}, limit: 1) { id } c: document_by_pk(id: 4) { t: title g: grp { n: name } } }', passes: true },
  { name: 'merged fields and duplicate keys', query: '{ document(order_by: {id: asc}) { id title id grp { name } ... on document { grp { id name } } } }', passes: true },
  {
    name: 'fragments with __typename',
    query: 'query { ...Q } fragment Q on Query { document(order_by: {id: asc}) { ...D grp { ...G } } } fragment D on document { id title __typename } fragment G on grp { __typename name }',
    passes: true,
  },
  { name: '__typename everywhere', query: '{ __typename account(order_by: {id: asc}) { __typename id players { __typename level } } t: __typename }', passes: true },
  { name: 'only __typename', query: '{ __typename }', passes: true },
  {
    name: '@include and @skip with variables',
    query: 'query($yes: Boolean!, $no: Boolean!) { document(order_by: {id: asc}) { id title @include(if: $yes) body @skip(if: $yes) grp @include(if: $no) { name } ... @skip(if: $no) { author } ...F @include(if: $yes) } account @skip(if: $yes) { id } } fragment F on document { created_at }',
    variables: { yes: true, no: false },
    passes: true,
  },
  { name: 'every field skipped', query: '{ account(order_by: {id: asc}) { id @skip(if: true) } }', passes: true },
  { name: 'nested list arguments', query: '{ account(order_by: {id: asc}) { id players(where: {level: {_gt: 2}}, order_by: {id: asc}, limit: 1) { id level } } }', passes: true },
  { name: 'offset and distinct_on', query: '{ membership(distinct_on: [grp_id], order_by: [{grp_id: asc}, {member: desc}]) { grp_id member } document(order_by: {id: asc}, offset: 1, limit: 2) { id } }', passes: true },
  { name: 'a root function', query: '{ search_document(args: {q: "o"}, order_by: {id: asc}) { id title grp { name } } }', passes: true },
  { name: 'a root function with a bad argument', query: '{ search_document(args: {q: "\\u0000"}) { id } }', passes: false },
  { name: 'a root function aggregate', query: '{ search_document_aggregate(args: {q: "o"}) { aggregate { count } } }', passes: false },
  { name: 'relationship filter', query: '{ document(where: {grp: {name: {_eq: "design"}}}, order_by: {id: asc}) { id } }', passes: true },
  { name: 'scalars written by PostgreSQL', query: '{ quirk(order_by: {id: asc}, where: {id: {_lt: 10}}) { id owner body n d ts t u flag big small } }', passes: (who) => who !== 'bob' && who !== 'admin' },
  { name: 'a Float column', query: '{ quirk(order_by: {id: asc}) { id f } }', passes: false },
  { name: 'a jsonb column', query: '{ quirk(order_by: {id: asc}) { id j } }', passes: false },
  { name: 'a jsonb path', query: '{ quirk(order_by: {id: asc}) { id j(path: "a") } }', passes: false },
  { name: 'an array column', query: '{ quirk(order_by: {id: asc}) { id tags } }', passes: false },
  // bob's one row holds 40 `{` in a string: counted as objects, they send it the ordinary way.
  { name: 'braces inside strings', query: '{ quirk(where: {id: {_lt: 10}}) { body } }', passes: (who) => who !== 'bob' && who !== 'admin' },
  { name: 'more rows than maxTotalRows', query: '{ quirk(order_by: {id: asc}) { id } }', passes: (who) => who !== 'quinn' && who !== 'admin' },
  // The admin's reads skip the failing rule.
  { name: 'a failing field beside an answering one', query: '{ account(order_by: {id: asc}) { id } tally_by_pk(id: 2) { id } }', passes: (who) => who === 'admin' },
  { name: 'a table whose rule fails on every read', query: '{ tally(order_by: {id: asc}) { id } }', passes: (who) => who === 'admin' },
  { name: 'a bad LIKE pattern', query: '{ document(where: {title: {_like: "a\\\\"}}) { id } }', passes: false },
  { name: 'a bad value in a filter', query: '{ document(where: {created_at: {_gt: "not a time"}}) { id } }', passes: false },
  { name: 'variables that do not coerce', query: DOCS, operationName: 'DocById', variables: { id: 'x' }, passes: false },
  { name: 'a missing variable', query: DOCS, operationName: 'DocById', passes: false },
  { name: 'introspection', query: '{ __schema { queryType { name } } }', passes: false },
  { name: 'introspection beside a list', query: '{ __type(name: "grp") { name } grp(order_by: {id: asc}) { name } }', passes: false },
  { name: 'an unknown field (validation)', query: '{ nosuch }', passes: false },
  { name: 'a parse error', query: '{ account {', passes: false },
  { name: 'a mutation', query: 'mutation { update_account(where: {id: {_eq: 999}}, _set: {name: "x"}) { affected_rows } }', passes: false },
];

async function request(gateway: TestGateway, who: Who, c: Case, accept = 'application/json'): Promise<{ status: number; type: string | null; body: string }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept };
  if (who === 'admin') headers['x-rowgate-admin-secret'] = ADMIN_SECRET;
  else if (who !== null) headers['authorization'] = `Bearer ${await gateway.token(who)}`;
  const res = await fetch(gateway.url, { method: 'POST', headers, body: JSON.stringify({ query: c.query, variables: c.variables, operationName: c.operationName }) });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** Texts each caller must never see: other callers' rows (the rules and the fence are the resolvers'). */
const HIDDEN: Record<string, string[]> = {
  alice: ['Runbook', 'Only ops', '"Bob"', '"Carol"', '"score":"9007199254740993"', '"ops"', '{{{{'],
  bob: ['"Alice"', '"Carol"', '9007199254740993', 'quote', '中文'],
  carol: ['Roadmap', 'Notes', 'Runbook', 'Side', '"design"', '"ops"', 'quote'],
  dave: ['Alice', 'Bob', 'Carol', 'Roadmap', 'Notes', 'Runbook', 'Side', 'design', 'quote', '1200'],
  quinn: ['Alice', 'Roadmap', 'Runbook', 'quote', '{{{{'],
};

describe('pass-through and graphql-js answer the same bytes', () => {
  for (const c of CORPUS) {
    it(c.name, async () => {
      for (const who of WHO) {
        const before = counts.passed;
        const fast = await request(passing, who, c);
        const passed = counts.passed - before;
        const slow = await request(ordinary, who, c);
        expect(fast, `${String(who)}: ${c.name}`).toEqual(slow);
        // Unauthenticated requests never execute; everyone else's go the way the case says.
        const expected = who !== null && (typeof c.passes === 'function' ? c.passes(who) : c.passes);
        expect(passed, `${String(who)} passed through`).toBe(expected ? 1 : 0);
        for (const text of HIDDEN[who ?? ''] ?? []) expect(fast.body, `${String(who)} sees ${text}`).not.toContain(text);
      }
    });
  }

  it('with Accept: application/graphql-response+json', async () => {
    for (const c of [CORPUS[0]!, CORPUS.find((x) => x.name === 'a failing field beside an answering one')!, CORPUS.find((x) => x.name === 'a parse error')!]) {
      for (const who of ['alice', 'carol'] as const) {
        expect(await request(passing, who, c, 'application/graphql-response+json')).toEqual(await request(ordinary, who, c, 'application/graphql-response+json'));
      }
    }
  });

  it('a GET query', async () => {
    const url = (g: TestGateway) => `${g.url}?query=${encodeURIComponent(BENCH_QUERY)}`;
    const get = async (g: TestGateway) => {
      const res = await fetch(url(g), { headers: { authorization: `Bearer ${await g.token('bob')}`, accept: 'application/json' } });
      return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
    };
    const before = counts.passed;
    expect(await get(passing)).toEqual(await get(ordinary));
    expect(counts.passed - before).toBe(1);
  });

  it('the same operation again is answered from its kept plan, the same bytes', async () => {
    const c = CORPUS[0]!;
    const first = await request(passing, 'bob', c);
    const before = counts.passed;
    for (let i = 0; i < 3; i++) expect(await request(passing, 'bob', c)).toEqual(first);
    expect(counts.passed - before).toBe(3);
  });

  it('over a WebSocket, whose transport serializes the result itself', async () => {
    const over = async (g: TestGateway) => {
      const { client, connected } = wsClient(g.url.replace('http', 'ws'), { Authorization: `Bearer ${await g.token('alice')}` });
      await connected;
      try {
        const results: unknown[] = [];
        for await (const result of client.iterate({ query: BENCH_QUERY })) results.push(result);
        return JSON.stringify(results);
      } finally {
        await client.dispose();
      }
    };
    const before = counts.passed;
    const fast = await over(passing);
    expect(counts.passed - before).toBe(1);
    expect(fast).toBe(await over(ordinary));
    expect(fast).toContain('Roadmap');
  });
});
