import { sql as pgsql } from 'pg-sql2';
import { describeSql, type Catalog, type Sql } from '../db/index.ts';
import { callerParams } from './bind.ts';
import { analyzeRules, type CompiledRules, type RuleSet } from './compile.ts';
import { RuleConfigError, type RuleProblem } from './errors.ts';

/**
 * The rules of `config` compiled against `catalog` and planned by PostgreSQL, as startup, `check`
 * and a reload need them: every round's problems at once (structure and cycles, then planning of
 * the rules that compiled; a rule with a structural problem is not planned, nor one reading a
 * cycle), thrown together as one RuleConfigError.
 */
export async function checkedRules(db: Sql, config: Parameters<typeof analyzeRules>[0], catalog: Catalog): Promise<CompiledRules> {
  const { rules, problems, cyclic } = analyzeRules(config, catalog);
  problems.push(...(await planRules(db, rules, cyclic)));
  if (problems.length) throw new RuleConfigError(problems);
  return rules;
}

/**
 * Asks PostgreSQL to plan every compiled rule without running it (Parse + Describe), so type
 * errors the catalog alone cannot reveal (`text = integer`, a function with no matching
 * overload) stop startup with the rule they come from, not the first query that uses it.
 */
export async function verifyRules(db: Sql, rules: CompiledRules): Promise<void> {
  const problems = await planRules(db, rules);
  if (problems.length) throw new RuleConfigError(problems);
}

/**
 * The problems PostgreSQL finds planning each rule. A rule that reads a table on a cycle of select
 * rules (`cyclic`, from analyzeRules) is not planned: rendering it would never end.
 */
export async function planRules(db: Sql, rules: CompiledRules, cyclic: ReadonlySet<string> = new Set()): Promise<RuleProblem[]> {
  const nobody = callerParams({ sender: null, claims: {} });
  const problems: RuleProblem[] = [];
  for (const policy of rules.policies.values()) {
    const sets: RuleSet[] = [policy.select, policy.insert?.check ?? 'public', policy.update?.filter ?? [], policy.update?.check ?? [], policy.delete ?? []];
    for (const set of sets) {
      if (set === 'public') continue;
      for (const compiled of set) {
        const { site, rule } = compiled;
        // The rule's own table is read as it is (self-joins); any other table through its select rules.
        if ([...rules.readsTables(policy.table, [compiled])].some((t) => t !== policy.table && cyclic.has(t))) continue;
        const row = Symbol(policy.table);
        const query = pgsql`SELECT 1 FROM ${pgsql.identifier(rules.schema, policy.table)} AS ${pgsql.identifier(row)} WHERE ${rules.rule(policy.table, rule, row, nobody)}`;
        try {
          await describeSql(db, query);
        } catch (err) {
          const e = err as { message?: string; hint?: string };
          problems.push({
            site,
            position: null,
            message: `PostgreSQL rejects this rule: ${e.message ?? String(err)}`,
            hint: e.hint ?? 'Make both sides of each comparison the same type, e.g. with a cast: `col::text = :sender`.',
          });
        }
      }
    }
  }
  return problems;
}
