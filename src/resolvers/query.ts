import { sql, type SQL } from 'pg-sql2';
import { and, type Alias } from '../rules/index.ts';
import { AGGREGATE_BY_NAME } from '../schema/aggregates.ts';
import type { ComputedField, Relationship, TableModel } from '../schema/model.ts';
import { jsonPath } from './json-path.ts';
import { orderTerms } from './order.ts';
import { badInput, fenced, joinCondition, needsFence, pkMatch, readableColumn, tableModel, tableRef, visible, visibleRowSource, visibleRows, type Scope } from './scope.ts';
import type { SelectedField } from './selection.ts';
import { whereSql } from './where.ts';

/**
 * GraphQL selections as SQL that builds the whole JSON answer inside PostgreSQL: one scalar subquery
 * per root field, however deep the relationships go (batch.ts runs an operation's together). Every table read goes through `visible`.
 */

/** json_build_object takes at most 100 arguments; wider selections are merged as jsonb. */
function buildObject(pairs: [string, SQL][]): SQL {
  if (pairs.length === 0) return sql`'{}'::json`;
  const chunks: SQL[] = [];
  for (let i = 0; i < pairs.length; i += 50) {
    const args = pairs.slice(i, i + 50).flatMap(([k, v]) => [sql.literal(k), v]);
    chunks.push(pairs.length > 50 ? sql`jsonb_build_object(${sql.join(args, ', ')})` : sql`json_build_object(${sql.join(args, ', ')})`);
  }
  return chunks.length === 1 ? chunks[0]! : sql`(${sql.join(chunks, ' || ')})::json`;
}

/**
 * An object as compact JSON text, keys in selection order, each value already JSON text: what
 * JSON.stringify writes (json_build_object's text has spaces, and jsonb reorders keys).
 */
function textObject(pairs: [string, SQL][]): SQL {
  if (pairs.length === 0) return sql`'{}'::text`;
  const parts = pairs.map(([k, v], i) => sql`${sql.literal(`${i === 0 ? '{' : ','}${JSON.stringify(k)}:`)} || ${v}`);
  return sql`(${sql.join(parts, ' || ')} || '}')`;
}

/** A value as JSON text ('null' for NULL): to_json formats it as json_build_object would. */
function jsonText(value: SQL): SQL {
  return sql`coalesce(to_json(${value})::text, 'null')`;
}

/** The rows' objects (`item`, JSON text) as one compact JSON array, `[]` for none. */
function textArray(item: SQL, orderSql: SQL): SQL {
  return sql`coalesce('[' || string_agg(${item}, ','${orderSql}) || ']', '[]')`;
}

/** A row's object, as json or as JSON text (`scope.jsonText`). */
function objectOf(scope: Scope, pairs: [string, SQL][]): SQL {
  return scope.jsonText ? textObject(pairs) : buildObject(pairs);
}

/** Scalars whose JSON text from PostgreSQL is what graphql-js sends (Float and json are written differently by JS). */
const TEXT_SAFE_SCALARS = new Set(['Int', 'String', 'Boolean', 'bigint', 'numeric', 'uuid', 'timestamptz', 'timestamp', 'date']);

/**
 * Whether `fields` of `model` can be answered as JSON text (`scope.jsonText`): columns of scalars
 * PostgreSQL writes exactly as graphql-js would, object and array relationships of such fields, and
 * `__typename`. Not computed fields (any return type), aggregates, json columns, Floats, or lists.
 */
export function textAnswerable(scope: Scope, model: TableModel, fields: SelectedField[]): boolean {
  return fields.every((f) => {
    if (f.typename !== undefined) return true;
    const col = model.readable.find((c) => c.name === f.name);
    if (col) return !col.scalar.list && TEXT_SAFE_SCALARS.has(col.scalar.name);
    const rel = model.relationships.find((r) => r.name === f.name);
    return rel !== undefined && textAnswerable(scope, tableModel(scope, rel.target), f.children);
  });
}

/** The JSON object for row `alias` of `model` with the fields selected. */
export function rowJson(scope: Scope, model: TableModel, alias: Alias, fields: SelectedField[]): SQL {
  const pairs: [string, SQL][] = fields.map((f) => [f.key, fieldSql(scope, model, alias, f)]);
  return objectOf(scope, pairs);
}

