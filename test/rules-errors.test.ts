import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { compileRules, formatProblem, loadParser, RuleConfigError, verifyRules, type RuleProblem } from '../src/rules/index.ts';
import { lineAndColumn } from '../src/rules/errors.ts';
import { useTestDatabase } from './support/db.ts';

// Malformed rules (docs/rules.md, "Validation"): each must be rejected at startup with the table, the
// rule's kind and 1-based number, the 1-based line and column of the fault, a caret under it and a hint.
const db = useTestDatabase();

beforeAll(async () => {
  await loadParser();
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL UNIQUE, name text);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY REFERENCES account(id), level int NOT NULL);
    CREATE SCHEMA other;
    CREATE TABLE other.secret (id int, identity text);
  `);
});

const OWN = 'SELECT * FROM account WHERE identity = :sender';

/** Compiles and verifies `tables` as startup does; returns the problems (fails the test if there are none). */
async function problemsOf(tables: Record<string, unknown>): Promise<RuleProblem[]> {
  const config = parseConfig({ tables }, {});
  const error = await (async () => {
    const rules = compileRules(config, await db.catalog());
    await verifyRules(db.sql, rules);
  })().then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof RuleConfigError)) throw new Error(`expected a RuleConfigError, got ${String(error)}`);
  expect(error.code).toBe('RULES_INVALID');
  // The thrown message is every problem, formatted.
  for (const p of error.problems) expect(error.message).toContain(formatProblem(p));
  return error.problems;
}

interface Expected {
  table: string;
  kind: string;
  index: number;
  line: number;
  column: number;
  message: string;
  hint?: string;
}

/** Asserts one problem's site, exact position and message, and that the formatted text shows a caret under the fault. */
function expectProblem(problem: RuleProblem | undefined, want: Expected): void {
  expect(problem).toBeDefined();
  const p = problem!;
  expect(p.site).not.toBeNull();
  expect({ table: p.site!.table, kind: p.site!.kind, index: p.site!.index }).toEqual({ table: want.table, kind: want.kind, index: want.index });
  expect(p.message).toContain(want.message);
  if (want.hint !== undefined) expect(p.hint).toContain(want.hint);
  expect(p.hint.length).toBeGreaterThan(10);
  expect(p.position).not.toBeNull();
  expect(lineAndColumn(p.site!.text, p.position!)).toEqual({ line: want.line, column: want.column });

  const lines = formatProblem(p).split('\n');
  expect(lines[0]).toBe(`tables.${want.table}.${want.kind}[${want.index}], line ${want.line}, column ${want.column}: ${p.message}`);
  const ruleLine = [...(p.site!.text.split('\n')[want.line - 1] ?? '')];
  expect(lines[1]).toBe(`  ${ruleLine.join('')}`);
  // The caret sits under the character the column names (tabs kept so it lines up).
  expect(lines[2]).toBe(`  ${ruleLine.slice(0, want.column - 1).map((c) => (c === '\t' ? '\t' : ' ')).join('')}^`);
  expect(lines[3]).toBe(`  ${p.hint}`);
}

/** One bad rule under `table`'s `kind` (after `before` good rules), and what it must report. */
interface Case {
  name: string;
  rule: string;
  table?: string;
  kind?: 'select' | 'insert.check' | 'update.filter' | 'update.check' | 'delete';
  before?: string[];
  line?: number;
  column: number;
  message: string;
  hint?: string;
}

function tablesFor(c: Case): Record<string, unknown> {
  const table = c.table ?? 'account';
  const rules = [...(c.before ?? []), c.rule];
  const kind = c.kind ?? 'select';
  const tc: Record<string, unknown> = { select: kind === 'select' ? rules : 'public' };
  if (kind === 'insert.check') tc['insert'] = { check: rules };
  if (kind === 'update.filter') tc['update'] = { filter: rules };
  if (kind === 'update.check') tc['update'] = { check: rules };
  if (kind === 'delete') tc['delete'] = rules;
  return { [table]: tc };
}

const CASES: Case[] = [
  {
    name: "the seed's JOIN without ON says how to write it",
    rule: 'SELECT account.* FROM account JOIN admin WHERE admin.identity = :sender',
    column: 42,
    message: 'a JOIN needs a join condition: "JOIN admin WHERE …" is not PostgreSQL',
    hint: '`JOIN admin ON admin.identity = :sender`), or join without one: `CROSS JOIN admin` or `FROM account, admin`',
  },
  {
    name: "JOIN without ON on the user's own tables: the hint moves the rule's own WHERE into the ON",
    table: 'player',
    rule: 'SELECT player.* FROM player JOIN account WHERE account.id = player.id\n  AND account.name = :sender',
    column: 42,
    message: 'a JOIN needs a join condition: "JOIN account WHERE …" is not PostgreSQL',
    hint: '`JOIN account ON account.id = player.id AND account.name = :sender`), or join without one: `CROSS JOIN account` or `FROM player, account`',
  },
  {
    name: 'JOIN without ON at the end of the rule: the hint has no condition to borrow',
    rule: 'SELECT account.* FROM account JOIN admin',
    column: 41,
    message: 'a JOIN needs a join condition: "JOIN admin" is not PostgreSQL',
    hint: '`JOIN admin ON <a condition on admin>`)',
  },
  {
    name: 'a syntax error at the end, after a :sender (positions map back through the rewrite)',
    rule: 'SELECT * FROM account WHERE identity = :sender AND',
    column: 51,
    message: 'syntax error at end of input',
    hint: 'fix the syntax at the caret',
  },
  {
    name: 'a syntax error in the middle',
    rule: 'SELECT * FROM account WHERE identity = :sender AND AND id = 1',
    column: 52,
    message: 'syntax error at or near "AND"',
  },
  {
    name: 'an unterminated string',
    rule: "SELECT * FROM account WHERE name = 'abc",
    column: 36,
    message: 'unterminated quoted string',
  },
  {
    name: 'two statements',
    rule: 'SELECT * FROM account; SELECT * FROM account',
    column: 24,
    message: 'a rule is exactly one statement',
    hint: 'list several rules to OR them',
  },
  { name: 'a DELETE statement', rule: '  DELETE FROM account', column: 3, message: 'a DELETE statement is not allowed in a rule', hint: 'one SELECT' },
  { name: 'an INSERT statement', rule: "INSERT INTO account VALUES (9, 'x', 'x')", column: 1, message: 'an INSERT statement is not allowed in a rule' },
  { name: 'an UPDATE statement after a comment', rule: "/* set */ update account SET name = 'x'", column: 11, message: 'an UPDATE statement is not allowed in a rule' },
  { name: 'DDL', rule: 'DROP TABLE account', column: 1, message: 'a DROP statement is not allowed in a rule' },
  {
    name: 'UNION',
    rule: 'SELECT * FROM account UNION SELECT * FROM account',
    column: 23,
    message: 'UNION (a set operation) is not allowed in a rule',
    hint: 'List several rules instead',
  },
  {
    name: 'EXCEPT on its own line',
    rule: 'SELECT * FROM account WHERE identity = :sender\nEXCEPT\nSELECT * FROM account',
    line: 2,
    column: 1,
    message: 'EXCEPT (a set operation) is not allowed in a rule',
  },
  { name: 'GROUP BY', rule: 'SELECT * FROM account GROUP BY id', column: 32, message: 'GROUP BY is not allowed in a rule' },
  { name: 'HAVING', rule: 'SELECT * FROM account HAVING count(*) > 1', column: 39, message: 'HAVING is not allowed in a rule', hint: 'WHERE' },
  { name: 'LIMIT', rule: 'SELECT * FROM account LIMIT 1', column: 29, message: 'LIMIT/OFFSET is not allowed in a rule' },
  { name: 'OFFSET', rule: 'SELECT * FROM account OFFSET 2', column: 30, message: 'LIMIT/OFFSET is not allowed in a rule' },
  { name: 'ORDER BY', rule: 'SELECT * FROM account WHERE identity = :sender ORDER BY id', column: 57, message: 'ORDER BY is not allowed in a rule' },
  { name: 'DISTINCT', rule: 'SELECT DISTINCT * FROM account', column: 8, message: 'DISTINCT is not allowed in a rule' },
  { name: 'WITH (a CTE)', rule: 'WITH a AS (SELECT * FROM account) SELECT * FROM a', column: 1, message: 'WITH (a CTE) is not allowed in a rule' },
  { name: 'FOR UPDATE', rule: 'SELECT * FROM account WHERE identity = :sender FOR UPDATE', column: 48, message: 'FOR UPDATE/SHARE is not allowed in a rule' },
  {
    name: 'a window function',
    rule: 'SELECT * FROM account WHERE row_number() OVER () = 1',
    column: 29,
    message: 'window function row_number() OVER is not allowed in a rule',
  },
  { name: 'an aggregate', rule: 'SELECT * FROM account WHERE count(*) > 1', column: 29, message: 'aggregate call count(…) is not allowed in a rule' },
  { name: 'an aggregate without *', rule: 'SELECT * FROM account WHERE max(id) > 1', column: 29, message: 'aggregate max() is not allowed in a rule' },
  { name: 'a volatile function', rule: 'SELECT * FROM account WHERE random() > 0.5', column: 29, message: 'random() is volatile', hint: 'immutable or stable' },
  { name: 'a volatile function, schema-qualified', rule: 'SELECT * FROM account WHERE pg_catalog.random() > 0.5', column: 29, message: 'random() is volatile' },
  {
    name: 'LEFT JOIN',
    rule: 'SELECT account.* FROM account LEFT JOIN admin ON admin.identity = account.identity',
    column: 41,
    message: 'a LEFT JOIN is not allowed in a rule',
    hint: 'Only inner joins',
  },
  { name: 'NATURAL JOIN', rule: 'SELECT account.* FROM account NATURAL JOIN admin', column: 44, message: 'NATURAL JOIN is not allowed in a rule' },
  { name: 'JOIN … USING', rule: 'SELECT account.* FROM account JOIN admin USING (identity)', column: 36, message: 'JOIN … USING is not allowed in a rule' },
  {
    name: 'an unknown table',
    rule: 'SELECT * FROM accounts WHERE identity = :sender',
    column: 15,
    message: 'unknown table "accounts"',
    hint: 'Tables of schema "public": account, admin, player.',
  },
  {
    name: 'an unknown column named sender suggests :sender',
    rule: 'SELECT * FROM account WHERE identity = sender',
    column: 40,
    message: 'unknown column "sender"',
    hint: 'To compare with the caller, write `:sender`.',
  },
  {
    name: 'an unknown qualified column lists the columns',
    rule: 'SELECT * FROM account WHERE account.nope = 1',
    column: 29,
    message: 'unknown column "account.nope"',
    hint: 'Columns of account: id, identity, name.',
  },
  {
    name: 'an ambiguous column',
    rule: 'SELECT account.* FROM account JOIN admin ON identity = :sender',
    column: 45,
    message: 'column "identity" is ambiguous',
    hint: 'Qualify it: account.identity or admin.identity.',
  },
  {
    name: '* with several tables',
    rule: 'SELECT * FROM account, admin WHERE account.identity = admin.identity',
    column: 8,
    message: '`*` is ambiguous when FROM names several tables',
    hint: 'SELECT account.*',
  },
  { name: 'a column projection', rule: 'SELECT id FROM account', column: 8, message: 'column projections are not allowed', hint: 'SELECT * FROM account' },
  { name: 'a star plus a column', rule: 'SELECT *, id FROM account', column: 11, message: "a rule returns exactly one table's rows; column lists are not allowed" },
  { name: 'a computed value', rule: 'SELECT 1 FROM account', column: 8, message: 'a rule returns whole rows, not computed values' },
  {
    name: "a rule returning another table's rows",
    rule: 'SELECT admin.* FROM account JOIN admin ON admin.identity = account.identity',
    column: 8,
    message: 'this rule returns rows of "admin" but is listed under "account"',
    hint: 'move it under tables.admin',
  },
  {
    name: 'a system catalog',
    rule: 'SELECT account.* FROM account, pg_class WHERE pg_class.relname = account.name',
    column: 32,
    message: 'system catalog pg_class cannot be read by a rule',
  },
  {
    name: 'a schema-qualified system catalog',
    rule: 'SELECT account.* FROM account, pg_catalog.pg_class c WHERE c.relname = account.name',
    column: 32,
    message: 'system catalog pg_catalog.pg_class cannot be read by a rule',
  },
  {
    name: 'information_schema',
    rule: 'SELECT account.* FROM account, information_schema.tables t WHERE t.table_name = account.name',
    column: 32,
    message: 'system catalog information_schema.tables cannot be read by a rule',
  },
  {
    name: 'a table of another schema',
    rule: 'SELECT account.* FROM account JOIN other.secret s ON s.identity = account.identity',
    column: 36,
    message: 'table other.secret is in another schema',
    hint: 'Rules may read only tables of schema "public".',
  },
  {
    name: 'IN (subquery)',
    rule: 'SELECT * FROM account WHERE identity IN (SELECT identity FROM admin)',
    column: 38,
    message: 'a subquery is not allowed in a rule',
    hint: 'Join the table in FROM instead',
  },
  { name: 'EXISTS (subquery)', rule: 'SELECT * FROM account WHERE EXISTS (SELECT 1 FROM admin)', column: 29, message: 'a subquery is not allowed in a rule' },
  { name: 'a subquery in FROM', rule: 'SELECT * FROM (SELECT * FROM account) s', column: 23, message: 'a subquery in FROM is not allowed in a rule' },
  { name: 'a function in FROM', rule: 'SELECT * FROM generate_series(1, 3)', column: 15, message: 'a function in FROM is not allowed in a rule' },
  {
    name: 'a positional parameter',
    rule: 'SELECT * FROM account WHERE identity = $1',
    column: 40,
    message: 'positional parameter $1 is not allowed in a rule',
    hint: '`:sender` is the caller',
  },
  { name: 'an unsupported operator', rule: 'SELECT * FROM account WHERE id << 2 = 4', column: 32, message: 'operator << is not allowed in a rule' },
  { name: '= ANY(…)', rule: 'SELECT * FROM account WHERE id = ANY(:ids)', column: 32, message: 'ANY(…) is not allowed in a rule', hint: 'IN (a, b, …)' },
  { name: 'CASE', rule: 'SELECT * FROM account WHERE CASE WHEN id > 1 THEN true END', column: 29, message: 'CASE is not allowed in a rule' },
  { name: 'session information', rule: 'SELECT * FROM account WHERE identity = current_user', column: 40, message: 'CURRENT_USER is not allowed in a rule' },
  { name: 'an unknown function', rule: 'SELECT * FROM account WHERE no_such_fn(identity)', column: 29, message: 'unknown function no_such_fn() with 1 argument' },
  { name: 'an unknown type', rule: 'SELECT * FROM account WHERE id::no_such_type = 1', column: 33, message: 'unknown type "no_such_type"' },
  { name: 'a database-qualified table', rule: 'SELECT * FROM db.public.account', column: 15, message: 'a database-qualified name is not allowed in a rule' },
  { name: 'an alias used twice', rule: 'SELECT a.* FROM account a, account a', column: 28, message: '"a" is used twice in FROM' },
  {
    name: "the seed's self-join typo (u is not in FROM), fault on line 3",
    table: 'player',
    rule: 'SELECT q.*\nFROM account a\nJOIN player p ON u.id = p.id\nJOIN player q on p.level = q.level\nWHERE a.identity = :sender',
    line: 3,
    column: 18,
    message: '"u" is not a table in FROM',
    hint: 'Tables in FROM: a, p, q.',
  },
  {
    name: 'a multi-line rule with comments, fault on line 3',
    rule: '-- own account\nSELECT *\n  FROM account WHERE identity = :sender AND nope = 1',
    line: 3,
    column: 45,
    message: 'unknown column "nope"',
  },
  {
    name: 'a tab-indented rule keeps the caret under the fault',
    rule: 'SELECT *\n\tFROM account\n\tWHERE\tnope = :sender',
    line: 3,
    column: 8,
    message: 'unknown column "nope"',
  },
  {
    name: 'LIMIT on line 3',
    rule: 'SELECT * FROM account\nWHERE identity = :sender\n  AND id = 1 LIMIT 5',
    line: 3,
    column: 20,
    message: 'LIMIT/OFFSET is not allowed in a rule',
  },
  {
    name: 'unicode before the fault: the column counts characters, not bytes',
    rule: "SELECT * FROM account WHERE name = 'Zoë 日本語 שלום' AND nope = 1",
    column: 55,
    message: 'unknown column "nope"',
  },
  {
    name: 'an emoji before the fault counts as one character',
    rule: "SELECT * FROM account WHERE name = 'héllo 😀' AND nope = 1",
    column: 50,
    message: 'unknown column "nope"',
  },
  {
    name: 'unicode before a syntax error',
    rule: "SELECT * FROM account WHERE name = '€😀' AND AND",
    column: 45,
    message: 'syntax error at or near "AND"',
  },
  {
    name: 'many parameters before the fault (:a10 becomes $10)',
    rule: 'SELECT * FROM account WHERE name = :a1 OR name = :a2 OR name = :a3 OR name = :a4 OR name = :a5 OR name = :a6 OR name = :a7 OR name = :a8 OR name = :a9 OR name = :a10 OR nope = :sender',
    column: 170,
    message: 'unknown column "nope"',
  },
  {
    name: 'a :sender inside a string is not a parameter and does not shift positions',
    rule: "SELECT * FROM account WHERE name = ':sender' AND nope = 1",
    column: 50,
    message: 'unknown column "nope"',
  },
  // The same checks apply to write rules, each reported under its own kind.
  { name: 'insert.check', kind: 'insert.check', rule: 'SELECT * FROM account WHERE owner = :sender', column: 29, message: 'unknown column "owner"' },
  {
    name: 'update.filter, second rule',
    kind: 'update.filter',
    before: [OWN],
    rule: 'SELECT * FROM account WHERE identity = :sender LIMIT 1',
    column: 54,
    message: 'LIMIT/OFFSET is not allowed in a rule',
  },
  { name: 'update.check', kind: 'update.check', rule: 'SELECT * FROM account WHERE random() < 1', column: 29, message: 'random() is volatile' },
  {
    name: 'delete, third rule',
    kind: 'delete',
    before: [OWN, 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'],
    rule: 'SELECT account.* FROM account JOIN admin WHERE admin.identity = :sender',
    column: 42,
    message: 'a JOIN needs a join condition',
  },
];

describe('malformed rules are rejected with table, kind, rule number, line, column and a hint', () => {
  it('covers at least 20 distinct faults', () => {
    expect(new Set(CASES.map((c) => c.message)).size).toBeGreaterThanOrEqual(20);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const problems = await problemsOf(tablesFor(c));
      expect(problems).toHaveLength(1);
      expectProblem(problems[0], {
        table: c.table ?? 'account',
        kind: c.kind ?? 'select',
        index: (c.before?.length ?? 0) + 1,
        line: c.line ?? 1,
        column: c.column,
        message: c.message,
        ...(c.hint !== undefined ? { hint: c.hint } : {}),
      });
    });
  }
});

describe('type errors PostgreSQL finds (verifyRules)', () => {
  it("`id = 'x'` on an int column names the table, kind and rule, and PostgreSQL's reason", async () => {
    const problems = await problemsOf({ account: { select: [OWN, "SELECT * FROM account WHERE id = 'x'"] } });
    expect(problems).toHaveLength(1);
    const p = problems[0]!;
    expect(p.site).toMatchObject({ table: 'account', kind: 'select', index: 2, text: "SELECT * FROM account WHERE id = 'x'" });
    expect(p.message).toBe('PostgreSQL rejects this rule: invalid input syntax for type integer: "x"');
    expect(p.hint).toContain('cast');
    // PostgreSQL reports a position in the compiled statement, not in the rule, so there is no caret:
    // the formatted problem shows the whole rule instead.
    expect(p.position).toBeNull();
    expect(formatProblem(p).split('\n')).toEqual([
      'tables.account.select[2]: PostgreSQL rejects this rule: invalid input syntax for type integer: "x"',
      "  SELECT * FROM account WHERE id = 'x'",
      `  ${p.hint}`,
    ]);
  });

  it('text = integer and a function without a matching overload, in write rules', async () => {
    const problems = await problemsOf({
      account: {
        select: OWN,
        update: { filter: [OWN], check: ['SELECT * FROM account WHERE identity = 1'] },
        delete: ['SELECT * FROM account WHERE lower(id) = :sender'],
      },
    });
    expect(problems.map((p) => [p.site?.kind, p.site?.index, p.message])).toEqual([
      ['update.check', 1, 'PostgreSQL rejects this rule: operator does not exist: text = integer'],
      ['delete', 1, 'PostgreSQL rejects this rule: function pg_catalog.lower(integer) does not exist'],
    ]);
  });

  it('a bare parameter as the condition', async () => {
    const problems = await problemsOf({ account: { select: 'SELECT * FROM account WHERE :sender' } });
    expect(problems.map((p) => p.message)).toEqual(['PostgreSQL rejects this rule: argument of WHERE must be type boolean, not type text']);
  });
});

describe('the config as a whole', () => {
  it('every problem is reported at once: 3 bad rules across 2 tables give 3 problems', async () => {
    const error = await (async () => {
      const config = parseConfig(
        {
          tables: {
            account: { select: [OWN, 'SELECT * FROM account GROUP BY id', 'SELECT id FROM account'] },
            player: {
              select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.id'],
              delete: ['SELECT * FROM player WHERE lvl = 1'],
            },
          },
        },
        {},
      );
      compileRules(config, await db.catalog());
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuleConfigError);
    const problems = (error as RuleConfigError).problems;
    expect(problems.map((p) => ({ ...p.site, ...lineAndColumn(p.site!.text, p.position!), message: p.message }))).toEqual([
      { table: 'account', kind: 'select', index: 2, text: 'SELECT * FROM account GROUP BY id', line: 1, column: 32, message: 'GROUP BY is not allowed in a rule' },
      { table: 'account', kind: 'select', index: 3, text: 'SELECT id FROM account', line: 1, column: 8, message: 'column projections are not allowed' },
      { table: 'player', kind: 'delete', index: 1, text: 'SELECT * FROM player WHERE lvl = 1', line: 1, column: 28, message: 'unknown column "lvl"' },
    ]);
    const message = (error as Error).message;
    expect(message.startsWith('3 problems in the rules:\n\n')).toBe(true);
    expect(message).toContain('tables.account.select[2], line 1, column 32: GROUP BY is not allowed in a rule');
    expect(message).toContain('tables.account.select[3], line 1, column 8: column projections are not allowed');
    expect(message).toContain('tables.player.delete[1], line 1, column 28: unknown column "lvl"');
  });

  it('a listed table without select fails', async () => {
    const problems = await problemsOf({ account: { select: OWN }, admin: { insert: { check: 'public' } } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ site: null, position: null, message: 'tables.admin has no "select"' });
    expect(problems[0]!.hint).toContain('"select": "public"');
  });

  it('a listed table absent from the database fails', async () => {
    const problems = await problemsOf({ account: { select: OWN }, ghost: { select: 'public' } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ site: null, message: 'tables.ghost: no table "ghost" in schema "public"', hint: 'Tables there: account, admin, player.' });
  });

  it('mutation rules on a table without a primary key fail, naming the table and the operations', async () => {
    await db.sql`CREATE TABLE keyless (identity text NOT NULL, body text)`;
    try {
      const rule = 'SELECT * FROM keyless WHERE identity = :sender';
      const problems = await problemsOf({ keyless: { select: [rule], insert: { check: [rule] }, delete: [rule] } });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatchObject({ site: null, position: null, message: 'tables.keyless: table "keyless" has no primary key, so it cannot have "insert" or "delete" rules' });
      expect(problems[0]!.hint).toContain('Add a PRIMARY KEY to keyless');
      // Reading it needs no key.
      compileRules(parseConfig({ tables: { keyless: { select: [rule] } } }, {}), await db.catalog());
    } finally {
      await db.sql`DROP TABLE keyless`;
    }
  });

  it('a table of another schema cannot be listed', async () => {
    const problems = await problemsOf({ secret: { select: 'public' } });
    expect(problems.map((p) => p.message)).toEqual(['tables.secret: no table "secret" in schema "public"']);
  });

  it('unknown columns in selectColumns, insert.columns, insert.set, update.columns and update.set fail, each reported', async () => {
    const problems = await problemsOf({
      account: {
        select: OWN,
        selectColumns: ['id', 'nam'],
        insert: { check: [OWN], columns: ['name', 'nmae'], set: { identiy: ':sender' } },
        update: { filter: [OWN], columns: ['colour'], set: { owner: ':sender' } },
      },
    });
    expect(problems.map((p) => [p.site, p.message])).toEqual([
      [null, 'tables.account.selectColumns: table "account" has no column "nam"'],
      [null, 'tables.account.insert.columns: table "account" has no column "nmae"'],
      [null, 'tables.account.insert.set: table "account" has no column "identiy"'],
      [null, 'tables.account.update.columns: table "account" has no column "colour"'],
      [null, 'tables.account.update.set: table "account" has no column "owner"'],
    ]);
    expect(problems[1]!.hint).toBe('Columns of account: id, identity, name.');
  });

  it('a sound config compiles and verifies (the cases above fail for their fault alone)', async () => {
    const config = parseConfig(
      {
        tables: {
          account: {
            select: [OWN, 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'],
            insert: { check: [OWN], columns: ['name'], set: { identity: ':sender' } },
            update: { filter: [OWN], check: [OWN], columns: ['name'] },
            delete: [OWN],
          },
          player: { select: 'SELECT q.*\nFROM account a\nJOIN player p ON a.id = p.id\nJOIN player q on p.level = q.level\nWHERE a.identity = :sender' },
        },
      },
      {},
    );
    const rules = compileRules(config, await db.catalog());
    await verifyRules(db.sql, rules);
    expect([...rules.policies.keys()]).toEqual(['account', 'player']);
  });
});
