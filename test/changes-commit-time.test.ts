import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startLive, type LiveHarness, type Subscription } from './support/live.ts';

// Issue 15.2: a change reaches only those who could see it at its position, whatever the rules'
// tables hold when it is evaluated: neither a resume from an older position after a grant, nor a
// live evaluation that runs after a later grant committed, nor a rule reading its own table, nor a
// rule reading a table without a primary key may show a change to someone it was hidden from.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  doc: {
    select: [
      'SELECT d.* FROM doc d JOIN membership m ON m.grp = d.grp WHERE m.identity = :sender',
      'SELECT d.* FROM doc d JOIN auditor a ON a.identity = :sender',
    ],
  },
  // A folder is visible to the owner of its parent: the rule reads its own table.
  folder: { select: 'SELECT f.* FROM folder f JOIN folder p ON p.id = f.parent WHERE p.owner = :sender' },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, grp int NOT NULL, title text NOT NULL);
    CREATE TABLE membership (grp int NOT NULL, identity text NOT NULL, since timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (grp, identity));
    CREATE TABLE auditor (identity text NOT NULL);
    CREATE TABLE folder (id int PRIMARY KEY, parent int, owner text NOT NULL, name text NOT NULL);
    INSERT INTO membership VALUES (1, 'alice');
    INSERT INTO folder VALUES (1, NULL, 'alice', 'root');
  `);
  h = await startLive(db, TABLES);
});

/** The newest position once every committed change is stamped. */
async function head(): Promise<string> {
  // WAL capture: a commit reaches the log once the leader appended it.
  await h.feed.poll();
  for (let i = 0; i < 200; i++) {
    const [row] = await db.sql<{ held: boolean; top: string }[]>`
      SELECT EXISTS (SELECT 1 FROM rowgate.change_log WHERE pos IS NULL) AS held, COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    if (!row!.held) return row!.top;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('changes stay unstamped');
}

/** Holds back stamping (an open transaction with an id keeps the horizon) until the returned function is called. */
async function holdStamping(): Promise<() => Promise<void>> {
  const hold = await db.sql.reserve();
  await hold`BEGIN`;
  await hold`SELECT pg_current_xact_id()`;
  return async () => {
    await hold`COMMIT`;
    hold.release();
  };
}

type Event = { op: string; row: { id: number; title: string } | null; old: { id: number; title: string } | null };
const DOC = 'subscription($after: String) { doc_changes(after: $after) { op row { id title } old { id title } } }';
const FOLDER = 'subscription($after: String) { folder_changes(after: $after) { op row { id name } old { id name } } }';

async function events(sub: Subscription, field: string, until: (e: Record<string, unknown>) => boolean): Promise<string[]> {
  const seen: string[] = [];
  for (;;) {
    const r = await sub.next();
    expect(r.errors).toBeUndefined();
    const e = r.data![field] as Record<string, { id: number; title?: string; name?: string } | null> & { op: string };
    seen.push(`${e.op} ${e['row']?.title ?? e['row']?.name ?? e['old']?.title ?? e['old']?.name}`);
    if (until(e)) return seen;
  }
}
const sentinel = (e: Record<string, unknown>) => JSON.stringify(e).includes('sentinel');