function fieldSql(scope: Scope, model: TableModel, alias: Alias, f: SelectedField): SQL {
  if (f.typename !== undefined) return scope.jsonText ? sql.literal(JSON.stringify(f.typename)) : sql`${sql.literal(f.typename)}::text`;
  const col = model.readable.find((c) => c.name === f.name);
  if (col && f.args['path'] !== undefined && f.args['path'] !== null) return sql`(${sql.identifier(alias, col.name)} #> ${scope.binder.textArray(jsonPath(f.args['path'], `${model.name}.${col.name}`))})`;
  if (col) {
    const value = col.scalar.asText ? sql`${sql.identifier(alias, col.name)}::text${col.scalar.list ? sql`[]` : sql.blank}` : sql.identifier(alias, col.name);
    return scope.jsonText ? jsonText(value) : value;
  }
  const computed = model.computed.find((c) => c.name === f.name);
  if (computed) return computedSql(scope, model, alias, computed);
  const rel = model.relationships.find((r) => r.name === f.name);
  if (rel?.kind === 'object') return objectRelationship(scope, rel, alias, f);
  if (rel?.kind === 'array') return listSql(scope, tableModel(scope, rel.target), f, (other) => joinCondition(rel, alias, other));
  const agg = model.relationships.find((r) => r.kind === 'array' && `${r.name}_aggregate` === f.name);
  if (agg) return aggregateSql(scope, tableModel(scope, agg.target), f, (other) => joinCondition(agg, alias, other));
  throw new Error(`${model.name} has no field ${f.name}`);
}

/**
 * A computed field: its function called with the row, rebuilt as the table's type from its columns
 * (the row may come from a subquery, whose whole-row value is an anonymous record), and the claims.
 * It runs only in the selection, so only over rows already proven visible.
 */
function computedSql(scope: Scope, model: TableModel, alias: Alias, c: ComputedField): SQL {
  const table = sql.identifier(scope.api.schema, model.name);
  const row = sql`ROW(${sql.join(model.columns.map((col) => sql.identifier(alias, col.name)), ', ')})::${table}`;
  const args = c.session ? [row, sql`${scope.claims()}::${sql.identifier(c.fn.argTypes[1]!)}`] : [row];
  const call = sql`${sql.identifier(c.fn.schema, c.fn.name)}(${sql.join(args, ', ')})`;
  return c.scalar.asText ? sql`${call}::text${c.scalar.list ? sql`[]` : sql.blank}` : call;
}

function objectRelationship(scope: Scope, rel: Relationship, alias: Alias, f: SelectedField): SQL {
  const target = tableModel(scope, rel.target);
  const other = Symbol(rel.target);
  const where = and([joinCondition(rel, alias, other), visible(scope, rel.target, other)]);
  const row = sql`(SELECT ${rowJson(scope, target, other, f.children)} FROM ${tableRef(scope, rel.target)} AS ${sql.identifier(other)} WHERE ${where} LIMIT 1)`;
  return scope.jsonText ? sql`coalesce(${row}, 'null')` : row;
}

function count(value: unknown, name: string, max: number): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw badInput(`${name} must be a non-negative integer`);
  return Math.min(value, max);
}

/**
 * `distinct_on`'s columns, or null. As in Hasura (and PostgreSQL's DISTINCT ON), an `order_by`
 * must begin with exactly those columns, so which row of each group is kept is the caller's choice;
 * without `order_by` the rows are ordered by them.
 */
function distinctColumns(model: TableModel, args: Record<string, unknown>): string[] | null {
  const columns = args['distinct_on'] as string[] | null | undefined;
  if (!columns || columns.length === 0) return null;
  const distinct = [...new Set(columns.map((c) => readableColumn(model, c).name))];
  const orderBy = args['order_by'];
  if (orderBy !== null && orderBy !== undefined) {
    const leading = ((Array.isArray(orderBy) ? orderBy : [orderBy]) as Record<string, unknown>[])
      .flatMap((item) => Object.entries(item ?? {}).filter(([, v]) => v !== null && v !== undefined).map(([k]) => k))
      .slice(0, distinct.length);
    if (new Set(leading).size !== distinct.length || leading.some((k) => !distinct.includes(k)))
      throw badInput('"distinct_on" columns must match the initial "order_by" columns');
  }
  return distinct;
}

