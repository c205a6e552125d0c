import { sql, type SQL } from 'pg-sql2';
import { and, type Alias } from '../rules/index.ts';
import { AGGREGATE_BY_NAME } from '../schema/aggregates.ts';
import type { TableModel } from '../schema/model.ts';
import { badInput, joinCondition, tableModel, tableRef, visible, type Scope } from './scope.ts';

const DIRECTIONS: Record<string, SQL> = {
  asc: sql`ASC NULLS LAST`,
  asc_nulls_last: sql`ASC NULLS LAST`,
  asc_nulls_first: sql`ASC NULLS FIRST`,
  desc: sql`DESC NULLS FIRST`,
  desc_nulls_first: sql`DESC NULLS FIRST`,
  desc_nulls_last: sql`DESC NULLS LAST`,
};

/**
 * `order_by: [t_order_by!]` as ORDER BY terms on row `alias`. Ordering by a relationship reads
 * the related row only if the caller can see it (a hidden one sorts as NULL), and ordering by an
 * array relationship's aggregate (count, max, avg, …) takes only visible rows, so a sort order reveals nothing hidden.
 */
export function orderTerms(scope: Scope, model: TableModel, alias: Alias, orderBy: unknown): SQL[] {
  if (orderBy === null || orderBy === undefined) return [];
  const items = (Array.isArray(orderBy) ? orderBy : [orderBy]) as Record<string, unknown>[];
  return items.flatMap((item) => terms(scope, model, alias, item, (x) => x));
}

function direction(value: unknown): SQL {
  const dir = DIRECTIONS[String(value)];
  if (!dir) throw badInput(`unknown order direction ${String(value)}`);
  return dir;
}

function terms(scope: Scope, model: TableModel, alias: Alias, item: Record<string, unknown>, wrap: (expr: SQL) => SQL): SQL[] {
  const out: SQL[] = [];
  for (const [key, value] of Object.entries(item ?? {})) {
    if (value === null || value === undefined) continue;
    const col = model.readable.find((c) => c.name === key);
    if (col) {
      out.push(sql`${wrap(sql.identifier(alias, col.name))} ${direction(value)}`);
      continue;
    }
    const aggregate = key.endsWith('_aggregate') ? model.relationships.find((r) => r.kind === 'array' && `${r.name}_aggregate` === key) : undefined;
    if (aggregate) {
      const other = Symbol(aggregate.target);
      const target = tableModel(scope, aggregate.target);
      const where = and([joinCondition(aggregate, alias, other), visible(scope, aggregate.target, other)]);
      // Over the visible related rows only, so the order reveals nothing hidden; wrapped like a
      // column: through an object relationship the aggregate is taken inside its subquery.
      const over = (expr: SQL) => wrap(sql`(SELECT ${expr} FROM ${tableRef(scope, aggregate.target)} AS ${sql.identifier(other)} WHERE ${where})`);
      for (const [fnName, spec] of Object.entries((value ?? {}) as Record<string, unknown>)) {
        if (spec === null || spec === undefined) continue;
        if (fnName === 'count') {
          out.push(sql`${over(sql`count(*)`)} ${direction(spec)}`);
          continue;
        }
        const fn = AGGREGATE_BY_NAME.get(fnName);
        if (!fn) throw badInput(`${key} cannot be ordered by ${fnName}`);
        for (const [colName, dir] of Object.entries(spec as Record<string, unknown>)) {
          if (dir === null || dir === undefined) continue;
          const col = target.readable.find((c) => c.name === colName && fn.applies(c.scalar));
          if (!col) throw badInput(`${key}.${fnName} has no column "${colName}"`);
          out.push(sql`${over(fn.sql(sql.identifier(other, col.name), col.type.name))} ${direction(dir)}`);
        }
      }
      continue;
    }
    const rel = model.relationships.find((r) => r.kind === 'object' && r.name === key);
    if (!rel) throw badInput(`unknown order_by field "${key}"`);
    const target = tableModel(scope, rel.target);
    const other = Symbol(rel.target);
    const where = and([joinCondition(rel, alias, other), visible(scope, rel.target, other)]);
    out.push(
      ...terms(scope, target, other, value as Record<string, unknown>, (expr) =>
        wrap(sql`(SELECT ${expr} FROM ${tableRef(scope, rel.target)} AS ${sql.identifier(other)} WHERE ${where})`),
      ),
    );
  }
  return out;
}
