import { sql, type SQL } from 'pg-sql2';
import { isConnectionError, retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import type { Table } from '../db/index.ts';
import type { LogReads, LogSnapshot } from '../db/changes/index.ts';
import { asOfCtes, asOfMovesCtes, asOfRelation, asOfSelf, CANDIDATE, DELTA, movingColumns, staleAfter, type AsOfSpec } from './as-of.ts';
import { SUBSCRIBERS, subscriberRelation } from './binder.ts';
import { inLogSnapshot } from './log-snapshot.ts';
import { comparePositions, EVENT_POSITION, subPosition, type Change } from './source.ts';

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
  /** The table's catalog entry (its key identifies a row across two states, for moves). */
  relation: Table;
  /** Per table the rules read, the rows a change of it can move (as-of.ts deltaVisibility); null: any row. */
  deltas: Map<string, SQL | null>;
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

/** `current`: no later change of a table the rules read is known, so the tables as they are may do (run). */
type Step = { kind: 'changes'; part: Change[]; at: string; before: string; current: boolean } | { kind: 'moves'; from: string; to: string; cause: Change; changed: Change[]; current: boolean };

const minus1 = (p: string) => (BigInt(p) - 1n).toString();

/**
 * What `changes` (every captured table's, in position order) mean for the shape, in order:
 * - the shape table's changes, in segments: between two changes of a table its rules read, that
 *   table's state is the same for every change, so one statement judges a segment as of its last
 *   position (as-of.ts). When the rules read the table itself, every change is its own segment, its
 *   new image judged as of its position and its old one as of the position before.
 * - after each change to a table its rules read, the moves it caused: the rows that entered a
 *   subscriber's view (INSERT) or left it (DELETE), at `p:1`, `p:2`, … (source.ts).
 */
function steps(shape: ChangeShape, changes: Change[]): Step[] {
  const boundaries = new Set(shape.asOf.tables.map((t) => t.name));
  // An update that leaves every column the rules read as it was moves no row in or out of any view:
  // its moves step would find nothing (an account renamed, under player's rules reading account.id).
  const canMove = (c: Change) => {
    if (c.op !== 'UPDATE' || !c.old || !c.new) return true;
    const read = movingColumns(shape.asOf, c.table);
    return !read || [...read].some((col) => JSON.stringify(c.old![col]) !== JSON.stringify(c.new![col]));
  };
  const out: Step[] = [];
  let current: Change[] = [];
  const lastRead = [...changes].reverse().find((c) => c.table === shape.table || boundaries.has(c.table))?.position;
  const flush = (last = false) => {
    for (let j = 0; j < current.length; j += CHANGES_PER_STATEMENT) {
      const part = current.slice(j, j + CHANGES_PER_STATEMENT);
      const at = part.at(-1)!.position;
      out.push({ kind: 'changes', part, at, before: shape.asOf.selfRead ? minus1(at) : at, current: last && !shape.asOf.selfRead });
    }
    current = [];
  };
  for (const c of changes) {
    // No images to judge: the engine ends the streams a TRUNCATE or RESYNC concerns (engine.ts).
    if (c.op === 'TRUNCATE' || c.op === 'RESYNC') continue;
    if (c.table === shape.table) {
      current.push(c);
      if (shape.asOf.selfRead) {
        // Its rules read the table: a change of one row (a parent's owner) can move others in or out.
        flush();
        if (canMove(c)) out.push({ kind: 'moves', from: minus1(c.position), to: c.position, cause: c, changed: [c], current: false });
      }
    } else if (boundaries.has(c.table) && canMove(c)) {
      // One step per change, whatever the batching: every gateway gives the same events at the same positions.
      flush();
      // Judged on the tables as they are when nothing the statement reads changed after it in this delivery.
      out.push({ kind: 'moves', from: minus1(c.position), to: c.position, cause: c, changed: [], current: c.position === lastRead });
    }
  }
  flush(true);
  return out;
}

/** The highest position an event of the step can have: a move of `to` is at `to:n`, before `to`. */
function lastPosition(shape: ChangeShape, step: Step): string {
  if (step.kind === 'moves') return step.to;
  return shape.asOf.selfRead ? subPosition(step.at, 0) : step.at;
}

/**
 * Evaluates `changes` for `subs`, step by step (in position order), in statements of at most
 * `batch` subscribers. A subscriber whose statement failed is ended with the error and left out of
 * the later steps; the others get every event, in order. Returns the subscribers not ended.
 */
export async function evaluateChanges(db: Sql, shape: ChangeShape, subs: ChangeSubscriber[], changes: Change[], batch: number, count: () => void, snapshot?: LogSnapshot): Promise<ChangeSubscriber[]> {
  let live = subs;
  try {
    for (const step of steps(shape, changes)) {
      const failed = new Set<ChangeSubscriber>();
      // Subscribers already past the step (resuming from a later position) would get nothing from it.
      const concerned = live.filter((sub) => comparePositions(lastPosition(shape, step), sub.cursor) > 0);
      for (let i = 0; i < concerned.length; i += batch) {
        for (const sub of await evaluateStep(db, shape, concerned.slice(i, i + batch), step, count, snapshot)) failed.add(sub);
      }
      if (failed.size) live = live.filter((sub) => !failed.has(sub));
    }
  } catch (err) {
    // The database stayed unreachable through every retry: no later event can reach anyone in
    // order, so every stream ends and its client resumes with `after` (the log keeps the events).
    for (const sub of live) sub.fail(err);
    return [];
  }
  const last = changes.at(-1)?.position;
  if (last) for (const sub of live) if (comparePositions(last, sub.cursor) > 0) sub.cursor = last;
  return live;
}

/**
 * One step for a chunk of subscribers; returns those it ended. One subscriber's values can fail
 * the statement for all (a valid regular expression that passes statement_timeout on some row):
 * evaluating each alone then finds it, and the others get their events, as live queries do
 * (live-query.ts evaluateChunk). Throws only when the database is unreachable (or the log behind: endsAll).
 */
async function evaluateStep(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], step: Step, count: () => void, snapshot?: LogSnapshot): Promise<ChangeSubscriber[]> {
  const attempt = (subs: ChangeSubscriber[]) =>
    retryOnDisconnect(() =>
      inLogSnapshot(db, snapshot, stepReads(shape, step), subs, (db, subs) => (step.kind === 'changes' ? run(db, shape, subs, step, count) : moves(db, shape, subs, step, count))),
    );
  try {
    await attempt(chunk);
    return [];
  } catch (err) {
    if (endsAll(err)) throw err;
    if (chunk.length === 1) {
      chunk[0]!.fail(err);
      return chunk;
    }
  }
  const failed: ChangeSubscriber[] = [];
  for (const sub of chunk) {
    try {
      await attempt([sub]);
    } catch (err) {
      if (endsAll(err)) throw err;
      sub.fail(err);
      failed.push(sub);
    }
  }
  return failed;
}

