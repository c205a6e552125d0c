import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { connect, type Sql } from '../src/db/index.ts';
import { compileRules, loadParser, RuleConfigError, verifyRules, type CompiledRules, type Identity, type RuleProblem } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { fuzzRuns, fuzzSeed, rng, shown, tokenize, type Rng } from './support/fuzz.ts';
import { generate, load, OWN, reference, RULE_SETS, SCHEMA } from './support/reference.ts';
import { as, visibilityQuery } from './support/rules.ts';

// Fuzzing the rule compiler (hostile input, issue "Hardening" §1). Thousands of rule texts, mutated
// at the token level from a corpus of valid rules (the seed's, the demo's, the differential
// test's) or generated from a small grammar, go through compileRules as startup does. For each:
// - compileRules throws nothing but a RuleConfigError and returns within a hang guard;
// - every problem names its site (or is a cycle, which has none) and a position inside the
//   rule text, or has none for a reason on a known list;
// - what compiles passes verifyRules or fails it with a RuleConfigError;
// - what passes both renders no caller value into SQL, and (for a sample) gives the same
//   visible rows as the naive reference of rules-differential.test.ts for a handful of senders.
// Deterministic: FUZZ_SEED picks the run, FUZZ_RUNS the number of mutated texts; the seed is in
// every failure report.
const db = useTestDatabase();

const SEED = fuzzSeed(0x5eed0001);
const MUTATIONS = fuzzRuns(2000);
const GENERATED = Math.ceil(MUTATIONS * 0.25);
/** Rule sets compared with the reference, per source (each comparison costs ~100 ms). */
const DIFFERENTIAL = Math.max(10, Math.ceil(MUTATIONS / 80));
/**
 * A hang guard, not a performance assertion: compiling one config never takes this long. Texts
 * past 10k characters (the pathological ones: a 1 MB literal, 50,000 operators) get 10 s more per
 * 200k characters. Generous on purpose: the machines are shared and noisy (a 200k-character rule took
 * 2.5 s under load), and a real hang does not end at all.
 */
const HANG_MS = 10_000;
const hangGuard = (longest: number) => HANG_MS + Math.max(0, longest - 10_000) / 20;

// The differential schema plus the demo's tables and one table of every scalar type.
const EXTRA = `
  ALTER TABLE account ADD COLUMN name text;
  CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL);
  CREATE TABLE membership (id int PRIMARY KEY, grp_id int NOT NULL, member text NOT NULL, perms text NOT NULL);
  CREATE TABLE document (id int PRIMARY KEY, grp_id int NOT NULL, author text NOT NULL, title text NOT NULL,
                         body text NOT NULL DEFAULT '', created_at timestamptz NOT NULL);
  CREATE TABLE event (id int PRIMARY KEY, account_id int, at timestamptz, day date, ref uuid, amount numeric,
                      score bigint, meta jsonb, tags text[], ratio float8);
  CREATE SCHEMA other;
  CREATE TABLE other.secret (id int PRIMARY KEY, identity text);
`;

type Ty = 'int' | 'text' | 'bool' | 'timestamptz' | 'date' | 'uuid' | 'numeric' | 'bigint' | 'jsonb' | 'text[]' | 'float8';
const COLUMNS: Record<string, [string, Ty][]> = {
  account: [['id', 'int'], ['identity', 'text'], ['team', 'int'], ['level', 'int'], ['name', 'text']],
  admin: [['id', 'int'], ['identity', 'text']],
  team_member: [['id', 'int'], ['team', 'int'], ['identity', 'text'], ['role', 'text']],
  player: [['id', 'int'], ['account_id', 'int'], ['level', 'int']],
  item: [['id', 'int'], ['owner_player', 'int'], ['public', 'bool']],
  grp: [['id', 'int'], ['name', 'text']],
  membership: [['id', 'int'], ['grp_id', 'int'], ['member', 'text'], ['perms', 'text']],
  document: [['id', 'int'], ['grp_id', 'int'], ['author', 'text'], ['title', 'text'], ['body', 'text'], ['created_at', 'timestamptz']],
  event: [['id', 'int'], ['account_id', 'int'], ['at', 'timestamptz'], ['day', 'date'], ['ref', 'uuid'], ['amount', 'numeric'], ['score', 'bigint'], ['meta', 'jsonb'], ['tags', 'text[]'], ['ratio', 'float8']],
};
const TABLE_NAMES = Object.keys(COLUMNS);
const ALL_COLUMNS = [...new Set(Object.values(COLUMNS).flatMap((cols) => cols.map(([c]) => c)))];
const UUIDS = ['6f1c2d3e-0000-4000-8000-000000000001', '6f1c2d3e-0000-4000-8000-000000000002', '00000000-0000-0000-0000-000000000000'];

async function loadExtra(sql: Sql, r: Rng): Promise<void> {
  const ids = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5'];
  await sql.unsafe('TRUNCATE grp, membership, document, event');
  await sql`UPDATE account SET name = CASE WHEN id % 3 = 0 THEN NULL ELSE 'n' || id END`;
  await sql`INSERT INTO grp ${sql([1, 2, 3].map((id) => ({ id, name: `g${id}` })))}`;
  await sql`INSERT INTO membership ${sql(Array.from({ length: 10 }, (_, i) => ({ id: i + 1, grp_id: r.int(1, 3), member: r.pick(ids), perms: r.pick(['r', 'rw', 'w', '']) })))}`;
  const stamp = () => (r.chance(0.5) ? `200${r.int(1, 9)}-0${r.int(1, 9)}-1${r.int(0, 9)}T0${r.int(0, 9)}:00:00Z` : `209${r.int(0, 9)}-0${r.int(1, 9)}-1${r.int(0, 9)}T12:00:00Z`);
  await sql`INSERT INTO document ${sql(Array.from({ length: 12 }, (_, i) => ({ id: i + 1, grp_id: r.int(1, 4), author: r.pick(ids), title: `t${i % 4}`, body: r.pick(['', 'x', 'secret']), created_at: stamp() })))}`;
  const events = Array.from({ length: 15 }, (_, i) => ({
    id: i + 1,
    account_id: r.chance(0.1) ? null : r.int(1, 16),
    at: r.chance(0.1) ? null : stamp(),
    day: r.chance(0.1) ? null : `200${r.int(1, 9)}-0${r.int(1, 9)}-0${r.int(1, 9)}`,
    ref: r.chance(0.2) ? null : r.pick(UUIDS),
    amount: r.chance(0.1) ? null : `${r.int(0, 5)}.${r.int(0, 9)}`,
    score: r.chance(0.1) ? null : r.pick(['0', '42', '9007199254740993', '-1']),
    meta: r.chance(0.2) ? null : JSON.stringify({ k: r.pick(['v1', 'v2']), n: r.int(0, 3) }),
    tags: r.chance(0.2) ? null : `{${r.pick(['a', 'b', 'a,b', ''])}}`,
    ratio: r.chance(0.1) ? null : r.pick([0.25, 0.5, 1, -2]),
  }));
  for (const e of events) {
    await sql`INSERT INTO event VALUES (${e.id}, ${e.account_id}, ${e.at}::timestamptz, ${e.day}::date, ${e.ref}::uuid, ${e.amount}::numeric,
                                        ${e.score}::bigint, ${e.meta}::jsonb, ${e.tags}::text[], ${e.ratio}::float8)`;
  }
  await sql.unsafe('ANALYZE grp, membership, document, event');
}

