import { GraphQLError } from 'graphql';
import { sql, type SQL } from 'pg-sql2';
import { runSql, type Sql } from '../db/index.ts';
import { and, paramValue, type Alias, type Caller, type RuleSet } from '../rules/index.ts';
import type { TableModel } from '../schema/model.ts';
import { rowJson } from './query.ts';
import { badInput, bindValue, column, tableRef, visible, type Scope } from './scope.ts';
import type { SelectedField } from './selection.ts';
import { whereSql } from './where.ts';

/**
 * Mutations, checked against the write rules inside the caller's transaction (DESIGN §2 "Writes").
 * Written rows are identified by ctid, which is stable for the rest of the transaction: nobody
 * else can touch a row version this transaction wrote and has not committed.
 */

function forbidden(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'FORBIDDEN' } });
}

/** A rule set as a condition on `alias`; null rules mean "no such rule" and allow everything. */
function rulesSql(scope: Scope, model: TableModel, set: RuleSet | null, alias: Alias): SQL {
  if (!scope.params || set === null) return sql.true;
  return scope.api.rules.ruleSet(model.name, set, alias, scope.params);
}

function tidsMatch(alias: Alias, tids: string[]): SQL {
  return sql`${sql.identifier(alias, 'ctid')} = ANY(${sql.value(tids)}::text[]::tid[])`;
}

/** Fails the whole mutation when a written row does not satisfy `check` (NULL counts as a failure). */
async function enforce(db: Sql, scope: Scope, model: TableModel, set: RuleSet | null, tids: string[], what: string): Promise<void> {
  if (!scope.params || set === null || set === 'public' || tids.length === 0) return;
  const alias = Symbol(model.name);
  const [row] = await runSql<{ failed: number }>(
    db,
    sql`SELECT count(*)::int AS failed FROM ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} WHERE ${tidsMatch(alias, tids)} AND (${rulesSql(scope, model, set, alias)}) IS NOT TRUE`,
  );
  if ((row?.failed ?? 0) > 0) throw forbidden(`${what} on "${model.name}" is not allowed for ${row!.failed} row${row!.failed === 1 ? '' : 's'} by the table's check rules`);
}

/** The JSON of the written rows the caller can see after the write, in write order. */
async function returning(db: Sql, scope: Scope, model: TableModel, tids: string[], fields: SelectedField[]): Promise<unknown[]> {
  if (tids.length === 0 || fields.length === 0) return [];
  const alias = Symbol(model.name);
  const where = and([tidsMatch(alias, tids), visible(scope, model.name, alias)]);
  const rows = await runSql<{ tid: string; j: unknown }>(
    db,
    sql`SELECT ${sql.identifier(alias, 'ctid')}::text AS tid, ${rowJson(scope, model, alias, fields)} AS j FROM ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} WHERE ${where}`,
  );
  const byTid = new Map(rows.map((r) => [r.tid, r.j]));
  return tids.filter((t) => byTid.has(t)).map((t) => byTid.get(t));
}

/** A preset: `:name` takes the caller's parameter of that name, anything else is a constant. */
function presetValue(caller: Caller, preset: string): unknown {
  return preset.startsWith(':') ? paramValue(caller.identity, preset.slice(1)) : preset;
}

export interface MutationResult {
  affected_rows: number;
  returning: unknown[];
}

function ensureColumns(model: TableModel, given: Record<string, unknown>, allowed: string[], what: string): void {
  for (const key of Object.keys(given)) {
    if (!allowed.includes(key)) throw forbidden(`column "${key}" of "${model.name}" cannot be ${what}`);
  }
}

export async function insertRows(
  db: Sql,
  scope: Scope,
  caller: Caller,
  model: TableModel,
  objects: Record<string, unknown>[],
  onConflict: Record<string, unknown> | null | undefined,
  returningFields: SelectedField[],
): Promise<MutationResult> {
  const policy = model.policy.insert;
  if (!policy) throw forbidden(`inserting into "${model.name}" is not allowed`);
  if (objects.length === 0) return { affected_rows: 0, returning: [] };
  const presets = policy.set;
  const names = new Set<string>(Object.keys(presets));
  for (const object of objects) {
    if (!caller.admin) ensureColumns(model, object, policy.columns, 'inserted');
    for (const key of Object.keys(object)) if (!(key in presets)) names.add(key);
  }
  const cols = [...names].map((n) => column(model, n));
  const alias = Symbol(model.name);
  const rows = objects.map((object) => {
    const values = cols.map((col) => {
      if (col.name in presets) return bindValue(scope, col, presetValue(caller, presets[col.name]!));
      return col.name in object ? bindValue(scope, col, object[col.name]) : sql`DEFAULT`;
    });
    return sql`(${sql.join(values, ', ')})`;
  });
  const target = sql`${tableRef(scope, model.name)} AS ${sql.identifier(alias)}`;
  const columnList = cols.length ? sql`(${sql.join(cols.map((c) => sql.identifier(c.name)), ', ')})` : sql.blank;
  const values = cols.length ? sql`VALUES ${sql.join(rows, ', ')}` : sql`DEFAULT VALUES`;
  if (!cols.length && objects.length > 1) throw badInput('several objects with no columns cannot be inserted at once');
  const conflict = onConflict ? conflictSql(scope, caller, model, alias, onConflict) : sql.blank;
  const written = await runSql<{ tid: string; inserted: boolean }>(
    db,
    sql`INSERT INTO ${target} ${columnList} ${values}${conflict} RETURNING ${sql.identifier(alias, 'ctid')}::text AS tid, (${sql.identifier(alias, 'xmax')} = 0) AS inserted`,
  );
  const inserted = written.filter((w) => w.inserted).map((w) => w.tid);
  const updated = written.filter((w) => !w.inserted).map((w) => w.tid);
  await enforce(db, scope, model, policy.check, inserted, 'insert');
  await enforce(db, scope, model, model.policy.update?.check ?? null, updated, 'update');
  const tids = written.map((w) => w.tid);
  return { affected_rows: tids.length, returning: await returning(db, scope, model, tids, returningFields) };
}

