import { sql, type SQL } from 'pg-sql2';

// The objects change capture keeps in PostgreSQL, all in the `rowgate` schema. The functions are
// constant templates of this module (never built from input); install.ts compares their bodies
// with `pg_proc.prosrc` so that re-installing an unchanged capture rewrites nothing.

export const CAPTURE_SCHEMA = 'rowgate';
export const CHANNEL = 'rowgate_changes';
/** Prefix of every trigger capture installs (`rowgate_capture_insert`, `_update`, `_delete`). */
export const TRIGGER_PREFIX = 'rowgate_capture';

/**
 * `pg_advisory_xact_lock(LOCK_CLASS, n)`: 'rowg' in ASCII, then 1 = stamping, 2 = installing;
 * 3 is the WAL reader's session lock (one leader across gateways, wal-reader.ts).
 */
export const LOCK_CLASS = 0x726f7767;
export const STAMP_LOCK = 1;
export const INSTALL_LOCK = 2;
export const LEADER_LOCK = 3;

/** The publication WAL capture reads (per database, so one name serves every database). */
export const PUBLICATION = 'rowgate';
/** Prefix of the `pg_logical_emit_message` that marks the switch from triggers to WAL (wal-install.ts). */
export const SWITCH_PREFIX = 'rowgate.switch';

/** What the log's `op` may hold: row changes, a table emptied (TRUNCATE), a gap the WAL reader could not fill (RESYNC). */
export const LOG_OPS = ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'RESYNC'] as const;
const OP_CHECK = sql`CHECK (op IN (${sql.join(LOG_OPS.map((o) => sql.literal(o)), ', ')}))`;

export const TABLE_DDL: SQL[] = [
  sql`CREATE SCHEMA IF NOT EXISTS rowgate`,
  sql`CREATE TABLE IF NOT EXISTS rowgate.change_log (
  id bigserial PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  at timestamptz NOT NULL DEFAULT now(),
  tbl text NOT NULL,
  op text NOT NULL CONSTRAINT change_log_op_check ${OP_CHECK},
  key jsonb NOT NULL,
  old jsonb,
  new jsonb,
  pos bigint UNIQUE
)`,
  // The stamper's only scan: the few rows not stamped yet, in id order.
  sql`CREATE INDEX IF NOT EXISTS change_log_unstamped ON rowgate.change_log (id) WHERE pos IS NULL`,
];

/** The op check as pg_get_constraintdef prints it: a log made before TRUNCATE and RESYNC existed gets it replaced. */
export const OP_CHECK_DEF = `CHECK ((op = ANY (ARRAY[${LOG_OPS.map((o) => `'${o}'::text`).join(', ')}])))`;
export const REPLACE_OP_CHECK = sql`ALTER TABLE rowgate.change_log DROP CONSTRAINT IF EXISTS change_log_op_check, ADD CONSTRAINT change_log_op_check ${OP_CHECK}`;

/**
 * WAL capture's progress (wal-install.ts, wal-append.ts): `lsn` is the end of the last decoded
 * transaction already in the log (a replayed transaction at or below it is skipped), and
 * `awaiting`, while set, the switch marker before which every decoded transaction was already
 * captured by the triggers. One row, written only under the stamping lock.
 */
export const WAL_DDL: SQL[] = [
  sql`CREATE TABLE IF NOT EXISTS rowgate.wal_progress (
  slot text PRIMARY KEY,
  lsn pg_lsn NOT NULL,
  awaiting text
)`,
];

/**
 * Row-level capture, used for UPDATE (pairing old and new images of a statement-level UPDATE would
 * need a key, which tables without a primary key lack). Arguments: the table name, then the
 * primary-key columns (none: the whole row is the key). An UPDATE that changes nothing is not a
 * change. Rows are compared as text because some types (json, point) have no equality operator.
 * SECURITY DEFINER (with a fixed search_path): any role that may write a captured table gets its
 * change logged, without needing rights on the rowgate schema itself.
 */
const CAPTURE_ROW = sql`CREATE OR REPLACE FUNCTION rowgate.capture_row() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $rowgate$
DECLARE
  o jsonb;
  n jsonb;
  k jsonb;
BEGIN
  IF TG_OP = 'UPDATE' AND OLD::text = NEW::text THEN
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' THEN o := pg_catalog.to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN n := pg_catalog.to_jsonb(NEW); END IF;
  k := COALESCE(n, o);
  IF TG_NARGS > 1 THEN
    SELECT pg_catalog.jsonb_object_agg(c, k -> c) INTO k FROM pg_catalog.unnest(TG_ARGV[1:]) AS c;
  END IF;
  INSERT INTO rowgate.change_log (tbl, op, key, old, new) VALUES (TG_ARGV[0], TG_OP, k, o, n);
  PERFORM pg_catalog.pg_notify('rowgate_changes', '');
  RETURN NULL;
END
$rowgate$`;