/** What a step's statements read of the log: the rules' tables (and the table itself for moves), after its first position. */
function stepReads(shape: ChangeShape, step: Step): LogReads {
  const tables = shape.asOf.tables.map((t) => t.name);
  return step.kind === 'changes' ? { tables, after: step.before } : { tables: [...tables, shape.table], after: step.from };
}

/** The database unreachable, or (WAL capture) the log not catching up: no subscriber of the step can go on in order. */
const endsAll = (err: unknown) => isConnectionError(err) || (err as { code?: string }).code === 'WAL_BEHIND';

function eventOf(sub: ChangeSubscriber, op: Op, position: string, row: Record<string, unknown> | null, old: Record<string, unknown> | null): Record<string, unknown> {
  const event: Record<string, unknown> & { [EVENT_POSITION]?: string } = { [EVENT_POSITION]: position };
  for (const f of sub.fields) {
    if (f.name === 'op') event[f.key] = op;
    else if (f.name === 'position') event[f.key] = position;
    else if (f.name === 'row') event[f.key] = row?.[f.key] ?? null;
    else if (f.name === 'old') event[f.key] = old?.[f.key] ?? null;
  }
  return event;
}

type MovesStep = { from: string; to: string; cause: Change; changed: Change[]; current: boolean };
type MoveRow = { sid: string | null; nj: string | null; oj: string | null; k?: string; stale?: boolean };

/**
 * The relations a moves statement reads: on the tables as they are (`asOfMovesCtes`) when the step
 * is the last of its delivery, else rebuilt from the log. null: judged on the current tables cannot be done.
 */
function movesRelations(shape: ChangeShape, step: MovesStep, plain: boolean): { ctes: SQL[]; before: SQL; after: SQL } | null {
  if (plain) {
    const ctes = asOfMovesCtes(shape.schema, shape.asOf, step.cause);
    if (!ctes) return null;
    const mine = (side: 'new' | 'old') => asOfRelation(shape.asOf, side)(shape.table) ?? sql.identifier(shape.schema, shape.table);
    return { ctes, before: mine('old'), after: mine('new') };
  }
  const before = asOfSelf(shape.schema, shape.asOf, shape.table, shape.relation, 'old', step.from);
  const after = asOfSelf(shape.schema, shape.asOf, shape.table, shape.relation, 'new', step.to);
  return { ctes: [...asOfCtes(shape.schema, shape.asOf, step.to, step.from), ...before.ctes, ...after.ctes], before: before.relation, after: after.relation };
}

