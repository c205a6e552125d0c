import { sql, type SQL } from 'pg-sql2';
import type { Sql } from '../connect.ts';
import { preparedStatementsOf } from '../prepared.ts';
import { runSql } from '../run.ts';
import { CHANNEL, LOCK_CLASS, STAMP_LOCK } from './schema.ts';

/** One row change or truncation decoded from the WAL, its row images as JSON text of each column's text (wal-reader.ts rowText). */
export interface DecodedChange {
  schema: string;
  table: string;
  op: 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';
  /** The row as `{"column": "its text" | null, …}`; null when the op has none. */
  old: string | null;
  new: string | null;
}

/** A decoded transaction, complete (its COMMIT was received). */
export interface DecodedTransaction {
  /** End of its commit record: what the slot is confirmed to once it is in the log. */
  end: bigint;
  /** Commit time, microseconds since 1970 (the log's `at`). */
  commitMicros: bigint;
  /** Its (top-level, 32-bit) transaction id: the log's `xid` becomes the full id (wal-snapshot.ts). */
  xid: number;
  changes: DecodedChange[];
  /** Contents of the switch markers it carried (wal-install.ts). */
  markers: string[];
}

export interface AppendResult {
  /** Rows written to the log. */
  appended: number;
  /** Transactions skipped: already in the log (a replay after a crash) or before the switch marker. */
  skipped: number;
  /** Whether the append waited for trigger-written rows to be stamped first (during a switch). */
  held: boolean;
}

/**
 * Appends decoded transactions to the log, stamped (README, "WAL capture"): in one transaction
 * under the stamping lock, positions `max(pos) + 1 …` in commit order, then the progress row moves
 * to the last transaction's end, so a replayed transaction (the slot is confirmed only after this
 * commits) is recognised and skipped: nothing is lost and nothing repeated. Rows the triggers wrote
 * before a switch are stamped first; while one of them is still held back, nothing is appended
 * (`held`) and the caller retries.
 */
export async function appendTransactions(db: Sql, slot: string, txs: DecodedTransaction[]): Promise<AppendResult> {
  return db.begin(async (tx) => {
    // Prepared: the same few texts run for every decoded transaction (one insert text per table).
    const prepared = preparedStatementsOf(db, 64);
    const run = <T extends object = Record<string, unknown>>(query: Parameters<typeof runSql>[1]) => runSql<T>(tx as unknown as Sql, query, prepared);
    // Pipelined (one round trip): the read runs after the lock is granted, so it sees every append before it.
    const state = sql`SELECT (p.lsn - '0/0')::text AS lsn, p.awaiting,
                             (SELECT COALESCE(max(l.pos), 0)::text FROM rowgate.change_log AS l) AS top,
                             EXISTS (SELECT 1 FROM rowgate.change_log AS l WHERE l.pos IS NULL) AS unstamped
                        FROM rowgate.wal_progress AS p WHERE p.slot = ${sql.value(slot)} FOR UPDATE`;
    type State = { lsn: string; awaiting: string | null; top: string; unstamped: boolean };
    const [, [progress]] = await Promise.all([
      run(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(STAMP_LOCK))}::text::int4)`),
      run<State>(state),
    ]);
    if (!progress) throw new Error(`WAL capture is not installed for slot ${slot} (no rowgate.wal_progress row); run \`rowgate capture\``);
    let done = BigInt(progress.lsn);
    let awaiting = progress.awaiting;
    const kept: DecodedTransaction[] = [];
    let skipped = 0;
    for (const t of txs) {
      if (t.end <= done) skipped++;
      else if (awaiting !== null) {
        // Before the switch marker every change was captured by the triggers.
        if (t.markers.includes(awaiting)) awaiting = null;
        skipped++;
      } else kept.push(t);
      if (t.end > done) done = t.end;
    }
    let top = progress.top;
    if (progress.unstamped && kept.some((t) => t.changes.length)) {
      // Rows of the trigger capture (a switch in progress) come first, in their own order.
      await run(sql`SELECT rowgate.stamp(1000000)`);
      const [after] = await run<State>(state);
      if (!after || after.unstamped) return { appended: 0, skipped: 0, held: true };
      top = after.top;
    }
    let n = 0;
    // Numbered in commit order across tables, then written one statement per table.
    const byTable = new Map<string, { schema: string; table: string; rows: Row[] }>();
    for (const t of kept) {
      for (const c of t.changes) {
        const id = `${c.schema}.${c.table}`;
        let group = byTable.get(id);
        if (!group) byTable.set(id, (group = { schema: c.schema, table: c.table, rows: [] }));
        group.rows.push([++n, t.commitMicros.toString(), c.op, c.old && JSON.parse(c.old), c.new && JSON.parse(c.new), t.xid]);
      }
    }
    // Pipelined too: the inserts, the progress and the notification.
    await Promise.all([
      ...[...byTable.values()].map((group) => run(insertRows(group.schema, group.table, top, group.rows))),
      run(sql`WITH moved AS (
                UPDATE rowgate.wal_progress SET lsn = ('0/0'::pg_lsn + ${sql.value(done.toString())}::text::numeric), awaiting = ${sql.value(awaiting)}
                 WHERE slot = ${sql.value(slot)} RETURNING 1)
              SELECT CASE WHEN ${sql.value(String(n))}::text::int8 > 0 THEN pg_notify(${sql.value(CHANNEL)}, '') END FROM moved`),
    ]);
    return { appended: n, skipped, held: false };
  });
}

