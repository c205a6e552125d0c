import { beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { asCaller, converge as convergeTo, startLive, type LiveHarness, type Watched } from './support/live.ts';
import { mulberry32 } from './support/reference.ts';

// A changed root row is looked up, by its old and new images, in an index of the subscribers by
// the values their rules and `where` compare with its columns (src/live/row-index.ts); only those
// found are evaluated. These tests try to make the index skip a subscriber whose result the commit
// changes (a stale result: rows it may no longer see, or rows it misses), for every indexed form:
// `col = :param` rules of text, int and uuid columns (alone, in a conjunction, OR-ed with the admin
// rule or with a rule that cannot be indexed), `where: {col: {_eq: …}}`, and `_by_pk`.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  account: {
    select: [
      'SELECT * FROM account WHERE identity = :sender',
      'SELECT account.* FROM account JOIN admin ON admin.identity = :sender',
      "SELECT * FROM account WHERE org_id = :org AND name <> 'secret'",
    ],
  },
  item: { select: ['SELECT * FROM item WHERE owner = :uid'] },
  // The second rule cannot be indexed (a range): every task commit is tested in PostgreSQL.
  task: { select: ['SELECT * FROM task WHERE assignee = :sender', 'SELECT * FROM task WHERE level > :level'] },
  sentinel: { select: 'public' },
};

// Keys past 2^53 (a double cannot hold them) must still find their subscribers.
const BIG = 9007199254740993n;
const UUIDS = ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'b1ffcd00-0d1c-4f09-8c7e-7cc0ce491b22', 'c2aade11-1e2d-4a1a-9d8f-8dd1df5a2c33'];

