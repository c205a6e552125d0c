import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startLive, type LiveHarness, type Subscription } from './support/live.ts';

// Issue 16: a root function as a subscription (Hasura's function subscriptions): a live query over
// the rows it returns, each judged by its table's rules, re-evaluated after commits; its arguments
// are checked and bound as for a query.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = { doc: { select: 'SELECT * FROM doc WHERE owner = :sender' }, tag: { select: 'SELECT * FROM tag' } };

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL);
    CREATE TABLE tag (doc_id int NOT NULL, name text NOT NULL, PRIMARY KEY (doc_id, name));
    INSERT INTO doc VALUES (1, 'ann', 'apple pie'), (2, 'bo', 'apple secret'), (3, 'ann', 'pear');
    -- Returns hidden rows too (the rules must hide them), and reads a table besides its own.
    CREATE FUNCTION search_doc(q text) RETURNS SETOF doc LANGUAGE sql STABLE
      AS $$ SELECT * FROM doc WHERE title LIKE '%' || q || '%' OR id IN (SELECT doc_id FROM tag WHERE name = q) $$;
  `);
  h = await startLive(db, TABLES, { functions: ['search_doc'] });
});

const result = async (sub: Subscription, field: string) => {
  const r = await sub.next(20_000);
  expect(r.errors).toBeUndefined();
  return r.data![field];
};

describe('functions as subscriptions', () => {
  it('a live list and aggregate of what the function returns, only the visible rows, after each commit that changes them', async () => {
    const list = await h.open('ann', 'subscription { search_doc(args: {q: "apple"}, order_by: {id: asc}) { id title } }');
    const count = await h.open('ann', 'subscription { search_doc_aggregate(args: {q: "apple"}) { aggregate { count } } }');
    expect(await result(list, 'search_doc')).toEqual([{ id: 1, title: 'apple pie' }]);
    expect(await result(count, 'search_doc_aggregate')).toEqual({ aggregate: { count: 1 } });
    // A row of ann's enters the function's result through another table it reads.
    await db.sql`INSERT INTO tag VALUES (3, 'apple')`;
    expect(await result(list, 'search_doc')).toEqual([{ id: 1, title: 'apple pie' }, { id: 3, title: 'pear' }]);
    expect(await result(count, 'search_doc_aggregate')).toEqual({ aggregate: { count: 2 } });
    // Bo's rows matching the function stay hidden; a commit that changes nothing ann sees sends nothing.
    await db.sql`INSERT INTO doc VALUES (4, 'bo', 'apple crumble')`;
    await db.sql`UPDATE doc SET title = 'apple pie!' WHERE id = 1`;
    expect(await result(list, 'search_doc')).toEqual([{ id: 1, title: 'apple pie!' }, { id: 3, title: 'pear' }]);
    expect(list.pending()).toBe(0);
    await Promise.all([list.close(), count.close()]);
  });

  it('arguments are checked before the subscription exists and bound as values', async () => {
    const injected = await h.open('ann', `subscription { search_doc(args: {q: "' OR true --"}) { id } }`);
    expect(await result(injected, 'search_doc')).toEqual([]);
    await injected.close();
    const bad = await h.open('ann', 'subscription { search_doc(args: {q: 5}) { id } }').catch((e: unknown) => e);
    expect(String(bad)).toMatch(/String cannot represent|refused/);
  });
});
