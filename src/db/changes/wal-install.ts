import { randomBytes } from 'node:crypto';
import { sql } from 'pg-sql2';
import type { Sql } from '../connect.ts';
import { runSql } from '../run.ts';
import { ChangeError } from './errors.ts';
import { dropCaptureTriggers, prepareLog, type CaptureReport } from './install.ts';
import { INSTALL_LOCK, LOCK_CLASS, PUBLICATION, SWITCH_PREFIX, WAL_DDL } from './schema.ts';

/** Config `changeLog.capture`: `auto` is WAL where the server and the role allow it, else triggers. */
export type CaptureMode = 'wal' | 'triggers' | 'auto';

interface WalSupport {
  walLevel: string;
  mayReplicate: boolean;
  slot: string;
}

/**
 * The replication slot of the database `db` is connected to. Slot names are cluster-wide (a
 * publication's is per database), so the database's name is in it: `rowgate_<database>`, with
 * anything but `[a-z0-9_]` as `_`, at most 63 characters.
 */
export async function slotName(db: Sql): Promise<string> {
  const [row] = await runSql<{ db: string }>(db, sql`SELECT current_database()::text AS db`);
  return `rowgate_${(row?.db ?? '').toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
}

async function walSupport(db: Sql): Promise<WalSupport> {
  const [row] = await runSql<{ wal_level: string; may: boolean }>(
    db,
    sql`SELECT current_setting('wal_level') AS wal_level,
               (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS may`,
  );
  return { walLevel: row?.wal_level ?? '', mayReplicate: row?.may === true, slot: await slotName(db) };
}

/**
 * The capture `mode` means on this server for `tables` of `schema`: `auto` becomes `wal` when
 * `wal_level = logical`, the role may replicate, and no table has a generated column WAL capture
 * cannot carry: a stored one before PostgreSQL 18 (pgoutput never sends them, the images would lack
 * them), or a virtual one (never published, and REPLICA IDENTITY FULL over an unpublished column
 * makes PostgreSQL refuse the table's UPDATEs and DELETEs). `wal` where that does not hold is
 * WAL_UNAVAILABLE.
 */
export async function resolveCapture(db: Sql, mode: CaptureMode, schema = 'public', tables: string[] = []): Promise<'wal' | 'triggers'> {
  if (mode === 'triggers') return 'triggers';
  const support = await walSupport(db);
  const [gen] = await runSql<{ cols: string | null }>(
    db,
    sql`SELECT string_agg(format('%I.%I', c.relname, a.attname), ', ' ORDER BY c.relname, a.attnum) AS cols
          FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = ${sql.value(schema)} AND c.relname = ANY (${sql.value(tables)}::text[]) AND a.attnum > 0 AND NOT a.attisdropped
           AND (a.attgenerated = 'v' OR (a.attgenerated = 's' AND current_setting('server_version_num')::int < 180000))`,
  );
  const ok = support.walLevel === 'logical' && support.mayReplicate && !gen?.cols;
  if (ok) return 'wal';
  if (mode === 'auto') return 'triggers';
  const why =
    support.walLevel !== 'logical'
      ? `wal_level is ${support.walLevel}, not logical`
      : !support.mayReplicate
        ? 'the role has neither REPLICATION nor SUPERUSER'
        : `generated columns it cannot carry (${gen?.cols}: virtual ones, or stored ones before PostgreSQL 18)`;
  throw new ChangeError('WAL_UNAVAILABLE', `changeLog.capture is "wal" but this server cannot decode the WAL for rowgate: ${why}; use "triggers" or "auto"`);
}

/**
 * Installs WAL capture (README, "WAL capture"): the log, the publication over `wanted` with
 * `REPLICA IDENTITY FULL` on each table, the permanent slot, and — the first time, or when capture
 * triggers are still there — the switch: the triggers are dropped in the transaction that emits the
 * switch marker, and the reader skips every decoded transaction before that marker (the triggers
 * captured those). Idempotent.
 */
export async function installWal(db: Sql, schema: string, wanted: string[]): Promise<CaptureReport> {
  const report: CaptureReport = { mode: 'wal', installed: [], unchanged: [], removed: [] };
  const { hadTriggers, progress } = await db.begin(async (tx) => {
    const run = (query: Parameters<typeof runSql>[1]) => runSql(tx as unknown as Sql, query);
    await prepareLog(run, schema, wanted);
    for (const ddl of WAL_DDL) await run(ddl);
    // PostgreSQL 18 publishes stored generated columns when asked (older ones never: resolveCapture).
    const [pub] = await run(sql`SELECT count(*)::int AS n, current_setting('server_version_num')::int >= 180000 AS gencols,
                                       bool_or(to_jsonb(p) ->> 'pubgencols' = 's') AS has_gencols
                                  FROM pg_publication AS p WHERE pubname = ${sql.value(PUBLICATION)}`);
    const gencols = pub?.['gencols'] === true;
    if (Number(pub?.['n']) === 0) await run(sql`CREATE PUBLICATION ${sql.identifier(PUBLICATION)}${gencols ? sql` WITH (publish_generated_columns = stored)` : sql.blank}`);
    else if (gencols && pub?.['has_gencols'] !== true) await run(sql`ALTER PUBLICATION ${sql.identifier(PUBLICATION)} SET (publish_generated_columns = stored)`);
    const published = new Set(
      (await run(sql`SELECT tablename::text AS t FROM pg_publication_tables WHERE pubname = ${sql.value(PUBLICATION)} AND schemaname = ${sql.value(schema)}`)).map((r) => String(r['t'])),
    );
    for (const table of wanted) {
      if (published.has(table)) report.unchanged.push(table);
      else {
        await run(sql`ALTER PUBLICATION ${sql.identifier(PUBLICATION)} ADD TABLE ${sql.identifier(schema, table)}`);
        report.installed.push(table);
      }
    }
    for (const table of [...published].sort()) {
      if (wanted.includes(table)) continue;
      await run(sql`ALTER PUBLICATION ${sql.identifier(PUBLICATION)} DROP TABLE ${sql.identifier(schema, table)}`);
      report.removed.push(table);
    }
    // Old images of UPDATE and DELETE need every column (the trigger capture logged whole rows).
    const identities = await run(sql`
      SELECT c.relname::text AS t FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
       WHERE n.nspname = ${sql.value(schema)} AND c.relreplident <> 'f'
         AND c.relname IN (SELECT jsonb_array_elements_text(${sql.value(JSON.stringify(wanted))}::text::jsonb))`);
    for (const r of identities) await run(sql`ALTER TABLE ${sql.identifier(schema, String(r['t']))} REPLICA IDENTITY FULL`);
    const [triggers] = await run(sql`
      SELECT count(*)::int AS n FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace
       WHERE n.nspname = ${sql.value(schema)} AND starts_with(t.tgname::text, 'rowgate_capture') AND t.tgparentid = 0`);
    const [row] = await run(sql`SELECT count(*)::int AS n FROM rowgate.wal_progress`);
    return { hadTriggers: Number(triggers?.['n']) > 0, progress: Number(row?.['n']) > 0 };
  });

  // Outside any transaction: a logical slot cannot be created by one that wrote. Created after the
  // publication, so every transaction the slot decodes sees it.
  const slot = await slotName(db);
  await ensureSlot(db, slot);

  if (!progress || hadTriggers) {
    await db.begin(async (tx) => {
      const run = (query: Parameters<typeof runSql>[1]) => runSql(tx as unknown as Sql, query);
      await run(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(INSTALL_LOCK))}::text::int4)`);
      // Every transaction that fired a trigger holds its table's lock until it commits, and DROP
      // TRIGGER waits for that lock: they all commit before this transaction, so before the marker.
      await dropCaptureTriggers(run, schema);
      const token = randomBytes(8).toString('hex');
      await run(sql`INSERT INTO rowgate.wal_progress (slot, lsn, awaiting) VALUES (${sql.value(slot)}, '0/0', ${sql.value(token)})
                    ON CONFLICT (slot) DO UPDATE SET awaiting = EXCLUDED.awaiting`);
      await run(sql`SELECT pg_logical_emit_message(true, ${sql.value(SWITCH_PREFIX)}, ${sql.value(token)})`);
    });
  }
  return report;
}

