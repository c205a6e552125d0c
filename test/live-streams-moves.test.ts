import { beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionResult } from 'graphql';
import { useTestDatabase } from './support/db.ts';
import { startLive, type LiveHarness, type Subscription } from './support/live.ts';

// Issue 12: rows that enter a `t_stream` subscriber's view through another table (a membership
// granted) after its cursor passed them appear in its stream; rows past the cursor come with the
// pages as before; a revoke sends nothing; no other caller gets them.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = { doc: { select: 'SELECT d.* FROM doc d JOIN membership m ON m.grp = d.grp WHERE m.identity = :sender' } };

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, grp int NOT NULL, title text NOT NULL);
    CREATE TABLE membership (grp int NOT NULL, identity text NOT NULL, PRIMARY KEY (grp, identity));
    INSERT INTO doc VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, 2, 'd'), (5, 1, 'e'), (6, 1, 'f');
    INSERT INTO membership VALUES (1, 'ann');
  `);
  h = await startLive(db, TABLES);
});

const STREAM = 'subscription { doc_stream(batch_size: 10, cursor: {initial_value: {id: 0}}) { id title } }';
const ids = (r: ExecutionResult) => {
  expect(r.errors).toBeUndefined();
  return (r.data!['doc_stream'] as { id: number }[]).map((x) => x.id);
};
const next = async (sub: Subscription) => ids(await sub.next(20_000));

describe('t_stream rows entering the view through another table', () => {
  it('a group granted after the stream passed its rows sends them; a revoke sends nothing; others get none', async () => {
    const ann = await h.open('ann', STREAM);
    const bob = await h.open('bob', STREAM);
    expect(await next(ann)).toEqual([1, 2, 5, 6]);
    // Granted group 2: its rows 3 and 4 are behind ann's cursor (6), so no page would bring them.
    await db.sql`INSERT INTO membership VALUES (2, 'ann')`;
    expect(await next(ann)).toEqual([3, 4]);
    // A new row past the cursor comes with the next page, once.
    await db.sql`INSERT INTO doc VALUES (7, 2, 'g')`;
    expect(await next(ann)).toEqual([7]);
    // Revoked: nothing is sent (streams have no deletions); the sentinel proves nothing came between.
    await db.sql`DELETE FROM membership WHERE grp = 2 AND identity = 'ann'`;
    await db.sql`INSERT INTO doc VALUES (8, 1, 'h')`;
    expect(await next(ann)).toEqual([8]);
    // Granted again: every row of the group, all behind the cursor now, in cursor order.
    await db.sql`INSERT INTO membership VALUES (2, 'ann')`;
    expect(await next(ann)).toEqual([3, 4, 7]);
    // Bob was granted nothing: his first rows are those of his own group, none of ann's.
    await db.sql`INSERT INTO doc VALUES (9, 3, 'i')`;
    await db.sql`INSERT INTO membership VALUES (3, 'bob')`;
    expect(await next(bob)).toEqual([9]);
    await db.sql`INSERT INTO doc VALUES (10, 3, 'j')`;
    expect(await next(bob)).toEqual([10]);
    expect([ann.pending(), bob.pending()]).toEqual([0, 0]);
    await Promise.all([ann.close(), bob.close()]);
  });
});
