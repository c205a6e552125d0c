import { sql as pgsql } from 'pg-sql2';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchParams, type CompiledRules, type Identity } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { as, compile, visibilityQuery, visible } from './support/rules.ts';

// Identities and claims are data (docs/rules.md, "Binding"): whatever a sender or a claim contains, it is
// bound as a value, never spliced into SQL, and a value that does not convert matches nothing.
const db = useTestDatabase();

const INJECT = "' OR 1=1 --";
// Right-to-left text, a ZWJ emoji sequence and a combining acute accent (e + U+0301, not é).
const UNICODE = '👩‍💻 مرحبا שלום e\u0301';
const DOC1 = '6f1c2d3e-0000-4000-8000-000000000001';
const DOC2 = '6f1c2d3e-0000-4000-8000-000000000002';
const BIG = 'a'.repeat(100_000);

let rules: CompiledRules;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL UNIQUE, name text);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY REFERENCES account(id), level int NOT NULL);
    CREATE TABLE doc (id uuid PRIMARY KEY, title text NOT NULL);
  `);
  // Hostile strings go in as bound values too, so the data is exactly what the test says.
  const accounts: [number, string, string][] = [
    [1, 'alice', 'Alice'],
    [2, 'bob', '42'],
    [3, 'carol', '{"a":1}'],
    [4, 'dave', '["x",1]'],
    [5, INJECT, 'quote'],
    [6, UNICODE, 'unicode'],
    [7, '\uFFFD', 'replacement character'],
  ];
  for (const [id, identity, name] of accounts) await db.sql`INSERT INTO account VALUES (${id}, ${identity}, ${name})`;
  await db.sql.unsafe(`
    INSERT INTO admin VALUES ('carol');
    INSERT INTO player VALUES (1, 10), (2, 10), (3, 20), (4, 20), (5, 30), (6, 30), (7, 40);
    INSERT INTO doc VALUES ('${DOC1}', 'one'), ('${DOC2}', 'two');
  `);
  rules = await compile(db, {
    account: {
      select: [
        'SELECT * FROM account WHERE identity = :sender',
        'SELECT account.* FROM account JOIN admin ON admin.identity = :sender',
        'SELECT * FROM account WHERE name = :name',
      ],
    },
    player: {
      select: [
        'SELECT p.* FROM account a JOIN player p ON a.id = p.id',
        'SELECT * FROM player WHERE level = :level',
        'SELECT * FROM player WHERE id = :sub',
      ],
    },
    doc: { select: 'SELECT * FROM doc WHERE id = :doc' },
  });
});

interface Case {
  name: string;
  identity: Identity;
  account: string[];
  player: string[];
  doc: string[];
  /** Strings that must not appear in any SQL text (default: the sender and every string claim). */
  secrets?: string[];
  /** Values that must be among the bound values of the given table's query. */
  bound?: { table: string; value: unknown }[];
  /** The exact bound values of a table's query. */
  values?: Partial<Record<string, unknown[]>>;
}

const nobody = (claims: Record<string, unknown>): Identity => as('nobody', claims);

const CASES: Case[] = [
  // Senders.
  { name: 'the injection string, stored as an identity, sees exactly its own row', identity: as(INJECT), account: ['5'], player: ['5'], doc: [], bound: [{ table: 'account', value: INJECT }] },
  { name: "' OR '1'='1", identity: as("' OR '1'='1"), account: [], player: [], doc: [] },
  { name: 'a sender of $1', identity: as('$1'), account: [], player: [], doc: [], secrets: [], bound: [{ table: 'account', value: '$1' }] },
  { name: 'a sender of :sender', identity: as(':sender'), account: [], player: [], doc: [], bound: [{ table: 'account', value: ':sender' }] },
  { name: 'a sender that tries to drop a table', identity: as('"); DROP TABLE account; --'), account: [], player: [], doc: [], bound: [{ table: 'account', value: '"); DROP TABLE account; --' }] },
  { name: "an admin's name with a comment does not make an admin", identity: as("carol' --"), account: [], player: [], doc: [] },
  { name: 'a 100 kB sender', identity: as(BIG), account: [], player: [], doc: [], bound: [{ table: 'account', value: BIG }] },
  { name: 'a 100 kB sender that starts with a real identity', identity: as(`alice${BIG}`), account: [], player: [], doc: [] },
  { name: 'unicode (RTL, ZWJ emoji, combining mark) matches exactly its row', identity: as(UNICODE), account: ['6'], player: ['6'], doc: [], bound: [{ table: 'account', value: UNICODE }] },
  { name: 'the NFC form of that unicode identity is another identity', identity: as(UNICODE.normalize('NFC')), account: [], player: [], doc: [] },
  { name: 'a sender with NUL matches nothing and raises no error', identity: as('alice\u0000'), account: [], player: [], doc: [], values: { account: [null, null, null] } },
  { name: 'a NUL-only sender', identity: as('\u0000'), account: [], player: [], doc: [] },
  { name: 'a lone surrogate is not U+FFFD', identity: as('\uD800'), account: [], player: [], doc: [], values: { account: [null, null, null] } },
  { name: 'U+FFFD itself (control for the lone surrogate)', identity: as('\uFFFD'), account: ['7'], player: ['7'], doc: [], values: { account: ['\uFFFD', '\uFFFD', null] } },
  { name: 'case, leading and trailing spaces matter', identity: as('ALICE'), account: [], player: [], doc: [] },
  { name: 'a trailing space', identity: as('alice '), account: [], player: [], doc: [] },
  { name: 'LIKE wildcards are plain characters', identity: as('%'), account: [], player: [], doc: [] },
  { name: 'an underscore wildcard', identity: as('_lice'), account: [], player: [], doc: [] },
  { name: 'a backslash', identity: as('alice\\'), account: [], player: [], doc: [] },
  { name: 'an empty sender', identity: as(''), account: [], player: [], doc: [] },
  { name: 'no sender', identity: as(null), account: [], player: [], doc: [] },
  { name: 'a normal sender (control)', identity: as('alice'), account: ['1'], player: ['1'], doc: [] },
  { name: 'an admin (control)', identity: as('carol'), account: ['1', '2', '3', '4', '5', '6', '7'], player: ['1', '2', '3', '4', '5', '6', '7'], doc: [] },

  // Claims compared with a text column: scalars as text, objects and arrays as their JSON text.
  { name: 'a number claim against a text column', identity: nobody({ name: 42 }), account: ['2'], player: ['2'], doc: [], bound: [{ table: 'account', value: '42' }] },
  { name: 'an object claim against a text column', identity: nobody({ name: { a: 1 } }), account: ['3'], player: ['3'], doc: [], bound: [{ table: 'account', value: '{"a":1}' }] },
  { name: 'an array claim against a text column', identity: nobody({ name: ['x', 1] }), account: ['4'], player: ['4'], doc: [] },
  { name: 'an injection in a claim', identity: nobody({ name: INJECT }), account: [], player: [], doc: [], bound: [{ table: 'account', value: INJECT }] },
  { name: 'a boolean claim against a text column', identity: nobody({ name: true }), account: [], player: [], doc: [] },

  // Claims compared with an int column.
  { name: 'an int claim', identity: nobody({ level: 10 }), account: [], player: ['1', '2'], doc: [], bound: [{ table: 'player', value: '10' }] },
  { name: 'an int claim as a string', identity: nobody({ level: '20' }), account: [], player: ['3', '4'], doc: [] },
  { name: 'an injection in an int claim', identity: nobody({ level: '10 OR 1=1' }), account: [], player: [], doc: [], bound: [{ table: 'player', value: null }] },
  { name: 'a fractional number against an int column', identity: nobody({ level: 10.5 }), account: [], player: [], doc: [] },
  { name: 'exponent notation against an int column', identity: nobody({ level: '1e1' }), account: [], player: [], doc: [] },
  { name: 'an int claim out of the int4 range', identity: nobody({ level: 2 ** 40 }), account: [], player: [], doc: [] },
  { name: 'a huge integer string', identity: nobody({ level: '9'.repeat(40) }), account: [], player: [], doc: [] },
  { name: 'an array against an int column', identity: nobody({ level: [10] }), account: [], player: [], doc: [] },
  { name: 'an object against an int column', identity: nobody({ level: { level: 10 } }), account: [], player: [], doc: [] },
  { name: 'a boolean against an int column', identity: nobody({ level: true }), account: [], player: [], doc: [] },
  { name: 'a non-integer sub against an int column matches nothing, no error', identity: as('abc'), account: [], player: [], doc: [], bound: [{ table: 'player', value: null }] },
  { name: 'an integer sub', identity: nobody({ sub: '3' }), account: [], player: ['3'], doc: [] },
  { name: 'an injection in sub', identity: nobody({ sub: '1; DROP TABLE player' }), account: [], player: [], doc: [] },

  // Claims compared with a uuid column.
  { name: 'a uuid claim', identity: nobody({ doc: DOC1 }), account: [], player: [], doc: [DOC1], bound: [{ table: 'doc', value: DOC1 }] },
  { name: 'a uuid claim in upper case', identity: nobody({ doc: DOC2.toUpperCase() }), account: [], player: [], doc: [DOC2] },
  { name: 'a uuid claim in braces', identity: nobody({ doc: `{${DOC1}}` }), account: [], player: [], doc: [DOC1] },
  { name: 'a malformed uuid', identity: nobody({ doc: 'not-a-uuid' }), account: [], player: [], doc: [], bound: [{ table: 'doc', value: null }] },
  { name: 'a uuid missing a digit', identity: nobody({ doc: DOC1.slice(0, -1) }), account: [], player: [], doc: [] },
  { name: 'a uuid followed by an injection', identity: nobody({ doc: `${DOC1}' OR 1=1 --` }), account: [], player: [], doc: [] },
  { name: 'a number against a uuid column', identity: nobody({ doc: 12345 }), account: [], player: [], doc: [] },

  // Claim names.
  { name: 'a claim named sender does not replace the sender', identity: as('mallory', { sender: 'alice' }), account: [], player: [], doc: [] },
  { name: 'an own __proto__ claim does not supply other claims', identity: { sender: 'nobody', claims: JSON.parse('{"__proto__": {"level": 10, "name": "42"}}') as Record<string, unknown> }, account: [], player: [], doc: [] },
];

