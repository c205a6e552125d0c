import { describe, expect, it, beforeAll } from 'vitest';
import { RuleConfigError } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { as, compile, visible } from './support/rules.ts';

// The examples of seeds/003 (SpacetimeDB RLS), on a real PostgreSQL.
const db = useTestDatabase();

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL UNIQUE, name text);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY REFERENCES account(id), level int NOT NULL);
    INSERT INTO account VALUES (1, 'alice', 'Alice'), (2, 'bob', 'Bob'), (3, 'carol', 'Carol'), (4, 'dave', 'Dave');
    INSERT INTO admin VALUES ('carol');
    INSERT INTO player VALUES (1, 10), (2, 10), (3, 20), (4, 20);
  `);
});

const OWN = 'SELECT * FROM account WHERE identity = :sender';
const ADMINS = 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender';

describe('seed rules', () => {
  it('a client sees only its own account', async () => {
    const rules = await compile(db, { account: { select: OWN } });
    expect(await visible(db, rules, 'account', as('alice'))).toEqual(['1']);
    expect(await visible(db, rules, 'account', as('bob'))).toEqual(['2']);
    expect(await visible(db, rules, 'account', as('mallory'))).toEqual([]);
    expect(await visible(db, rules, 'account', as(null))).toEqual([]);
  });

  it('admins see every account: two rules are OR-ed', async () => {
    const rules = await compile(db, { account: { select: [OWN, ADMINS] } });
    expect(await visible(db, rules, 'account', as('alice'))).toEqual(['1']);
    expect(await visible(db, rules, 'account', as('carol'))).toEqual(['1', '2', '3', '4']);
  });

  it('admin membership changes visibility without recompiling', async () => {
    const rules = await compile(db, { account: { select: [OWN, ADMINS] } });
    await db.sql`INSERT INTO admin VALUES ('bob')`;
    expect(await visible(db, rules, 'account', as('bob'))).toEqual(['1', '2', '3', '4']);
    await db.sql`DELETE FROM admin WHERE identity = 'bob'`;
    expect(await visible(db, rules, 'account', as('bob'))).toEqual(['2']);
  });

  it('players are visible through visible accounts (recursion)', async () => {
    const rules = await compile(db, {
      account: { select: [OWN, ADMINS] },
      player: { select: 'SELECT p.* FROM account a JOIN player p ON a.id = p.id' },
    });
    expect(await visible(db, rules, 'player', as('alice'))).toEqual(['1']);
    expect(await visible(db, rules, 'player', as('carol'))).toEqual(['1', '2', '3', '4']);
    expect(await visible(db, rules, 'player', as('nobody'))).toEqual([]);
  });

  it('players on the same level (self-join, not filtered by its own rules)', async () => {
    const rules = await compile(db, {
      account: { select: OWN },
      player: {
        select: `SELECT q.*
                   FROM account a
                   JOIN player p ON a.id = p.id
                   JOIN player q ON p.level = q.level
                  WHERE a.identity = :sender`,
      },
    });
    expect(await visible(db, rules, 'player', as('alice'))).toEqual(['1', '2']);
    expect(await visible(db, rules, 'player', as('dave'))).toEqual(['3', '4']);
  });

  it('mutually recursive rules are rejected with the cycle printed', async () => {
    const error = await compile(db, {
      account: { select: 'SELECT a.* FROM account a JOIN player p ON a.id = p.id WHERE a.identity = :sender' },
      player: { select: 'SELECT p.* FROM account a JOIN player p ON a.id = p.id WHERE a.identity = :sender' },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuleConfigError);
    expect((error as Error).message).toContain('account → player → account');
    expect((error as RuleConfigError).problems).toHaveLength(1);
  });
});
