import type { ApiModel, Relationship, TableModel } from '../schema/index.ts';
import type { CompiledRules } from '../rules/index.ts';
import type { SelectedField } from '../resolvers/index.ts';

const relationshipOf = (m: TableModel, name: string): Relationship | undefined =>
  m.relationships.find((r) => r.name === name || `${r.name}_aggregate` === name);

/**
 * Walks a subscription: `selected` for every table of the selection (with the relationships from the
 * root to it), `filtered` for every table a filter or an ordering reads through a relationship.
 * Wrappers (aggregate, nodes) stay on the same table.
 */
function walk(api: ApiModel, model: TableModel, field: SelectedField, selected: (m: TableModel, path: Relationship[]) => void, filtered: (table: string) => void): void {
  const visitFilter = (m: TableModel, exp: unknown): void => {
    if (!exp || typeof exp !== 'object') return;
    if (Array.isArray(exp)) return exp.forEach((e) => visitFilter(m, e));
    for (const [key, value] of Object.entries(exp)) {
      if (key === '_and' || key === '_or' || key === '_not') visitFilter(m, value);
      const rel = relationshipOf(m, key);
      if (rel) {
        filtered(rel.target);
        visitFilter(api.tables.get(rel.target)!, value);
      }
    }
  };
  const visitChildren = (m: TableModel, f: SelectedField, path: Relationship[]): void => {
    for (const child of f.children) {
      const rel = relationshipOf(m, child.name);
      if (rel) visit(api.tables.get(rel.target)!, child, [...path, rel]);
      else if (child.children.length) visitChildren(m, child, path);
    }
  };
  const visit = (m: TableModel, f: SelectedField, path: Relationship[]): void => {
    selected(m, path);
    visitFilter(m, f.args['where']);
    visitFilter(m, f.args['order_by']);
    visitChildren(m, f, path);
  };
  visit(model, field, []);
}

/**
 * Every table whose changes can change a subscription's result: the tables its selection, filters
 * and orderings read, and every table the visibility rules of those tables read (an `admin` row
 * inserted makes accounts appear). A change elsewhere never re-evaluates the subscription.
 */
export function tablesRead(api: ApiModel, model: TableModel, field: SelectedField): Set<string> {
  const direct = new Set<string>();
  walk(api, model, field, (m) => direct.add(m.name), (t) => direct.add(t));
  const all = new Set<string>();
  for (const table of direct) for (const t of api.rules.readsTables(table)) all.add(t);
  return all;
}

/** Whether the visibility of `table` reads `table` again (a self-join, or through another table). */
function readsItself(rules: CompiledRules, table: string): boolean {
  const set = rules.policy(table)?.select;
  if (!set || set === 'public') return false;
  return set.some(({ rule }) => rule.instances.some((inst, i) => i !== rule.target && (inst.table === table || rules.readsTables(inst.table).has(table))));
}

/** A table of the selection and how it hangs off the root: the relationships from the root to it. */
export interface Target {
  table: string;
  path: Relationship[];
}

/**
 * The tables of a subscription whose changed rows can be mapped to the subscribers they affect:
 * the root table (a changed row affects the subscribers its image matches), and each table selected
 * through relationships below it (a changed row affects the subscribers whose matching root rows it
 * hangs off). A table qualifies when it appears once in the selection, in no filter or ordering, and
 * no visibility on its way from the root reads it (nor does its own: a self-join makes one row's
 * visibility depend on others). Commits touching only such tables re-evaluate just the affected
 * subscribers; any other commit re-evaluates every subscriber of the shape. Null: root not targetable.
 */
export function targets(api: ApiModel, model: TableModel, field: SelectedField): Target[] | null {
  const rules = api.rules;
  const seen = new Map<string, number>();
  const filtered = new Set<string>();
  const found: Target[] = [];
  walk(
    api,
    model,
    field,
    (m, path) => {
      seen.set(m.name, (seen.get(m.name) ?? 0) + 1);
      found.push({ table: m.name, path });
    },
    (t) => filtered.add(t),
  );
  const ok = (t: Target): boolean => {
    if (seen.get(t.table) !== 1 || filtered.has(t.table) || readsItself(rules, t.table)) return false;
    // No visibility from the root down to it may read it (the root's, and each table's on the way).
    const above = [model.name, ...t.path.slice(0, -1).map((r) => r.target)];
    return above.every((table) => table === t.table || !rules.readsTables(table).has(t.table));
  };
  if (!ok(found[0]!)) return null;
  return found.filter(ok);
}
