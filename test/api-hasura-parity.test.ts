import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';
import { GROUP_TABLES } from './support/groups.ts';

// Hasura's operators, aggregates, aggregate ordering and distinct_on, each answered over the rows
// the caller may see. As bob (member of groups 1 and 3) docs 101 (group 2) and 102, 103 (private,
// by carol) are hidden; each of them is built to match the operator or to win the aggregate or the
// ordering under test, so an answer that took a hidden row into account differs from the expected one.
const db = useTestDatabase();
let api: TestGateway;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE membership (grp_id int NOT NULL REFERENCES grp(id), identity text NOT NULL, PRIMARY KEY (grp_id, identity));
    CREATE TABLE doc (id int PRIMARY KEY, grp_id int NOT NULL REFERENCES grp(id), owner text NOT NULL, title text NOT NULL,
                      score int NOT NULL, meta jsonb NOT NULL, private boolean NOT NULL DEFAULT false);
    INSERT INTO grp VALUES (1, 'one'), (2, 'two'), (3, 'three');
    INSERT INTO membership VALUES (1, 'bob'), (3, 'bob'), (2, 'carol');
    INSERT INTO doc (id, grp_id, owner, title, score, meta, private) VALUES
      (1, 1, 'bob', 'hello world', 5, '{"k": 1, "tags": ["a"]}', false),
      (2, 1, 'carol', 'Hello there', 7, '{"k": 2}', false),
      (3, 3, 'dave', 'goodbye', 1, '{"x": null}', false),
      (4, 3, 'dave', 'good day', 9, '{"k": 3}', false),
      (101, 2, 'carol', 'hello secret', 50, '{"k": 1, "tags": ["a"], "x": 0}', false),
      (102, 1, 'carol', 'hello private', 100, '{"k": 2, "tags": []}', true),
      (103, 1, 'carol', 'good private', 0, '{"k": 3, "x": 1}', true);
  `);
  api = await startGateway(db, { tables: GROUP_TABLES });
});

const ids = async (where: Record<string, unknown>) => {
  const res = await api.gql('bob', 'query($w: doc_bool_exp) { doc(where: $w, order_by: {id: asc}) { id } }', { w: where });
  expect(res.errors).toBeUndefined();
  return (res.data?.['doc'] as { id: number }[]).map((d) => d.id);
};

describe('operators answer over the visible rows', () => {
  const CASES: [string, Record<string, unknown>, number[]][] = [
    ['_regex', { title: { _regex: '^[Hh]ello' } }, [1, 2]],
    ['_iregex', { title: { _iregex: '^hello' } }, [1, 2]],
    ['_nregex', { title: { _nregex: '^h' } }, [2, 3, 4]],
    ['_niregex', { title: { _niregex: '^h' } }, [3, 4]],
    ['_similar', { title: { _similar: 'good%' } }, [3, 4]],
    ['_nsimilar', { title: { _nsimilar: '(good|hello)%' } }, [2]],
    ['_like', { title: { _like: '%o%' } }, [1, 2, 3, 4]],
    ['_ilike', { title: { _ilike: 'HELLO%' } }, [1, 2]],
    ['_contains', { meta: { _contains: { tags: ['a'] } } }, [1]],
    ['_contained_in', { meta: { _contained_in: { k: 2, z: 1 } } }, [2]],
    ['_has_key', { meta: { _has_key: 'x' } }, [3]],
    ['_has_keys_any', { meta: { _has_keys_any: ['x', 'tags'] } }, [1, 3]],
    ['_has_keys_all', { meta: { _has_keys_all: ['k', 'tags'] } }, [1]],
    ['_cast to String', { meta: { _cast: { String: { _like: '%tags%' } } } }, [1]],
    ['_in', { score: { _in: [1, 50, 100, 9] } }, [3, 4]],
    ['_nin', { score: { _nin: [1, 5] } }, [2, 4]],
  ];
  it.each(CASES)('%s', async (_name, where, expected) => {
    expect(await ids(where)).toEqual(expected);
  });

  it('an invalid regular expression is BAD_USER_INPUT, not a database error', async () => {
    const res = await api.gql('bob', '{ doc(where: {title: {_regex: "("}}) { id } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
  });
});

describe('aggregate functions over the visible rows', () => {
  it('stddev, variance and the others agree with PostgreSQL over the same rows', async () => {
    const fns = ['sum', 'avg', 'max', 'min', 'stddev', 'stddev_pop', 'stddev_samp', 'var_pop', 'var_samp', 'variance'];
    const res = await api.gql('bob', `{ doc_aggregate { aggregate { ${fns.map((f) => `${f} { score }`).join(' ')} } } }`);
    expect(res.errors).toBeUndefined();
    const [expected] = await db.sql.unsafe(
      `SELECT ${fns.map((f) => `${f}(score)::float8 AS ${f}`).join(', ')} FROM doc WHERE id IN (1, 2, 3, 4)`,
    );
    const got = (res.data?.['doc_aggregate'] as { aggregate: Record<string, { score: unknown }> }).aggregate;
    for (const f of fns) expect([f, Number(got[f]!.score)]).toEqual([f, expected![f]]);
  });

  it('an aggregate with distinct_on aggregates one row per distinct value', async () => {
    const res = await api.gql('bob', '{ doc_aggregate(distinct_on: [owner]) { aggregate { count } } }');
    expect(res).toEqual({ data: { doc_aggregate: { aggregate: { count: 3 } } } });
  });
});

describe('ordering by an array relationship aggregate', () => {
  const order = async (orderBy: string) => {
    const res = await api.gql('bob', `{ grp(order_by: ${orderBy}) { id } }`);
    expect(res.errors).toBeUndefined();
    return (res.data?.['grp'] as { id: number }[]).map((g) => g.id);
  };
  // Visible maxima: group 1 → 7, group 3 → 9 (group 1's hidden 100 would put it first).
  it('max desc', async () => expect(await order('{docs_aggregate: {max: {score: desc}}}')).toEqual([3, 1]));
  // Visible minima: group 1 → 5, group 3 → 1 (group 1's hidden 0 would put it first).
  it('min asc', async () => expect(await order('{docs_aggregate: {min: {score: asc}}}')).toEqual([3, 1]));
  // Visible averages: group 1 → 6, group 3 → 5 (with the hidden rows group 1's is 28).
  it('avg desc', async () => expect(await order('{docs_aggregate: {avg: {score: desc}}}')).toEqual([1, 3]));
  it('sum sorts as a number, not as text', async () => {
    await db.sql`INSERT INTO grp VALUES (4, 'four'); INSERT INTO membership VALUES (4, 'bob')`.simple();
    await db.sql`INSERT INTO doc VALUES (5, 4, 'bob', 'big', 100, '{}', false)`;
    // Sums: group 1 → 12, group 3 → 10, group 4 → 100; as text "100" < "12".
    expect(await order('{docs_aggregate: {sum: {score: desc}}}')).toEqual([4, 1, 3]);
    await db.sql`DELETE FROM doc WHERE id = 5`;
    await db.sql`DELETE FROM membership WHERE grp_id = 4`;
    await db.sql`DELETE FROM grp WHERE id = 4`;
  });
});

describe('distinct_on', () => {
  it('keeps the first visible row of each group in the order given', async () => {
    const res = await api.gql('bob', '{ doc(distinct_on: [grp_id], order_by: [{grp_id: asc}, {score: desc}]) { id } }');
    // Group 1's highest visible score is doc 2 (7); the hidden 102 (100) must not be the one kept.
    expect(res).toEqual({ data: { doc: [{ id: 2 }, { id: 4 }] } });
  });

  it('with a filter, and in a nested list', async () => {
    const res = await api.gql(
      'bob',
      '{ doc(distinct_on: [grp_id], where: {title: {_ilike: "%o%"}}, order_by: [{grp_id: asc}, {score: asc}]) { id } grp(order_by: {id: asc}) { id docs(distinct_on: [owner], order_by: [{owner: desc}]) { owner } } }',
    );
    expect(res).toEqual({
      data: {
        doc: [{ id: 1 }, { id: 3 }],
        grp: [
          { id: 1, docs: [{ owner: 'carol' }, { owner: 'bob' }] },
          { id: 3, docs: [{ owner: 'dave' }] },
        ],
      },
    });
  });

  it('without order_by orders by the distinct columns', async () => {
    const res = await api.gql('bob', '{ doc(distinct_on: [owner]) { owner } }');
    expect(res).toEqual({ data: { doc: [{ owner: 'bob' }, { owner: 'carol' }, { owner: 'dave' }] } });
  });

  it('an order_by that does not begin with the distinct columns is BAD_USER_INPUT', async () => {
    const res = await api.gql('bob', '{ doc(distinct_on: [grp_id], order_by: {score: asc}) { id } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
    expect(res.errors?.[0]?.message).toMatch(/distinct_on/);
  });
});

describe('json columns take a path', () => {
  it('selects the value at the path, null where a row has none', async () => {
    const res = await api.gql('bob', '{ doc(order_by: {id: asc}, limit: 3) { id k: meta(path: "$.k") tag: meta(path: "tags[0]") q: meta(path: "$[\\"k\\"]") all: meta } }');
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({ doc: [
      { id: 1, k: 1, tag: 'a', q: 1, all: { k: 1, tags: ['a'] } },
      { id: 2, k: 2, tag: null, q: 2, all: { k: 2 } },
      { id: 3, k: null, tag: null, q: null, all: { x: null } },
    ] });
  });
  it('a malformed path is BAD_USER_INPUT whatever the rows hold', async () => {
    for (const path of ['$.', 'a[x]', '$a', '["open']) {
      const res = await api.gql('bob', `{ doc(where: {id: {_eq: 1000}}) { meta(path: ${JSON.stringify(path)}) } }`);
      expect(res.errors?.[0]?.extensions?.['code'], path).toBe('BAD_USER_INPUT');
    }
  });
});

describe('graphql.rootTypeNames: "hasura"', () => {
  let hasura: TestGateway;
  beforeAll(async () => {
    hasura = await startGateway(db, {
      tables: { ...GROUP_TABLES, doc: { ...GROUP_TABLES.doc, delete: 'SELECT * FROM doc WHERE owner = :sender' } },
      graphql: { rootTypeNames: 'hasura' },
    });
  });

  it('names the root types query_root and mutation_root, and they answer', async () => {
    const res = await hasura.gql('bob', '{ __schema { queryType { name } mutationType { name } } __typename doc(where: {id: {_eq: 1}}) { id } }');
    expect(res).toEqual({ data: { __schema: { queryType: { name: 'query_root' }, mutationType: { name: 'mutation_root' } }, __typename: 'query_root', doc: [{ id: 1 }] } });
    const mutation = await hasura.gql('bob', 'mutation { __typename delete_doc(where: {id: {_eq: 0}}) { affected_rows } }');
    expect(mutation).toEqual({ data: { __typename: 'mutation_root', delete_doc: { affected_rows: 0 } } });
  });

  it('the default keeps Query', async () => {
    expect(await api.gql('bob', '{ __typename }')).toEqual({ data: { __typename: 'Query' } });
  });
});
