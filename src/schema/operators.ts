import { sql, type SQL } from 'pg-sql2';
import type { ScalarInfo } from './scalars.ts';

/**
 * The comparison operators of `<scalar>_comparison_exp`, one row per operator, as Hasura names
 * them. The schema builder (which fields a comparison type has), the SQL compiler (what each one
 * means) and the input checks (what must be refused before any row is read) all read this table,
 * so an operator exists in the schema exactly when it can be compiled and checked.
 *
 * `input` is the GraphQL type of the operand: the column's own scalar, a list of it, a String, a
 * list of Strings, or jsonb. `check` says how an operand is made unable to raise in PostgreSQL:
 * - `value`: converted like the column's type (resolvers/input.ts `checkedValue`);
 * - `like`: a LIKE pattern, refused when it ends in a lone escape character;
 * - `regex`, `similar`: compiled once by PostgreSQL in a statement that reads no table;
 * - `json`: a jsonb value PostgreSQL can store (no \u0000);
 * - `text`: text without NUL.
 */
export interface Operator {
  name: string;
  applies: (scalar: ScalarInfo) => boolean;
  input: 'scalar' | 'scalars' | 'String' | 'Strings' | 'jsonb';
  check: 'value' | 'like' | 'regex' | 'similar' | 'json' | 'text';
  /** `column` is the column (as text for pattern operators), `operand` the bound, cast value. */
  sql: (column: SQL, operand: SQL) => SQL;
}

const single = (s: ScalarInfo) => !s.list;
const ordered = (s: ScalarInfo) => !s.list && s.ordered;
const text = (s: ScalarInfo) => !s.list && s.name === 'String';
const jsonb = (s: ScalarInfo) => !s.list && s.name === 'jsonb';

export const OPERATORS: Operator[] = [
  { name: '_eq', applies: single, input: 'scalar', check: 'value', sql: (c, v) => sql`${c} = ${v}` },
  { name: '_neq', applies: single, input: 'scalar', check: 'value', sql: (c, v) => sql`${c} <> ${v}` },
  { name: '_in', applies: single, input: 'scalars', check: 'value', sql: (c, v) => sql`${c} = ANY(${v})` },
  { name: '_nin', applies: single, input: 'scalars', check: 'value', sql: (c, v) => sql`${c} <> ALL(${v})` },
  { name: '_gt', applies: ordered, input: 'scalar', check: 'value', sql: (c, v) => sql`${c} > ${v}` },
  { name: '_gte', applies: ordered, input: 'scalar', check: 'value', sql: (c, v) => sql`${c} >= ${v}` },
  { name: '_lt', applies: ordered, input: 'scalar', check: 'value', sql: (c, v) => sql`${c} < ${v}` },
  { name: '_lte', applies: ordered, input: 'scalar', check: 'value', sql: (c, v) => sql`${c} <= ${v}` },
  { name: '_like', applies: text, input: 'String', check: 'like', sql: (c, v) => sql`${c} LIKE ${v}` },
  { name: '_nlike', applies: text, input: 'String', check: 'like', sql: (c, v) => sql`${c} NOT LIKE ${v}` },
  { name: '_ilike', applies: text, input: 'String', check: 'like', sql: (c, v) => sql`${c} ILIKE ${v}` },
  { name: '_nilike', applies: text, input: 'String', check: 'like', sql: (c, v) => sql`${c} NOT ILIKE ${v}` },
  { name: '_similar', applies: text, input: 'String', check: 'similar', sql: (c, v) => sql`${c} SIMILAR TO ${v}` },
  { name: '_nsimilar', applies: text, input: 'String', check: 'similar', sql: (c, v) => sql`${c} NOT SIMILAR TO ${v}` },
  { name: '_regex', applies: text, input: 'String', check: 'regex', sql: (c, v) => sql`${c} ~ ${v}` },
  { name: '_nregex', applies: text, input: 'String', check: 'regex', sql: (c, v) => sql`${c} !~ ${v}` },
  { name: '_iregex', applies: text, input: 'String', check: 'regex', sql: (c, v) => sql`${c} ~* ${v}` },
  { name: '_niregex', applies: text, input: 'String', check: 'regex', sql: (c, v) => sql`${c} !~* ${v}` },
  { name: '_contains', applies: jsonb, input: 'jsonb', check: 'json', sql: (c, v) => sql`${c} @> ${v}` },
  { name: '_contained_in', applies: jsonb, input: 'jsonb', check: 'json', sql: (c, v) => sql`${c} <@ ${v}` },
  { name: '_has_key', applies: jsonb, input: 'String', check: 'text', sql: (c, v) => sql`${c} ? ${v}` },
  { name: '_has_keys_any', applies: jsonb, input: 'Strings', check: 'text', sql: (c, v) => sql`${c} ?| ${v}` },
  { name: '_has_keys_all', applies: jsonb, input: 'Strings', check: 'text', sql: (c, v) => sql`${c} ?& ${v}` },
];

export const OPERATOR_BY_NAME = new Map(OPERATORS.map((o) => [o.name, o]));

/** Scalars whose values can be compared as their text form through `_cast: {String: …}` (Hasura's `<type>_cast_exp`). */
export const castsToString = (s: ScalarInfo) => !s.list && (s.name === 'jsonb' || s.name === 'json');

/** The scalar of a column's text form (the operand side of `_cast: {String: …}`). */
export const STRING_SCALAR: ScalarInfo = { name: 'String', list: false, asText: false, ordered: true, numeric: false };
