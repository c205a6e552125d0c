import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// The root fields of a query are read in one statement (one round trip, one snapshot); a field
// that fails still fails alone, and the others keep their answers.
const db = useTestDatabase();
let api: TestGateway;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL);
    CREATE TABLE tally (id int PRIMARY KEY, amount text NOT NULL);
    INSERT INTO note VALUES (1, 'alice'), (2, 'bob'), (3, 'alice');
    INSERT INTO tally VALUES (1, '5'), (2, 'lots');
  `);
  const tables = {
    note: { select: ['SELECT * FROM note WHERE owner = :sender'] },
    // The rule's cast raises on the stored 'lots': reading tally fails (22P02) for every caller.
    tally: { select: ['SELECT * FROM tally WHERE amount::int > 0'] },
  };
  // One connection: pg_prepared_statements, read on the gateway's own pool, is that session's.
  api = await startGateway(db, { tables }, 1);
});

const prepared = async () => (await api.sql.unsafe<{ statement: string }[]>('SELECT statement FROM pg_prepared_statements')).map((r) => r.statement);

describe('root fields in one statement', () => {
  it('answers every root field of a query from one statement', async () => {
    const query = '{ mine: note(order_by: {id: asc}) { id } count: note_aggregate { aggregate { count } } one: note_by_pk(id: 3) { owner } }';
    for (const who of ['alice', 'bob', 'alice']) {
      const ids = who === 'alice' ? [{ id: 1 }, { id: 3 }] : [{ id: 2 }];
      expect(await api.gql(who, query)).toEqual({
        data: { mine: ids, count: { aggregate: { count: ids.length } }, one: who === 'alice' ? { owner: 'alice' } : null },
      });
    }
    // Run three times, so prepared: one statement holding all three fields, and none for a field alone.
    const notes = (await prepared()).filter((s) => s.includes('"note"'));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/AS "r0", .* AS "r1", .* AS "r2"$/s);
  });

  it('gives a failing root field its error and the others their answers', async () => {
    // A list is non-null, so its error would null all of data: the failing field is a nullable _by_pk.
    const res = await api.gql('alice', '{ note(order_by: {id: asc}) { id } tally_by_pk(id: 2) { id } }');
    expect(res.data).toEqual({ note: [{ id: 1 }, { id: 3 }], tally_by_pk: null });
    expect(res.errors?.map((e) => [(e as { path?: unknown }).path, e.extensions?.['code']])).toEqual([[['tally_by_pk'], 'BAD_USER_INPUT']]);
  });
});
