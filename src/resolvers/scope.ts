import { GraphQLError } from 'graphql';
import { sql, type SQL } from 'pg-sql2';
import type { ApiModel, ColumnModel, Relationship, TableModel } from '../schema/model.ts';
import { and, callerParams, typeSql, type Alias, type Caller, type ParamSource } from '../rules/index.ts';

/** What compiling one request needs: the API model and, unless the caller is the admin, its parameters. */
export interface Scope {
  api: ApiModel;
  /** null for the admin, whom no rule filters. */
  params: ParamSource | null;
}

export function scopeFor(api: ApiModel, caller: Caller): Scope {
  return { api, params: caller.admin ? null : callerParams(caller.identity) };
}

export function tableModel(scope: Scope, name: string): TableModel {
  const model = scope.api.tables.get(name);
  if (!model) throw new Error(`table ${name} is not exposed`);
  return model;
}

export function tableRef(scope: Scope, table: string): SQL {
  return sql.identifier(scope.api.schema, table);
}

/** The caller's visibility of `table`'s row `alias`; every read of a table goes through this. */
export function visible(scope: Scope, table: string, alias: Alias): SQL {
  return scope.params ? scope.api.rules.visibility(table, alias, scope.params) : sql.true;
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

/** A caller's value bound as a parameter, cast to the column's type. Never spliced into SQL text. */
export function bindValue(col: ColumnModel, value: unknown): SQL {
  const json = !col.scalar.list && (col.scalar.name === 'json' || col.scalar.name === 'jsonb');
  const text = json ? (value === null || value === undefined ? null : JSON.stringify(value)) : toText(value);
  // Bound as text and cast: postgres.js serializes a parameter for the type PostgreSQL infers,
  // and its serializers do not all accept text (bool turns 'true' into false, json re-encodes).
  return sql`${sql.value(text)}::text::${typeSql(col.type)}`;
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
