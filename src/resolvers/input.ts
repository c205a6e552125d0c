import { sql, type SQL } from 'pg-sql2';
import { runSql, type Sql, type TypeRef } from '../db/index.ts';
import { coerceParam, isBindableType, typeSql } from '../rules/index.ts';
import type { ApiModel, ColumnModel, TableModel } from '../schema/model.ts';
import { badInput } from './scope.ts';
import type { SelectedField } from './selection.ts';

/**
 * A caller's values, checked before any row is read. An error PostgreSQL raises while it tests
 * a row (a LIKE pattern ending in its escape character, a cast out of range) happens only when
 * some row reaches the test, so it would tell the caller that such a row exists: every value
 * must be refused here, the same way whatever the data, or be unable to fail in PostgreSQL.
 */

function jsonColumn(col: ColumnModel): boolean {
  return !col.scalar.list && (col.scalar.name === 'json' || col.scalar.name === 'jsonb');
}

/** Whether rowgate can decide in JS that PostgreSQL accepts a value for this column's type. */
function checkedHere(col: ColumnModel): boolean {
  return jsonColumn(col) || (!col.scalar.list && isBindableType(col.type));
}

/**
 * A comparison value for `col`, as the text PostgreSQL will cast: refused with BAD_USER_INPUT
 * when it does not convert (an int2 column compared with 40000, a NUL in text). Types checked
 * only by PostgreSQL (inet, interval, arrays …) pass unchanged here and are cast once, apart
 * from any row, by `verifyInputs` before the statement runs.
 */
export function checkedValue(col: ColumnModel, value: unknown, what: string): unknown {
  if (value === null || value === undefined || !checkedHere(col) || jsonColumn(col)) return value;
  const text = coerceParam(value, col.type);
  if (text === null) throw badInput(`${what}: ${describe(value)} is not a valid ${col.type.name}`);
  return text;
}

/**
 * A LIKE/ILIKE pattern. PostgreSQL refuses a pattern that ends in its escape character (a
 * backslash) when it matches it against a row; that is refused here for every pattern. An escaped
 * backslash (`\\`) at the end is a literal backslash and is fine.
 */
export function likePattern(value: unknown, what: string): string {
  if (typeof value !== 'string') throw badInput(`${what} takes a string pattern`);
  if (coerceParam(value, { schema: 'pg_catalog', name: 'text', category: 'S', enumLabels: [] }) === null) throw badInput(`${what}: the pattern holds a character text cannot hold (NUL or a lone surrogate)`);
  const trailing = value.length - value.replace(/\\+$/, '').length;
  if (trailing % 2 === 1) throw badInput(`${what}: the pattern ends with an escape character (a lone \\); write \\\\ for a literal backslash`);
  return value;
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

export interface UncheckedInput {
  text: string;
  type: TypeRef;
  what: string;
}

const VALUE_OPERATORS = new Set(['_eq', '_neq', '_gt', '_gte', '_lt', '_lte']);

/** The values of a `where` (and of relationships' `where`s inside it) that only PostgreSQL can check. */
function whereInputs(api: ApiModel, model: TableModel, exp: unknown, out: UncheckedInput[]): void {
  if (!exp || typeof exp !== 'object') return;
  for (const [key, value] of Object.entries(exp as Record<string, unknown>)) {
    if (value === undefined || value === null) continue;
    if (key === '_and' || key === '_or') for (const e of Array.isArray(value) ? value : [value]) whereInputs(api, model, e, out);
    else if (key === '_not') whereInputs(api, model, value, out);
    else {
      const col = model.columns.find((c) => c.name === key);
      if (col) {
        if (checkedHere(col)) continue;
        for (const [op, v] of Object.entries(value as Record<string, unknown>)) {
          if (v === null || v === undefined) continue;
          const what = `${model.name}.${col.name}.${op}`;
          if (VALUE_OPERATORS.has(op)) out.push({ text: textOf(v), type: col.type, what });
          else if (op === '_in' || op === '_nin') for (const e of Array.isArray(v) ? v : [v]) if (e !== null) out.push({ text: textOf(e), type: col.type, what });
        }
        continue;
      }
      const rel = model.relationships.find((r) => r.name === key);
      const target = rel ? api.tables.get(rel.target) : undefined;
      if (target) whereInputs(api, target, value, out);
    }
  }
}

function textOf(value: unknown): string {
  if (Array.isArray(value)) return `{${value.map((v) => (v === null ? 'NULL' : `"${String(v).replace(/(["\\])/g, '\\$1')}"`)).join(',')}}`;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Every value in a selection (its `where`, its relationships' fields' `where`s) that only PostgreSQL can check. */
export function uncheckedInputs(api: ApiModel, model: TableModel, field: SelectedField, out: UncheckedInput[] = []): UncheckedInput[] {
  whereInputs(api, model, field.args['where'], out);
  whereInputs(api, model, (field.args['on_conflict'] as Record<string, unknown> | null | undefined)?.['where'], out);
  for (const child of field.children) {
    const rel = model.relationships.find((r) => r.name === child.name || `${r.name}_aggregate` === child.name);
    const target = rel ? api.tables.get(rel.target) : undefined;
    if (target) uncheckedInputs(api, target, child, out);
    // `aggregate { … }`/`nodes { … }` of an aggregate field, `returning { … }` of a mutation.
    else if (child.children.length) uncheckedInputs(api, model, { ...child, args: {} }, out);
  }
  return out;
}

/**
 * Casts every unchecked value once, in a statement that reads no table: a value PostgreSQL
 * refuses fails the request with BAD_USER_INPUT whatever the data holds.
 */
export async function verifyInputs(db: Sql, inputs: UncheckedInput[]): Promise<void> {
  if (inputs.length === 0) return;
  const casts: SQL[] = inputs.map((i) => sql`${sql.value(i.text)}::text::${typeSql(i.type)}`);
  try {
    await runSql(db, sql`SELECT ${sql.join(casts, ', ')}`);
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('22')) throw err;
    // Say which value, by casting them one at a time: cheap, and only on this error path.
    for (const i of inputs) {
      try {
        await runSql(db, sql`SELECT ${sql.value(i.text)}::text::${typeSql(i.type)}`);
      } catch {
        throw badInput(`${i.what}: ${describe(i.text)} is not a valid ${i.type.name}`);
      }
    }
    throw badInput(`a filter value is not valid for its column (SQLSTATE ${code})`);
  }
}
