import { GraphQLError } from 'graphql';
import { sql, type SQL } from 'pg-sql2';
import type { ApiModel, ColumnModel, Relationship, TableModel } from '../schema/model.ts';
import { checkedValue } from './input.ts';
import { and, boundValues, callerSlots, claimsSlot, identityParams, or, typeSql, type Alias, type AnalyzedRule, type Binder, type CompiledRule, type Caller, type Expr, type ParamSource, type Relation } from '../rules/index.ts';

/** What compiling one request needs: the API model, how values are bound, and the caller's parameters. */
export interface Scope {
  api: ApiModel;
  binder: Binder;
  /** null for the admin, whom no rule filters. */
  params: ParamSource | null;
  /** The SQL answers many subscribers in one statement, each in a loop of its own (the live engine). */
  perSubscriber?: true;
  /** The caller's claims as one bound json text (computed fields that take the session). */
  claims: () => SQL;
  /**
   * What a table is read as, where not the table itself: a change stream judges its `where` with
   * the tables as they were at a change (live/as-of.ts). Filters and the rules they apply use it.
   */
  relation?: Relation;
  /**
   * Answers are built as compact JSON text, byte for byte what graphql-js and JSON.stringify would
   * send (passthrough.ts), instead of json values that GraphQL walks again.
   */
  jsonText?: true;
}

export function scopeFor(api: ApiModel, caller: Caller, binder: Binder = boundValues, perSubscriber = false): Scope {
  const scope: Scope = {
    api,
    binder,
    params: caller.admin ? null : identityParams(caller.identity, binder),
    claims: () => binder.text(JSON.stringify(caller.identity.claims)),
  };
  if (perSubscriber) scope.perSubscriber = true;
  return scope;
}

/**
 * A scope for one kind of caller (admin or not) whose values are slots, filled per request
 * (`fillCaller`): the SQL built with it is the same for every such caller, so it can be kept.
 */
export function callerIndependentScope(api: ApiModel, admin: boolean): Scope {
  return { api, binder: boundValues, params: admin ? null : callerSlots, claims: claimsSlot };
}

export function tableModel(scope: Scope, name: string): TableModel {
  const model = scope.api.tables.get(name);
  if (!model) throw new Error(`table ${name} is not exposed`);
  return model;
}

export function tableRef(scope: Scope, table: string): SQL {
  return scope.relation?.(table) ?? sql.identifier(scope.api.schema, table);
}

/** The caller's visibility of `table`'s row `alias`; every read of a table goes through this. */
export function visible(scope: Scope, table: string, alias: Alias): SQL {
  return scope.params ? scope.api.rules.visibility(table, alias, scope.params, scope.relation) : sql.true;
}

/**
 * Visibility for a top-level read of a table with several select rules: the row's primary key must
 * be among the keys each rule finds on its own (a UNION). Written as one OR, "own row OR the caller
 * is an admin" or "author OR member of the group" cannot use an index, and PostgreSQL scans the whole
 * table for every caller; as a UNION each rule is planned alone (an index lookup, or a check of the
 * admin table evaluated once), and `IN (…)` lets PostgreSQL hash the keys when a rule lets the caller
 * see everything. Tables without a primary key keep the OR. `filter` (the caller's `where`) is
 * applied inside each branch.
 *
 * Per subscriber (the live engine), a single-column key is matched with `= ANY(ARRAY(…))` instead:
 * there the read runs once per subscriber, and PostgreSQL 18 plans `IN (…)` as a merge join that
 * walks the primary key index from its start on every loop (0.7 ms per subscriber over 15k rows,
 * against 0.08 ms for index probes; measured with 200 subscribers). The array costs more when a
 * rule lets a subscriber see everything (11 vs 6 ms per subscriber for 15k rows): single-caller
 * reads keep `IN (…)`, and the live engine splits such a rule out first (visibleRowSource).
 */
