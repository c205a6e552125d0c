import type { CompiledRules, RuleSet } from '../rules/index.ts';
import { buildModel } from '../schema/index.ts';
import { loadAll, undeclaredClaimWarnings } from './context.ts';

function describe(set: RuleSet | null | undefined): string {
  if (set === null || set === undefined) return '—';
  return set === 'public' ? 'public' : `${set.length} rule${set.length === 1 ? '' : 's'}`;
}

export function summary(rules: CompiledRules): string[] {
  return [...rules.policies.values()].map((p) => {
    const reads = [...rules.readsTables(p.table)].filter((t) => t !== p.table);
    const parts = [
      `select ${describe(p.select)}`,
      `insert ${p.insert ? describe(p.insert.check) : '—'}`,
      `update ${p.update ? describe(p.update.filter ?? 'public') : '—'}`,
      `delete ${describe(p.delete)}`,
    ];
    return `${p.table}: ${parts.join(', ')}${reads.length ? `; reads ${reads.join(', ')}` : ''}`;
  });
}

/** `rowgate check`: one line per table when every rule is sound (exit 0), else every problem (exit 1). */
export async function check(configPath: string): Promise<number> {
  const { config, catalog, rules, db } = await loadAll(configPath);
  try {
    // The API model checks what the rules do not: that every relationship rename names one.
    buildModel(config, catalog, rules);
    for (const warning of undeclaredClaimWarnings(config, rules)) process.stderr.write(`${warning}\n`);
    for (const line of summary(rules)) console.log(line);
    // A misspelt parameter (`:sendr`) is a claim no token carries: it is null, and its rule matches nothing.
    const claims = rules.claimsRead();
    if (claims.length) console.log(`claims read from the caller's token (null when a token lacks one): ${claims.map((c) => `:${c}`).join(', ')}`);
    console.log(`ok: ${rules.policies.size} table${rules.policies.size === 1 ? '' : 's'}, every rule valid`);
    return 0;
  } finally {
    await db.close();
  }
}