// ---------------------------------------------------------------------------------------------
// Configs: the `tables` section, with rule lists of every kind.

interface TableSpec {
  select: 'public' | string[];
  insert?: { check: 'public' | string[] };
  update?: { filter?: string[]; check?: string[] };
  delete?: string[];
}
type Tables = Record<string, TableSpec>;

interface Site {
  table: string;
  kind: 'select' | 'insert.check' | 'update.filter' | 'update.check' | 'delete';
  index: number;
}

function sitesOf(tables: Tables): Site[] {
  const out: Site[] = [];
  for (const [table, spec] of Object.entries(tables)) {
    const add = (kind: Site['kind'], list: 'public' | string[] | undefined) => {
      if (Array.isArray(list)) list.forEach((_, i) => out.push({ table, kind, index: i + 1 }));
    };
    add('select', spec.select);
    add('insert.check', spec.insert?.check);
    add('update.filter', spec.update?.filter);
    add('update.check', spec.update?.check);
    add('delete', spec.delete);
  }
  return out;
}

function listAt(tables: Tables, site: Site): string[] {
  const spec = tables[site.table]!;
  const list =
    site.kind === 'select' ? spec.select : site.kind === 'insert.check' ? spec.insert?.check : site.kind === 'update.filter' ? spec.update?.filter : site.kind === 'update.check' ? spec.update?.check : spec.delete;
  if (!Array.isArray(list)) throw new Error(`no rule list at ${site.table}.${site.kind}`);
  return list;
}

const textAt = (tables: Tables, site: Site): string => listAt(tables, site)[site.index - 1]!;

const clone = (tables: Tables): Tables => JSON.parse(JSON.stringify(tables)) as Tables;

