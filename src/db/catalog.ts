import type { Sql } from './connect.ts';

/** A PostgreSQL type as the rule compiler and the schema builder need it. */
export interface TypeRef {
  schema: string;
  /** `pg_type.typname`: int4, text, uuid, _int4 for arrays … */
  name: string;
  /** `pg_type.typcategory`: N numeric, S string, B boolean, D date/time, U user, E enum, A array … */
  category: string;
  /** Labels of an enum type, in order; empty otherwise. */
  enumLabels: string[];
}

export interface Column {
  name: string;
  type: TypeRef;
  nullable: boolean;
  hasDefault: boolean;
  /** Identity or generated columns cannot be written by callers. */
  generated: boolean;
}

export interface ForeignKey {
  name: string;
  columns: string[];
  refTable: string;
  refColumns: string[];
}

export interface Table {
  name: string;
  kind: 'table' | 'view';
  columns: Column[];
  primaryKey: string[];
  uniques: { name: string; columns: string[] }[];
  foreignKeys: ForeignKey[];
  /** For a view: the tables and views of the schema its query reads (directly); empty for a table. */
  reads: string[];
}

export interface FunctionInfo {
  schema: string;
  name: string;
  nargs: number;
  variadic: boolean;
  /** i immutable, s stable, v volatile */
  volatility: 'i' | 's' | 'v';
  /** f function, a aggregate, w window, p procedure */
  kind: string;
  /** `pg_type.typname` of each argument, in order (a table's row type is named as the table). */
  argTypes: string[];
  /** Names of the arguments, in order ('' for an unnamed one). */
  argNames: string[];
  /** Its return type, and whether it returns a set. */
  returns: TypeRef;
  returnsSet: boolean;
  /**
   * For the configured schema's functions, a digest of what CREATE OR REPLACE may change without
   * changing the signature (body, language, SET options, SECURITY DEFINER, strictness, cost):
   * a reload tells by it that a computed field's or a root function's definition was replaced.
   * null for pg_catalog's.
   */
  digest: string | null;
}

export interface Catalog {
  schema: string;
  tables: Map<string, Table>;
  /** Functions of pg_catalog and of the configured schema, by name. */
  functions: Map<string, FunctionInfo[]>;
  /** Types of pg_catalog and of the configured schema, by name: casts in rules resolve here. */
  types: Map<string, TypeRef>;
}

/** `name` and, if it is a view, every table it reads, through views of views: what capture must watch. */
export function baseTables(catalog: Catalog, name: string): string[] {
  const seen = new Set<string>();
  const visit = (n: string): void => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const r of catalog.tables.get(n)?.reads ?? []) visit(r);
  };
  visit(name);
  return [...seen];
}

export function column(table: Table, name: string): Column | undefined {
  return table.columns.find((c) => c.name === name);
}

interface ColumnRow {
  table: string;
  kind: string;
  column: string;
  type_schema: string;
  type_name: string;
  category: string;
  enum_labels: string[] | null;
  not_null: boolean;
  has_default: boolean;
  generated: boolean;
}

interface ConstraintRow {
  table: string;
  name: string;
  type: string;
  columns: string[];
  ref_table: string | null;
  ref_columns: string[] | null;
}

