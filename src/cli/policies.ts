import { loadConfig } from '../config/index.ts';
import { applyPolicies, dropPolicies, planPolicies, policyScript } from '../policies/index.ts';
import { loadAll } from './context.ts';
import { openForCommand } from './database.ts';

/**
 * `rowgate policies [--apply | --drop]`: prints (default), installs idempotently or removes the
 * native PostgreSQL row-level security policies equivalent to the configured rules.
 */
export async function policies(configPath: string, mode: 'print' | 'apply' | 'drop'): Promise<number> {
  if (mode === 'drop') {
    // Removing needs no valid rules: it must work for a config that no longer loads.
    const config = await loadConfig(configPath);
    const db = await openForCommand(config);
    try {
      const report = await dropPolicies(db.sql, config.database.schema);
      for (const t of report.removed) console.log(`removed:   ${t}`);
      for (const t of report.disabled) console.log(`row level security disabled: ${t}`);
      console.log(`ok: policies removed from ${report.removed.length} table${report.removed.length === 1 ? '' : 's'}`);
      return 0;
    } finally {
      await db.close();
    }
  }
  const { catalog, rules, db } = await loadAll(configPath);
  try {
    const plan = planPolicies(rules, catalog);
    if (mode === 'print') {
      console.log(policyScript(plan));
      return 0;
    }
    const report = await applyPolicies(db.sql, plan);
    for (const t of report.installed) console.log(`installed: ${t}`);
    for (const t of report.unchanged) console.log(`unchanged: ${t}`);
    for (const t of report.removed) console.log(`removed:   ${t}`);
    for (const t of report.enabled) console.log(`row level security enabled: ${t}`);
    for (const t of report.disabled) console.log(`row level security disabled: ${t}`);
    for (const s of plan.skipped) console.log(`skipped:   ${s.table} (${s.reason})`);
    console.log(`ok: policies on ${plan.tables.length} table${plan.tables.length === 1 ? '' : 's'}`);
    return 0;
  } finally {
    await db.close();
  }
}