/**
 * The rows of `model` the caller can see, filtered, ordered and paged: `SELECT s.* FROM (…) s`,
 * so every caller of this (lists, aggregates, nodes) shares the same visibility and paging.
 */
function rowsSource(
  scope: Scope,
  model: TableModel,
  args: Record<string, unknown>,
  extra: ((alias: Alias) => SQL) | null,
  capped = true,
  source: SQL | null = null,
): { from: SQL; alias: symbol; order: SQL[] } {
  const inner = Symbol(model.name);
  // Rows sent to the caller are capped at maxRows; an aggregate without `nodes` sends one row,
  // so it counts every visible row unless the caller gives a limit.
  // A table's selectLimit caps every list and aggregate of it, with or without a caller's limit.
  const given = count(args['limit'], 'limit', scope.api.maxRows) ?? (capped ? scope.api.maxRows : null);
  const cap = scope.params ? model.selectLimit : null;
  const limit = cap === null ? given : Math.min(given ?? cap, cap);
  const offset = count(args['offset'], 'offset', Number.MAX_SAFE_INTEGER);
  const where = args['where'] as Record<string, unknown> | undefined;
  // With a fence (the caller is restricted here and gave a filter) the filter and the paging wait
  // until the visible rows are known; otherwise they go inside the read, where indexes serve them.
  const fence = needsFence(scope, model, where);
  const filter = (a: Alias) => (fence ? sql.true : whereSql(scope, model, a, where));
  // A nested list is reached through its foreign key (an index lookup per parent) and checks each
  // row's visibility as one condition; a top-level list lets each rule find its rows (visibleRows).
  // Each branch of a split read keeps only what the page can use: its first limit + offset rows.
  const distinctOn = distinctColumns(model, args);
  const paging = (a: Alias): SQL => {
    // A branch's first rows may be duplicates that DISTINCT ON drops: page only after it.
    if (limit === null || fence || distinctOn) return sql.blank;
    const terms = orderTerms(scope, model, a, args['order_by']);
    return sql`${terms.length ? sql` ORDER BY ${sql.join(terms, ', ')}` : sql.blank} LIMIT ${sql.literal(limit + (offset ?? 0))}`;
  };
  // Rows from a function (`source`) are not the table's: only the rules, row by row, judge them.
  const split = extra || source ? null : visibleRowSource(scope, model, filter, paging);
  const visibility = extra
    ? and([visible(scope, model.name, inner), extra(inner), filter(inner)])
    : source
      ? and([visible(scope, model.name, inner), filter(inner)])
      : split
        ? sql.true
        : visibleRows(scope, model, inner, filter);
  const rows = fenced(scope, model, where, sql`${source ?? split ?? tableRef(scope, model.name)} AS ${sql.identifier(inner)}`, inner, visibility);
  const condition = and([rows.visibility, fence ? whereSql(scope, model, rows.alias, where) : sql.true]);
  const ordering = (a: Alias) => [
    ...(distinctOn && !args['order_by'] ? distinctOn.map((c) => sql.identifier(a, c)) : []),
    ...orderTerms(scope, model, a, args['order_by']),
  ];
  const order = ordering(rows.alias);
  const orderSql = order.length ? sql` ORDER BY ${sql.join(order, ', ')}` : sql.blank;
  const offsetSql = offset ? sql` OFFSET ${sql.literal(offset)}` : sql.blank;
  const alias = Symbol(`${model.name}_rows`);
  // The ORDER BY terms are evaluated on the paged rows again (as `alias`) to order the JSON array.
  const outerOrder = ordering(alias);
  return {
    from: sql`(SELECT ${distinctOn ? sql`DISTINCT ON (${sql.join(distinctOn.map((c) => sql.identifier(rows.alias, c)), ', ')}) ` : sql.blank}${sql.identifier(rows.alias)}.* FROM ${rows.from} WHERE ${condition}${orderSql}${limit === null ? sql.blank : sql` LIMIT ${sql.literal(limit)}`}${offsetSql}) AS ${sql.identifier(alias)}`,
    alias,
    order: outerOrder,
  };
}

