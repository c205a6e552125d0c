import { sql, type SQL } from 'pg-sql2';
import { and, or, typeSql, type Alias } from '../rules/index.ts';
import type { ColumnModel, TableModel } from '../schema/model.ts';
import { checkedValue, likePattern } from './input.ts';
import { badInput, bindValue, fenced, joinCondition, needsFence, tableModel, tableRef, toText, visible, type Scope } from './scope.ts';

type BoolExp = Record<string, unknown>;

/**
 * A Hasura `t_bool_exp` as a condition on row `alias` of `model`. A relationship filter is an
 * EXISTS over the related rows the caller can see, and its own condition is tested only on rows
 * already proven visible (`fenced`), so a filter can never test a hidden row. Every value is
 * checked first (input.ts): no comparison built here can raise an error on some rows only.
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
      const related = and([joinCondition(rel, alias, other), visible(scope, rel.target, other)]);
      const rows = fenced(scope, target, value, sql`${tableRef(scope, rel.target)} AS ${sql.identifier(other)}`, other, related);
      parts.push(sql`EXISTS (SELECT 1 FROM ${rows.from} WHERE ${and([rows.visibility, whereSql(scope, target, rows.alias, value as BoolExp)])})`);
    }
  }
  return and(parts);
}

/**
 * The `where` of `update_t`/`delete_t` as a condition on the written table's row `alias`: the rows
 * it selects are found among the visible rows first (see `fenced`) and named by primary key (by
 * ctid, which is stable within one statement, for a table without one).
 */
export function writeWhere(scope: Scope, model: TableModel, exp: BoolExp | null | undefined): (alias: Alias) => SQL {
  return (alias) => {
    if (!needsFence(scope, model, exp)) return whereSql(scope, model, alias, exp);
    const row = Symbol(model.name);
    const key = model.primaryKey.length ? model.primaryKey.map((k) => k.name) : ['ctid'];
    const rows = fenced(scope, model, exp, sql`${tableRef(scope, model.name)} AS ${sql.identifier(row)}`, row, visible(scope, model.name, row));
    const keys = (a: Alias) => sql.join(key.map((k) => sql.identifier(a, k)), ', ');
    // `SELECT row.*` has no ctid: carry it under a name no column can clash with.
    const from = model.primaryKey.length
      ? rows.from
      : sql`(SELECT ${sql.identifier(row, 'ctid')} AS ${sql.identifier('ctid')}, ${sql.identifier(row)}.* FROM ${tableRef(scope, model.name)} AS ${sql.identifier(row)} WHERE ${visible(scope, model.name, row)} OFFSET 0) AS ${sql.identifier(rows.alias)}`;
    return sql`(${keys(alias)}) IN (SELECT ${keys(rows.alias)} FROM ${from} WHERE ${whereSql(scope, model, rows.alias, exp)})`;
  };
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
    const what = `${col.name}.${op}`;
    if (op === '_in' || op === '_nin') {
      const values = (Array.isArray(value) ? value : [value]).map((v) => checkedValue(col, v, what));
      const array = sql`${scope.binder.textArray(values.map((v) => toText(v) as string | null))}::${typeSql(col.type)}[]`;
      parts.push(op === '_in' ? sql`(${ref} = ANY(${array}))` : sql`(${ref} <> ALL(${array}))`);
      continue;
    }
    const compare = OPERATORS[op];
    if (!compare) throw badInput(`unknown comparison ${op}`);
    if (op.endsWith('like')) parts.push(sql`(${compare(sql`${ref}::text`, scope.binder.text(likePattern(value, what)))})`);
    else parts.push(sql`(${compare(ref, bindValue(scope, col, checkedValue(col, value, what)))})`);
  }
  return and(parts);
}
