import { sql, type SQL } from 'pg-sql2';
import { isConnectionError, retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import { SUBSCRIBERS, subscriberRelation } from './binder.ts';

/** One live query subscriber: its values for the shape's columns and the hash of what it last got. */
export interface LiveSubscriber {
  sid: string;
  values: (string | null)[];
  /** md5 of the last result sent; null before the first. */
  hash: string | null;
  push(result: unknown): void;
  fail(error: unknown): void;
}

/**
 * A multiplexed live query: every subscription whose compiled SQL is the same text (same
 * operation shape) shares one statement, run over a relation of all their values.
 */
export interface LiveShape {
  key: string;
  /** The JSON answer of one subscriber, with its values as SUBSCRIBERS.p<n>. */
  expr: SQL;
  width: number;
  tables: Set<string>;
  subscribers: Map<string, LiveSubscriber>;
}

/**
 * Evaluates `subs` of `shape` in statements of at most `batch` subscribers (limits.subscribersPerStatement,
 * default 1,000: DESIGN's bound is one statement per 1,000 affected subscribers). PostgreSQL hashes each
 * result and sends it back only when it differs from what that subscriber last received, so an
 * unchanged result costs neither transfer nor a push.
 */
export async function evaluateLive(db: Sql, shape: LiveShape, subs: LiveSubscriber[], batch: number, count: () => void): Promise<void> {
  for (let i = 0; i < subs.length; i += batch) {
    const chunk = subs.slice(i, i + batch);
    try {
      await retryOnDisconnect(() => run(db, shape, chunk, count));
    } catch (err) {
      // The database is gone for good (retries exhausted): that is no subscriber's fault.
      if (isConnectionError(err)) throw err;
      if (chunk.length === 1) {
        chunk[0]!.fail(err);
        continue;
      }
      // One subscriber's values can fail a statement for all (a LIKE pattern ending in "\"):
      // find it by evaluating each alone, so the others are not punished.
      for (const sub of chunk) {
        try {
          await run(db, shape, [sub], count);
        } catch (single) {
          sub.fail(single);
        }
      }
    }
  }
}

async function run(db: Sql, shape: LiveShape, chunk: LiveSubscriber[], count: () => void): Promise<void> {
  const relation = subscriberRelation(chunk, shape.width, { h: chunk.map((s) => s.hash) });
  const s = SUBSCRIBERS;
  const r = Symbol('result');
  count();
  const rows = await runSql<{ sid: string; hash: string; result: string | null }>(
    db,
    sql`SELECT ${sql.identifier(s, 'sid')} AS sid, x.hash,
               CASE WHEN x.hash IS DISTINCT FROM ${sql.identifier(s, 'h')} THEN x.text END AS result
          FROM ${relation}
          CROSS JOIN LATERAL (SELECT ${shape.expr} AS v) AS ${sql.identifier(r)}
          CROSS JOIN LATERAL (SELECT coalesce(${sql.identifier(r, 'v')}::text, 'null') AS text) AS t0
          CROSS JOIN LATERAL (SELECT md5(t0.text) AS hash, t0.text) AS x`,
  );
  const bySid = new Map(chunk.map((c) => [c.sid, c]));
  for (const row of rows) {
    const sub = bySid.get(row.sid);
    if (!sub) continue;
    sub.hash = row.hash;
    if (row.result !== null) sub.push(JSON.parse(row.result));
  }
}
