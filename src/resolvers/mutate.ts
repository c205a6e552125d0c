import { GraphQLError } from 'graphql';
import { sql, type SQL } from 'pg-sql2';
import { runSql, type Sql } from '../db/index.ts';
import { and, paramValue, typeSql, type Alias, type Caller, type RuleSet } from '../rules/index.ts';
import type { TableModel } from '../schema/model.ts';
import { rowJson } from './query.ts';
import { badInput, bindValue, column, tableRef, visible, type Scope } from './scope.ts';
import type { SelectedField } from './selection.ts';
import { writeWhere } from './where.ts';

/**
 * Mutations, checked against the write rules inside the caller's transaction (docs/rules.md, "Writes").
 * Written rows are found again by the primary key `RETURNING` gave, never by ctid: a trigger that
 * writes the row once more (an AFTER trigger touching it) moves it to a new ctid, and a check
 * looking at the old one would see nothing and pass. Mutation rules need a primary key (compile.ts).
 */

export function forbidden(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'FORBIDDEN' } });
}

/** A rule set as a condition on `alias`; null rules mean "no such rule" and allow everything. */
function rulesSql(scope: Scope, model: TableModel, set: RuleSet | null, alias: Alias): SQL {
  if (!scope.params || set === null) return sql.true;
  return scope.api.rules.ruleSet(model.name, set, alias, scope.params);
}

/** One written row's primary key, each column in its text form, in `model.primaryKey` order. */
export type Key = string[];

/** `RETURNING` list naming the written row's key: `alias.k::text AS k0, …`. */
function returnedKey(model: TableModel, alias: Alias): SQL {
  if (model.primaryKey.length === 0) throw new Error(`${model.name} has no primary key, so it has no mutations`);
  return sql.join(model.primaryKey.map((k, i) => sql`${sql.identifier(alias, k.name)}::text AS ${sql.identifier(`k${i}`)}`), ', ');
}

export function keyOf(model: TableModel, row: Record<string, unknown>): Key {
  return model.primaryKey.map((_, i) => row[`k${i}`] as string);
}

/**
 * The written keys as a relation `keys(k0, …, ord)` (ord: write order) and the condition joining
 * the table's row `alias` to it. Each key column is one bound array, cast back to the column's type.
 */
function writtenKeys(scope: Scope, model: TableModel, keys: Key[], alias: Alias): { from: SQL; ord: SQL; on: SQL; found: SQL } {
  const k = Symbol('written');
  const arrays = model.primaryKey.map((col, i) => sql`${scope.binder.textArray(keys.map((key) => key[i]!))}::${typeSql(col.type)}[]`);
  const names = model.primaryKey.map((_, i) => sql.identifier(`k${i}`));
  return {
    from: sql`unnest(${sql.join(arrays, ', ')}) WITH ORDINALITY AS ${sql.identifier(k)}(${sql.join(names, ', ')}, ord)`,
    ord: sql.identifier(k, 'ord'),
    on: and(model.primaryKey.map((col, i) => sql`${sql.identifier(alias, col.name)} = ${sql.identifier(k, `k${i}`)}`)),
    // Key columns are NOT NULL: a NULL one after the LEFT JOIN means the row was not found.
    found: sql`${sql.identifier(alias, model.primaryKey[0]!.name)} IS NOT NULL`,
  };
}

/**
 * Fails the whole mutation when a written row does not satisfy `check` (NULL counts as a failure),
 * or cannot be found again by its key (a trigger changed the key: nothing can be said of the row).
 */
export async function enforce(db: Sql, scope: Scope, model: TableModel, set: RuleSet | null, keys: Key[], what: string): Promise<void> {
  if (!scope.params || set === null || set === 'public' || keys.length === 0) return;
  const alias = Symbol(model.name);
  const written = writtenKeys(scope, model, keys, alias);
  const [row] = await runSql<{ failed: number }>(
    db,
    sql`SELECT count(*)::int AS failed FROM ${written.from} LEFT JOIN ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} ON ${written.on} WHERE NOT (${written.found}) OR (${rulesSql(scope, model, set, alias)}) IS NOT TRUE`,
  );
  if ((row?.failed ?? 0) > 0) throw forbidden(`${what} on "${model.name}" is not allowed for ${row!.failed} row${row!.failed === 1 ? '' : 's'} by the table's check rules`);
}

