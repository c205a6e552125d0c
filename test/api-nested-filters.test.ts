import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// A nested list's (and aggregate's) `where` and `limit` apply whoever asks: the admin and callers of
// a public table, whom no rule fences, as well as restricted callers. (They were dropped for the
// first two: the admin got every child row.)
const db = useTestDatabase();
let gw: TestGateway;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE parent (id int PRIMARY KEY);
    CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent, n int NOT NULL);
    CREATE TABLE open_child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent, n int NOT NULL);
    INSERT INTO parent VALUES (1);
    INSERT INTO child VALUES (1, 1, 1), (2, 1, 5), (3, 1, 9);
    INSERT INTO open_child VALUES (1, 1, 1), (2, 1, 5), (3, 1, 9);
  `);
  gw = await startGateway(db, {
    tables: { parent: { select: 'SELECT * FROM parent' }, child: { select: 'SELECT * FROM child' }, open_child: { select: 'public' } },
  });
});

const QUERY = `{ parent { id
  children(where: {n: {_gt: 2}}, order_by: {id: asc}) { id }
  children_aggregate(where: {n: {_gt: 2}}) { aggregate { count } }
  open_children(where: {n: {_lt: 6}}, order_by: {id: desc}, limit: 1) { id } } }`;

describe('filters on nested lists', () => {
  it('apply for the admin, for a public table and for a restricted caller alike', async () => {
    const schema = await gw.gql('admin', '{ __type(name: "parent") { fields { name } } }');
    const names = (schema.data!['__type'] as { fields: { name: string }[] }).fields.map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining(['children', 'children_aggregate', 'open_children']));
    const expected = { parent: [{ id: 1, children: [{ id: 2 }, { id: 3 }], children_aggregate: { aggregate: { count: 2 } }, open_children: [{ id: 2 }] }] };
    for (const who of ['admin', 'alice']) {
      const r = await gw.gql(who, QUERY);
      expect(r.errors).toBeUndefined();
      expect(r.data).toEqual(expected);
    }
  });
});
