import type { ApiModel, TableModel } from '../schema/index.ts';
import type { CompiledRules } from '../rules/index.ts';
import type { SelectedField } from '../resolvers/index.ts';

/**
 * Every table whose changes can change a subscription's result: the tables its selection, filters
 * and orderings read, and every table the visibility rules of those tables read (an `admin` row
 * inserted makes accounts appear). A change elsewhere never re-evaluates the subscription.
 */
export function tablesRead(api: ApiModel, model: TableModel, field: SelectedField): Set<string> {
  const direct = new Set<string>();
  const visitFilter = (m: TableModel, exp: unknown): void => {
    if (!exp || typeof exp !== 'object') return;
    if (Array.isArray(exp)) return exp.forEach((e) => visitFilter(m, e));
    for (const [key, value] of Object.entries(exp)) {
      if (key === '_and' || key === '_or' || key === '_not') visitFilter(m, value);
      const rel = m.relationships.find((r) => r.name === key || `${r.name}_aggregate` === key);
      if (rel) {
        direct.add(rel.target);
        visitFilter(api.tables.get(rel.target)!, value);
      }
    }
  };
  const visit = (m: TableModel, f: SelectedField): void => {
    direct.add(m.name);
    visitFilter(m, f.args['where']);
    visitFilter(m, f.args['order_by']);
    for (const child of f.children) {
      const rel = m.relationships.find((r) => r.name === child.name || `${r.name}_aggregate` === child.name);
      if (rel) visit(api.tables.get(rel.target)!, child);
      // Aggregate and mutation-response wrappers (aggregate, nodes, returning) stay on this table.
      else if (child.children.length) visit(m, child);
    }
  };
  visit(model, field);
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

/**
 * Whether a change to a row of the root table can only affect subscribers for whom that row (its old
 * or its new image) matches: true when the root table appears nowhere else in the subscription —
 * not in nested selections, filters or orderings, and not in its own rules (a self-join makes one
 * row's visibility depend on others). Then a commit touching only that table re-evaluates just the
 * subscribers whose filter and visibility match the changed rows, instead of all of them.
 */
export function rowTargetable(api: ApiModel, model: TableModel, field: SelectedField): boolean {
  if (readsItself(api.rules, model.name)) return false;
  let again = false;
  const note = (m: TableModel) => {
    if (m.name === model.name) again = true;
  };
  const visitFilter = (m: TableModel, exp: unknown): void => {
    if (!exp || typeof exp !== 'object') return;
    if (Array.isArray(exp)) return exp.forEach((e) => visitFilter(m, e));
    for (const [key, value] of Object.entries(exp)) {
      if (key === '_and' || key === '_or' || key === '_not') visitFilter(m, value);
      const rel = m.relationships.find((r) => r.name === key || `${r.name}_aggregate` === key);
      if (rel) {
        const target = api.tables.get(rel.target)!;
        note(target);
        visitFilter(target, value);
      }
    }
  };
  const visit = (m: TableModel, f: SelectedField): void => {
    visitFilter(m, f.args['where']);
    visitFilter(m, f.args['order_by']);
    for (const child of f.children) {
      const rel = m.relationships.find((r) => r.name === child.name || `${r.name}_aggregate` === child.name);
      if (rel) {
        const target = api.tables.get(rel.target)!;
        note(target);
        visit(target, child);
      } else if (child.children.length) visit(m, child);
    }
  };
  visit(model, field);
  return !again;
}
