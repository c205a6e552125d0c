import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startLive, type LiveHarness, type Subscription } from './support/live.ts';

// A change to a table the rules read moves rows in or out of a change stream's view only when it
// changes a column the rules read: an update of any other column (an account renamed, under rules
// that read its id and identity) runs no moves statement at all, and one of a read column still moves.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = { note: { select: 'SELECT n.* FROM note n JOIN acct a ON a.id = n.acct WHERE a.identity = :sender' } };

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE acct (id int PRIMARY KEY, identity text NOT NULL, name text NOT NULL);
    CREATE TABLE note (id int PRIMARY KEY, acct int NOT NULL, title text NOT NULL);
    INSERT INTO acct VALUES (1, 'ann', 'A'), (2, 'bob', 'B');
    INSERT INTO note VALUES (10, 1, 'mine'), (20, 2, 'bobs');
  `);
  h = await startLive(db, TABLES);
});

type Event = { op: string; row: { id: number; title: string } | null; old: { id: number; title: string } | null };

async function nextEvent(sub: Subscription): Promise<Event> {
  // Generous: a loaded machine delays stamping; no timing is asserted.
  const r = await sub.next(20_000);
  expect(r.errors).toBeUndefined();
  return r.data!['note_changes'] as Event;
}

describe('moves through another table', () => {
  it('an update of a column the rules do not read runs no moves statement; one of a read column moves rows', async () => {
    // From the log's present position, so no change below can be missed however the start races it.
    const [top] = await db.sql<{ top: string }[]>`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    const sub = await h.open('ann', 'subscription($after: String) { note_changes(after: $after) { op row { id title } old { id title } } }', { after: top!.top });
    while (h.live.stats.subscriptions < 1) await new Promise((r) => setTimeout(r, 10));

    // What delivering one change of note costs, alone.
    let before = h.live.stats.statements;
    await db.sql`INSERT INTO note VALUES (11, 1, 'marker one')`;
    expect(await nextEvent(sub)).toEqual({ op: 'INSERT', row: { id: 11, title: 'marker one' }, old: null });
    const alone = h.live.stats.statements - before;

    // A rename of bob's account, then the same kind of change: nothing more is run for the rename.
    before = h.live.stats.statements;
    await db.sql`UPDATE acct SET name = 'renamed' WHERE id = 2`;
    await db.sql`INSERT INTO note VALUES (12, 1, 'marker two')`;
    expect(await nextEvent(sub)).toEqual({ op: 'INSERT', row: { id: 12, title: 'marker two' }, old: null });
    expect(h.live.stats.statements - before).toBe(alone);

    // Bob's account handed to ann: his note enters her view.
    await db.sql`UPDATE acct SET identity = 'ann' WHERE id = 2`;
    expect(await nextEvent(sub)).toEqual({ op: 'INSERT', row: { id: 20, title: 'bobs' }, old: null });
    await sub.close();
  });
});
