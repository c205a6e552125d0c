import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../src/db/index.ts';
import { sql as pgsql } from 'pg-sql2';
import { BatchParams, loadParser, type CompiledRules, type Identity } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { bindRule, generate, load, reference, RULE_SETS, SCHEMA, type Data } from './support/reference.ts';
import { as, compile, visible } from './support/rules.ts';

// Differential test: the compiled visibility of every listed table, for every sender, is
// compared with a naive reference that never looks at the compiler (test/support/reference.ts).
// Both renderings are checked: per caller (bound parameters) and the subscriber batch (all
// senders in one statement).
const db = useTestDatabase();

/** Visible ids of `table` for every sender at once: one statement with the batch rendering. */
async function batchVisible(rules: CompiledRules, table: string, senders: Identity[]): Promise<string[][]> {
  const batch = new BatchParams();
  const row = Symbol(table);
  const condition = rules.visibility(table, row, batch);
  const subscribers = senders.map((identity, i) => ({ id: String(i), identity }));
  const { text, values } = pgsql.compile(
    pgsql`SELECT ${batch.sid} AS sid, ${pgsql.identifier(row, 'id')}::text AS k
            FROM ${batch.relation(subscribers)} JOIN ${pgsql.identifier(rules.schema, table)} AS ${pgsql.identifier(row)} ON ${condition}`,
  );
  const out = senders.map((): string[] => []);
  for (const r of await db.sql.unsafe<{ sid: string; k: string }[]>(text, values as never[])) out[Number(r.sid)]!.push(r.k);
  return out;
}

const byNumber = (xs: string[]) => [...xs].sort((a, b) => Number(a) - Number(b));
const describeSender = (i: Identity) => `${JSON.stringify(i.sender)} claims=${JSON.stringify(i.claims)}`;

// ---------------------------------------------------------------------------------------------

const SEEDS = [1, 20240607, 987654321];
let ref: Sql;
const compiled = new Map<string, CompiledRules>();

beforeAll(async () => {
  await loadParser();
  await db.sql.unsafe(SCHEMA);
  // One connection without prepared statements: temporary tables shadow names between
  // statements, so a cached plan must never be reused.
  ref = connect(db.url, { max: 1, prepare: false });
  for (const rs of RULE_SETS) {
    const tables = Object.fromEntries(Object.entries(rs.tables).map(([t, select]) => [t, { select }]));
    compiled.set(rs.name, await compile(db, tables));
  }
});
afterAll(async () => {
  await ref?.end({ timeout: 5 });
});

describe('compiled visibility equals the naive reference', () => {
  it('the reference binds parameters by scanner tokens, leaving casts and strings alone', () => {
    const b = bindRule("SELECT * FROM t WHERE a = :sender AND b::int = :team AND c = ':sender' AND d = :sender", as('x', { team: '7' }));
    expect(b.text).toBe("SELECT * FROM t WHERE a = $1 AND b::int = $2 AND c = ':sender' AND d = $1");
    expect(b.values).toEqual(['x', '7']);
  });

  for (const seed of SEEDS) {
    it(`seed ${seed}: every rule set, every sender, every listed table`, async () => {
      const data = generate(seed);
      await load(db.sql, data);
      const mismatches: { ruleSet: string; sender: string; table: string; rendering: string; compiled: string[]; reference: string[] }[] = [];
      let comparisons = 0;
      let partial = 0;
      let empty = 0;
      for (const rs of RULE_SETS) {
        const rules = compiled.get(rs.name)!;
        const expected: Record<string, string[]>[] = [];
        for (const identity of data.senders) expected.push(await reference(ref, rs, identity));
        for (const table of Object.keys(rs.tables)) {
          const batched = await batchVisible(rules, table, data.senders);
          for (const [i, identity] of data.senders.entries()) {
            const want = byNumber(expected[i]![table] ?? []);
            const got = byNumber(await visible(db, rules, table, identity));
            const gotBatch = byNumber(batched[i]!);
            comparisons++;
            if (got.length === 0) empty++;
            else if (got.length < data[table as keyof Omit<Data, 'senders'>].length) partial++;
            if (JSON.stringify(got) !== JSON.stringify(want)) {
              mismatches.push({ ruleSet: rs.name, sender: describeSender(identity), table, rendering: 'per caller', compiled: got, reference: want });
            }
            if (JSON.stringify(gotBatch) !== JSON.stringify(want)) {
              mismatches.push({ ruleSet: rs.name, sender: describeSender(identity), table, rendering: 'batch', compiled: gotBatch, reference: want });
            }
          }
        }
      }
      expect(mismatches).toEqual([]);
      // The comparison is not vacuous: most sets are neither empty nor everything.
      const listed = RULE_SETS.reduce((n, rs) => n + Object.keys(rs.tables).length, 0);
      expect(comparisons).toBe(listed * data.senders.length);
      expect(partial).toBeGreaterThan(comparisons / 3);
      expect(empty).toBeGreaterThan(0);
    });
  }
});
