import { sql, type SQL } from 'pg-sql2';
import type { Sql } from '../db/index.ts';
import { runSql } from '../db/index.ts';
import { LOCK_CLASS } from '../db/changes/schema.ts';
import { COMMENT_PREFIX, commentText, ddlText, parseComment, POLICY_NAMES, type PolicyPlan, type TablePlan } from './build.ts';
import { HELPERS, HELPER_SCHEMA } from './helpers.ts';

/** `pg_advisory_xact_lock(LOCK_CLASS, POLICY_LOCK)` serializes installs and removals. */
export const POLICY_LOCK = 3;

/** The tables on which `rowgate policies --apply` enabled row-level security (so `--drop` disables it only there). */
const STATE_TABLE = sql`rowgate.policy_tables`;

const PREAMBLE: SQL[] = [
  sql`CREATE SCHEMA IF NOT EXISTS rowgate`,
  sql`CREATE TABLE IF NOT EXISTS ${STATE_TABLE} (schema_name text NOT NULL, table_name text NOT NULL, PRIMARY KEY (schema_name, table_name))`,
];

export interface PolicyReport {
  /** Tables whose policies and functions were created or replaced. */
  installed: string[];
  /** Tables whose policies were already as wanted. */
  unchanged: string[];
  /** Tables no longer listed, whose policies and functions were dropped. */
  removed: string[];
  /** Tables on which row-level security was enabled by this run. */
  enabled: string[];
  /** Tables on which row-level security was disabled by this run. */
  disabled: string[];
  /** Every statement run, in order (values, if any, are not part of the text). */
  statements: string[];
}

function tableStatements(plan: PolicyPlan, t: TablePlan): string[] {
  const target = sql.identifier(plan.schema, t.table);
  const comment = sql.value(commentText({ schema: plan.schema, table: t.table, fingerprint: t.fingerprint }));
  const out: string[] = [];
  for (const f of t.functions) {
    out.push(f.create);
    out.push(ddlText(sql`COMMENT ON FUNCTION ${sql.identifier(HELPER_SCHEMA, f.name)}(${f.signature}) IS ${comment}`));
  }
  for (const p of t.policies) {
    out.push(p.create);
    out.push(ddlText(sql`COMMENT ON POLICY ${sql.identifier(p.name)} ON ${target} IS ${comment}`));
  }
  return out;
}

/**
 * The SQL `--apply` runs on a database without any of it, as one script (psql-ready). Nothing
 * is spliced in: the caller is read from the settings when a policy runs.
 */
export function policyScript(plan: PolicyPlan): string {
  const out: string[] = [
    '-- rowgate policies: native row-level security equivalent to the configured rules.',
    "-- The caller is read at query time: set_config('rowgate.sender', <sender>, true) and",
    "-- set_config('rowgate.claims', <JSON object of claims>, true); an unset or empty sender matches nothing.",
    '-- Table owners and superusers (and BYPASSRLS roles) are not subject to these policies.',
    '-- `rowgate policies --apply` runs this idempotently (only what changed), `--drop` removes it.',
    'BEGIN;',
  ];
  const emit = (q: SQL | string) => out.push(`${typeof q === 'string' ? q : ddlText(q)};`);
  for (const q of PREAMBLE) emit(q);
  for (const h of HELPERS) emit(h.create);
  for (const t of plan.tables) {
    out.push('', `-- ${plan.schema}.${t.table}`);
    for (const name of POLICY_NAMES) emit(sql`DROP POLICY IF EXISTS ${sql.identifier(name)} ON ${sql.identifier(plan.schema, t.table)}`);
    for (const q of tableStatements(plan, t)) emit(q);
    emit(sql`ALTER TABLE ${sql.identifier(plan.schema, t.table)} ENABLE ROW LEVEL SECURITY`);
  }
  for (const s of plan.skipped) out.push('', `-- skipped ${plan.schema}.${s.table}: ${s.reason}`);
  out.push('COMMIT;');
  return out.join('\n');
}

interface ExistingFunction {
  table: string;
  name: string;
  /** Argument types as [schema, name]. */
  types: [string, string][];
  fingerprint: string;
}

interface Existing {
  policies: { table: string; name: string; comment: string | null }[];
  functions: ExistingFunction[];
}

