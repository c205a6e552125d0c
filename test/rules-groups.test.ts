import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { as, compile, visible } from './support/rules.ts';

// SKDB-style shared documents (seeds/002): users are members of groups with permissions
// ('r' read, 'w' write); a document belongs to a group and is readable by its author and by
// members whose permissions include 'r'. Every assertion is an exact set of row ids.
const db = useTestDatabase();

const SCHEMA = `
  CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL, org text, default_perms text NOT NULL DEFAULT '');
  CREATE TABLE membership (
    id serial PRIMARY KEY,
    grp_id int NOT NULL REFERENCES grp(id),
    member text NOT NULL,
    perms text NOT NULL,
    UNIQUE (grp_id, member)
  );
  CREATE TABLE document (id int PRIMARY KEY, grp_id int NOT NULL REFERENCES grp(id), author text NOT NULL, body text NOT NULL);
  CREATE TABLE note (
    id int PRIMARY KEY,
    owner_email text NOT NULL,
    status text NOT NULL,
    deleted_at timestamptz,
    priority int NOT NULL,
    expires_at timestamptz
  );
`;

// grp 1 and 2 are private (default ''), grp 3 is readable by everyone (default 'r').
const DATA = `
  TRUNCATE note, document, membership, grp RESTART IDENTITY;
  INSERT INTO grp VALUES (1, 'eng', 'acme', ''), (2, 'ops', 'acme', ''), (3, 'lobby', 'globex', 'r');
  INSERT INTO membership (grp_id, member, perms) VALUES
    (1, 'alice', 'rw'), (1, 'bob', 'r'), (1, 'carol', 'w'),
    (2, 'bob', 'rw'), (2, 'dave', 'r');
  INSERT INTO document VALUES
    (1, 1, 'alice', 'eng plan'),
    (2, 1, 'carol', 'eng draft by a writer'),
    (3, 2, 'bob', 'ops runbook'),
    (4, 2, 'erin', 'ops note by a non-member'),
    (5, 3, 'dave', 'lobby welcome'),
    (6, 1, 'erin', 'eng note by a non-member');
  INSERT INTO note VALUES
    (1, 'Alice@Example.com', 'published', NULL,                   2, NULL),
    (2, 'alice@example.com', 'review',    NULL,                   3, '2999-01-01'),
    (3, 'ALICE@EXAMPLE.COM', 'draft',     NULL,                   2, NULL),
    (4, 'alice@example.com', 'published', '2020-01-01',           2, NULL),
    (5, 'alice@example.com', 'published', NULL,                   7, NULL),
    (6, 'alice@example.com', 'published', NULL,                   1, '2000-01-01'),
    (7, 'bob@example.com',   'published', NULL,                   1, NULL),
    (8, 'Bob@Example.com',   'review',    NULL,                   5, NULL);
`;

beforeAll(async () => {
  await db.sql.unsafe(SCHEMA);
});
beforeEach(async () => {
  await db.sql.unsafe(DATA);
});

const OWN_MEMBERSHIP = 'SELECT * FROM membership WHERE member = :sender';
const AUTHOR = 'SELECT * FROM document WHERE author = :sender';
const READER = `SELECT d.* FROM document d JOIN membership m ON m.grp_id = d.grp_id
                 WHERE m.member = :sender AND m.perms LIKE '%r%'`;
// The same rule without naming the caller: membership's own rule (member = :sender) is applied
// to `m` by recursion, so only the caller's memberships can grant anything.
const READER_BY_RECURSION = `SELECT d.* FROM document d JOIN membership m ON m.grp_id = d.grp_id WHERE m.perms LIKE '%r%'`;
const GROUP_DEFAULT = `SELECT d.* FROM document d JOIN grp g ON g.id = d.grp_id WHERE g.default_perms LIKE '%r%'`;

const PEOPLE = ['alice', 'bob', 'carol', 'dave', 'erin', 'mallory'] as const;

async function visibleToAll(rules: Awaited<ReturnType<typeof compile>>, table: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const p of PEOPLE) out[p] = await visible(db, rules, table, as(p));
  out['(null)'] = await visible(db, rules, table, as(null));
  return out;
}

