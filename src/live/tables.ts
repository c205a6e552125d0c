import type { ApiModel, Relationship, TableModel } from '../schema/index.ts';
import type { CompiledRules } from '../rules/index.ts';
import type { SelectedField } from '../resolvers/index.ts';

const relationshipOf = (m: TableModel, name: string): Relationship | undefined =>
  m.relationships.find((r) => r.name === name || `${r.name}_aggregate` === name);

/**
 * Walks a subscription: `selected` for every table of the selection, `filtered` for every table a
 * filter or an ordering reads through a relationship. Wrappers (aggregate, nodes) stay on the same table.
 */
function walk(api: ApiModel, model: TableModel, field: SelectedField, selected: (m: TableModel) => void, filtered: (table: string) => void): void {
  const visitFilter = (m: TableModel, exp: unknown) => walkFilter(api, m, exp, filtered);
  const visitChildren = (m: TableModel, f: SelectedField): void => {
    for (const child of f.children) {
      const rel = relationshipOf(m, child.name);
      if (rel) visit(api.tables.get(rel.target)!, child);
      else if (child.children.length) visitChildren(m, child);
    }
  };
  const visit = (m: TableModel, f: SelectedField): void => {
    selected(m);
    visitFilter(m, f.args['where']);
    visitFilter(m, f.args['order_by']);
    visitChildren(m, f);
  };
  visit(model, field);
}

/** Every table a filter (or ordering) on `model` reads through a relationship, at any depth. */
function walkFilter(api: ApiModel, model: TableModel, exp: unknown, filtered: (table: string) => void): void {
  if (!exp || typeof exp !== 'object') return;
  if (Array.isArray(exp)) return exp.forEach((e) => walkFilter(api, model, e, filtered));
  for (const [key, value] of Object.entries(exp)) {
    if (key === '_and' || key === '_or' || key === '_not') walkFilter(api, model, value, filtered);
    const rel = relationshipOf(model, key);
    if (rel) {
      filtered(rel.target);
      walkFilter(api, api.tables.get(rel.target)!, value, filtered);
    }
  }
}

/**
 * The tables a change stream's `where` reads through relationships, with every table their rules
 * read: a change of one can move rows of the stream's table into or out of the filter.
 */
export function filterTables(api: ApiModel, model: TableModel, where: unknown): Set<string> {
  const direct = new Set<string>();
  walkFilter(api, model, where, (t) => direct.add(t));
  const all = new Set<string>();
  for (const table of direct) for (const t of api.rules.readsTables(table)) all.add(t);
  return all;
}

/**
 * Every table whose changes can change a subscription's result: the tables its selection, filters
 * and orderings read, and every table the visibility rules of those tables read (an `admin` row
 * inserted makes accounts appear), with the base tables of the views among them. A change elsewhere never re-evaluates the subscription.
 */
export function tablesRead(api: ApiModel, model: TableModel, field: SelectedField): Set<string> {
  const all = new Set<string>();
  // A view changes when a table it reads does: its base tables are what the change log holds.
  for (const t of relationsRead(api, model, field)) for (const b of api.reads(t)) all.add(b);
  return all;
}

/**
 * The tables and views a subscription's selection, filters, orderings and their rules name (views
 * by their own name, not their base tables): what a reload compares to decide whether it must end.
 */
export function relationsRead(api: ApiModel, model: TableModel, field: SelectedField): Set<string> {
  const direct = new Set<string>();
  walk(api, model, field, (m) => direct.add(m.name), (t) => direct.add(t));
  const all = new Set<string>();
  for (const table of direct) for (const t of api.rules.readsTables(table)) all.add(t);
  return all;
}

/** Whether the visibility of `table` reads `table` again (a self-join, or through another table). */
export function readsItself(rules: CompiledRules, table: string): boolean {
  const set = rules.policy(table)?.select;
  if (!set || set === 'public') return false;
  return set.some(({ rule }) => rule.instances.some((inst, i) => i !== rule.target && (inst.table === table || rules.readsTables(inst.table).has(table))));
}

