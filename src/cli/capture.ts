import { loadConfig } from '../config/index.ts';
import { installCapture, removeCapture } from '../db/changes/index.ts';
import { baseTables } from '../db/index.ts';
import type { CompiledRules } from '../rules/index.ts';
import type { Catalog } from '../db/index.ts';
import { loadAll } from './context.ts';
import { openForCommand } from './database.ts';

/** Every table whose changes can change what a subscriber sees: the listed ones and every table their rules read. */
export function capturedTables(rules: CompiledRules, catalog: Catalog, listed: string[]): { tables: string[]; views: string[] } {
  const all = new Set<string>();
  const add = (t: string) => baseTables(catalog, t).forEach((b) => all.add(b));
  listed.forEach(add);
  for (const policy of rules.policies.values()) for (const t of rules.readsTables(policy.table)) add(t);
  const tables: string[] = [];
  const views: string[] = [];
  for (const name of [...all].sort()) (catalog.tables.get(name)?.kind === 'view' ? views : tables).push(name);
  return { tables, views };
}

/** `rowgate capture [--drop]`: installs (or removes) change capture; prints what changed. */
export async function capture(configPath: string, drop: boolean): Promise<number> {
  if (drop) {
    // Removing needs no valid rules: it must work for a config that no longer loads.
    const config = await loadConfig(configPath);
    const db = await openForCommand(config);
    try {
      const { removed } = await removeCapture(db.sql, config.database.schema);
      console.log(`capture removed${removed.length ? ` from ${removed.join(', ')}` : ''}; schema rowgate dropped`);
      return 0;
    } finally {
      await db.close();
    }
  }
  const { config, catalog, rules, db } = await loadAll(configPath);
  try {
    const { tables, views } = capturedTables(rules, catalog, Object.keys(config.tables));
    const report = await installCapture(db.sql, config.database.schema, tables);
    for (const t of report.installed) console.log(`installed: ${t}`);
    for (const t of report.unchanged) console.log(`unchanged: ${t}`);
    for (const t of report.removed) console.log(`removed:   ${t}`);
    for (const v of views) console.log(`skipped:   ${v} (a view; the tables it reads are captured)`);
    console.log(`ok: capturing ${tables.length} table${tables.length === 1 ? '' : 's'}`);
    return 0;
  } finally {
    await db.close();
  }
}
