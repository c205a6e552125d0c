import { beforeAll, describe, expect, it } from 'vitest';
import { execute, parse } from 'graphql';
import { useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness, type Subscription } from './support/live.ts';
import { eventsUntil, Replica, stampedHead } from './support/replica.ts';
import { mulberry32 } from './support/reference.ts';

// Issue 12: a t_changes subscriber's replica (its events applied in order) equals a fresh query of
// t after every commit, whatever table the commit wrote: memberships granted and revoked, admins
// added and removed, documents moved between groups and owners. Random commits, fixed seed.
const db = useTestDatabase();
let h: LiveHarness;
let second: LiveHarness;

const TABLES = {
  doc: {
    select: [
      'SELECT * FROM doc WHERE owner = :sender',
      'SELECT d.* FROM doc d JOIN membership m ON m.grp = d.grp WHERE m.identity = :sender',
      'SELECT doc.* FROM doc JOIN admin ON admin.identity = :sender',
    ],
  },
};
const PEOPLE = ['ann', 'ben', 'cat', 'dan'];

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, grp int NOT NULL, owner text NOT NULL, title text NOT NULL);
    CREATE TABLE membership (grp int NOT NULL, identity text NOT NULL, PRIMARY KEY (grp, identity));
    CREATE TABLE admin (identity text PRIMARY KEY);
  `);
  h = await startLive(db, TABLES);
  // Another gateway process of the same database: its own feed and engine.
  second = await startLive(db, TABLES);
});

type Row = { id: number; grp: number; owner: string; title: string };

const SELECTION = '{ op row { id grp owner title } old { id grp owner title } }';
const FROM = `subscription($after: String) { doc_changes(after: $after) { op position row { id title } old { id title } } }`;

const until = (sub: Subscription, title: string) => eventsUntil(sub, 'doc_changes', title);
const head = () => stampedHead(db.sql, h.feed);

async function fresh(person: string): Promise<Row[]> {
  const r = await execute({ schema: h.schema, document: parse('{ doc(order_by: {id: asc}) { id grp owner title } }'), contextValue: { caller: asCaller(person) } });
  return r.data!['doc'] as Row[];
}

async function converge(replica: Replica<Row>, person: string): Promise<void> {
  await replica.converge(await fresh(person), person);
}

describe('change streams follow visibility through every table the rules read', () => {
  it('random commits to every table: each replica equals a fresh query after each one', async () => {
    const replicas = new Map<string, Replica<Row>>();
    for (const p of PEOPLE) replicas.set(p, new Replica<Row>(await h.open(p, `subscription { doc_changes ${SELECTION} }`), 'doc_changes'));
    const rnd = mulberry32(7);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    let nextId = 1;
    for (let step = 0; step < 80; step++) {
      const n = (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM doc`)[0]!.n;
      const k = rnd();
      const person = pick(PEOPLE);
      const grp = 1 + Math.floor(rnd() * 3);
      if (k < 0.25 || n === 0) await db.sql`INSERT INTO doc VALUES (${nextId++}, ${grp}, ${person}, ${`t${step}`})`;
      else if (k < 0.35) await db.sql`UPDATE doc SET grp = ${grp} WHERE id = (SELECT id FROM doc ORDER BY id OFFSET ${Math.floor(rnd() * n)} LIMIT 1)`;
      else if (k < 0.45) await db.sql`UPDATE doc SET owner = ${person}, title = ${`t${step}`} WHERE id = (SELECT id FROM doc ORDER BY id OFFSET ${Math.floor(rnd() * n)} LIMIT 1)`;
      else if (k < 0.5) await db.sql`DELETE FROM doc WHERE id = (SELECT id FROM doc ORDER BY id OFFSET ${Math.floor(rnd() * n)} LIMIT 1)`;
      else if (k < 0.7) await db.sql`INSERT INTO membership VALUES (${grp}, ${person}) ON CONFLICT DO NOTHING`;
      else if (k < 0.85) await db.sql`DELETE FROM membership WHERE grp = ${grp} AND identity = ${person}`;
      else if (k < 0.92) await db.sql`INSERT INTO admin VALUES (${person}) ON CONFLICT DO NOTHING`;
      else if (k < 0.97) await db.sql`DELETE FROM admin WHERE identity = ${person}`;
      else
        // One transaction writing all three tables: revoke, move, grant.
        await db.sql.begin(async (tx) => {
          await tx`DELETE FROM membership WHERE identity = ${person}`;
          await tx`UPDATE doc SET grp = ${grp}`;
          await tx`INSERT INTO membership VALUES (${grp}, ${person}) ON CONFLICT DO NOTHING`;
        });
      for (const [p, r] of replicas) await converge(r, p);
    }
    for (const [p, r] of replicas) expect(r.faults, p).toEqual([]);
    for (const r of replicas.values()) await r.sub.close();
  }, 120_000);

  it('a stream resumed in the middle of the events one commit caused gets exactly the rest, on either gateway', async () => {
    await db.sql`INSERT INTO doc VALUES (1001, 7, 'nobody', 'm1'), (1002, 7, 'nobody', 'm2'), (1003, 7, 'nobody', 'm3')`;
    await db.sql`INSERT INTO membership VALUES (7, 'fay'), (8, 'fay')`;
    const start = await head();
    await db.sql`DELETE FROM membership WHERE grp = 7 AND identity = 'fay'`;
    await db.sql`INSERT INTO doc VALUES (1004, 8, 'nobody', 'end')`;
    await head();
    const full = await until(await h.open('fay', FROM, { after: start }), 'end');
    expect(full.map((e) => `${e.op} ${(e.row ?? e.old)!.title}`)).toEqual(['DELETE m1', 'DELETE m2', 'DELETE m3', 'INSERT end']);
    // Three events of one commit, three distinct ordered positions.
    expect(new Set(full.map((e) => e.position)).size).toBe(4);
    // The other gateway gives the same events at the same positions.
    expect(await until(await second.open('fay', FROM, { after: start }), 'end')).toEqual(full);
    // Resumed after the first of the three: the other two, then what follows; nothing twice.
    const rest = await until(await second.open('fay', FROM, { after: full[0]!.position }), 'end');
    expect(rest).toEqual(full.slice(1));
    const last = await until(await h.open('fay', FROM, { after: full[2]!.position }), 'end');
    expect(last).toEqual(full.slice(3));
  });
});