/**
 * Runs a moves statement (`main`: rows sid, nj, oj, k for the relations given, `guard` added to its
 * WHERE) and delivers its rows. The last step of a delivery is first judged on the tables as they
 * are, in a statement that also asks the log whether anything it reads changed after the step
 * (staleAfter, the changed table included); if so its work is skipped (a one-time filter) and it
 * runs again on the tables rebuilt as of the step.
 */
async function runMoves(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], step: MovesStep, extraCtes: SQL[], main: (r: { before: SQL; after: SQL }, guard: SQL) => SQL, count: () => void): Promise<void> {
  // The moves of each subscriber are numbered p:1, p:2, … in this order: the same on every evaluation.
  const order = sql`ORDER BY m.sid, m.k COLLATE "C"`;
  const plain = step.current ? movesRelations(shape, step, true) : null;
  if (plain) {
    count();
    const rows = await runSql<MoveRow>(
      db,
      sql`WITH ${sql.join([...plain.ctes, ...extraCtes], ',\n')}
          SELECT g.stale, m.* FROM (SELECT ${staleAfter(shape.asOf, step.to, [shape.table])} AS stale) AS g
            LEFT JOIN LATERAL (${main(plain, sql` AND NOT g.stale`)}) AS m ON true
           ${order}`,
    );
    if (!rows[0]?.stale) return deliverMoves(chunk, step.to, rows);
  }
  const rebuilt = movesRelations(shape, step, false)!;
  count();
  deliverMoves(chunk, step.to, await runSql<MoveRow>(db, sql`WITH ${sql.join([...rebuilt.ctes, ...extraCtes], ',\n')}\nSELECT m.* FROM (${main(rebuilt, sql.blank)}) AS m ${order}`));
}

/**
 * The rows of the table whose visibility to a subscriber changed between `from` and `to` while the
 * table itself did not change: each subscriber's visible rows at both positions (the table and every
 * table its rules read rebuilt as of each), compared by primary key. A row that left the view is a
 * DELETE with the image the subscriber could last see; one that entered it an INSERT. Rows changed
 * at `to` itself (`changed`) are left out: their own event says what happened to them.
 */
async function moves(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], step: MovesStep, count: () => void): Promise<void> {
  const delta = shape.deltas.get(step.cause.table);
  if (delta && shape.relation.primaryKey.length) return narrowMoves(db, shape, chunk, step, delta, count);
  const key = (row: symbol) => {
    const pk = shape.relation.primaryKey;
    return pk.length ? sql`jsonb_build_array(${sql.join(pk.map((c) => sql.identifier(row, c)), ', ')})::text` : sql`to_jsonb(${sql.identifier(row)})::text`;
  };
  const images = step.changed.flatMap((c) => [c.old, c.new]).filter((i) => i !== null);
  const changedRow = Symbol('changed');
  const changed = sql`(SELECT ${key(changedRow)} FROM unnest(${sql.value(images.map((i) => JSON.stringify(i)))}::text[]) AS i(j)
    CROSS JOIN LATERAL jsonb_populate_record(NULL::${sql.identifier(shape.schema, shape.table)}, i.j::jsonb) AS ${sql.identifier(changedRow)})`;
  await runMoves(
    db,
    shape,
    chunk,
    step,
    [],
    (r, guard) => sql`SELECT ${sql.identifier(SUBSCRIBERS, 'sid')} AS sid, mv.nj, mv.oj, mv.k
          FROM ${subscriberRelation(chunk, shape.width)}
          CROSS JOIN LATERAL (
            SELECT a.j AS nj, b.j AS oj, coalesce(a.k, b.k) AS k
              FROM (SELECT ${key(IMAGE_OLD)} AS k, ${shape.oldJson}::text AS j FROM ${r.before} AS ${sql.identifier(IMAGE_OLD)} WHERE ${shape.oldMatch}) AS b
              FULL JOIN (SELECT ${key(IMAGE_NEW)} AS k, ${shape.newJson}::text AS j FROM ${r.after} AS ${sql.identifier(IMAGE_NEW)} WHERE ${shape.newMatch}) AS a
                ON a.k = b.k
             WHERE (a.k IS NULL OR b.k IS NULL) AND coalesce(a.k, b.k) NOT IN ${changed}
          ) AS mv
         WHERE true${guard}`,
    count,
  );
}

