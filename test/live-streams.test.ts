import { beforeAll, describe, expect, it } from 'vitest';
import { parse, subscribe, type ExecutionResult } from 'graphql';
import { useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness, type Subscription } from './support/live.ts';

// Issue 12: `t_stream` subscribers of one shape share each statement, each from its own cursor; a
// reader that does not read holds no one back and loses nothing.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = { item: { select: ['SELECT * FROM item WHERE owner = :sender', 'SELECT * FROM item WHERE shared'] } };

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE item (id int PRIMARY KEY, owner text NOT NULL, shared boolean NOT NULL DEFAULT false);
    INSERT INTO item VALUES (1, 'ann', false), (2, 'bob', false), (3, 'ann', true), (4, 'bob', false), (5, 'ann', false), (6, 'bob', true), (7, 'ann', false),
                            (11, 'cat', false), (12, 'cat', false), (13, 'cat', false);
  `);
  h = await startLive(db, TABLES);
});

const STREAM = (cursor: number, ordering = 'ASC') => `subscription { item_stream(batch_size: 2, cursor: {initial_value: {id: ${cursor}}, ordering: ${ordering}}) { id } }`;
const ids = (r: ExecutionResult) => {
  expect(r.errors).toBeUndefined();
  return (r.data!['item_stream'] as { id: number }[]).map((x) => x.id);
};
const batches = async (sub: Subscription, n: number) => {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) out.push(ids(await sub.next(20_000)));
  return out;
};

describe('t_stream, multiplexed', () => {
  it('subscribers of one shape get the visible rows past their own cursors, and one statement per commit serves them all', async () => {
    const annFromStart = await h.open('ann', STREAM(0));
    const annFrom3 = await h.open('ann', STREAM(3));
    const bob = await h.open('bob', STREAM(0));
    expect(await batches(annFromStart, 3)).toEqual([[1, 3], [5, 6], [7]]);
    expect(await batches(annFrom3, 2)).toEqual([[5, 6], [7]]);
    expect(await batches(bob, 2)).toEqual([[2, 3], [4, 6]]);
    // Bob's second batch was full: the look past it finds nothing. Wait for the engine to settle.
    const settled = async () => {
      for (let last = -1; last !== h.live.stats.statements; ) {
        last = h.live.stats.statements;
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    await settled();
    let before = h.live.stats.statements;
    await db.sql`INSERT INTO item VALUES (8, 'ann', false)`;
    expect(ids(await annFromStart.next(20_000))).toEqual([8]);
    expect(ids(await annFrom3.next(20_000))).toEqual([8]);
    await settled();
    // One shape: one statement for the three subscribers (it was one per subscriber).
    expect(h.live.stats.statements - before).toBe(1);
    before = h.live.stats.statements;
    await db.sql`INSERT INTO item VALUES (9, 'bob', true)`;
    for (const sub of [annFromStart, annFrom3, bob]) expect(ids(await sub.next(20_000))).toEqual([9]);
    await settled();
    expect(h.live.stats.statements - before).toBe(1);
    expect([annFromStart.pending(), annFrom3.pending(), bob.pending()]).toEqual([0, 0, 0]);
    await Promise.all([annFromStart.close(), annFrom3.close(), bob.close()]);
  });

  it('descending, from a cursor down', async () => {
    const ann = await h.open('ann', STREAM(6, 'DESC'));
    expect(await batches(ann, 2)).toEqual([[5, 3], [1]]);
    await ann.close();
  });

  it('a subscriber that does not read holds no one back, and gets every row in order once it reads', async () => {
    const result = await subscribe({ schema: h.schema, document: parse(STREAM(10)), contextValue: { caller: asCaller('cat') } });
    if (!(Symbol.asyncIterator in result)) throw new Error('refused');
    const cat = result[Symbol.asyncIterator]();
    expect(ids((await cat.next()).value as ExecutionResult)).toEqual([11, 12]);
    // Cat reads no further while rows keep coming; ann's stream goes on meanwhile.
    const ann = await h.open('ann', STREAM(100));
    await db.sql`INSERT INTO item VALUES (14, 'cat', false)`;
    await db.sql`INSERT INTO item VALUES (101, 'ann', false)`;
    expect(ids(await ann.next(20_000))).toEqual([101]);
    await db.sql`INSERT INTO item VALUES (15, 'cat', false), (16, 'cat', false), (17, 'cat', false)`;
    await db.sql`INSERT INTO item VALUES (102, 'ann', false)`;
    expect(ids(await ann.next(20_000))).toEqual([102]);
    const seen: number[] = [];
    while (seen.at(-1) !== 17) {
      const batch = ids((await cat.next()).value as ExecutionResult);
      expect(batch.length).toBeLessThanOrEqual(2);
      seen.push(...batch);
    }
    expect(seen).toEqual([13, 14, 15, 16, 17]);
    await cat.return?.();
    await ann.close();
  });
});
