import { GraphQLError } from 'graphql';
import { runSql, type Sql } from '../db/index.ts';
import type { Caller } from '../rules/index.ts';
import { nestedInsert, type Relationship, type TableModel } from '../schema/model.ts';
import { enforce, forbidden, insertPolicy, insertSql, keyOf, returning, type Key, type Links, type MutationResult } from './mutate.ts';
import { badInput, tableModel, type Scope } from './scope.ts';
import type { SelectedField } from './selection.ts';

/**
 * `insert_t` / `insert_t_one`, with Hasura's nested inserts: an object may carry relationship
 * fields, `{title: "x", author: {data: {…}, on_conflict}}` (object: the author row is inserted
 * first and the article's foreign key set from it) or `{name: "a", articles: {data: [{…}]}}`
 * (array: the author first, then its articles with their foreign key set from it). Each row is
 * written by its own table's insert rules (allowlist, presets, on_conflict); the foreign key
 * columns nesting sets bypass the allowlist, as in Hasura, but never a preset or a value the
 * caller gave. A row that nests is written by a statement of its own, so the row it links to is
 * known; consecutive rows that nest nothing share one. Every table's check runs once all the
 * field's rows are in, and any failure aborts the whole mutation.
 *
 * A nested row can only point at a row this mutation inserted or one its on_conflict updated
 * (so one the caller may update): an on_conflict that leaves the existing row alone writes no
 * row, and linking to it then fails, as in Hasura, instead of pointing at a row the caller never
 * touched.
 */

type InsertObject = Record<string, unknown>;
interface RelInsert {
  data: InsertObject | InsertObject[];
  on_conflict?: Record<string, unknown> | null;
}
type OnConflict = RelInsert['on_conflict'];
type WrittenRow = Record<string, unknown> & { inserted: boolean };

/** One mutation field's writes: the rows per table (checked at the end) and their count. */
interface Run {
  db: Sql;
  scope: Scope;
  caller: Caller;
  written: Map<TableModel, { inserted: Key[]; updated: Key[] }>;
  affected: number;
}

function record(run: Run, model: TableModel, row: WrittenRow): Key {
  const key = keyOf(model, row);
  let written = run.written.get(model);
  if (!written) run.written.set(model, (written = { inserted: [], updated: [] }));
  (row.inserted ? written.inserted : written.updated).push(key);
  run.affected += 1;
  return key;
}

function checkDepth(run: Run, depth: number): void {
  const maxDepth = run.scope.api.maxDepth;
  if (depth > maxDepth) throw new GraphQLError(`the nested insert is more than ${maxDepth} levels deep (limits.maxDepth)`, { extensions: { code: 'LIMIT_EXCEEDED' } });
}

/** Whether the object names a relationship (even as null: `split` drops it, never as a column). */
function nests(model: TableModel, object: InsertObject): boolean {
  return model.relationships.some((r) => r.name in object);
}

/** An input object as its column values and its nested inserts. */
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
 * Inserts `objects` into `model`, each with `links` (the columns their parent sets), and returns
 * the written rows' keys in order.
 */
async function insertAll(run: Run, model: TableModel, objects: InsertObject[], onConflict: OnConflict, links: Links, depth: number): Promise<Key[]> {
  checkDepth(run, depth);
  const keys: Key[] = [];
  let plain: InsertObject[] = [];
  const flush = async () => {
    if (plain.length === 0) return;
    const rows = await runSql<WrittenRow>(run.db, insertSql(run.scope, run.caller, model, plain, onConflict, plain.map(() => links)));
    for (const row of rows) keys.push(record(run, model, row));
    plain = [];
  };
  for (const object of objects) {
    if (!nests(model, object)) {
      plain.push(object);
      continue;
    }
    await flush();
    const row = await insertObject(run, model, object, onConflict, links, [], depth);
    if (row) keys.push(row.key);
  }
  await flush();
  return keys;
}

/**
 * Inserts `object` into `model` with `links`: its object relationships' rows before it, its array
 * relationships' rows after it. Returns the written row's key and the text of its `returned`
 * columns, or null when its on_conflict wrote nothing.
 */
async function insertObject(run: Run, model: TableModel, object: InsertObject, onConflict: OnConflict, links: Links, returned: string[], depth: number): Promise<{ key: Key; values: Links } | null> {
  checkDepth(run, depth);
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
  const [row] = await runSql<WrittenRow>(run.db, insertSql(run.scope, run.caller, model, [columns], onConflict, [own], needed));
  if (!row) {
    if (arrays.length) throw badInput(`cannot insert array relationship "${arrays[0]![0].name}" of "${model.name}": the insert into "${model.name}" wrote no row (its on_conflict left the existing row alone)`);
    return null;
  }
  const key = record(run, model, row);
  const values: Links = Object.fromEntries(needed.map((name, i) => [name, row[`r${i}`] as string | null]));
  for (const [rel, nested] of arrays) {
    const childLinks: Links = Object.fromEntries(rel.on.map(([mine, theirs]) => [theirs, values[mine] ?? null]));
    await insertAll(run, tableModel(run.scope, rel.target), nested.data as InsertObject[], nested.on_conflict, childLinks, depth + 1);
  }
  return { key, values };
}

/** `affected_rows` counts the rows of every level; `returning` the visible top-level ones. */
export async function insertObjects(
  db: Sql,
  scope: Scope,
  caller: Caller,
  model: TableModel,
  objects: InsertObject[],
  onConflict: OnConflict,
  returningFields: SelectedField[],
): Promise<MutationResult> {
  insertPolicy(model);
  const run: Run = { db, scope, caller, written: new Map(), affected: 0 };
  const keys = await insertAll(run, model, objects, onConflict, {}, 1);
  // Checked once every row is in: a rule may read the rows nested with it (an article's check
  // reading its new author), and what commits is this final state.
  for (const [table, written] of run.written) {
    await enforce(db, scope, table, insertPolicy(table).check, written.inserted, 'insert');
    await enforce(db, scope, table, table.policy.update?.check ?? null, written.updated, 'update');
  }
  return { affected_rows: run.affected, returning: await returning(db, scope, model, keys, returningFields) };
}