/** Numbers each subscriber's moves `to:1`, `to:2`, … in the order given and sends those past its cursor. */
function deliverMoves(chunk: ChangeSubscriber[], to: string, rows: MoveRow[]): void {
  const bySid = new Map(chunk.map((c) => [c.sid, c]));
  const counts = new Map<string, number>();
  for (const row of rows) {
    const sub = row.sid === null ? undefined : bySid.get(row.sid);
    if (!sub) continue;
    const n = (counts.get(sub.sid) ?? 0) + 1;
    counts.set(sub.sid, n);
    const position = subPosition(to, n);
    if (comparePositions(position, sub.cursor) <= 0) continue;
    if (row.oj) sub.push(eventOf(sub, 'DELETE', position, null, JSON.parse(row.oj) as Record<string, unknown>));
    else if (row.nj) sub.push(eventOf(sub, 'INSERT', position, JSON.parse(row.nj) as Record<string, unknown>, null));
  }
}

/**
 * Moves caused by a change of a table the rules read, looking only at the rows it can concern: the
 * candidates are the rows the rules reading that table admit through its changed rows (`delta`, on
 * the table as it is, plus every row of the table changed since `from`, whose columns may differ
 * now), and only they are judged before and after, each by its key (an index lookup).
 */
async function narrowMoves(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], step: MovesStep, delta: SQL, count: () => void): Promise<void> {
  const { from } = step;
  const t = sql.identifier(shape.schema, shape.table);
  const x = sql.identifier(shape.schema, step.cause.table);
  const pk = shape.relation.primaryKey;
  const images = [step.cause.old, step.cause.new].filter((i) => i !== null).map((i) => JSON.stringify(i));
  const q = Symbol('candidate_key');
  const same = (row: symbol) => sql.join(pk.map((c) => sql`${sql.identifier(row, c)} = ${sql.identifier(q, c)}`), ' AND ');
  const ctes = [
    sql`${DELTA} AS NOT MATERIALIZED (
      SELECT r.* FROM unnest(${sql.value(images)}::text[]) AS i(j) CROSS JOIN LATERAL jsonb_populate_record(NULL::${x}, i.j::jsonb) AS r)`,
    sql`__rowgate_candidates AS MATERIALIZED (
      SELECT ${sql.identifier(SUBSCRIBERS, 'sid')} AS sid, ${sql.join(pk.map((c) => sql.identifier(CANDIDATE, c)), ', ')}
        FROM ${subscriberRelation(chunk, shape.width)}, ${t} AS ${sql.identifier(CANDIDATE)}
       WHERE ${delta}
      UNION
      SELECT ${sql.identifier(SUBSCRIBERS, 'sid')}, ${sql.join(pk.map((c) => sql.identifier(CANDIDATE, c)), ', ')}
        FROM ${subscriberRelation(chunk, shape.width)}, rowgate.change_log AS l
       CROSS JOIN LATERAL (VALUES (l.old), (l.new)) AS v(img)
       CROSS JOIN LATERAL jsonb_populate_record(NULL::${t}, v.img) AS ${sql.identifier(CANDIDATE)}
       WHERE l.tbl = ${sql.literal(shape.table)} AND (l.pos > ${sql.value(from)}::text::bigint OR l.pos IS NULL) AND v.img IS NOT NULL)`,
  ];
  await runMoves(
    db,
    shape,
    chunk,
    step,
    ctes,
    (r, guard) => sql`SELECT ${sql.identifier(SUBSCRIBERS, 'sid')} AS sid, m.nj, m.oj, jsonb_build_array(${sql.join(pk.map((c) => sql.identifier(q, c)), ', ')})::text AS k
          FROM ${subscriberRelation(chunk, shape.width)}
          JOIN __rowgate_candidates AS ${sql.identifier(q)} ON ${sql.identifier(q, 'sid')} = ${sql.identifier(SUBSCRIBERS, 'sid')}
          CROSS JOIN LATERAL (
            SELECT (SELECT ${shape.oldJson}::text FROM ${r.before} AS ${sql.identifier(IMAGE_OLD)} WHERE ${same(IMAGE_OLD)} AND ${shape.oldMatch}) AS oj,
                   (SELECT ${shape.newJson}::text FROM ${r.after} AS ${sql.identifier(IMAGE_NEW)} WHERE ${same(IMAGE_NEW)} AND ${shape.newMatch}) AS nj
          ) AS m
         WHERE (m.oj IS NULL) <> (m.nj IS NULL)${guard}`,
    count,
  );
}

