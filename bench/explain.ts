import type { Config } from '../src/config/index.ts';
import { connect, readCatalog, type Sql } from '../src/db/index.ts';
import { compileRules, loadParser, verifyRules } from '../src/rules/index.ts';
import { buildSchema } from '../src/schema/index.ts';
import { createAuthenticator, createGateway } from '../src/server/index.ts';
import { BENCH_QUERY, FLOOR_SQL, TUNED_FLOOR_SQL } from './floor-sql.ts';

interface Statement {
  text: string;
  values: unknown[];
}

/**
 * BENCH_EXPLAIN=1: runs the bench query once through an in-process gateway whose pool records the
 * SQL it sends, then prints that SQL and EXPLAIN ANALYZE of it next to the floor's, and the time
 * PostgreSQL takes for each (sequentially, one connection: no HTTP, no GraphQL).
 */
export async function explainBoth(sql: Sql, config: Config, benchUrl: string, sender: string, token: string): Promise<void> {
  const captured: Statement[] = [];
  const pool = connect(benchUrl, { max: 2 });
  const recording = new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') {
        return (text: string, values: unknown[] = [], options?: unknown) => {
          captured.push({ text, values });
          return (target.unsafe as (...args: unknown[]) => unknown)(text, values, options);
        };
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  }) as Sql;
  try {
    await loadParser();
    const catalog = await readCatalog(pool, config.database.schema);
    const rules = compileRules(config, catalog);
    await verifyRules(pool, rules);
    const schema = buildSchema({ config, catalog, rules, sql: recording });
    const gateway = createGateway({ config, schema, sql: recording, authenticator: createAuthenticator(config.auth), logInternalError: () => {} });
    const { url } = await gateway.listen(0);
    captured.length = 0;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: BENCH_QUERY }),
    });
    await res.text();
    await gateway.close();

    const floor: Statement = { text: FLOOR_SQL, values: [sender, config.limits.maxRows] };
    const show = async (title: string, st: Statement) => {
      console.log(`\n===== ${title} =====\n${st.text.trim()}\n-- values: ${JSON.stringify(st.values)}`);
      const plan = await sql.unsafe<{ 'QUERY PLAN': string }[]>(`EXPLAIN (ANALYZE, BUFFERS) ${st.text}`, st.values as never[]);
      console.log(plan.map((r) => r['QUERY PLAN']).join('\n'));
    };
    for (const [i, st] of captured.entries()) await show(`gateway statement ${i + 1} of ${captured.length} (sender ${sender})`, st);
    await show(`floor statement (sender ${sender})`, floor);
    const tuned: Statement = { text: TUNED_FLOOR_SQL, values: floor.values };
    await show(`tuned floor statement, rules as UNIONs (sender ${sender})`, tuned);

    // Database time alone, sequentially on one connection.
    const runs = 300;
    const time = async (label: string, statements: Statement[], prepare: boolean) => {
      const one = connect(benchUrl, { max: 1 });
      try {
        for (let i = 0; i < 20; i++) for (const st of statements) await one.unsafe(st.text, st.values as never[], { prepare });
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < runs; i++) for (const st of statements) await one.unsafe(st.text, st.values as never[], { prepare });
        const ms = Number(process.hrtime.bigint() - t0) / 1e6 / runs;
        console.log(`${label.padEnd(48)} ${ms.toFixed(3)} ms per request`);
      } finally {
        await one.end({ timeout: 5 });
      }
    };
    console.log(`\n===== database time per request (${runs} sequential runs, one connection, no HTTP) =====`);
    await time(`gateway's ${captured.length} statements, unprepared (as it runs them)`, captured, false);
    await time(`gateway's ${captured.length} statements, prepared`, captured, true);
    await time('floor statement, prepared (as it runs it)', [floor], true);
    await time('floor statement, unprepared', [floor], false);
    await time('tuned floor statement, prepared', [tuned], true);
    console.log('');
  } finally {
    await pool.end({ timeout: 5 });
  }
}
