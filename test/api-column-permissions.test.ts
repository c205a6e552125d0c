import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// `selectColumns` (Hasura's select-permission columns): an unlisted column can be written by the
// rules that list it and read by rules, but no caller can select it, filter or sort on it,
// aggregate it, count rows apart by it, or probe it through a relationship or a `_by_pk` key.
// `selectLimit` caps every list and aggregate of the table for callers.
const db = useTestDatabase();
let api: TestGateway;

const TABLES = {
  account: {
    select: 'SELECT * FROM account WHERE org = :org',
    selectColumns: ['id', 'org', 'name'],
    insert: { check: 'SELECT * FROM account WHERE org = :org', columns: ['id', 'org', 'name', 'password_hash'] },
  },
  note: { select: 'SELECT n.* FROM note n JOIN account a ON a.id = n.account_id WHERE a.org = :org', selectLimit: 2 },
  tag: { select: 'public', selectColumns: ['label'] },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, org text NOT NULL, name text NOT NULL, password_hash text NOT NULL DEFAULT 'x');
    CREATE TABLE note (id int PRIMARY KEY, account_id int NOT NULL REFERENCES account(id), body text NOT NULL);
    CREATE TABLE tag (secret_key int PRIMARY KEY, label text NOT NULL);
    INSERT INTO account VALUES (1, 'acme', 'ann', 'h1'), (2, 'acme', 'bo', 'h2'), (3, 'other', 'cy', 'h3');
    INSERT INTO note SELECT g, 1 + g % 2, 'n' || g FROM generate_series(1, 5) g;
    INSERT INTO tag VALUES (10, 'red'), (20, 'red'), (30, 'blue');
  `);
  api = await startGateway(db, { tables: TABLES });
});

const as = (query: string, variables?: Record<string, unknown>) => api.gql('ann', query, variables);
const annToken = () => api.token('ann', { org: 'acme' });
const gqlAcme = async (query: string, variables?: Record<string, unknown>) => {
  const res = await fetch(api.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await annToken()}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: Record<string, unknown>; errors?: { message: string; extensions?: Record<string, unknown> }[] };
};

describe('an unlisted column is not in the API', () => {
  it('not a field, not a filter, not a sort key, not aggregated, not a distinct_on or count column', async () => {
    const res = await as(`{
      account: __type(name: "account") { fields { name } }
      boolExp: __type(name: "account_bool_exp") { inputFields { name } }
      orderBy: __type(name: "account_order_by") { inputFields { name } }
      selectColumn: __type(name: "account_select_column") { enumValues { name } }
      max: __type(name: "account_max_fields") { fields { name } }
    }`);
    const names = (list: { name: string }[] | undefined) => (list ?? []).map((f) => f.name);
    const data = res.data as Record<string, { fields?: { name: string }[]; inputFields?: { name: string }[]; enumValues?: { name: string }[] }>;
    expect(names(data['account']!.fields)).not.toContain('password_hash');
    expect(names(data['account']!.fields)).toContain('name');
    expect(names(data['boolExp']!.inputFields)).not.toContain('password_hash');
    expect(names(data['orderBy']!.inputFields)).not.toContain('password_hash');
    expect(names(data['selectColumn']!.enumValues)).toEqual(['id', 'org', 'name']);
    expect(names(data['max']!.fields)).not.toContain('password_hash');
  });

  it.each([
    ['selected', '{ account { password_hash } }'],
    ['filtered', '{ account(where: {password_hash: {_eq: "h1"}}) { id } }'],
    ['filtered through a relationship', '{ note(where: {account: {password_hash: {_like: "h%"}}}) { id } }'],
    ['sorted', '{ account(order_by: {password_hash: asc}) { id } }'],
    ['aggregated', '{ account_aggregate { aggregate { max { password_hash } } } }'],
    ['a distinct_on column', '{ account(distinct_on: [password_hash]) { id } }'],
    ['returned by a mutation', 'mutation { insert_account(objects: [{id: 9, org: "acme", name: "x"}]) { returning { password_hash } } }'],
  ])('%s: refused by validation, before any statement', async (_what, query) => {
    const res = await gqlAcme(query);
    expect(res.data ?? null).toBeNull();
    expect(res.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('a write-only column is written by an insert whose rule lists it', async () => {
    const res = await gqlAcme('mutation { insert_account(objects: [{id: 4, org: "acme", name: "dee", password_hash: "h4"}]) { affected_rows returning { id name } } }');
    expect(res).toEqual({ data: { insert_account: { affected_rows: 1, returning: [{ id: 4, name: 'dee' }] } } });
    expect(await db.sql`SELECT password_hash FROM account WHERE id = 4`).toEqual([{ password_hash: 'h4' }]);
  });

  it('a table whose key is unreadable has no _by_pk field, and distinct counts ignore unreadable columns', async () => {
    const res = await gqlAcme('{ __type(name: "Query") { fields { name } } tag_aggregate { aggregate { count(distinct: true) } } }');
    const fields = (res.data?.['__type'] as { fields: { name: string }[] }).fields.map((f) => f.name);
    expect(fields).toContain('tag');
    expect(fields).not.toContain('tag_by_pk');
    // Two rows are "red" and differ only in the unreadable key: they count as one.
    expect(res.data?.['tag_aggregate']).toEqual({ aggregate: { count: 2 } });
  });
});

describe('selectLimit', () => {
  it('caps lists, nested lists and aggregates, whatever limit the caller gives', async () => {
    const res = await gqlAcme('{ a: note(order_by: {id: asc}) { id } b: note(limit: 10) { id } c: note_aggregate { aggregate { count } } d: account(where: {id: {_eq: 1}}) { notes { id } } }');
    expect(res.errors).toBeUndefined();
    expect(res.data?.['a']).toEqual([{ id: 1 }, { id: 2 }]);
    expect(res.data?.['b']).toHaveLength(2);
    expect(res.data?.['c']).toEqual({ aggregate: { count: 2 } });
    expect((res.data?.['d'] as { notes: unknown[] }[])[0]!.notes).toHaveLength(2);
    // A smaller limit of the caller's still applies.
    expect((await gqlAcme('{ note(limit: 1) { id } }')).data?.['note']).toHaveLength(1);
  });

  it('does not cap the admin', async () => {
    const res = await api.gql('admin', '{ note_aggregate { aggregate { count } } }');
    expect(res).toEqual({ data: { note_aggregate: { aggregate: { count: 5 } } } });
  });
});

describe('relationships over unreadable columns', () => {
  let hidden: TestGateway;
  beforeAll(async () => {
    hidden = await startGateway(db, { tables: { ...TABLES, note: { ...TABLES.note, selectColumns: ['id', 'body'] } } });
  });
  it('a foreign key whose column is unreadable gives no relationship in either direction', async () => {
    const res = await hidden.gql('admin', '{ note: __type(name: "note") { fields { name } } account: __type(name: "account") { fields { name } } }');
    const names = (t: string) => (res.data?.[t] as { fields: { name: string }[] }).fields.map((f) => f.name);
    expect(names('note')).toEqual(['id', 'body']);
    expect(names('account')).not.toContain('notes');
    // With the column readable both exist.
    const open = await api.gql('admin', '{ note: __type(name: "note") { fields { name } } account: __type(name: "account") { fields { name } } }');
    expect((open.data?.['note'] as { fields: { name: string }[] }).fields.map((f) => f.name)).toContain('account');
    expect((open.data?.['account'] as { fields: { name: string }[] }).fields.map((f) => f.name)).toContain('notes');
  });
});
