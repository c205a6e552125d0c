import { sql, type SQL } from 'pg-sql2';
import { and, or, typeSql, type Alias } from '../rules/index.ts';
import type { ColumnModel, TableModel } from '../schema/model.ts';
import { badInput, bindValue, joinCondition, tableModel, tableRef, toText, visible, type Scope } from './scope.ts';

type BoolExp = Record<string, unknown>;

/**
 * A Hasura `t_bool_exp` as a condition on row `alias` of `model`. A relationship filter is an
 * EXISTS over the related rows the caller can see, so a filter can never test a hidden row.
 */
export function whereSql(scope: Scope, model: TableModel, alias: Alias, exp: BoolExp | null | undefined): SQL {
  if (!exp) return sql.true;
  const parts: SQL[] = [];
  for (const [key, value] of Object.entries(exp)) {
    if (value === undefined) continue;
    if (key === '_and') parts.push(and(list(value).map((e) => whereSql(scope, model, alias, e))));
    else if (key === '_or') parts.push(or(list(value).map((e) => whereSql(scope, model, alias, e))));
    else if (key === '_not') parts.push(value === null ? sql.true : sql`(NOT ${whereSql(scope, model, alias, value as BoolExp)})`);
    else {
      const col = model.columns.find((c) => c.name === key);
      if (col) {
        parts.push(comparison(scope, col, alias, value as Record<string, unknown> | null));
        continue;
      }
      const rel = model.relationships.find((r) => r.name === key);
      if (!rel) throw badInput(`unknown filter field "${key}"`);
      const target = tableModel(scope, rel.target);
      const other = Symbol(rel.target);
      const condition = and([joinCondition(rel, alias, other), visible(scope, rel.target, other), whereSql(scope, target, other, value as BoolExp)]);
      parts.push(sql`EXISTS (SELECT 1 FROM ${tableRef(scope, rel.target)} AS ${sql.identifier(other)} WHERE ${condition})`);
    }
  }
  return and(parts);
}

function list(value: unknown): BoolExp[] {
  if (value === null) return [];
  return (Array.isArray(value) ? value : [value]) as BoolExp[];
}

type Compare = (c: SQL, v: SQL) => SQL;
const OPERATORS: Record<string, Compare> = {
  _eq: (c, v) => sql`${c} = ${v}`,
  _neq: (c, v) => sql`${c} <> ${v}`,
  _gt: (c, v) => sql`${c} > ${v}`,
  _gte: (c, v) => sql`${c} >= ${v}`,
  _lt: (c, v) => sql`${c} < ${v}`,
  _lte: (c, v) => sql`${c} <= ${v}`,
  _like: (c, v) => sql`${c} LIKE ${v}`,
  _nlike: (c, v) => sql`${c} NOT LIKE ${v}`,
  _ilike: (c, v) => sql`${c} ILIKE ${v}`,
  _nilike: (c, v) => sql`${c} NOT ILIKE ${v}`,
};

function comparison(scope: Scope, col: ColumnModel, alias: Alias, exp: Record<string, unknown> | null): SQL {
  if (!exp) return sql.true;
  const ref = sql.identifier(alias, col.name);
  const parts: SQL[] = [];
  for (const [op, value] of Object.entries(exp)) {
    if (value === undefined) continue;
    if (op === '_is_null') {
      if (value === null) continue;
      parts.push(value ? sql`(${ref} IS NULL)` : sql`(${ref} IS NOT NULL)`);
      continue;
    }
    // Hasura once read `_eq: null` as "no condition", which silently returned every row.
    if (value === null) throw badInput(`${col.name}.${op} cannot be null; use _is_null`);
    if (op === '_in' || op === '_nin') {
      const values = Array.isArray(value) ? value : [value];
      const array = sql`${scope.binder.textArray(values.map((v) => toText(v) as string | null))}::${typeSql(col.type)}[]`;
      parts.push(op === '_in' ? sql`(${ref} = ANY(${array}))` : sql`(${ref} <> ALL(${array}))`);
      continue;
    }
    const compare = OPERATORS[op];
    if (!compare) throw badInput(`unknown comparison ${op}`);
    const text = op.endsWith('like') ? sql`${ref}::text` : ref;
    parts.push(sql`(${compare(text, op.endsWith('like') ? scope.binder.text(String(value)) : bindValue(scope, col, value))})`);
  }
  return and(parts);
}
