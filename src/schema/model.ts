import { ConfigError, type Config } from '../config/index.ts';
import { baseTables, computedFunction, rootFunction, type Catalog, type Column, type FunctionInfo, type Table } from '../db/index.ts';
import type { CompiledRules, TablePolicy } from '../rules/index.ts';
import { plural } from './naming.ts';
import { scalarFor, type ScalarInfo } from './scalars.ts';

/**
 * What the GraphQL API exposes of each listed table, decided once from the catalog, the config
 * and the compiled rules. The schema builder and the SQL compiler both read this, so a field
 * exists in the schema exactly when the compiler knows how to answer it.
 */

export interface ColumnModel extends Column {
  scalar: ScalarInfo;
}

export interface Relationship {
  name: string;
  kind: 'object' | 'array';
  /** The table on the other side. */
  target: string;
  /** Pairs of (column of this table, column of the target) that must be equal. */
  on: [string, string][];
}

export interface TableModel {
  name: string;
  table: Table;
  policy: TablePolicy;
  /** Every column: what rules, presets and writes may use. */
  columns: ColumnModel[];
  /** The columns a caller may read, filter, sort and aggregate on (`selectColumns`). */
  readable: ColumnModel[];
  /** Rows per list or aggregate at most (`selectLimit`), or null. */
  selectLimit: number | null;
  primaryKey: ColumnModel[];
  relationships: Relationship[];
  /** Fields computed by a function of the row (`computedFields`), read only in the selection. */
  computed: ComputedField[];
}

export interface RootFunction {
  name: string;
  fn: FunctionInfo;
  /** The listed table whose rows it returns, and whose rules apply to them. */
  table: string;
  /** Its arguments as column-like inputs (validated and bound as column values are). */
  args: ColumnModel[];
}

export interface ComputedField {
  name: string;
  fn: FunctionInfo;
  /** The function's second argument takes the caller's claims as json. */
  session: boolean;
  scalar: ScalarInfo;
}

export interface ApiModel {
  schema: string;
  tables: Map<string, TableModel>;
  rules: CompiledRules;
  maxRows: number;
  maxTotalRows: number;
  /** Levels of a mutation's nested inserts at most (`limits.maxDepth`, as for a query's fields). */
  maxDepth: number;
  /** limits.preparedStatements: query shapes run as prepared statements. */
  preparedStatements: number;
  /** Every table a listed or rule-read relation reads, itself included (a view: its base tables). */
  reads: (table: string) => string[];
  /** The catalog's entry of any relation of the schema, listed or not (rules read unlisted ones). */
  relation: (name: string) => Table | undefined;
  /** SQL functions exposed as root query fields (`functions`), each returning rows of a listed table. */
  functions: RootFunction[];
  /** Names of the query, mutation and subscription types. */
  rootTypes: { query: string; mutation: string; subscription: string };
}

