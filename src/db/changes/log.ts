import { sql } from 'pg-sql2';
import type { Sql } from '../connect.ts';
import { runSql } from '../run.ts';
import { ChangeError } from './errors.ts';
import { parseJsonObject } from './json.ts';

/**
 * Row changes, and two that WAL capture adds: `TRUNCATE` (the table was emptied; no row images)
 * and `RESYNC` (changes were lost — the replication slot was gone — so subscribers re-fetch).
 */
export type ChangeOp = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' | 'RESYNC';

/** One committed change of one row, as the change log holds it. */
export interface Change {
  /** Decimal string; positions are dense and increase in the order changes are delivered. */
  position: string;
  table: string;
  op: ChangeOp;
  /** Primary-key columns of the row (the new row's for INSERT and UPDATE); the whole row for tables without one. */
  key: Record<string, unknown>;
  /** Row image before the change (UPDATE, DELETE), else null. */
  old: Record<string, unknown> | null;
  /** Row image after the change (INSERT, UPDATE), else null. */
  new: Record<string, unknown> | null;
}

/** A change and the stamping that positioned it: changes stamped together are delivered together. */
export interface LoggedChange {
  change: Change;
  /** Id of the stamping transaction (the log row's `xmin` after the stamping UPDATE). */
  batch: string;
  /** Seconds from the writing transaction's start (`at`) to this read, both on the database's clock. */
  age: number;
}

interface LogRow {
  pos: string;
  batch: string;
  tbl: string;
  op: ChangeOp;
  key: string;
  old: string | null;
  new: string | null;
}

const DECIMAL = /^(0|[1-9]\d{0,18})$/;

/** Validates a position given by a client (`after`): a decimal string as `Change.position` is. */
export function parsePosition(position: string): bigint {
  if (typeof position !== 'string' || !DECIMAL.test(position)) {
    throw new ChangeError('INVALID_POSITION', `"${String(position)}" is not a change position; pass the position string of a change you received`);
  }
  return BigInt(position);
}

function toChange(row: LogRow): Change {
  return {
    position: row.pos,
    table: row.tbl,
    op: row.op,
    key: parseJsonObject(row.key) ?? {},
    old: parseJsonObject(row.old),
    new: parseJsonObject(row.new),
  };
}

/** The highest stamped position ("0" when nothing was ever stamped). */
export async function topPosition(db: Sql): Promise<string> {
  const [row] = await runSql<{ top: string }>(db, sql`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`);
  return row?.top ?? '0';
}

/** Stamps what can be stamped (at most `maxRows` per call); returns how many and the last position. */
export async function stamp(db: Sql, maxRows: number): Promise<{ stamped: number; last: string | null }> {
  const [row] = await runSql<{ stamped: string; last_pos: string | null }>(
    db,
    sql`SELECT stamped::text, last_pos::text FROM rowgate.stamp(${sql.value(String(maxRows))}::text::int4)`,
  );
  return { stamped: Number(row?.stamped ?? 0), last: row?.last_pos ?? null };
}

/** Stamped changes after `after`, in position order, with the stamping each belongs to. */
export async function readLog(db: Sql, after: string, limit: number): Promise<LoggedChange[]> {
  const rows = await runSql<LogRow & { age: number }>(
    db,
    // Qualified: a bare `pos` in ORDER BY would name the text output column and sort as text.
    sql`SELECT l.pos::text AS pos, l.xmin::text AS batch, l.tbl, l.op, l.key::text AS key, l.old::text AS old, l.new::text AS new,
               extract(epoch FROM clock_timestamp() - l.at)::float8 AS age
          FROM rowgate.change_log AS l
         WHERE l.pos > ${sql.value(after)}::text::bigint
         ORDER BY l.pos
         LIMIT ${sql.value(String(limit))}::text::int4`,
  );
  return rows.map((row) => ({ change: toChange(row), batch: row.batch, age: row.age }));
}

/**
 * Changes after `after` and at most up to `until`, for a client resuming. Fails with
 * POSITION_EXPIRED when retention already deleted a change after `after`. The oldest retained
 * position and the changes are read in one statement, so from one snapshot.
 */
export async function readAfter(db: Sql, after: string, limit: number, until: string | null = null): Promise<Change[]> {
  const from = parsePosition(after);
  const rows = await runSql<LogRow & { oldest: string | null }>(
    db,
    sql`SELECT o.oldest::text AS oldest, c.pos::text AS pos, c.xmin::text AS batch, c.tbl, c.op, c.key::text AS key, c.old::text AS old, c.new::text AS new
          FROM (SELECT min(pos) AS oldest FROM rowgate.change_log) AS o
          LEFT JOIN LATERAL (
            SELECT l.xmin, l.* FROM rowgate.change_log AS l
             WHERE l.pos > ${sql.value(String(from))}::text::bigint
               AND (${sql.value(until)}::text::bigint IS NULL OR l.pos <= ${sql.value(until)}::text::bigint)
             ORDER BY l.pos
             LIMIT ${sql.value(String(limit))}::text::int4
          ) AS c ON true
         ORDER BY c.pos`,
  );
  const oldest = rows[0]?.oldest ?? null;
  // Positions are dense: the change right after `after` is `after + 1`; if it is gone, so may be others.
  if (oldest !== null && BigInt(oldest) > from + 1n) {
    throw new ChangeError(
      'POSITION_EXPIRED',
      `position ${after} is older than the change log keeps (oldest retained change: ${oldest}); reload the data and subscribe without "after"`,
    );
  }
  return rows.filter((r) => r.pos !== null).map(toChange);
}

/**
 * Deletes stamped changes older than `retentionHours`, always a prefix of positions (so a resume
 * either gets every change after its position or POSITION_EXPIRED) and never the newest one (the
 * next stamping continues from it). Returns how many were deleted and the oldest retained position.
 */
export async function cleanup(db: Sql, retentionHours: number): Promise<{ deleted: number; oldest: string | null }> {
  const [row] = await runSql<{ deleted: string; oldest: string | null }>(
    db,
    sql`WITH bounds AS MATERIALIZED (
          SELECT (SELECT max(pos) FROM rowgate.change_log) AS top,
                 (SELECT pos FROM rowgate.change_log
                   WHERE pos IS NOT NULL AND at >= now() - make_interval(secs => ${sql.value(String(retentionHours))}::text::float8 * 3600)
                   ORDER BY pos LIMIT 1) AS young
        ), gone AS (
          DELETE FROM rowgate.change_log AS l USING bounds AS b
           WHERE l.pos < LEAST(b.young, b.top)
          RETURNING l.pos
        )
        SELECT (SELECT count(*) FROM gone)::text AS deleted,
               COALESCE((SELECT max(pos) + 1 FROM gone), (SELECT min(pos) FROM rowgate.change_log))::text AS oldest`,
  );
  return { deleted: Number(row?.deleted ?? 0), oldest: row?.oldest ?? null };
}

/** Whether committed changes wait for a stamp (held back behind an older transaction, or just committed). */
export async function hasUnstamped(db: Sql): Promise<boolean> {
  const [row] = await runSql<{ held: boolean }>(db, sql`SELECT EXISTS (SELECT 1 FROM rowgate.change_log WHERE pos IS NULL) AS held`);
  return row?.held === true;
}

/** Whether capture is installed in the database `db` is connected to. */
export async function captureInstalled(db: Sql): Promise<boolean> {
  const [row] = await runSql<{ ok: boolean }>(db, sql`SELECT to_regclass('rowgate.change_log') IS NOT NULL AS ok`);
  return row?.ok === true;
}
