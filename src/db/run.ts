import { sql as pgsql, type SQL } from 'pg-sql2';
import type { Sql } from './connect.ts';
import type { PreparedStatements } from './prepared.ts';

/**
 * The one place SQL text reaches PostgreSQL through `unsafe`. The text comes only from pg-sql2
 * fragments (our templates, identifiers from the catalog, and the rule compiler's output built
 * from a parsed AST); every value, from whatever source, travels separately as a bound `$n`.
 */
export function compileSql(query: SQL): { text: string; values: unknown[] } {
  const { text, values } = pgsql.compile(query);
  return { text, values };
}

/**
 * Runs `query`; prepared when `prepared` admits its text (a recurring caller-independent shape).
 * `bind` gives the values to send for the compiled ones (a caller's, for SQL built with slots).
 */
export function runSql<T extends object = Record<string, unknown>>(db: Sql, query: SQL, prepared?: PreparedStatements, bind?: (values: unknown[]) => unknown[]): Promise<T[]> {
  return runCompiledSql<T>(db, compileSql(query), prepared, bind);
}

/** As runSql, for SQL compiled once (by compileSql) and run many times. */
export function runCompiledSql<T extends object = Record<string, unknown>>(db: Sql, compiled: { text: string; values: unknown[] }, prepared?: PreparedStatements, bind?: (values: unknown[]) => unknown[]): Promise<T[]> {
  const { text, values } = compiled;
  return db.unsafe<T[]>(text, (bind ? bind(values) : values) as never[], { prepare: prepared?.admit(text) ?? false });
}

/** Parse and plan without executing: surfaces type errors of generated SQL. */
export async function describeSql(db: Sql, query: SQL): Promise<void> {
  const { text, values } = compileSql(query);
  await db.unsafe(text, values as never[]).describe();
}
