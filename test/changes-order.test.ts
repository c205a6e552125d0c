import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../src/db/index.ts';
import { installCapture, startChangeFeed, type Change, type ChangeFeed } from '../src/db/changes/index.ts';
import { collect, type Collector } from './support/changes.ts';
import { useTestDatabase } from './support/db.ts';

// Trigger capture only: this file is about the stamping of trigger-written rows in commit order (WAL capture appends in LSN order, changes-wal*.test.ts).
// Positions follow commit order closely enough that a reader of `pos > cursor` never skips a
// change, even when transactions commit out of id order (src/db/changes/README.md).
const db = useTestDatabase();
const writers: Sql[] = [];

function writer(): Sql {
  const sql = connect(db.url, { max: 1 });
  writers.push(sql);
  return sql;
}

/** A promise and its resolve function, to hold a transaction open until the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** A key as text, independent of the order of its columns (jsonb sorts them). */
const keyText = (key: Record<string, unknown>): string => JSON.stringify(Object.entries(key).sort(([a], [b]) => (a < b ? -1 : 1)));

const positions = (changes: Change[]): bigint[] => changes.map((c) => BigInt(c.position));

/** Positions are dense and strictly increasing: nothing skipped, nothing twice. */
function expectDense(changes: Change[]): void {
  const pos = positions(changes);
  pos.forEach((p, i) => {
    if (i > 0) expect(p).toBe(pos[i - 1]! + 1n);
  });
}

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE ev (w int, k int, i int, PRIMARY KEY (w, k, i));
    CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL, by text);
    CREATE TABLE scratch (id serial PRIMARY KEY);
  `);
  await installCapture(db.sql, 'public', ['ev', 'acct'], 'triggers');
});
afterAll(async () => {
  await Promise.all(writers.map((w) => w.end({ timeout: 5 })));
});

describe('a transaction that commits late', () => {
  let feed: ChangeFeed;
  let seen: Collector;
  beforeAll(async () => {
    feed = await startChangeFeed({ url: db.url, sql: db.sql, schema: 'public', retentionHours: 24, pollMs: 50 });
    seen = collect(feed);
  });
  afterAll(async () => {
    seen?.stop();
    await feed?.close();
  });

  it('holds back later commits until it ends, then delivers both, in id order, skipping nothing', async () => {
    const t1 = writer();
    const t2 = writer();
    const inserted = gate();
    const commit = gate();
    const first = t1.begin(async (tx) => {
      await tx`INSERT INTO ev VALUES (1, 1, 1)`;
      inserted.open();
      await commit.promise;
    });
    await inserted.promise;
    await t2`INSERT INTO ev VALUES (2, 1, 1)`;

    // Stamp and deliver everything that can be: T2 committed, but below T1 in id order, and T1
    // (older than the snapshot's xmin) may still commit.
    await feed.poll();
    await feed.poll();
    expect(seen.changes().filter((c) => c.table === 'ev')).toEqual([]);
    // T2's log row is visible and committed, yet not stamped (T1's is not visible yet at all).
    const [held] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM rowgate.change_log WHERE pos IS NULL`;
    expect(held!.n).toBe(1);

    commit.open();
    await first;
    const got = await seen.until((c) => c.filter((x) => x.table === 'ev').length >= 2);
    expect(got.map((c) => c.key)).toEqual([
      { w: 1, k: 1, i: 1 },
      { w: 2, k: 1, i: 1 },
    ]);
    expectDense(got);
  });

  it('delivers held-back changes when the old transaction ends without notifying (rollback)', async () => {
    const t1 = writer();
    const t2 = writer();
    const started = gate();
    const end = gate();
    // T1 takes an xid by writing a table that is not captured, then rolls back: no NOTIFY.
    const first = t1
      .begin(async (tx) => {
        await tx`INSERT INTO scratch DEFAULT VALUES`;
        started.open();
        await end.promise;
        throw new Error('roll back');
      })
      .catch(() => {});
    await started.promise;
    const before = seen.changes().length;
    await t2`INSERT INTO ev VALUES (2, 2, 1)`;
    await feed.poll();
    expect(seen.changes()).toHaveLength(before);
    end.open();
    await first;
    // Only the feed's timer can deliver it now.
    const got = await seen.until((c) => c.length > before);
    expect(got.slice(before).map((c) => c.key)).toEqual([{ w: 2, k: 2, i: 1 }]);
  });

  it('keeps per-row causal order when an older transaction updates a row a younger one wrote', async () => {
    // The case a plain "xid < xmin" rule gets wrong: A takes an xid first, C (younger) stays open
    // and holds xmin, B (youngest) inserts a row and commits, A updates B's row and commits. A is
    // below xmin, B is not; stamping A first would deliver the UPDATE before the INSERT.
    const [a, b, c] = [writer(), writer(), writer()];
    const aStarted = gate();
    const aGo = gate();
    const cStarted = gate();
    const cEnd = gate();
    const before = seen.changes().length;
    const txA = a.begin(async (tx) => {
      await tx`INSERT INTO scratch DEFAULT VALUES`;
      aStarted.open();
      await aGo.promise;
      await tx`UPDATE acct SET n = n + 1, by = 'A' WHERE id = 100`;
    });
    await aStarted.promise;
    const txC = c.begin(async (tx) => {
      await tx`INSERT INTO scratch DEFAULT VALUES`;
      cStarted.open();
      await cEnd.promise;
    });
    await cStarted.promise;
    await b`INSERT INTO acct VALUES (100, 0, 'B')`;
    aGo.open();
    await txA;
    await feed.poll();
    cEnd.open();
    await txC;
    const got = (await seen.until((x) => x.length >= before + 2)).slice(before);
    expect(got.map((x) => [x.op, x.new?.['by']])).toEqual([
      ['INSERT', 'B'],
      ['UPDATE', 'A'],
    ]);
  });

  it('refuses to stamp outside READ COMMITTED, where its snapshot would miss earlier stampings', async () => {
    await expect(
      db.sql.begin('isolation level repeatable read', (tx) => tx`SELECT * FROM rowgate.stamp(10)`),
    ).rejects.toThrow(/READ COMMITTED/);
  });
});

