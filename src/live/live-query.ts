import { sql, type SQL } from 'pg-sql2';
import { isConnectionError, retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import { jsonRelation, SUBSCRIBERS, subscriberRelation } from './binder.ts';
import type { RootKeys } from './keys.ts';
import type { RowIndex } from './row-index.ts';

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
  /** What a changed root row (IMAGE) must match for a subscriber to be concerned; null when root changes cannot be targeted. */
  match: SQL | null;
  /** Root rows each subscriber's result holds, for changes right below the root; null when none are tracked. */
  keys: RootKeys | null;
  /** The subscribers by what `match` requires of a changed root row (row-index.ts); null when `match` is. */
  index: RowIndex<LiveSubscriber> | null;
  /** The visibility's branches that do not read the row (the admin rule), OR-ed; null when there are none. */
  flag: SQL | null;
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
 * default 1,000: the bound we set is one statement per 1,000 affected subscribers). PostgreSQL hashes each
 * result and sends it back only when it differs from what that subscriber last received, so an
 * unchanged result costs neither transfer nor a push.
 */
export async function evaluateLive(db: Sql, shape: LiveShape, subs: LiveSubscriber[], batch: number, count: () => void): Promise<void> {
  const chunks: LiveSubscriber[][] = [];
  for (let i = 0; i < subs.length; i += batch) chunks.push(subs.slice(i, i + batch));
  await inParallel(chunks, (chunk) => evaluateChunk(db, shape, chunk, count));
}

/** Statements of one shape in flight at once; the pool has 10 connections. */
const PARALLEL_CHUNKS = 3;

/**
 * Runs `task` for every item, PARALLEL_CHUNKS at a time: the statements of one shape are
 * independent, and running a few at once lets PostgreSQL use more than one core.
 */
async function inParallel<T>(items: T[], task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_CHUNKS, items.length) }, worker));
}