/** The JSON of the written rows the caller can see after the write, in write order. */
export async function returning(db: Sql, scope: Scope, model: TableModel, keys: Key[], fields: SelectedField[]): Promise<unknown[]> {
  if (keys.length === 0 || fields.length === 0) return [];
  const alias = Symbol(model.name);
  const written = writtenKeys(scope, model, keys, alias);
  const rows = await runSql<{ j: unknown }>(
    db,
    sql`SELECT ${rowJson(scope, model, alias, fields)} AS j FROM ${written.from} JOIN ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} ON ${written.on} WHERE ${visible(scope, model.name, alias)} ORDER BY ${written.ord}`,
  );
  return rows.map((r) => r.j);
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

export function insertPolicy(model: TableModel): NonNullable<TableModel['policy']['insert']> {
  const policy = model.policy.insert;
  if (!policy) throw forbidden(`inserting into "${model.name}" is not allowed`);
  return policy;
}

/**
 * Column values a nested insert sets (docs/hasura.md, "Nested inserts"): the foreign key columns of
 * a row linked to the row inserted before it, each in the text form `RETURNING` gave.
 */
export type Links = Record<string, string | null>;

/**
 * The INSERT (with its `on_conflict`) of `objects`, returning each written row's key (`k0`, …),
 * the text form of each column named in `returned` (`r0`, …) and whether the row was inserted
 * (`inserted`) or updated. `links[i]` are the columns nesting sets on `objects[i]`: outside the
 * column allowlist (as in Hasura), but never over a value the caller gave or a preset. Exported for
 * the plan tests.
 */
export function insertSql(
  scope: Scope,
  caller: Caller,
  model: TableModel,
  objects: Record<string, unknown>[],
  onConflict: Record<string, unknown> | null | undefined,
  links: Links[] = [],
  returned: string[] = [],
): SQL {
  const policy = insertPolicy(model);
  const presets = policy.set;
  const names = new Set<string>(Object.keys(presets));
  for (const [i, object] of objects.entries()) {
    if (!caller.admin) ensureColumns(model, object, policy.columns, 'inserted');
    for (const key of Object.keys(object)) if (!(key in presets)) names.add(key);
    for (const key of Object.keys(links[i] ?? {})) {
      if (key in presets) throw forbidden(`column "${key}" of "${model.name}" is set by the insert rules, so a nested insert cannot set it`);
      if (key in object) throw badInput(`column "${key}" of "${model.name}" is set by the nested insert; do not give it as well`);
      names.add(key);
    }
  }
  const cols = [...names].map((n) => column(model, n));
  const alias = Symbol(model.name);
  const rows = objects.map((object, i) => {
    const link = links[i] ?? {};
    const values = cols.map((col) => {
      if (col.name in presets) return bindValue(scope, col, presetValue(caller, presets[col.name]!));
      // A text form PostgreSQL wrote, cast back to the column's type (json included, unlike bindValue).
      if (col.name in link) return sql`${scope.binder.text(link[col.name] ?? null)}::${typeSql(col.type)}`;
      return col.name in object ? bindValue(scope, col, object[col.name]) : sql`DEFAULT`;
    });
    return sql`(${sql.join(values, ', ')})`;
  });
  const target = sql`${tableRef(scope, model.name)} AS ${sql.identifier(alias)}`;
  const columnList = cols.length ? sql`(${sql.join(cols.map((c) => sql.identifier(c.name)), ', ')})` : sql.blank;
  const values = cols.length ? sql`VALUES ${sql.join(rows, ', ')}` : sql`DEFAULT VALUES`;
  if (!cols.length && objects.length > 1) throw badInput('several objects with no columns cannot be inserted at once');
  const conflict = onConflict ? conflictSql(scope, caller, model, alias, onConflict) : sql.blank;
  // xmax tells an upsert's inserted rows from its updated ones; a view has no system columns, and
  // no constraint to conflict on, so each row it returns was inserted.
  const inserted = model.table.kind === 'view' ? sql`true` : sql`(${sql.identifier(alias, 'xmax')} = 0)`;
  const extra = returned.map((name, i) => sql`, ${sql.identifier(alias, column(model, name).name)}::text AS ${sql.identifier(`r${i}`)}`);
  return sql`INSERT INTO ${target} ${columnList} ${values}${conflict} RETURNING ${returnedKey(model, alias)}${sql.join(extra, '')}, ${inserted} AS inserted`;
}

/**
 * `on_conflict`: the conflict update is the update `update_t` makes of that row. It touches only
 * rows the caller could update (visibility and the update filter), assigns the update presets, and
 * the caller's `where` is tested only on rows proven visible first (`writeWhere`); the update check
 * runs on the written rows afterwards. No `update_columns` means DO NOTHING, as in Hasura.
 */
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
  const preset = updateColumns.find((c) => c in update.set);
  if (preset !== undefined) throw forbidden(`column "${preset}" of "${model.name}" is set by the update rules, so it cannot be in update_columns`);
  const sets = [
    ...updateColumns.map((c) => sql`${sql.identifier(column(model, c).name)} = EXCLUDED.${sql.identifier(c)}`),
    ...presetAssignments(scope, caller, model, update.set),
  ];
  const where = and([
    visible(scope, model.name, alias),
    rulesSql(scope, model, update.filter, alias),
    writeWhere(scope, model, onConflict['where'] as Record<string, unknown> | undefined)(alias),
  ]);
  return sql`${target} DO UPDATE SET ${sql.join(sets, ', ')} WHERE ${where}`;
}

/** `col = <preset>` for each preset of the update rules. */
function presetAssignments(scope: Scope, caller: Caller, model: TableModel, presets: Record<string, string>): SQL[] {
  return Object.entries(presets).map(([name, preset]) => {
    const col = column(model, name);
    return sql`${sql.identifier(col.name)} = ${bindValue(scope, col, presetValue(caller, preset))}`;
  });
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
  assignments.push(...presetAssignments(scope, caller, model, presets));
  const condition = and([
    typeof where === 'function' ? where(alias) : where,
    visible(scope, model.name, alias),
    rulesSql(scope, model, policy.filter, alias),
  ]);
  const written = await runSql<Record<string, unknown>>(
    db,
    sql`UPDATE ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} SET ${sql.join(assignments, ', ')} WHERE ${condition} RETURNING ${returnedKey(model, alias)}`,
  );
  const keys = written.map((w) => keyOf(model, w));
  await enforce(db, scope, model, policy.check, keys, 'update');
  return { affected_rows: keys.length, returning: await returning(db, scope, model, keys, returningFields) };
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