export function visibleRows(scope: Scope, model: TableModel, alias: Alias, filter: (alias: Alias) => SQL): SQL {
  const rules = model.policy.select;
  const params = scope.params;
  const key = model.primaryKey;
  // Only a real PRIMARY KEY: a view's declared key is not known to be unique, and a row sharing a
  // key with a visible row would be let through.
  if (!params || rules === 'public' || rules.length < 2 || model.table.primaryKey.length === 0) return and([visible(scope, model.name, alias), filter(alias)]);
  const union = keysFound(scope, model, rules, params, filter);
  const columns = sql.join(key.map((k) => sql.identifier(alias, k.name)), ', ');
  if (scope.perSubscriber && key.length === 1) return sql`${columns} = ANY(ARRAY(${union}))`;
  return sql`(${columns}) IN (${union})`;
}

/** `SELECT <primary key> FROM t WHERE <rule> [AND <filter>] UNION …`: the keys each rule finds on its own. */
function keysFound(scope: Scope, model: TableModel, rules: CompiledRule[], params: ParamSource, filter: ((alias: Alias) => SQL) | null): SQL {
  const branches = rules.map(({ rule }) => {
    const row = Symbol(model.name);
    const where = and([scope.api.rules.rule(model.name, rule, row, params), filter ? filter(row) : sql.true]);
    return sql`SELECT ${sql.join(model.primaryKey.map((k) => sql.identifier(row, k.name)), ', ')} FROM ${tableRef(scope, model.name)} AS ${sql.identifier(row)} WHERE ${where}`;
  });
  return sql.join(branches, ' UNION ');
}

/** Whether a rule's condition never reads the row it decides about ("the caller is an admin"). */
function rowIndependent(rule: AnalyzedRule): boolean {
  const reads = (e: unknown): boolean => {
    if (!e || typeof e !== 'object') return false;
    if ((e as Expr).k === 'col' && (e as { inst: number }).inst === rule.target) return true;
    return Object.values(e).some((v) => (Array.isArray(v) ? v.some(reads) : reads(v)));
  };
  return !reads(rule.condition);
}

/**
 * Per subscriber (the live engine), the rows of a top-level read of a table whose rules include
 * one that does not read the row (an admin rule: every row or none) and others that do: `(SELECT
 * rows if that rule holds UNION ALL SELECT rows the others find if it does not)`. Each branch's
 * condition on the caller is a one-time filter, so someone the rule lets see everything reads the
 * table as it is (an ordered index scan stops at the limit), and anyone else reads only the keys
 * the other rules find. `paging` (ORDER BY and LIMIT, limit + offset) goes into each branch too:
 * without it PostgreSQL appended both and sorted every row of the table for each admin.
 * `visibleRows` alone would collect every key of the table for an admin first (measured: 200
 * admins over 100k accounts fell 10 s behind every commit). null when the rules are not of that kind.
 */
export function visibleRowSource(scope: Scope, model: TableModel, filter: (alias: Alias) => SQL, paging: (alias: Alias) => SQL): SQL | null {
  const rules = model.policy.select;
  const params = scope.params;
  if (!scope.perSubscriber || !params || rules === 'public' || model.table.primaryKey.length !== 1) return null;
  const independent: CompiledRule[] = [];
  const dependent: CompiledRule[] = [];
  for (const r of rules) (rowIndependent(r.rule) ? independent : dependent).push(r);
  if (independent.length === 0 || dependent.length === 0) return null;
  const key = model.primaryKey[0]!.name;
  const rowsWhere = (where: (row: Alias) => SQL[]) => {
    const row = Symbol(model.name);
    return sql`(SELECT ${sql.identifier(row)}.* FROM ${tableRef(scope, model.name)} AS ${sql.identifier(row)} WHERE ${and([...where(row), filter(row)])}${paging(row)})`;
  };
  const everything = (row: Alias) => or(independent.map(({ rule }) => scope.api.rules.rule(model.name, rule, row, params)));
  // The row itself is filtered in its branch; the keys need not be.
  return sql`(${rowsWhere((row) => [everything(row)])} UNION ALL ${rowsWhere((row) => [sql`(${everything(row)}) IS NOT TRUE`, sql`${sql.identifier(row, key)} = ANY(ARRAY(${keysFound(scope, model, dependent, params, null)}))`])})`;
}

/** Whether a caller's `where` on `model` must wait for visibility (see `fenced`). */
export function needsFence(scope: Scope, model: TableModel, where: unknown): boolean {
  const conditions = !!where && typeof where === 'object' && Object.values(where).some((v) => v !== undefined);
  return conditions && scope.params !== null && model.policy.select !== 'public';
}

