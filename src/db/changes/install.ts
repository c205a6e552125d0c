import { sql } from 'pg-sql2';
import type { Sql } from '../connect.ts';
import { runSql } from '../run.ts';
import { ChangeError } from './errors.ts';
import { CAPTURE_SCHEMA, CREATE_DDL_TRIGGER, createTrigger, DDL_TRIGGER, NOTIFY_DDL, FUNCTIONS, INSTALL_LOCK, LOCK_CLASS, OP_CHECK_DEF, REPLACE_OP_CHECK, TABLE_DDL, TRIGGER_PREFIX, TRIGGERS, type TriggerSpec } from './schema.ts';
import { installWal, removeWal, resolveCapture, type CaptureMode } from './wal-install.ts';

export interface CaptureReport {
  /** The capture in use (config `changeLog.capture`, `auto` resolved). */
  mode: 'wal' | 'triggers';
  /** Tables whose triggers were created or replaced. */
  installed: string[];
  /** Tables whose triggers were already as wanted. */
  unchanged: string[];
  /** Tables no longer listed, whose triggers were dropped. */
  removed: string[];
}

interface ExistingTrigger {
  table: string;
  name: string;
  type: number;
  fn: string;
  enabled: string;
  old_table: string | null;
  new_table: string | null;
  args: Buffer;
}

/**
 * Installs change capture for `tables` of `schema`: the `rowgate` schema, its change log and
 * functions, and the capture triggers on each table. Idempotent: what is already as wanted is not
 * touched (no lock is taken on a user table whose triggers are right), and tables that are not
 * listed any more lose their triggers. One transaction, serialized against concurrent installs.
 */
export async function installCapture(db: Sql, schema: string, tables: string[], mode: CaptureMode = 'triggers'): Promise<CaptureReport> {
  const wanted = [...new Set(tables)].sort();
  if ((await resolveCapture(db, mode, schema, wanted)) === 'wal') return installWal(db, schema, wanted);
  // Back from WAL capture: its publication, slot and progress go first (README, "Switching").
  await removeWal(db);
  return db.begin(async (tx) => {
    const run = (query: Parameters<typeof runSql>[1]) => runSql(tx as unknown as Sql, query);
    const byName = await prepareLog(run, schema, wanted);

    // Partition clones (tgparentid <> 0) follow their parent's trigger and are not ours to manage.
    const existing = (await run(sql`
      SELECT c.relname AS table, t.tgname AS name, t.tgtype::int AS type, p.proname AS fn, t.tgenabled AS enabled,
             t.tgoldtable AS old_table, t.tgnewtable AS new_table, t.tgargs AS args
        FROM pg_trigger AS t
        JOIN pg_class AS c ON c.oid = t.tgrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_proc AS p ON p.oid = t.tgfoid
       WHERE n.nspname = ${sql.value(schema)} AND starts_with(t.tgname::text, ${sql.value(TRIGGER_PREFIX)}) AND t.tgparentid = 0`)) as unknown as ExistingTrigger[];

    const report: CaptureReport = { mode: 'triggers', installed: [], unchanged: [], removed: [] };
    for (const table of wanted) {
      const pk = byName.get(table) ?? [];
      const args = [table, ...pk];
      const mine = existing.filter((t) => t.table === table);
      const same = mine.length === TRIGGERS.length && TRIGGERS.every((spec) => mine.some((t) => matches(t, spec, args)));
      if (same) {
        report.unchanged.push(table);
        continue;
      }
      for (const t of mine) await run(sql`DROP TRIGGER ${sql.identifier(t.name)} ON ${sql.identifier(schema, table)}`);
      for (const spec of TRIGGERS) await run(createTrigger(spec, schema, table, args));
      report.installed.push(table);
    }
    const listed = new Set(wanted);
    for (const t of existing) {
      if (listed.has(t.table)) continue;
      await run(sql`DROP TRIGGER ${sql.identifier(t.name)} ON ${sql.identifier(schema, t.table)}`);
      if (!report.removed.includes(t.table)) report.removed.push(t.table);
    }
    report.removed.sort();
    return report;
  });
}

type Run = (query: Parameters<typeof runSql>[1]) => Promise<Record<string, unknown>[]>;

/**
 * What both captures need, in the caller's transaction: the install lock, the log and its functions
 * (created, or brought up to date), and the wanted tables checked. Returns each table's primary key.
 */
