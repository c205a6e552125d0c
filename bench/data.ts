import { readFile } from 'node:fs/promises';
import type { Sql } from '../src/db/index.ts';

export interface Scale {
  accounts: number;
  admins: number;
  groups: number;
  documents: number;
  /** Senders u1…uN rotated over by the load generator; each gets a few extra memberships. */
  senders: number;
}

export function scaleFromEnv(env: NodeJS.ProcessEnv = process.env): Scale {
  const int = (name: string, fallback: number) => {
    const raw = env[name];
    const n = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not "${raw}"`);
    return n;
  };
  const accounts = int('BENCH_ACCOUNTS', 100_000);
  return {
    accounts,
    admins: 50,
    groups: int('BENCH_GROUPS', 10_000),
    documents: int('BENCH_DOCUMENTS', 50_000),
    senders: Math.min(int('BENCH_SENDERS', 1_000), accounts - 50),
  };
}

/**
 * The demo schema (demo/schema.sql without its seed rows), scaled up:
 * - account u1…uN, one player each (levels 1…100), the last 50 accounts are admins;
 * - groups; every other account is a member of one group, and each bench sender of 8 more
 *   (perms 'r' mostly, some 'rw', some 'w' only, which does not let one read);
 * - documents spread over the groups (~5 per group), authors spread over the accounts, and every
 *   20th by a bench sender (who often cannot see its group: the document is shown, its grp is null).
 * A bench sender so sees its own account and player, and ~30-40 documents (20 are asked for).
 */
export async function loadData(sql: Sql, scale: Scale, schemaFile: URL): Promise<Record<string, number>> {
  const text = await readFile(schemaFile, 'utf8');
  const ddl = text.slice(0, text.search(/^INSERT INTO/m));
  await sql.unsafe(ddl);
  const { accounts: N, admins: A, groups: G, documents: D, senders: S } = scale;
  await sql.unsafe(`INSERT INTO account (identity, name) SELECT 'u' || n, 'User ' || n FROM generate_series(1, ${N}) n`);
  await sql.unsafe(`INSERT INTO admin (identity) SELECT 'u' || n FROM generate_series(${N - A + 1}, ${N}) n`);
  await sql.unsafe(`INSERT INTO player (id, level, score) SELECT n, 1 + (n * 37) % 100, (n::bigint * 7919) % 1000003 FROM generate_series(1, ${N}) n`);
  await sql.unsafe(`INSERT INTO grp (name) SELECT 'group ' || g FROM generate_series(1, ${G}) g`);
  const perms = (n: string) => `CASE ${n} % 10 WHEN 0 THEN 'w' WHEN 1 THEN 'rw' ELSE 'r' END`;
  await sql.unsafe(
    `INSERT INTO membership (grp_id, member, perms)
     SELECT 1 + (n * 7919) % ${G}, 'u' || n, ${perms('n')} FROM generate_series(2, ${N}, 2) n`,
  );
  await sql.unsafe(
    `INSERT INTO membership (grp_id, member, perms)
     SELECT 1 + (n * 131 + k * 1237) % ${G}, 'u' || n, ${perms('(n + k)')}
     FROM generate_series(1, ${S}) n, generate_series(1, 8) k
     ON CONFLICT DO NOTHING`,
  );
  await sql.unsafe(
    `INSERT INTO document (grp_id, author, title, body)
     SELECT 1 + (i * 7) % ${G},
            -- every 20th document is by a bench sender, mostly in a group the author is not in
            'u' || CASE WHEN i % 20 = 0 THEN 1 + (i / 20) % ${S} ELSE 1 + (i::bigint * 104729) % ${N} END,
            'Document ' || i, repeat('lorem ipsum ', 20)
     FROM generate_series(1, ${D}) i`,
  );
  // VACUUM as well as ANALYZE: sets hint bits and the visibility map now, so that neither the first
  // server measured nor autovacuum pays for the bulk load during a measurement.
  await sql.unsafe('VACUUM (ANALYZE)');
  await sql.unsafe('CHECKPOINT');
  const counts: Record<string, number> = {};
  for (const table of ['account', 'player', 'admin', 'grp', 'membership', 'document']) {
    const [row] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`);
    counts[table] = row!.n;
  }
  return counts;
}
