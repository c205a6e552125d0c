import { scanSync } from 'libpg-query';
import type { Sql } from '../../src/db/index.ts';
import type { Identity } from '../../src/rules/index.ts';
import { as } from './rules.ts';

// The differential reference of rules-differential.test.ts (also used by fuzz-rules.test.ts):
// generated data for a small schema, rule sets over it, and a naive evaluation of rule texts that
// never looks at the compiler. The reference follows the contract (docs/rules.md) literally: in
// dependency order it runs each rule's own SQL text, with the rule's parameters bound, in a
// session where every ruled table read so far is shadowed by a temporary table of the same name
// holding only the rows already found visible (temporary tables come first on the search path); a
// table's own name, public and unlisted tables still resolve to the real tables. The rows of the
// union of a table's rules are its visible rows.

export const SCHEMA = `
  CREATE TABLE account (id int PRIMARY KEY, identity text, team int, level int NOT NULL);
  CREATE TABLE admin (id int PRIMARY KEY, identity text NOT NULL);
  CREATE TABLE team_member (id int PRIMARY KEY, team int NOT NULL, identity text NOT NULL, role text NOT NULL);
  CREATE TABLE player (id int PRIMARY KEY, account_id int, level int NOT NULL);
  CREATE TABLE item (id int PRIMARY KEY, owner_player int, public bool NOT NULL);
`;
export const TABLES = ['account', 'admin', 'team_member', 'player', 'item'] as const;

// ---------------------------------------------------------------------------------------------
// Deterministic data.

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const IDS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];

export interface Data {
  account: { id: number; identity: string | null; team: number | null; level: number }[];
  admin: { id: number; identity: string }[];
  team_member: { id: number; team: number; identity: string; role: string }[];
  player: { id: number; account_id: number | null; level: number }[];
  item: { id: number; owner_player: number | null; public: boolean }[];
  senders: Identity[];
}

export function generate(seed: number): Data {
  const rnd = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const chance = (p: number) => rnd() < p;

  const account = Array.from({ length: 14 }, (_, i) => {
    const who = pick(IDS);
    return {
      id: i + 1,
      identity: chance(0.1) ? null : chance(0.1) ? who.toUpperCase() : who,
      team: chance(0.15) ? null : int(1, 3),
      level: int(1, 5),
    };
  });
  const admins = new Set<string>();
  while (admins.size < 2) admins.add(chance(0.2) ? 'u9' : pick(IDS));
  const admin = [...admins].map((identity, i) => ({ id: i + 1, identity }));
  const team_member = Array.from({ length: 12 }, (_, i) => ({
    id: i + 1,
    team: int(1, 3),
    identity: pick(IDS),
    role: pick(['lead', 'member', 'member', 'guest']),
  }));
  // Some players point at accounts that do not exist (16 > 14), some items at no player.
  const player = Array.from({ length: 24 }, (_, i) => ({ id: i + 1, account_id: chance(0.05) ? null : int(1, 16), level: int(1, 5) }));
  const item = Array.from({ length: 36 }, (_, i) => ({ id: i + 1, owner_player: chance(0.1) ? null : int(1, 26), public: chance(0.3) }));

  // Every identity, an upper-case spelling, an unknown sender and anonymous callers; the
  // `team` claim is a number, numeric text, text that is no integer, or missing.
  const teamClaim = () => pick<unknown>([1, 2, 3, '2', 'abc', undefined]);
  const claimsOf = (): Record<string, unknown> => {
    const team = teamClaim();
    return team === undefined ? {} : { team };
  };
  const senders: Identity[] = [
    ...IDS.map((id) => as(id, claimsOf())),
    as('U3', claimsOf()),
    as('u9', claimsOf()),
    as('nobody', { team: 1 }),
    as(null),
    as(null, { team: 2 }),
  ];
  return { account, admin, team_member, player, item, senders };
}

