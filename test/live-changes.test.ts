import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startLive, type LiveHarness, type Subscription } from './support/live.ts';

// Change streams (`t_changes`) and streaming subscriptions (`t_stream`) through the engine.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  note: { select: ['SELECT * FROM note WHERE owner = :sender', 'SELECT * FROM note WHERE shared'] },
};

beforeAll(async () => {
  await db.sql.unsafe(`CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL, shared boolean NOT NULL DEFAULT false);`);
  h = await startLive(db, TABLES);
});

type Event = { op: string; position: string; row: { id: number; title: string } | null; old: { id: number; title: string } | null };
const CHANGES = 'subscription($after: String, $where: note_bool_exp) { note_changes(after: $after, where: $where) { op position row { id title } old { id title } } }';

async function event(sub: Subscription): Promise<Event> {
  const r = await sub.next();
  expect(r.errors).toBeUndefined();
  return r.data!['note_changes'] as Event;
}
const brief = (e: Event) => [e.op, e.row?.title ?? null, e.old?.title ?? null];

describe('t_changes', () => {
  it('sends each subscriber exactly the changes it may see, with moves in and out as INSERT/DELETE', async () => {
    const alice = await h.open('alice', CHANGES);
    const bob = await h.open('bob', CHANGES);
    await db.sql`INSERT INTO note VALUES (1, 'alice', 'private', false)`;
    expect(brief(await event(alice))).toEqual(['INSERT', 'private', null]);
    await db.sql`UPDATE note SET title = 'private 2' WHERE id = 1`;
    expect(brief(await event(alice))).toEqual(['UPDATE', 'private 2', 'private']);
    await db.sql`UPDATE note SET shared = true, title = 'public' WHERE id = 1`;
    expect(brief(await event(alice))).toEqual(['UPDATE', 'public', 'private 2']);
    // The first event bob ever gets: everything before was hidden from him.
    expect(brief(await event(bob))).toEqual(['INSERT', 'public', null]);
    await db.sql`UPDATE note SET shared = false, title = 'hidden again' WHERE id = 1`;
    expect(brief(await event(alice))).toEqual(['UPDATE', 'hidden again', 'public']);
    // Bob learns the row left his view, with the last image he could see, never the new one.
    expect(brief(await event(bob))).toEqual(['DELETE', null, 'public']);
    await db.sql`DELETE FROM note WHERE id = 1`;
    expect(brief(await event(alice))).toEqual(['DELETE', null, 'hidden again']);
    // A sentinel only bob can see proves he received nothing in between.
    await db.sql`INSERT INTO note VALUES (2, 'bob', 'sentinel', false)`;
    expect(brief(await event(bob))).toEqual(['INSERT', 'sentinel', null]);
    expect(alice.pending()).toBe(0);
    await alice.close();
    await bob.close();
  });

  it('a multi-row transaction arrives as its events in order', async () => {
    const carol = await h.open('carol', CHANGES);
    await db.sql.begin(async (tx) => {
      await tx`INSERT INTO note VALUES (10, 'carol', 'a', false), (11, 'carol', 'b', false)`;
      await tx`UPDATE note SET title = 'a2' WHERE id = 10`;
    });
    const events = [await event(carol), await event(carol), await event(carol)];
    expect(events.map(brief)).toEqual([['INSERT', 'a', null], ['INSERT', 'b', null], ['UPDATE', 'a2', 'a']]);
    const positions = events.map((e) => BigInt(e.position));
    expect([...positions].sort((x, y) => (x < y ? -1 : 1))).toEqual(positions);
    await carol.close();
  });

  it('where filters images; leaving the filter is a DELETE', async () => {
    const dave = await h.open('dave', CHANGES, { where: { title: { _like: 'x%' } } });
    await db.sql`INSERT INTO note VALUES (20, 'dave', 'no', false), (21, 'dave', 'xyz', false)`;
    expect(brief(await event(dave))).toEqual(['INSERT', 'xyz', null]);
    await db.sql`UPDATE note SET title = 'gone' WHERE id = 21`;
    expect(brief(await event(dave))).toEqual(['DELETE', null, 'xyz']);
    await dave.close();
  });

  it('resumes after a position with nothing lost and nothing repeated', async () => {
    const first = await h.open('erin', CHANGES);
    await db.sql`INSERT INTO note VALUES (30, 'erin', 'one', false)`;
    const seen = await event(first);
    await first.close();
    // Missed while disconnected: two of erin's changes and one of someone else's.
    await db.sql`INSERT INTO note VALUES (31, 'erin', 'two', false)`;
    await db.sql`INSERT INTO note VALUES (32, 'frank', 'not hers', false)`;
    await db.sql`UPDATE note SET title = 'one!' WHERE id = 30`;
    await h.feed.poll();
    const resumed = await h.open('erin', CHANGES, { after: seen.position });
    expect(brief(await event(resumed))).toEqual(['INSERT', 'two', null]);
    expect(brief(await event(resumed))).toEqual(['UPDATE', 'one!', 'one']);
    await db.sql`INSERT INTO note VALUES (33, 'erin', 'three', false)`;
    expect(brief(await event(resumed))).toEqual(['INSERT', 'three', null]);
    expect(resumed.pending()).toBe(0);
    await resumed.close();
  });

  it('many subscribers resuming at once, each from its own position, get exactly their own changes', async () => {
    // Recorders from the start: what each owner may see, with positions.
    const owners = ['kim', 'lou', 'max'];
    const recorders = await Promise.all(owners.map((o) => h.open(o, CHANGES)));
    const history = new Map<string, Event[]>(owners.map((o) => [o, []]));
    let id = 200;
    for (let round = 0; round < 4; round++) {
      for (const o of owners) {
        await db.sql`INSERT INTO note VALUES (${id}, ${o}, ${`${o}-${round}`}, false)`;
        await db.sql`UPDATE note SET title = ${`${o}-${round}!`} WHERE id = ${id}`;
        id++;
      }
    }
    for (const [i, o] of owners.entries()) for (let k = 0; k < 8; k++) history.get(o)!.push(await event(recorders[i]!));
    await h.feed.poll();
    // Two resumes per owner (one shape for all six: the owner is a value), from different points.
    const cuts = owners.flatMap((o) => [1, 5].map((k) => ({ owner: o, after: history.get(o)![k]!.position, expect: history.get(o)!.slice(k + 1) })));
    const resumed = await Promise.all(cuts.map((c) => h.open(c.owner, CHANGES, { after: c.after })));
    // Committed while they catch up: each must get it after its replay, once.
    for (const o of owners) await db.sql`INSERT INTO note VALUES (${id++}, ${o}, ${`${o}-late`}, false)`;
    for (const [i, c] of cuts.entries()) {
      const got: Event[] = [];
      for (let k = 0; k < c.expect.length + 1; k++) got.push(await event(resumed[i]!));
      expect(got.slice(0, -1).map((e) => [e.position, ...brief(e)])).toEqual(c.expect.map((e) => [e.position, ...brief(e)]));
      expect(brief(got.at(-1)!)).toEqual(['INSERT', `${c.owner}-late`, null]);
    }
    // A sentinel per owner, and nothing else before it.
    for (const o of owners) await db.sql`INSERT INTO note VALUES (${id++}, ${o}, ${`${o}-sentinel`}, false)`;
    for (const [i, c] of cuts.entries()) {
      expect(brief(await event(resumed[i]!))).toEqual(['INSERT', `${c.owner}-sentinel`, null]);
      expect(resumed[i]!.pending()).toBe(0);
    }
    await Promise.all([...recorders, ...resumed].map((s) => s.close()));
  });

  it('rejects a malformed position', async () => {
    const result = await h.open('erin', CHANGES, { after: "1; DROP TABLE note" }).catch((e: unknown) => e);
    expect(String(result)).toContain('after must be a position');
  });
});

describe('t_stream', () => {
  it('sends rows past the cursor in batches, then new rows as they commit', async () => {
    await db.sql`INSERT INTO note VALUES (100, 'gus', 'g1', false), (101, 'gus', 'g2', false), (102, 'gus', 'g3', false), (103, 'hal', 'h1', false)`;
    const gus = await h.open('gus', 'subscription { note_stream(batch_size: 2, cursor: {initial_value: {id: 99}, ordering: ASC}) { id } }');
    const ids = async () => ((await gus.next()).data!['note_stream'] as { id: number }[]).map((r) => r.id);
    expect(await ids()).toEqual([100, 101]);
    expect(await ids()).toEqual([102]);
    await db.sql`INSERT INTO note VALUES (104, 'hal', 'h2', false), (105, 'gus', 'g4', false)`;
    expect(await ids()).toEqual([105]);
    await gus.close();
  });
});
