import { beforeAll, describe, expect, it } from 'vitest';
import { GraphQLError, parse, subscribe, type ExecutionResult } from 'graphql';
import { useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness } from './support/live.ts';

// A live query or a change stream whose evaluation passes limits.statementTimeoutMs ends with
// LIMIT_EXCEEDED, as a query does, not with an internal error; other subscriptions go on, even
// those that shared its statement.
const db = useTestDatabase();
let h: LiveHarness;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE big (id int PRIMARY KEY, owner text NOT NULL);
    INSERT INTO big SELECT n, 'u' || (n % 100) FROM generate_series(1, 1000000) AS n;
    ANALYZE big;
    CREATE TABLE doc (id int PRIMARY KEY, title text NOT NULL);
  `);
  // Counting the distinct owners of a million rows sorts them all (hundreds of milliseconds);
  // reading one row by its key takes well under a millisecond, far from the limit even on a busy machine.
  h = await startLive(db, { big: { select: 'SELECT * FROM big WHERE owner = :sender' }, doc: { select: 'public' } }, { statementTimeoutMs: 100 });
});

/** Subscribes as `sender` (or the admin); the engine registers the subscriber on the first next(). */
async function open(sender: string, query: string, variables?: Record<string, unknown>): Promise<AsyncIterator<ExecutionResult>> {
  const result = await subscribe({ schema: h.schema, document: parse(query), contextValue: { caller: asCaller(sender) }, variableValues: variables ?? null });
  if (!(Symbol.asyncIterator in result)) throw new Error(`refused: ${JSON.stringify(result.errors)}`);
  return result[Symbol.asyncIterator]();
}

/** What a pending next() of a subscription came to: a payload, or the error that ended it. */
const settled = (next: Promise<IteratorResult<ExecutionResult>>) =>
  next.then(
    (step) => ({ payload: step.done ? null : step.value, error: null }),
    (error: unknown) => ({ payload: null, error }),
  );

async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('live query limits', () => {
  it('an evaluation past statementTimeoutMs ends that subscription with LIMIT_EXCEEDED', async () => {
    const heavy = await open('admin', 'subscription { big_aggregate { aggregate { count(columns: owner, distinct: true) } } }');
    const error = await heavy.next().then(() => null, (err: unknown) => err);
    expect(error).toBeInstanceOf(GraphQLError);
    expect((error as GraphQLError).extensions['code']).toBe('LIMIT_EXCEEDED');

    const light = await h.open('u1', 'subscription { big_by_pk(id: 1) { owner } }');
    expect((await light.next()).data).toEqual({ big_by_pk: { owner: 'u1' } });
    await light.close();
  });
});

describe('change stream limits', () => {
  // Issue 15.6. Caller values that can raise are refused up front (resolvers/input.ts), but a
  // valid regular expression can still take unbounded time on some rows: `(a*)*\1$` against
  // 50,000 a's runs for many seconds (its backreference defeats PostgreSQL's automaton), `^a`
  // for microseconds. Two subscribers whose filters differ only in that value share one
  // statement; it passes statementTimeoutMs, and only the slow filter's subscriber may pay.
  const CHANGES = 'subscription ($p: String!) { doc_changes(where: {title: {_regex: $p}}) { op row { id } } }';
  const RESUMING = 'subscription ($p: String!, $after: String) { doc_changes(after: $after, where: {title: {_regex: $p}}) { op row { id } } }';

  it('a subscriber whose filter passes statementTimeoutMs ends alone; the one sharing its statement goes on', async () => {
    const shapes = h.live.stats.shapes;
    const subscriptions = h.live.stats.subscriptions;
    const good = await open('u1', CHANGES, { p: '^a' });
    const bad = await open('u2', CHANGES, { p: '(a*)*\\1$' });
    const firstGood = settled(good.next());
    const firstBad = settled(bad.next());
    await eventually(() => h.live.stats.subscriptions === subscriptions + 2, 'both subscribers registered');
    // One shape: their changes are judged by one statement.
    expect(h.live.stats.shapes).toBe(shapes + 1);

    await db.sql`INSERT INTO doc VALUES (1, repeat('a', 50000))`;
    const badOutcome = await firstBad;
    expect(badOutcome.error).toBeInstanceOf(GraphQLError);
    expect((badOutcome.error as GraphQLError).extensions['code']).toBe('LIMIT_EXCEEDED');
    const goodOutcome = await firstGood;
    expect(goodOutcome.error).toBeNull();
    expect(goodOutcome.payload?.data).toEqual({ doc_changes: { op: 'INSERT', row: { id: 1 } } });

    // The good subscriber keeps receiving after the other one ended.
    await db.sql`INSERT INTO doc VALUES (2, 'ab')`;
    const second = await settled(good.next());
    expect(second.error).toBeNull();
    expect(second.payload?.data).toEqual({ doc_changes: { op: 'INSERT', row: { id: 2 } } });
    await good.return?.();
    await eventually(() => h.live.stats.subscriptions === subscriptions, 'both subscribers gone');
  });

  it('one resuming with after whose catch-up passes statementTimeoutMs ends, and its catch-up stops', async () => {
    const subscriptions = h.live.stats.subscriptions;
    // The position before the long row, and that row in the change log (delivered to the marker),
    // so that the next subscriber's catch-up reads it from the log.
    const marker = await open('u1', 'subscription { doc_changes(where: {id: {_in: [10, 11]}}) { position } }');
    const marked = settled(marker.next());
    await eventually(() => h.live.stats.subscriptions === subscriptions + 1, 'the marker registered');
    await db.sql`INSERT INTO doc VALUES (10, 'b')`;
    const after = ((await marked).payload?.data?.['doc_changes'] as { position: string }).position;
    await db.sql`INSERT INTO doc VALUES (11, repeat('a', 50000))`;
    expect((await settled(marker.next())).payload?.data?.['doc_changes']).toBeDefined();
    await marker.return?.();

    const bad = await open('u2', RESUMING, { p: '(a*)*\\1$', after });
    const outcome = await settled(bad.next());
    expect((outcome.error as GraphQLError).extensions['code']).toBe('LIMIT_EXCEEDED');
    await eventually(() => h.live.stats.subscriptions === subscriptions, 'the subscriber gone');
    // A catch-up that went on after its subscriber ended would read the same change again and
    // again, one timed-out statement after another (each at least statementTimeoutMs). Three live
    // queries that each time out take longer than one such round: the engine must have run
    // exactly their three statements meanwhile.
    const statements = h.live.stats.statements;
    for (let i = 0; i < 3; i++) {
      const heavy = await open('admin', 'subscription { big_aggregate { aggregate { count(columns: owner, distinct: true) } } }');
      expect((await settled(heavy.next())).error).toBeInstanceOf(GraphQLError);
    }
    expect(h.live.stats.statements - statements).toBe(3);
  });
});
