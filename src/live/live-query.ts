import { sql, type SQL } from 'pg-sql2';
import { isConnectionError, retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import { SUBSCRIBERS, subscriberRelation } from './binder.ts';

/** One live query subscriber: its values for the shape's columns and the hash of what it last got. */
export interface LiveSubscriber {
  sid: string;
  values: (string | null)[];
  /** `values` as one string, computed once: subscribers with equal keys share an evaluation. */
  valuesKey: string;
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
  table: string;
  schema: string;
  /** Visibility AND the subscription's filter on IMAGE, a changed root row; null when changes cannot be targeted. */
  match: SQL | null;
  /** The JSON answer of one subscriber, with its values as SUBSCRIBERS.p<n>. */
  expr: SQL;
  width: number;
  tables: Set<string>;
  subscribers: Map<string, LiveSubscriber>;
}

/** A changed row (its old or new image), rebuilt as a row of the table. */
export const IMAGE = Symbol('changed_row');

/**
 * Evaluates `subs` of `shape` in statements of at most `batch` subscribers (limits.subscribersPerStatement,
 * default 1,000: DESIGN's bound is one statement per 1,000 affected subscribers). PostgreSQL hashes each
 * result and sends it back only when it differs from what that subscriber last received, so an
 * unchanged result costs neither transfer nor a push.
 */
export async function evaluateLive(
  db: Sql,
  shape: LiveShape,
  subs: LiveSubscriber[],
  batch: number,
  count: () => void,
  images: string[] | null = null,
): Promise<void> {
  const chunks: LiveSubscriber[][] = [];
  for (let i = 0; i < subs.length; i += batch) chunks.push(subs.slice(i, i + batch));
  // Chunks of one shape are independent: run a few at once so PostgreSQL can use more than one core.
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chunks.length) await evaluateChunk(db, shape, chunks[next++]!, count, images);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_CHUNKS, chunks.length) }, worker));
}

/** Statements of one shape in flight at once; the pool has 10 connections. */
const PARALLEL_CHUNKS = 3;

async function evaluateChunk(db: Sql, shape: LiveShape, chunk: LiveSubscriber[], count: () => void, images: string[] | null): Promise<void> {
  try {
    await retryOnDisconnect(() => run(db, shape, chunk, count, images));
  } catch (err) {
    // The database is gone for good (retries exhausted): that is no subscriber's fault.
    if (isConnectionError(err)) throw err;
    if (chunk.length === 1) return chunk[0]!.fail(err);
    // One subscriber's values can fail a statement for all (a LIKE pattern ending in "\"):
    // find it by evaluating each alone, so the others are not punished.
    for (const sub of chunk) {
      try {
        await run(db, shape, [sub], count, images);
      } catch (single) {
        sub.fail(single);
      }
    }
  }
}

/**
 * With `images` (changed rows of the root table, see rootTargetable), only the subscribers for whom
 * one of them matches are evaluated: the filter runs on the subscriber relation before any JSON is
 * built, so a commit that concerns one subscriber costs one subscriber's work, in the same statement.
 */
interface Group {
  /** The relation's `sid` column carries the group's index. */
  sid: string;
  values: (string | null)[];
  members: LiveSubscriber[];
}

/**
 * Subscribers with the same values (the same identity parameters and arguments: every admin, every
 * caller of a public table) get the same result, so each distinct set of values is evaluated once.
 */
function groupByValues(chunk: LiveSubscriber[]): Group[] {
  const groups = new Map<string, Group>();
  for (const sub of chunk) {
    let group = groups.get(sub.valuesKey);
    if (!group) {
      group = { sid: String(groups.size), values: sub.values, members: [] };
      groups.set(sub.valuesKey, group);
    }
    group.members.push(sub);
  }
  return [...groups.values()];
}

async function run(db: Sql, shape: LiveShape, chunk: LiveSubscriber[], count: () => void, images: string[] | null): Promise<void> {
  const groups = groupByValues(chunk);
  // A group's result comes back unless every member already has it (same hash).
  const known = groups.map((g) => (g.members.every((m) => m.hash === g.members[0]!.hash) ? g.members[0]!.hash : null));
  const relation = subscriberRelation(groups, shape.width, { h: known });
  const s = SUBSCRIBERS;
  const affected =
    images && shape.match
      ? sql`WHERE EXISTS (SELECT 1 FROM unnest(${sql.value(images)}::text[]) AS c(img)
                          CROSS JOIN LATERAL jsonb_populate_record(NULL::${sql.identifier(shape.schema, shape.table)}, c.img::jsonb) AS ${sql.identifier(IMAGE)}
                         WHERE ${shape.match})`
      : sql.blank;
  count();
  // OFFSET 0 keeps the planner from folding the subquery into each reference to its output, which
  // built every subscriber's JSON two or three times (measured: 157 → 97 ms per 1,000 subscribers).
  const rows = await runSql<{ sid: string; hash: string; result: string }>(
    db,
    sql`SELECT x.sid, x.hash, x.text AS result
          FROM (SELECT ${sql.identifier(s, 'sid')} AS sid, ${sql.identifier(s, 'h')} AS h, t0.text, md5(t0.text) AS hash
                  FROM (SELECT * FROM ${relation} ${affected} OFFSET 0) AS ${sql.identifier(s)}
                  CROSS JOIN LATERAL (SELECT coalesce((${shape.expr})::text, 'null') AS text OFFSET 0) AS t0
                OFFSET 0) AS x
         WHERE x.hash IS DISTINCT FROM x.h`,
  );
  for (const row of rows) {
    const group = groups[Number(row.sid)];
    if (!group) continue;
    let parsed: unknown;
    for (const sub of group.members) {
      if (sub.hash === row.hash) continue;
      sub.hash = row.hash;
      sub.push((parsed ??= JSON.parse(row.result)));
    }
  }
}
