import { sql, type SQL } from 'pg-sql2';
import { and, or, typeSql, type Alias } from '../rules/index.ts';
import type { ColumnModel, TableModel } from '../schema/model.ts';
import { castsToString, OPERATOR_BY_NAME, STRING_SCALAR, type Operator } from '../schema/operators.ts';
import { checkedValue, jsonOperand, likePattern, textOperand } from './input.ts';
import { badInput, bindValue, fenced, joinCondition, needsFence, tableModel, tableRef, toText, visible, visibleAnd, type Scope } from './scope.ts';

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
      const col = model.readable.find((c) => c.name === key);
      if (col) {
        parts.push(comparison(scope, col, sql.identifier(alias, col.name), value as Record<string, unknown> | null));
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
 * The `where` of `update_t`/`delete_t` (and of an upsert's `on_conflict`) as a condition on the
 * written table's row `alias`: the rows it selects are found among the visible rows first (see
 * `fenced`) and named by primary key (mutation rules need one, compile.ts).
 */
export function writeWhere(scope: Scope, model: TableModel, exp: BoolExp | null | undefined): (alias: Alias) => SQL {
  return (alias) => {
    if (!needsFence(scope, model, exp)) return whereSql(scope, model, alias, exp);
    // A view's declared key may not be unique: naming rows by it could reach a hidden row that
    // shares a visible one's key. The filter is tested on the row itself, after its visibility.
    if (model.table.primaryKey.length === 0) return visibleAnd(visible(scope, model.name, alias), whereSql(scope, model, alias, exp));
    const row = Symbol(model.name);
    const rows = fenced(scope, model, exp, sql`${tableRef(scope, model.name)} AS ${sql.identifier(row)}`, row, visible(scope, model.name, row));
    const keys = (a: Alias) => sql.join(model.primaryKey.map((k) => sql.identifier(a, k.name)), ', ');
    return sql`(${keys(alias)}) IN (SELECT ${keys(rows.alias)} FROM ${rows.from} WHERE ${whereSql(scope, model, rows.alias, exp)})`;
  };
}

function list(value: unknown): BoolExp[] {
  if (value === null) return [];
  return (Array.isArray(value) ? value : [value]) as BoolExp[];
}

const TEXT_TYPE = { schema: 'pg_catalog', name: 'text', category: 'S', enumLabels: [] };

/** The column as its text form, for `_cast: {String: …}`. */
function asTextColumn(col: ColumnModel): ColumnModel {
  return { ...col, type: TEXT_TYPE, scalar: STRING_SCALAR };
}

/** The operand of `op`, checked (input.ts) and bound, cast to what the operator compares it with. */
function operand(scope: Scope, col: ColumnModel, op: Operator, value: unknown, what: string): SQL {
  const many = (Array.isArray(value) ? value : [value]) as unknown[];
  switch (op.check) {
    case 'value':
      if (op.input === 'scalars') {
        const values = many.map((v) => toText(checkedValue(col, v, what)) as string | null);
        return sql`${scope.binder.textArray(values)}::${typeSql(col.type)}[]`;
      }
      return bindValue(scope, col, checkedValue(col, value, what));
    case 'like':
      return scope.binder.text(likePattern(value, what));
    case 'json':
      return sql`${scope.binder.text(jsonOperand(value, what))}::jsonb`;
    default:
      if (op.input === 'Strings') return sql`${scope.binder.textArray(many.map((v) => textOperand(v, what)))}::text[]`;
      return scope.binder.text(textOperand(value, what));
  }
}

function comparison(scope: Scope, col: ColumnModel, ref: SQL, exp: Record<string, unknown> | null): SQL {
  if (!exp) return sql.true;
  const parts: SQL[] = [];
  for (const [name, value] of Object.entries(exp)) {
    if (value === undefined) continue;
    if (name === '_is_null') {
      if (value === null) continue;
      parts.push(value ? sql`(${ref} IS NULL)` : sql`(${ref} IS NOT NULL)`);
      continue;
    }
    if (name === '_cast' && castsToString(col.scalar)) {
      const casts = (value ?? {}) as Record<string, Record<string, unknown> | null>;
      parts.push(comparison(scope, asTextColumn(col), sql`${ref}::text`, casts['String'] ?? null));
      continue;
    }
    // Hasura once read `_eq: null` as "no condition", which silently returned every row.
    if (value === null) throw badInput(`${col.name}.${name} cannot be null; use _is_null`);
    const op = OPERATOR_BY_NAME.get(name);
    if (!op || !op.applies(col.scalar)) throw badInput(`unknown comparison ${name}`);
    // Pattern operators compare the text form (a column of a type GraphQL shows as String).
    const column = op.check === 'like' || op.check === 'regex' || op.check === 'similar' ? sql`${ref}::text` : ref;
    parts.push(sql`(${op.sql(column, operand(scope, col, op, value, `${col.name}.${name}`))})`);
  }
  return and(parts);
}