describe('randomized concurrent writers', () => {
  const WRITERS = 8;
  const TRANSACTIONS = 200;
  const ACCOUNTS = 4;

  it('two feeds deliver exactly the committed changes, once each, in the same order, causal per row', async () => {
    const secondPool = connect(db.url, { max: 2 });
    const feeds = [
      await startChangeFeed({ url: db.url, sql: db.sql, schema: 'public', retentionHours: 24 }),
      await startChangeFeed({ url: db.url, sql: secondPool, schema: 'public', retentionHours: 24 }),
    ];
    const seen = feeds.map((f) => collect(f));
    try {
      const conns = Array.from({ length: WRITERS }, () => writer());
      await conns[0]!`INSERT INTO acct SELECT g, 0, 'init' FROM generate_series(1, ${ACCOUNTS}::int) AS g`;
      const expected: string[] = [];
      for (let id = 1; id <= ACCOUNTS; id++) expected.push(`acct INSERT ${keyText({ id })} init`);
      // A fixed seed: a failure can be replayed.
      let seed = 12345;
      const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const pause = (): string => (random() * 0.004).toFixed(4);

      await Promise.all(
        conns.map(async (sql, index) => {
          const w = 10 + index; // the tests above used writers 1 and 2
          // Committed transactions of this writer whose ev rows still exist, with their row counts.
          const live = new Map<number, number>();
          for (let k = 0; k < TRANSACTIONS; k++) {
            const rows = 1 + Math.floor(random() * 3);
            const account = 1 + Math.floor(random() * ACCOUNTS);
            const keys = [...live.keys()];
            const drop = keys.length > 0 && random() < 0.2 ? keys[Math.floor(random() * keys.length)]! : null;
            const commit = random() < 0.75;
            const [p1, p2] = [pause(), pause()];
            const tag = `w${w}k${k}`;
            const committed = await sql
              .begin(async (tx) => {
                await tx`INSERT INTO ev SELECT ${w}::int, ${k}::int, g FROM generate_series(1, ${rows}::int) AS g`;
                await tx`SELECT pg_sleep(${p1}::text::float8)`;
                await tx`UPDATE acct SET n = n + 1, by = ${tag}::text WHERE id = ${account}::int`;
                if (drop !== null) await tx`DELETE FROM ev WHERE w = ${w}::int AND k = ${drop}::int`;
                await tx`SELECT pg_sleep(${p2}::text::float8)`;
                if (!commit) throw new Error('rollback');
              })
              .then(
                () => true,
                (err: Error) => {
                  if (err.message !== 'rollback') throw err;
                  return false;
                },
              );
            if (!committed) continue;
            for (let i = 1; i <= rows; i++) expected.push(`ev INSERT ${keyText({ w, k, i })} `);
            expected.push(`acct UPDATE ${keyText({ id: account })} ${tag}`);
            if (drop !== null) {
              for (let i = 1; i <= live.get(drop)!; i++) expected.push(`ev DELETE ${keyText({ w, k: drop, i })} `);
              live.delete(drop);
            }
            live.set(k, rows);
          }
        }),
      );
      const label = (c: Change): string => `${c.table} ${c.op} ${keyText(c.key)} ${c.table === 'acct' ? String(c.new?.['by'] ?? '') : ''}`;
      await Promise.all(seen.map((s) => s.until((c) => c.length >= expected.length, 60_000)));
      // One more round after everything committed: anything extra or doubled would show up now.
      await Promise.all(feeds.map((f) => f.poll()));
      const [one, two] = seen.map((s) => s.changes());

      expect([...one!.map(label)].sort()).toEqual([...expected].sort());
      expectDense(one!);
      // Both feeds: the same changes at the same positions, in the same deliveries.
      expect(two).toEqual(one);
      expect(seen[1]!.batches.map((b) => b.position)).toEqual(seen[0]!.batches.map((b) => b.position));

      // Causal order per row: every UPDATE of an account continues from the image the previous one left.
      for (let id = 1; id <= ACCOUNTS; id++) {
        const chain = one!.filter((c) => c.table === 'acct' && c.key['id'] === id);
        expect(chain[0]!.op).toBe('INSERT');
        for (let i = 1; i < chain.length; i++) {
          expect(chain[i]!.old).toEqual(chain[i - 1]!.new);
          expect(chain[i]!.new?.['n']).toBe((chain[i - 1]!.new?.['n'] as number) + 1);
        }
      }
      // Session order: each writer's transactions arrive in the order it committed them.
      for (let w = 10; w < 10 + WRITERS; w++) {
        const ks = one!.filter((c) => c.table === 'ev' && c.op === 'INSERT' && c.key['w'] === w).map((c) => c.key['k'] as number);
        expect(ks).toEqual([...ks].sort((x, y) => x - y));
      }
    } finally {
      for (const s of seen) s.stop();
      await Promise.all(feeds.map((f) => f.close()));
      await secondPool.end({ timeout: 5 });
    }
  });
});