/**
 * The rows of `fromItem` (`<table> AS alias`) that satisfy `visibility`, in a form on which a
 * caller's `where` may be tested. When the caller is restricted on the table and gave a filter,
 * the visible rows are a subquery with `OFFSET 0`: PostgreSQL never pulls such a subquery up nor
 * pushes an outer condition into it (a LIMIT/OFFSET changes which rows it returns), so the filter
 * runs only on rows already proven visible, whatever plan is chosen. The values in filters are
 * checked so they cannot raise (input.ts); this fence is what keeps it so for any expression a
 * filter may hold, including the rules' own casts over stored data. The price: a filter's own
 * index cannot drive the read (the rules' lookups do), measured in bench:query.
 * Unrestricted (an admin, a public table) there is nothing to hide and nothing changes.
 */
export function fenced(scope: Scope, model: TableModel, where: unknown, fromItem: SQL, alias: Alias, visibility: SQL): { from: SQL; alias: Alias; visibility: SQL } {
  if (!needsFence(scope, model, where)) return { from: fromItem, alias, visibility };
  const proven = Symbol(`${model.name}_visible`);
  return { from: sql`(SELECT ${sql.identifier(alias)}.* FROM ${fromItem} WHERE ${visibility} OFFSET 0) AS ${sql.identifier(proven)}`, alias: proven, visibility: sql.true };
}

/**
 * `visibility AND filter` for one row image (the live engine's test of a changed row), with the
 * filter evaluated only when the row is visible: CASE is the one construct whose evaluation order
 * PostgreSQL documents (a WHEN's result is computed only if its condition holds).
 */
export function visibleAnd(visibility: SQL, filter: SQL): SQL {
  if (filter === sql.true || visibility === sql.true) return and([visibility, filter]);
  return sql`(CASE WHEN ${visibility} THEN ${filter} ELSE false END)`;
}

/** The row `alias` has the primary key given in `values` (checked, so a lookup cannot raise). */
export function pkMatch(scope: Scope, model: TableModel, alias: Alias, values: Record<string, unknown>): SQL {
  return and(model.primaryKey.map((k) => sql`${sql.identifier(alias, k.name)} = ${bindValue(scope, k, checkedValue(k, values[k.name], `${model.name}.${k.name}`))}`));
}

/** `a.x = b.y AND …` for a relationship from `from` (alias of the source) to `to` (alias of the target). */
export function joinCondition(rel: Relationship, from: Alias, to: Alias): SQL {
  return and(rel.on.map(([mine, theirs]) => sql`${sql.identifier(from, mine)} = ${sql.identifier(to, theirs)}`));
}

export function column(model: TableModel, name: string): ColumnModel {
  const col = model.columns.find((c) => c.name === name);
  if (!col) throw new Error(`${model.name} has no column ${name}`);
  return col;
}

/**
 * A column the caller reads, filters, sorts or aggregates on. The schema already offers only these;
 * this second check keeps an unreadable column out of every read path even if a type offered it.
 */
export function readableColumn(model: TableModel, name: string): ColumnModel {
  const col = model.readable.find((c) => c.name === name);
  if (!col) throw badInput(`field "${name}" not found in type: '${model.name}'`);
  return col;
}

/** A caller's value bound as a parameter, cast to the column's type. Never spliced into SQL text. */
export function bindValue(scope: Scope, col: ColumnModel, value: unknown): SQL {
  const json = !col.scalar.list && (col.scalar.name === 'json' || col.scalar.name === 'jsonb');
  if (json) return sql`${scope.binder.text(value === null || value === undefined ? null : JSON.stringify(value))}::${typeSql(col.type)}`;
  const text = toText(value);
  const bound = Array.isArray(text) ? scope.binder.textArray(text) : scope.binder.text(text);
  return sql`${bound}::${typeSql(col.type)}`;
}

/** The PostgreSQL text form of a GraphQL input value (already validated by its scalar). */
export function toText(value: unknown): string | null | (string | null)[] {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map((v) => (v === null || v === undefined ? null : scalarText(v)));
  return scalarText(value);
}

function scalarText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

export function badInput(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}