export function buildModel(config: Pick<Config, 'tables' | 'limits' | 'database' | 'graphql'> & Partial<Pick<Config, 'functions'>>, catalog: Catalog, rules: CompiledRules): ApiModel {
  const tables = new Map<string, TableModel>();
  for (const policy of rules.policies.values()) {
    const table = catalog.tables.get(policy.table)!;
    const columns = table.columns.map((c) => ({ ...c, scalar: scalarFor(c.type, catalog) }));
    const tc = config.tables[policy.table];
    const readable = tc?.selectColumns ? columns.filter((c) => tc.selectColumns!.includes(c.name)) : columns;
    tables.set(policy.table, {
      name: policy.table,
      table,
      policy,
      columns,
      readable,
      selectLimit: tc?.selectLimit ?? null,
      // A view's declared key (checked in compile.ts) stands for the PRIMARY KEY it cannot have.
      primaryKey: (table.kind === 'view' && tc?.primaryKey ? tc.primaryKey : table.primaryKey).map((k) => columns.find((c) => c.name === k)!),
      relationships: [],
      // Checked when the rules compiled (compile.ts): every entry names a usable function.
      computed: Object.entries(tc?.computedFields ?? {}).flatMap(([name, spec]) => {
        const fn = computedFunction(catalog, policy.table, spec.function, spec.session);
        return typeof fn === 'string' ? [] : [{ name, fn, session: spec.session, scalar: scalarFor(catalog.types.get(fn.returns.name)!, catalog) }];
      }),
    });
  }

  // Relationships only between exposed tables: an unlisted table is private, even as a neighbour.
  for (const model of tables.values()) {
    for (const fk of model.table.foreignKeys) {
      const target = tables.get(fk.refTable);
      if (!target) continue;
      // A relationship joined on an unreadable column would reveal its values (which row it points to).
      const readable = (m: TableModel, names: string[]) => names.every((n) => m.readable.some((c) => c.name === n));
      if (!readable(model, fk.columns) || !readable(target, fk.refColumns)) continue;
      const single = fk.columns.length === 1 ? fk.columns[0]! : null;
      const objectName = single?.endsWith('_id') && single.length > 3 ? single.slice(0, -3) : fk.refTable;
      addRelationship(model, { name: objectName, kind: 'object', target: fk.refTable, on: fk.columns.map((c, i) => [c, fk.refColumns[i]!]) }, fk.columns);
      addRelationship(target, { name: plural(model.name), kind: 'array', target: model.name, on: fk.refColumns.map((c, i) => [c, fk.columns[i]!]) }, fk.columns);
    }
  }

  // Overrides: `relationships: { "<generated name>": "<name>" }` in the table's config. A name
  // that is not generated would be silently ignored, leaving the generated one in the API.
  const unknown: string[] = [];
  for (const model of tables.values()) {
    const renames = config.tables[model.name]?.relationships ?? {};
    const generated = model.relationships.map((r) => r.name);
    for (const name of Object.keys(renames)) {
      if (generated.includes(name)) continue;
      const known = generated.length ? `its relationships are ${generated.map((n) => `"${n}"`).join(', ')}` : 'it has none (they come from foreign keys between listed tables, on readable columns)';
      unknown.push(`  tables.${model.name}.relationships: "${name}" is not a relationship of ${model.name}; ${known}`);
    }
    for (const rel of model.relationships) {
      const renamed = renames[rel.name];
      if (renamed) rel.name = renamed;
    }
  }
  if (unknown.length) throw new ConfigError(`the config renames relationships that do not exist:\n${unknown.join('\n')}`);
  const rootTypes =
    config.graphql.rootTypeNames === 'hasura'
      ? { query: 'query_root', mutation: 'mutation_root', subscription: 'subscription_root' }
      : { query: 'Query', mutation: 'Mutation', subscription: 'Subscription' };
  // Checked when the rules compiled (compile.ts).
  const functions = (config.functions ?? []).flatMap((name): RootFunction[] => {
    const fn = rootFunction(catalog, name, new Set(tables.keys()));
    if (typeof fn === 'string') return [];
    const args = fn.argTypes.map((t, i) => {
      const type = catalog.types.get(t)!;
      return { name: fn.argNames[i]!, type, nullable: true, hasDefault: false, generated: false, scalar: scalarFor(type, catalog) } as ColumnModel;
    });
    return [{ name, fn, table: fn.returns.name, args }];
  });
  return { schema: catalog.schema, tables, rules, functions, maxRows: config.limits.maxRows, maxTotalRows: config.limits.maxTotalRows, maxDepth: config.limits.maxDepth, preparedStatements: config.limits.preparedStatements, rootTypes, reads: (t) => baseTables(catalog, t), relation: (t) => catalog.tables.get(t) };
}

/** Adds a relationship, making its name unique deterministically: a clash gets `_by_<fk columns>`. */
function addRelationship(model: TableModel, rel: Relationship, fkColumns: string[]): void {
  const taken = (n: string) => model.columns.some((c) => c.name === n) || model.relationships.some((r) => r.name === n);
  if (taken(rel.name)) rel.name = `${rel.name}_by_${fkColumns.join('_')}`;
  while (taken(rel.name)) rel.name = `${rel.name}_`;
  model.relationships.push(rel);
}

/**
 * Whether an insert into `model` may carry `rel` (a nested insert): the target declares `insert`,
 * and the foreign key columns, which the nesting fills (this row's for an object relationship,
 * the target's for an array one), are neither preset by their table's insert rules (the rule
 * owner fixed them) nor generated. The schema offers exactly these fields and the resolver
 * refuses any other.
 */
export function nestedInsert(api: Pick<ApiModel, 'tables'>, model: TableModel, rel: Relationship): boolean {
  const target = api.tables.get(rel.target);
  if (!model.policy.insert || !target?.policy.insert) return false;
  const holder = rel.kind === 'object' ? model : target;
  const fk = rel.on.map(([mine, theirs]) => (rel.kind === 'object' ? mine : theirs));
  return fk.every((name) => !(name in holder.policy.insert!.set) && !holder.columns.find((c) => c.name === name)?.generated);
}