describe('changes judged as of their position', () => {
  it('a resume after a grant does not replay what was hidden at commit, and replays what was visible then', async () => {
    const start = await head();
    // Hidden from bob when it happened: inserted and deleted before he joins group 2.
    await db.sql`INSERT INTO doc VALUES (101, 2, 'secret')`;
    await db.sql`UPDATE doc SET title = 'secret 2' WHERE id = 101`;
    await db.sql`DELETE FROM doc WHERE id = 101`;
    await db.sql`INSERT INTO membership (grp, identity) VALUES (2, 'bob')`;
    // Visible to bob when it happened, though he leaves group 2 afterwards: its later update is not.
    await db.sql`INSERT INTO doc VALUES (102, 2, 'seen')`;
    await db.sql`DELETE FROM membership WHERE grp = 2 AND identity = 'bob'`;
    await db.sql`UPDATE doc SET title = 'after revoke' WHERE id = 102`;
    await db.sql`INSERT INTO membership (grp, identity) VALUES (3, 'bob')`;
    await db.sql`INSERT INTO doc VALUES (103, 3, 'sentinel')`;
    await head();
    const bob = await h.open('bob', DOC, { after: start });
    // Losing access is a DELETE at the revoke (issue 12), with the image he last saw.
    expect(await events(bob, 'doc_changes', sentinel)).toEqual(['INSERT seen', 'DELETE seen', 'INSERT sentinel']);
    await bob.close();
  });

  it('a live evaluation that runs after a later grant committed still judges the change as of its position', async () => {
    const carol = await h.open('carol', DOC);
    // An open transaction with an id holds back stamping, so both commits below reach the engine in one
    // delivery, after the grant is committed: evaluated "now", the insert would be visible to carol.
    const release = await holdStamping();
    await db.sql`INSERT INTO doc VALUES (201, 4, 'before carol joined')`;
    await db.sql`UPDATE doc SET title = 'when carol joined' WHERE id = 201`;
    await db.sql`INSERT INTO membership (grp, identity) VALUES (4, 'carol')`;
    await release();
    await db.sql`INSERT INTO doc VALUES (202, 4, 'sentinel')`;
    // The insert and the update were hidden from her when they happened; the row enters her view at the grant.
    expect(await events(carol, 'doc_changes', sentinel)).toEqual(['INSERT when carol joined', 'INSERT sentinel']);
    await carol.close();
  });

  it('judging the last changes it read while a later grant is committed but not yet delivered, a catch-up uses the rules as they were', async () => {
    await db.sql`INSERT INTO membership (grp, identity) VALUES (8, 'gina')`;
    const start = await head();
    await db.sql`INSERT INTO doc VALUES (701, 7, 'hidden from gina then')`;
    await db.sql`INSERT INTO doc VALUES (702, 8, 'gina sees it')`;
    await head();
    // The grant is in the table, but held back from stamping: the catch-up reads 701 and 702 only,
    // and its statement (tables as they are, asking whether the log holds anything later) must notice.
    const release = await holdStamping();
    await db.sql`INSERT INTO membership (grp, identity) VALUES (7, 'gina')`;
    const gina = await h.open('gina', DOC, { after: start });
    expect(await events(gina, 'doc_changes', (e) => JSON.stringify(e).includes('gina sees it'))).toEqual(['INSERT gina sees it']);
    await release();
    await db.sql`INSERT INTO doc VALUES (703, 7, 'sentinel')`;
    // The grant moves 701 into her view; nothing else came before it.
    expect(await events(gina, 'doc_changes', sentinel)).toEqual(['INSERT hidden from gina then', 'INSERT sentinel']);
    await gina.close();
  });

  it('the moves of the last grant a catch-up read are judged as of it, though a later revoke is committed but not delivered', async () => {
    const start = await head();
    await db.sql`INSERT INTO doc VALUES (801, 9, 'hank sees it while a member')`;
    await db.sql`INSERT INTO membership (grp, identity) VALUES (9, 'hank')`;
    await head();
    const release = await holdStamping();
    await db.sql`DELETE FROM membership WHERE grp = 9 AND identity = 'hank'`;
    // The grant is the last change the catch-up reads; the revoke is in the table, held from stamping.
    const hank = await h.open('hank', DOC, { after: start });
    expect(await events(hank, 'doc_changes', () => true)).toEqual(['INSERT hank sees it while a member']);
    await release();
    expect(await events(hank, 'doc_changes', () => true)).toEqual(['DELETE hank sees it while a member']);
    await hank.close();
  });

  it('updates of columns no rule reads, around one that moves a member, leave the judgement as of each position intact', async () => {
    const start = await head();
    await db.sql`INSERT INTO membership (grp, identity) VALUES (5, 'frank')`;
    await db.sql`INSERT INTO doc VALUES (501, 5, 'frank sees it')`;
    // `since` is read by no rule: these updates are left out of the rebuilt membership, the move is not.
    await db.sql`UPDATE membership SET since = since + interval '1 day' WHERE identity = 'frank'`;
    await db.sql`UPDATE membership SET grp = 6 WHERE identity = 'frank'`;
    await db.sql`UPDATE membership SET since = since + interval '1 day' WHERE identity = 'frank'`;
    await db.sql`INSERT INTO doc VALUES (502, 5, 'hidden from frank')`;
    await db.sql`INSERT INTO doc VALUES (503, 6, 'sentinel')`;
    await head();
    const frank = await h.open('frank', DOC, { after: start });
    expect(await events(frank, 'doc_changes', sentinel)).toEqual(['INSERT frank sees it', 'DELETE frank sees it', 'INSERT sentinel']);
    await frank.close();
  });

  it('a table without a primary key is rebuilt as it was too, and joining it moves rows in', async () => {
    const start = await head();
    await db.sql`INSERT INTO doc VALUES (301, 9, 'audit a')`;
    await db.sql`UPDATE doc SET title = 'audit b' WHERE id = 301`;
    await db.sql`INSERT INTO auditor VALUES ('dave')`;
    await db.sql`INSERT INTO doc VALUES (302, 9, 'last for dave')`;
    await head();
    const dave = await h.open('dave', DOC, { after: start });
    // Becoming an auditor moves every document into his view at once (those of the other tests too);
    // 301 as it was then, and never its insert or update, which happened before.
    const seen = await events(dave, 'doc_changes', (e) => JSON.stringify(e).includes('last for dave'));
    expect(seen.filter((e) => / audit|last for dave/.test(e))).toEqual(['INSERT audit b', 'INSERT last for dave']);
    await dave.close();
  });

  it('a rule reading its own table judges the new image at the change and the old one before it', async () => {
    const start = await head();
    await db.sql`INSERT INTO folder VALUES (2, 1, 'alice', 'under alice')`;
    // Its own parent: an update of its owner changes who may see it, judged on both sides of the change.
    await db.sql`INSERT INTO folder VALUES (5, 5, 'alice', 'self')`;
    await db.sql`UPDATE folder SET owner = 'erin' WHERE id = 1`;
    await db.sql`UPDATE folder SET name = 'under erin' WHERE id = 2`;
    await db.sql`UPDATE folder SET owner = 'erin', name = 'self erin' WHERE id = 5`;
    await db.sql`INSERT INTO folder VALUES (3, 1, 'erin', 'sentinel')`;
    await head();
    // Folder 2's insert happened while alice owned its parent: erin never gets it, its later update
    // she could see on both sides. Folder 5 enters her view with its own update.
    const erin = await h.open('erin', FOLDER, { after: start });
    // Folder 2 enters her view when she is given its parent, as it was then.
    expect(await events(erin, 'folder_changes', sentinel)).toEqual(['INSERT under alice', 'UPDATE under erin', 'INSERT self erin', 'INSERT sentinel']);
    // Alice saw both inserts; folder 2 leaves her view with the parent, folder 5 with its own update,
    // each with the image she saw before.
    const alice = await h.open('alice', FOLDER, { after: start });
    expect(await events(alice, 'folder_changes', (e) => JSON.stringify(e).includes('"self"') && e['op'] === 'DELETE')).toEqual([
      'INSERT under alice',
      'INSERT self',
      'DELETE under alice',
      'DELETE self',
    ]);
    await erin.close();
    await alice.close();
  });
});
