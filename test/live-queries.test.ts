import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { parse, subscribe } from 'graphql';
import { asCaller, startLive, type LiveHarness } from './support/live.ts';

// Live queries through the engine, in-process (the transports have their own tests): first result
// at once, a new one after each commit that changes it, never an unchanged one, and visibility
// that follows dependency tables.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  account: {
    select: ['SELECT * FROM account WHERE identity = :sender', 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'],
  },
  player: { select: 'SELECT p.* FROM account a JOIN player p ON a.id = p.id' },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL, name text NOT NULL);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY REFERENCES account(id), level int NOT NULL);
    INSERT INTO account VALUES (1, 'alice', 'Alice'), (2, 'bob', 'Bob');
    INSERT INTO player VALUES (1, 1), (2, 1);
  `);
  h = await startLive(db, TABLES);
});

const names = (r: { data?: Record<string, unknown> | null }, field = 'account') => (r.data?.[field] as { name: string }[]).map((a) => a.name);

describe('live queries', () => {
  it('first result at once, then one per changing commit, none for unrelated commits', async () => {
    const alice = await h.open('alice', 'subscription { account(order_by: {id: asc}) { name } }');
    expect(names(await alice.next())).toEqual(['Alice']);
    await db.sql`UPDATE account SET name = 'Alice 2' WHERE id = 1`;
    expect(names(await alice.next())).toEqual(['Alice 2']);
    // Bob's row changes: alice's result is the same, so nothing is sent to her...
    await db.sql`UPDATE account SET name = 'Bob 2' WHERE id = 2`;
    // ...which the next change of hers proves: the payload after it is her new state, not a repeat.
    await db.sql`UPDATE account SET name = 'Alice 3' WHERE id = 1`;
    expect(names(await alice.next())).toEqual(['Alice 3']);
    expect(alice.pending()).toBe(0);
    await alice.close();
  });

  it('inserting into admin (a table the rules read) shows every account; deleting hides them', async () => {
    const bob = await h.open('bob', 'subscription { account(order_by: {id: asc}) { id } }');
    const ids = (r: { data?: Record<string, unknown> | null }) => (r.data?.['account'] as { id: number }[]).map((a) => a.id);
    expect(ids(await bob.next())).toEqual([2]);
    await db.sql`INSERT INTO admin VALUES ('bob')`;
    expect(ids(await bob.next())).toEqual([1, 2]);
    await db.sql`DELETE FROM admin WHERE identity = 'bob'`;
    expect(ids(await bob.next())).toEqual([2]);
    await bob.close();
  });

  it('a multi-row transaction arrives as one consistent result', async () => {
    const admin = await h.open('admin', 'subscription { player_aggregate { aggregate { count sum { level } } } }');
    expect((await admin.next()).data).toEqual({ player_aggregate: { aggregate: { count: 2, sum: { level: '2' } } } });
    await db.sql.begin(async (tx) => {
      await tx`INSERT INTO account VALUES (3, 'carol', 'Carol'), (4, 'dave', 'Dave')`;
      await tx`INSERT INTO player VALUES (3, 5), (4, 7)`;
    });
    expect((await admin.next()).data).toEqual({ player_aggregate: { aggregate: { count: 4, sum: { level: '14' } } } });
    await admin.close();
  });

  it('by_pk follows the row in and out of visibility', async () => {
    const carol = await h.open('carol', 'subscription { player_by_pk(id: 4) { id level } }');
    expect((await carol.next()).data).toEqual({ player_by_pk: null });
    await db.sql`INSERT INTO admin VALUES ('carol')`;
    expect((await carol.next()).data).toEqual({ player_by_pk: { id: 4, level: 7 } });
    await db.sql`DELETE FROM admin WHERE identity = 'carol'`;
    expect((await carol.next()).data).toEqual({ player_by_pk: null });
    await carol.close();
  });

  it('a row moving from one subscriber\'s filter into another\'s reaches both', async () => {
    const a = await h.open('admin', 'subscription { account(where: {name: {_eq: "Mover A"}}) { id } }');
    const b = await h.open('admin', 'subscription { account(where: {name: {_eq: "Mover B"}}) { id } }');
    expect((await a.next()).data).toEqual({ account: [] });
    expect((await b.next()).data).toEqual({ account: [] });
    await db.sql`INSERT INTO account VALUES (20, 'mover', 'Mover A')`;
    expect((await a.next()).data).toEqual({ account: [{ id: 20 }] });
    await db.sql`UPDATE account SET name = 'Mover B' WHERE id = 20`;
    expect((await a.next()).data).toEqual({ account: [] });
    expect((await b.next()).data).toEqual({ account: [{ id: 20 }] });
    await db.sql`DELETE FROM account WHERE id = 20`;
    expect((await b.next()).data).toEqual({ account: [] });
    expect(a.pending()).toBe(0);
    await a.close();
    await b.close();
  });

  it('a change to a nested table reaches exactly the subscribers whose rows it hangs off', async () => {
    const q = 'subscription { account(order_by: {id: asc}) { id players { level } } }';
    const alice = await h.open('alice', q);
    const bob = await h.open('bob', q);
    const admin = await h.open('admin', q);
    const levels = (r: { data?: Record<string, unknown> | null }) => (r.data?.['account'] as { id: number; players: { level: number }[] }[]).map((a) => [a.id, a.players.map((p) => p.level)]);
    const before = levels(await alice.next());
    await bob.next();
    await admin.next();
    await db.sql`UPDATE player SET level = level + 100 WHERE id = 2`;
    expect(levels(await bob.next())).toEqual([[2, [101]]]);
    expect(levels(await admin.next()).find(([id]) => id === 2)).toEqual([2, [101]]);
    // A sentinel alice can see: the next payload she gets is about it, so nothing came for bob's player.
    await db.sql`UPDATE player SET level = level + 1 WHERE id = 1`;
    const after = levels(await alice.next());
    expect(after).toEqual(before.map(([id, l]) => [id, (l as number[]).map((x) => x + 1)]));
    await db.sql`UPDATE player SET level = level - 100 WHERE id = 2`;
    await db.sql`UPDATE player SET level = level - 1 WHERE id = 1`;
    expect(levels(await alice.next())).toEqual(before);
    expect(alice.pending()).toBe(0);
    await Promise.all([alice.close(), bob.close(), admin.close()]);
  });

  it('a subscriber that does not read gets the latest result when it does, never an overflow', async () => {
    const result = await subscribe({ schema: h.schema, document: parse('subscription { account_by_pk(id: 1) { name } }'), contextValue: { caller: asCaller('admin') } });
    if (!(Symbol.asyncIterator in result)) throw new Error('refused');
    const it = result[Symbol.asyncIterator]();
    expect((await it.next()).value).toEqual({ data: { account_by_pk: { name: 'Alice 3' } } });
    // 1,100 new results while nobody reads: more than the 1,024 pushes a plain Repeater holds.
    for (let i = 0; i < 1100; i++) {
      const before = h.live.stats.statements;
      await db.sql`UPDATE account SET name = ${`n${i}`} WHERE id = 1`;
      await h.feed.poll();
      while (h.live.stats.statements === before) await new Promise((r) => setImmediate(r));
    }
    try {
      // The last evaluation may still be on its way: the buffer then holds an earlier state, and the
      // last one follows. Never more than that, and never an error.
      const names: unknown[] = [];
      for (let i = 0; i < 3 && names.at(-1) !== 'n1099'; i++) {
        const step = await it.next();
        expect(step.done).toBe(false);
        names.push((step.value as { data: { account_by_pk: { name: string } } }).data.account_by_pk.name);
      }
      expect(names.at(-1)).toBe('n1099');
    } finally {
      await it.return?.();
    }
  });

  it('many subscribers of one shape share one statement per commit', async () => {
    const subs = await Promise.all(Array.from({ length: 40 }, (_, i) => h.open(i % 2 ? 'alice' : 'bob', 'subscription { account(order_by: {id: asc}) { id name } }')));
    await Promise.all(subs.map((s) => s.next()));
    const before = h.live.stats.statements;
    await db.sql`UPDATE account SET name = name || '!'`;
    await Promise.all(subs.map((s) => s.next()));
    expect(h.live.stats.statements - before).toBe(1);
    await Promise.all(subs.map((s) => s.close()));
  });
});