describe('group documents (SKDB permissions)', () => {
  it('members with r, and the author, see a document; exact sets per identity', async () => {
    const rules = await compile(db, {
      grp: { select: 'public' },
      membership: { select: OWN_MEMBERSHIP },
      document: { select: [AUTHOR, READER] },
    });
    expect(await visibleToAll(rules, 'document')).toEqual({
      alice: ['1', '2', '6'], // author of 1; r in grp 1
      bob: ['1', '2', '3', '4', '6'], // r in grp 1 and grp 2
      carol: ['2'], // only w in grp 1: just her own document
      dave: ['3', '4', '5'], // r in grp 2; author of 5
      erin: ['4', '6'], // no membership: her own documents only
      mallory: [],
      '(null)': [],
    });
    expect(await visibleToAll(rules, 'membership')).toEqual({
      alice: ['1'],
      bob: ['2', '4'],
      carol: ['3'],
      dave: ['5'],
      erin: [],
      mallory: [],
      '(null)': [],
    });
  });

  it('a group readable by default (OR of three rules; grp is public and read as it is)', async () => {
    const rules = await compile(db, {
      grp: { select: 'public' },
      membership: { select: OWN_MEMBERSHIP },
      document: { select: [AUTHOR, READER, GROUP_DEFAULT] },
    });
    expect(await visibleToAll(rules, 'document')).toEqual({
      alice: ['1', '2', '5', '6'],
      bob: ['1', '2', '3', '4', '5', '6'],
      carol: ['2', '5'],
      dave: ['3', '4', '5'],
      erin: ['4', '5', '6'],
      mallory: ['5'],
      '(null)': ['5'],
    });
  });

  it("membership's own rule is applied inside document's rule (recursion), so the caller need not be named", async () => {
    const explicit = await compile(db, {
      membership: { select: OWN_MEMBERSHIP },
      document: { select: [AUTHOR, READER] },
    });
    const recursive = await compile(db, {
      membership: { select: OWN_MEMBERSHIP },
      document: { select: [AUTHOR, READER_BY_RECURSION] },
    });
    const expected = await visibleToAll(explicit, 'document');
    expect(await visibleToAll(recursive, 'document')).toEqual(expected);
    expect(expected['carol']).toEqual(['2']);

    // Control: with membership unlisted the same rule text reads every membership, so anyone
    // sees the documents of a group where someone has r. This is what recursion prevents.
    const unfiltered = await compile(db, { document: { select: [AUTHOR, READER_BY_RECURSION] } });
    expect(await visible(db, unfiltered, 'document', as('carol'))).toEqual(['1', '2', '3', '4', '6']);
    expect(await visible(db, unfiltered, 'document', as('mallory'))).toEqual(['1', '2', '3', '4', '6']);
  });

  it('memberships visible through a self-join (a group admin sees all members of their groups)', async () => {
    const rules = await compile(db, {
      membership: {
        select: [
          OWN_MEMBERSHIP,
          `SELECT m.* FROM membership m JOIN membership me ON me.grp_id = m.grp_id WHERE me.member = :sender AND me.perms LIKE '%a%'`,
        ],
      },
      document: { select: [AUTHOR, READER] },
    });
    await db.sql`UPDATE membership SET perms = 'a' WHERE grp_id = 1 AND member = 'carol'`;
    // The self-join reads membership as it is, not through its own rule: carol sees all of grp 1.
    expect(await visible(db, rules, 'membership', as('carol'))).toEqual(['1', '2', '3']);
    expect(await visible(db, rules, 'membership', as('alice'))).toEqual(['1']);
    // Seeing alice's membership (perms 'rw') gives carol nothing: READER names the caller.
    expect(await visible(db, rules, 'document', as('carol'))).toEqual(['2']);
  });

  it('revoking a membership hides documents at once; granting shows them; no recompiling', async () => {
    const rules = await compile(db, {
      membership: { select: OWN_MEMBERSHIP },
      document: { select: [AUTHOR, READER_BY_RECURSION] },
    });
    expect(await visible(db, rules, 'document', as('bob'))).toEqual(['1', '2', '3', '4', '6']);

    // DELETE: bob leaves grp 1.
    await db.sql`DELETE FROM membership WHERE grp_id = 1 AND member = 'bob'`;
    expect(await visible(db, rules, 'document', as('bob'))).toEqual(['3', '4']);

    // UPDATE perms to write-only: bob keeps the document he wrote, loses the rest of grp 2.
    await db.sql`UPDATE membership SET perms = 'w' WHERE grp_id = 2 AND member = 'bob'`;
    expect(await visible(db, rules, 'document', as('bob'))).toEqual(['3']);

    // Grant read back in grp 2, and a fresh membership in grp 3.
    await db.sql`UPDATE membership SET perms = 'rw' WHERE grp_id = 2 AND member = 'bob'`;
    expect(await visible(db, rules, 'document', as('bob'))).toEqual(['3', '4']);
    await db.sql`INSERT INTO membership (grp_id, member, perms) VALUES (3, 'bob', 'r')`;
    expect(await visible(db, rules, 'document', as('bob'))).toEqual(['3', '4', '5']);

    // Other callers are unaffected by bob's changes.
    expect(await visible(db, rules, 'document', as('alice'))).toEqual(['1', '2', '6']);
    expect(await visible(db, rules, 'document', as('dave'))).toEqual(['3', '4', '5']);
  });

  it('the author always sees their own document, even without any membership', async () => {
    const rules = await compile(db, {
      membership: { select: OWN_MEMBERSHIP },
      document: { select: [AUTHOR, READER_BY_RECURSION] },
    });
    await db.sql`DELETE FROM membership WHERE member IN ('alice', 'bob')`;
    expect(await visible(db, rules, 'document', as('alice'))).toEqual(['1']);
    expect(await visible(db, rules, 'document', as('bob'))).toEqual(['3']);
    // Moving the document to a group the author is not in changes nothing for the author.
    await db.sql`UPDATE document SET grp_id = 2 WHERE id = 1`;
    expect(await visible(db, rules, 'document', as('alice'))).toEqual(['1']);
    // dave (r in grp 2) now sees it too.
    expect(await visible(db, rules, 'document', as('dave'))).toEqual(['1', '3', '4', '5']);
    // A new document by carol in grp 1 where nobody reads any more: only carol.
    await db.sql`INSERT INTO document VALUES (7, 1, 'carol', 'alone')`;
    expect(await visible(db, rules, 'document', as('carol'))).toEqual(['2', '7']);
    expect(await visible(db, rules, 'document', as('alice'))).toEqual(['1']);
  });

  it('a claim-based rule: :org comes from the token, a missing or non-matching claim sees nothing', async () => {
    const rules = await compile(db, {
      grp: { select: 'public' },
      document: { select: [AUTHOR, 'SELECT d.* FROM document d JOIN grp g ON g.id = d.grp_id WHERE g.org = :org'] },
    });
    expect(await visible(db, rules, 'document', as('mallory', { org: 'acme' }))).toEqual(['1', '2', '3', '4', '6']);
    expect(await visible(db, rules, 'document', as('mallory', { org: 'globex' }))).toEqual(['5']);
    expect(await visible(db, rules, 'document', as('mallory', { org: 'initech' }))).toEqual([]);
    expect(await visible(db, rules, 'document', as('mallory'))).toEqual([]);
    expect(await visible(db, rules, 'document', as('mallory', { org: null }))).toEqual([]);
    // A non-string claim is compared as its text, and a structured one matches nothing.
    expect(await visible(db, rules, 'document', as('mallory', { org: ['acme'] }))).toEqual([]);
    expect(await visible(db, rules, 'document', as('mallory', { org: { name: 'acme' } }))).toEqual([]);
    // The claim adds to the author rule (OR); the sender claim cannot be overridden by `org`.
    expect(await visible(db, rules, 'document', as('dave', { org: 'globex' }))).toEqual(['5']);
    expect(await visible(db, rules, 'document', as('erin', { org: 'globex' }))).toEqual(['4', '5', '6']);
    // Claims that name an org in the data change nothing once the data moves.
    await db.sql`UPDATE grp SET org = 'initech' WHERE id = 3`;
    expect(await visible(db, rules, 'document', as('mallory', { org: 'globex' }))).toEqual([]);
    expect(await visible(db, rules, 'document', as('mallory', { org: 'initech' }))).toEqual(['5']);
  });

  it('a claim used as an integer: cast in the rule, unconvertible values match nothing', async () => {
    const rules = await compile(db, {
      note: { select: 'SELECT * FROM note WHERE priority <= :clearance::int' },
    });
    expect(await visible(db, rules, 'note', as('x', { clearance: 2 }))).toEqual(['1', '3', '4', '6', '7']);
    expect(await visible(db, rules, 'note', as('x', { clearance: '1' }))).toEqual(['6', '7']);
    expect(await visible(db, rules, 'note', as('x', { clearance: 'abc' }))).toEqual([]);
    expect(await visible(db, rules, 'note', as('x', { clearance: '1; DROP TABLE note' }))).toEqual([]);
    expect(await visible(db, rules, 'note', as('x', { clearance: 1.5 }))).toEqual([]);
    expect(await visible(db, rules, 'note', as('x'))).toEqual([]);
  });

  it('IN, NOT IN, IS NULL, BETWEEN, a cast and functions (lower(:sender), now())', async () => {
    const rules = await compile(db, {
      note: {
        select: `SELECT * FROM note
                  WHERE lower(owner_email) = lower(:sender)
                    AND status IN ('published', 'review')
                    AND status NOT IN ('draft')
                    AND deleted_at IS NULL
                    AND priority BETWEEN 1 AND 4
                    AND (expires_at IS NULL OR expires_at > now())
                    AND id::text <> '999'`,
      },
    });
    // 1: mixed case email; 2: review, not expired; 3 draft; 4 deleted; 5 priority 7; 6 expired.
    expect(await visible(db, rules, 'note', as('alice@example.com'))).toEqual(['1', '2']);
    expect(await visible(db, rules, 'note', as('ALICE@example.COM'))).toEqual(['1', '2']);
    expect(await visible(db, rules, 'note', as('BOB@EXAMPLE.COM'))).toEqual(['7']);
    expect(await visible(db, rules, 'note', as('carol@example.com'))).toEqual([]);
    expect(await visible(db, rules, 'note', as(null))).toEqual([]);
    // Data changes flip each condition.
    await db.sql`UPDATE note SET status = 'review', priority = 4 WHERE id = 8`;
    expect(await visible(db, rules, 'note', as('bob@example.com'))).toEqual(['7', '8']);
    await db.sql`UPDATE note SET deleted_at = now() WHERE id = 7`;
    expect(await visible(db, rules, 'note', as('bob@example.com'))).toEqual(['8']);
    await db.sql`UPDATE note SET expires_at = '2001-01-01' WHERE id = 8`;
    expect(await visible(db, rules, 'note', as('bob@example.com'))).toEqual([]);
  });

  it('NOT BETWEEN, IS NOT NULL and a cast of the parameter combine with recursion', async () => {
    const rules = await compile(db, {
      membership: { select: "SELECT * FROM membership WHERE member = :sender AND perms NOT IN ('')" },
      document: {
        select: `SELECT d.* FROM document d JOIN membership m ON m.grp_id = d.grp_id
                  WHERE m.perms IS NOT NULL AND d.id NOT BETWEEN 2 AND 3 AND m.grp_id = :grp::int`,
      },
    });
    expect(await visible(db, rules, 'document', as('bob', { grp: 1 }))).toEqual(['1', '6']);
    expect(await visible(db, rules, 'document', as('bob', { grp: '2' }))).toEqual(['4']);
    expect(await visible(db, rules, 'document', as('bob', { grp: 3 }))).toEqual([]);
    expect(await visible(db, rules, 'document', as('erin', { grp: 1 }))).toEqual([]);
    expect(await visible(db, rules, 'document', as('bob', { grp: 'one' }))).toEqual([]);
    expect(await visible(db, rules, 'document', as('bob'))).toEqual([]);
  });
});
