import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';
import { compile } from './support/rules.ts';

// Root functions (Hasura's tracked functions): a STABLE SQL function returning SETOF a listed table
// is a root field; the caller sees only the returned rows that the table's rules let them see.
const db = useTestDatabase();
let api: TestGateway;

const TABLES = { doc: { select: 'SELECT * FROM doc WHERE owner = :sender' } };

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL, score int NOT NULL);
    INSERT INTO doc VALUES (1, 'ann', 'apple pie', 5), (2, 'ann', 'apple tart', 9), (3, 'bo', 'apple secret', 7), (4, 'ann', 'pear', 1);
    -- Returns every matching row, hidden or not: the rules must be what hides bo's.
    CREATE FUNCTION search_doc(q text, min_score smallint) RETURNS SETOF doc LANGUAGE sql STABLE
      AS $$ SELECT * FROM doc WHERE title LIKE '%' || q || '%' AND score >= coalesce(min_score, 0) $$;
    CREATE FUNCTION all_doc() RETURNS SETOF doc LANGUAGE sql STABLE AS $$ SELECT * FROM doc $$;
    CREATE FUNCTION bump_doc() RETURNS SETOF doc LANGUAGE sql VOLATILE AS $$ UPDATE doc SET score = score + 1 RETURNING * $$;
    CREATE FUNCTION one_doc(q text) RETURNS doc LANGUAGE sql STABLE AS $$ SELECT * FROM doc LIMIT 1 $$;
    CREATE FUNCTION unnamed_doc(text) RETURNS SETOF doc LANGUAGE sql STABLE AS $$ SELECT * FROM doc $$;
  `);
  api = await startGateway(db, { tables: TABLES, functions: ['search_doc', 'all_doc'] });
});

describe('root functions', () => {
  it('return only the rows the caller may see, with where, order_by, limit and aggregates', async () => {
    const r = await api.gql('ann', '{ search_doc(args: {q: "apple"}, order_by: {score: desc}) { id title } }');
    expect(r.errors).toBeUndefined();
    expect(r.data).toEqual({ search_doc: [{ id: 2, title: 'apple tart' }, { id: 1, title: 'apple pie' }] });
    const filtered = await api.gql('ann', '{ search_doc(args: {q: "apple", min_score: 6}, where: {id: {_gt: 0}}, limit: 5) { id } }');
    expect(filtered.data).toEqual({ search_doc: [{ id: 2 }] });
    const agg = await api.gql('ann', '{ all_doc_aggregate { aggregate { count sum { score } } } }');
    expect(agg.data).toEqual({ all_doc_aggregate: { aggregate: { count: 3, sum: { score: '15' } } } });
    expect((await api.gql('bo', '{ all_doc { id } }')).data).toEqual({ all_doc: [{ id: 3 }] });
  });

  it('never tell a hidden row from no row, through args, where or aggregates', async () => {
    // bo's "apple secret" (score 7) is returned by the function for ann's arguments.
    const probes: [string, string][] = [
      ['{ search_doc(args: {q: "secret"}) { id } }', '{ search_doc(args: {q: "nothing-like-it"}) { id } }'],
      ['{ all_doc(where: {title: {_like: "apple s%"}}) { id } }', '{ all_doc(where: {title: {_like: "zzz%"}}) { id } }'],
      ['{ all_doc_aggregate(where: {score: {_eq: 7}}) { aggregate { count } } }', '{ all_doc_aggregate(where: {score: {_eq: 70}}) { aggregate { count } } }'],
    ];
    for (const [hidden, none] of probes) {
      const a = await api.gql('ann', hidden);
      const b = await api.gql('ann', none);
      expect(a.errors, hidden).toBeUndefined();
      expect(JSON.stringify(a.data).replace(/search_doc|all_doc/g, ''), hidden).toBe(JSON.stringify(b.data).replace(/search_doc|all_doc/g, ''));
    }
  });

  it('bind arguments as values of their types: bad ones are BAD_USER_INPUT, SQL text is data', async () => {
    const bad = await api.gql('ann', '{ search_doc(args: {q: "a", min_score: 40000}) { id } }');
    expect(bad.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
    const injected = await api.gql('ann', `{ search_doc(args: {q: "' OR true --"}) { id } }`);
    expect(injected.errors).toBeUndefined();
    expect(injected.data).toEqual({ search_doc: [] });
    expect((await db.sql`SELECT count(*)::int AS n FROM doc`)[0]!['n']).toBe(4);
  });

  it('are described in the schema with an args input type', async () => {
    const r = await api.gql('ann', '{ __type(name: "search_doc_args") { inputFields { name type { name } } } }');
    expect(r.data).toEqual({ __type: { inputFields: [{ name: 'q', type: { name: 'String' } }, { name: 'min_score', type: { name: 'Int' } }] } });
  });

  it('a volatile, single-row, unnamed, missing or clashing function stops startup', async () => {
    for (const [fn, message] of [
      ['bump_doc', /VOLATILE/],
      ['one_doc', /must return SETOF a listed table/],
      ['unnamed_doc', /argument 1 of "unnamed_doc" needs a name/],
      ['nope', /no function "nope"/],
    ] as const) {
      await expect(compile(db, TABLES, { functions: [fn] }), fn).rejects.toThrow(message);
    }
    await db.sql.unsafe(`CREATE FUNCTION doc_aggregate() RETURNS SETOF doc LANGUAGE sql STABLE AS $$ SELECT * FROM doc $$`);
    await expect(compile(db, TABLES, { functions: ['doc_aggregate'] })).rejects.toThrow(/clashes with the root fields of table "doc"/);
  });
});
