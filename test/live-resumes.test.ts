import { beforeAll, describe, expect, it } from 'vitest';
import { parse, subscribe } from 'graphql';
import { testCapture, useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness, type Subscription } from './support/live.ts';
import { eventsUntil, stampedHead, type TitledEvent } from './support/replica.ts';

// A change stream resumed with `after` gets what the engine already judged for an earlier
// subscription with the same shape, fields and values from memory (src/live/resumes.ts), and the
// log is caught up only from where that ends. The events must be exactly those a gateway that
// never saw the earlier subscription computes from the log.
const db = useTestDatabase();
let h: LiveHarness;
let other: LiveHarness;

const TABLES = {
  doc: {
    select: [
      'SELECT * FROM doc WHERE owner = :sender',
      'SELECT d.* FROM doc d JOIN membership m ON m.grp = d.grp WHERE m.identity = :sender',
      'SELECT doc.* FROM doc JOIN admin ON admin.identity = :sender',
    ],
  },
  folder: { select: ['SELECT * FROM folder'] },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE folder (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO folder VALUES (1, 'one');
    CREATE TABLE doc (id int PRIMARY KEY, grp int NOT NULL, owner text NOT NULL, title text NOT NULL, folder_id int REFERENCES folder);
    CREATE TABLE membership (grp int NOT NULL, identity text NOT NULL, PRIMARY KEY (grp, identity));
    CREATE TABLE admin (identity text PRIMARY KEY);
  `);
  h = await startLive(db, TABLES);
  // A second gateway on the same database: it judges every resume from the log.
  other = await startLive(db, TABLES);
});

const CHANGES = 'subscription($after: String) { doc_changes(after: $after) { op position row { id title } old { id title } } }';

const until = (sub: Subscription, title: string) => eventsUntil(sub, 'doc_changes', title);
const head = () => stampedHead(db.sql, h.feed);

/** Commits that give `who` plain events, events of others' rows it is granted and revoked (moves), and rows it never sees. */
async function history(who: string, base: number, end: string): Promise<void> {
  await db.sql`INSERT INTO doc VALUES (${base}, 1, ${who}, 'own', NULL), (${base + 1}, 7, 'nobody', 'group seven', NULL), (${base + 2}, 8, 'nobody', 'hidden', NULL)`;
  await db.sql`INSERT INTO membership VALUES (7, ${who})`;
  await db.sql`UPDATE doc SET title = 'group seven 2' WHERE id = ${base + 1}`;
  await db.sql`UPDATE doc SET title = 'hidden 2' WHERE id = ${base + 2}`;
  await db.sql`INSERT INTO admin VALUES (${who})`;
  await db.sql`DELETE FROM admin WHERE identity = ${who}`;
  await db.sql`DELETE FROM membership WHERE grp = 7 AND identity = ${who}`;
  await db.sql`UPDATE doc SET title = 'own 2' WHERE id = ${base}`;
  await db.sql`INSERT INTO doc VALUES (${base + 3}, 1, ${who}, ${end}, NULL)`;
}

/** A stream of fay's from `after` up to the error it ends with: the titles of its events, and the error's code. */
async function outcome(gateway: LiveHarness, after: string): Promise<{ titles: string[]; code: unknown }> {
  const result = await subscribe({ schema: gateway.schema, document: parse(CHANGES), contextValue: { caller: asCaller('fay') }, variableValues: { after } });
  if (!(Symbol.asyncIterator in result)) return { titles: [], code: result.errors?.[0]?.extensions?.['code'] };
  const iterator = result[Symbol.asyncIterator]();
  const titles: string[] = [];
  try {
    for (;;) {
      const step = await Promise.race([iterator.next(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no outcome within 5 s')), 5000))]);
      if (step.done) return { titles, code: 'completed' };
      if (step.value.errors?.length) return { titles, code: step.value.errors[0]!.extensions?.['code'] };
      const e = step.value.data!['doc_changes'] as TitledEvent;
      titles.push((e.row ?? e.old)!.title);
    }
  } catch (err) {
    return { titles, code: (err as { extensions?: Record<string, unknown> }).extensions?.['code'] ?? String(err) };
  } finally {
    void iterator.return?.();
  }
}

describe('resuming a change stream from what the engine already judged', () => {
  it('replays an earlier subscription’s events with no statement, exactly as a gateway reading the log does', async () => {
    const start = await head();
    const first = await h.open('ann', CHANGES, { after: start });
    await history('ann', 100, 'ann end');
    const full = await until(first, 'ann end');
    await first.close();
    // Own rows, the group's rows moving in and out, the admin's view of every row moving in and out.
    expect(full.map((e) => e.op)).toContain('DELETE');
    expect(full.some((e) => e.position.includes(':'))).toBe(true);

    for (const from of [full[0]!, full.find((e) => e.position.includes(':'))!, full.at(-2)!]) {
      const rest = full.slice(full.indexOf(from) + 1);
      const statements = h.live.stats.statements;
      const resumed = await h.open('ann', CHANGES, { after: from.position });
      expect(await until(resumed, 'ann end')).toEqual(rest);
      // Everything came from memory: the engine judged nothing again.
      expect(h.live.stats.statements - statements).toBe(0);
      await resumed.close();
      const fromLog = await other.open('ann', CHANGES, { after: from.position });
      expect(await until(fromLog, 'ann end')).toEqual(rest);
      await fromLog.close();
    }
  });

  it('what was committed after the earlier subscription ended is judged from the log, after the replayed part', async () => {
    const start = await head();
    const first = await h.open('bea', CHANGES, { after: start });
    await db.sql`INSERT INTO doc VALUES (200, 1, 'bea', 'first', NULL)`;
    const [got] = await until(first, 'first');
    await history('bea', 210, 'bea mid');
    await until(first, 'bea mid');
    await first.close();
    // Nobody follows bea's stream now: these are judged only when she resumes.
    await history('bea', 220, 'bea end');
    const statements = h.live.stats.statements;
    const resumed = await h.open('bea', CHANGES, { after: got!.position });
    const events = await until(resumed, 'bea end');
    expect(h.live.stats.statements - statements).toBeGreaterThan(0);
    await resumed.close();
    const fromLog = await other.open('bea', CHANGES, { after: got!.position });
    expect(await until(fromLog, 'bea end')).toEqual(events);
    await fromLog.close();
  });

  it('another caller resuming after the same position gets only its own events, never the replay', async () => {
    const start = await head();
    const cat = await h.open('cat', CHANGES, { after: start });
    await history('cat', 300, 'cat end');
    await until(cat, 'cat end');
    await cat.close();
    // dan was never granted anything: his resume is judged for him, and he sees none of cat's rows.
    await db.sql`INSERT INTO doc VALUES (310, 1, 'dan', 'dan end', NULL)`;
    const dan = await h.open('dan', CHANGES, { after: start });
    const events = await until(dan, 'dan end');
    expect(events.map((e) => (e.row ?? e.old)!.title)).toEqual(['dan end']);
    await dan.close();
  });

  it('a selection reading other tables (a relationship) is never replayed', async () => {
    const WITH_FOLDER = 'subscription($after: String) { doc_changes(after: $after) { op position row { id title folder { name } } old { id title } } }';
    const start = await head();
    const first = await h.open('eve', WITH_FOLDER, { after: start });
    await db.sql`INSERT INTO doc VALUES (400, 1, 'eve', 'in folder', 1)`;
    await db.sql`INSERT INTO doc VALUES (401, 1, 'eve', 'eve end', NULL)`;
    const r1 = await first.next();
    expect((r1.data!['doc_changes'] as { row: { folder: { name: string } } }).row.folder.name).toBe('one');
    await first.next();
    await first.close();
    // The folder is renamed: an event's row is built from the tables as they are when it is judged.
    await db.sql`UPDATE folder SET name = 'renamed' WHERE id = 1`;
    const statements = h.live.stats.statements;
    const resumed = await h.open('eve', WITH_FOLDER, { after: start });
    const r2 = await resumed.next();
    expect(h.live.stats.statements - statements).toBeGreaterThan(0);
    expect((r2.data!['doc_changes'] as { row: { folder: { name: string } } }).row.folder.name).toBe('renamed');
    await resumed.close();
  });

  // Only WAL capture sees a TRUNCATE (triggers do not fire on it); CI's second pass runs this.
  it.skipIf(testCapture() !== 'wal')('a resume across a TRUNCATE still ends with CHANGES_RESYNC, as on a gateway without the earlier subscription', async () => {
    const start = await head();
    // fay's stream is live (its events kept for resumes) when the table its rules read is truncated.
    const first = outcome(h, start);
    await db.sql`INSERT INTO doc VALUES (500, 1, 'fay', 'before', NULL)`;
    await db.sql`TRUNCATE membership`;
    // The insert and the TRUNCATE may come in one delivery, and a break ends the stream first.
    expect((await first).code).toBe('CHANGES_RESYNC');
    for (const gateway of [h, other]) expect(await outcome(gateway, start)).toEqual({ titles: [], code: 'CHANGES_RESYNC' });
  });
});
