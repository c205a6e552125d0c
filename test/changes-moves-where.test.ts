import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { execute, parse } from 'graphql';
import { asCaller, startLive, type LiveHarness, type Subscription } from './support/live.ts';
import { Replica } from './support/replica.ts';
import { mulberry32 } from './support/reference.ts';

// Issue 12: a change stream's `where` through a relationship is judged like its rules, as of each
// change. A row that leaves the filter because another table changed (its group renamed) reaches the
// subscriber as a DELETE, one that enters it as an INSERT, at the causing change's position; a resume
// from before gives the same events at the same positions.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  doc: { select: 'SELECT d.* FROM doc d JOIN membership m ON m.grp_id = d.grp_id WHERE m.identity = :sender' },
  grp: { select: 'SELECT g.* FROM grp g JOIN membership m ON m.grp_id = g.id WHERE m.identity = :sender' },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL, color text NOT NULL DEFAULT 'x');
    CREATE TABLE doc (id int PRIMARY KEY, grp_id int NOT NULL REFERENCES grp, title text NOT NULL);
    CREATE TABLE membership (grp_id int NOT NULL REFERENCES grp, identity text NOT NULL, PRIMARY KEY (grp_id, identity));
    INSERT INTO grp (id, name) VALUES (1, 'red one'), (2, 'blue'), (3, 'red three');
    INSERT INTO membership VALUES (1, 'ann'), (2, 'ann'), (3, 'bob');
    INSERT INTO doc VALUES (10, 1, 'in red one'), (20, 2, 'in blue'), (40, 3, 'bobs red');
  `);
  h = await startLive(db, TABLES);
});

type Event = { op: string; position: string; row: { id: number } | null; old: { id: number; title: string } | null };
const RED = 'subscription($after: String) { doc_changes(after: $after, where: {grp: {name: {_like: "red%"}}}) { op position row { id } old { id title } } }';

async function upTo(sub: Subscription, last: (e: Event) => boolean): Promise<Event[]> {
  const seen: Event[] = [];
  for (;;) {
    const r = await sub.next(20_000);
    expect(r.errors).toBeUndefined();
    const e = r.data!['doc_changes'] as Event;
    seen.push(e);
    if (last(e)) return seen;
  }
}
const brief = (e: Event) => `${e.op} ${e.row?.id ?? e.old?.id}`;

describe('moves through a filter on a relationship', () => {
  it('a group renamed into or out of the filter moves its documents; other changes of it move nothing', async () => {
    const [top] = await db.sql<{ top: string }[]>`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    const live = await h.open('ann', RED, { after: top!.top });
    await db.sql`UPDATE grp SET name = 'red two' WHERE id = 2`;
    await db.sql`UPDATE grp SET name = 'blue one' WHERE id = 1`;
    // Neither changes what the filter says: a rename within it, and a column it does not read.
    await db.sql`UPDATE grp SET name = 'red 2' WHERE id = 2`;
    await db.sql`UPDATE grp SET color = 'y' WHERE id = 2`;
    // Bob's group, hidden from ann, renamed out of and into the filter: nothing for her.
    await db.sql`UPDATE grp SET name = 'green' WHERE id = 3`;
    await db.sql`UPDATE grp SET name = 'red again' WHERE id = 3`;
    await db.sql`INSERT INTO doc VALUES (30, 2, 'sentinel')`;
    const events = await upTo(live, (e) => e.row?.id === 30);
    expect(events.map(brief)).toEqual(['INSERT 20', 'DELETE 10', 'INSERT 30']);
    // The DELETE carries the last image she saw; the moves are at the renames' positions.
    expect(events[1]!.old).toEqual({ id: 10, title: 'in red one' });
    expect(events[0]!.position).toMatch(/^\d+:1$/);
    expect(events[1]!.position).toMatch(/^\d+:1$/);
    // Resumed from the start, and from between the two moves: the same events at the same positions.
    const again = await h.open('ann', RED, { after: top!.top });
    expect((await upTo(again, (e) => e.row?.id === 30)).map((e) => [e.position, brief(e)])).toEqual(events.map((e) => [e.position, brief(e)]));
    const middle = await h.open('ann', RED, { after: events[0]!.position });
    expect((await upTo(middle, (e) => e.row?.id === 30)).map((e) => [e.position, brief(e)])).toEqual(events.slice(1).map((e) => [e.position, brief(e)]));
    // A document moved between groups leaves the filter by its own change: a DELETE, as before.
    await db.sql`UPDATE doc SET grp_id = 1 WHERE id = 30`;
    expect((await upTo(live, () => true)).map(brief)).toEqual(['DELETE 30']);
    await Promise.all([live.close(), again.close(), middle.close()]);
  });

  it('losing the membership that made the group visible moves its documents out of the filter too', async () => {
    const [top] = await db.sql<{ top: string }[]>`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    await db.sql`INSERT INTO membership VALUES (3, 'cat')`;
    const cat = await h.open('cat', RED, { after: top!.top });
    expect((await upTo(cat, () => true)).map(brief)).toEqual(['INSERT 40']);
    await db.sql`DELETE FROM membership WHERE grp_id = 3 AND identity = 'cat'`;
    expect((await upTo(cat, () => true)).map(brief)).toEqual(['DELETE 40']);
    await cat.close();
  });

  it('random commits to groups, memberships and documents: each filtered replica equals a fresh filtered query after each one', async () => {
    type Row = { id: number; grp_id: number; title: string };
    const PEOPLE = ['ann', 'bob', 'cat'];
    const FILTER = '{grp: {name: {_like: "red%"}}}';
    const fresh = async (person: string) => {
      const r = await execute({ schema: h.schema, document: parse(`{ doc(where: ${FILTER}, order_by: {id: asc}) { id grp_id title } }`), contextValue: { caller: asCaller(person) } });
      return r.data!['doc'] as Row[];
    };
    const [top] = await db.sql<{ top: string }[]>`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    const replicas = new Map<string, Replica<Row>>();
    for (const p of PEOPLE) {
      const sub = await h.open(p, `subscription($after: String) { doc_changes(after: $after, where: ${FILTER}) { op row { id grp_id title } old { id grp_id title } } }`, { after: top!.top });
      // Nothing is written between the position and this query: the replica starts from that state.
      const replica = new Replica<Row>(sub, 'doc_changes');
      for (const row of await fresh(p)) replica.rows.set(row.id, row);
      replicas.set(p, replica);
    }
    const rnd = mulberry32(11);
    const pick = <T,>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const names = ['red a', 'red b', 'blue', 'green'];
    let nextId = 100;
    for (let step = 0; step < 60; step++) {
      const k = rnd();
      const person = pick(PEOPLE);
      const grp = 1 + Math.floor(rnd() * 3);
      const n = (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM doc`)[0]!.n;
      const anyDoc = db.sql`(SELECT id FROM doc ORDER BY id OFFSET ${Math.floor(rnd() * n)} LIMIT 1)`;
      if (k < 0.25) await db.sql`UPDATE grp SET name = ${pick(names)} WHERE id = ${grp}`;
      else if (k < 0.3) await db.sql`UPDATE grp SET color = ${`c${step}`} WHERE id = ${grp}`;
      else if (k < 0.45) await db.sql`INSERT INTO membership VALUES (${grp}, ${person}) ON CONFLICT DO NOTHING`;
      else if (k < 0.55) await db.sql`DELETE FROM membership WHERE grp_id = ${grp} AND identity = ${person}`;
      else if (k < 0.7 || n === 0) await db.sql`INSERT INTO doc VALUES (${nextId++}, ${grp}, ${`t${step}`})`;
      else if (k < 0.8) await db.sql`UPDATE doc SET grp_id = ${grp} WHERE id = ${anyDoc}`;
      else if (k < 0.88) await db.sql`UPDATE doc SET title = ${`t${step}`} WHERE id = ${anyDoc}`;
      else if (k < 0.93) await db.sql`DELETE FROM doc WHERE id = ${anyDoc}`;
      else
        // One transaction through all three: a group renamed, a member moved to it, a document moved.
        await db.sql.begin(async (tx) => {
          await tx`UPDATE grp SET name = ${pick(names)} WHERE id = ${grp}`;
          await tx`DELETE FROM membership WHERE identity = ${person}`;
          await tx`INSERT INTO membership VALUES (${grp}, ${person})`;
          await tx`UPDATE doc SET grp_id = ${grp} WHERE id = ${anyDoc}`;
        });
      for (const [p, r] of replicas) await r.converge(await fresh(p), `${p} after step ${step}`);
    }
    for (const [p, r] of replicas) expect(r.faults, p).toEqual([]);
    for (const r of replicas.values()) await r.sub.close();
  }, 120_000);
});