async function evaluateChunk(db: Sql, shape: LiveShape, chunk: LiveSubscriber[], count: () => void): Promise<void> {
  try {
    await retryOnDisconnect(() => run(db, shape, chunk, count));
  } catch (err) {
    // The database is gone for good (retries exhausted): that is no subscriber's fault.
    if (isConnectionError(err)) throw err;
    if (chunk.length === 1) return chunk[0]!.fail(err);
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
function groupByValues(chunk: Iterable<LiveSubscriber>): Group[] {
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

async function run(db: Sql, shape: LiveShape, chunk: LiveSubscriber[], count: () => void): Promise<void> {
  const groups = groupByValues(chunk);
  // A group's result comes back unless every member already has it (same hash).
  const known = groups.map((g) => (g.members.every((m) => m.hash === g.members[0]!.hash) ? g.members[0]!.hash : null));
  const relation = subscriberRelation(groups, shape.width, { h: known });
  count();
  const rows = await runSql<ResultRow>(db, evaluation(shape, relation, sql.blank, sql`WHERE x.hash IS DISTINCT FROM x.h`));
  deliver(shape, (sid) => groups[Number(sid)]?.members, rows);
}

interface ResultRow {
  sid: string;
  hash: string;
  result: string;
}

/**
 * The statement that builds each subscriber's JSON once and hashes it. OFFSET 0 keeps the planner
 * from folding a subquery into each reference to its output, which built every subscriber's JSON
 * two or three times (measured: 157 → 97 ms per 1,000 subscribers).
 */
function evaluation(shape: LiveShape, relation: SQL, filter: SQL, outer: SQL): SQL {
  const s = SUBSCRIBERS;
  return sql`SELECT x.sid, x.hash, x.text AS result
               FROM (SELECT ${sql.identifier(s)}.*, t0.text, md5(t0.text) AS hash
                       FROM (SELECT * FROM ${relation} ${filter} OFFSET 0) AS ${sql.identifier(s)}
                       CROSS JOIN LATERAL (SELECT coalesce((${shape.expr})::text, 'null') AS text OFFSET 0) AS t0
                     OFFSET 0) AS x ${outer}`;
}

/** Pushes each new result to the members of its group that do not have it yet. */
function deliver(shape: LiveShape, members: (sid: string) => LiveSubscriber[] | undefined, rows: ResultRow[]): void {
  for (const row of rows) {
    let result: { value: unknown; keys: string[] } | undefined;
    for (const sub of members(row.sid) ?? []) {
      if (sub.hash === row.hash) continue;
      sub.hash = row.hash;
      if (!result) {
        const value = JSON.parse(row.result) as unknown;
        result = { value, keys: shape.keys?.strip(value) ?? [] };
      }
      // A subscriber that left while the statement ran must not be indexed again.
      if (shape.keys && shape.subscribers.get(sub.sid) === sub) shape.keys.set(sub, result.keys);
      sub.push(result.value);
    }
  }
}

/**
 * A shape's subscribers grouped by values (see groupByValues), in parts of at most
 * limits.subscribersPerStatement groups, each as the JSON text of a jsonRelation: rebuilt only when
 * subscribers come or go, so a commit costs the gateway no work per subscriber.
 */
export interface Roster {
  parts: { json: string; groups: LiveSubscriber[][] }[];
}

export function buildRoster(subscribers: Iterable<LiveSubscriber>, batch: number): Roster {
  const all = groupByValues(subscribers);
  const parts: Roster['parts'] = [];
  for (let i = 0; i < all.length; i += batch) {
    const slice = all.slice(i, i + batch);
    const rows = slice.map((g, n) => {
      const row: Record<string, string | null> = { sid: String(n) };
      g.values.forEach((v, k) => (row[`p${k + 1}`] = v));
      return row;
    });
    parts.push({ json: JSON.stringify(rows), groups: slice.map((g) => g.members) });
  }
  return { parts };
}

/**
 * Evaluates the flags the shape's index has not (`unevaluated`): the visibility's branches that do
 * not read the row (`flag`: the admin rule), for each subscriber, one statement per `batch`, and
 * records each in the index: while it is true, every changed row concerns the subscriber. Run just
 * before changed rows are looked up, so a burst of subscribers costs nothing until a commit needs
 * their flags. A statement that fails for a reason other than the connection counts its
 * subscribers' flags as true, which only costs them an evaluation per commit.
 */
export async function evaluateFlags(db: Sql, shape: LiveShape, batch: number, count: () => void): Promise<void> {
  const index = shape.index;
  const flag = shape.flag;
  if (!index || !flag || index.unevaluated.size === 0) return;
  const subs = [...index.unevaluated];
  const chunks: Group[][] = [];
  for (let i = 0; i < subs.length; i += batch) chunks.push(groupByValues(subs.slice(i, i + batch)));
  await inParallel(chunks, async (chunk) => {
    const relation = subscriberRelation(chunk, shape.width);
    try {
      count();
      const rows = await retryOnDisconnect(() => runSql<{ sid: string; on: boolean }>(db, sql`SELECT ${sql.identifier(SUBSCRIBERS, 'sid')} AS sid, (${flag}) IS TRUE AS on FROM ${relation}`));
      for (const row of rows) for (const sub of chunk[Number(row.sid)]?.members ?? []) index.setFlag(sub, row.on);
    } catch (err) {
      if (isConnectionError(err)) throw err;
      for (const group of chunk) for (const sub of group.members) index.setFlag(sub, true);
    }
  });
}

/**
 * Evaluates the subscribers for whom one of `images` (changed rows of the root table, JSON) matches
 * the shape's `match` (see `targeting` in tables.ts): one statement per part of the roster, which
 * tests every subscriber against every row before any JSON is built and builds it only for those
 * matched, so a commit that concerns one subscriber costs one subscriber's evaluation. Returns the
 * subscribers evaluated.
 */
export async function evaluateImages(db: Sql, shape: LiveShape, roster: Roster, images: string[], count: () => void): Promise<LiveSubscriber[]> {
  const evaluated: LiveSubscriber[] = [];
  const filter = sql`WHERE EXISTS (SELECT 1 FROM unnest(${sql.value(images)}::text[]) AS c(img)
                       CROSS JOIN LATERAL jsonb_populate_record(NULL::${sql.identifier(shape.schema, shape.table)}, c.img::jsonb) AS ${sql.identifier(IMAGE)}
                      WHERE ${shape.match ?? sql.true})`;
  await inParallel(roster.parts, async (part) => {
    count();
    // Every matched subscriber's result comes back (the roster carries no hashes; they change
    // more often than who subscribes): deliver skips the unchanged ones.
    const rows = await retryOnDisconnect(() => runSql<ResultRow>(db, evaluation(shape, jsonRelation(part.json, shape.width), filter, sql.blank)));
    for (const row of rows) evaluated.push(...(part.groups[Number(row.sid)] ?? []));
    deliver(shape, (sid) => part.groups[Number(sid)], rows);
  });
  return evaluated;
}