/**
 * Statement-level capture of INSERT and DELETE through transition tables: one INSERT … SELECT
 * and one notification per statement, however many rows it wrote (README: measured 2-3x faster
 * than row-level on bulk writes). Same arguments as the row-level function.
 */
const CAPTURE_STATEMENT = sql`CREATE OR REPLACE FUNCTION rowgate.capture_statement() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $rowgate$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO rowgate.change_log (tbl, op, key, new)
    SELECT TG_ARGV[0], 'INSERT',
           CASE WHEN TG_NARGS > 1
                THEN (SELECT pg_catalog.jsonb_object_agg(c, r.j -> c) FROM pg_catalog.unnest(TG_ARGV[1:]) AS c)
                ELSE r.j END,
           r.j
      FROM (SELECT pg_catalog.to_jsonb(t) AS j FROM rowgate_new AS t) AS r;
  ELSE
    INSERT INTO rowgate.change_log (tbl, op, key, old)
    SELECT TG_ARGV[0], 'DELETE',
           CASE WHEN TG_NARGS > 1
                THEN (SELECT pg_catalog.jsonb_object_agg(c, r.j -> c) FROM pg_catalog.unnest(TG_ARGV[1:]) AS c)
                ELSE r.j END,
           r.j
      FROM (SELECT pg_catalog.to_jsonb(t) AS j FROM rowgate_old AS t) AS r;
  END IF;
  IF FOUND THEN
    PERFORM pg_catalog.pg_notify('rowgate_changes', '');
  END IF;
  RETURN NULL;
END
$rowgate$`;

/**
 * Assigns positions (README, "Positions"). Serialized by an advisory lock; every statement after
 * the lock takes a new snapshot (READ COMMITTED), so it sees every earlier stamping. The one
 * UPDATE reads the horizon, the cutoff, the current top and the batch from a single snapshot:
 *  - horizon: xmin of that snapshot; every transaction below it has finished.
 *  - cutoff: the smallest id of a visible, unstamped row at or above the horizon. Stamping stops
 *    there so that no row is stamped before a visible row with a smaller id (causal order).
 */
const STAMP = sql`CREATE OR REPLACE FUNCTION rowgate.stamp(max_rows integer, OUT stamped bigint, OUT first_pos bigint, OUT last_pos bigint)
  LANGUAGE plpgsql AS $rowgate$
BEGIN
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'rowgate.stamp() must run in READ COMMITTED, not %', pg_catalog.current_setting('transaction_isolation');
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(${sql.literal(LOCK_CLASS)}, ${sql.literal(STAMP_LOCK)});
  WITH horizon AS MATERIALIZED (
         SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) AS xmin
       ),
       cutoff AS MATERIALIZED (
         SELECT COALESCE(min(l.id), 9223372036854775807) AS id
           FROM rowgate.change_log AS l, horizon AS h
          WHERE l.pos IS NULL AND l.xid >= h.xmin
       ),
       top AS MATERIALIZED (
         SELECT COALESCE(max(l.pos), 0) AS pos FROM rowgate.change_log AS l
       ),
       batch AS MATERIALIZED (
         SELECT l.id, row_number() OVER (ORDER BY l.id) AS n
           FROM rowgate.change_log AS l, horizon AS h, cutoff AS c
          WHERE l.pos IS NULL AND l.xid < h.xmin AND l.id < c.id
          ORDER BY l.id
          LIMIT max_rows
       ),
       done AS (
         UPDATE rowgate.change_log AS l SET pos = top.pos + batch.n
           FROM top, batch
          WHERE l.id = batch.id
         RETURNING l.pos
       )
  SELECT count(*), min(done.pos), max(done.pos) INTO stamped, first_pos, last_pos FROM done;
END
$rowgate$`;

export const FUNCTIONS: { name: string; body: string; create: SQL }[] = [
  fn('capture_row', CAPTURE_ROW),
  fn('capture_statement', CAPTURE_STATEMENT),
  fn('stamp', STAMP),
];

