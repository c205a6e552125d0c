import { loadConfig } from '../config/index.ts';
import { captureStatus, installCapture, removeCapture } from '../db/changes/index.ts';
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

/** `rowgate capture [--drop | --status]`: installs (or removes, or reports) change capture; prints what changed. */
export async function capture(configPath: string, action: 'install' | 'drop' | 'status'): Promise<number> {
  if (action !== 'install') {
    // Removing and reporting need no valid rules: they must work for a config that no longer loads.
    const config = await loadConfig(configPath);
    const db = await openForCommand(config);
    try {
      if (action === 'status') return await printStatus(db.sql);
      const { removed } = await removeCapture(db.sql, config.database.schema);
      console.log(`capture removed${removed.length ? ` from ${removed.join(', ')}` : ''}; replication slot and publication dropped; schema rowgate dropped`);
      return 0;
    } finally {
      await db.close();
    }
  }
  const { config, catalog, rules, db } = await loadAll(configPath);
  try {
    const { tables, views } = capturedTables(rules, catalog, Object.keys(config.tables));
    const report = await installCapture(db.sql, config.database.schema, tables, config.changeLog.capture);
    console.log(`mode: ${report.mode}`);
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

/** `--status`: mode, slot (state, whether a reader streams it), confirmed LSN and the WAL the slot makes the server keep. */
async function printStatus(db: Parameters<typeof captureStatus>[0]): Promise<number> {
  const status = await captureStatus(db);
  console.log(`mode: ${status.mode}`);
  if (status.mode !== 'wal') return 0;
  const slot = status.slotState;
  console.log(`slot: ${status.slot} (${slot ? `${slot.walStatus ?? 'unknown'}, ${slot.active ? 'streaming' : 'no reader'}` : 'missing: the next reader recreates it and subscribers resync'})`);
  console.log(`confirmed lsn: ${slot?.confirmedLsn ?? '-'}`);
  console.log(`retained wal bytes: ${slot?.retainedBytes ?? '-'}`);
  return 0;
}