async function readExisting(run: (q: SQL) => Promise<Record<string, unknown>[]>, schema: string): Promise<Existing> {
  const policies = await run(sql`
    SELECT c.relname::text AS table, p.polname::text AS name, pg_catalog.obj_description(p.oid, 'pg_policy') AS comment
      FROM pg_catalog.pg_policy AS p
      JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
      JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname = ${sql.value(schema)} AND p.polname::text = ANY(${sql.value([...POLICY_NAMES])}::text[])`);
  const functions = await run(sql`
    SELECT p.proname::text AS name, pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
           ARRAY(SELECT ARRAY[tn.nspname::text, t.typname::text]
                   FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(oid, i)
                   JOIN pg_catalog.pg_type AS t ON t.oid = a.oid
                   JOIN pg_catalog.pg_namespace AS tn ON tn.oid = t.typnamespace
                  ORDER BY a.i) AS types
      FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname = ${sql.value(HELPER_SCHEMA)}`);
  return {
    policies: policies.map((p) => ({ table: String(p['table']), name: String(p['name']), comment: (p['comment'] as string | null) ?? null })),
    functions: functions.flatMap((f) => {
      const c = parseComment((f['comment'] as string | null) ?? null);
      return c && c.schema === schema ? [{ table: c.table, name: String(f['name']), types: f['types'] as [string, string][], fingerprint: c.fingerprint }] : [];
    }),
  };
}

/** `DROP FUNCTION` by name and argument types, each written as an identifier. */
const dropFunction = (f: ExistingFunction): SQL =>
  sql`DROP FUNCTION ${sql.identifier(HELPER_SCHEMA, f.name)}(${sql.join(f.types.map(([schema, name]) => sql.identifier(schema, name)), ', ')})`;

/**
 * Installs the plan's policies idempotently, in one transaction: a table whose generated objects
 * all carry its current fingerprint is not touched (no lock taken on it); any other listed table
 * gets its rowgate policies and functions dropped and recreated; tables no longer listed lose
 * theirs (and row-level security, if this command enabled it). Helper functions are rewritten
 * only when their body changed.
 */
