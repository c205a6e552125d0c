/**
 * `npx tsx bench/policies.ts`: native policies (`rowgate policies`) on a 100k-row table, for a normal
 * caller (a role without BYPASSRLS), side by side:
 *   - gateway:     the compiled visibility in the query, as the gateway runs it (owner, no RLS)
 *   - default:     what `rowgate policies --apply` installs (rules over the table alone inline in
 *                  the policy, rules with joins in one SECURITY DEFINER function per table and kind)
 *   - functions:   every rule in the SECURITY DEFINER function (no inline part)
 *   - inlined:     the whole compiled visibility written into the policy (no function; other
 *                  tables read inside it are filtered by their own policies too, the caller needs
 *                  SELECT on them; impossible for rules with self-joins: infinite recursion)
 * Prints the median execution time of EXPLAIN ANALYZE over BENCH_ROUNDS (5) runs per query.
 *
 * Environment: DATABASE_URL (else an embedded PostgreSQL in a temp dir), BENCH_ROWS (100000).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql as pgsql } from 'pg-sql2';
import { parseConfig } from '../src/config/index.ts';
import { connect, readCatalog, startEmbedded, type EmbeddedServer, type Sql } from '../src/db/index.ts';
import { applyPolicies, dropPolicies, planPolicies, settingParam } from '../src/policies/index.ts';
import { callerParams, compileRules, loadParser, type CompiledRules } from '../src/rules/index.ts';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 100_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const DATABASE = 'rowgate_bench_policies';
const ROLE = 'rowgate_bench_caller';
const log = (line: string) => process.stdout.write(`${line}\n`);

const TABLES = {
  account: { select: ['SELECT * FROM account WHERE identity = :sender', 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'] },
  player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.account_id'] },
};

const QUERIES: [string, string][] = [
  ['account: count(*) (a full scan)', 'SELECT count(*) FROM account'],
  ['account: by primary key', 'SELECT * FROM account WHERE id = 4242'],
  ['account: by identity', "SELECT * FROM account WHERE identity = 'u42'"],
  ['player: count(*) (a full scan, rule joins account)', 'SELECT count(*) FROM player'],
  ['player: by primary key', 'SELECT * FROM player WHERE id = 4242'],
];

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function timeQuery(db: Sql, query: string, sender: string, asRole: boolean): Promise<{ ms: number; rows: number }> {
  const times: number[] = [];
  let rows = 0;
  for (let i = 0; i < ROUNDS; i++) {
    await db.begin(async (tx) => {
      if (asRole) await tx.unsafe(`SET LOCAL ROLE ${ROLE}`);
      await tx`SELECT set_config('rowgate.sender', ${sender}, true)`;
      const plan = await tx.unsafe(`EXPLAIN (ANALYZE, FORMAT JSON) ${query}`);
      const json = (plan[0] as Record<string, unknown>)['QUERY PLAN'] as { 'Execution Time': number; Plan: { 'Actual Rows': number } }[];
      times.push(json[0]!['Execution Time']);
      rows = json[0]!.Plan['Actual Rows'];
    });
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)]!, rows };
}

/** The gateway's form: the compiled visibility of the table spliced into the query, run as the owner. */
function gatewayQuery(rules: CompiledRules, query: string, sender: string): { text: string; values: unknown[] } {
  const table = /FROM (\w+)/.exec(query)![1]!;
  const where = /WHERE (.*)$/.exec(query)?.[1];
  const row = 'r';
  const vis = rules.visibility(table, row, callerParams({ sender, claims: {} }));
  const head = query.startsWith('SELECT count(*)') ? pgsql`SELECT count(*)` : pgsql`SELECT r.*`;
  const column = where?.split(' ')[0];
  const extra =
    where && column
      ? pgsql` AND (${pgsql.identifier(row, column)} = ${pgsql.value(where.split(' = ')[1]!.replace(/'/g, ''))}::text::${pgsql.identifier(column === 'id' ? 'int4' : 'text')})`
      : pgsql.blank;
  return pgsql.compile(pgsql`${head} FROM ${pgsql.identifier('public', table)} AS r WHERE ${vis}${extra}`);
}