export async function prepareLog(run: Run, schema: string, wanted: string[]): Promise<Map<string, string[]>> {
  await run(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(INSTALL_LOCK))}::text::int4)`);
  // Only when missing: CREATE INDEX IF NOT EXISTS takes a share lock on the log before it looks,
  // and a capture trigger's insert waiting behind it (while holding its table) can deadlock an
  // install that then locks that table.
  const [present] = await run(sql`SELECT to_regclass('rowgate.change_log_unstamped') IS NOT NULL AS ok`);
  if (present?.['ok'] !== true) for (const ddl of TABLE_DDL) await run(ddl);
  // A log made before TRUNCATE and RESYNC existed: its op check is replaced once.
  const [check] = await run(sql`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'rowgate.change_log'::regclass AND conname = 'change_log_op_check'`);
  if (check?.['def'] !== OP_CHECK_DEF) await run(REPLACE_OP_CHECK);

  const functions = await run(sql`
    SELECT p.proname AS name, p.prosrc AS body
      FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = ${sql.value(CAPTURE_SCHEMA)}`);
  const bodies = new Map(functions.map((f) => [String(f['name']), String(f['body'])]));
  for (const fn of FUNCTIONS) if (bodies.get(fn.name) !== fn.body) await run(fn.create);

  const relations = await run(sql`
    SELECT c.relname AS table, c.relkind AS kind,
           ARRAY(SELECT a.attname::text
                   FROM pg_index AS i
                   CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary
                  ORDER BY k.ord) AS pk
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname = ${sql.value(schema)}
       AND c.relname IN (SELECT jsonb_array_elements_text(${sql.value(JSON.stringify(wanted))}::text::jsonb))`);
  const byName = new Map(relations.map((r) => [String(r['table']), r]));
  const keys = new Map<string, string[]>();
  for (const table of wanted) {
    const rel = byName.get(table);
    if (!rel) throw new ChangeError('NOT_A_TABLE', `cannot capture changes of "${schema}.${table}": no such table`);
    // Views have no rows of their own (capture their base tables); foreign tables lack transition tables.
    if (rel['kind'] !== 'r' && rel['kind'] !== 'p') {
      throw new ChangeError('NOT_A_TABLE', `cannot capture changes of "${schema}.${table}": it is not a table (relkind ${String(rel['kind'])}); capture the tables it reads instead`);
    }
    keys.set(table, (rel['pk'] as string[] | undefined) ?? []);
  }
  return keys;
}

/** Drops every capture trigger on the tables of `schema`; returns the tables that had them. */
export async function dropCaptureTriggers(run: Run, schema: string): Promise<string[]> {
  const triggers = await run(sql`
    SELECT c.relname AS table, t.tgname AS name
      FROM pg_trigger AS t
      JOIN pg_class AS c ON c.oid = t.tgrelid
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname = ${sql.value(schema)} AND starts_with(t.tgname::text, ${sql.value(TRIGGER_PREFIX)}) AND t.tgparentid = 0`);
  const removed = new Set<string>();
  for (const t of triggers) {
    await run(sql`DROP TRIGGER ${sql.identifier(String(t['name']))} ON ${sql.identifier(schema, String(t['table']))}`);
    removed.add(String(t['table']));
  }
  return [...removed].sort();
}

function matches(t: ExistingTrigger, spec: TriggerSpec, args: string[]): boolean {
  return (
    t.name === spec.name &&
    t.type === spec.type &&
    t.fn === spec.fn &&
    t.enabled === 'O' &&
    t.old_table === spec.oldTable &&
    t.new_table === spec.newTable &&
    sameList(decodeArgs(t.args), args)
  );
}

/** `pg_trigger.tgargs`: each argument followed by a NUL byte. */
function decodeArgs(raw: Buffer): string[] {
  const text = raw.toString('utf8');
  return text === '' ? [] : text.slice(0, -1).split('\0');
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The event trigger that notifies DDL_CHANNEL after DDL (`serve --watch`): true when it is in
 * place (created now, or already there), false when it is not and cannot be, because creating an
 * event trigger needs a superuser (the gateway then polls the catalog instead). Run after
 * installCapture, which creates the schema.
 */
export async function installDdlNotice(db: Sql): Promise<boolean> {
  return db.begin(async (tx) => {
    const run = (query: Parameters<typeof runSql>[1]) => runSql(tx as unknown as Sql, query);
    await run(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(INSTALL_LOCK))}::text::int4)`);
    const [state] = await run(sql`
      SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = ${sql.value(DDL_TRIGGER)}) AS present,
             (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser`);
    if (state?.['present'] === true) return true;
    if (state?.['superuser'] !== true) return false;
    await run(NOTIFY_DDL);
    await run(CREATE_DDL_TRIGGER);
    return true;
  });
}

/**
 * Removes change capture: the triggers on the tables of `schema`, then the `rowgate` schema with
 * the change log and the functions (CASCADE also drops capture triggers left in other schemas).
 */
export async function removeCapture(db: Sql, schema: string): Promise<{ removed: string[] }> {
  const result = await db.begin(async (tx) => {
    const run = (query: Parameters<typeof runSql>[1]) => runSql(tx as unknown as Sql, query);
    await run(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(INSTALL_LOCK))}::text::int4)`);
    const removed = await dropCaptureTriggers(run, schema);
    // Only capture's own objects: `rowgate policies` keeps its helpers in the same schema, and
    // dropping those would drop the policies that use them.
    await run(sql`DROP EVENT TRIGGER IF EXISTS ${sql.identifier(DDL_TRIGGER)}`);
    await run(sql`DROP FUNCTION IF EXISTS rowgate.capture_row(), rowgate.capture_statement(), rowgate.stamp(integer), rowgate.notify_ddl()`);
    await run(sql`DROP TABLE IF EXISTS rowgate.change_log, rowgate.wal_progress`);
    const [left] = await run(sql`SELECT count(*)::int AS n FROM pg_depend d JOIN pg_namespace n ON d.refobjid = n.oid WHERE n.nspname = 'rowgate' AND d.refclassid = 'pg_namespace'::regclass`);
    return { removed, empty: Number(left?.['n'] ?? 0) === 0 };
  });
  // After the log: a WAL reader that finds its slot gone recreates it only while the log exists.
  await removeWal(db);
  if (result.empty) await runSql(db, sql`DROP SCHEMA IF EXISTS rowgate`);
  return { removed: result.removed };
}
