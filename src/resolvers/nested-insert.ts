import { GraphQLError } from 'graphql';
import { runSql, type Sql } from '../db/index.ts';
import type { Caller } from '../rules/index.ts';
import { nestedInsert, type Relationship, type TableModel } from '../schema/model.ts';
import { enforce, forbidden, insertPolicy, insertRows, insertSql, keyOf, returning, type Key, type Links, type MutationResult } from './mutate.ts';
import { badInput, tableModel, type Scope } from './scope.ts';
import type { SelectedField } from './selection.ts';

/**
 * Hasura's nested inserts: an `insert_t` object may carry relationship fields,
 * `{title: "x", author: {data: {…}, on_conflict}}` (object: the author row is inserted first and
 * the article's foreign key set from it) or `{name: "a", articles: {data: [{…}]}}` (array: the
 * author first, then each article with its foreign key set from the author). Each row is written
 * by its own table's insert rules (allowlist, presets, on_conflict) in its own statement, so each
 * written row maps to its input object; the foreign key columns nesting sets bypass the allowlist,
 * as in Hasura, but never a preset or a value the caller gave. Every table's check runs once all
 * the field's rows are in: any failure aborts the whole mutation. A nested row can only point at
 * a row this mutation inserted, or one its on_conflict updated (so one the caller may update):
 * an on_conflict that leaves the existing row alone writes no row, and linking then fails instead
 * of pointing at a row the caller never touched, as in Hasura.
 */

type InsertObject = Record<string, unknown>;
interface RelInsert {
  data: InsertObject | InsertObject[];
  on_conflict?: Record<string, unknown> | null;
}

/** One mutation field's writes: rows per table (checked at the end) and the count of all of them. */
interface Run {
  db: Sql;
  scope: Scope;
  caller: Caller;
  written: Map<TableModel, { inserted: Key[]; updated: Key[] }>;
  affected: number;
}

function carriesRelationships(model: TableModel, object: InsertObject): boolean {
  return model.relationships.some((r) => object[r.name] !== undefined && object[r.name] !== null);
}

/** An input object as its column values and its nested inserts, object relationships first. */
function split(scope: Scope, model: TableModel, object: InsertObject): { columns: InsertObject; objects: [Relationship, RelInsert][]; arrays: [Relationship, RelInsert][] } {
  const columns: InsertObject = {};
  const objects: [Relationship, RelInsert][] = [];
  const arrays: [Relationship, RelInsert][] = [];
  for (const [key, value] of Object.entries(object)) {
    const rel = model.relationships.find((r) => r.name === key);
    if (!rel) columns[key] = value;
    else if (value !== null && value !== undefined) {
      if (!nestedInsert(scope.api, model, rel)) throw forbidden(`"${model.name}.${key}" cannot be inserted through`);
      (rel.kind === 'object' ? objects : arrays).push([rel, value as RelInsert]);
    }
  }
  return { columns, objects, arrays };
}

/**
 * Inserts `object` into `model` with `links` (columns its parent sets), its object relationships'
 * rows before it and its array relationships' rows after it. Returns the written row's key and the
 * text of the `returned` columns, or null when its on_conflict wrote nothing.
 */
async function insertObject(run: Run, model: TableModel, object: InsertObject, onConflict: RelInsert['on_conflict'], links: Links, returned: string[], depth: number): Promise<{ key: Key; values: Links } | null> {
  const maxDepth = run.scope.api.maxDepth;
  if (depth > maxDepth) throw new GraphQLError(`the nested insert is more than ${maxDepth} levels deep (limits.maxDepth)`, { extensions: { code: 'LIMIT_EXCEEDED' } });
  const { columns, objects, arrays } = split(run.scope, model, object);
  const own: Links = { ...links };
  for (const [rel, nested] of objects) {
    const taken = rel.on.find(([mine]) => mine in own);
    if (taken) throw badInput(`object relationship "${rel.name}" of "${model.name}" would set column "${taken[0]}", which the parent insert already sets`);
    const target = tableModel(run.scope, rel.target);
    const row = await insertObject(run, target, nested.data as InsertObject, nested.on_conflict, {}, rel.on.map(([, theirs]) => theirs), depth + 1);
    if (!row) throw badInput(`cannot insert object relationship "${rel.name}" of "${model.name}": the insert into "${target.name}" wrote no row (its on_conflict left the existing row alone)`);
    for (const [mine, theirs] of rel.on) own[mine] = row.values[theirs] ?? null;
  }
  const needed = [...new Set([...returned, ...arrays.flatMap(([rel]) => rel.on.map(([mine]) => mine))])];
  const [row] = await runSql<Record<string, unknown> & { inserted: boolean }>(run.db, insertSql(run.scope, run.caller, model, [columns], onConflict, [own], needed));
  if (!row) {
    if (arrays.length) throw badInput(`cannot insert array relationship "${arrays[0]![0].name}" of "${model.name}": the insert into "${model.name}" wrote no row (its on_conflict left the existing row alone)`);
    return null;
  }
  const key = keyOf(model, row);
  let written = run.written.get(model);
  if (!written) run.written.set(model, (written = { inserted: [], updated: [] }));
  (row.inserted ? written.inserted : written.updated).push(key);
  run.affected += 1;
  const values: Links = Object.fromEntries(needed.map((name, i) => [name, row[`r${i}`] as string | null]));
  for (const [rel, nested] of arrays) {
    const target = tableModel(run.scope, rel.target);
    const childLinks: Links = Object.fromEntries(rel.on.map(([mine, theirs]) => [theirs, values[mine] ?? null]));
    for (const child of nested.data as InsertObject[]) await insertObject(run, target, child, nested.on_conflict, childLinks, [], depth + 1);
  }
  return { key, values };
}

/**
 * `insert_t` / `insert_t_one`: one statement for all objects when none nests (insertRows), else one
 * per row. `affected_rows` counts the rows of every level, `returning` the top-level ones visible.
 */
export async function insertObjects(
  db: Sql,
  scope: Scope,
  caller: Caller,
  model: TableModel,
  objects: InsertObject[],
  onConflict: RelInsert['on_conflict'],
  returningFields: SelectedField[],
): Promise<MutationResult> {
  if (!objects.some((o) => carriesRelationships(model, o))) return insertRows(db, scope, caller, model, objects, onConflict, returningFields);
  const run: Run = { db, scope, caller, written: new Map(), affected: 0 };
  const keys: Key[] = [];
  for (const object of objects) {
    const row = await insertObject(run, model, object, onConflict, {}, [], 1);
    if (row) keys.push(row.key);
  }
  // Checked once every row is in: a rule may read the rows nested with it (an article's check
  // reading its new author), and what commits is this final state.
  for (const [table, written] of run.written) {
    await enforce(db, scope, table, insertPolicy(table).check, written.inserted, 'insert');
    await enforce(db, scope, table, table.policy.update?.check ?? null, written.updated, 'update');
  }
  return { affected_rows: run.affected, returning: await returning(db, scope, model, keys, returningFields) };
}
