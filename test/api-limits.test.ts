import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Query cost limits: rows per list, worst-case rows per root field, and a statement timeout for
// every statement a caller triggers; each refusal is LIMIT_EXCEEDED.
const db = useTestDatabase();
let api: TestGateway;
let slow: TestGateway;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE team (id int PRIMARY KEY);
    CREATE TABLE project (id int PRIMARY KEY, team_id int NOT NULL REFERENCES team(id));
    CREATE TABLE task (id int PRIMARY KEY, project_id int NOT NULL REFERENCES project(id), label text NOT NULL);
    INSERT INTO team SELECT g FROM generate_series(1, 3) g;
    INSERT INTO project SELECT g, 1 + g % 3 FROM generate_series(1, 30) g;
    INSERT INTO task SELECT g, 1 + g % 30, 'task ' || g FROM generate_series(1, 1000000) g;
    ANALYZE;
  `);
  const tables = { team: { select: 'public' }, project: { select: 'public' }, task: { select: "SELECT * FROM task WHERE label <> ''" } };
  api = await startGateway(db, { tables, limits: { maxRows: 100, maxTotalRows: 500 } });
  // 100 ms: far above a key lookup even on a loaded machine, far below an ILIKE over a million rows.
  slow = await startGateway(db, { tables, limits: { statementTimeoutMs: 100 } });
});

const code = (res: { errors?: { extensions?: Record<string, unknown> }[] }) => res.errors?.[0]?.extensions?.['code'];

describe('maxTotalRows', () => {
  it('refuses an answer whose nested lists add up past the cap', async () => {
    // 3 teams + 30 projects + 100 tasks per project (maxRows) = well over 500.
    const res = await api.gql('alice', '{ team { projects { tasks { id } } } }');
    expect(code(res)).toBe('LIMIT_EXCEEDED');
    expect(res.errors?.[0]?.message).toContain('limits.maxTotalRows');
  });
  it('accepts the same shape with limits that keep it under the cap', async () => {
    // 2 teams, 5 projects each, 10 tasks each: 112 rows.
    const res = await api.gql('alice', '{ team(limit: 2, order_by: {id: asc}) { projects(limit: 5, order_by: {id: asc}) { tasks(limit: 10) { id } } } }');
    expect(res.errors).toBeUndefined();
    expect((res.data?.['team'] as unknown[]).length).toBe(2);
  });
  it('counts aggregate nodes too', async () => {
    const res = await api.gql('alice', '{ project_aggregate { nodes { tasks { id } } } }');
    expect(code(res)).toBe('LIMIT_EXCEEDED');
  });
});

describe('statement timeout', () => {
  it('a statement running past limits.statementTimeoutMs is cancelled with LIMIT_EXCEEDED', async () => {
    const res = await slow.gql('alice', '{ task_aggregate(where: {label: {_ilike: "%never%"}}) { aggregate { count } } }');
    expect(code(res)).toBe('LIMIT_EXCEEDED');
    expect(res.errors?.[0]?.message).toContain('statementTimeoutMs');
  });
  it('quick statements are unaffected', async () => {
    const res = await slow.gql('alice', '{ team_by_pk(id: 1) { id } }');
    expect(res).toEqual({ data: { team_by_pk: { id: 1 } } });
  });
});

describe('aggregates', () => {
  it('count every visible row, not only maxRows of them', async () => {
    const res = await api.gql('alice', '{ task_aggregate { aggregate { count } } limited: task_aggregate(limit: 7) { aggregate { count } } }');
    expect(res).toEqual({ data: { task_aggregate: { aggregate: { count: 1000000 } }, limited: { aggregate: { count: 7 } } } });
  });
});