/** `[t!]!` as a JSON array; `source` replaces the table by rows of its type (a root function's call). */
export function listSql(scope: Scope, model: TableModel, f: SelectedField, extra: ((alias: Alias) => SQL) | null = null, source: SQL | null = null): SQL {
  const { from, alias, order } = rowsSource(scope, model, f.args, extra, true, source);
  const orderSql = order.length ? sql` ORDER BY ${sql.join(order, ', ')}` : sql.blank;
  const row = rowJson(scope, model, alias, f.children);
  return sql`(SELECT ${scope.jsonText ? textArray(row, orderSql) : sql`coalesce(json_agg(${row}${orderSql}), '[]'::json)`} FROM ${from})`;
}

/** `t_by_pk(pk…)`: the row's JSON, or null when it does not exist or is hidden. */
export function byPkSql(scope: Scope, model: TableModel, f: SelectedField): SQL {
  const alias = Symbol(model.name);
  const where = and([pkMatch(scope, model, alias, f.args), visible(scope, model.name, alias)]);
  return sql`(SELECT ${rowJson(scope, model, alias, f.children)} FROM ${tableRef(scope, model.name)} AS ${sql.identifier(alias)} WHERE ${where})`;
}

/** The row for `count(distinct: true)`: its readable columns only, so unreadable ones cannot tell rows apart. */
function wholeRow(model: TableModel, alias: Alias): SQL {
  if (model.readable.length === model.columns.length) return sql`${sql.identifier(alias)}.*`;
  return sql`ROW(${sql.join(model.readable.map((c) => sql.identifier(alias, c.name)), ', ')})`;
}

/** `t_aggregate`: `{ aggregate { count sum avg max min } nodes }` over the visible rows only. */
export function aggregateSql(scope: Scope, model: TableModel, f: SelectedField, extra: ((alias: Alias) => SQL) | null = null, source: SQL | null = null): SQL {
  const { from, alias, order } = rowsSource(scope, model, f.args, extra, f.children.some((c) => c.name === 'nodes'), source);
  const pairs: [string, SQL][] = [];
  for (const part of f.children) {
    if (part.name === 'nodes') {
      const orderSql = order.length ? sql` ORDER BY ${sql.join(order, ', ')}` : sql.blank;
      pairs.push([part.key, sql`coalesce(json_agg(${rowJson(scope, model, alias, part.children)}${orderSql}), '[]'::json)`]);
    } else if (part.name === 'aggregate') {
      const inner: [string, SQL][] = [];
      for (const a of part.children) {
        if (a.name === 'count') {
          const cols = (a.args['columns'] as string[] | undefined) ?? [];
          const distinct = a.args['distinct'] === true;
          if (cols.length === 0) inner.push([a.key, distinct ? sql`count(DISTINCT ${wholeRow(model, alias)})` : sql`count(*)`]);
          else {
            const tuple = cols.length === 1 ? sql.identifier(alias, readableColumn(model, cols[0]!).name) : sql`ROW(${sql.join(cols.map((c) => sql.identifier(alias, readableColumn(model, c).name)), ', ')})`;
            // count(ROW(…)) would count rows whose columns are all NULL; Hasura counts non-null values.
            const nonNull = and(cols.map((c) => sql`${sql.identifier(alias, c)} IS NOT NULL`));
            inner.push([a.key, distinct ? sql`count(DISTINCT ${tuple}) FILTER (WHERE ${nonNull})` : sql`count(*) FILTER (WHERE ${nonNull})`]);
          }
        } else {
          const fn = AGGREGATE_BY_NAME.get(a.name);
          if (!fn) continue;
          const cols: [string, SQL][] = a.children.map((c) => {
            const col = readableColumn(model, c.name);
            return [c.key, fn.json(fn.sql(sql.identifier(alias, col.name), col.type.name), col.scalar)];
          });
          inner.push([a.key, buildObject(cols)]);
        }
      }
      pairs.push([part.key, buildObject(inner)]);
    }
  }
  // GROUP BY (): exactly one row even when no aggregate function is selected (`{ __typename }`,
  // `aggregate { __typename }`), which would otherwise give NULL for no rows or fail for several.
  return sql`(SELECT ${buildObject(pairs)} FROM ${from} GROUP BY ())`;
}
