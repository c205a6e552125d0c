import { beforeAll, describe, expect, it } from 'vitest';
import { GraphQLError, parse, subscribe } from 'graphql';
import { useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness } from './support/live.ts';

// A live query whose evaluation passes limits.statementTimeoutMs ends with LIMIT_EXCEEDED, as a query
// does, not with an internal error; other subscriptions go on.
const db = useTestDatabase();
let h: LiveHarness;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE big (id int PRIMARY KEY, owner text NOT NULL);
    INSERT INTO big SELECT n, 'u' || (n % 100) FROM generate_series(1, 1000000) AS n;
    ANALYZE big;
  `);
  // Counting the distinct owners of a million rows sorts them all (hundreds of milliseconds);
  // reading one row by its key takes well under a millisecond, far from the limit even on a busy machine.
  h = await startLive(db, { big: { select: 'SELECT * FROM big WHERE owner = :sender' } }, { statementTimeoutMs: 100 });
});

describe('live query limits', () => {
  it('an evaluation past statementTimeoutMs ends that subscription with LIMIT_EXCEEDED', async () => {
    const heavy = await subscribe({ schema: h.schema, document: parse('subscription { big_aggregate { aggregate { count(columns: owner, distinct: true) } } }'), contextValue: { caller: asCaller('admin') } });
    if (!(Symbol.asyncIterator in heavy)) throw new Error('refused');
    const error = await heavy[Symbol.asyncIterator]()
      .next()
      .then(() => null, (err: unknown) => err);
    expect(error).toBeInstanceOf(GraphQLError);
    expect((error as GraphQLError).extensions['code']).toBe('LIMIT_EXCEEDED');

    const light = await h.open('u1', 'subscription { big_by_pk(id: 1) { owner } }');
    expect((await light.next()).data).toEqual({ big_by_pk: { owner: 'u1' } });
    await light.close();
  });
});
