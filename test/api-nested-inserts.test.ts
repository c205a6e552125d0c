import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { compileSql } from '../src/db/index.ts';
import { insertSql, scopeFor } from '../src/resolvers/index.ts';
import { buildModel } from '../src/schema/index.ts';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';
import { as, compile } from './support/rules.ts';

// Hasura's nested inserts (docs/hasura.md, "Nested inserts"): object and array relationships in
// insert objects, each row written by its own table's rules, every check enforced, one rollback.
const db = useTestDatabase();
let api: TestGateway;

const TABLES = {
  // No insert rule: nothing can be inserted into a team, nested or not.
  team: { select: 'public' },
  author: {
    select: 'public',
    insert: { set: { owner: ':sender' }, columns: ['name', 'team_id'], check: ["SELECT * FROM author WHERE name <> 'banned'"] },
    update: { filter: ['SELECT * FROM author WHERE owner = :sender'], columns: ['name'] },
  },
  // Secret articles are hidden from everyone; an article must belong to an author of the caller's.
  // author_id is not in the allowlist: only nesting sets it (as in Hasura).
  article: {
    select: 'SELECT * FROM article WHERE NOT secret',
    insert: {
      set: { owner: ':sender' },
      columns: ['title', 'secret'],
      check: ['SELECT a.* FROM article a JOIN author au ON au.id = a.author_id WHERE au.owner = :sender'],
    },
  },
  tag: { select: 'public', insert: { columns: ['article_id', 'label'], check: ["SELECT * FROM tag WHERE label <> 'bad'"] } },
  // The foreign key is a preset: no nesting may set it, so no relationship field offers it.
  review: { select: 'public', insert: { set: { author_id: '1' }, columns: ['body'], check: 'public' } },
  node: { select: 'public', insert: { check: 'public', columns: ['label'] } },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE team (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE author (id serial PRIMARY KEY, name text NOT NULL UNIQUE, owner text NOT NULL, team_id int REFERENCES team(id));
    CREATE TABLE article (id serial PRIMARY KEY, title text NOT NULL, author_id int REFERENCES author(id), owner text NOT NULL,
                          secret boolean NOT NULL DEFAULT false);
    CREATE TABLE tag (id serial PRIMARY KEY, article_id int NOT NULL REFERENCES article(id), label text NOT NULL);
    CREATE TABLE review (id serial PRIMARY KEY, author_id int NOT NULL REFERENCES author(id), body text NOT NULL);
    CREATE TABLE node (id serial PRIMARY KEY, parent_id int REFERENCES node(id), label text NOT NULL);
    INSERT INTO team VALUES (1, 'red');
    INSERT INTO author (name, owner) VALUES ('bob-author', 'bob');
  `);
  api = await startGateway(db, { tables: TABLES });
});

const counts = async () => (await db.sql`SELECT (SELECT count(*) FROM author)::int AS author, (SELECT count(*) FROM article)::int AS article, (SELECT count(*) FROM tag)::int AS tag, (SELECT count(*) FROM node)::int AS node`)[0];
const code = (res: { errors?: { extensions?: Record<string, unknown> }[] }) => res.errors?.[0]?.extensions?.['code'];

describe('nesting links rows', () => {
  it('an object relationship inserts the target first, with its presets, and points the foreign key at it', async () => {
    const res = await api.gql('alice', 'mutation { insert_article_one(object: {title: "a1", author: {data: {name: "alice-a"}}}) { title owner author { name owner } } }');
    expect(res).toEqual({ data: { insert_article_one: { title: 'a1', owner: 'alice', author: { name: 'alice-a', owner: 'alice' } } } });
    const [row] = await db.sql`SELECT au.name FROM article a JOIN author au ON au.id = a.author_id WHERE a.title = 'a1'`;
    expect(row?.['name']).toBe('alice-a');
  });

  it('array relationships insert the parent first, then each child linked to it, at any depth; affected_rows counts every level', async () => {
    const res = await api.gql('alice', `mutation { insert_author(objects: [{name: "alice-b", articles: {data: [{title: "b1", tags: {data: [{label: "x"}, {label: "y"}]}}, {title: "b2"}]}}]) {
      affected_rows returning { name articles(order_by: {title: asc}) { title owner tags(order_by: {label: asc}) { label } } } } }`);
    expect(res).toEqual({
      data: {
        insert_author: {
          affected_rows: 5,
          returning: [{ name: 'alice-b', articles: [{ title: 'b1', owner: 'alice', tags: [{ label: 'x' }, { label: 'y' }] }, { title: 'b2', owner: 'alice', tags: [] }] }],
        },
      },
    });
    const linked = await db.sql`SELECT a.title, count(t.id)::int AS tags FROM author au JOIN article a ON a.author_id = au.id LEFT JOIN tag t ON t.article_id = a.id WHERE au.name = 'alice-b' GROUP BY a.title ORDER BY a.title`;
    expect(linked.map((r) => ({ ...r }))).toEqual([{ title: 'b1', tags: 2 }, { title: 'b2', tags: 0 }]);
  });

  it('a relationship given as null nests nothing', async () => {
    const res = await api.gql('alice', 'mutation { insert_author(objects: [{name: "alice-n", articles: null}, {name: "alice-m"}]) { affected_rows returning { name } } }');
    expect(res).toEqual({ data: { insert_author: { affected_rows: 2, returning: [{ name: 'alice-n' }, { name: 'alice-m' }] } } });
  });

  it('an upsert of a row the caller may update links to it', async () => {
    const res = await api.gql('alice', 'mutation { insert_article_one(object: {title: "a2", author: {data: {name: "alice-a"}, on_conflict: {constraint: author_name_key, update_columns: [name]}}}) { author { name } } }');
    expect(res).toEqual({ data: { insert_article_one: { author: { name: 'alice-a' } } } });
    const [row] = await db.sql`SELECT count(*)::int AS n FROM author WHERE name = 'alice-a'`;
    expect(row?.['n']).toBe(1);
  });
});

describe('every rule of every table holds', () => {
  it('a nested row failing its table check rolls back every row of the mutation', async () => {
    const before = await counts();
    const tag = await api.gql('alice', 'mutation { insert_author_one(object: {name: "alice-c", articles: {data: [{title: "c1", tags: {data: [{label: "ok"}, {label: "bad"}]}}]}}) { name } }');
    expect(code(tag)).toBe('FORBIDDEN');
    const author = await api.gql('alice', 'mutation { insert_article_one(object: {title: "c2", author: {data: {name: "banned"}}}) { title } }');
    expect(code(author)).toBe('FORBIDDEN');
    expect(await counts()).toEqual(before);
  });

  it('a table without an insert rule cannot be nested into: the field does not exist', async () => {
    const res = await api.gql('alice', 'mutation { insert_author_one(object: {name: "alice-d", team: {data: {id: 2, name: "blue"}}}) { name } }');
    expect(code(res)).toBe('GRAPHQL_VALIDATION_FAILED');
    const type = await api.gql('alice', '{ author: __type(name: "author_insert_input") { inputFields { name } } team: __type(name: "team_obj_rel_insert_input") { name } }');
    expect((type.data?.['author'] as { inputFields: { name: string }[] }).inputFields.map((f) => f.name)).toEqual(['name', 'team_id', 'articles']);
    expect(type.data?.['team']).toBeNull();
    expect((await db.sql`SELECT count(*)::int AS n FROM team`)[0]?.['n']).toBe(1);
  });

  it('a foreign key preset by its table cannot be set by nesting: the field does not exist', async () => {
    const res = await api.gql('alice', 'mutation { insert_author_one(object: {name: "alice-e", reviews: {data: [{body: "r"}]}}) { name } }');
    expect(code(res)).toBe('GRAPHQL_VALIDATION_FAILED');
    const type = await api.gql('alice', '{ __type(name: "review_insert_input") { inputFields { name } } }');
    expect((type.data?.['__type'] as { inputFields: { name: string }[] }).inputFields.map((f) => f.name)).toEqual(['body']);
  });

  it('returning leaves out nested rows the caller cannot see; affected_rows counts them', async () => {
    const res = await api.gql('alice', 'mutation { insert_author(objects: [{name: "alice-s", articles: {data: [{title: "shown"}, {title: "hidden", secret: true}]}}]) { affected_rows returning { articles { title } articles_aggregate { aggregate { count } } } } }');
    expect(res).toEqual({ data: { insert_author: { affected_rows: 3, returning: [{ articles: [{ title: 'shown' }], articles_aggregate: { aggregate: { count: 1 } } }] } } });
    expect((await db.sql`SELECT count(*)::int AS n FROM article WHERE title = 'hidden'`)[0]?.['n']).toBe(1);
  });
});

describe('nesting cannot point a row at one the caller did not write', () => {
  it("an object relationship's upsert of someone else's row writes nothing, so nothing is linked", async () => {
    const before = await counts();
    for (const columns of ['[name]', '[]']) {
      const res = await api.gql('alice', `mutation { insert_article_one(object: {title: "hijack", author: {data: {name: "bob-author"}, on_conflict: {constraint: author_name_key, update_columns: ${columns}}}}) { title } }`);
      expect(code(res)).toBe('BAD_USER_INPUT');
      expect(res.errors?.[0]?.message).toContain('wrote no row');
    }
    expect(await counts()).toEqual(before);
  });

  it("an array relationship under an upsert of someone else's row writes nothing", async () => {
    const before = await counts();
    const res = await api.gql('alice', 'mutation { insert_author(objects: [{name: "bob-author", articles: {data: [{title: "planted"}]}}], on_conflict: {constraint: author_name_key, update_columns: [name]}) { affected_rows } }');
    expect(code(res)).toBe('BAD_USER_INPUT');
    expect(await counts()).toEqual(before);
  });

  it('a foreign key the nesting sets cannot also be given, nor set twice', async () => {
    const before = await counts();
    const [bobs] = await db.sql`SELECT id FROM article WHERE title = 'a1'`;
    const given = await api.gql('alice', `mutation { insert_article_one(object: {title: "t", tags: {data: [{label: "z", article_id: ${bobs?.['id']}}]}, author: {data: {name: "alice-f"}}}) { title } }`);
    expect(code(given)).toBe('BAD_USER_INPUT');
    expect(given.errors?.[0]?.message).toContain('article_id');
    const twice = await api.gql('alice', 'mutation { insert_author_one(object: {name: "alice-g", articles: {data: [{title: "t", author: {data: {name: "alice-h"}}}]}}) { name } }');
    expect(code(twice)).toBe('BAD_USER_INPUT');
    expect(twice.errors?.[0]?.message).toContain('author_id');
    expect(await counts()).toEqual(before);
  });

  it("a nested on_conflict's where is checked before any row is read: the same answer whether a row conflicts or not", async () => {
    const ask = (name: string) =>
      api.gql('alice', `mutation { insert_article_one(object: {title: "r", author: {data: {name: "${name}"}, on_conflict: {constraint: author_name_key, update_columns: [name], where: {name: {_regex: "("}}}}}) { title } }`);
    const [conflicting, fresh] = await Promise.all([ask('alice-a'), ask('nobody-yet')]);
    expect(code(conflicting)).toBe('BAD_USER_INPUT');
    expect(conflicting).toEqual(fresh);
  });
});

describe('depth', () => {
  const chain = (levels: number): string => (levels === 1 ? '{label: "leaf"}' : `{label: "n${levels}", parent: {data: ${chain(levels - 1)}}}`);
  it('nesting is bounded by limits.maxDepth, and a refused one writes nothing', async () => {
    const ok = await api.gql('alice', `mutation { insert_node_one(object: ${chain(10)}) { label parent { label } } }`);
    expect(ok).toEqual({ data: { insert_node_one: { label: 'n10', parent: { label: 'n9' } } } });
    const before = await counts();
    const deep = await api.gql('alice', `mutation { insert_node_one(object: ${chain(11)}) { label } }`);
    expect(code(deep)).toBe('LIMIT_EXCEEDED');
    expect(await counts()).toEqual(before);
  });
});

describe('SQL', () => {
  it('a linked column is a bound parameter cast to its type, outside the allowlist, never over a preset', async () => {
    const config = parseConfig({ auth: { jwt: { secret: 'x'.repeat(32) } }, tables: TABLES }, {});
    const model = buildModel(config, await db.catalog(), await compile(db, TABLES));
    const caller = { admin: false, identity: as('alice') };
    const { text, values } = compileSql(insertSql(scopeFor(model, caller), caller, model.tables.get('article')!, [{ title: 'x' }], null, [{ author_id: '42' }], ['id']));
    expect(text).toMatchSnapshot();
    expect(values).toContain('42');
    expect(text).not.toContain('42');
    // The schema never offers such a link (review's foreign key is preset); the statement refuses it too.
    expect(() => insertSql(scopeFor(model, caller), caller, model.tables.get('review')!, [{ body: 'x' }], null, [{ author_id: '42' }])).toThrow(/set by the insert rules/);
  });
});
