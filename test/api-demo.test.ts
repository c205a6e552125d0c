import { readFileSync } from 'node:fs';
import { buildClientSchema, getIntrospectionQuery, parse, validate, type IntrospectionQuery } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_QUERY } from '../src/cli/demo.ts';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// The demo (demo/schema.sql + demo/rowgate.config.json) through the real server, used the way a
// Hasura frontend uses it: codegen introspection first, then operations written as for Hasura.
const db = useTestDatabase();
let api: TestGateway;
const demoConfig = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as { tables: Record<string, unknown> };

beforeAll(async () => {
  await db.sql.unsafe(readFileSync(new URL('../demo/schema.sql', import.meta.url), 'utf8'));
  api = await startGateway(db, { tables: demoConfig.tables });
});

async function data(who: string, query: string, variables?: Record<string, unknown>) {
  const res = await api.gql(who, query, variables);
  expect(res.errors).toBeUndefined();
  return res.data!;
}

describe('the demo', () => {
  it("GraphiQL's opening query answers for alice, whose token it opens with", async () => {
    const d = await data('alice', DEFAULT_QUERY);
    expect(d['account']).toEqual([{ name: expect.any(String), players: [{ level: expect.any(Number) }] }]);
    expect((d['document'] as unknown[]).length).toBeGreaterThan(0);
  });
});

