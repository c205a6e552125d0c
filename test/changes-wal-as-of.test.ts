import { beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../src/db/index.ts';
import { startLive, type LiveHarness } from './support/live.ts';
import { useWalDatabase } from './support/wal.ts';

// WAL capture appends a commit to the log only once the leader decoded it, in a transaction of its
// own. A change stream judges each change as of its position by undoing, on the tables as they
// are, the log's later changes; an evaluation whose snapshot sees a grant the log does not hold
// yet would judge by the grant and show a change to someone granted access only after it (a
// leak). Here the leader's append is held (the stamping lock it takes) while a grant commits, and
// the evaluations are made to run while the grant is visible and not in the log.
const db = useWalDatabase();
let h: LiveHarness;
const LOCK = 0x726f7767;
const STAMP_LOCK = 1;

const TABLES = {
  doc: {
    select: [
      'SELECT d.* FROM doc d JOIN membership m ON m.grp = d.grp WHERE m.identity = :sender',
      'SELECT d.* FROM doc d JOIN auditor a ON a.identity = :sender',
    ],
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, grp int NOT NULL, title text NOT NULL);
    CREATE TABLE membership (grp int NOT NULL, identity text NOT NULL, PRIMARY KEY (grp, identity));
    CREATE TABLE auditor (identity text NOT NULL);`);
  h = await startLive(db, TABLES, { capture: 'wal' });
});

/** A transaction holding `lock` (SQL run in it) until the returned function is called. */
async function hold(lock: (tx: Sql) => Promise<unknown>): Promise<() => Promise<void>> {
  const tx = await db.sql.reserve();
  await tx`BEGIN`;
  await lock(tx as unknown as Sql);
  return async () => {
    await tx`COMMIT`;
    tx.release();
  };
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await check()); i++) {
    if (i > 500) throw new Error('the condition never held');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const DOC = 'subscription { doc_changes { op row { id title } old { id title } } }';

describe('WAL capture: change streams judge as of the position while the leader lags', () => {
  it('the log names the transaction that wrote each change, as a trigger-written row does', async () => {
    const xids = await db.sql.begin(async (tx) => {
      await tx`INSERT INTO doc VALUES (401, 9, 'x')`;
      await tx`INSERT INTO membership VALUES (9, 'xavier')`;
      return tx<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
    });
    await h.feed.poll();
    const logged = await db.sql<{ xid: string }[]>`SELECT DISTINCT xid::text AS xid FROM rowgate.change_log WHERE (tbl = 'doc' AND key ->> 'id' = '401') OR (tbl = 'membership' AND key ->> 'identity' = 'xavier')`;
    expect(logged).toEqual(xids);
  });

  it('a grant committed but not yet appended does not show earlier changes to the grantee', async () => {
    const carol = await h.open('carol', DOC);
    // The engine's statements read auditor: while it is locked, the evaluation of the first change waits.
    const unlockAuditor = await hold((tx) => tx`LOCK TABLE auditor IN ACCESS EXCLUSIVE MODE`);
    await db.sql`INSERT INTO doc VALUES (301, 4, 'e1')`;
    await until(async () => (await db.sql`SELECT 1 FROM pg_locks WHERE relation = 'auditor'::regclass AND NOT granted`).length > 0);
    // A second change, appended and delivered while the first is still evaluated: it waits its turn.
    await db.sql`UPDATE doc SET title = 'e2' WHERE id = 301`;
    await until(async () => (await db.sql`SELECT 1 FROM rowgate.change_log WHERE tbl = 'doc' AND op = 'UPDATE'`).length > 0);
    // The leader cannot append while the stamping lock is held: the grant is in the table, not in the log.
    const unlockAppends = await hold((tx) => tx`SELECT pg_advisory_xact_lock(${LOCK}, ${STAMP_LOCK})`);
    await db.sql`INSERT INTO membership VALUES (4, 'carol')`;
    expect(await db.sql`SELECT 1 FROM rowgate.change_log WHERE tbl = 'membership' AND key ->> 'identity' = 'carol'`).toHaveLength(0);
    // Both evaluations now run with the grant visible: judged "now", carol would get e1 and e2.
    await unlockAuditor();
    await new Promise((r) => setTimeout(r, 300));
    await unlockAppends();
    await db.sql`INSERT INTO doc VALUES (302, 4, 'sentinel')`;
    const seen: string[] = [];
    for (;;) {
      const r = await carol.next();
      expect(r.errors).toBeUndefined();
      const e = r.data!['doc_changes'] as { op: string; row: { title: string } | null; old: { title: string } | null };
      seen.push(`${e.op} ${(e.row ?? e.old)!.title}`);
      if (seen.at(-1)!.includes('sentinel')) break;
    }
    // Hidden from her when they happened; the row enters her view at the grant, as it is then.
    expect(seen).toEqual(['INSERT e2', 'INSERT sentinel']);
    await carol.close();
  });
});
