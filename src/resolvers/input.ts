import { sql, type SQL } from 'pg-sql2';
import { runSql, type Sql, type TypeRef } from '../db/index.ts';
import { coerceParam, isBindableType, typeSql } from '../rules/index.ts';
import type { ApiModel, ColumnModel, TableModel } from '../schema/model.ts';
import { castsToString, OPERATOR_BY_NAME, STRING_SCALAR } from '../schema/operators.ts';
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
  if (coerceParam(value, TEXT) === null) throw badInput(`${what}: the pattern holds a character text cannot hold (NUL or a lone surrogate)`);
  const trailing = value.length - value.replace(/\\+$/, '').length;
  if (trailing % 2 === 1) throw badInput(`${what}: the pattern ends with an escape character (a lone \\); write \\\\ for a literal backslash`);
  return value;
}

const TEXT: TypeRef = { schema: 'pg_catalog', name: 'text', category: 'S', enumLabels: [] };

/** A String operand (a regex, a jsonb key): text PostgreSQL can hold. */
export function textOperand(value: unknown, what: string): string {
  const text = typeof value === 'string' ? coerceParam(value, TEXT) : null;
  if (text === null) throw badInput(`${what} takes a string without NUL or lone surrogates`);
  return text;
}

/** A jsonb operand: PostgreSQL's jsonb cannot hold \u0000 nor lone surrogates, which JSON.stringify writes as escapes. */
export function jsonOperand(value: unknown, what: string): string {
  const json = JSON.stringify(value);
  // An escape is a backslash preceded by an even number of backslashes (`\\u0000` is text).
  if (json === undefined || /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i.test(json)) throw badInput(`${what}: ${describe(json ?? value)} is not a value jsonb can hold`);
  return json;
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/** A value only PostgreSQL can check, and the table-free expression that checks it. */
export interface UncheckedInput {
  text: string;
  what: string;
  /** `cast`: the value cast to `type`; `regex`/`similar`: the pattern compiled by matching ''. */
  probe: { kind: 'cast'; type: TypeRef } | { kind: 'regex' | 'similar' };
}

function probeSql(input: UncheckedInput): SQL {
  const value = sql`${sql.value(input.text)}::text`;
  if (input.probe.kind === 'cast') return sql`${value}::${typeSql(input.probe.type)}`;
  return input.probe.kind === 'regex' ? sql`('' ~ ${value})` : sql`('' SIMILAR TO ${value})`;
}

/** The values of a column's comparison that only PostgreSQL can check. */
function comparisonInputs(col: ColumnModel, exp: Record<string, unknown>, what: string, out: UncheckedInput[]): void {
  for (const [name, v] of Object.entries(exp)) {
    if (v === null || v === undefined) continue;
    if (name === '_cast' && castsToString(col.scalar)) {
      const casts = v as Record<string, Record<string, unknown> | null>;
      if (casts['String']) comparisonInputs({ ...col, type: TEXT, scalar: STRING_SCALAR }, casts['String'], `${what}._cast.String`, out);
      continue;
    }
    const op = OPERATOR_BY_NAME.get(name);
    if (!op) continue;
    const at = `${what}.${name}`;
    if (op.check === 'regex' || op.check === 'similar') {
      if (typeof v === 'string') out.push({ text: v, what: at, probe: { kind: op.check } });
    } else if (op.check === 'value' && !checkedHere(col)) {
      for (const e of op.input === 'scalars' && Array.isArray(v) ? v : [v]) if (e !== null) out.push({ text: textOf(e), what: at, probe: { kind: 'cast', type: col.type } });
    }
  }
}

/** The values of a `where` (and of relationships' `where`s inside it) that only PostgreSQL can check. */
function whereInputs(api: ApiModel, model: TableModel, exp: unknown, out: UncheckedInput[]): void {
  if (!exp || typeof exp !== 'object') return;
  for (const [key, value] of Object.entries(exp as Record<string, unknown>)) {
    if (value === undefined || value === null) continue;
    if (key === '_and' || key === '_or') for (const e of Array.isArray(value) ? value : [value]) whereInputs(api, model, e, out);
    else if (key === '_not') whereInputs(api, model, value, out);
    else {
      const col = model.readable.find((c) => c.name === key);
      if (col) {
        comparisonInputs(col, value as Record<string, unknown>, `${model.name}.${col.name}`, out);
        continue;
      }
      const rel = model.relationships.find((r) => r.name === key);
      const target = rel ? api.tables.get(rel.target) : undefined;
      if (target) whereInputs(api, target, value, out);
    }
  }
}

/** The `on_conflict.where`s of an insert's nested objects, at any depth. */
function insertInputs(api: ApiModel, model: TableModel, objects: unknown, out: UncheckedInput[]): void {
  for (const object of Array.isArray(objects) ? objects : [objects]) {
    if (!object || typeof object !== 'object') continue;
    for (const rel of model.relationships) {
      const nested = (object as Record<string, unknown>)[rel.name] as { data?: unknown; on_conflict?: { where?: unknown } | null } | null | undefined;
      const target = api.tables.get(rel.target);
      if (!nested || !target) continue;
      whereInputs(api, target, nested.on_conflict?.where, out);
      insertInputs(api, target, nested.data, out);
    }
  }
}

function textOf(value: unknown): string {
  if (Array.isArray(value)) return `{${value.map((v) => (v === null ? 'NULL' : `"${String(v).replace(/(["\\])/g, '\\$1')}"`)).join(',')}}`;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Every value in a selection (its `where`s, its nested inserts', its relationships' fields') that only PostgreSQL can check. */
export function uncheckedInputs(api: ApiModel, model: TableModel, field: SelectedField, out: UncheckedInput[] = []): UncheckedInput[] {
  whereInputs(api, model, field.args['where'], out);
  for (const u of (field.args['updates'] as Record<string, unknown>[] | undefined) ?? []) whereInputs(api, model, u?.['where'], out);
  whereInputs(api, model, (field.args['on_conflict'] as Record<string, unknown> | null | undefined)?.['where'], out);
  insertInputs(api, model, field.args['objects'] ?? field.args['object'], out);
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
  try {
    await runSql(db, sql`SELECT ${sql.join(inputs.map(probeSql), ', ')}`);
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('22')) throw err;
    // Say which value, by casting them one at a time: cheap, and only on this error path.
    for (const i of inputs) {
      try {
        await runSql(db, sql`SELECT ${probeSql(i)}`);
      } catch {
        throw badInput(`${i.what}: ${describe(i.text)} is not a valid ${i.probe.kind === 'cast' ? i.probe.type.name : `${i.probe.kind === 'regex' ? 'regular expression' : 'SIMILAR TO pattern'}`}`);
      }
    }
    throw badInput(`a filter value was refused (SQLSTATE ${code})`);
  }
}

/**
 * A root function's `args`, each checked as a value of its column-like parameter: those rowgate
 * checks are returned converted, the others are added to `out` to be cast by `verifyInputs`.
 */
export function functionArgs(params: ColumnModel[], values: Record<string, unknown> | null | undefined, what: string, out: UncheckedInput[]): unknown[] {
  return params.map((p) => {
    const value = values?.[p.name] ?? null;
    if (value !== null && !checkedHere(p)) out.push({ text: textOf(value), what: `${what}.${p.name}`, probe: { kind: 'cast', type: p.type } });
    return checkedValue(p, value, `${what}.${p.name}`);
  });
}
