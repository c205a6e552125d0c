import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Hostile and malformed requests: each gets a clear error with a stable code (or is treated as
// plain data), no internal message leaks, and the database is unchanged afterwards.
const db = useTestDatabase();
let api: TestGateway;

const HOSTILE = ["' OR 1=1 --", "'); DROP TABLE item; --", '$1', ':sender', '\\', '%', "x' UNION SELECT * FROM secret --", 'ünï©ødé 🎉', 'a'.repeat(5000)];

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE item (id int PRIMARY KEY, owner text NOT NULL, label text NOT NULL, ref uuid, qty bigint NOT NULL DEFAULT 0, meta jsonb);
    CREATE TABLE secret (id int PRIMARY KEY, value text);
    INSERT INTO item VALUES (1, 'alice', 'one', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 5, '{"k": 1}'), (2, 'bob', 'two', NULL, 7, NULL);
    INSERT INTO secret VALUES (1, 'top');
  `);
  api = await startGateway(db, {
    tables: {
      item: {
        select: 'SELECT * FROM item WHERE owner = :sender',
        insert: { check: 'public', columns: ['id', 'label', 'ref', 'qty', 'meta'], set: { owner: ':sender' } },
        update: { filter: ['SELECT * FROM item WHERE owner = :sender'], columns: ['label', 'qty', 'meta'] },
        delete: ['SELECT * FROM item WHERE owner = :sender'],
      },
    },
    limits: { maxRows: 3, maxDepth: 5 },
  });
});

const snapshot = async () => ({
  item: (await db.sql`SELECT * FROM item ORDER BY id`).map((r) => ({ ...r })),
  secret: (await db.sql`SELECT * FROM secret ORDER BY id`).map((r) => ({ ...r })),
});

function codeOf(res: { errors?: { extensions?: Record<string, unknown>; message: string }[] }): unknown {
  return res.errors?.[0]?.extensions?.['code'];
}

describe('SQL-looking strings are data in every kind of argument', () => {
  it.each(HOSTILE)('%j', async (value) => {
    const before = await snapshot();
    const reads = await api.gql('alice', `query($v: String!) {
      a: item(where: {label: {_eq: $v}}) { id }
      c: item(where: {_or: [{label: {_in: [$v, "x"]}}, {owner: {_neq: $v}}]}) { id }
    }`, { v: value });
    // Only alice's own row can ever come back, and only where the predicate really holds.
    expect(reads).toEqual({ data: { a: [], c: [{ id: 1 }] } });
    const like = await api.gql('alice', 'query($v: String!) { b: item(where: {label: {_like: $v}}) { id } d: item_aggregate(where: {label: {_ilike: $v}}) { aggregate { count } } }', { v: value });
    if (value.endsWith('\\')) {
      // A LIKE pattern may not end with its escape character: the caller's own mistake.
      const codes = like.errors?.map((e) => e.extensions?.['code']) ?? [];
      expect(codes.length).toBeGreaterThan(0);
      expect(new Set(codes)).toEqual(new Set(['BAD_USER_INPUT']));
    } else {
      expect(like).toEqual({ data: { b: value === '%' ? [{ id: 1 }] : [], d: { aggregate: { count: value === '%' ? 1 : 0 } } } });
    }
    const upd = await api.gql('alice', 'mutation($v: String!) { update_item(where: {label: {_eq: $v}}, _set: {label: $v}) { affected_rows } }', { v: value });
    expect(upd).toEqual({ data: { update_item: { affected_rows: 0 } } });
    const del = await api.gql('alice', 'mutation($v: String!) { delete_item(where: {owner: {_eq: $v}}) { affected_rows } }', { v: value });
    expect(del).toEqual({ data: { delete_item: { affected_rows: 0 } } });
    expect(await snapshot()).toEqual(before);
  });

  it('as an inserted value, stored verbatim', async () => {
    const value = "'); DELETE FROM secret; --";
    const res = await api.gql('alice', 'mutation($v: String!, $m: jsonb) { insert_item_one(object: {id: 50, label: $v, meta: $m}) { label meta } }', { v: value, m: { sql: value } });
    expect(res).toEqual({ data: { insert_item_one: { label: value, meta: { sql: value } } } });
    expect((await snapshot()).secret).toEqual([{ id: 1, value: 'top' }]);
    await db.sql`DELETE FROM item WHERE id = 50`;
  });

  it.each([
    ['uuid', 'query($v: uuid) { item(where: {ref: {_eq: $v}}) { id } }', { v: "' OR 1=1 --" }],
    ['bigint', 'query($v: bigint) { item(where: {qty: {_eq: $v}}) { id } }', { v: '1; DROP TABLE item' }],
    ['bigint out of range', 'query($v: bigint) { item(where: {qty: {_gt: $v}}) { id } }', { v: '99999999999999999999' }],
    ['Int', 'query($v: Int!) { item_by_pk(id: $v) { id } }', { v: '1 OR 1=1' }],
  ])('a malformed %s is refused before any SQL runs', async (_name, query, variables) => {
    const res = await api.gql('alice', query, variables);
    expect(codeOf(res)).toBe('BAD_USER_INPUT');
    expect(res.data ?? null).toBeNull();
  });
});

describe('malformed requests', () => {
  it.each([
    ['malformed GraphQL', '{ item { id ', 'GRAPHQL_PARSE_FAILED'],
    ['unknown field', '{ item { id nope } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['unknown table', '{ secret { id } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['unknown filter column', '{ item(where: {nope: {_eq: 1}}) { id } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['wrong argument type', '{ item(limit: "ten") { id } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['negative limit', '{ item(limit: -5) { id } }', 'BAD_USER_INPUT'],
    ['negative offset', '{ item(offset: -1) { id } }', 'BAD_USER_INPUT'],
    ['_eq null', '{ item(where: {label: {_eq: null}}) { id } }', 'BAD_USER_INPUT'],
    ['update with nothing to set', 'mutation { update_item(where: {}) { affected_rows } }', 'BAD_USER_INPUT'],
    ['too deep', '{ item { id } a: item { id } } fragment F on item { id }', 'GRAPHQL_VALIDATION_FAILED'],
  ])('%s', async (_name, query, code) => {
    const before = await snapshot();
    const res = await api.gql('alice', query);
    expect(codeOf(res)).toBe(code);
    expect(JSON.stringify(res)).not.toMatch(/postgres|relation|syntax error at|pg_/i);
    expect(await snapshot()).toEqual(before);
  });

  it('a huge limit is capped at limits.maxRows', async () => {
    await db.sql`INSERT INTO item (id, owner, label) SELECT g, 'alice', 'bulk' FROM generate_series(100, 110) g`;
    const res = await api.gql('alice', '{ item(limit: 2147483647) { id } item_aggregate(limit: 2147483647) { aggregate { count } } }');
    expect((res.data?.['item'] as unknown[]).length).toBe(3);
    expect(res.data?.['item_aggregate']).toEqual({ aggregate: { count: 3 } });
    await db.sql`DELETE FROM item WHERE id >= 100`;
  });
});
