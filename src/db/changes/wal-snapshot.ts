import { sql } from 'pg-sql2';
import type { Sql } from '../connect.ts';
import { runSql } from '../run.ts';
import { ChangeError } from './errors.ts';

/** What an evaluation reads of the log: the changes of `tables` after position `after`. */
export interface LogReads {
  tables: readonly string[];
  after: string;
}

/**
 * Runs `evaluate` (read-only statements on the connection it is given) in one snapshot whose
 * change log explains every commit it sees, and returns its result; the result of an attempt that
 * did not is discarded, so `evaluate` must not act on anything before it returns.
 */
export type LogSnapshot = <T>(reads: LogReads, evaluate: (db: Sql) => Promise<T>) => Promise<T>;

/**
 * Waits until the slot is confirmed up to `lsn`, whichever gateway leads: every transaction whose
 * commit ends at or before it is then in the log (the leader confirms only what it appended).
 */
export async function walConfirmed(db: Sql, slot: string, lsn: string, closed: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  // Short waits: the leader confirms within a few round trips of the commit.
  for (let wait = 2; ; wait = Math.min(wait * 2, 20)) {
    const [row] = await runSql<{ done: boolean }>(
      db,
      sql`SELECT COALESCE(confirmed_flush_lsn >= ${sql.value(lsn)}::text::pg_lsn, false) AS done FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)}`,
    );
    if (row?.done || closed()) return;
    if (Date.now() > deadline) throw new ChangeError('WAL_BEHIND', `no WAL reader confirmed slot ${slot} up to ${lsn} within 60 s`);
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * WAL capture's LogSnapshot (README, "As-of judgement with WAL capture"). With triggers a commit's
 * log rows are part of it; with WAL capture the leader appends them later, in a transaction of its
 * own, so a snapshot can see a commit (a grant) the log does not hold yet, and a rebuild "table now
 * minus the log's later changes" would then judge a change by the newer state. So:
 *  1. In one REPEATABLE READ snapshot S: the log's top position M, the WAL insert position L
 *     (read after S was taken, so every commit S sees ends before L) and S itself; then `evaluate`.
 *  2. Wait until the slot is confirmed up to L: every commit S sees is in the log by then.
 *  3. A log row above M of a table read whose writer (`xid`, wal-append.ts) S sees is a commit S
 *     saw that its log did not explain: discard the result and go again (a new snapshot, whose log
 *     holds that commit).
 * The other way round, a log row S sees whose writer it does not see yet (the leader appended a
 * commit between its WAL flush and its becoming visible, which a synchronous standby can make
 * long) is checked in S before evaluating: the attempt waits a little and starts over.
 */
export function walLogSnapshot(db: Sql, slot: string, closed: () => boolean): LogSnapshot {
  return async (reads, evaluate) => {
    const tables = sql`${sql.value([...reads.tables])}::text[]`;
    // Each attempt that goes round saw a commit the log lacked; the next one's log holds it. Only
    // a table the step reads written faster than the leader appends keeps it going: then, rather
    // than hold the stream back unseen, its subscribers' streams end with WAL_BEHIND (they resume).
    const deadline = Date.now() + 60_000;
    for (let backoff = 1; ; backoff = Math.min(backoff * 2, 50)) {
      if (closed()) throw new ChangeError('FEED_CLOSED', 'the change feed is closed');
      if (Date.now() > deadline) throw new ChangeError('WAL_BEHIND', `change-stream evaluations found commits not yet in the log for 60 s (slot ${slot})`);
      const attempt = await db.begin('isolation level repeatable read read only', async (tx) => {
        const [s] = await runSql<{ top: string; lsn: string; snap: string; early: boolean }>(
          tx as unknown as Sql,
          sql`SELECT (SELECT COALESCE(max(l.pos), 0)::text FROM rowgate.change_log AS l) AS top,
                     pg_current_wal_insert_lsn()::text AS lsn, pg_current_snapshot()::text AS snap,
                     EXISTS (SELECT 1 FROM rowgate.change_log AS l
                              WHERE l.pos > ${sql.value(reads.after)}::text::bigint AND l.tbl = ANY (${tables})
                                AND NOT pg_visible_in_snapshot(l.xid, pg_current_snapshot())) AS early`,
        );
        if (!s || s.early) return null;
        return { s, value: await evaluate(tx as unknown as Sql) };
      });
      if (!attempt) {
        // A commit in the log that S does not see yet becomes visible within moments.
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      await walConfirmed(db, slot, attempt.s.lsn, closed);
      if (closed()) throw new ChangeError('FEED_CLOSED', 'the change feed is closed');
      const [late] = await runSql<{ late: boolean }>(
        db,
        sql`SELECT EXISTS (SELECT 1 FROM rowgate.change_log AS l
                            WHERE l.pos > ${sql.value(attempt.s.top)}::text::bigint AND l.tbl = ANY (${tables})
                              AND pg_visible_in_snapshot(l.xid, ${sql.value(attempt.s.snap)}::text::pg_snapshot)) AS late`,
      );
      if (!late?.late) return attempt.value;
    }
  };
}