// Claims as tokens carry them, not as PostgreSQL prints them: ints with a sign or leading zeros,
// uuids in upper case, in braces, without hyphens. The index must compare PostgreSQL's text forms.
const CALLERS: Record<string, Caller> = {
  u1: { admin: false, identity: { sender: 'u1', claims: { sub: 'u1', org: 1, uid: UUIDS[0]!.toUpperCase(), level: 5 } } },
  u2: { admin: false, identity: { sender: 'u2', claims: { sub: 'u2', org: '+02', uid: `{${UUIDS[1]}}`, level: 100 } } },
  u3: { admin: false, identity: { sender: 'u3', claims: { sub: 'u3', org: '001', uid: UUIDS[2]!.replace(/-/g, ''), level: 'x' } } },
  admin: asCaller('admin'),
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id bigint PRIMARY KEY, identity text NOT NULL, org_id int, name text NOT NULL);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE item (id int PRIMARY KEY, owner uuid, title text NOT NULL);
    CREATE TABLE task (id int PRIMARY KEY, assignee varchar(20), level int NOT NULL, title text NOT NULL);
    CREATE TABLE sentinel (id int PRIMARY KEY, n int NOT NULL);
    INSERT INTO account VALUES (1, 'u1', 1, 'A1'), (2, 'u1', 2, 'A2'), (3, 'u2', NULL, 'A3'), (4, 'u3', 1, 'secret'), (${BIG}, 'u2', 2, 'A5');
    INSERT INTO item VALUES (1, '${UUIDS[0]}', 'i1'), (2, '${UUIDS[1]}', 'i2'), (3, NULL, 'i3');
    INSERT INTO task VALUES (1, 'u1', 1, 't1'), (2, 'u2', 50, 't2'), (3, NULL, 200, 't3');
    INSERT INTO sentinel VALUES (1, 0);
  `);
  // 10 subscribers per statement: a test of a few dozen subscribers shows what 1,000 per statement hides.
  h = await startLive(db, TABLES, { subscribersPerStatement: 10 });
});

const converge = (w: Watched, step: string) => convergeTo(h.schema, w, step);

async function watch(caller: string, query: string): Promise<Watched> {
  const as = CALLERS[caller] ?? asCaller(caller);
  const w: Watched = { who: caller, caller: as, query, sub: await h.open(as, `subscription { ${query} }`), last: null };
  await converge(w, 'start');
  return w;
}

describe('the subscriber index: a changed root row evaluates only the subscribers its images can concern', () => {
  it('random writes, ownership moves and admin toggles: each subscriber ends every step with exactly what a query returns', async () => {
    const queries = [
      // Keyed on identity (text) and org_id (int, a conjunct), OR-ed with the admin rule (a flag).
      'account(order_by: {id: asc}) { id identity org_id name }',
      // Keyed on the filter, whatever the visibility (the admin secret too).
      'account(where: {identity: {_eq: "u2"}}, order_by: {id: asc}) { id name }',
      `account_by_pk(id: "${BIG}") { identity name }`,
      'item(order_by: {id: asc}) { id owner title }',
      `item(where: {owner: {_eq: "${UUIDS[1]!.toUpperCase()}"}}, order_by: {id: asc}) { id title }`,
      // A rule that cannot be indexed: every subscriber falls back to the in-statement test.
      'task(order_by: {id: asc}) { id assignee level title }',
      // … unless its filter is keyed.
      'task(where: {assignee: {_eq: "u1"}}, order_by: {id: asc}) { id title }',
    ];
    const all: Watched[] = [];
    for (const query of queries) for (const caller of Object.keys(CALLERS)) all.push(await watch(caller, query));

    const next = mulberry32(11);
    const rand = (n: number) => Math.floor(next() * n);
    const accountIds = ['1', '2', '3', '4', '5', '6', String(BIG)];
    const account = () => accountIds[rand(accountIds.length)]!;
    const sender = () => `u${1 + rand(3)}`;
    const uuid = () => (rand(4) ? UUIDS[rand(3)]! : null);
    const ops: [string, () => Promise<unknown>][] = [
      ['rename', async () => db.sql`UPDATE account SET name = ${['A', 'B', 'secret'][rand(3)]!} WHERE id = ${account()}`],
      ['give away', async () => db.sql`UPDATE account SET identity = ${sender()} WHERE id = ${account()}`],
      ['change org', async () => db.sql`UPDATE account SET org_id = ${rand(3) ? 1 + rand(2) : null} WHERE id = ${account()}`],
      ['new account', async () => db.sql`INSERT INTO account VALUES (${account()}, ${sender()}, ${1 + rand(2)}, 'N') ON CONFLICT (id) DO NOTHING`],
      ['delete account', async () => db.sql`DELETE FROM account WHERE id = ${account()}`],
      ['admin', async () => (rand(2) ? db.sql`INSERT INTO admin VALUES (${sender()}) ON CONFLICT DO NOTHING` : db.sql`DELETE FROM admin`)],
      [
        'swap owners in one transaction',
        async () =>
          db.sql.begin(async (tx) => {
            const [a, b] = [account(), account()];
            await tx`UPDATE account SET identity = ${sender()}, name = 'S' WHERE id = ${a}`;
            await tx`UPDATE account SET identity = ${sender()} WHERE id = ${b}`;
          }),
      ],
      ['move item', async () => db.sql`UPDATE item SET owner = ${uuid()} WHERE id = ${1 + rand(4)}`],
      ['new item', async () => db.sql`INSERT INTO item VALUES (${1 + rand(4)}, ${uuid()}, 'n') ON CONFLICT (id) DO NOTHING`],
      ['delete item', async () => db.sql`DELETE FROM item WHERE id = ${1 + rand(4)}`],
      ['retitle item', async () => db.sql`UPDATE item SET title = ${`i${rand(100)}`} WHERE id = ${1 + rand(4)}`],
      ['move task', async () => db.sql`UPDATE task SET assignee = ${rand(4) ? sender() : null} WHERE id = ${1 + rand(4)}`],
      ['task level', async () => db.sql`UPDATE task SET level = ${rand(300)} WHERE id = ${1 + rand(4)}`],
      ['new task', async () => db.sql`INSERT INTO task VALUES (${1 + rand(4)}, ${sender()}, ${rand(300)}, 'n') ON CONFLICT (id) DO NOTHING`],
      ['delete task', async () => db.sql`DELETE FROM task WHERE id = ${1 + rand(4)}`],
    ];
    // First, an admin seeing a row only as admin (account 3: u2's, no org), then no longer.
    const scripted: [string, () => Promise<unknown>][] = [
      ['u3 made admin', async () => db.sql`INSERT INTO admin VALUES ('u3')`],
      ['rename an account u3 sees as admin only', async () => db.sql`UPDATE account SET name = 'seen by the admin' WHERE id = 3`],
      ['give it to u1', async () => db.sql`UPDATE account SET identity = 'u1' WHERE id = 3`],
      ['u3 no longer admin', async () => db.sql`DELETE FROM admin`],
      ['rename it again', async () => db.sql`UPDATE account SET name = 'A3' WHERE id = 3`],
    ];
    for (const [name, op] of scripted) {
      await op();
      for (const w of all) await converge(w, name);
    }
    const seen = new Set<string>();
    for (let step = 0; step < 90; step++) {
      const [name, op] = ops[rand(ops.length)]!;
      seen.add(name);
      await op();
      for (const w of all) await converge(w, `step ${step} (${name})`);
    }
    expect(seen.size).toBe(ops.length);
    await Promise.all(all.map((w) => w.sub.close()));
  });

  it('a one-row commit evaluates only the subscribers whose rows it touches: one statement, none when it touches nobody', async () => {
    const n = 40;
    await db.sql.unsafe(`INSERT INTO account SELECT 100 + i, 'v' || i, NULL, 'x' FROM generate_series(1, ${n}) AS i`);
    const subs: Watched[] = [];
    for (let i = 1; i <= n; i++) subs.push(await watch(`v${i}`, 'account(order_by: {id: asc}) { id name }'));
    const sentinel = await watch('v1', 'sentinel { n }');
    // A later commit to another table: once its payload is here, the engine has looked at every earlier commit.
    const statementsFor = async (commit: () => Promise<unknown>) => {
      const before = h.live.stats.statements;
      await commit();
      await db.sql`UPDATE sentinel SET n = n + 1`;
      await converge(sentinel, 'sentinel');
      return h.live.stats.statements - before - 1;
    };
    const quiet = (except: Watched[]) => {
      for (const w of subs) if (!except.includes(w)) expect(w.sub.pending(), `${w.who} got a payload`).toBe(0);
    };

    expect(await statementsFor(() => db.sql`UPDATE account SET name = 'renamed' WHERE id = 118`)).toBe(1);
    await converge(subs[17]!, 'renamed');
    quiet([]);

    // An ownership move: the old image finds v1, the new one v2; both in one statement.
    expect(await statementsFor(() => db.sql`UPDATE account SET identity = 'v2' WHERE id = 101`)).toBe(1);
    await converge(subs[0]!, 'moved away');
    await converge(subs[1]!, 'moved in');
    expect(JSON.stringify(subs[0]!.last?.data)).toBe('{"account":[]}');
    quiet([]);

    expect(await statementsFor(() => db.sql`INSERT INTO account VALUES (999, 'nobody', NULL, 'x')`)).toBe(0);
    expect(await statementsFor(() => db.sql`DELETE FROM account WHERE id = 999`)).toBe(0);
    quiet([]);
    await Promise.all([...subs, sentinel].map((w) => w.sub.close()));
  });
});