export async function applyPolicies(db: Sql, plan: PolicyPlan): Promise<PolicyReport> {
  return db.begin(async (tx) => {
    const report: PolicyReport = { installed: [], unchanged: [], removed: [], enabled: [], disabled: [], statements: [] };
    const run = async (q: SQL | string): Promise<void> => {
      const text = typeof q === 'string' ? q : ddlText(q);
      report.statements.push(text);
      await tx.unsafe(text);
    };
    const read = (q: SQL) => runSql(tx as unknown as Sql, q);
    await read(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(POLICY_LOCK))}::text::int4)`);
    const hasState = await read(sql`SELECT to_regclass('rowgate.policy_tables') IS NOT NULL AS ok`);
    if (!hasState[0]?.['ok']) for (const q of PREAMBLE) await run(q);

    const bodies = new Map(
      (await read(sql`
        SELECT p.proname::text AS name, p.prosrc AS body FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = ${sql.value(HELPER_SCHEMA)}`)).map((r) => [String(r['name']), String(r['body'])]),
    );
    for (const h of HELPERS) if (bodies.get(h.name) !== h.body) await run(h.create);

    const existing = await readExisting(read, plan.schema);
    const schema = plan.schema;
    const target = (table: string) => sql.identifier(schema, table);
    const dropTable = async (table: string) => {
      for (const p of existing.policies.filter((p) => p.table === table)) await run(sql`DROP POLICY ${sql.identifier(p.name)} ON ${target(table)}`);
      for (const f of existing.functions.filter((f) => f.table === table)) await run(dropFunction(f));
    };

    const listed = new Set(plan.tables.map((t) => t.table));
    for (const t of plan.tables) {
      const want = commentText({ schema, table: t.table, fingerprint: t.fingerprint });
      const policies = existing.policies.filter((p) => p.table === t.table);
      const functions = existing.functions.filter((f) => f.table === t.table);
      const current =
        policies.length === t.policies.length &&
        t.policies.every((p) => policies.some((e) => e.name === p.name && e.comment === want)) &&
        functions.length === t.functions.length &&
        functions.every((f) => f.fingerprint === t.fingerprint);
      if (current) {
        report.unchanged.push(t.table);
      } else {
        await dropTable(t.table);
        for (const q of tableStatements(plan, t)) await run(q);
        report.installed.push(t.table);
      }
    }

    const rls = await read(sql`
      SELECT c.relname::text AS table, c.relrowsecurity AS on
        FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
       WHERE n.nspname = ${sql.value(schema)} AND c.relkind IN ('r', 'p')`);
    const rlsOn = new Map(rls.map((r) => [String(r['table']), r['on'] === true]));
    const recorded = new Set(
      (await read(sql`SELECT table_name FROM ${STATE_TABLE} WHERE schema_name = ${sql.value(schema)}`)).map((r) => String(r['table_name'])),
    );
    for (const t of plan.tables) {
      if (rlsOn.get(t.table)) continue;
      await run(sql`ALTER TABLE ${target(t.table)} ENABLE ROW LEVEL SECURITY`);
      await read(sql`INSERT INTO ${STATE_TABLE} VALUES (${sql.value(schema)}, ${sql.value(t.table)}) ON CONFLICT DO NOTHING`);
      report.enabled.push(t.table);
    }

    const stale = new Set([...existing.policies.map((p) => p.table), ...existing.functions.map((f) => f.table), ...recorded].filter((t) => !listed.has(t)));
    for (const table of [...stale].sort()) {
      await dropTable(table);
      if (recorded.has(table)) {
        if (rlsOn.get(table)) {
          await run(sql`ALTER TABLE ${target(table)} DISABLE ROW LEVEL SECURITY`);
          report.disabled.push(table);
        }
        await read(sql`DELETE FROM ${STATE_TABLE} WHERE schema_name = ${sql.value(schema)} AND table_name = ${sql.value(table)}`);
      }
      if (existing.policies.some((p) => p.table === table) || existing.functions.some((f) => f.table === table)) report.removed.push(table);
    }
    return report;
  });
}

/**
 * Removes every rowgate policy and generated function of `schema`, disables row-level security
 * where `--apply` enabled it, and drops the helpers once no schema uses them. Needs no valid rules.
 */
export async function dropPolicies(db: Sql, schema: string): Promise<PolicyReport> {
  return db.begin(async (tx) => {
    const report: PolicyReport = { installed: [], unchanged: [], removed: [], enabled: [], disabled: [], statements: [] };
    const run = async (q: SQL | string): Promise<void> => {
      const text = typeof q === 'string' ? q : ddlText(q);
      report.statements.push(text);
      await tx.unsafe(text);
    };
    const read = (q: SQL) => runSql(tx as unknown as Sql, q);
    await read(sql`SELECT pg_advisory_xact_lock(${sql.value(String(LOCK_CLASS))}::text::int4, ${sql.value(String(POLICY_LOCK))}::text::int4)`);
    const hasSchema = await read(sql`SELECT to_regnamespace('rowgate') IS NOT NULL AS ok`);
    if (!hasSchema[0]?.['ok']) return report;
    const existing = await readExisting(read, schema);
    const tables = new Set<string>();
    for (const p of existing.policies) {
      await run(sql`DROP POLICY ${sql.identifier(p.name)} ON ${sql.identifier(schema, p.table)}`);
      tables.add(p.table);
    }
    for (const f of existing.functions) {
      await run(dropFunction(f));
      tables.add(f.table);
    }
    report.removed.push(...[...tables].sort());

    const hasState = await read(sql`SELECT to_regclass('rowgate.policy_tables') IS NOT NULL AS ok`);
    if (hasState[0]?.['ok']) {
      const recorded = await read(sql`
        SELECT s.table_name, c.relrowsecurity AS on
          FROM ${STATE_TABLE} AS s
          LEFT JOIN (pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace)
            ON n.nspname = s.schema_name AND c.relname = s.table_name
         WHERE s.schema_name = ${sql.value(schema)}
         ORDER BY 1`);
      for (const r of recorded) {
        const table = String(r['table_name']);
        if (r['on'] === true) {
          await run(sql`ALTER TABLE ${sql.identifier(schema, table)} DISABLE ROW LEVEL SECURITY`);
          report.disabled.push(table);
        }
      }
      await read(sql`DELETE FROM ${STATE_TABLE} WHERE schema_name = ${sql.value(schema)}`);
    }

    // Other schemas' policies may still use the helpers and the state table.
    const others = await read(sql`
      SELECT 1 FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
       WHERE n.nspname = ${sql.value(HELPER_SCHEMA)} AND starts_with(pg_catalog.obj_description(p.oid, 'pg_proc'), ${sql.value(COMMENT_PREFIX)})
       LIMIT 1`);
    const stateLeft = hasState[0]?.['ok'] ? await read(sql`SELECT 1 FROM ${STATE_TABLE} LIMIT 1`) : [];
    const policiesLeft = await read(sql`
      SELECT 1 FROM pg_catalog.pg_policy AS p
       WHERE p.polname::text = ANY(${sql.value([...POLICY_NAMES])}::text[]) LIMIT 1`);
    if (others.length === 0 && stateLeft.length === 0 && policiesLeft.length === 0) {
      for (const h of [...HELPERS].reverse()) await run(`DROP FUNCTION IF EXISTS rowgate.${h.name}(${h.args})`);
      if (hasState[0]?.['ok']) await run(sql`DROP TABLE ${STATE_TABLE}`);
    }
    return report;
  });
}