export async function load(sql: Sql, data: Data): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`TRUNCATE ${TABLES.join(', ')}`);
    for (const table of TABLES) {
      const rows = data[table] as Record<string, unknown>[];
      if (rows.length) await tx`INSERT INTO ${tx(table)} ${tx(rows as never)}`;
    }
  });
  // Without statistics the planner takes these tiny tables for big ones, and a server with JIT
  // (PostgreSQL 15 here) then spends ~200 ms compiling each deeply nested visibility query.
  await sql.unsafe(`ANALYZE ${TABLES.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Rule sets. `order` lists every listed table so that each comes after the ruled tables its
// rules read (the reference checks it).

export type Spec = 'public' | string[];
export interface RuleSetCase {
  name: string;
  order: string[];
  tables: Record<string, Spec>;
}

export const OWN = 'SELECT * FROM account WHERE identity = :sender';

export const RULE_SETS: RuleSetCase[] = [
  {
    name: 'seed: own account OR admin (CROSS JOIN an unlisted table); player and item 3 levels deep',
    order: ['account', 'player', 'item'],
    tables: {
      account: [OWN, 'SELECT account.* FROM account CROSS JOIN admin WHERE admin.identity = :sender'],
      player: ['SELECT p.* FROM account a JOIN player p ON a.id = p.account_id'],
      item: ['SELECT i.* FROM item i JOIN player p ON p.id = i.owner_player', 'SELECT * FROM item WHERE public'],
    },
  },
  {
    name: 'teams: comma self-join, claims, a public table inside a rule',
    order: ['admin', 'team_member', 'account', 'player', 'item'],
    tables: {
      admin: 'public',
      team_member: [
        'SELECT * FROM team_member WHERE identity = :sender',
        'SELECT t.* FROM team_member t, team_member me WHERE me.team = t.team AND me.identity = :sender',
      ],
      account: [
        "SELECT a.* FROM account a, team_member tm WHERE tm.team = a.team AND tm.role = 'lead'",
        'SELECT * FROM account WHERE team = :team',
      ],
      player: ['SELECT p.* FROM player p JOIN account a ON a.id = p.account_id WHERE p.level >= a.level'],
      item: [
        'SELECT i.* FROM item i CROSS JOIN admin WHERE admin.identity = :sender',
        'SELECT i.* FROM item i JOIN player p ON p.id = i.owner_player AND i.public',
      ],
    },
  },
  {
    name: 'self-joins of the target table through a ruled table',
    order: ['account', 'player', 'item'],
    tables: {
      account: [OWN],
      player: [
        `SELECT q.* FROM account a JOIN player p ON a.id = p.account_id JOIN player q ON p.level = q.level
          WHERE a.identity = :sender`,
      ],
      item: [
        'SELECT i.* FROM player p JOIN item i ON i.owner_player = p.id WHERE NOT i.public',
        'SELECT i.* FROM item i JOIN item j ON j.id = i.id + 1 WHERE j.public',
      ],
    },
  },
  {
    name: 'diamond: player reads account and team_member, which reads account; 3-way comma join',
    order: ['account', 'team_member', 'player', 'item'],
    tables: {
      account: [
        'SELECT * FROM account WHERE identity = :sender OR level > 4',
        'SELECT a.* FROM account a JOIN admin ad ON ad.identity = :sender WHERE a.level IN (1, 2)',
      ],
      team_member: ['SELECT tm.* FROM team_member tm JOIN account a ON a.identity = tm.identity'],
      player: [
        `SELECT p.* FROM player p JOIN account a ON a.id = p.account_id JOIN team_member tm ON tm.identity = a.identity
          WHERE tm.role = 'member'`,
      ],
      item: ['SELECT i.* FROM item i, player p, account a WHERE p.id = i.owner_player AND a.id = p.account_id AND a.team IS NOT NULL'],
    },
  },
  {
    name: 'public account read as it is by the rules that join it',
    order: ['account', 'team_member', 'player', 'item'],
    tables: {
      account: 'public',
      team_member: ["SELECT * FROM team_member WHERE identity = :sender AND role IN ('lead', 'member')"],
      player: ['SELECT p.* FROM player p JOIN account a ON a.id = p.account_id WHERE a.identity = :sender'],
      item: ['SELECT * FROM item WHERE public = true', 'SELECT i.* FROM item i CROSS JOIN player p WHERE p.id = i.owner_player'],
    },
  },
  {
    name: 'claims, BETWEEN, lower(), NOT, an unlisted team_member, a ruled table joined twice',
    order: ['account', 'player', 'item'],
    tables: {
      account: [
        'SELECT * FROM account WHERE team = :team AND level BETWEEN 2 AND 4',
        'SELECT * FROM account WHERE lower(identity) = lower(:sender)',
      ],
      player: [
        'SELECT p.* FROM account a JOIN player p ON p.account_id = a.id',
        'SELECT p.* FROM player p JOIN team_member tm ON tm.identity = :sender WHERE tm.team = p.level',
        // Two instances of a ruled table: both are read through account's rules.
        'SELECT p.* FROM player p JOIN account a ON a.id = p.account_id JOIN account b ON b.team = a.team WHERE b.level = p.level',
      ],
      item: ['SELECT i.* FROM item i JOIN player p ON p.id = i.owner_player WHERE NOT (i.public OR p.level < 2)'],
    },
  },
];

// ---------------------------------------------------------------------------------------------
// The reference.

/** How the reference turns a caller's parameter into a bound value. */
export type ParamValue = (identity: Identity, name: string) => string | null;

/** Claims the rules compare with an integer; a value that is not an integer is NULL (docs/rules.md). */
const INT_CLAIMS = new Set(['team']);

export function paramValue(identity: Identity, name: string): string | null {
  const v = name === 'sender' ? identity.sender : identity.claims[name];
  if (v === undefined || v === null) return null;
  const text = String(v);
  if (INT_CLAIMS.has(name)) return /^[+-]?\d+$/.test(text) ? text : null;
  return text;
}

/** Replaces `:name` by `$n` using PostgreSQL's scanner tokens (whose offsets count UTF-8 bytes). */
export function bindRule(text: string, identity: Identity, valueOf: ParamValue = paramValue): { text: string; values: (string | null)[]; words: string[] } {
  const tokens = scanSync(text).tokens;
  const bytes = Buffer.from(text, 'utf8');
  const names: string[] = [];
  let out = '';
  let cursor = 0;
  for (let i = 0; i < tokens.length; i++) {
    const colon = tokens[i]!;
    const name = tokens[i + 1];
    if (colon.text !== ':' || !name || name.start !== colon.end || !(name.tokenName === 'IDENT' || name.keywordKind > 0)) continue;
    let n = names.indexOf(name.text);
    if (n < 0) n = names.push(name.text) - 1;
    out += bytes.subarray(cursor, colon.start).toString('utf8') + `$${n + 1}`;
    cursor = name.end;
    i++;
  }
  out += bytes.subarray(cursor).toString('utf8');
  const words = tokens.filter((t) => t.tokenName === 'IDENT' || t.keywordKind > 0).map((t) => t.text);
  return { text: out, values: names.map((n) => valueOf(identity, n)), words };
}

/** Visible ids per listed table for one sender, computed by running the rule texts as written. */
export async function reference(ref: Sql, rs: RuleSetCase, identity: Identity, valueOf: ParamValue = paramValue): Promise<Record<string, string[]>> {
  const result: Record<string, string[]> = {};
  await ref.begin(async (tx) => {
    const done = new Set<string>();
    const ruled = new Set(Object.entries(rs.tables).filter(([, s]) => s !== 'public').map(([t]) => t));
    for (const table of rs.order) {
      const spec = rs.tables[table]!;
      if (spec === 'public') {
        const rows = await tx.unsafe<{ k: string }[]>(`SELECT id::text AS k FROM ${table}`);
        result[table] = rows.map((r) => r.k);
        continue;
      }
      await tx.unsafe(`CREATE TEMP TABLE stage_${table} (LIKE public.${table}) ON COMMIT DROP`);
      for (const rule of spec) {
        const bound = bindRule(rule, identity, valueOf);
        for (const w of bound.words) {
          if (ruled.has(w) && w !== table && !done.has(w)) throw new Error(`${rs.name}: ${table} is ordered before ${w}, which its rule reads`);
        }
        await tx.unsafe(`INSERT INTO stage_${table} ${bound.text}`, bound.values as never[]);
      }
      // From here on, `table` in any rule text means its visible rows.
      await tx.unsafe(`CREATE TEMP TABLE ${table} ON COMMIT DROP AS SELECT DISTINCT * FROM stage_${table}`);
      done.add(table);
      const rows = await tx.unsafe<{ k: string }[]>(`SELECT id::text AS k FROM pg_temp.${table}`);
      result[table] = rows.map((r) => r.k);
    }
  });
  return result;
}