function fn(name: string, create: SQL): { name: string; body: string; create: SQL } {
  // The body as pg_proc.prosrc will hold it: the text between the dollar quotes.
  const body = sql.compile(create).text.split('$rowgate$')[1] ?? '';
  return { name, body, create };
}

/** The triggers capture puts on each table; `type` is `pg_trigger.tgtype` (1 row, 4 insert, 8 delete, 16 update). */
export interface TriggerSpec {
  name: string;
  type: number;
  fn: 'capture_row' | 'capture_statement';
  oldTable: string | null;
  newTable: string | null;
}

export const TRIGGERS: TriggerSpec[] = [
  { name: `${TRIGGER_PREFIX}_insert`, type: 4, fn: 'capture_statement', oldTable: null, newTable: 'rowgate_new' },
  { name: `${TRIGGER_PREFIX}_update`, type: 16 | 1, fn: 'capture_row', oldTable: null, newTable: null },
  { name: `${TRIGGER_PREFIX}_delete`, type: 8, fn: 'capture_statement', oldTable: 'rowgate_old', newTable: null },
];

export function createTrigger(spec: TriggerSpec, schema: string, table: string, args: string[]): SQL {
  const target = sql.identifier(schema, table);
  const event = spec.type & 4 ? sql`INSERT` : spec.type & 8 ? sql`DELETE` : sql`UPDATE`;
  const referencing = spec.newTable
    ? sql` REFERENCING NEW TABLE AS ${sql.identifier(spec.newTable)}`
    : spec.oldTable
      ? sql` REFERENCING OLD TABLE AS ${sql.identifier(spec.oldTable)}`
      : sql.blank;
  const each = spec.type & 1 ? sql`ROW` : sql`STATEMENT`;
  // Trigger arguments are string constants in the DDL; a quoted identifier is one of the forms
  // the grammar accepts, and it arrives in TG_ARGV as the plain name.
  const argList = sql.join(args.map((a) => sql.identifier(a)), ', ');
  return sql`CREATE TRIGGER ${sql.identifier(spec.name)} AFTER ${event} ON ${target}${referencing} FOR EACH ${each} EXECUTE FUNCTION rowgate.${sql.identifier(spec.fn)}(${argList})`;
}

/** The channel `serve --watch` listens on for DDL (rowgate.notify_ddl, fired by the event trigger). */
export const DDL_CHANNEL = 'rowgate_ddl';
export const DDL_TRIGGER = 'rowgate_ddl';

/**
 * The commands that can change what the catalog (db/catalog.ts) holds of a schema. Trigger DDL is
 * left out: capture's own installs would wake every watching gateway for nothing.
 */
const DDL_TAGS = [
  'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'DROP TABLE',
  'CREATE VIEW', 'ALTER VIEW', 'DROP VIEW', 'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'DROP MATERIALIZED VIEW',
  'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'DROP FOREIGN TABLE',
  'CREATE FUNCTION', 'ALTER FUNCTION', 'DROP FUNCTION',
  'CREATE TYPE', 'ALTER TYPE', 'DROP TYPE', 'CREATE DOMAIN', 'ALTER DOMAIN', 'DROP DOMAIN',
  'CREATE INDEX', 'ALTER INDEX', 'DROP INDEX', 'DROP SCHEMA',
];

/**
 * Only a notification: an event trigger that fails would fail every DDL statement of the database.
 * Commands that created or altered nothing outside the `rowgate` schema stay quiet (capture's own
 * `CREATE TABLE IF NOT EXISTS rowgate.change_log`, run by every reload, would wake the gateway
 * again); drops report no objects here, so every DROP notifies.
 */
export const NOTIFY_DDL = sql`CREATE OR REPLACE FUNCTION rowgate.notify_ddl() RETURNS event_trigger
  LANGUAGE plpgsql AS $rowgate$
BEGIN
  IF starts_with(TG_TAG, 'DROP ') OR EXISTS (
       SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
        WHERE c.schema_name IS DISTINCT FROM ${sql.literal(CAPTURE_SCHEMA)}) THEN
    PERFORM pg_catalog.pg_notify(${sql.literal(DDL_CHANNEL)}, '');
  END IF;
END
$rowgate$`;

export const CREATE_DDL_TRIGGER = sql`CREATE EVENT TRIGGER ${sql.identifier(DDL_TRIGGER)} ON ddl_command_end
  WHEN TAG IN (${sql.join(DDL_TAGS.map((t) => sql.literal(t)), ', ')})
  EXECUTE FUNCTION rowgate.notify_ddl()`;