/** Key types whose text is the same in a change-log image, in a result and in a bound value (keys.ts and row-index.ts compare them as text). */
const TEXT_STABLE = new Set(['int2', 'int4', 'int8', 'text', 'varchar', 'uuid']);

/** Whether values of `type` are compared as text (TEXT_STABLE, built-in types only). */
export function textStable(type: { schema: string; name: string }): boolean {
  return type.schema === 'pg_catalog' && TEXT_STABLE.has(type.name);
}

/** Whether the relationship's columns can be compared as text, and the root's side is a column the result can carry. */
function comparableKeys(root: TableModel, child: TableModel, rel: Relationship): boolean {
  const stable = (cols: { name: string; type: { schema: string; name: string } }[], name: string) => {
    const col = cols.find((c) => c.name === name);
    return !!col && textStable(col.type);
  };
  return rel.on.every(([rootColumn, childColumn]) => stable(root.columns, rootColumn) && stable(child.table.columns, childColumn));
}

/** A table right below the root whose changes are mapped to the root rows they hang from. */
export interface ChildTarget {
  /** The relationship from the root table to it (array or object). */
  rel: Relationship;
}

/**
 * Which commits of a live query can be narrowed to the subscribers they concern (the rest re-evaluate
 * every subscriber of the shape).
 *
 * - `root`: a changed row of the root table can only change the result of a subscriber for whom its
 *   old or new image matches. `'filter'`: visibility AND the subscription's filter. `'visible'`:
 *   visibility alone, because a nested table's rules read the root table: a row the filter excludes
 *   can still decide which nested rows are visible (every other table's rules read the root table
 *   through the root table's visibility for the same caller, so a row visible to nobody decides
 *   nothing). null: root commits re-evaluate everyone (the root table appears again in the
 *   subscription, or its visibility reads itself, so one row decides about others).
 * - `children`: tables selected right below the root (once) whose rows decide nothing but their own
 *   place in the result: no filter or ordering reads them, and no rules but their own do. A changed
 *   row of such a table can only change the result of subscribers whose result holds a root row it is
 *   related to, which the engine keeps track of (keys.ts).
 */
export function targeting(api: ApiModel, model: TableModel, field: SelectedField, kind: 'list' | 'byPk' | 'aggregate'): { root: 'filter' | 'visible' | null; children: Map<string, ChildTarget> } {
  const root = model.name;
  const seen = new Map<string, number>();
  const filtered = new Set<string>();
  walk(
    api,
    model,
    field,
    (m) => seen.set(m.name, (seen.get(m.name) ?? 0) + 1),
    (t) => filtered.add(t),
  );
  const read = [...new Set([...seen.keys(), ...filtered])];
  const readBy = (table: string, besides: string) => read.some((t) => t !== besides && api.rules.readsTables(t).has(table));
  const rootMode = readsItself(api.rules, root) || seen.get(root) !== 1 || filtered.has(root) ? null : readBy(root, root) ? 'visible' : 'filter';

  const children = new Map<string, ChildTarget>();
  // The root row's own fields: those of a list or _by_pk row, or of an aggregate's `nodes`.
  const rowFields = kind === 'aggregate' ? field.children.filter((c) => c.name === 'nodes').flatMap((c) => c.children) : field.children;
  for (const f of rowFields) {
    const rel = model.relationships.find((r) => r.name === f.name || (r.kind === 'array' && `${r.name}_aggregate` === f.name));
    if (!rel || rel.target === root) continue;
    const t = rel.target;
    if (seen.get(t) !== 1 || filtered.has(t) || readsItself(api.rules, t) || readBy(t, t) || !comparableKeys(model, api.tables.get(t)!, rel)) continue;
    children.set(t, { rel });
  }
  return { root: rootMode, children };
}
