import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { asCaller, converge as convergeTo, startLive, type LiveHarness, type Watched } from './support/live.ts';

// The live engine narrows commits to the subscribers they concern (src/live/tables.ts `targeting`,
// src/live/keys.ts): a changed root row is matched against each subscriber, a changed row right
// below the root is mapped to the root rows it hangs from. These tests try to make a narrowed
// commit miss a subscriber whose result it changes: a miss leaves that subscriber with a stale
// result, which here means rows it may no longer see.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  account: {
    select: ['SELECT * FROM account WHERE identity = :sender', 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'],
  },
  // A player is visible to whoever can see its coach's account: a row of the root table other than
  // the one the player hangs from decides about it.
  player: { select: 'SELECT p.* FROM player p JOIN account c ON c.id = p.coach_id' },
  document: { select: 'SELECT d.* FROM document d JOIN membership m ON m.grp_id = d.grp_id WHERE m.member = :sender' },
  grp: { select: 'SELECT g.* FROM grp g JOIN membership m ON m.grp_id = g.id WHERE m.member = :sender' },
};

// Keys past 2^53 (a double cannot hold them) must still find their subscribers.
const BIG = 9007199254740993n;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id bigint PRIMARY KEY, identity text NOT NULL, name text NOT NULL);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY, account_id bigint NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                         coach_id bigint REFERENCES account(id) ON DELETE SET NULL, level int NOT NULL);
    CREATE INDEX ON player (account_id);
    CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE membership (grp_id int REFERENCES grp(id), member text, PRIMARY KEY (grp_id, member));
    CREATE TABLE document (id int PRIMARY KEY, grp_id int NOT NULL REFERENCES grp(id), title text NOT NULL);
    INSERT INTO account VALUES (1, 'u1', 'A1'), (2, 'u1', 'B2'), (3, 'u2', 'A3'), (4, 'u3', 'A4'), (${BIG}, 'u2', 'A5');
    INSERT INTO player VALUES (1, 1, 2, 1), (2, 1, 1, 2), (3, 3, 2, 3), (4, 3, 3, 4), (5, 4, 4, 5), (6, ${BIG}, ${BIG}, 6);
    INSERT INTO grp VALUES (1, 'g1'), (2, 'g2');
    INSERT INTO membership VALUES (1, 'u1'), (1, 'u2'), (2, 'u2');
    INSERT INTO document VALUES (1, 1, 'd1'), (2, 2, 'd2'), (3, 2, 'd3');
  `);
  h = await startLive(db, TABLES);
});

const QUERIES = [
  // Root filtered, players below: player rows are mapped to their accounts; account rows decide
  // about players of other accounts (as coaches), so they are matched on visibility alone.
  'account(where: {name: {_like: "A%"}}, order_by: {id: asc}) { id name players(order_by: {id: asc}) { id level } }',
  'account_by_pk(id: 3) { name players(order_by: {id: asc}) { id level } }',
  'account_aggregate(order_by: {id: asc}) { aggregate { count } nodes { id players_aggregate { aggregate { count } } } }',
  // Rooted at player: the coach's account decides about the root rows, so account commits re-evaluate all.
  'player(order_by: {id: asc}) { id level account_id }',
  // An object relationship below the root: a group's rows are mapped to the documents that point at it.
  'document(order_by: {id: asc}) { id title grp { name } }',
];
const SENDERS = ['u1', 'u2', 'u3', 'admin'] as const;

const converge = (w: Watched, step: string) => convergeTo(h.schema, w, step);

async function openAll(): Promise<Watched[]> {
  const all: Watched[] = [];
  for (const query of QUERIES) for (const sender of SENDERS) all.push({ who: sender, caller: asCaller(sender), query, sub: await h.open(sender, `subscription { ${query} }`), last: null });
  return all;
}

describe('live queries narrowed to whom a commit concerns', () => {
  it('a coach account changing hands hides its players from a subscriber whose filter excludes the coach', async () => {
    const all = await openAll();
    for (const w of all) await converge(w, 'start');
    const alice = all.find((w) => w.who === 'u1' && w.query === QUERIES[0])!;
    // u1 sees player 1 under account 1 ("A1") because its coach, account 2 ("B2", outside u1's filter), is u1's.
    expect(JSON.stringify(alice.last?.data)).toContain('"players":[{"id":1,"level":1}');
    await db.sql`UPDATE account SET identity = 'u3' WHERE id = 2`;
    await converge(alice, 'coach given away');
    expect(JSON.stringify(alice.last?.data)).not.toContain('{"id":1,"level":1}');
    await db.sql`UPDATE account SET identity = 'u1' WHERE id = 2`;
    for (const w of all) await converge(w, 'coach back');
    await Promise.all(all.map((w) => w.sub.close()));
  });

  it('random writes to every table: each subscriber ends every step with exactly what a query returns', async () => {
    const all = await openAll();
    for (const w of all) await converge(w, 'start');
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const accounts = ['1', '2', '3', '4', String(BIG)];
    const pick = () => accounts[rand(accounts.length)]!;
    const ops: [string, () => Promise<unknown>][] = [
      ['rename', async () => db.sql`UPDATE account SET name = ${rand(2) ? 'A' : 'B'} || id WHERE id = ${pick()}`],
      ['give away', async () => db.sql`UPDATE account SET identity = ${`u${1 + rand(3)}`} WHERE id = ${pick()}`],
      ['level', async () => db.sql`UPDATE player SET level = level + 1 WHERE id = ${1 + rand(8)}`],
      ['move player', async () => db.sql`UPDATE player SET account_id = ${pick()} WHERE id = ${1 + rand(8)}`],
      ['change coach', async () => db.sql`UPDATE player SET coach_id = ${rand(4) ? pick() : null} WHERE id = ${1 + rand(8)}`],
      ['new player', async () => db.sql`INSERT INTO player VALUES (${1 + rand(8)}, ${pick()}, ${pick()}, 0) ON CONFLICT (id) DO NOTHING`],
      ['delete player', async () => db.sql`DELETE FROM player WHERE id = ${1 + rand(8)}`],
      ['admin', async () => (rand(2) ? db.sql`INSERT INTO admin VALUES ('u3') ON CONFLICT DO NOTHING` : db.sql`DELETE FROM admin`)],
      [
        'two tables in one transaction',
        async () =>
          db.sql.begin(async (tx) => {
            await tx`UPDATE account SET name = 'A' || id WHERE id = ${pick()}`;
            await tx`UPDATE player SET account_id = ${pick()}, level = level + 10 WHERE id = ${1 + rand(8)}`;
          }),
      ],
      ['group', async () => db.sql`UPDATE grp SET name = ${`g${rand(100)}`} WHERE id = ${1 + rand(2)}`],
      ['document', async () => db.sql`UPDATE document SET grp_id = ${1 + rand(2)}, title = ${`d${rand(100)}`} WHERE id = ${1 + rand(3)}`],
    ];
    for (let step = 0; step < 60; step++) {
      const [name, op] = ops[rand(ops.length)]!;
      await op();
      for (const w of all) await converge(w, `step ${step} (${name})`);
    }
    await Promise.all(all.map((w) => w.sub.close()));
  });
});