const tables = ['account', 'player', 'doc'] as const;

/**
 * None of `secrets` is in `text`. A secret a benign caller's text also contains (`$1`, a digit that is
 * part of a placeholder) proves nothing either way, so it is skipped; only such short ones may be.
 */
function expectNotInText(text: string, benign: string, secrets: string[]): void {
  for (const secret of secrets) {
    if (benign.includes(secret)) {
      expect(secret.length, `${JSON.stringify(secret)} is in every caller's SQL`).toBeLessThanOrEqual(2);
      continue;
    }
    expect(text.includes(secret), `SQL contains ${JSON.stringify(secret.slice(0, 40))}`).toBe(false);
  }
}
/** Every string in an identity (sender and claims, deeply): none may reach the SQL text. */
function stringsOf(identity: Identity): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(identity.sender);
  walk(identity.claims);
  return out.filter((s) => s.length > 0);
}

describe('hostile senders and claims are data', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      for (const table of tables) {
        expect({ table, rows: await visible(db, rules, table, c.identity) }).toEqual({ table, rows: [...c[table]].sort() });

        const query = visibilityQuery(rules, table, c.identity);
        // The SQL text does not depend on who asks: it is the text a benign caller gets.
        const benign = visibilityQuery(rules, table, as('alice', { name: 'x', level: 1, doc: DOC1 })).text;
        expect(query.text).toBe(benign);
        expectNotInText(query.text, benign, c.secrets ?? stringsOf(c.identity));
        for (const b of c.bound ?? []) if (b.table === table) expect(query.values).toContainEqual(b.value);
        const exact = c.values?.[table];
        if (exact) expect(query.values).toEqual(exact);
      }
    });
  }

  it('nothing was dropped or changed', async () => {
    const [counts] = await db.sql<{ a: number; p: number; d: number }[]>`
      SELECT (SELECT count(*) FROM account)::int AS a, (SELECT count(*) FROM player)::int AS p, (SELECT count(*) FROM doc)::int AS d`;
    expect(counts).toEqual({ a: 7, p: 7, d: 2 });
  });

  it('a claim named like an Object.prototype member is missing, not the member', async () => {
    const proto = await compile(db, {
      account: { select: ['SELECT * FROM account WHERE name = :constructor', 'SELECT * FROM account WHERE identity = :toString OR name = :__proto__'] },
    });
    expect(await visible(db, proto, 'account', as('alice'))).toEqual([]);
    expect(await visible(db, proto, 'account', as('alice', { constructor: 'Alice' }))).toEqual(['1']);
    expect(visibilityQuery(proto, 'account', as('alice')).values).toEqual([null, null, null]);
  });

  it('the unicode identity is not in NFC, so the NFC case above is a different string', () => {
    expect(UNICODE.normalize('NFC')).not.toBe(UNICODE);
    expect(UNICODE.normalize('NFC').length).toBe(UNICODE.length - 1);
  });

  it('the SQL text of a 100 kB sender is as short as any other', () => {
    const { text, values } = visibilityQuery(rules, 'account', as(BIG));
    expect(text.length).toBeLessThan(2_000);
    expect(values.some((v) => v === BIG)).toBe(true);
  });
});

