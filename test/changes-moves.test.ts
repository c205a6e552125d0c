import { beforeAll, describe, expect, it } from 'vitest';
import { execute, parse } from 'graphql';
import { useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness, type Subscription } from './support/live.ts';

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

/** A subscriber's copy of what it may see, kept from its events only. */
class Replica {
  rows = new Map<number, Row>();
  faults: string[] = [];
  constructor(readonly sub: Subscription) {}
  apply(e: { op: string; row: Row | null; old: Row | null }): void {
    const id = (e.row ?? e.old)!.id;
    if (e.op === 'INSERT' && this.rows.has(id)) this.faults.push(`INSERT of ${id}, which it holds`);
    if (e.op !== 'INSERT' && !this.rows.has(id)) this.faults.push(`${e.op} of ${id}, which it does not hold`);
    if (e.op === 'DELETE') this.rows.delete(id);
    else this.rows.set(id, e.row!);
  }
  sorted(): Row[] {
    return [...this.rows.values()].sort((a, b) => a.id - b.id);
  }
}

const SELECTION = '{ op row { id grp owner title } old { id grp owner title } }';
const FROM = `subscription($after: String) { doc_changes(after: $after) { op position row { id title } old { id title } } }`;
type Event = { op: string; position: string; row: { title: string } | null; old: { title: string } | null };

async function until(sub: Subscription, title: string): Promise<Event[]> {
  const out: Event[] = [];
  for (;;) {
    const r = await sub.next();
    expect(r.errors).toBeUndefined();
    const e = r.data!['doc_changes'] as Event;
    out.push(e);
    if ((e.row ?? e.old)?.title === title) return out;
  }
}

async function head(): Promise<string> {
  // WAL capture: a commit reaches the log once the leader appended it.
  await h.feed.poll();
  for (;;) {
    const [row] = await db.sql<{ held: boolean; top: string }[]>`
      SELECT EXISTS (SELECT 1 FROM rowgate.change_log WHERE pos IS NULL) AS held, COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    if (!row!.held) return row!.top;
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function fresh(person: string): Promise<Row[]> {
  const r = await execute({ schema: h.schema, document: parse('{ doc(order_by: {id: asc}) { id grp owner title } }'), contextValue: { caller: asCaller(person) } });
  return r.data!['doc'] as Row[];
}

/** Applies events until the replica equals a fresh query (or fails after a few seconds). */
async function converge(replica: Replica, person: string): Promise<void> {
  const want = await fresh(person);
  const deadline = Date.now() + 5000;
  while (JSON.stringify(replica.sorted()) !== JSON.stringify(want)) {
    if (Date.now() > deadline) throw new Error(`${person}: replica ${JSON.stringify(replica.sorted())} != query ${JSON.stringify(want)}`);
    const r = await replica.sub.next(Math.max(1, deadline - Date.now()));
    expect(r.errors).toBeUndefined();
    replica.apply(r.data!['doc_changes'] as { op: string; row: Row | null; old: Row | null });
  }
}

function random(seed: number): () => number {
  let x = seed;
  return () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
}

describe('change streams follow visibility through every table the rules read', () => {
  it('random commits to every table: each replica equals a fresh query after each one', async () => {
    const replicas = new Map<string, Replica>();
    for (const p of PEOPLE) replicas.set(p, new Replica(await h.open(p, `subscription { doc_changes ${SELECTION} }`)));
    const rnd = random(7);
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
