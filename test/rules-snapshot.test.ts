import { sql as pgsql } from 'pg-sql2';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchParams, type CompiledRules } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { as, compile, visibilityQuery, visible } from './support/rules.ts';

// The exact SQL the seed's rules (seeds/003) compile to, so a reviewer sees what runs. A change to
// the compiler that changes this SQL shows up as a snapshot diff in test/__snapshots__.
const db = useTestDatabase();

const OWN = 'SELECT * FROM account WHERE identity = :sender';
const ADMINS = 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender';
const THROUGH_ACCOUNTS = 'SELECT p.* FROM account a JOIN player p ON a.id = p.id';
const SAME_LEVEL = `SELECT q.*
  FROM account a
  JOIN player p ON a.id = p.id
  JOIN player q ON p.level = q.level
 WHERE a.identity = :sender`;

let seed: CompiledRules;
let sameLevel: CompiledRules;

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL UNIQUE, name text);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY REFERENCES account(id), level int NOT NULL);
    INSERT INTO account VALUES (1, 'alice', 'Alice'), (2, 'bob', 'Bob'), (3, 'carol', 'Carol'), (4, 'dave', 'Dave');
    INSERT INTO admin VALUES ('carol');
    INSERT INTO player VALUES (1, 10), (2, 10), (3, 20), (4, 20);
  `);
  seed = await compile(db, { account: { select: [OWN, ADMINS] }, player: { select: THROUGH_ACCOUNTS }, admin: { select: 'public' } });
  sameLevel = await compile(db, { account: { select: OWN }, player: { select: SAME_LEVEL } });
});

/** Text and values of one caller's visibility query, as sent to PostgreSQL. */
function compiled(rules: CompiledRules, table: string) {
  const { text, values } = visibilityQuery(rules, table, as('alice'));
  return { text, values };
}

describe('compiled SQL of the seed rules', () => {
  it('own account OR admins (two rules on account)', async () => {
    expect(compiled(seed, 'account')).toMatchSnapshot();
    // The snapshot is of SQL that does what the seed says.
    expect(await visible(db, seed, 'account', as('alice'))).toEqual(['1']);
    expect(await visible(db, seed, 'account', as('carol'))).toEqual(['1', '2', '3', '4']);
  });

  it('a public table has no condition', () => {
    expect(compiled(seed, 'admin')).toMatchSnapshot();
  });

  it("players through accounts (recursion: account's rules inlined)", async () => {
    expect(compiled(seed, 'player')).toMatchSnapshot();
    expect(await visible(db, seed, 'player', as('alice'))).toEqual(['1']);
    expect(await visible(db, seed, 'player', as('carol'))).toEqual(['1', '2', '3', '4']);
  });

  it('players on the same level (self-join not filtered by its own rules)', async () => {
    expect(compiled(sameLevel, 'player')).toMatchSnapshot();
    expect(await visible(db, sameLevel, 'player', as('alice'))).toEqual(['1', '2']);
    expect(await visible(db, sameLevel, 'player', as('dave'))).toEqual(['3', '4']);
  });

  it('players through accounts, for a batch of subscribers', async () => {
    const batch = new BatchParams();
    const row = Symbol('player');
    const condition = seed.visibility('player', row, batch);
    const query = pgsql.compile(
      pgsql`SELECT ${batch.sid} AS sid, ${pgsql.identifier(row, 'id')}::text AS k
              FROM ${batch.relation([{ id: 'a', identity: as('alice') }, { id: 'c', identity: as('carol') }])}
              JOIN ${pgsql.identifier(seed.schema, 'player')} AS ${pgsql.identifier(row)} ON ${condition}
             ORDER BY 1, 2`,
    );
    expect({ text: query.text, values: query.values }).toMatchSnapshot();
    const rows = await db.sql.unsafe<{ sid: string; k: string }[]>(query.text, query.values as never[]);
    expect(rows.map((r) => `${r.sid}:${r.k}`)).toEqual(['a:1', 'c:1', 'c:2', 'c:3', 'c:4']);
  });
});