async function main(): Promise<void> {
  let server: EmbeddedServer | null = null;
  let dir: string | null = null;
  let url = process.env['DATABASE_URL'];
  if (!url) {
    dir = await mkdtemp(join(tmpdir(), 'rowgate-bench-policies-'));
    await chmod(dir, 0o755);
    server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: false });
    url = server.url;
  }
  const admin = connect(url, { max: 1 });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${DATABASE}`);
  const db = connect(withDatabase(url, DATABASE), { max: 2 });
  try {
    const version = (await db`SHOW server_version`)[0]!['server_version'];
    log(`PostgreSQL ${version}, ${ROWS} accounts, ${ROWS} players, median of ${ROUNDS} EXPLAIN ANALYZE runs`);
    await db.unsafe(`
      CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL, name text);
      CREATE INDEX ON account (identity);
      CREATE TABLE admin (identity text PRIMARY KEY);
      CREATE TABLE player (id int PRIMARY KEY, account_id int NOT NULL, level int NOT NULL);
      CREATE INDEX ON player (account_id);
      INSERT INTO account SELECT i, 'u' || (i % 10000), 'name ' || i FROM generate_series(1, ${ROWS}) AS i;
      INSERT INTO player SELECT i, 1 + (i * 7919) % ${ROWS}, i % 100 FROM generate_series(1, ${ROWS}) AS i;
      INSERT INTO admin SELECT 'admin' || i FROM generate_series(1, 50) AS i;
      DROP ROLE IF EXISTS ${ROLE};
      CREATE ROLE ${ROLE} NOLOGIN;
      GRANT SELECT ON account, player, admin TO ${ROLE};
    `);
    await db.unsafe('VACUUM (ANALYZE)');
    await loadParser();
    const catalog = await readCatalog(db, 'public');
    const rules = compileRules(parseConfig({ tables: TABLES }, {}), catalog);

    const variants: { name: string; install: () => Promise<void> }[] = [
      { name: 'default', install: async () => void (await applyPolicies(db, planPolicies(rules, catalog))) },
      { name: 'functions', install: async () => void (await applyPolicies(db, planPolicies(rules, catalog, { inline: false }))) },
      {
        name: 'inlined',
        install: async () => {
          await dropPolicies(db, 'public');
          await applyPolicies(db, { schema: 'public', tables: [], skipped: [] });
          for (const table of Object.keys(TABLES)) {
            const using = rules.visibility(table, table, { param: (n, t) => settingParam(n, t) });
            const { text, values } = pgsql.compile(pgsql`CREATE POLICY rowgate_select ON ${pgsql.identifier('public', table)} FOR SELECT USING (${using})`);
            if (values.length) throw new Error('bound values in an inlined policy');
            await db.unsafe(text);
            await db.unsafe(`ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`);
          }
        },
      },
    ];

    const senders: [string, string][] = [['u42 (10 accounts)', 'u42'], ['admin1 (every row)', 'admin1'], ['nobody', 'nobody']];
    const results = new Map<string, string[]>();
    for (const [label, query] of QUERIES) {
      for (const [who, sender] of senders) {
        const g = gatewayQuery(rules, query, sender);
        const times: number[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const plan = await db.unsafe(`EXPLAIN (ANALYZE, FORMAT JSON) ${g.text}`, g.values as never[]);
          times.push(((plan[0] as Record<string, unknown>)['QUERY PLAN'] as { 'Execution Time': number }[])[0]!['Execution Time']);
        }
        times.sort((a, b) => a - b);
        results.set(`${label}|${who}`, [`${times[Math.floor(times.length / 2)]!.toFixed(2)}`]);
      }
    }
    for (const v of variants) {
      await v.install();
      for (const [label, query] of QUERIES) {
        for (const [who, sender] of senders) {
          const { ms, rows } = await timeQuery(db, query, sender, true);
          results.get(`${label}|${who}`)!.push(`${ms.toFixed(2)} (${rows})`);
        }
      }
      if (process.env['BENCH_PLANS']) {
        await db.begin(async (tx) => {
          await tx.unsafe(`SET LOCAL ROLE ${ROLE}`);
          await tx`SELECT set_config('rowgate.sender', 'u42', true)`;
          for (const [, query] of QUERIES) {
            log(`\n-- ${v.name}: ${query}`);
            for (const r of await tx.unsafe(`EXPLAIN ANALYZE ${query}`)) log(String(r['QUERY PLAN']));
          }
        });
      }
    }
    log('');
    log(`${'query'.padEnd(52)} ${'sender'.padEnd(20)} ${'gateway ms'.padStart(11)} ${variants.map((v) => `${v.name} ms (rows)`.padStart(22)).join(' ')}`);
    for (const [key, cells] of results) {
      const [label, who] = key.split('|') as [string, string];
      log(`${label.padEnd(52)} ${who.padEnd(20)} ${cells[0]!.padStart(11)} ${cells.slice(1).map((c) => c.padStart(22)).join(' ')}`);
    }
    await dropPolicies(db, 'public');
  } finally {
    await db.end({ timeout: 5 });
    await admin.unsafe(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.unsafe(`DROP ROLE IF EXISTS ${ROLE}`);
    await admin.end({ timeout: 5 });
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

await main();