/** Reads tables, columns, keys, functions and types of `schema` from the live catalog. */
export async function readCatalog(sql: Sql, schema: string): Promise<Catalog> {
  const columns = await sql<ColumnRow[]>`
    SELECT c.relname AS table, c.relkind AS kind, a.attname AS column,
           tn.nspname AS type_schema, t.typname AS type_name, t.typcategory AS category,
           (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS enum_labels,
           a.attnotnull AS not_null, a.atthasdef AS has_default,
           (a.attidentity <> '' OR a.attgenerated <> '') AS generated
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_type t ON t.oid = a.atttypid
      JOIN pg_namespace tn ON tn.oid = t.typnamespace
     WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     ORDER BY c.relname, a.attnum`;

  const constraints = await sql<ConstraintRow[]>`
    SELECT c.relname AS table, k.conname AS name, k.contype AS type,
           ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i) AS columns,
           r.relname AS ref_table,
           CASE WHEN k.contype = 'f' THEN
             ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
           END AS ref_columns
      FROM pg_constraint k
      JOIN pg_class c ON c.oid = k.conrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_class r ON r.oid = k.confrelid
     WHERE n.nspname = ${schema} AND k.contype IN ('p', 'u', 'f')
     ORDER BY c.relname, k.conname`;

  // A view's query is its rewrite rule; the relations that rule depends on are what it reads.
  const viewReads = await sql<{ view: string; reads: string }[]>`
    SELECT DISTINCT v.relname AS view, t.relname AS reads
      FROM pg_rewrite r
      JOIN pg_class v ON v.oid = r.ev_class
      JOIN pg_namespace n ON n.oid = v.relnamespace
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
      JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid
      JOIN pg_namespace tn ON tn.oid = t.relnamespace
     WHERE n.nspname = ${schema} AND tn.nspname = ${schema} AND v.relkind IN ('v', 'm')
     ORDER BY 1, 2`;

  const functions = await sql<
    { schema: string; name: string; nargs: number; variadic: boolean; volatility: 'i' | 's' | 'v'; kind: string; arg_types: string[]; arg_names: string[]; ret_schema: string; ret_name: string; ret_category: string; returns_set: boolean; digest: string | null }[]
  >`
    SELECT n.nspname AS schema, p.proname AS name, p.pronargs::int AS nargs,
           p.provariadic <> 0 AS variadic, p.provolatile AS volatility, p.prokind AS kind,
           ARRAY(SELECT t.typname::text FROM unnest(p.proargtypes) WITH ORDINALITY AS a(oid, i) JOIN pg_type t ON t.oid = a.oid ORDER BY a.i) AS arg_types,
           COALESCE(p.proargnames[1:p.pronargs], '{}')::text[] AS arg_names,
           rn.nspname AS ret_schema, rt.typname AS ret_name, rt.typcategory AS ret_category, p.proretset AS returns_set,
           CASE WHEN n.nspname = ${schema} THEN md5(concat_ws(E'\\n', p.prolang::text, p.prosrc, p.probin, p.proconfig::text, p.prosecdef::text, p.proisstrict::text, p.proleakproof::text, p.procost::text, p.prorows::text, p.proparallel::text)) END AS digest
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      JOIN pg_type rt ON rt.oid = p.prorettype JOIN pg_namespace rn ON rn.oid = rt.typnamespace
     WHERE n.nspname IN ('pg_catalog', ${schema})
     -- In a stable order: a reload compares catalogs read at two times (server/reload.ts), and a
     -- replaced function's row moves in the table.
     ORDER BY n.nspname, p.proname, p.oid`;

  const types = await sql<{ schema: string; name: string; category: string; enum_labels: string[] | null }[]>`
    SELECT n.nspname AS schema, t.typname AS name, t.typcategory AS category,
           (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS enum_labels
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname IN ('pg_catalog', ${schema}) AND t.typtype IN ('b', 'e', 'd', 'r', 'm')
     ORDER BY n.nspname, t.typname`;

  const tables = new Map<string, Table>();
  for (const row of columns) {
    let table = tables.get(row.table);
    if (!table) {
      table = { name: row.table, kind: row.kind === 'v' || row.kind === 'm' ? 'view' : 'table', columns: [], primaryKey: [], uniques: [], foreignKeys: [], reads: [] };
      tables.set(row.table, table);
    }
    table.columns.push({
      name: row.column,
      type: { schema: row.type_schema, name: row.type_name, category: row.category, enumLabels: row.enum_labels ?? [] },
      nullable: !row.not_null,
      hasDefault: row.has_default,
      generated: row.generated,
    });
  }
  for (const row of constraints) {
    const table = tables.get(row.table);
    if (!table) continue;
    if (row.type === 'p') table.primaryKey = row.columns;
    if (row.type === 'p' || row.type === 'u') table.uniques.push({ name: row.name, columns: row.columns });
    if (row.type === 'f' && row.ref_table && row.ref_columns && tables.has(row.ref_table)) {
      table.foreignKeys.push({ name: row.name, columns: row.columns, refTable: row.ref_table, refColumns: row.ref_columns });
    }
  }

  for (const row of viewReads) tables.get(row.view)?.reads.push(row.reads);

  const fnMap = new Map<string, FunctionInfo[]>();
  for (const fn of functions) {
    const list = fnMap.get(fn.name) ?? [];
    list.push({
      schema: fn.schema,
      name: fn.name,
      nargs: fn.nargs,
      variadic: fn.variadic,
      volatility: fn.volatility,
      kind: fn.kind,
      argTypes: fn.arg_types,
      argNames: fn.arg_types.map((_, i) => fn.arg_names[i] ?? ''),
      returns: { schema: fn.ret_schema, name: fn.ret_name, category: fn.ret_category, enumLabels: [] },
      returnsSet: fn.returns_set,
      digest: fn.digest,
    });
    fnMap.set(fn.name, list);
  }
  const typeMap = new Map<string, TypeRef>();
  for (const t of types) {
    // The configured schema shadows pg_catalog only for names pg_catalog lacks, like search_path does.
    if (typeMap.has(t.name) && t.schema !== 'pg_catalog') continue;
    typeMap.set(t.name, { schema: t.schema, name: t.name, category: t.category, enumLabels: t.enum_labels ?? [] });
  }
  return { schema, tables, functions: fnMap, types: typeMap };
}
