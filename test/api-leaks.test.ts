import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Every read path of the GraphQL API, for several identities, against a schema written to make
// leaks observable: alice is assigned a task (200) in a project (20) she cannot see, and a private
// task (103) sits in a project (10) she can see.
const db = useTestDatabase();
let api: TestGateway;

const TABLES = {
  team: { select: 'SELECT t.* FROM team t JOIN member m ON m.team_id = t.id WHERE m.identity = :sender' },
  member: { select: 'SELECT * FROM member WHERE identity = :sender' },
  project: { select: 'SELECT p.* FROM project p JOIN team t ON t.id = p.team_id' },
  task: {
    select: [
      'SELECT t.* FROM task t JOIN project p ON p.id = t.project_id WHERE NOT t.private',
      'SELECT * FROM task WHERE assignee = :sender',
    ],
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE team (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE member (team_id int NOT NULL REFERENCES team(id), identity text NOT NULL, PRIMARY KEY (team_id, identity));
    CREATE TABLE project (id int PRIMARY KEY, team_id int NOT NULL REFERENCES team(id), name text NOT NULL, secret text NOT NULL);
    CREATE TABLE task (id int PRIMARY KEY, project_id int NOT NULL REFERENCES project(id), title text NOT NULL,
                       assignee text, points int NOT NULL, private boolean NOT NULL DEFAULT false);
    INSERT INTO team VALUES (1, 'Earth'), (2, 'Mars');
    INSERT INTO member VALUES (1, 'alice'), (1, 'bob'), (2, 'carol');
    INSERT INTO project VALUES (10, 1, 'Apollo', 'b-secret'), (20, 2, 'Mars', 'a-secret');
    INSERT INTO task VALUES (100, 10, 'build', 'alice', 1, false), (101, 10, 'test', 'bob', 2, false),
                            (103, 10, 'hidden', 'carol', 40, true),
                            (200, 20, 'land', 'alice', 8, false), (201, 20, 'dig', 'carol', 16, false);
  `);
  api = await startGateway(db, { tables: TABLES, limits: { maxRows: 50 } });
});

const ids = (rows: unknown) => (rows as { id: number }[]).map((r) => r.id);

async function data(who: string | null, query: string, variables?: Record<string, unknown>) {
  const res = await api.gql(who, query, variables);
  expect(res.errors).toBeUndefined();
  return res.data!;
}

describe('root lists', () => {
  it.each([
    ['alice', [1], [10], [100, 101, 200]],
    ['bob', [1], [10], [100, 101]],
    ['carol', [2], [20], [103, 200, 201]],
    ['dave', [], [], []],
    ['admin', [1, 2], [10, 20], [100, 101, 103, 200, 201]],
  ])('%s sees exactly its teams, projects and tasks', async (who, teams, projects, tasks) => {
    const d = await data(who, '{ team(order_by: {id: asc}) { id } project(order_by: {id: asc}) { id } task(order_by: {id: asc}) { id } }');
    expect(ids(d['team'])).toEqual(teams);
    expect(ids(d['project'])).toEqual(projects);
    expect(ids(d['task'])).toEqual(tasks);
  });

  it('refuses a request without a token', async () => {
    const res = await api.gql(null, '{ task { id } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('UNAUTHENTICATED');
    expect(res.data ?? null).toBeNull();
  });
});

describe('_by_pk', () => {
  it('returns null for a hidden row, the row for a visible one', async () => {
    const d = await data('alice', '{ hidden: project_by_pk(id: 20) { id } mine: project_by_pk(id: 10) { id name } t: task_by_pk(id: 103) { id } }');
    expect(d).toEqual({ hidden: null, mine: { id: 10, name: 'Apollo' }, t: null });
  });
  it('composite keys work and hide other members', async () => {
    const d = await data('alice', '{ a: member_by_pk(team_id: 1, identity: "alice") { identity } b: member_by_pk(team_id: 1, identity: "bob") { identity } }');
    expect(d).toEqual({ a: { identity: 'alice' }, b: null });
  });
});

describe('aggregates', () => {
  it.each([
    ['alice', 3, '11', 8],
    ['bob', 2, '3', 2],
    ['carol', 3, '64', 40],
  ])('%s counts and sums only visible rows', async (who, count, sum, max) => {
    const d = await data(who, '{ task_aggregate { aggregate { count sum { points } max { points } } } }');
    expect(d['task_aggregate']).toEqual({ aggregate: { count, sum: { points: sum }, max: { points: max } } });
  });
  it('an aggregate over a relationship counts visible rows only', async () => {
    const d = await data('alice', '{ project { id tasks_aggregate { aggregate { count } } } }');
    expect(d['project']).toEqual([{ id: 10, tasks_aggregate: { aggregate: { count: 2 } } }]);
  });
  it('filters in an aggregate cannot test hidden rows', async () => {
    const d = await data('alice', '{ task_aggregate(where: {private: {_eq: true}}) { aggregate { count } } }');
    expect(d['task_aggregate']).toEqual({ aggregate: { count: 0 } });
  });
});

describe('relationships', () => {
  it('an object relationship to a hidden row is null', async () => {
    const d = await data('alice', '{ task_by_pk(id: 200) { id project { id secret } } }');
    expect(d['task_by_pk']).toEqual({ id: 200, project: null });
  });
  it('an array relationship lists visible rows only', async () => {
    const d = await data('alice', '{ project { id tasks(order_by: {id: asc}) { id } } }');
    expect(d['project']).toEqual([{ id: 10, tasks: [{ id: 100 }, { id: 101 }] }]);
    const c = await data('carol', '{ project { id tasks(order_by: {id: asc}) { id } } }');
    expect(c['project']).toEqual([{ id: 20, tasks: [{ id: 200 }, { id: 201 }] }]);
  });
  it('two levels deep, both directions', async () => {
    const d = await data('bob', '{ team { name members { identity } projects { name tasks(order_by: {id: desc}) { id project { team { name } } } } } }');
    expect(d['team']).toEqual([
      { name: 'Earth', members: [{ identity: 'bob' }], projects: [{ name: 'Apollo', tasks: [{ id: 101, project: { team: { name: 'Earth' } } }, { id: 100, project: { team: { name: 'Earth' } } }] }] },
    ]);
  });
});

describe('filters through relationships', () => {
  it('a filter on a hidden related row matches nothing', async () => {
    const d = await data('alice', '{ task(where: {project: {name: {_eq: "Mars"}}}) { id } }');
    expect(ids(d['task'])).toEqual([]);
    const c = await data('carol', '{ task(where: {project: {name: {_eq: "Mars"}}}, order_by: {id: asc}) { id } }');
    expect(ids(c['task'])).toEqual([200, 201]);
  });
  it('_not of such a filter is true for rows whose related row is hidden', async () => {
    const d = await data('alice', '{ task(where: {_not: {project: {secret: {_like: "a%"}}}}, order_by: {id: asc}) { id } }');
    expect(ids(d['task'])).toEqual([100, 101, 200]);
  });
  it('an array relationship filter cannot probe hidden children', async () => {
    const d = await data('alice', '{ project(where: {tasks: {title: {_eq: "hidden"}}}) { id } }');
    expect(ids(d['project'])).toEqual([]);
    const admin = await data('admin', '{ project(where: {tasks: {title: {_eq: "hidden"}}}) { id } }');
    expect(ids(admin['project'])).toEqual([10]);
  });
  it('_or, _and, _in, _nin, _is_null and comparison operators', async () => {
    const d = await data('carol', `{
      a: task(where: {_or: [{points: {_gt: 20}}, {title: {_eq: "land"}}]}, order_by: {id: asc}) { id }
      b: task(where: {_and: [{points: {_gte: 8}}, {points: {_lte: 16}}]}, order_by: {id: asc}) { id }
      c: task(where: {id: {_in: [100, 200, 201]}}, order_by: {id: asc}) { id }
      d: task(where: {id: {_nin: [200]}}, order_by: {id: asc}) { id }
      e: task(where: {assignee: {_is_null: false}, title: {_ilike: "%I%"}}, order_by: {id: asc}) { id }
    }`);
    expect([d['a'], d['b'], d['c'], d['d'], d['e']].map(ids)).toEqual([[103, 200], [200, 201], [200, 201], [103, 201], [103, 201]]);
  });
});

describe('order_by', () => {
  it('ordering by a hidden related row sorts it as null', async () => {
    // Were project 20's secret ("a-…") used, task 200 would come first.
    const d = await data('alice', '{ task(order_by: [{project: {secret: asc}}, {id: asc}]) { id } }');
    expect(ids(d['task'])).toEqual([100, 101, 200]);
    const admin = await data('admin', '{ task(order_by: [{project: {secret: asc}}, {id: asc}]) { id } }');
    expect(ids(admin['task'])).toEqual([200, 201, 100, 101, 103]);
  });
  it('ordering by a relationship count counts visible rows only', async () => {
    const d = await data('admin', '{ project(order_by: {tasks_aggregate: {count: desc}}) { id } }');
    expect(ids(d['project'])).toEqual([10, 20]);
  });
});

describe('paging', () => {
  it('limit and offset apply after visibility', async () => {
    const d = await data('alice', '{ task(order_by: {id: asc}, limit: 1, offset: 1) { id } }');
    expect(ids(d['task'])).toEqual([101]);
  });
  it('negative limits are refused', async () => {
    const res = await api.gql('alice', '{ task(limit: -1) { id } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
  });
});
