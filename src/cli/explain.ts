import { sql } from 'pg-sql2';
import { callerParams, type CompiledRules, type Identity, type RuleSet } from '../rules/index.ts';
import { loadAll } from './context.ts';

export function explainTable(rules: CompiledRules, table: string, identity: Identity): string {
  const policy = rules.policy(table);
  if (!policy) throw new Error(`table "${table}" is not listed under "tables" in the config, so it is not exposed`);
  const params = callerParams(identity);
  const sections: [string, RuleSet | null][] = [
    ['visibility (select)', policy.select],
    ['insert check', policy.insert?.check ?? null],
    ['update filter', policy.update ? (policy.update.filter ?? 'public') : null],
    ['update check', policy.update ? (policy.update.check ?? 'public') : null],
    ['delete', policy.delete],
  ];
  const out: string[] = [];
  for (const [title, set] of sections) {
    if (set === null) {
      out.push(`-- ${title}: not declared`);
      continue;
    }
    const row = Symbol(table);
    const predicate = rules.ruleSet(table, set, row, params);
    // Visibility of the target itself also applies to update filters and deletes (docs/rules.md).
    const query = sql`SELECT ${sql.identifier(row)}.* FROM ${sql.identifier(rules.schema, table)} AS ${sql.identifier(row)} WHERE ${predicate}`;
    const { text, values } = sql.compile(query);
    out.push(`-- ${title}`, `${text};`);
    values.forEach((v, i) => out.push(`--   $${i + 1} = ${JSON.stringify(v)}`));
  }
  return out.join('\n');
}

/** `rowgate explain`: the compiled SQL with `$n` placeholders and, separately, the values bound to them. */
export async function explain(configPath: string, table: string, sender: string | null, claimsJson: string | undefined): Promise<number> {
  let claims: Record<string, unknown> = {};
  if (claimsJson) {
    const parsed: unknown = JSON.parse(claimsJson);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('--claims must be a JSON object');
    claims = parsed as Record<string, unknown>;
  }
  const { rules, db } = await loadAll(configPath);
  try {
    console.log(explainTable(rules, table, { sender, claims }));
    return 0;
  } finally {
    await db.close();
  }
}
