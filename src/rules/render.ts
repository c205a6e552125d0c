import { sql, type SQL } from 'pg-sql2';
import type { TypeRef } from '../db/index.ts';
import type { BoolTest, Expr, SqlKeyword } from './expr.ts';

/** Where a rule's parameters come from when it is rendered. */
export interface ParamSource {
  /** SQL for parameter `name`, already cast to `type`. */
  param(name: string, type: TypeRef): SQL;
}

/** A table instance is referred to by a symbol (a fresh alias) or by a name the caller chose. */
export type Alias = symbol | string;

export function typeSql(type: TypeRef, typmods: number[] = []): SQL {
  const name = sql.identifier(type.schema, type.name);
  return typmods.length ? sql`${name}(${sql.join(typmods.map((m) => sql.literal(m)), ', ')})` : name;
}

// Operators and keywords are emitted from fixed templates, never from rule text, so the only
// text that reaches PostgreSQL verbatim is written in this file.
type Binary = (l: SQL, r: SQL) => SQL;
const BINARY: Record<string, Binary> = {
  '=': (l, r) => sql`(${l} = ${r})`,
  '<>': (l, r) => sql`(${l} <> ${r})`,
  '!=': (l, r) => sql`(${l} <> ${r})`,
  '<': (l, r) => sql`(${l} < ${r})`,
  '<=': (l, r) => sql`(${l} <= ${r})`,
  '>': (l, r) => sql`(${l} > ${r})`,
  '>=': (l, r) => sql`(${l} >= ${r})`,
  '~~': (l, r) => sql`(${l} LIKE ${r})`,
  '!~~': (l, r) => sql`(${l} NOT LIKE ${r})`,
  '~~*': (l, r) => sql`(${l} ILIKE ${r})`,
  '!~~*': (l, r) => sql`(${l} NOT ILIKE ${r})`,
  '~': (l, r) => sql`(${l} ~ ${r})`,
  '~*': (l, r) => sql`(${l} ~* ${r})`,
  '!~': (l, r) => sql`(${l} !~ ${r})`,
  '!~*': (l, r) => sql`(${l} !~* ${r})`,
  '+': (l, r) => sql`(${l} + ${r})`,
  '-': (l, r) => sql`(${l} - ${r})`,
  '*': (l, r) => sql`(${l} * ${r})`,
  '/': (l, r) => sql`(${l} / ${r})`,
  '%': (l, r) => sql`(${l} % ${r})`,
  '||': (l, r) => sql`(${l} || ${r})`,
  '@>': (l, r) => sql`(${l} @> ${r})`,
  '<@': (l, r) => sql`(${l} <@ ${r})`,
  '&&': (l, r) => sql`(${l} && ${r})`,
  '->': (l, r) => sql`(${l} -> ${r})`,
  '->>': (l, r) => sql`(${l} ->> ${r})`,
  '#>': (l, r) => sql`(${l} #> ${r})`,
  '#>>': (l, r) => sql`(${l} #>> ${r})`,
  '?': (l, r) => sql`(${l} ? ${r})`,
};
const PREFIX: Record<string, (r: SQL) => SQL> = {
  '-': (r) => sql`(- ${r})`,
  '+': (r) => sql`(+ ${r})`,
};
const BOOL_TEST: Record<BoolTest, (a: SQL) => SQL> = {
  'IS TRUE': (a) => sql`(${a} IS TRUE)`,
  'IS NOT TRUE': (a) => sql`(${a} IS NOT TRUE)`,
  'IS FALSE': (a) => sql`(${a} IS FALSE)`,
  'IS NOT FALSE': (a) => sql`(${a} IS NOT FALSE)`,
  'IS UNKNOWN': (a) => sql`(${a} IS UNKNOWN)`,
  'IS NOT UNKNOWN': (a) => sql`(${a} IS NOT UNKNOWN)`,
};
const KEYWORD: Record<SqlKeyword, SQL> = {
  CURRENT_DATE: sql`CURRENT_DATE`,
  CURRENT_TIMESTAMP: sql`CURRENT_TIMESTAMP`,
  LOCALTIMESTAMP: sql`LOCALTIMESTAMP`,
  CURRENT_TIME: sql`CURRENT_TIME`,
  LOCALTIME: sql`LOCALTIME`,
};

export function isSupportedOperator(op: string, prefix: boolean): boolean {
  return prefix ? op in PREFIX : op in BINARY;
}

export function and(parts: SQL[]): SQL {
  const kept = parts.filter((p) => p !== sql.true);
  if (kept.some((p) => p === sql.false)) return sql.false;
  if (kept.length === 0) return sql.true;
  return kept.length === 1 ? kept[0]! : sql`(${sql.join(kept, ' AND ')})`;
}

export function or(parts: SQL[]): SQL {
  const kept = parts.filter((p) => p !== sql.false);
  if (kept.some((p) => p === sql.true)) return sql.true;
  if (kept.length === 0) return sql.false;
  return kept.length === 1 ? kept[0]! : sql`(${sql.join(kept, ' OR ')})`;
}

/** Renders a rule condition with each table instance bound to an alias. */
export function renderExpr(e: Expr, aliases: Alias[], params: ParamSource): SQL {
  const r = (x: Expr): SQL => renderExpr(x, aliases, params);
  switch (e.k) {
    case 'col':
      return sql.identifier(aliases[e.inst]!, e.column);
    case 'param':
      return params.param(e.name, e.type);
    case 'literal':
      return typeof e.value === 'string' && e.numeric ? sql`${sql.literal(e.value)}::numeric` : sql.literal(e.value);
    case 'op':
      return e.left ? BINARY[e.op]!(r(e.left), r(e.right)) : PREFIX[e.op]!(r(e.right));
    case 'bool':
      if (e.op === 'NOT') return sql`(NOT ${r(e.args[0]!)})`;
      return sql`(${sql.join(e.args.map(r), e.op === 'AND' ? ' AND ' : ' OR ')})`;
    case 'in':
      return e.negated
        ? sql`(${r(e.left)} NOT IN (${sql.join(e.list.map(r), ', ')}))`
        : sql`(${r(e.left)} IN (${sql.join(e.list.map(r), ', ')}))`;
    case 'distinct':
      return e.negated ? sql`(${r(e.left)} IS NOT DISTINCT FROM ${r(e.right)})` : sql`(${r(e.left)} IS DISTINCT FROM ${r(e.right)})`;
    case 'between': {
      const sym = e.symmetric ? sql` SYMMETRIC` : sql.blank;
      return e.negated
        ? sql`(${r(e.arg)} NOT BETWEEN${sym} ${r(e.low)} AND ${r(e.high)})`
        : sql`(${r(e.arg)} BETWEEN${sym} ${r(e.low)} AND ${r(e.high)})`;
    }
    case 'nulltest':
      return e.negated ? sql`(${r(e.arg)} IS NOT NULL)` : sql`(${r(e.arg)} IS NULL)`;
    case 'booltest':
      return BOOL_TEST[e.test](r(e.arg));
    case 'cast':
      return sql`(${r(e.arg)})::${typeSql(e.type, e.typmods)}`;
    case 'func':
      return sql`${sql.identifier(e.schema, e.name)}(${sql.join(e.args.map(r), ', ')})`;
    case 'coalesce':
      return sql`COALESCE(${sql.join(e.args.map(r), ', ')})`;
    case 'keyword':
      return KEYWORD[e.text];
  }
}
