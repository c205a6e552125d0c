import { sql as pgsql, type SQL } from 'pg-sql2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../src/db/index.ts';
import { BatchParams, callerParams, type CompiledRules, type Identity } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { as, compile, visible } from './support/rules.ts';

// Compiled predicates are plain SQL the planner can optimise: a rule on the table alone is an
// indexable condition, a rule through another table a correlated EXISTS that becomes a join.
// Plans are inspected as JSON trees; nothing here measures time.
const db = useTestDatabase();
const N = 20_000;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL, team int NOT NULL, level int NOT NULL);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY, account_id int NOT NULL, level int NOT NULL);
    INSERT INTO account SELECT i, 'user' || i, i % 50, i % 10 FROM generate_series(1, ${N}) i;
    INSERT INTO admin VALUES ('user7'), ('root');
    -- Each account has one player; player ids are shuffled against account ids.
    INSERT INTO player SELECT i, ((i * 7919) % ${N}) + 1, i % 30 FROM generate_series(1, ${N}) i;
    CREATE INDEX account_identity_idx ON account (identity);
    CREATE INDEX player_account_idx ON player (account_id);
    ANALYZE account; ANALYZE admin; ANALYZE player;
  `);
});

const OWN = 'SELECT * FROM account WHERE identity = :sender';
const ADMINS = 'SELECT account.* FROM account CROSS JOIN admin WHERE admin.identity = :sender';
const TEAM = 'SELECT * FROM account WHERE team = :team AND level = 0';
const PLAYERS = 'SELECT p.* FROM account a JOIN player p ON a.id = p.account_id';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Join Type'?: string;
  'Parent Relationship'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

async function explain(rules: CompiledRules, table: string, identity: Identity): Promise<PlanNode[]> {
  const row = Symbol(table);
  const { text, values } = pgsql.compile(
    pgsql`EXPLAIN (FORMAT JSON) SELECT ${pgsql.identifier(row, 'id')} FROM ${pgsql.identifier(rules.schema, table)} AS ${pgsql.identifier(row)} WHERE ${rules.visibility(table, row, callerParams(identity))}`,
  );
  const [result] = await db.sql.unsafe<{ 'QUERY PLAN': unknown }[]>(text, values as never[]);
  const doc = result?.['QUERY PLAN'];
  const parsed = (typeof doc === 'string' ? JSON.parse(doc) : doc) as { Plan: PlanNode }[];
  return nodes(parsed[0]!.Plan);
}

const INDEX_SCANS = ['Index Scan', 'Index Only Scan', 'Bitmap Index Scan'];
const indexScansOn = (plan: PlanNode[], index: string) => plan.filter((n) => INDEX_SCANS.includes(n['Node Type']) && n['Index Name'] === index);
const seqScansOn = (plan: PlanNode[], table: string) => plan.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === table);
const summary = (plan: PlanNode[]) => plan.map((n) => [n['Node Type'], n['Join Type'], n['Relation Name'], n['Index Name']].filter(Boolean).join(' '));

describe('plans of compiled visibility', () => {
  it('a rule on the table alone is a plain condition that uses the index', async () => {
    const rules = await compile(db, { account: { select: OWN } });
    const plan = await explain(rules, 'account', as('user42'));
    expect(indexScansOn(plan, 'account_identity_idx'), summary(plan).join('\n')).toHaveLength(1);
    expect(seqScansOn(plan, 'account'), summary(plan).join('\n')).toEqual([]);
    expect(await visible(db, rules, 'account', as('user42'))).toEqual(['42']);
  });

  it('a rule through another ruled table becomes a join driven by both indexes, not a per-row subplan', async () => {
    const rules = await compile(db, { account: { select: OWN }, player: { select: PLAYERS } });
    const plan = await explain(rules, 'player', as('user42'));
    const why = summary(plan).join('\n');
    expect(indexScansOn(plan, 'account_identity_idx').length, why).toBeGreaterThan(0);
    expect(indexScansOn(plan, 'player_account_idx').length, why).toBeGreaterThan(0);
    expect(seqScansOn(plan, 'account'), why).toEqual([]);
    expect(seqScansOn(plan, 'player'), why).toEqual([]);
    // EXISTS was pulled up into a (semi-)join: no SubPlan evaluated per player row.
    expect(plan.filter((n) => n['Parent Relationship'] === 'SubPlan' || n['Subplan Name']), why).toEqual([]);
    const joins = plan.filter((n) => n['Join Type']);
    expect(joins.length, why).toBeGreaterThan(0);
    // A semi-join, or an inner join when the planner proves account.id unique.
    for (const j of joins) expect(['Semi', 'Inner', 'Right Semi'], why).toContain(j['Join Type']);
    // account 42's player: i with (i * 7919) % N + 1 = 42.
    const expected = await db.sql<{ id: string }[]>`SELECT id::text FROM player WHERE account_id = 42`;
    expect(await visible(db, rules, 'player', as('user42'))).toEqual(expected.map((r) => r.id));
  });
});

describe('batch rendering: many subscribers in one statement', () => {
  let counted: Sql;
  let statements = 0;
  beforeAll(async () => {
    counted = connect(db.url, { max: 1, debug: () => void statements++ });
    // The driver's own set-up queries (array types) run on first use: get them out of the way.
    await counted`SELECT 1`;
  });
  afterAll(async () => {
    await counted.end({ timeout: 5 });
  });

  // 50 subscribers: ordinary users (some twice, with different claims), an admin, an admin
  // with no account, unknown senders, anonymous ones, and team claims of every kind.
  const subscribers: { id: string; identity: Identity }[] = Array.from({ length: 50 }, (_, i) => {
    const teams: unknown[] = [10, '20', 'abc', 3, undefined, 1e30, '-0'];
    const team = teams[i % teams.length];
    const claims = team === undefined ? {} : { team };
    const sender = i === 0 ? 'user7' : i === 1 ? 'root' : i % 11 === 0 ? null : i % 13 === 0 ? `ghost${i}` : `user${(i * 397) % N + 1}`;
    return { id: `s${i}`, identity: as(i === 25 ? 'user42' : i === 26 ? 'user42' : sender, claims) };
  });

  type Form = (rules: CompiledRules, table: string, batch: BatchParams, row: symbol) => SQL;
  const lateral: Form = (rules, table, batch, row) => {
    const condition = rules.visibility(table, row, batch);
    // The relation is rendered after the condition: the condition decides its columns.
    return pgsql`SELECT ${batch.sid} AS sid, v.k FROM ${batch.relation(subscribers)}
      CROSS JOIN LATERAL (SELECT ${pgsql.identifier(row, 'id')}::text AS k FROM ${pgsql.identifier(rules.schema, table)} AS ${pgsql.identifier(row)} WHERE ${condition}) AS v`;
  };
  const join: Form = (rules, table, batch, row) => {
    const condition = rules.visibility(table, row, batch);
    return pgsql`SELECT ${batch.sid} AS sid, ${pgsql.identifier(row, 'id')}::text AS k FROM ${batch.relation(subscribers)}
      JOIN ${pgsql.identifier(rules.schema, table)} AS ${pgsql.identifier(row)} ON ${condition}`;
  };

  for (const [name, form] of [['CROSS JOIN LATERAL', lateral], ['JOIN … ON', join]] as const) {
    for (const table of ['account', 'player']) {
      it(`${table}, ${name}: per-subscriber sets equal per-caller rendering, in exactly one statement`, async () => {
        const rules = await compile(db, { account: { select: [OWN, ADMINS, TEAM] }, player: { select: PLAYERS } });
        const row = Symbol(table);
        const batch = new BatchParams();
        const { text, values } = pgsql.compile(form(rules, table, batch, row));
        const before = statements;
        const rows = await counted.unsafe<{ sid: string; k: string }[]>(text, values as never[]);
        expect(statements - before).toBe(1);

        const got = new Map<string, string[]>(subscribers.map((s) => [s.id, []]));
        for (const r of rows) got.get(r.sid)!.push(r.k);
        const sizes: number[] = [];
        for (const s of subscribers) {
          const expected = await visible(db, rules, table, s.identity);
          const actual = [...got.get(s.id)!].sort();
          const wanted = [...expected].sort();
          sizes.push(wanted.length);
          if (actual.length !== wanted.length || actual.some((k, i) => k !== wanted[i])) {
            expect.fail(`subscriber ${s.id} (${JSON.stringify(s.identity)}): batch gave ${actual.length} rows [${actual.slice(0, 10).join(', ')}…], per-caller ${wanted.length} [${wanted.slice(0, 10).join(', ')}…]`);
          }
        }
        // Admins see everything, team 10/20 claims add 400 accounts, unknown and anonymous see nothing.
        expect(sizes[0]).toBe(N);
        expect(sizes[1]).toBe(N);
        expect(sizes.filter((n) => n === 0).length).toBeGreaterThan(0);
        expect(sizes.filter((n) => n > 0 && n < N).length).toBeGreaterThan(20);
        expect(rows.length).toBe(sizes.reduce((a, b) => a + b, 0));
      });
    }
  }
});