/** Number in commit order, commit time (µs), op, old and new row literal, the writer's 32-bit xid. */
type Row = [number, string, string, unknown, unknown, number];

/**
 * One table's rows. The images are built by PostgreSQL from the decoded text, as the trigger
 * capture builds them: a composite literal in the table's column order (a column pgoutput did not
 * send, a virtual generated one, NULL as in the trigger's NEW) read as the table's row type (each
 * column through its type's input function) and `to_jsonb` of that, so both captures write
 * byte-identical jsonb. The key is
 * the image's primary-key columns, read from the catalog as the triggers' arguments were. `xid` is
 * the writing transaction's, as a trigger-written row's is: its 32-bit id widened to the full one by
 * this transaction's own (the writer's is older and within 2^31 of it, or it would have wrapped).
 */
function insertRows(schema: string, table: string, top: string, rows: Row[]) {
  const rowType = sql.identifier(schema, table);
  const reg = sql`${sql.value(`${sql.compile(rowType).text}`)}::text::regclass`;
  // The composite literal `("v1","v2",)` in the table's column order; NULL when there is no image.
  const literal = (image: SQL) =>
    sql`(SELECT '(' || string_agg(COALESCE('"' || replace(replace(${image} ->> u.c, '\\', '\\\\'), '"', '\\"') || '"', ''), ',' ORDER BY u.o) || ')'
           FROM unnest(cols.names) WITH ORDINALITY AS u(c, o) WHERE jsonb_typeof(${image}) = 'object')`;
  return sql`
    WITH pk AS MATERIALIZED (
           SELECT ARRAY(SELECT a.attname::text
                          FROM pg_index AS i
                          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         WHERE i.indrelid = ${reg} AND i.indisprimary
                         ORDER BY k.ord) AS cols
         ),
         cols AS MATERIALIZED (
           SELECT array_agg(a.attname::text ORDER BY a.attnum) AS names
             FROM pg_attribute AS a WHERE a.attrelid = ${reg} AND a.attnum > 0 AND NOT a.attisdropped
         ),
         me AS MATERIALIZED (SELECT pg_catalog.pg_current_xact_id()::text::numeric AS xid),
         v AS (
           SELECT (r ->> 0)::int8 AS n, (r ->> 1)::numeric AS micros, r ->> 2 AS op, (r ->> 5)::numeric AS xid32,
                  pg_catalog.to_jsonb(${literal(sql`(r -> 3)`)}::${rowType}) AS o, pg_catalog.to_jsonb(${literal(sql`(r -> 4)`)}::${rowType}) AS j
             FROM pg_catalog.jsonb_array_elements(${sql.value(JSON.stringify(rows))}::text::jsonb) AS r, cols
         )
    INSERT INTO rowgate.change_log (xid, at, tbl, op, key, old, new, pos)
    SELECT (me.xid - ((me.xid % 4294967296) - v.xid32 + 4294967296) % 4294967296)::text::xid8,
           pg_catalog.to_timestamp(v.micros / 1000000), ${sql.value(table)}, v.op,
           CASE WHEN v.op = 'TRUNCATE' THEN '{}'::jsonb
                WHEN cardinality(pk.cols) = 0 THEN COALESCE(v.j, v.o)
                ELSE (SELECT pg_catalog.jsonb_object_agg(c, COALESCE(v.j, v.o) -> c) FROM unnest(pk.cols) AS c) END,
           v.o, v.j, ${sql.value(top)}::text::int8 + v.n
      FROM v, pk, me
     ORDER BY v.n`;
}