// The corpus: the seed's rules (seeds/003; its `JOIN admin WHERE` form is an error on purpose), the
// demo's config, and the differential test's rule sets.
const SEED_ADMIN = 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender';
function corpus(): { name: string; tables: Tables }[] {
  const demo = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as { tables: Tables };
  return [
    { name: 'seed: own account', tables: { account: { select: [OWN] } } },
    { name: 'seed: admins', tables: { account: { select: [OWN, SEED_ADMIN] } } },
    { name: 'seed: JOIN without ON', tables: { account: { select: [OWN, 'SELECT account.* FROM account JOIN admin WHERE admin.identity = :sender'] } } },
    { name: 'seed: players', tables: { account: { select: [OWN, SEED_ADMIN] }, player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.id'] } } },
    {
      name: 'seed: same level',
      tables: {
        account: { select: [OWN] },
        player: { select: ['SELECT q.*\n  FROM account a\n  JOIN player p ON a.id = p.id\n  JOIN player q ON p.level = q.level\n WHERE a.identity = :sender'] },
      },
    },
    {
      name: 'seed: cycle',
      tables: {
        account: { select: ['SELECT a.* FROM account a JOIN player p ON a.id = p.id WHERE a.identity = :sender'] },
        player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.id WHERE a.identity = :sender'] },
      },
    },
    { name: 'demo', tables: demo.tables },
    ...RULE_SETS.map((rs) => ({ name: rs.name, tables: Object.fromEntries(Object.entries(rs.tables).map(([t, select]) => [t, { select }])) as Tables })),
  ];
}

// ---------------------------------------------------------------------------------------------
// Token-level mutations.

const OPERATORS = ['=', '<>', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '||', '~~', '~', '~*', '!~', '@>', '<@', '&&', '->', '->>', '#>', '?', '<<', '>>', '@@', '#', '|/', '^', '&', '|', '<->', '!!', '=>', '.', ',', '::', ':'];
const PHRASES = [
  'UNION SELECT * FROM account', 'UNION ALL SELECT * FROM admin', 'INTERSECT SELECT * FROM account', 'EXCEPT SELECT * FROM account',
  'GROUP BY id', 'GROUP BY 1', 'HAVING count(*) > 1', 'LIMIT 1', 'LIMIT ALL', 'OFFSET 1', 'ORDER BY 1', 'ORDER BY id DESC', 'FETCH FIRST 1 ROW ONLY',
  'OVER ()', 'OVER (PARTITION BY id)', 'WINDOW w AS ()', 'LEFT JOIN admin ON true', 'RIGHT JOIN admin ON true', 'FULL JOIN admin ON true',
  'LEFT OUTER JOIN player pl ON pl.id = 1', 'NATURAL JOIN admin', 'JOIN admin USING (id)', 'CROSS JOIN LATERAL (SELECT 1) x', 'JOIN admin',
  'JOIN admin ON', 'ON', 'WHERE', 'AND', 'OR', 'NOT', 'IS NULL', 'IS NOT NULL', 'IN (1, 2)', 'IN (SELECT id FROM admin)', 'BETWEEN 1 AND 2',
  'EXISTS (SELECT 1 FROM admin)', '(SELECT 1)', 'ANY (ARRAY[1])', 'ALL (ARRAY[1])', 'CASE WHEN true THEN 1 END', 'ARRAY[1, 2]', 'ROW(1, 2)',
  'COLLATE "C"', 'DISTINCT', 'DISTINCT ON (id)', 'FOR UPDATE', 'FOR SHARE', 'INTO tmp', 'TABLESAMPLE SYSTEM (10)', 'ONLY', 'LATERAL',
  'WITH x AS (SELECT 1)', 'RETURNING *', 'VALUES (1)', 'TABLE account', ';', '; DELETE FROM account', '; DROP TABLE admin', 'EXPLAIN',
  'pg_sleep(1)', 'random()', 'now()', 'clock_timestamp()', 'txid_current()', 'current_user', 'session_user', 'current_setting(\'search_path\')',
  'pg_catalog.pg_class', 'information_schema.tables', 'other.secret', 'public.account', 'pg_class', 'pg_temp.x', 'mydb.public.account',
  'lower(identity)', 'coalesce(team, 0)', 'count(*)', 'sum(level) FILTER (WHERE true)', 'array_agg(id ORDER BY id)', 'row_number() OVER ()',
  'GROUPING SETS ((id))', 'NULLIF(1, 2)', 'GREATEST(1, 2)', 'SIMILAR TO \'a\'', '::int', '::text[]', '::pg_catalog.int4', '::other.t',
  '::int(4)', '::varchar(10)', '::numeric(10, 2)', '::unknown_type', '%TYPE', 'SETOF int', 'VARIADIC ARRAY[1]', 'x => 1', 'DEFAULT',
  'IS DISTINCT FROM 1', 'IS NOT DISTINCT FROM :sender', 'IS TRUE', 'IS UNKNOWN', 'ILIKE \'%a\'', 'LIKE \'a\' ESCAPE \'!\'', 'ISNULL', 'NOTNULL',
  'XMLELEMENT(name a)', 'JSON_OBJECT(\'a\': 1)', '$1', '$2', ':sender', ':team', ':constructor', ':__proto__', ':"quoted"', '::', ': sender',
];
const JUNK = [
  '\u0000', "'", '"', '`', '\\', "E'\\", "E'\\x00'", "U&'\\0000'", 'U&"\\0061"', '$$', '$tag$', '$1', '$0', '$99999999999', ':name', '::', ':::',
  '/*', '*/', '/* /* */', '--', '--\n', '\n', '\r\n', '\t', '\u00a0', '\u200b', '\ufeff', '\u2028', 'é', 'e\u0301', '𝔘', '👩‍💻', 'مرحبا',
  '\ud800', '\udc00', '\uffff', '\u007f', '\u0001', '\u001b[31m', ';', '(', ')', '[', ']', '{', '}', ',', '.', '*', '?', '@', '#', '^', '&', '|',
  '0x1F', '1e400', '99999999999999999999999', '-2147483649', '.5', '1.', "B'101'", "X'1F'", "N'x'", 'NULL', 'TRUE', "''", "'\u0000'",
];
const LITERALS = ["'u1'", "'U3'", "''", "'%'", "'\\'", '0', '1', '2', '-1', '2147483648', '99999999999999999999', '1.5', '1e3', 'NULL', 'TRUE', 'FALSE', "'2005-01-01'", "'{}'", "'NaN'", "'abc'::int", "'1'::int"];

let unknownCounter = 0;

function randomChars(r: Rng): string {
  const n = r.int(1, 6);
  let out = '';
  for (let i = 0; i < n; i++) {
    const range = r.pick([[0, 0x7f], [0x80, 0x7ff], [0x800, 0xffff], [0x10000, 0x10ffff]] as const);
    out += String.fromCodePoint(r.int(range[0], range[1]));
  }
  return out;
}

function identifierFor(r: Rng): string {
  const roll = r.next();
  if (roll < 0.3) return r.pick(TABLE_NAMES);
  if (roll < 0.6) return r.pick(ALL_COLUMNS);
  if (roll < 0.7) return r.pick(['a', 'p', 'q', 'i', 'tm', 'me', 'd', 'm', 'g', 'x']);
  if (roll < 0.85) return `nosuch${++unknownCounter}`;
  return r.pick(['"Account"', '"account"', 'ACCOUNT', 'public.account', 'other.secret', 'pg_catalog.pg_class', 'pg_class', 'information_schema.tables', 'pg_roles', ':sender', '*', 'now', 'lower', 'select', 'from', 'user', 'sender']);
}

/** One token-level mutation of `text`. */
function mutate(r: Rng, text: string): string {
  const tokens = tokenize(text);
  const tok = tokens.length ? r.pick(tokens) : null;
  const boundary = () => (tokens.length ? (r.chance(0.5) ? r.pick(tokens).start : r.pick(tokens).end) : 0);
  const splice = (start: number, end: number, piece: string) => text.slice(0, start) + piece + text.slice(end);
  const op = r.int(0, 13);
  switch (op) {
    case 0: // delete a token
      return tok ? splice(tok.start, tok.end, '') : text;
    case 1: // duplicate a token
      return tok ? splice(tok.end, tok.end, ` ${tok.text}`) : text;
    case 2: {
      // swap two tokens
      if (tokens.length < 2) return text;
      let [a, b] = [r.pick(tokens), r.pick(tokens)];
      if (a.start > b.start) [a, b] = [b, a];
      if (a === b) return text;
      return text.slice(0, a.start) + b.text + text.slice(a.end, b.start) + a.text + text.slice(b.end);
    }
    case 3: {
      // replace an identifier (or keyword) with another name, known or not
      const words = tokens.filter((t) => t.kind === 'IDENT' || t.keyword);
      const w = words.length ? r.pick(words) : tok;
      return w ? splice(w.start, w.end, identifierFor(r)) : text;
    }
    case 4: {
      // replace an operator
      const ops = tokens.filter((t) => /^[-+*/<>=~!@#%^&|`?:.,]+$/.test(t.text));
      const o = ops.length ? r.pick(ops) : tok;
      return o ? splice(o.start, o.end, r.pick(OPERATORS)) : text;
    }
    case 5:
    case 6: {
      // insert a clause or keyword
      const at = boundary();
      return splice(at, at, ` ${r.pick(PHRASES)} `);
    }
    case 7: {
      // junk at any character (also inside strings, identifiers and surrogate pairs)
      const at = r.int(0, text.length);
      return splice(at, at, r.chance(0.3) ? randomChars(r) : r.pick(JUNK));
    }
    case 8: {
      // replace a literal or parameter
      const lits = tokens.filter((t) => ['SCONST', 'ICONST', 'FCONST', 'PARAM'].includes(t.kind) || t.text === ':' || /^(true|false|null)$/i.test(t.text));
      const l = lits.length ? r.pick(lits) : tok;
      return l ? splice(l.start, l.end, r.pick(LITERALS)) : text;
    }
    case 9: // truncate
      return text.slice(0, r.int(0, text.length));
    case 10: {
      // a long input: repeat a slice of tokens
      if (!tokens.length) return text.repeat(r.int(2, 100));
      const a = r.int(0, tokens.length - 1);
      const b = r.int(a, Math.min(tokens.length - 1, a + 4));
      const piece = text.slice(tokens[a]!.start, tokens[b]!.end);
      return splice(tokens[b]!.end, tokens[b]!.end, ` ${piece}`.repeat(r.pick([10, 100, 1000])));
    }
    case 11: {
      // deep nesting around the WHERE condition (or anywhere)
      const where = tokens.findIndex((t) => t.text.toUpperCase() === 'WHERE');
      const start = where >= 0 ? tokens[where]!.end : boundary();
      const depth = r.pick([2, 50, 300, 1000]);
      const open = r.pick(['(', 'NOT ', 'NOT (', '- ', '+', '((']);
      const close = open.includes('(') ? ')'.repeat(open.split('(').length - 1) : '';
      return `${text.slice(0, start)} ${open.repeat(depth)}${text.slice(start)}${close.repeat(r.chance(0.8) ? depth : r.int(0, depth))}`;
    }
    case 12: {
      // change case or quoting of a word
      const words = tokens.filter((t) => t.kind === 'IDENT' || t.keyword);
      if (!words.length) return text;
      const w = r.pick(words);
      const form = r.pick([w.text.toUpperCase(), w.text.toLowerCase(), `"${w.text}"`, `"${w.text.toUpperCase()}"`, `U&"${w.text}"`]);
      return splice(w.start, w.end, form);
    }
    default: {
      // whole-text framing
      return r.pick([
        `/* ${randomChars(r)} */ ${text}`,
        `${text} -- ${randomChars(r)}`,
        `${text};`,
        `${text};;`,
        `(${text})`,
        `${text} ${text}`,
        `${text}; ${text}`,
        `  \n\t${text}\n`,
        `EXPLAIN ${text}`,
        `WITH w AS (${text}) SELECT * FROM w`,
        `SELECT * FROM (${text}) s`,
        `${text}${'\u0000'.repeat(r.int(1, 3))}`,
        `${text} ${' '.repeat(20_000)}`,
        `${text} AND ${"'".repeat(r.int(1, 3))}`,
      ]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Grammar: random rules of a valid shape over the real tables, joins, boolean trees.

const PARAMS: Record<Ty, string[]> = {
  int: [':team', ':level', ':grp', ':sender'],
  text: [':sender', ':role', ':nope'],
  bool: [':flag'],
  timestamptz: [':since'],
  date: [':day'],
  uuid: [':ref'],
  numeric: [':amount'],
  bigint: [':score'],
  jsonb: [],
  'text[]': [],
  float8: [':amount'],
};

function literalOf(r: Rng, ty: Ty): string {
  switch (ty) {
    case 'int':
      return r.pick(['0', '1', '2', '3', '5', '-1', '2147483647']);
    case 'bigint':
      return r.pick(['0', '42', '9007199254740993', '-1']);
    case 'numeric':
      return r.pick(['1.5', '2.0', '0', '4.9']);
    case 'float8':
      return r.pick(['0.5', '1', "'NaN'::float8", '-2']);
    case 'text':
      return r.pick(["'u1'", "'u3'", "'U3'", "'lead'", "'member'", "'rw'", "''", "'n1'", "'t1'", "'g1'"]);
    case 'bool':
      return r.pick(['true', 'false']);
    case 'timestamptz':
      return r.pick(["'2005-06-01T00:00:00Z'::timestamptz", 'now()', 'CURRENT_TIMESTAMP', "'2050-01-01'::timestamptz"]);
    case 'date':
      return r.pick(["'2005-05-05'::date", 'CURRENT_DATE', "'2004-01-01'"]);
    case 'uuid':
      return `'${r.pick(UUIDS)}'::uuid`;
    case 'jsonb':
      return r.pick([`'{"k": "v1"}'::jsonb`, `'{}'::jsonb`]);
    case 'text[]':
      return r.pick(["'{a}'", "'{a,b}'::text[]"]);
  }
}

interface Inst {
  table: string;
  alias: string;
}

function atom(r: Rng, insts: Inst[]): string {
  const inst = r.pick(insts);
  const [col, ty] = r.pick(COLUMNS[inst.table]!);
  const c = `${inst.alias}.${col}`;
  const value = (t: Ty) => {
    const params = PARAMS[t];
    if (params.length && r.chance(0.4)) return r.pick(params);
    // Another column of the same type, in any instance.
    const same = insts.flatMap((i) => COLUMNS[i.table]!.filter(([, t2]) => t2 === t).map(([n]) => `${i.alias}.${n}`));
    if (same.length && r.chance(0.25)) return r.pick(same);
    return literalOf(r, t);
  };
  const cmp = () => r.pick(['=', '<>', '!=', '<', '<=', '>', '>=']);
  if (r.chance(0.08)) return `${c} IS ${r.pick(['NULL', 'NOT NULL'])}`;
  if (r.chance(0.04)) return `${c} IS ${r.pick(['DISTINCT', 'NOT DISTINCT'])} FROM ${value(ty)}`;
  if (r.chance(0.03)) return r.pick(['random() < 0.5', 'pg_sleep(0) IS NULL', 'clock_timestamp() > now()', 'txid_current() > 0', `${c}::text = :sender`, `${c}::text || 'x' = 'u1x'`]);
  switch (ty) {
    case 'int':
    case 'bigint':
    case 'numeric':
    case 'float8':
      return r.pick([
        () => `${c} ${cmp()} ${value(ty)}`,
        () => `${c} ${r.pick(['IN', 'NOT IN'])} (${Array.from({ length: r.int(1, 4) }, () => value(ty)).join(', ')})`,
        () => `${c} ${r.pick(['BETWEEN', 'NOT BETWEEN', 'BETWEEN SYMMETRIC'])} ${value(ty)} AND ${value(ty)}`,
        // A parameter beside an expression (not a column, cast or literal) is typed text, which
        // verify rejects against a number: mostly literals there.
        () => `${c} ${r.pick(['+', '-', '*', '%'])} ${r.pick(['1', '2', c])} ${cmp()} ${r.chance(0.1) ? value(ty) : literalOf(r, ty)}`,
        () => `abs(${c}) ${cmp()} ${r.chance(0.1) ? value(ty) : literalOf(r, ty)}`,
        () => `coalesce(${c}, ${literalOf(r, ty)}) ${cmp()} ${r.chance(0.1) ? value(ty) : literalOf(r, ty)}`,
        () => `${c}::text = ${r.pick([':sender', "'1'"])}`,
        () => `${c} / ${r.pick(['1', '2'])} = ${literalOf(r, ty)}`,
      ])();
    case 'text':
      return r.pick([
        () => `${c} ${cmp()} ${value(ty)}`,
        () => `lower(${c}) = lower(${value(ty)})`,
        () => `upper(${c}) = ${r.pick(["'U1'", "'U3'", 'upper(:sender)'])}`,
        () => `${c} ${r.pick(['LIKE', 'NOT LIKE', 'ILIKE', 'NOT ILIKE'])} ${r.pick(["'u%'", "'%3'", "'_1'", "'%w%'", "'%'"])}`,
        () => `${c} ${r.pick(['~', '~*', '!~'])} ${r.pick(["'^u[0-3]$'", "'w'", "'^$'"])}`,
        () => `${c} ${r.pick(['IN', 'NOT IN'])} (${Array.from({ length: r.int(1, 4) }, () => value(ty)).join(', ')})`,
        () => `length(${c}) ${cmp()} ${r.pick(['0', '2', '3'])}`,
        () => `${c} || 'x' = ${r.pick(["'u1x'", "'rwx'"])}`,
        () => `coalesce(${c}, '') = ${value(ty)}`,
        () => `md5(${c}) LIKE 'a%'`,
      ])();
    case 'bool':
      return r.pick([c, `NOT ${c}`, `${c} = ${r.pick(['true', 'false'])}`, `${c} IS ${r.pick(['TRUE', 'NOT TRUE', 'FALSE', 'NOT FALSE', 'UNKNOWN', 'NOT UNKNOWN'])}`]);
    case 'timestamptz':
      return r.pick([
        () => `${c} ${cmp()} ${value(ty)}`,
        () => `${c} > CURRENT_TIMESTAMP - interval '1 day'`,
        () => `${c}::date ${cmp()} ${literalOf(r, 'date')}`,
        () => `date_trunc('day', ${c}) ${cmp()} '2005-06-01'::timestamptz`,
        () => `extract(year from ${c}) ${cmp()} 2005`,
      ])();
    case 'date':
      return r.pick([() => `${c} ${cmp()} ${value(ty)}`, () => `${c} + 1 ${cmp()} ${literalOf(r, 'date')}`])();
    case 'uuid':
      return r.pick([() => `${c} = ${value(ty)}`, () => `${c}::text LIKE '6f%'`, () => `${c} IN (${literalOf(r, 'uuid')}, ${value(ty)})`])();
    case 'jsonb':
      return r.pick([`${c}->>'k' = ${r.pick(["'v1'", ':sender'])}`, `${c} @> '{"k": "v2"}'`, `${c} ? 'k'`, `(${c}->'n')::int ${cmp()} ${r.pick(['1', ':level'])}`, `${c} #>> '{k}' = 'v1'`]);
    case 'text[]':
      return r.pick([`${c} && '{a}'`, `${c} @> '{b}'::text[]`, `${c} <@ '{a,b}'`, `'a' = ANY (${c})`]);
  }
}

function condition(r: Rng, insts: Inst[], depth = 0): string {
  if (depth >= 3 || r.chance(0.45)) return atom(r, insts);
  const roll = r.next();
  if (roll < 0.15) return `NOT (${condition(r, insts, depth + 1)})`;
  const n = r.int(2, 3);
  const op = roll < 0.6 ? 'AND' : 'OR';
  return `(${Array.from({ length: n }, () => condition(r, insts, depth + 1)).join(` ${op} `)})`;
}

/** A condition linking instance `b` to one of `before` through columns of the same type. */
function link(r: Rng, b: Inst, before: Inst[]): string {
  const a = r.pick(before);
  const pairs = COLUMNS[a.table]!.flatMap(([ca, ta]) => COLUMNS[b.table]!.filter(([, tb]) => tb === ta).map(([cb]) => [ca, cb] as const));
  const preferred = pairs.filter(([ca, cb]) => /(^id$|_id$|identity|member|author|team|owner_player|grp)/.test(ca) && /(^id$|_id$|identity|member|author|team|owner_player|grp)/.test(cb));
  const [ca, cb] = r.pick(preferred.length && r.chance(0.8) ? preferred : pairs.length ? pairs : [['id', 'id'] as const]);
  return `${a.alias}.${ca} = ${b.alias}.${cb}`;
}

/** One rule under `target` whose FROM may read the tables in `readable`. */
function genRule(r: Rng, target: string, readable: string[]): string {
  const extra = r.pick([0, 0, 0, 1, 1, 2]);
  const insts: Inst[] = [{ table: target, alias: `${target.slice(0, 2)}0` }];
  for (let i = 1; i <= extra; i++) {
    const table = r.chance(0.25) ? target : r.pick(readable.length ? readable : [target]);
    insts.push({ table, alias: `${table.slice(0, 2)}${i}` });
  }
  // The target need not come first in FROM.
  const order = [...insts];
  if (order.length > 1 && r.chance(0.4)) order.reverse();
  const wheres: string[] = [];
  let from = '';
  if (order.length === 1 && r.chance(0.5)) {
    // `SELECT * FROM t WHERE col …` without an alias.
    const only = { table: target, alias: target };
    const where = r.chance(0.9) ? ` WHERE ${condition(r, [only])}` : '';
    return `SELECT ${r.chance(0.5) ? '*' : `${target}.*`} FROM ${target}${where}`;
  }
  order.forEach((inst, i) => {
    const ref = `${inst.table} ${r.chance(0.2) ? 'AS ' : ''}${inst.alias}`;
    if (i === 0) {
      from = ref;
      return;
    }
    const before = order.slice(0, i);
    const style = r.pick(['join', 'join', 'comma', 'cross']);
    const cond = r.chance(0.85) ? link(r, inst, before) : condition(r, [...before, inst], 2);
    if (style === 'join') from += ` ${r.pick(['JOIN', 'INNER JOIN'])} ${ref} ON ${cond}`;
    else {
      from += style === 'comma' ? `, ${ref}` : ` CROSS JOIN ${ref}`;
      wheres.push(cond);
    }
  });
  if (r.chance(0.8)) wheres.push(condition(r, insts));
  const star = order.length === 1 && r.chance(0.5) ? '*' : `${insts[0]!.alias}.*`;
  return `SELECT ${star} FROM ${from}${wheres.length ? ` WHERE ${wheres.join(' AND ')}` : ''}`;
}

/** A config of 2–5 listed tables, each reading only tables listed before it (or, rarely, any: cycles). */
function genTables(r: Rng): Tables {
  const names = [...TABLE_NAMES].sort(() => r.next() - 0.5);
  const listed = names.slice(0, r.int(2, 5));
  const unlisted = names.slice(listed.length);
  const tables: Tables = {};
  listed.forEach((table, i) => {
    const readable = r.chance(0.05) ? names : [...listed.slice(0, i), ...unlisted];
    const rules = () => Array.from({ length: r.int(1, 3) }, () => genRule(r, table, readable));
    const spec: TableSpec = { select: r.chance(0.08) ? 'public' : rules() };
    if (r.chance(0.15)) spec.delete = rules();
    if (r.chance(0.1)) spec.update = { filter: rules(), check: rules() };
    if (r.chance(0.1)) spec.insert = { check: rules() };
    tables[table] = spec;
  });
  return tables;
}

// ---------------------------------------------------------------------------------------------
// Checking one config.

interface Failure {
  seed: string;
  source: string;
  problem: string;
  texts: string[];
}

/** Why a problem may have no position: these faults have no single place in the text. */
const NO_POSITION = [
  /^the rule is empty$/,
  /^the rule has no FROM$/,
  /^a rule is exactly one statement$/,
  /^PostgreSQL rejects this rule: /,
  /^the rule is too deeply nested/,
];

let catalog: Awaited<ReturnType<typeof db.catalog>>;
let check: Sql;
let ref: Sql;

const stats = {
  cases: 0,
  compiled: 0,
  rejected: 0,
  verified: 0,
  verifyRejected: 0,
  noPosition: new Map<string, number>(),
  messages: new Map<string, number>(),
  slowestMs: 0,
  longest: 0,
  compared: 0,
  comparisons: 0,
  skipped: new Map<string, number>(),
  skipSamples: new Map<string, string>(),
  ms: { compile: 0, verify: 0, compare: 0 },
};
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

function checkProblems(problems: RuleProblem[], tables: Tables, fail: (problem: string) => void): void {
  if (problems.length === 0) fail('a RuleConfigError without problems');
  const sites = sitesOf(tables);
  for (const p of problems) {
    bump(stats.messages, p.message.replace(/"[^"]*"|\d+|\$\d+|at or near .*/g, '…').slice(0, 60));
    if (typeof p.message !== 'string' || !p.message || typeof p.hint !== 'string' || !p.hint) fail(`a problem without message or hint: ${JSON.stringify(p)}`);
    if (!p.site) {
      if (!p.message.startsWith('rules form a cycle: ')) fail(`a problem without a site that is no cycle: ${p.message}`);
      continue;
    }
    const site = sites.find((s) => s.table === p.site!.table && s.kind === p.site!.kind && s.index === p.site!.index);
    if (!site) {
      fail(`a problem names a site that does not exist: ${JSON.stringify(p.site)}`);
      continue;
    }
    const text = textAt(tables, site);
    if (p.site.text !== text) fail(`the problem's site text differs from the rule at ${site.table}.${site.kind}[${site.index}]`);
    if (p.position === null) {
      bump(stats.noPosition, p.message.slice(0, 50));
      if (!NO_POSITION.some((re) => re.test(p.message))) fail(`no position, and no reason on the list: ${p.message}`);
      continue;
    }
    if (!Number.isInteger(p.position) || p.position < 0 || p.position > text.length) {
      fail(`position ${p.position} outside the rule (length ${text.length}): ${p.message}`);
      continue;
    }
    // A character offset never splits a surrogate pair.
    const c = text.charCodeAt(p.position);
    if (p.position > 0 && c >= 0xdc00 && c <= 0xdfff && /[\ud800-\udbff]/.test(text[p.position - 1]!)) fail(`position ${p.position} splits a surrogate pair: ${p.message}`);
    // An unknown name we planted is pointed at: the caret is on it or on its qualifier.
    const planted = /"(?:[a-z_]+\.)?(nosuch\d+)"/.exec(p.message);
    if (planted && /^unknown (column|table)/.test(p.message)) {
      const at = text.indexOf(planted[1]!, p.position);
      if (at < 0 || !/^[\w".\s]*$/.test(text.slice(p.position, at)) || at - p.position > 80) {
        fail(`the caret of "${p.message}" is at ${p.position} (${JSON.stringify(text.slice(p.position, p.position + 20))}), not on ${planted[1]}`);
      }
    }
  }
}

function compileTimed(tables: Tables): { rules: CompiledRules | null; error: unknown; ms: number } {
  const config = parseConfig({ tables }, {});
  const t0 = performance.now();
  try {
    const rules = compileRules(config, catalog);
    return { rules, error: null, ms: performance.now() - t0 };
  } catch (error) {
    return { rules: null, error, ms: performance.now() - t0 };
  }
}

/** Compiles and verifies one config; returns the rules when both pass. */
async function checkConfig(tables: Tables, fail: (problem: string) => void): Promise<CompiledRules | null> {
  stats.cases++;
  const longest = Math.max(...sitesOf(tables).map((s) => textAt(tables, s).length));
  stats.longest = Math.max(stats.longest, longest);
  const { rules, error, ms } = compileTimed(tables);
  stats.ms.compile += ms;
  stats.slowestMs = Math.max(stats.slowestMs, ms);
  if (ms > hangGuard(longest)) fail(`compileRules took ${Math.round(ms)} ms (hang guard ${Math.round(hangGuard(longest))} ms for a longest rule of ${longest} chars)`);
  if (!rules) {
    if (!(error instanceof RuleConfigError)) {
      fail(`compileRules threw ${error instanceof Error ? `${error.constructor.name}: ${error.message}\n${error.stack?.split('\n').slice(1, 6).join('\n')}` : String(error)}`);
      return null;
    }
    stats.rejected++;
    checkProblems(error.problems, tables, fail);
    return null;
  }
  stats.compiled++;
  const t0 = performance.now();
  try {
    await verifyRules(check, rules);
    stats.ms.verify += performance.now() - t0;
  } catch (err) {
    stats.ms.verify += performance.now() - t0;
    if (!(err instanceof RuleConfigError)) {
      fail(`verifyRules threw ${err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err)}`);
      return null;
    }
    stats.verifyRejected++;
    checkProblems(err.problems, tables, fail);
    return null;
  }
  stats.verified++;
  // No caller value is ever spliced into SQL text, whatever the rules are.
  const marker = "zq'\"$1:sender-ünï";
  const identity: Identity = { sender: marker, claims: Object.fromEntries([['sub', marker], ...['team', 'level', 'role', 'grp', 'day', 'ref', 'nope', 'flag'].map((k) => [k, `${marker}${k}`])]) };
  for (const table of Object.keys(tables)) {
    const { text } = visibilityQuery(rules, table, identity);
    if (text.includes('zq')) fail(`a caller's value is in the SQL text of ${table}'s visibility`);
  }
  return rules;
}

// ---------------------------------------------------------------------------------------------
// The differential comparison.

const SENDERS: Identity[] = [
  as('u1', { team: 2, level: 3, grp: 1, day: '2005-03-04', ref: UUIDS[0], amount: '2.5', score: '42', role: 'lead', since: '2005-01-01T00:00:00Z', flag: true }),
  as('u3', { team: '1', level: 'x', grp: '2', role: 'member', flag: 'no' }),
  as('2', { team: 'abc', level: 5, ref: 'not-a-uuid', amount: 'NaN', score: '99999999999999999999' }),
  as(null),
];

/** The reference binds parameters as untyped text; PostgreSQL infers their types from the rule. */
function refValue(identity: Identity, name: string): string | null {
  const v = name === 'sender' ? identity.sender : Object.hasOwn(identity.claims, name) ? identity.claims[name] : undefined;
  return v === undefined || v === null ? null : String(v);
}

function order(rules: CompiledRules, tables: Tables): string[] {
  const listed = Object.keys(tables);
  const deps = new Map(listed.map((t) => {
    const set = rules.policy(t)?.select;
    const reads = set && set !== 'public' ? set.flatMap(({ rule }) => rule.instances.map((i) => i.table)) : [];
    return [t, new Set(reads.filter((x) => x !== t && listed.includes(x)))];
  }));
  const out: string[] = [];
  const visit = (t: string) => {
    if (out.includes(t)) return;
    for (const d of deps.get(t) ?? []) visit(d);
    out.push(t);
  };
  listed.forEach(visit);
  return out;
}

/** The reference shadows a ruled table by a temporary table; a schema-qualified name would get past it. */
function referenceCannotRun(tables: Tables): boolean {
  return Object.values(tables).some((spec) =>
    Array.isArray(spec.select) &&
    spec.select.some((text) => {
      const tokens = tokenize(text);
      return tokens.some((t, i) => /^"?public"?$/i.test(t.text) && tokens[i + 1]?.text === '.');
    }),
  );
}

const sqlState = (err: unknown): string => String((err as { code?: unknown }).code ?? 'none');
const numeric = (xs: string[]) => [...xs].sort((a, b) => Number(a) - Number(b));

async function compiledVisible(rules: CompiledRules, table: string, identity: Identity): Promise<string[]> {
  const { text, values } = visibilityQuery(rules, table, identity);
  return (await check.unsafe<{ k: string }[]>(text, values as never[])).map((r) => r.k);
}

async function compare(tables: Tables, rules: CompiledRules, fail: (problem: string) => void): Promise<void> {
  if (referenceCannotRun(tables)) {
    bump(stats.skipped, 'schema-qualified table');
    return;
  }
  stats.compared++;
  const t0 = performance.now();
  try {
    await compareAll(tables, rules, fail);
  } finally {
    stats.ms.compare += performance.now() - t0;
  }
}

async function compareAll(tables: Tables, rules: CompiledRules, fail: (problem: string) => void): Promise<void> {
  const rs = { name: 'fuzz', order: order(rules, tables), tables: Object.fromEntries(Object.entries(tables).map(([t, s]) => [t, s.select])) };
  for (const identity of SENDERS) {
    let want: Record<string, string[]>;
    try {
      want = await reference(ref, rs, identity, refValue);
    } catch (err) {
      // Untyped parameters, values that do not convert, and errors of the data (a cast of a stored
      // value) stop the reference; the compiled rule turns the first two into NULL instead.
      bump(stats.skipped, `reference ${sqlState(err)}`);
      if (!stats.skipSamples.has(sqlState(err))) stats.skipSamples.set(sqlState(err), `${(err as Error).message} in ${JSON.stringify(rs.tables).slice(0, 600)}`);
      continue;
    }
    for (const table of rs.order) {
      let got: string[];
      try {
        got = await compiledVisible(rules, table, identity);
      } catch (err) {
        const state = sqlState(err);
        bump(stats.skipped, `compiled ${state}`);
        // A rule may fail on stored data (a cast, a division); anything else is the compiler's fault.
        if (!state.startsWith('22') && state !== '57014') fail(`the compiled visibility of ${table} fails for ${JSON.stringify(identity.sender)}: ${sqlState(err)} ${(err as Error).message}`);
        continue;
      }
      stats.comparisons++;
      const w = numeric(want[table] ?? []);
      const g = numeric(got);
      if (JSON.stringify(w) !== JSON.stringify(g)) fail(`${table} for ${JSON.stringify(identity.sender)} ${JSON.stringify(identity.claims)}: compiled ${JSON.stringify(g)}, reference ${JSON.stringify(w)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  await loadParser();
  await db.sql.unsafe(SCHEMA);
  await db.sql.unsafe(EXTRA);
  await load(db.sql, generate(SEED));
  await loadExtra(db.sql, rng(SEED).fork('data'));
  catalog = await db.catalog();
  // A statement timeout bounds any rule the fuzzer makes expensive (a cross join of everything).
  check = connect(db.url, { max: 1, connection: { statement_timeout: 5000 } });
  // The reference shadows tables between statements: no cached plans.
  ref = connect(db.url, { max: 1, prepare: false, connection: { statement_timeout: 5000 } });
});

afterAll(async () => {
  await check?.end({ timeout: 5 });
  await ref?.end({ timeout: 5 });
  const top = (m: Map<string, number>, n = 12) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  console.log(
    `fuzz-rules FUZZ_SEED=${SEED} FUZZ_RUNS=${MUTATIONS}: ${stats.cases} configs; compiled ${stats.compiled}, rejected ${stats.rejected}, verified ${stats.verified}, ` +
      `rejected by verify ${stats.verifyRejected}; slowest compile ${Math.round(stats.slowestMs)} ms; longest rule ${stats.longest} chars; ` +
      `${stats.compared} rule sets compared with the reference (${stats.comparisons} comparisons)\n` +
      `  ms: ${JSON.stringify(Object.fromEntries(Object.entries(stats.ms).map(([k, v]) => [k, Math.round(v)])))}\n` +
      `  no position: ${JSON.stringify(top(stats.noPosition))}\n  skipped: ${JSON.stringify(top(stats.skipped))}\n  skip samples: ${JSON.stringify([...stats.skipSamples.values()].map((x) => x.slice(0, 160)))}\n  messages: ${JSON.stringify(top(stats.messages, 25))}`,
  );
});

function reporter(source: string, failures: Failure[], tables: () => Tables) {
  return (problem: string) => {
    if (failures.length >= 20) return;
    const t = tables();
    failures.push({ seed: `FUZZ_SEED=${SEED}`, source, problem, texts: sitesOf(t).map((s) => `${s.table}.${s.kind}[${s.index}]: ${shown(textAt(t, s))}`) });
  };
}

describe('regressions found by this fuzzer', () => {
  const problemOf = (text: string): RuleProblem => {
    const { rules, error } = compileTimed({ account: { select: [text] } });
    expect(rules).toBeNull();
    expect(error).toBeInstanceOf(RuleConfigError);
    return (error as RuleConfigError).problems[0]!;
  };

  it('a NUL ends nothing: the text after it is not silently dropped', () => {
    // libpg-query reads a C string: this compiled as `WHERE team = 1`, losing the sender check.
    const text = 'SELECT * FROM account WHERE team = 1\u0000 AND identity = :sender';
    const p = problemOf(text);
    expect(p.message).toContain('NUL');
    expect(p.position).toBe(text.indexOf('\u0000'));
  });

  it.each([
    ['operators', `SELECT * FROM account WHERE level = ${Array.from({ length: 3000 }, () => '1').join(' + ')}`],
    ['NOT', `SELECT * FROM account WHERE ${'NOT '.repeat(3000)}true`],
    ['calls', `SELECT * FROM account WHERE identity = ${'lower('.repeat(2000)}:sender${')'.repeat(2000)}`],
    ['casts', `SELECT * FROM account WHERE level = 1${'::int'.repeat(2000)}`],
  ])('deeply nested %s are a problem with a position, not a RangeError', (_name, text) => {
    const p = problemOf(text);
    expect(p.message).toMatch(/too deeply nested/);
    expect(p.position).not.toBeNull();
  });

  it('a parse tree too deep for the parser is a problem, not a RangeError', () => {
    const p = problemOf(`SELECT * FROM account WHERE level = ${Array.from({ length: 50000 }, () => '1').join(' + ')}`);
    expect(p.message).toMatch(/too deeply nested/);
  });

  it('an ORDER BY of a deep expression is reported at its place', () => {
    const text = `SELECT * FROM account ORDER BY ${Array.from({ length: 20000 }, () => 'level').join(' + ')}`;
    const p = problemOf(text);
    expect(p.message).toMatch(/ORDER BY|too deeply nested/);
  });

  it('an empty target list is pointed at', () => {
    const p = problemOf('  SELECT FROM account WHERE identity = :sender');
    expect(p.message).toContain('returns no columns');
    expect(p.position).toBe(2);
  });

  it('an ON condition may use only the tables of its own join, as in PostgreSQL', () => {
    // PostgreSQL: invalid reference to FROM-clause entry for table "a".
    const text = 'SELECT a.* FROM account a, admin d JOIN player p ON p.account_id = a.id WHERE d.identity = :sender';
    const p = problemOf(text);
    expect(p.message).toContain('"a" cannot be used in this ON condition');
    expect(p.position).toBe(text.indexOf('a.id'));
    const unqualified = problemOf('SELECT a.* FROM account a, admin d JOIN player p ON account_id = team WHERE d.identity = :sender');
    expect(unqualified.message).toContain('cannot be used in this ON condition');
    // Within its join an ON condition sees every table joined so far.
    const ok = compileTimed({ account: { select: ['SELECT a.* FROM account a JOIN admin d ON true JOIN player p ON p.account_id = a.id AND d.identity = :sender'] } });
    expect(ok.error).toBeNull();
  });
});

describe(`rule compiler fuzz (FUZZ_SEED=${SEED})`, () => {
  it('pathological texts: deep nesting, long inputs, bytes of every kind', async () => {
    const big = (n: number, piece: string, sep: string) => Array.from({ length: n }, () => piece).join(sep);
    const texts = [
      '', ' ', ';', ';;', '--', '/*', '/* */', "'", '"', '$1', ':sender', '::', '\u0000', 'SELECT', 'SELECT *', 'SELECT * FROM', '(', ')',
      `SELECT * FROM account WHERE ${'('.repeat(5000)}true${')'.repeat(5000)}`,
      `SELECT * FROM account WHERE ${'('.repeat(20000)}true${')'.repeat(20000)}`,
      `SELECT * FROM account WHERE ${'NOT '.repeat(1000)}true`,
      `SELECT * FROM account WHERE ${'NOT '.repeat(5000)}true`,
      `SELECT * FROM account WHERE ${'NOT '.repeat(20000)}true`,
      `SELECT * FROM account WHERE level = ${big(1000, '1', ' + ')}`,
      `SELECT * FROM account WHERE level = ${big(3000, '1', ' + ')}`,
      `SELECT * FROM account WHERE level = ${big(10000, '1', ' + ')}`,
      `SELECT * FROM account WHERE level = ${big(50000, '1', ' + ')}`,
      `SELECT * FROM account WHERE level = 1${'::int'.repeat(2000)}`,
      `SELECT * FROM account WHERE level = 1${'::int'.repeat(30000)}`,
      `SELECT * FROM account WHERE identity = ${'lower('.repeat(2000)}:sender${')'.repeat(2000)}`,
      `SELECT * FROM account WHERE identity = ${'coalesce('.repeat(3000)}:sender${', NULL)'.repeat(3000)}`,
      `SELECT * FROM account WHERE ${big(5000, 'level = 1', ' AND ')}`,
      `SELECT * FROM account WHERE ${big(5000, 'level = 1', ' OR ')}`,
      `SELECT * FROM account WHERE level IN (${big(20000, '1', ', ')})`,
      `SELECT * FROM account WHERE identity = :${'s'.repeat(100_000)}`,
      `SELECT * FROM account WHERE identity = '${'x'.repeat(1_000_000)}'`,
      `SELECT * FROM account WHERE ${'x'.repeat(100_000)} = 1`,
      `SELECT * FROM ${'a'.repeat(5000)}`,
      `SELECT a0.* FROM account a0 ${Array.from({ length: 60 }, (_, i) => `JOIN admin d${i} ON d${i}.identity = :sender`).join(' ')}`,
      `SELECT a0.* FROM account a0 ${Array.from({ length: 300 }, (_, i) => `JOIN account a${i + 1} ON a${i + 1}.id = a${i}.id`).join(' ')}`,
      `${'/* */'.repeat(20000)}SELECT * FROM account`,
      `SELECT * FROM account WHERE identity = :sender${'\u0000'.repeat(10)}`,
      `SELECT * FROM account WHERE identity = '\u0000'`,
      `SELECT * FROM account WHERE identity = E'\\u0000'`,
      `SELECT * FROM account WHERE identity = U&'\\0000'`,
      `SELECT * FROM account WHERE identity = '\ud800'`,
      `SELECT * FROM "\ud800" WHERE identity = :sender`,
      `SELECT * FROM account WHERE identity = '👩‍💻' AND :sender = identity`,
      `SELECT * FROM account WHERE 👩‍💻 = :sender`,
      `SELECT * FROM account WHERE identity = :sender 👩‍💻`,
      `SELECT * FROM account WHERE identity = :👩`,
      `SELECT * FROM account WHERE identity = :"sender"`,
      `SELECT * FROM account WHERE identity = :$1`,
      `SELECT * FROM account WHERE identity = $1`,
      `SELECT * FROM account WHERE identity = $${'9'.repeat(30)}`,
      `SELECT * FROM account WHERE identity = $$${'$'.repeat(1000)}`,
      `SELECT * FROM account WHERE identity = $q$ :sender $q$`,
      `SELECT * FROM account WHERE level = 99999999999999999999999999999999999999`,
      `SELECT * FROM account WHERE level = 1e${'9'.repeat(100)}`,
      `SELECT * FROM account WHERE level::numeric(1000, 2) = 1`,
      `SELECT * FROM account WHERE level::int(${big(200, '1', ', ')}) = 1`,
      `SELECT * FROM account WHERE level::${'int'.repeat(100)} = 1`,
      `SELECT * FROM account\r\nWHERE\tidentity\u00a0= :sender`,
      `select * from ACCOUNT where IDENTITY = :SENDER`,
      `SELECT * FROM "account" WHERE "identity" = :sender`,
      `SELECT * FROM U&"\\0061ccount" WHERE identity = :sender`,
      `SELECT * FROM account WHERE identity = :sender; SELECT * FROM account`,
      `SELECT * FROM account WHERE identity = :sender;\u0000`,
      `\ufeffSELECT * FROM account WHERE identity = :sender`,
      ...Array.from({ length: 40 }, (_, i) => String.fromCharCode(i) + 'SELECT * FROM account' + String.fromCharCode(127 - i)),
    ];
    const failures: Failure[] = [];
    for (const [i, text] of texts.entries()) {
      const tables: Tables = { account: { select: [OWN, text || ' '] }, player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.account_id'], delete: [text || ' '] } };
      const fail = reporter(`pathological #${i}`, failures, () => tables);
      const rules = await checkConfig(tables, fail);
      if (rules) await compare(tables, rules, fail);
    }
    expect(failures).toEqual([]);
  });

  it(`${MUTATIONS} token-level mutations of the corpus`, async () => {
    const r = rng(SEED).fork('mutations');
    const sources = corpus();
    const failures: Failure[] = [];
    const candidates: { source: string; tables: Tables; rules: CompiledRules }[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < MUTATIONS; i++) {
      const base = r.pick(sources);
      const tables = clone(base.tables);
      const sites = sitesOf(tables);
      for (let k = r.chance(0.15) ? 2 : 1; k > 0; k--) {
        const site = r.pick(sites);
        let text = textAt(tables, site);
        for (let m = r.pick([1, 1, 1, 2, 2, 3]); m > 0; m--) text = mutate(r, text);
        // The config refuses an empty rule before the compiler sees it.
        listAt(tables, site)[site.index - 1] = text || ' ';
      }
      const source = `mutation #${i} of "${base.name}"`;
      const fail = reporter(source, failures, () => tables);
      const rules = await checkConfig(tables, fail);
      const key = JSON.stringify(tables);
      if (rules && !seen.has(key)) {
        seen.add(key);
        candidates.push({ source, tables, rules });
      }
    }
    // Compare a seeded sample of what compiled with the reference.
    const sample = candidates.sort(() => r.next() - 0.5).slice(0, DIFFERENTIAL);
    for (const c of sample) await compare(c.tables, c.rules, reporter(c.source, failures, () => c.tables));
    expect(failures).toEqual([]);
    expect(stats.compiled).toBeGreaterThan(MUTATIONS / 20);
  });

  it(`${GENERATED} generated rule sets`, async () => {
    const r = rng(SEED).fork('grammar');
    const failures: Failure[] = [];
    let compared = 0;
    const before = stats.comparisons;
    for (let i = 0; i < GENERATED; i++) {
      const tables = genTables(r);
      const fail = reporter(`generated #${i}`, failures, () => tables);
      const rules = await checkConfig(tables, fail);
      if (rules && compared < DIFFERENTIAL) {
        compared++;
        await compare(tables, rules, fail);
      }
    }
    expect(failures).toEqual([]);
    // The comparison is not vacuous.
    expect(stats.comparisons - before).toBeGreaterThan(DIFFERENTIAL);
  });
});
