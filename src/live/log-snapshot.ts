import type { LogReads, LogSnapshot } from '../db/changes/index.ts';
import type { Sql } from '../db/index.ts';
import type { ChangeSubscriber } from './change-stream.ts';

/**
 * Runs one change-stream step (`evaluate`: its statements, pushing events to the subscribers it is
 * given) in a snapshot the change log explains, when the capture needs one (`snapshot`: WAL
 * capture, db/changes wal-snapshot.ts). The events are held until the snapshot is known to be
 * explained; an attempt that was not is run again and its events are dropped, so nobody gets an
 * event judged by a grant the log did not show yet. Without `snapshot` (trigger capture) the step
 * runs as it is, as does one that reads no table from the log.
 */
export async function inLogSnapshot(db: Sql, snapshot: LogSnapshot | undefined, reads: LogReads, subs: ChangeSubscriber[], evaluate: (db: Sql, subs: ChangeSubscriber[]) => Promise<void>): Promise<void> {
  if (!snapshot || !reads.tables.length) return evaluate(db, subs);
  const held = await snapshot(reads, async (tx) => {
    const events: [ChangeSubscriber, Record<string, unknown>][] = [];
    await evaluate(tx, subs.map((sub) => ({ ...sub, push: (event: Record<string, unknown>) => void events.push([sub, event]) })));
    return events;
  });
  for (const [sub, event] of held) sub.push(event);
}
