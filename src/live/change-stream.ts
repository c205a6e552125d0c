import { sql, type SQL } from 'pg-sql2';
import { retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import { asOfCtes, type AsOfSpec } from './as-of.ts';
import { SUBSCRIBERS, subscriberRelation } from './binder.ts';
import { comparePositions, type Change } from './source.ts';

/** One `t_changes` subscriber. */
export interface ChangeSubscriber {
  sid: string;
  values: (string | null)[];
  /** Position of the last change considered for this subscriber (sent or not). */
  cursor: string;
  /** While it catches up from the log, live deliveries wait here. */
  backlog: Change[] | null;
  /** Response keys of the event's fields, to build the event object the way it was asked for. */
  fields: { key: string; name: string }[];
  push(event: Record<string, unknown>): void;
  fail(error: unknown): void;
}

/**
 * A multiplexed change stream: subscribers of the same table whose filters and selections compile
 * to the same SQL share one statement that decides, for every (subscriber, change) pair, whether
 * the new and the old image are visible to it and match its `where`.
 */
export interface ChangeShape {
  key: string;
  table: string;
  schema: string;
  /** Visibility AND where, on IMAGE_NEW (resp. IMAGE_OLD). */
  newMatch: SQL;
  oldMatch: SQL;
  /** JSON object keyed by the response keys of the `row { … }` (resp. `old { … }`) fields. */
  newJson: SQL;
  oldJson: SQL;
  width: number;
  /** The tables whose state at a change's position decides its visibility (as-of.ts). */
  asOf: AsOfSpec;
  subscribers: Map<string, ChangeSubscriber>;
}

type Op = 'INSERT' | 'UPDATE' | 'DELETE';

/** The new and the old image of a change, as rows of the table (jsonb_populate_record). */
export const IMAGE_NEW = Symbol('new_image');
export const IMAGE_OLD = Symbol('old_image');

/**
 * What a subscriber receives for one change, from whether it may see the new (n) and the old (o)
 * image: an update that moves a row out of its view is a DELETE, one that moves a row in an INSERT.
 */
export function eventOp(op: Op, n: boolean, o: boolean): Op | null {
  if (op === 'INSERT') return n ? 'INSERT' : null;
  if (op === 'DELETE') return o ? 'DELETE' : null;
  if (n && o) return 'UPDATE';
  if (n) return 'INSERT';
  return o ? 'DELETE' : null;
}

const CHANGES_PER_STATEMENT = 500;

/**
 * Evaluates `changes` (every captured table's, in position order) for the shape's subscribers. The
 * changes of the shape's table are judged in segments: between two changes of a table its rules
 * read, that table's state is the same for every change, so one statement judges a segment as of
 * its last position (as-of.ts). When the rules read the table itself, every change is its own
 * segment, its new image judged as of its position and its old one as of the position before.
 */
export async function evaluateChanges(db: Sql, shape: ChangeShape, subs: ChangeSubscriber[], changes: Change[], batch: number, count: () => void): Promise<void> {
  const boundaries = new Set(shape.asOf.tables.map((t) => t.name));
  const segments: Change[][] = [];
  let current: Change[] = [];
  for (const c of changes) {
    if (c.table === shape.table) current.push(c);
    if (boundaries.has(c.table) && current.length) {
      segments.push(current);
      current = [];
    }
  }
  if (current.length) segments.push(current);
  for (const segment of segments) {
    for (let j = 0; j < segment.length; j += CHANGES_PER_STATEMENT) {
      const part = segment.slice(j, j + CHANGES_PER_STATEMENT);
      const at = segment.at(-1)!.position;
      const before = shape.asOf.selfRead ? (BigInt(at) - 1n).toString() : at;
      for (let i = 0; i < subs.length; i += batch) {
        const chunk = subs.slice(i, i + batch);
        try {
          await retryOnDisconnect(() => run(db, shape, chunk, part, at, before, count));
        } catch (err) {
          for (const sub of chunk) sub.fail(err);
          return;
        }
      }
    }
  }
  const last = changes.at(-1)?.position;
  if (last) for (const sub of subs) if (comparePositions(last, sub.cursor) > 0) sub.cursor = last;
}

async function run(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], part: Change[], newAt: string, oldAt: string, count: () => void): Promise<void> {
  const s = SUBSCRIBERS;
  const table = sql.identifier(shape.schema, shape.table);
  const side = (column: string, row: symbol, match: SQL, json: SQL) =>
    sql`(SELECT coalesce(${match}, false) AS ok, ${json}::text AS j
           FROM jsonb_populate_record(NULL::${table}, c.${sql.identifier(column)}::jsonb) AS ${sql.identifier(row)}
          WHERE c.${sql.identifier(column)} IS NOT NULL)`;
  const ctes = asOfCtes(shape.schema, shape.asOf, newAt, oldAt);
  count();
  const rows = await runSql<{ sid: string; i: number; n: boolean | null; o: boolean | null; nj: string | null; oj: string | null }>(
    db,
    sql`${ctes.length ? sql`WITH ${sql.join(ctes, ',\n')}\n` : sql.blank}SELECT ${sql.identifier(s, 'sid')} AS sid, c.i::int AS i, nn.ok AS n, oo.ok AS o,
               CASE WHEN nn.ok THEN nn.j END AS nj, CASE WHEN oo.ok THEN oo.j END AS oj
          FROM ${subscriberRelation(chunk, shape.width)}
          CROSS JOIN unnest(${sql.value(part.map((c) => (c.new ? JSON.stringify(c.new) : null)))}::text[],
                            ${sql.value(part.map((c) => (c.old ? JSON.stringify(c.old) : null)))}::text[]) WITH ORDINALITY AS c(n, o, i)
          LEFT JOIN LATERAL ${side('n', IMAGE_NEW, shape.newMatch, shape.newJson)} AS nn ON true
          LEFT JOIN LATERAL ${side('o', IMAGE_OLD, shape.oldMatch, shape.oldJson)} AS oo ON true
         WHERE nn.ok OR oo.ok
         ORDER BY c.i`,
  );
  const bySid = new Map(chunk.map((c) => [c.sid, c]));
  for (const row of rows) {
    const sub = bySid.get(row.sid);
    const change = part[row.i - 1];
    // A subscriber never gets a change at or before its cursor (where it started, or what its
    // catch-up from the log already covered).
    if (!sub || !change || comparePositions(change.position, sub.cursor) <= 0) continue;
    const op = eventOp(change.op, row.n === true, row.o === true);
    if (!op) continue;
    const rowImages = op === 'DELETE' || !row.nj ? null : (JSON.parse(row.nj) as Record<string, unknown>);
    const oldImages = op === 'INSERT' || !row.oj ? null : (JSON.parse(row.oj) as Record<string, unknown>);
    const event: Record<string, unknown> = {};
    for (const f of sub.fields) {
      if (f.name === 'op') event[f.key] = op;
      else if (f.name === 'position') event[f.key] = change.position;
      else if (f.name === 'row') event[f.key] = rowImages?.[f.key] ?? null;
      else if (f.name === 'old') event[f.key] = oldImages?.[f.key] ?? null;
    }
    sub.push(event);
  }
}
