import { beforeAll, describe, expect, it } from 'vitest';
import type { GraphQLResolveInfo } from 'graphql';
import { sql } from 'pg-sql2';
import { PreparedStatements } from '../src/db/index.ts';
import { Plans } from '../src/resolvers/plans.ts';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Reads whose SQL text recurs run as prepared statements (planned once per connection); the text
// never holds a caller's values, so one statement serves every caller, each seeing only their rows.
const db = useTestDatabase();
let api: TestGateway;
let capped: TestGateway;
let never: TestGateway;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
    CREATE TABLE memo (id int PRIMARY KEY, team text NOT NULL);
    INSERT INTO memo VALUES (1, 'red'), (2, 'blue'), (3, 'red');
    INSERT INTO admin VALUES ('carol');
    INSERT INTO note SELECT g, (ARRAY['alice', 'bob', 'dave'])[1 + g % 3], 'note ' || g FROM generate_series(1, 30) g;
    ANALYZE;
  `);
  const tables = {
    note: { select: ['SELECT * FROM note WHERE owner = :sender', 'SELECT note.* FROM note JOIN admin ON admin.identity = :sender'] },
    memo: { select: ['SELECT * FROM memo WHERE team = :team'] },
  };
  // One connection each: pg_prepared_statements, read on the gateway's own pool, is that session's.
  api = await startGateway(db, { tables }, 1);
  capped = await startGateway(db, { tables, limits: { preparedStatements: 1 } }, 1);
  never = await startGateway(db, { tables, limits: { preparedStatements: 0 } }, 1);
});

const LIST = '{ note(order_by: {id: asc}) { id owner } }';
const prepared = async (gw: TestGateway) =>
  (await gw.sql.unsafe<{ statement: string }[]>('SELECT statement FROM pg_prepared_statements')).map((r) => r.statement);
const expected = async (who: string) =>
  (await db.sql.unsafe<{ id: number; owner: string }[]>(`SELECT id, owner FROM note WHERE owner = $1 OR $1 = 'carol' ORDER BY id`, [who])).map((r) => ({ ...r }));

describe('prepared reads', () => {
  it('one prepared statement answers every caller with their own rows, through custom and generic plans', async () => {
    // PostgreSQL may switch a prepared statement to a generic plan after five runs: go well past that.
    const callers = ['alice', 'bob', 'carol', 'dave', 'alice', 'carol', 'bob', 'dave', 'alice', 'bob', 'carol', 'dave'];
    for (const who of callers) expect(await api.gql(who, LIST)).toEqual({ data: { note: await expected(who) } });
    const statements = (await prepared(api)).filter((s) => s.includes('"note"'));
    expect(statements).toHaveLength(1);
    // The caller's identity is bound, never part of the text.
    for (const who of new Set(callers)) expect(statements[0]).not.toContain(who);
  });

  it('a kept plan is filled with each caller\'s own sender and claims', async () => {
    const query = '{ note(order_by: {id: asc}) { id owner } memo(order_by: {id: asc}) { id } }';
    const as = async (who: string, team: string | null) => {
      const res = await fetch(api.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await api.token(who, team === null ? {} : { team })}` },
        body: JSON.stringify({ query }),
      });
      return res.json();
    };
    const memos = { red: [{ id: 1 }, { id: 3 }], blue: [{ id: 2 }] };
    for (const [who, team] of [['alice', 'red'], ['bob', 'blue'], ['alice', 'blue'], ['dave', null], ['bob', 'red']] as const) {
      expect(await as(who, team)).toEqual({ data: { note: await expected(who), memo: team === null ? [] : memos[team] } });
    }
    expect(await api.gql('admin', query)).toEqual({ data: { note: await expected('carol'), memo: [{ id: 1 }, { id: 2 }, { id: 3 }] } });
  });

  it('a shape seen once is not prepared', async () => {
    const once = '{ note(where: {body: {_eq: "note 4"}}) { id } }';
    expect(await api.gql('bob', once)).toEqual({ data: { note: [{ id: 4 }] } });
    expect((await prepared(api)).filter((s) => s.includes('"body"'))).toEqual([]);
  });

  it('prepares at most limits.preparedStatements shapes, and none with 0', async () => {
    const other = '{ note(limit: 2, order_by: {id: desc}) { id } }';
    for (let i = 0; i < 3; i++) {
      expect(await capped.gql('alice', LIST)).toEqual({ data: { note: await expected('alice') } });
      expect(await capped.gql('dave', other)).toEqual({ data: { note: [{ id: 29 }, { id: 26 }] } });
      expect(await never.gql('alice', LIST)).toEqual({ data: { note: await expected('alice') } });
    }
    expect((await prepared(capped)).filter((s) => s.includes('"note"'))).toHaveLength(1);
    expect((await prepared(never)).filter((s) => s.includes('"note"'))).toEqual([]);
  });
});

describe('PreparedStatements', () => {
  it('admits a text when it recurs, up to the cap, and starts afresh after a connection lifetime', () => {
    let now = 0;
    const statements = new PreparedStatements(2, () => now);
    expect([statements.admit('a'), statements.admit('a'), statements.admit('a')]).toEqual([false, true, true]);
    expect([statements.admit('b'), statements.admit('b')]).toEqual([false, true]);
    // Full: a third shape runs unprepared however often it recurs.
    expect([statements.admit('c'), statements.admit('c'), statements.admit('c')]).toEqual([false, false, false]);
    // An hour on, every connection that prepared a and b has closed: the set starts afresh.
    now += 60 * 60 * 1000;
    expect([statements.admit('c'), statements.admit('c'), statements.admit('a')]).toEqual([false, true, false]);
  });
});

describe('Plans', () => {
  const info = (operation: object, field: object, variableValues: Record<string, unknown>) =>
    ({ operation, fieldNodes: [field], variableValues }) as unknown as GraphQLResolveInfo;

  it('keeps a root field\'s SQL per operation, field, variables and admin or not', () => {
    const plans = new Plans(10);
    const [operation, field, other] = [{}, {}, {}];
    let built = 0;
    const plan = () => ({ value: sql`SELECT ${sql.literal(++built)}`, inputs: [] });
    const first = plans.get(info(operation, field, { n: 1 }), false, plan);
    expect(plans.get(info(operation, field, { n: 1 }), false, plan)).toBe(first);
    // Each of these changes what the SQL is built from: built again.
    plans.get(info(operation, field, { n: 2 }), false, plan);
    plans.get(info(operation, field, { n: 1 }), true, plan);
    plans.get(info(operation, other, { n: 1 }), false, plan);
    plans.get(info({}, field, { n: 1 }), false, plan);
    expect([built, plans.hits, plans.misses]).toEqual([5, 1, 5]);
  });
});