/** Creates the permanent pgoutput slot unless it exists; true when it was created now. */
export async function ensureSlot(db: Sql, slot: string): Promise<boolean> {
  const [row] = await runSql<{ n: number }>(db, sql`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)}`);
  if (Number(row?.n) > 0) return false;
  try {
    await runSql(db, sql`SELECT pg_create_logical_replication_slot(${sql.value(slot)}, 'pgoutput')`);
    return true;
  } catch (err) {
    // Another gateway created it first.
    if ((err as { code?: string }).code === '42710') return false;
    throw err;
  }
}

/**
 * Removes WAL capture's own objects: the slot (its reader, if one is streaming, is ended first:
 * an active slot cannot be dropped), the publication and the progress row. A database with a
 * slot cannot be dropped, so `rowgate capture --drop` and the tests' cleanup go through here.
 */
export async function removeWal(db: Sql): Promise<void> {
  const slot = await slotName(db);
  for (let attempt = 0; ; attempt++) {
    try {
      await runSql(db, sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)} AND active_pid IS NOT NULL`);
      await runSql(db, sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)}`);
      break;
    } catch (err) {
      // 55006: the reader reconnected in between; end it again.
      if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await runSql(db, sql`DROP PUBLICATION IF EXISTS ${sql.identifier(PUBLICATION)}`);
  await runSql(db, sql`DO $$ BEGIN IF to_regclass('rowgate.wal_progress') IS NOT NULL THEN DELETE FROM rowgate.wal_progress; END IF; END $$`);
}

export interface WalStatus {
  mode: 'wal' | 'triggers' | 'none';
  slot: string;
  /** Whether the slot exists, its state (`pg_replication_slots.wal_status`) and whether a reader streams it. */
  slotState: { walStatus: string | null; active: boolean; confirmedLsn: string | null; retainedBytes: string | null } | null;
}

/** Capture as installed in this database, with the slot's confirmed position and the WAL it holds back. */
export async function captureStatus(db: Sql): Promise<WalStatus> {
  const slot = await slotName(db);
  const [mode] = await runSql<{ wal: boolean; log: boolean }>(
    db,
    sql`SELECT to_regclass('rowgate.change_log') IS NOT NULL AS log,
               (to_regclass('rowgate.wal_progress') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_publication WHERE pubname = ${sql.value(PUBLICATION)})) AS wal`,
  );
  const [state] = await runSql<{ wal_status: string | null; active: boolean; confirmed: string | null; retained: string | null }>(
    db,
    sql`SELECT wal_status, active, confirmed_flush_lsn::text AS confirmed,
               pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
          FROM pg_replication_slots WHERE slot_name = ${sql.value(slot)}`,
  );
  return {
    mode: mode?.wal ? 'wal' : mode?.log ? 'triggers' : 'none',
    slot,
    slotState: state ? { walStatus: state.wal_status, active: state.active, confirmedLsn: state.confirmed, retainedBytes: state.retained } : null,
  };
}
