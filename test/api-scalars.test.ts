import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Every scalar round-trips through the API without loss: in mutations' input, in filters, and back.
const db = useTestDatabase();
let api: TestGateway;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TYPE mood AS ENUM ('happy', 'sad');
    CREATE TABLE thing (
      id int PRIMARY KEY, small smallint, big bigint, amount numeric(30,10), ratio float8, flag boolean,
      name text, code varchar(10), ref uuid, at timestamptz, day date, doc jsonb, raw json,
      nums int[], tags text[], feeling mood
    );
  `);
  api = await startGateway(db, { tables: { thing: { select: 'public', insert: { check: 'public' }, update: { columns: ['doc', 'tags', 'big'] } } } });
});

const VALUES = {
  id: 1,
  small: -32768,
  big: '9223372036854775807',
  amount: '12345678901234567890.0123456789',
  ratio: 0.1,
  flag: true,
  name: 'ünï©ødé 🎉 \'"\\',
  code: 'abc',
  ref: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  at: '2024-02-29T23:59:59.123456+00:00',
  day: '2024-02-29',
  doc: { nested: [1, 'two', null, { three: true }], big: 12345678901234567890 },
  raw: [1, 2, 3],
  nums: [1, -2, 3],
  tags: ['a', 'b,c', '"quoted"', 'NULL'],
  feeling: 'happy',
};
const FIELDS = Object.keys(VALUES).join(' ');

describe('scalars', () => {
  it('insert and read back every type unchanged', async () => {
    const res = await api.gql('alice', `mutation($o: thing_insert_input!) { insert_thing_one(object: $o) { ${FIELDS} } }`, { o: VALUES });
    expect(res.errors).toBeUndefined();
    const back = (await api.gql('alice', `{ thing_by_pk(id: 1) { ${FIELDS} } }`)).data?.['thing_by_pk'] as Record<string, unknown>;
    expect(back).toEqual({ ...VALUES, doc: { ...VALUES.doc, big: 12345678901234567000 } });
    expect(res.data?.['insert_thing_one']).toEqual(back);
  });

  it('filters on bigint, numeric, uuid, timestamptz and date values', async () => {
    const res = await api.gql('alice', `query($b: bigint, $n: numeric, $u: uuid, $t: timestamptz, $d: date) {
      b: thing(where: {big: {_eq: $b}}) { id } n: thing(where: {amount: {_gte: $n}}) { id }
      u: thing(where: {ref: {_eq: $u}}) { id } t: thing(where: {at: {_lte: $t}}) { id } d: thing(where: {day: {_eq: $d}}) { id }
    }`, { b: VALUES.big, n: '12345678901234567890', u: VALUES.ref.toUpperCase(), t: '2024-03-01T00:00:00Z', d: VALUES.day });
    expect(res).toEqual({ data: { b: [{ id: 1 }], n: [{ id: 1 }], u: [{ id: 1 }], t: [{ id: 1 }], d: [{ id: 1 }] } });
  });

  it('updates jsonb, arrays and bigint', async () => {
    const res = await api.gql('alice', 'mutation { update_thing_by_pk(pk_columns: {id: 1}, _set: {doc: {a: "b"}, tags: [], big: "-9223372036854775808"}) { doc tags big } }');
    expect(res).toEqual({ data: { update_thing_by_pk: { doc: { a: 'b' }, tags: [], big: '-9223372036854775808' } } });
  });

  it('refuses values out of range or of the wrong form', async () => {
    for (const [name, value] of [['big', '9223372036854775808'], ['ref', 'not-a-uuid'], ['day', '2024-02-30'], ['amount', '1e']] as const) {
      const res = await api.gql('alice', `mutation($o: thing_insert_input!) { insert_thing_one(object: $o) { id } }`, { o: { id: 2, [name]: value } });
      expect(res.errors?.[0]?.extensions?.['code'], name).toBe('BAD_USER_INPUT');
    }
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM thing`;
    expect(row?.n).toBe(1);
  });
});
