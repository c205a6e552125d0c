import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanSync } from 'libpg-query';
import { sql as pgsql } from 'pg-sql2';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { policies as policiesCommand } from '../src/cli/policies.ts';
import type { TypeRef } from '../src/db/index.ts';
import { applyPolicies, coercedParamText, dropPolicies, planPolicies, policyScript, type PolicyPlan } from '../src/policies/index.ts';
import { coerceParam, loadParser, type CompiledRules, type Identity } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { compile, visible } from './support/rules.ts';

// Native PostgreSQL policies (`rowgate policies`) against the gateway's compiled rules: a role
// without BYPASSRLS, connected "directly" with the rowgate.sender / rowgate.claims settings,
// must see exactly the rows the compiled visibility returns, for every sender (unknown, unset,
// empty, hostile, inconvertible) and every table, on generated data with several rule sets;
// writes must be allowed or refused as the write rules say.
const db = useTestDatabase();
const ROLE = `rowgate_policy_${randomBytes(5).toString('hex')}`;

const SCHEMA = `
  CREATE TYPE mood AS ENUM ('happy', 'sad');
  CREATE TABLE account (id int PRIMARY KEY, identity text, team int, level int NOT NULL);
  CREATE TABLE admin (id int PRIMARY KEY, identity text NOT NULL);
  CREATE TABLE team_member (id int PRIMARY KEY, team int NOT NULL, identity text NOT NULL, role text NOT NULL);
  CREATE TABLE player (id int PRIMARY KEY, account_id int, level int NOT NULL);
  CREATE TABLE item (id int PRIMARY KEY, owner_player int, public bool NOT NULL);
  CREATE TABLE thing (id int PRIMARY KEY, u uuid, d date, ts timestamptz, b bool, m mood, n numeric, f float8, i8 int8, label text);
  CREATE TABLE board (id int PRIMARY KEY, name text NOT NULL);
  CREATE TABLE seat (board_id int REFERENCES board(id), identity text, role text NOT NULL, PRIMARY KEY (board_id, identity));
  CREATE TABLE note (id int PRIMARY KEY, board_id int NOT NULL REFERENCES board(id), owner text NOT NULL,
                     body text NOT NULL, shared boolean NOT NULL DEFAULT false);
`;
const DATA_TABLES = ['account', 'admin', 'team_member', 'player', 'item', 'thing'] as const;

// ---------------------------------------------------------------------------------------------
// Deterministic data (the generator of rules-differential.test.ts, plus typed `thing` rows).

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const IDS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
const UUIDS = ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '00000000-0000-0000-0000-000000000001'];

function generate(seed: number): Record<(typeof DATA_TABLES)[number], Record<string, unknown>[]> {
  const rnd = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const chance = (p: number) => rnd() < p;
  const account = Array.from({ length: 14 }, (_, i) => {
    const who = pick(IDS);
    return { id: i + 1, identity: chance(0.1) ? null : chance(0.1) ? who.toUpperCase() : who, team: chance(0.15) ? null : int(1, 3), level: int(1, 5) };
  });
  // The hostile sender is an identity in the data: it must match exactly that, never more.
  account.push({ id: 15, identity: "' OR 1=1 --", team: 9, level: 1 });
  const admins = new Set<string>();
  while (admins.size < 2) admins.add(chance(0.2) ? 'u9' : pick(IDS));
  const admin = [...admins].map((identity, i) => ({ id: i + 1, identity }));
  const team_member = Array.from({ length: 12 }, (_, i) => ({ id: i + 1, team: int(1, 3), identity: pick(IDS), role: pick(['lead', 'member', 'member', 'guest']) }));
  const player = Array.from({ length: 24 }, (_, i) => ({ id: i + 1, account_id: chance(0.05) ? null : int(1, 16), level: int(1, 5) }));
  const item = Array.from({ length: 36 }, (_, i) => ({ id: i + 1, owner_player: chance(0.1) ? null : int(1, 26), public: chance(0.3) }));
  const thing = Array.from({ length: 16 }, (_, i) => ({
    id: i + 1,
    u: chance(0.5) ? pick(UUIDS) : null,
    d: pick(['2024-02-29', '2024-03-01', null]),
    ts: pick(['2024-01-01T10:00:00Z', '2024-01-01T12:00:00+02:00', null]),
    b: pick([true, false, null]),
    m: pick(['happy', 'sad', null]),
    n: pick(['1.5', '2', null]),
    f: pick([0.5, 1e21, null]),
    i8: pick(['9007199254740993', '3', null]),
    label: pick(['1', '1.5', 'true', '[1,2]', null]),
  }));
  return { account, admin, team_member, player, item, thing };
}