type RunRow = { sid: string | null; i: number; n: boolean | null; o: boolean | null; nj: string | null; oj: string | null; stale?: boolean };

/**
 * The changes of one segment for a chunk of subscribers. A segment at the end of what was delivered
 * (`current`) is first judged on the tables as they are, in a statement that also asks whether the
 * log holds a later change of a table the rules read (staleAfter): usually it does not (a live
 * stream keeps up), and that statement costs a fraction of the rebuild's to plan and run. When it
 * does, the statement skips its work (a one-time filter) and the segment is judged with the rebuild.
 */
async function run(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], step: { part: Change[]; at: string; before: string; current: boolean }, count: () => void): Promise<void> {
  const { part } = step;
  const plain = step.current && shape.asOf.tables.length > 0;
  let rows = await runChanges(db, shape, chunk, part, step.at, step.before, plain, count);
  if (plain && rows[0]?.stale) rows = await runChanges(db, shape, chunk, part, step.at, step.before, false, count);
  const bySid = new Map(chunk.map((c) => [c.sid, c]));
  for (const row of rows) {
    if (row.sid === null) continue;
    const sub = bySid.get(row.sid);
    const change = part[row.i - 1];
    // A subscriber never gets a change at or before its cursor (where it started, or what its
    // catch-up from the log already covered). A change that also moves other rows is at `p:0`.
    const position = shape.asOf.selfRead && change ? subPosition(change.position, 0) : change?.position;
    if (!sub || !change || !position || comparePositions(position, sub.cursor) <= 0) continue;
    // steps() left TRUNCATE and RESYNC out.
    const op = eventOp(change.op as Op, row.n === true, row.o === true);
    if (!op) continue;
    const rowImages = op === 'DELETE' || !row.nj ? null : (JSON.parse(row.nj) as Record<string, unknown>);
    const oldImages = op === 'INSERT' || !row.oj ? null : (JSON.parse(row.oj) as Record<string, unknown>);
    sub.push(eventOf(sub, op, position, rowImages, oldImages));
  }
}

async function runChanges(db: Sql, shape: ChangeShape, chunk: ChangeSubscriber[], part: Change[], newAt: string, oldAt: string, plain: boolean, count: () => void): Promise<RunRow[]> {
  const s = SUBSCRIBERS;
  const table = sql.identifier(shape.schema, shape.table);
  const side = (column: string, row: symbol, match: SQL, json: SQL) =>
    sql`(SELECT coalesce(${match}, false) AS ok, ${json}::text AS j
           FROM jsonb_populate_record(NULL::${table}, c.${sql.identifier(column)}::jsonb) AS ${sql.identifier(row)}
          WHERE c.${sql.identifier(column)} IS NOT NULL)`;
  const ctes = asOfCtes(shape.schema, shape.asOf, newAt, oldAt, plain);
  const judged = (guard: SQL) => sql`SELECT ${sql.identifier(s, 'sid')} AS sid, c.i::int AS i, nn.ok AS n, oo.ok AS o,
               CASE WHEN nn.ok THEN nn.j END AS nj, CASE WHEN oo.ok THEN oo.j END AS oj
          FROM ${subscriberRelation(chunk, shape.width)}
          CROSS JOIN unnest(${sql.value(part.map((c) => (c.new ? JSON.stringify(c.new) : null)))}::text[],
                            ${sql.value(part.map((c) => (c.old ? JSON.stringify(c.old) : null)))}::text[]) WITH ORDINALITY AS c(n, o, i)
          LEFT JOIN LATERAL ${side('n', IMAGE_NEW, shape.newMatch, shape.newJson)} AS nn ON true
          LEFT JOIN LATERAL ${side('o', IMAGE_OLD, shape.oldMatch, shape.oldJson)} AS oo ON true
         WHERE (nn.ok OR oo.ok)${guard}`;
  count();
  const withCtes = ctes.length ? sql`WITH ${sql.join(ctes, ',\n')}\n` : sql.blank;
  if (!plain) return runSql<RunRow>(db, sql`${withCtes}${judged(sql.blank)} ORDER BY c.i`);
  // `NOT g.stale` refers only to the outer row: PostgreSQL makes it a one-time filter.
  return runSql<RunRow>(
    db,
    sql`${withCtes}SELECT g.stale, m.* FROM (SELECT ${staleAfter(shape.asOf, newAt)} AS stale) AS g
          LEFT JOIN LATERAL (${judged(sql` AND NOT g.stale`)}) AS m ON true
         ORDER BY m.i`,
  );
}