describe('the demo, for three identities', () => {
  it.each([
    ['alice', ['alice'], [1], ['design'], [1, 2]],
    ['bob', ['bob'], [2], ['design', 'ops'], [1, 2, 3]],
    ['carol', ['alice', 'bob', 'carol'], [1, 2, 3], [], []],
  ])('%s', async (who, accounts, players, groups, documents) => {
    const d = await data(who, `{
      account(order_by: {id: asc}) { identity }
      player(order_by: {id: asc}) { id }
      grp(order_by: {id: asc}) { name }
      document(order_by: {id: asc}) { id }
      document_aggregate { aggregate { count } }
    }`);
    expect((d['account'] as { identity: string }[]).map((a) => a.identity)).toEqual(accounts);
    expect((d['player'] as { id: number }[]).map((p) => p.id)).toEqual(players);
    expect((d['grp'] as { name: string }[]).map((g) => g.name)).toEqual(groups);
    expect((d['document'] as { id: number }[]).map((x) => x.id)).toEqual(documents);
    expect(d['document_aggregate']).toEqual({ aggregate: { count: documents.length } });
  });

  it('memberships: own rows, and a writer sees the whole group (self-join)', async () => {
    const alice = await data('alice', '{ membership(order_by: {member: asc}) { grp_id member } }');
    expect(alice['membership']).toEqual([{ grp_id: 1, member: 'alice' }, { grp_id: 1, member: 'bob' }]);
    const bob = await data('bob', '{ membership(order_by: [{grp_id: asc}, {member: asc}]) { grp_id member } }');
    expect(bob['membership']).toEqual([{ grp_id: 1, member: 'bob' }, { grp_id: 2, member: 'bob' }]);
  });

  it('bigint round-trips without losing digits', async () => {
    const d = await data('carol', '{ player_by_pk(id: 3) { score } }');
    expect(d['player_by_pk']).toEqual({ score: '9007199254740993' });
    const f = await data('carol', 'query($s: bigint) { player(where: {score: {_eq: $s}}) { id } }', { s: '9007199254740993' });
    expect(f['player']).toEqual([{ id: 3 }]);
  });

  it('a reader cannot write a document into a group, a writer can; the author is preset', async () => {
    const denied = await api.gql('bob', 'mutation { insert_document_one(object: {grp_id: 1, title: "sneaky"}) { id } }');
    expect(denied.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    const ok = await data('alice', 'mutation { insert_document_one(object: {grp_id: 1, title: "Plan"}) { title author grp { name } } }');
    expect(ok['insert_document_one']).toEqual({ title: 'Plan', author: 'alice', grp: { name: 'design' } });
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM document WHERE title = 'sneaky'`;
    expect(row?.n).toBe(0);
  });
});

describe('a Hasura-style client session', () => {
  it('codegen introspection, then typical operations written as for Hasura', async () => {
    const intro = await data('alice', getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }));
    const schema = buildClientSchema(intro as unknown as IntrospectionQuery);
    for (const name of ['document_bool_exp', 'document_order_by', 'document_insert_input', 'document_set_input', 'document_pk_columns_input', 'document_on_conflict', 'document_constraint', 'document_update_column', 'document_select_column', 'document_mutation_response', 'document_aggregate', 'order_by', 'String_comparison_exp', 'Int_comparison_exp', 'timestamptz']) {
      expect(schema.getType(name), name).toBeDefined();
    }
    expect(schema.getType('admin'), 'unlisted tables are not exposed').toBeUndefined();
    expect(schema.getMutationType()?.getFields()['insert_account'], 'undeclared operations do not exist').toBeUndefined();

    const operations = `
      query Docs($where: document_bool_exp, $limit: Int, $order_by: [document_order_by!]) {
        document(where: $where, limit: $limit, order_by: $order_by) { id title created_at grp { name } }
      }
      query DocById($id: Int!) { document_by_pk(id: $id) { id title } }
      query DocCount($where: document_bool_exp) { document_aggregate(where: $where) { aggregate { count max { id } } } }
      mutation AddDocs($objects: [document_insert_input!]!) { insert_document(objects: $objects) { affected_rows returning { id title } } }
      mutation AddDoc($object: document_insert_input!, $on_conflict: document_on_conflict) { insert_document_one(object: $object, on_conflict: $on_conflict) { id } }
      mutation EditDocs($where: document_bool_exp!, $_set: document_set_input) { update_document(where: $where, _set: $_set) { affected_rows returning { id title } } }
      mutation EditDoc($pk_columns: document_pk_columns_input!, $_set: document_set_input) { update_document_by_pk(pk_columns: $pk_columns, _set: $_set) { id title } }
      mutation DropDocs($where: document_bool_exp!) { delete_document(where: $where) { affected_rows } }
      mutation DropDoc($id: Int!) { delete_document_by_pk(id: $id) { id } }
    `;
    expect(validate(schema, parse(operations))).toEqual([]);
    // Issue 14: the README writes the change event as a selection a reader can paste.
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const selection = /`t_changes\(where, after\)`: one event per visible change, selected as `(\{[^`]+\})`/.exec(readme)?.[1];
    expect(selection).toBeDefined();
    expect(validate(schema, parse(`subscription { document_changes ${selection!} }`))).toEqual([]);

    const run = async (operationName: string, variables: Record<string, unknown>) => {
      const res = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await api.token('alice')}` },
        body: JSON.stringify({ query: operations, operationName, variables }),
      });
      const body = (await res.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
      expect(body.errors, operationName).toBeUndefined();
      return body.data!;
    };
    const docs = await run('Docs', { where: { title: { _ilike: 'road%' } }, limit: 10, order_by: [{ id: 'desc' }] });
    expect(docs['document']).toMatchObject([{ id: 1, title: 'Roadmap', grp: { name: 'design' } }]);
    expect(typeof (docs['document'] as { created_at: unknown }[])[0]?.created_at).toBe('string');
    expect(await run('DocById', { id: 3 })).toEqual({ document_by_pk: null });
    const added = await run('AddDocs', { objects: [{ grp_id: 1, title: 'A' }, { grp_id: 1, title: 'B' }] });
    const ids = ((added['insert_document'] as { returning: { id: number }[] }).returning).map((r) => r.id);
    expect(added['insert_document']).toMatchObject({ affected_rows: 2 });
    const one = await run('AddDoc', { object: { grp_id: 1, title: 'C' }, on_conflict: { constraint: 'document_pkey', update_columns: ['title'] } });
    const third = (one['insert_document_one'] as { id: number }).id;
    // Roadmap, Plan (written above), A, B and C.
    expect(await run('DocCount', { where: { author: { _eq: 'alice' } } })).toEqual({ document_aggregate: { aggregate: { count: 5, max: { id: third } } } });
    expect(await run('EditDocs', { where: { id: { _in: ids } }, _set: { body: 'edited' } })).toMatchObject({ update_document: { affected_rows: 2 } });
    expect(await run('EditDoc', { pk_columns: { id: ids[0] }, _set: { title: 'A!' } })).toEqual({ update_document_by_pk: { id: ids[0], title: 'A!' } });
    expect(await run('DropDoc', { id: ids[0] })).toEqual({ delete_document_by_pk: { id: ids[0] } });
    expect(await run('DropDocs', { where: { id: { _eq: ids[1] } } })).toEqual({ delete_document: { affected_rows: 1 } });
  });
});