/** `on_conflict`: an upsert updates only rows the caller could update through `update_t`. */
function conflictSql(scope: Scope, caller: Caller, model: TableModel, alias: Alias, onConflict: Record<string, unknown>): SQL {
  const constraint = String(onConflict['constraint']);
  if (!model.table.uniques.some((u) => u.name === constraint)) throw badInput(`unknown constraint ${constraint}`);
  // A column listed twice would be assigned twice, which PostgreSQL refuses.
  const updateColumns = [...new Set((onConflict['update_columns'] as string[] | undefined) ?? [])];
  const target = sql` ON CONFLICT ON CONSTRAINT ${sql.identifier(constraint)}`;
  if (updateColumns.length === 0) return sql`${target} DO NOTHING`;
  const update = model.policy.update;
  if (!update) throw forbidden(`updating "${model.name}" is not allowed, so on_conflict cannot update columns`);
  if (!caller.admin) ensureColumns(model, Object.fromEntries(updateColumns.map((c) => [c, true])), update.columns, 'updated');
  const sets = updateColumns.map((c) => sql`${sql.identifier(column(model, c).name)} = EXCLUDED.${sql.identifier(c)}`);
  const where = and([
    visible(scope, model.name, alias),
    rulesSql(scope, model, update.filter, alias),
    whereSql(scope, model, alias, onConflict['where'] as Record<string, unknown> | undefined),
  ]);
  return sql`${target} DO UPDATE SET ${sql.join(sets, ', ')} WHERE ${where}`;
}

export async function updateRows(
  db: Sql,
  scope: Scope,
  caller: Caller,
  model: TableModel,
  where: SQL | ((alias: Alias) => SQL),
  set: Record<string, unknown> | null | undefined,
  inc: Record<string, unknown> | null | undefined,
  returningFields: SelectedField[],
): Promise<MutationResult> {
  const policy = model.policy.update;
  if (!policy) throw forbidden(`updating "${model.name}" is not allowed`);
  const presets = policy.set;
  if (!caller.admin) {
    ensureColumns(model, set ?? {}, policy.columns, 'updated');
    ensureColumns(model, inc ?? {}, policy.columns, 'updated');
  }
  // One assignment per column: PostgreSQL refuses a column set twice (and which would win?).
  const both = Object.keys(set ?? {}).filter((name) => name in (inc ?? {}));
  if (both.length) throw badInput(`column "${both[0]}" is in both _set and _inc; give it in one of them`);
  const alias = Symbol(model.name);
  const assignments: SQL[] = [];
  for (const [name, value] of Object.entries(set ?? {})) {
    if (name in presets) continue;
    const col = column(model, name);
    assignments.push(sql`${sql.identifier(col.name)} = ${bindValue(scope, col, value)}`);
  }
  for (const [name, value] of Object.entries(inc ?? {})) {
    const col = column(model, name);
    if (!col.scalar.numeric) throw badInput(`_inc needs a numeric column; "${name}" is not`);
    assignments.push(sql`${sql.identifier(col.name)} = ${sql.identifier(alias, col.name)} + ${bindValue(scope, col, value)}`);
  }
  if (assignments.length === 0) throw badInput('nothing to update: give _set or _inc');
  for (const [name, preset] of Object.entries(presets)) {
    const col = column(model, name);
    assignments.push(sql`${sql.identifier(col.name)} = ${bindValue(scope, col, presetValue(caller, preset))}`);
  }
  const condition = and([
    typeof where === 'function' ? where(alias) : where,
    visible(scope, model.name, alias),
    rulesSql(scope, model, policy.filter, alias),
  ]);
  const written = await runSql<{ tid: string }>(
    db,
    sql`UPDATE ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} SET ${sql.join(assignments, ', ')} WHERE ${condition} RETURNING ${sql.identifier(alias, 'ctid')}::text AS tid`,
  );
  const tids = written.map((w) => w.tid);
  await enforce(db, scope, model, policy.check, tids, 'update');
  return { affected_rows: tids.length, returning: await returning(db, scope, model, tids, returningFields) };
}

export async function deleteRows(
  db: Sql,
  scope: Scope,
  model: TableModel,
  where: (alias: Alias) => SQL,
  returningFields: SelectedField[],
): Promise<MutationResult> {
  const rules = model.policy.delete;
  if (!rules) throw forbidden(`deleting from "${model.name}" is not allowed`);
  const alias = Symbol(model.name);
  const condition = and([where(alias), visible(scope, model.name, alias), rulesSql(scope, model, rules, alias)]);
  const deleted = Symbol('deleted');
  // Deleted rows were visible (the condition says so); their JSON is built from the returned images.
  const [row] = await runSql<{ affected: number; returning: unknown[] }>(
    db,
    sql`WITH ${sql.identifier(deleted)} AS (DELETE FROM ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} WHERE ${condition} RETURNING ${sql.identifier(alias)}.*)
        SELECT (SELECT count(*)::int FROM ${sql.identifier(deleted)}) AS affected,
               (SELECT coalesce(json_agg(${rowJson(scope, model, deleted, returningFields)}), '[]'::json) FROM ${sql.identifier(deleted)}) AS returning`,
  );
  return { affected_rows: row?.affected ?? 0, returning: row?.returning ?? [] };
}