describe('the batch rendering binds each subscriber the same way', () => {
  /** Visible ids of `table` for each subscriber, in one statement over `unnest(...)`. */
  async function batchVisible(table: string, identities: Identity[]): Promise<{ sets: string[][]; text: string; values: unknown[] }> {
    const batch = new BatchParams();
    const row = Symbol(table);
    // Render the rules first: that is what registers the parameter columns of the batch relation.
    const condition = rules.visibility(table, row, batch);
    const subscribers = identities.map((identity, i) => ({ id: `s${i}`, identity }));
    const { text, values } = pgsql.compile(
      pgsql`SELECT ${batch.sid} AS sid, ${pgsql.identifier(row, 'id')}::text AS k
              FROM ${batch.relation(subscribers)}
              JOIN ${pgsql.identifier(rules.schema, table)} AS ${pgsql.identifier(row)} ON ${condition}
             ORDER BY 1, 2`,
    );
    const sets = identities.map((): string[] => []);
    for (const r of await db.sql.unsafe<{ sid: string; k: string }[]>(text, values as never[])) sets[Number(r.sid.slice(1))]!.push(r.k);
    return { sets, text, values };
  }

  it('hostile and normal subscribers in one batch see exactly what each sees alone', async () => {
    const identities = [
      as('alice'),
      ...CASES.map((c) => c.identity),
      as('carol'),
      nobody({ level: 20, doc: DOC2 }),
      as(null),
    ];
    for (const table of tables) {
      const { sets, text, values } = await batchVisible(table, identities);
      const alone = await Promise.all(identities.map((identity) => visible(db, rules, table, identity)));
      expect(sets.map((s) => [...s].sort())).toEqual(alone);
      // Spot checks, so a batch that returned nothing for everyone could not pass.
      expect(sets[0]).toEqual(table === 'doc' ? [] : ['1']);
      expect(sets[identities.length - 3]!.length).toBe(table === 'doc' ? 0 : 7);

      // One bound array per column: subscriber ids, then each parameter, whoever the subscribers are.
      expect(values.every((v) => Array.isArray(v) && v.length === identities.length)).toBe(true);
      const benign = await batchVisible(table, identities.map((_, i) => as(`user${i}`)));
      expect(text).toBe(benign.text);
      expectNotInText(text, benign.text, identities.flatMap(stringsOf));
    }
  });

  it('the subscriber relation carries the hostile values as array elements', async () => {
    const { values } = await batchVisible('account', [as(INJECT), as('"); DROP TABLE account; --'), nobody({ name: { a: 1 } }), as('x\u0000')]);
    const arrays = values as (string | null)[][];
    expect(arrays[0]).toEqual(['s0', 's1', 's2', 's3']);
    expect(arrays).toContainEqual([INJECT, '"); DROP TABLE account; --', 'nobody', null]);
    expect(arrays).toContainEqual([null, null, '{"a":1}', null]);
  });
});
