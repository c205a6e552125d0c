import { compile as compileSql, sql, type SQL } from 'pg-sql2';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { aggregateSql, insertSql, listSql, scopeFor, type SelectedField } from '../src/resolvers/index.ts';
import { buildModel, type ApiModel } from '../src/schema/index.ts';
import { useTestDatabase } from './support/db.ts';
import { GROUP_TABLES } from './support/groups.ts';
import { as, compile } from './support/rules.ts';

// The caller's `where` is tested only on rows already proven visible: in every plan PostgreSQL
// picks, the node that evaluates the caller's LIKE sits above a subquery that applied the rules,
// and nothing below it evaluates the LIKE. (Values are also checked so they cannot raise; this is
// what holds for any expression, e.g. casts in the rules over stored data.) Plans are read as JSON.
const db = useTestDatabase();
let api: ApiModel;

// Upserts may update the caller's own documents.
const TABLES = { ...GROUP_TABLES, doc: { ...GROUP_TABLES.doc, insert: { check: 'public' }, update: { filter: ['SELECT * FROM doc WHERE owner = :sender'] } } };

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE membership (grp_id int NOT NULL REFERENCES grp(id), identity text NOT NULL, PRIMARY KEY (grp_id, identity));
    CREATE TABLE doc (id int PRIMARY KEY, grp_id int NOT NULL REFERENCES grp(id), owner text NOT NULL, title text NOT NULL, private boolean NOT NULL);
    INSERT INTO grp SELECT i, 'g' || i FROM generate_series(1, 100) i;
    INSERT INTO membership SELECT i, 'user' || i FROM generate_series(1, 100) i;
    INSERT INTO doc SELECT i, 1 + i % 100, 'user' || (i % 500), 'title ' || i, i % 3 = 0 FROM generate_series(1, 20000) i;
    CREATE INDEX doc_owner ON doc (owner); CREATE INDEX doc_grp ON doc (grp_id); CREATE INDEX doc_title ON doc (title text_pattern_ops);
    ANALYZE grp; ANALYZE membership; ANALYZE doc;
  `);
  const config = parseConfig({ auth: { jwt: { secret: 'x'.repeat(32) } }, tables: TABLES }, {});
  api = buildModel(config, await db.catalog(), await compile(db, TABLES));
});

interface PlanNode {
  'Node Type': string;
  Filter?: string;
  'Index Cond'?: string;
  'Join Filter'?: string;
  'Recheck Cond'?: string;
  'Conflict Filter'?: string;
  Plans?: PlanNode[];
}

const LIKE = /~~/;
const testsLike = (n: PlanNode) => [n.Filter, n['Index Cond'], n['Join Filter'], n['Recheck Cond'], n['Conflict Filter']].some((c) => c !== undefined && LIKE.test(c));
const below = (n: PlanNode): PlanNode[] => (n.Plans ?? []).flatMap((c) => [c, ...below(c)]);

async function plan(field: SelectedField, table: string, kind: 'list' | 'aggregate' = 'list'): Promise<PlanNode> {
  const scope = scopeFor(api, CALLER);
  const model = api.tables.get(table)!;
  const expr = kind === 'list' ? listSql(scope, model, field) : aggregateSql(scope, model, field);
  return explain(sql`SELECT ${expr} AS result`);
}

const CALLER = { admin: false, identity: as('user7') } as const;

async function explain(statement: SQL): Promise<PlanNode> {
  const { text, values } = compileSql(sql`EXPLAIN (FORMAT JSON) ${statement}`);
  const [row] = await db.sql.unsafe<{ 'QUERY PLAN': unknown }[]>(text, values as never[]);
  const doc = row!['QUERY PLAN'];
  return ((typeof doc === 'string' ? JSON.parse(doc) : doc) as { Plan: PlanNode }[])[0]!.Plan;
}

/** Every node testing the LIKE is a scan of a fenced subquery, with no LIKE anywhere beneath it. */
function expectFenced(root: PlanNode): void {
  const testing = [root, ...below(root)].filter(testsLike);
  expect(testing.length).toBeGreaterThan(0);
  for (const n of testing) {
    expect(n['Node Type']).toBe('Subquery Scan');
    expect(below(n).filter(testsLike)).toEqual([]);
  }
}

const like = { title: { _like: 'title 1%' } };
const field = (name: string, args: Record<string, unknown>, children: SelectedField[] = [{ key: 'id', name: 'id', args: {}, children: [] }]): SelectedField => ({ key: name, name, args, children });

describe("the caller's where is evaluated above the rules", () => {
  it('a root list, whose rules are a UNION of index lookups', async () => {
    expectFenced(await plan(field('doc', { where: like }), 'doc'));
  });
  it('a root list ordered and paged', async () => {
    expectFenced(await plan(field('doc', { where: like, order_by: [{ title: 'asc' }], limit: 5, offset: 2 }), 'doc'));
  });
  it('an aggregate', async () => {
    expectFenced(await plan(field('doc_aggregate', { where: like }, [field('aggregate', {}, [field('count', {}, [])])]), 'doc', 'aggregate'));
  });
  it('a nested list reached through its foreign key', async () => {
    expectFenced(await plan(field('grp', {}, [field('docs', { where: like })]), 'grp'));
  });
  it('a relationship filter', async () => {
    expectFenced(await plan(field('grp', { where: { docs: like } }), 'grp'));
  });
  it("an upsert's on_conflict.where", async () => {
    const model = api.tables.get('doc')!;
    const upsert = insertSql(scopeFor(api, CALLER), CALLER, model, [{ id: 7, grp_id: 1, owner: 'user7', title: 'new', private: false }], {
      constraint: 'doc_pkey',
      update_columns: ['title'],
      where: like,
    });
    expectFenced(await explain(upsert));
  });
  it('nothing changes for a caller no rule restricts', async () => {
    const model = api.tables.get('doc')!;
    const admin = listSql(scopeFor(api, { admin: true, identity: as('root') }), model, field('doc', { where: like }));
    expect(compileSql(admin).text).not.toContain('OFFSET 0');
  });
});