async function load(seed: number): Promise<void> {
  const data = generate(seed);
  await db.sql.begin(async (tx) => {
    await tx.unsafe(`TRUNCATE ${DATA_TABLES.join(', ')}`);
    for (const table of DATA_TABLES) await tx`INSERT INTO ${tx(table)} ${tx(data[table] as never)}`;
  });
  await db.sql.unsafe(`ANALYZE ${DATA_TABLES.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Rule sets: OR of rules, recursion 2-3 deep, self-joins, public tables, an unlisted table read
// by a rule, claims of every bindable type, a sender compared with an integer column.

type Spec = 'public' | string[];
const OWN = 'SELECT * FROM account WHERE identity = :sender';
const RULE_SETS: { name: string; tables: Record<string, Spec> }[] = [
  {
    name: 'seed: own account OR admin (unlisted); player and item 3 levels deep',
    tables: {
      account: [OWN, 'SELECT account.* FROM account CROSS JOIN admin WHERE admin.identity = :sender'],
      player: ['SELECT p.* FROM account a JOIN player p ON a.id = p.account_id'],
      item: ['SELECT i.* FROM item i JOIN player p ON p.id = i.owner_player', 'SELECT * FROM item WHERE public'],
    },
  },
  {
    name: 'teams: comma self-join, claims, a public table inside a rule',
    tables: {
      admin: 'public',
      team_member: [
        'SELECT * FROM team_member WHERE identity = :sender',
        'SELECT t.* FROM team_member t, team_member me WHERE me.team = t.team AND me.identity = :sender',
      ],
      account: ["SELECT a.* FROM account a, team_member tm WHERE tm.team = a.team AND tm.role = 'lead'", 'SELECT * FROM account WHERE team = :team'],
      player: ['SELECT p.* FROM player p JOIN account a ON a.id = p.account_id WHERE p.level >= a.level'],
      item: ['SELECT i.* FROM item i CROSS JOIN admin WHERE admin.identity = :sender', 'SELECT i.* FROM item i JOIN player p ON p.id = i.owner_player AND i.public'],
    },
  },
  {
    name: 'self-joins of the target table through a ruled table',
    tables: {
      account: [OWN],
      player: [`SELECT q.* FROM account a JOIN player p ON a.id = p.account_id JOIN player q ON p.level = q.level WHERE a.identity = :sender`],
      item: ['SELECT i.* FROM player p JOIN item i ON i.owner_player = p.id WHERE NOT i.public', 'SELECT i.* FROM item i JOIN item j ON j.id = i.id + 1 WHERE j.public'],
    },
  },
  {
    name: "claims, BETWEEN, lower(), NOT, LIKE with a literal pg-sql2 binds ('%'), a ruled table joined twice",
    tables: {
      account: ['SELECT * FROM account WHERE team = :team AND level BETWEEN 2 AND 4', 'SELECT * FROM account WHERE lower(identity) = lower(:sender)', "SELECT * FROM account WHERE identity LIKE '%7'"],
      player: [
        'SELECT p.* FROM account a JOIN player p ON p.account_id = a.id',
        'SELECT p.* FROM player p JOIN team_member tm ON tm.identity = :sender WHERE tm.team = p.level',
        'SELECT p.* FROM player p JOIN account a ON a.id = p.account_id JOIN account b ON b.team = a.team WHERE b.level = p.level',
      ],
      item: ['SELECT i.* FROM item i JOIN player p ON p.id = i.owner_player WHERE NOT (i.public OR p.level < 2)'],
    },
  },
  {
    name: 'a public account; the sender against an integer column',
    tables: {
      account: 'public',
      player: ['SELECT * FROM player WHERE id = :sender', 'SELECT p.* FROM player p JOIN account a ON a.id = p.account_id WHERE a.identity = :sender'],
      item: ['SELECT i.* FROM item i CROSS JOIN player p WHERE p.id = i.owner_player'],
    },
  },
  {
    name: 'claims of every bindable type',
    tables: {
      thing: [
        'SELECT * FROM thing WHERE u = :u',
        'SELECT * FROM thing WHERE d = :d',
        'SELECT * FROM thing WHERE ts = :ts',
        'SELECT * FROM thing WHERE b = :b',
        'SELECT * FROM thing WHERE m = :m',
        'SELECT * FROM thing WHERE n = :n',
        'SELECT * FROM thing WHERE f = :f',
        'SELECT * FROM thing WHERE i8 = :i8',
        'SELECT * FROM thing WHERE label = :label',
        'SELECT t.* FROM thing t JOIN thing o ON o.id = t.id + 1 WHERE o.u = :u',
      ],
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Callers: the settings a direct connection sets, and the identity the gateway would have.

interface Caller {
  /** undefined: rowgate.sender not set at all. */
  sender: string | undefined;
  /** undefined: rowgate.claims not set; otherwise the JSON text as the service sets it. */
  claims: string | undefined;
}

function gatewayIdentity(c: Caller): Identity {
  let claims: Record<string, unknown> = {};
  if (c.claims !== undefined) {
    try {
      const parsed: unknown = JSON.parse(c.claims);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) claims = parsed as Record<string, unknown>;
    } catch {
      // Not JSON: no claims.
    }
  }
  return { sender: c.sender === undefined || c.sender === '' ? null : c.sender, claims };
}

const SENDERS: (string | undefined)[] = [...IDS, 'U3', 'u9', 'nobody', undefined, '', "' OR 1=1 --", '3', ' 3 ', '3.0', 'abc', '99999999999', 'u1\u00a0'];
const CLAIMS: (string | undefined)[] = [
  undefined,
  '{"team": 1}',
  '{"team": "2"}',
  '{"team": 2.0}',
  '{"team": " 3 "}',
  '{"team": "abc"}',
  '{"team": 99999999999}',
  'not json',
  '[1]',
  '',
  `{"u": "{${UUIDS[0]}}", "d": "2024-02-29", "b": "yes", "m": "happy", "n": " 1.50 ", "f": 1e21, "i8": 9007199254740993, "label": 1.50}`,
  `{"u": "${UUIDS[1]!.toUpperCase().replace(/-/g, '')}", "d": "2023-02-29", "ts": "2024-01-01T10:00:00Z", "b": "of", "m": "HAPPY", "n": "1e5", "f": "0.5", "label": "[1,2]"}`,
  `{"u": "not-a-uuid", "d": "2024-02-30", "ts": "2024-01-01 12:00:00+02", "b": false, "m": "sad", "n": 2, "f": "abc", "i8": "3", "label": true}`,
];
function callers(): Caller[] {
  const out: Caller[] = [];
  SENDERS.forEach((sender, i) => {
    out.push({ sender, claims: CLAIMS[i % CLAIMS.length] });
    out.push({ sender, claims: CLAIMS[(i * 5 + 3) % CLAIMS.length] });
  });
  for (const claims of CLAIMS) out.push({ sender: 'u1', claims });
  return out;
}

/** Runs `body` in a transaction as the test role, with the caller's settings (transaction-local). */
async function asCaller<T>(c: Caller, body: (tx: typeof db.sql) => Promise<T>): Promise<T> {
  return (await db.sql.begin(async (tx) => {
    await tx.unsafe(`SET LOCAL ROLE ${ROLE}`);
    if (c.sender !== undefined) await tx`SELECT set_config('rowgate.sender', ${c.sender}, true)`;
    if (c.claims !== undefined) await tx`SELECT set_config('rowgate.claims', ${c.claims}, true)`;
    return body(tx as unknown as typeof db.sql);
  })) as T;
}

async function nativeVisible(c: Caller, table: string): Promise<string[]> {
  return asCaller(c, async (tx) => (await tx.unsafe<{ k: string }[]>(`SELECT id::text AS k FROM ${table} ORDER BY 1`)).map((r) => r.k));
}

const byNumber = (xs: string[]) => [...xs].sort((a, b) => Number(a) - Number(b));

async function install(tables: Record<string, unknown>, options: { inline?: boolean } = {}): Promise<{ rules: CompiledRules; plan: PolicyPlan }> {
  const rules = await compile(db, tables);
  const plan = planPolicies(rules, await db.catalog(), options);
  await applyPolicies(db.sql, plan);
  return { rules, plan };
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  await loadParser();
  await db.sql.unsafe(SCHEMA);
  await db.sql.unsafe(`CREATE ROLE ${ROLE} NOLOGIN NOBYPASSRLS; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${ROLE}`);
});
afterAll(async () => {
  // Roles are cluster-wide: remove this one (and its grants here) before the database goes.
  await db.sql.unsafe(`DROP OWNED BY ${ROLE}; DROP ROLE ${ROLE}`);
});

describe('parameters read from the settings convert exactly as coerceParam does', () => {
  // Installs the helper functions only.
  beforeAll(() => applyPolicies(db.sql, { schema: 'public', tables: [], skipped: [] }));
  const type = (name: string, category = 'N'): TypeRef => ({ schema: 'pg_catalog', name, category, enumLabels: [] });
  const TYPES: TypeRef[] = [
    type('int2'), type('int4'), type('int8'), type('numeric'), type('float4'), type('float8'), type('bool', 'B'), type('uuid', 'U'),
    type('date', 'D'), type('timestamp', 'D'), type('timestamptz', 'D'), type('text', 'S'), type('varchar', 'S'), type('jsonb', 'U'),
    { schema: 'public', name: 'mood', category: 'E', enumLabels: ['happy', 'sad'] },
  ];
  const STRINGS = [
    '1', ' 1 ', '\t+7\n', '-0', '007', '1.0', '1e3', 'abc', '', ' ', '\u00a01\u00a0', '\u3000 2', '２', '99999999999', '-2147483648', '2147483648',
    '32767', '32768', '9223372036854775807', '9223372036854775808', '-9223372036854775808', '123456789012345678901234567890', '0x10',
    '1.5', '.5', '5.', '.', '-', '1e', '1.e5', '1e99999', '1e-99999', '1e999999', '1e400', 'NaN', 'Infinity', '-Infinity', 'inf', 'nan',
    't', 'TRUE', ' yes ', 'On', 'no', 'of', 'Y', '2', UUIDS[0]!, UUIDS[0]!.toUpperCase().replace(/-/g, ''), `{${UUIDS[0]}}`, `{${UUIDS[0]}`,
    'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11', 'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-', '-a0eebc999c0b4ef8bb6d6bb9bd380a11',
    '2024-02-29', '2023-02-29', '2024-13-01', '2024-04-31', '0000-01-01', '0004-02-29', '0100-02-29', '2024-1-01', '2024-01-01T10:00:00Z',
    '2024-01-01 10:00:00.123456+05:30', '2024-01-01T10:00:00.1234567', '2024-01-01T24:00', '2024-01-01T23:60', '2024-01-01T10:00+99:00',
    '2024-01-01T10:00+0530', '2024-01-01T10', 'happy', 'HAPPY', ' happy', "' OR 1=1 --", 'ünïcödé',
  ];
  // Raw JSON values (as they appear in the claims text) and what JSON.parse makes of them.
  const JSON_VALUES = ['1', '-0', '1.0', '1.50', '1e21', '1e20', '1e-7', '0.000001', '123456789012345678901234', '9007199254740993', '2147483648',
    '1e400', '-1e400', '1e-400', 'true', 'false', 'null', '[1,2]', '[]', '"2"'];

  it('every type, every value: the same text, or NULL where PostgreSQL would refuse it', async () => {
    const mismatches: unknown[] = [];
    const cases: { raw: string; value: unknown }[] = [
      ...STRINGS.map((s) => ({ raw: JSON.stringify(s), value: s })),
      ...JSON_VALUES.map((raw) => ({ raw, value: JSON.parse(raw) as unknown })),
    ];
    const exprs = TYPES.map((t) => pgsql.compile(pgsql`${coercedParamText('v', t)} AS ${pgsql.identifier(t.name)}`).text);
    for (const { raw, value } of cases) {
      const row = await db.sql.begin(async (tx) => {
        await tx`SELECT set_config('rowgate.claims', ${`{"v": ${raw}}`}, true)`;
        return (await tx.unsafe<Record<string, string | null>[]>(`SELECT ${exprs.join(', ')}`))[0]!;
      });
      for (const t of TYPES) {
        let want = coerceParam(value, t);
        if (want !== null) {
          // coerceParam passes this text on; PostgreSQL must accept it, else a policy gives NULL.
          const ok = await db.sql.unsafe(`SELECT $1::text::${t.schema}.${t.name}`, [want]).then(
            () => true,
            () => false,
          );
          if (!ok) want = null;
        }
        // Documented difference: an array or object claim met as text prints as jsonb does ([1, 2]).
        if (want !== null && /^[[{]/.test(raw) && t.category === 'S') want = JSON.stringify(JSON.parse(raw)).replace(/,/g, ', ');
        if (row[t.name] !== want) mismatches.push({ raw, type: t.name, native: row[t.name], coerceParam: want });
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('the sender: unset and empty are NULL; anything else as it is', async () => {
    const read = (set: string | undefined) =>
      db.sql.begin(async (tx) => {
        if (set !== undefined) await tx`SELECT set_config('rowgate.sender', ${set}, true)`;
        return (await tx`SELECT rowgate.param('sender') AS s`)[0]!['s'] as string | null;
      });
    expect(await read(undefined)).toBeNull();
    expect(await read('')).toBeNull();
    expect(await read(" ' OR 1=1 -- ")).toBe(" ' OR 1=1 -- ");
  });

  it('claims that are not a JSON object give NULL for every claim, never an error', async () => {
    for (const text of ['not json', '[1]', '"x"', '', '{"a":', 'null']) {
      const v = await db.sql.begin(async (tx) => {
        await tx`SELECT set_config('rowgate.claims', ${text}, true)`;
        return (await tx`SELECT rowgate.param('a') AS v`)[0]!['v'];
      });
      expect(v).toBeNull();
    }
  });
});

describe('native policies show exactly what the compiled visibility shows', () => {
  const SEEDS = [1, 20240607];
  for (const rs of RULE_SETS) {
    it(rs.name, async () => {
      const tables = Object.fromEntries(Object.entries(rs.tables).map(([t, select]) => [t, { select }]));
      const { rules } = await install(tables);
      const mismatches: unknown[] = [];
      let partial = 0;
      let comparisons = 0;
      for (const seed of SEEDS) {
        await load(seed);
        const counts = Object.fromEntries(
          await Promise.all(DATA_TABLES.map(async (t) => [t, Number((await db.sql.unsafe(`SELECT count(*) AS n FROM ${t}`))[0]!['n'])] as const)),
        );
        for (const c of callers()) {
          for (const table of Object.keys(rs.tables)) {
            const want = byNumber(await visible(db, rules, table, gatewayIdentity(c)));
            const got = byNumber(await nativeVisible(c, table));
            comparisons++;
            if (want.length > 0 && want.length < counts[table]!) partial++;
            if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push({ seed, caller: c, table, native: got, gateway: want });
          }
        }
      }
      expect(mismatches).toEqual([]);
      // Not vacuous: many callers see some rows but not all.
      expect(partial).toBeGreaterThan(comparisons / 10);
    });
  }

  it('without the inline form (every rule in a SECURITY DEFINER function) the rows are the same', async () => {
    const rs = RULE_SETS[3]!;
    const tables = Object.fromEntries(Object.entries(rs.tables).map(([t, select]) => [t, { select }]));
    const { rules, plan } = await install(tables, { inline: false });
    expect(plan.tables.every((t) => t.functions.some((f) => f.kind === 'select'))).toBe(true);
    await load(7);
    for (const c of callers().slice(0, 20)) {
      for (const table of Object.keys(rs.tables)) {
        expect(byNumber(await nativeVisible(c, table)), `${JSON.stringify(c)} ${table}`).toEqual(byNumber(await visible(db, rules, table, gatewayIdentity(c))));
      }
    }
  });

  it('owners and superusers are not subject to the policies (not FORCE-d)', async () => {
    await install({ account: { select: [OWN] } });
    const all = Number((await db.sql`SELECT count(*) AS n FROM account`)[0]!['n']);
    expect(all).toBeGreaterThan(0);
    expect(await nativeVisible({ sender: undefined, claims: undefined }, 'account')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('writes through the native policies follow the write rules', () => {
  const NOTE_OWN = 'SELECT * FROM note WHERE owner = :sender';
  const WRITE_TABLES = {
    board: { select: 'SELECT b.* FROM board b JOIN seat s ON s.board_id = b.id WHERE s.identity = :sender' },
    note: {
      select: [NOTE_OWN, 'SELECT n.* FROM note n JOIN board b ON b.id = n.board_id WHERE n.shared'],
      insert: {
        check: ["SELECT n.* FROM note n JOIN seat s ON s.board_id = n.board_id WHERE s.identity = :sender AND s.role = 'writer'"],
        set: { owner: ':sender' },
      },
      update: { filter: [NOTE_OWN], check: ['SELECT * FROM note WHERE length(body) <= 20'] },
      delete: [NOTE_OWN],
    },
  };
  const as = (sender: string): Caller => ({ sender, claims: JSON.stringify({ sub: sender }) });
  const write = async (sender: string, text: string): Promise<number | string> => {
    try {
      return await asCaller(as(sender), async (tx) => (await tx.unsafe(text)).count);
    } catch (err) {
      return (err as Error).message;
    }
  };
  const RLS = /new row violates row-level security policy/;

  beforeAll(async () => {
    await db.sql.unsafe(`
      INSERT INTO board VALUES (1, 'one'), (2, 'two'), (3, 'three');
      INSERT INTO seat VALUES (1, 'alice', 'writer'), (1, 'bob', 'reader'), (2, 'bob', 'writer');
      INSERT INTO note VALUES (1, 1, 'alice', 'alice private', false), (2, 1, 'alice', 'alice shared', true),
                              (3, 2, 'bob', 'bob on two', true), (4, 3, 'carol', 'carol private', false);
    `);
    await install(WRITE_TABLES);
  });

  it('insert: allowed by the check rule', async () => {
    expect(await write('alice', "INSERT INTO note (id, board_id, owner, body) VALUES (10, 1, 'alice', 'hi')")).toBe(1);
  });
  it('insert: refused by the check rule (a reader of the board)', async () => {
    expect(await write('bob', "INSERT INTO note (id, board_id, owner, body) VALUES (11, 1, 'bob', 'hi')")).toMatch(RLS);
  });
  it('insert: refused when a preset column does not hold the preset (owner must be the sender)', async () => {
    expect(await write('alice', "INSERT INTO note (id, board_id, owner, body) VALUES (12, 1, 'bob', 'hi')")).toMatch(RLS);
  });
  it('insert: refused without a sender', async () => {
    expect(await write('', "INSERT INTO note (id, board_id, owner, body) VALUES (13, 1, '', 'hi')")).toMatch(RLS);
  });
  it('update: allowed on an own row passing the check', async () => {
    expect(await write('alice', "UPDATE note SET body = 'edited' WHERE id = 1")).toBe(1);
  });
  it('update: a visible row the filter refuses is not updated', async () => {
    expect(await write('bob', "UPDATE note SET body = 'bob was here' WHERE id = 2")).toBe(0);
    expect(await write('bob', "UPDATE note SET body = 'bob was here'")).toBe(1); // only his own note 3
  });
  it('update: refused by the check rule', async () => {
    expect(await write('alice', "UPDATE note SET body = 'a body much longer than twenty characters' WHERE id = 1")).toMatch(RLS);
  });
  it('update: a hidden row is not updated', async () => {
    expect(await write('alice', "UPDATE note SET body = 'x' WHERE id = 4")).toBe(0);
  });
  it('delete: refused by the delete rule, then allowed on an own row', async () => {
    expect(await write('bob', 'DELETE FROM note WHERE id = 2')).toBe(0);
    expect(await write('alice', 'DELETE FROM note WHERE id = 4')).toBe(0);
    expect(await write('alice', 'DELETE FROM note WHERE id = 10')).toBe(1);
  });
  it('undeclared operations are refused', async () => {
    expect(await write('alice', "INSERT INTO board VALUES (9, 'x')")).toMatch(RLS);
    expect(await write('alice', "UPDATE board SET name = 'x'")).toBe(0);
    expect(await write('alice', 'DELETE FROM board')).toBe(0);
    expect((await db.sql`SELECT count(*)::int AS n FROM board`)[0]!['n']).toBe(3);
  });
  it('every refused write left the data as it was', async () => {
    expect((await db.sql`SELECT id, owner, body FROM note ORDER BY id`).map((r) => ({ ...r }))).toEqual([
      { id: 1, owner: 'alice', body: 'edited' },
      { id: 2, owner: 'alice', body: 'alice shared' },
      { id: 3, owner: 'bob', body: 'bob was here' },
      { id: 4, owner: 'carol', body: 'carol private' },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('rowgate policies: print, apply, idempotent re-apply, drop', () => {
  const TABLES = {
    account: { select: [OWN, 'SELECT account.* FROM account CROSS JOIN admin WHERE admin.identity = :sender'] },
    player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.account_id'] },
    admin: { select: 'public' },
  };
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rowgate-policies-'));
    // Start clean: nothing of ours installed.
    await dropPolicies(db.sql, 'public');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const config = (tables: Record<string, unknown>) => {
    const file = join(dir, `config-${randomBytes(4).toString('hex')}.json`);
    writeFileSync(file, JSON.stringify({ database: { url: db.url }, tables }));
    return file;
  };
  const cli = async (file: string, mode: 'print' | 'apply' | 'drop') => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void lines.push(args.join(' ')));
    try {
      const code = await policiesCommand(file, mode);
      return { code, out: lines.join('\n') };
    } finally {
      spy.mockRestore();
    }
  };
  const state = async () => ({
    policies: (await db.sql`
      SELECT c.relname || '.' || p.polname AS name, p.oid::int AS oid FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid ORDER BY 1`).map((r) => `${r['name']}#${r['oid']}`),
    functions: (await db.sql`
      SELECT p.proname || '#' || p.oid AS name FROM pg_proc p WHERE p.pronamespace = 'rowgate'::regnamespace ORDER BY 1`).map((r) => String(r['name'])),
    rls: (await db.sql`
      SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relrowsecurity ORDER BY 1`).map((r) => String(r['relname'])),
  });

  it('prints the SQL, with no value spliced in, and changes nothing', async () => {
    const before = await state();
    const { code, out } = await cli(config(TABLES), 'print');
    expect(code).toBe(0);
    expect(out).toContain('CREATE POLICY "rowgate_select" ON "public"."account" AS PERMISSIVE FOR SELECT TO PUBLIC');
    expect(out).toContain('CREATE POLICY "rowgate_select" ON "public"."admin" AS PERMISSIVE FOR SELECT TO PUBLIC\n  USING (TRUE)');
    expect(out).toContain('SECURITY DEFINER SET search_path = pg_catalog, pg_temp');
    expect(out).toContain('ALTER TABLE "public"."player" ENABLE ROW LEVEL SECURITY');
    expect(out).not.toContain('FORCE');
    expect(out).toContain("current_setting('rowgate.sender', true)");
    expect(scanSync(out).tokens.filter((t) => t.tokenName === 'PARAM')).toEqual([]);
    expect(await state()).toEqual(before);
  });

  it('the printed script runs as it is, and --apply then finds everything up to date', async () => {
    const rules = await compile(db, TABLES);
    const plan = planPolicies(rules, await db.catalog());
    const conn = await db.sql.reserve();
    try {
      await conn.unsafe(policyScript(plan));
    } finally {
      conn.release();
    }
    const report = await applyPolicies(db.sql, plan);
    expect(report.installed).toEqual([]);
    expect(report.unchanged).toEqual(['account', 'admin', 'player']);
    await dropPolicies(db.sql, 'public');
    await db.sql.unsafe('ALTER TABLE account DISABLE ROW LEVEL SECURITY; ALTER TABLE admin DISABLE ROW LEVEL SECURITY; ALTER TABLE player DISABLE ROW LEVEL SECURITY');
  });

  it('--apply installs; re-applying changes nothing; a rule change replaces only that table; --drop removes it all', async () => {
    // A table whose RLS the owner enabled before: --drop must leave it enabled.
    await db.sql.unsafe('ALTER TABLE item ENABLE ROW LEVEL SECURITY');
    const file = config({ ...TABLES, item: { select: 'public' } });
    const first = await cli(file, 'apply');
    expect(first.code).toBe(0);
    expect(first.out).toContain('installed: account');
    expect(first.out).toContain('row level security enabled: account');
    expect(first.out).not.toContain('row level security enabled: item');
    const installed = await state();
    expect(installed.rls).toEqual(['account', 'admin', 'item', 'player']);
    expect(installed.policies.map((p) => p.split('#')[0])).toEqual(['account.rowgate_select', 'admin.rowgate_select', 'item.rowgate_select', 'player.rowgate_select']);

    const again = await cli(file, 'apply');
    expect(again.out.split('\n')).toEqual(['unchanged: account', 'unchanged: admin', 'unchanged: item', 'unchanged: player', 'ok: policies on 4 tables']);
    expect(await state()).toEqual(installed);
    const report = await applyPolicies(db.sql, planPolicies(await compile(db, { ...TABLES, item: { select: 'public' } }), await db.catalog()));
    expect(report.statements).toEqual([]);

    // The player rule changes; account is removed from the config.
    const changed = config({ admin: TABLES.admin, item: { select: 'public' }, player: { select: ['SELECT * FROM player WHERE level = :level'] } });
    const third = await cli(changed, 'apply');
    expect(third.out.split('\n').sort()).toEqual(
      ['installed: player', 'unchanged: admin', 'unchanged: item', 'removed:   account', 'row level security disabled: account', 'ok: policies on 3 tables'].sort(),
    );
    const after = await state();
    expect(after.rls).toEqual(['admin', 'item', 'player']);
    expect(after.policies.filter((p) => p.startsWith('admin.') || p.startsWith('item.'))).toEqual(installed.policies.filter((p) => p.startsWith('admin.') || p.startsWith('item.')));
    expect(after.policies.some((p) => p.startsWith('account.'))).toBe(false);
    // The new player rule is what applies now.
    await load(3);
    expect(byNumber(await nativeVisible({ sender: 'x', claims: '{"level": 2}' }, 'player'))).toEqual(
      (await db.sql`SELECT id::text AS k FROM player WHERE level = 2 ORDER BY id`).map((r) => String(r['k'])),
    );

    const dropped = await cli(changed, 'drop');
    expect(dropped.code).toBe(0);
    expect(dropped.out).toContain('row level security disabled: player');
    const gone = await state();
    expect(gone.policies).toEqual([]);
    expect(gone.functions).toEqual([]);
    expect(gone.rls).toEqual(['item']);
    // Dropping again is a no-op.
    expect((await cli(changed, 'drop')).out).toContain('ok: policies removed from 0 tables');
    await db.sql.unsafe('ALTER TABLE item DISABLE ROW LEVEL SECURITY');
  });
});
