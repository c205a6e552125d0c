import { sql as pgsql } from 'pg-sql2';
import { parseConfig } from '../../src/config/index.ts';
import { callerParams, compileRules, loadParser, verifyRules, type CompiledRules, type Identity } from '../../src/rules/index.ts';
import type { TestDatabase } from './db.ts';

/** Compiles `tables` (the config's `tables` section, with other sections in `rest`) against the test database, as startup does. */
export async function compile(db: TestDatabase, tables: Record<string, unknown>, rest: Record<string, unknown> = {}): Promise<CompiledRules> {
  await loadParser();
  const config = parseConfig({ tables, ...rest }, {});
  const rules = compileRules(config, await db.catalog());
  await verifyRules(db.sql, rules);
  return rules;
}

/** The compiled visibility of `table` for one caller, as SQL text and bound values. */
export function visibilityQuery(rules: CompiledRules, table: string, identity: Identity, key = 'id') {
  const row = Symbol(table);
  return pgsql.compile(
    pgsql`SELECT ${pgsql.identifier(row, key)}::text AS k FROM ${pgsql.identifier(rules.schema, table)} AS ${pgsql.identifier(row)} WHERE ${rules.visibility(table, row, callerParams(identity))} ORDER BY 1`,
  );
}

/** The keys of the rows of `table` that `identity` may see, sorted. */
export async function visible(db: TestDatabase, rules: CompiledRules, table: string, identity: Identity, key = 'id'): Promise<string[]> {
  const { text, values } = visibilityQuery(rules, table, identity, key);
  const rows = await db.sql.unsafe<{ k: string }[]>(text, values as never[]);
  return rows.map((r) => r.k);
}

export const as = (sender: string | null, claims: Record<string, unknown> = {}): Identity => ({ sender, claims: { sub: sender, ...claims } });
