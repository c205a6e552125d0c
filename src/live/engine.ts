import { GraphQLError } from 'graphql';
import { FixedBuffer, Repeater, SlidingBuffer } from '@repeaterjs/repeater';
import { sql, type SQL } from 'pg-sql2';
import { compileSql, isConnectionError, type Sql } from '../db/index.ts';
import { aggregateSql, byPkSql, functionArgs, functionCall, listSql, pkMatch, rowJson, scopeFor, uncheckedInputs, verifyInputs, visibleAnd, whereSql, type SelectedField } from '../resolvers/index.ts';
import { or, type Caller, type CompiledRule } from '../rules/index.ts';
import type { ApiModel, RootFunction, TableModel } from '../schema/index.ts';
import { ColumnBinder } from './binder.ts';
import { asOfRelation, asOfSpec, deltaVisibility } from './as-of.ts';
import { evaluateChanges, IMAGE_NEW, IMAGE_OLD, type ChangeShape, type ChangeSubscriber } from './change-stream.ts';
import { buildRoster, evaluateFlags, evaluateImages, evaluateLive, IMAGE, type LiveShape, type LiveSubscriber, type Roster } from './live-query.ts';
import { matchNeeds, pkNeeds, RowIndex, visibilityNeeds, whereNeeds, type RowNeeds } from './row-index.ts';
import { comparePositions, isStreamPosition, logPosition, type Change, type ChangeSource } from './source.ts';
import { compileStream, evaluateStream, type StreamShape, type StreamSubscriber } from './stream.ts';
import { RootKeys } from './keys.ts';
import { Resumes } from './resumes.ts';
import { filterTables, relationsRead, tablesRead, targeting } from './tables.ts';

export type LiveKind = 'list' | 'byPk' | 'aggregate';

/** Unread change events kept per subscription before the stream is ended (the client resumes). */
const CHANGE_BUFFER = 10_000;

/** What a live evaluation was for: a live query (`t`, `t_by_pk`, `t_aggregate`) or a change stream (`t_changes`). */
export type EvaluationKind = 'live_query' | 'change_stream' | 'stream';

/** What the gateway's metrics and log learn from the engine (createGateway sets it). */
export interface LiveObserver {
  /** One evaluation (its statements for a set of subscribers) took `seconds`. */
  evaluated(kind: EvaluationKind, seconds: number): void;
  /** A failure no client sees in full: a subscription gets a masked error, or an evaluation will be retried. */
  error(message: string, err: unknown): void;
}

const consoleObserver: LiveObserver = {
  evaluated() {},
  error: (message, err) => console.error(`rowgate live: ${message}:`, err),
};

export interface LiveStats {
  /** SQL statements the engine has run (live queries, change streams, streams). */
  statements: number;
  subscriptions: number;
  shapes: number;
}

interface LiveShapeState extends LiveShape {
  /** The tables and views it reads, views by name (relationsRead): a reload that changes one ends it. */
  relations: Set<string>;
  /** Every subscriber must be re-evaluated. */
  dirty: boolean;
  /** Changed rows of the root table (old and new images) not yet looked at; see `targeting` in tables.ts. */
  images: Record<string, unknown>[];
  /** Changed rows of tracked tables right below the root (old and new images by table), not yet looked at. */
  childImages: Map<string, Record<string, unknown>[]>;
  /** The tables the visibility's row-independent branches read (`flag`): a commit to one makes the flags unevaluated. */
  flagTables: Set<string>;
  flagsStale: boolean;
  /** The index's fallback subscribers as relations for evaluateImages; null after one came or went. */
  roster: Roster | null;
  newcomers: Set<LiveSubscriber>;
  running: boolean;
}

/**
 * Past this many changed root rows in one go, finding whom they concern (every subscriber tested
 * against every row) costs more than re-evaluating all.
 */
const MAX_TARGETED_IMAGES = 500;
/** Changed rows below the root cost a lookup in the gateway each (not per subscriber); this only bounds memory. */
const MAX_CHILD_IMAGES = 20_000;

interface StreamShapeState extends StreamShape {
  /** As LiveShapeState's. */
  tables: Set<string>;
  relations: Set<string>;
  /** A commit touched its tables: every subscriber (not busy) is looked at again. */
  dirty: boolean;
  /** Subscribers to look at in the next evaluation: new ones, and those whose batch was read and was full. */
  waiting: Set<StreamSubscriber>;
  running: boolean;
}

interface ChangeShapeState extends ChangeShape {
  /** As LiveShapeState's. */
  relations: Set<string>;
  /** Changes of the table (and of the tables its rules read) delivered and not yet evaluated; evaluated together, in order. */
  pending: Change[];
  boundaries: Set<string>;
  running: boolean;
  /** Subscribers resuming from `after`, caught up from the log together (catchUp). */
  catching: Set<ChangeSubscriber>;
  catchingUp: boolean;
}

function childImages(shape: LiveShapeState, table: string): Record<string, unknown>[] {
  let list = shape.childImages.get(table);
  if (!list) shape.childImages.set(table, (list = []));
  return list;
}

/** The stable code of a subscription a reload ended: the client subscribes again, on the new schema. */
export const SCHEMA_CHANGED = 'SCHEMA_CHANGED';

function schemaChanged(): GraphQLError {
  return new GraphQLError('the schema changed (the config or the database was reloaded): subscribe again', { extensions: { code: SCHEMA_CHANGED } });
}

/**
 * The stable code of a change stream that cannot go on without a gap: changes were lost (the WAL
 * capture's slot was gone, op RESYNC) or a table it reads was truncated. The client re-fetches its
 * data and subscribes again without `after`.
 */
export const CHANGES_RESYNC = 'CHANGES_RESYNC';

function changesResync(change: Change): GraphQLError {
  const why = change.op === 'RESYNC' ? 'changes were lost (the change capture had to restart from the present)' : `table ${change.table} was truncated`;
  return new GraphQLError(`${why} at position ${change.position}: re-fetch the data and subscribe again without "after"`, { extensions: { code: CHANGES_RESYNC, position: change.position } });
}

/** The first TRUNCATE or RESYNC among `changes` that concerns a subscription reading `tables`. */
function breakIn(changes: Change[], tables: (t: string) => boolean): Change | undefined {
  return changes.find((c) => c.op === 'RESYNC' || (c.op === 'TRUNCATE' && tables(c.table)));
}

/** Waits for every task and then throws the first failure: nothing of the shape is left in flight. */
async function settled(...tasks: Promise<unknown>[]): Promise<void> {
  for (const result of await Promise.allSettled(tasks)) if (result.status === 'rejected') throw result.reason;
}

function touches(relations: ReadonlySet<string>, changed: ReadonlySet<string>): boolean {
  for (const t of relations) if (changed.has(t)) return true;
  return false;
}

function subscriptionError(err: unknown, observer: LiveObserver): Error {
  if (err instanceof GraphQLError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'POSITION_EXPIRED') return new GraphQLError((err as Error).message, { extensions: { code: 'BAD_USER_INPUT', reason: 'POSITION_EXPIRED' } });
  // statement_timeout (limits.statementTimeoutMs), as for a query: the subscription asks too much.
  if (code === '57014') return new GraphQLError('the subscription took longer than limits.statementTimeoutMs to evaluate', { extensions: { code: 'LIMIT_EXCEEDED' } });
  if (typeof code === 'string' && code.startsWith('22')) {
    return new GraphQLError(`a value was rejected by the database (SQLSTATE ${code})`, { extensions: { code: 'BAD_USER_INPUT', sqlstate: code } });
  }
  observer.error('a subscription failed', err);
  return new GraphQLError('Internal server error', { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
}

/**
 * The live engine (live/ README): it keeps every subscription, groups them by operation shape,
 * and on each batch of committed changes re-evaluates only the shapes whose tables (including the
 * tables their rules read) changed, many subscribers per statement.
 */
export class LiveEngine {
  private readonly live = new Map<string, LiveShapeState>();
  private readonly changeShapes = new Map<string, ChangeShapeState>();
  private readonly streamShapes = new Map<string, StreamShapeState>();
  /** Change-stream events kept for subscribers resuming with `after` (resumes.ts). */
  private readonly resumes = new Resumes();
  private readonly count = () => {
    this.stats.statements++;
  };
  private readonly unsubscribe: () => void;
  /** capturedTables(), computed once: the schema does not change under an engine. */
  private captured: Set<string> | null = null;
  /** Subscriber ids: short strings, unique within this engine. */
  private sids = 0;
  /** Told the duration of every evaluation and failures; the default only writes failures to stderr. */
  observer: LiveObserver = consoleObserver;
  /** Subscriptions this engine runs (`stats` may be shared with the engines of earlier schemas). */
  private running = 0;
  /** Set by retire: the tables and views the reloads since this engine's schema changed. */
  private retired: ReadonlySet<string> | null = null;
  private closed = false;

  /** Closed: it no longer follows the feed (close(), or retired and without subscriptions). */
  get isClosed(): boolean {
    return this.closed;
  }

  constructor(
    private readonly api: ApiModel,
    private readonly db: Sql,
    private readonly source: ChangeSource,
    /** Subscribers per statement (limits.subscribersPerStatement). */
    private readonly batch = 1000,
    /** Counts for the metrics; a reload passes the previous engine's, so they go on across schemas. */
    readonly stats: LiveStats = { statements: 0, subscriptions: 0, shapes: 0 },
  ) {
    this.unsubscribe = source.onChanges(({ changes }) => this.onChanges(changes));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.resumes.clear();
  }

  /**
   * A reload replaced the schema (and this engine, for new subscriptions): the subscriptions this
   * engine runs that read a table or view in `changed` (its columns, rules or relationships
   * changed, or it is gone) end with SCHEMA_CHANGED; the others go on here, with the rules they
   * started with, which the reload left as they were. Once the last has ended the engine stops
   * following the feed. Called again by each later reload, with what that one changed.
   */
  retire(changed: ReadonlySet<string>): void {
    this.retired = new Set([...(this.retired ?? []), ...changed]);
    const err = schemaChanged();
    for (const shape of [...this.live.values()]) if (touches(shape.relations, changed)) for (const sub of [...shape.subscribers.values()]) sub.fail(err);
    for (const shape of [...this.changeShapes.values()]) if (touches(shape.relations, changed)) for (const sub of [...shape.subscribers.values()]) sub.fail(err);
    for (const shape of [...this.streamShapes.values()]) if (touches(shape.relations, changed)) for (const sub of [...shape.subscribers.values()]) sub.fail(err);
    if (this.running === 0) this.close();
  }

  /**
   * Why a subscription starting now (its first next()) on a retired engine cannot run: it reads
   * what the reload changed, or the engine no longer follows the feed. null when it can.
   */
  private refusal(relations: ReadonlySet<string>): GraphQLError | null {
    return this.closed || (this.retired && touches(relations, this.retired)) ? schemaChanged() : null;
  }

  private started(): void {
    this.stats.subscriptions++;
    this.running++;
  }

  private ended(): void {
    this.stats.subscriptions--;
    this.running--;
    if (this.retired && this.running === 0) this.close();
  }

  private async timed<T>(kind: EvaluationKind, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await run();
    } finally {
      this.observer.evaluated(kind, (performance.now() - started) / 1000);
    }
  }

  private onChanges(delivered: Change[]): void {
    const breaks = delivered.filter((c) => c.op === 'TRUNCATE' || c.op === 'RESYNC');
    const changes = breaks.length ? delivered.filter((c) => c.op !== 'TRUNCATE' && c.op !== 'RESYNC') : delivered;
    if (breaks.length) this.onBreaks(breaks);
    const tables = new Set(changes.map((c) => c.table));
    for (const shape of this.live.values()) {
      if (![...shape.tables].some((t) => tables.has(t))) continue;
      if ([...shape.flagTables].some((t) => tables.has(t))) shape.flagsStale = true;
      for (const c of changes) {
        if (shape.dirty) break;
        if (!shape.tables.has(c.table)) continue;
        if (c.table === shape.table && shape.match) {
          if (c.old) shape.images.push(c.old);
          if (c.new) shape.images.push(c.new);
        } else if (shape.keys?.tracks(c.table)) {
          const rows = childImages(shape, c.table);
          if (c.old) rows.push(c.old);
          if (c.new) rows.push(c.new);
        } else {
          shape.dirty = true;
        }
      }
      let children = 0;
      for (const list of shape.childImages.values()) children += list.length;
      if (shape.images.length > MAX_TARGETED_IMAGES || children > MAX_CHILD_IMAGES) shape.dirty = true;
      // A full re-evaluation covers everything that was waiting.
      if (shape.dirty) {
        shape.images = [];
        shape.childImages.clear();
      }
      this.drain(shape);
    }
    for (const shape of this.changeShapes.values()) {
      // The table's changes and those of the tables its rules read: the latter mark where its
      // visibility changed, so that each change is judged as of its position (as-of.ts).
      const mine = changes.filter((c) => c.table === shape.table || shape.boundaries.has(c.table));
      if (mine.length === 0) continue;
      for (const sub of shape.subscribers.values()) sub.backlog?.push(...mine);
      shape.pending.push(...mine);
      this.drainChanges(shape);
    }
    for (const shape of this.streamShapes.values()) {
      if (![...shape.tables].some((t) => tables.has(t))) continue;
      shape.dirty = true;
      this.drainStream(shape);
    }
  }

  /**
   * TRUNCATE and RESYNC carry no row images: live queries reading the table (all of them, for
   * RESYNC) are evaluated again in full; change streams reading it end with CHANGES_RESYNC.
   */
  private onBreaks(breaks: Change[]): void {
    for (const shape of this.live.values()) {
      if (!breakIn(breaks, (t) => shape.tables.has(t))) continue;
      shape.dirty = true;
      shape.images = [];
      shape.childImages.clear();
      this.drain(shape);
    }
    for (const shape of this.changeShapes.values()) {
      const change = breakIn(breaks, (t) => t === shape.table || shape.boundaries.has(t));
      if (change) for (const sub of [...shape.subscribers.values()]) sub.fail(changesResync(change));
    }
    this.resumes.broken((tables) => breakIn(breaks, (t) => tables.has(t)) !== undefined);
    // Streams read the tables themselves: rows committed during a resync are past their cursors still.
    for (const shape of this.streamShapes.values()) {
      if (!breakIn(breaks, (t) => shape.tables.has(t))) continue;
      shape.dirty = true;
      this.drainStream(shape);
    }
  }

  /** Evaluates a shape until it is clean; results of one shape are produced in commit order. */
  private drain(shape: LiveShapeState): void {
    if (shape.running) return;
    shape.running = true;
    void (async () => {
      try {
        while (shape.dirty || shape.flagsStale || shape.images.length || shape.childImages.size || shape.newcomers.size) {
          const dirty = shape.dirty;
          const flagsStale = shape.flagsStale;
          const images = shape.images;
          const children = new Map(shape.childImages);
          const newcomers = [...shape.newcomers];
          shape.dirty = false;
          shape.flagsStale = false;
          shape.images = [];
          shape.childImages.clear();
          shape.newcomers.clear();
          // Here, with no evaluation of the shape in flight: none can record a flag from before the change.
          if (flagsStale) shape.index?.forgetFlags();
          // The flags of newcomers (or of everyone, after such a change) beside their evaluation, so
          // that the next changed rows are looked up without a statement for them.
          const flags = () => evaluateFlags(this.db, shape, this.batch, this.count);
          if (dirty) {
            await settled(flags(), this.timed('live_query', () => evaluateLive(this.db, shape, [...shape.subscribers.values()], this.batch, this.count)));
            continue;
          }
          // Newcomers are evaluated after every change they were subscribed for: they need nothing else.
          if (newcomers.length) await settled(flags(), this.timed('live_query', () => evaluateLive(this.db, shape, newcomers, this.batch, this.count)));
          // Each evaluation below sees every change of this round (they are all committed), so a
          // subscriber evaluated once needs nothing more this round.
          const done = new Set<LiveSubscriber>(newcomers);
          if (images.length) for (const sub of await this.evaluateImages(shape, images, done)) done.add(sub);
          if (children.size && shape.keys) {
            const holders = shape.keys.concerned<LiveSubscriber>(children);
            const concerned = [...holders].filter((sub) => !done.has(sub) && shape.subscribers.get(sub.sid) === sub);
            if (concerned.length) await this.timed('live_query', () => evaluateLive(this.db, shape, concerned, this.batch, this.count));
          }
        }
      } catch (err) {
        // The database stayed unreachable through every retry: keep the subscriptions, and try
        // again on the next change (or the next subscriber) once it is back, flags included.
        shape.dirty = true;
        shape.flagsStale = shape.flag !== null;
        this.observer.error('re-evaluation failed, will retry on the next change', err);
      } finally {
        shape.running = false;
      }
    })();
  }

  /**
   * Changed root rows: the subscribers the index finds for their old and new images are evaluated
   * (no statement when it finds none), and the index's fallback subscribers are tested against
   * every image in PostgreSQL (evaluateImages). Returns the subscribers evaluated.
   */
  private async evaluateImages(shape: LiveShapeState, images: Record<string, unknown>[], done: ReadonlySet<LiveSubscriber>): Promise<LiveSubscriber[]> {
    const index = shape.index!;
    // On the tables as they are: at least as new as every commit delivered (they come in commit order).
    await evaluateFlags(this.db, shape, this.batch, this.count);
    const matched = [...index.matched(images)].filter((sub) => !done.has(sub) && shape.subscribers.get(sub.sid) === sub);
    if (matched.length) await this.timed('live_query', () => evaluateLive(this.db, shape, matched, this.batch, this.count));
    if (index.fallback.size === 0) return matched;
    const roster = (shape.roster ??= buildRoster(index.fallback, this.batch));
    try {
      return [...matched, ...(await this.timed('live_query', () => evaluateImages(this.db, shape, roster, images.map((i) => JSON.stringify(i)), this.count)))];
    } catch (err) {
      // One subscriber's values can fail a statement for all (a LIKE pattern ending in "\"):
      // evaluating each finds it (evaluateLive isolates it) and answers the others.
      if (isConnectionError(err)) throw err;
      const all = [...index.fallback];
      await this.timed('live_query', () => evaluateLive(this.db, shape, all, this.batch, this.count));
      return [...matched, ...all];
    }
  }

  /**
   * What the subscription's match requires of a changed root row (row-index.ts), and the
   * visibility's rules that do not read the row (kept as a flag per subscriber).
   */
  private rowNeeds(caller: Caller, kind: LiveKind, model: TableModel, field: SelectedField, filtered: boolean): RowNeeds & { rowless: CompiledRule[] } {
    const rules = this.api.rules.policy(model.name)?.select;
    // The admin secret and public tables: visibility is true, only the filter narrows.
    const visible = caller.admin || !rules || rules === 'public' ? { needs: { keys: null, flag: false }, rowless: [] } : visibilityNeeds(model, rules, caller);
    const filter = !filtered ? null : kind === 'byPk' ? pkNeeds(model, field.args) : whereNeeds(model, field.args['where']);
    const needs = matchNeeds(visible.needs, filter);
    return { ...needs, rowless: needs.flag ? visible.rowless : [] };
  }

  /** The tables (base tables of views) that the rules `rowless` of `model` read, `model` aside: they do not read its row. */
  private flagTables(model: TableModel, rowless: CompiledRule[]): Set<string> {
    const out = new Set<string>();
    if (rowless.length === 0) return out;
    for (const t of this.api.rules.readsTables(model.name, rowless)) if (t !== model.name) for (const b of this.api.reads(t)) out.add(b);
    return out;
  }

  /**
   * Evaluates a change stream's pending changes for its subscribers that are live (not catching up):
   * everything that arrived while one evaluation ran goes into the next, so a burst costs one
   * statement per 500 changes and 1,000 subscribers, and subscribers who left are not evaluated.
   */
  private drainChanges(shape: ChangeShapeState): void {
    if (shape.running) return;
    shape.running = true;
    void (async () => {
      try {
        while (shape.pending.length) {
          const changes = shape.pending;
          shape.pending = [];
          const subs = [...shape.subscribers.values()].filter((sub) => !sub.backlog);
          if (subs.length) await this.evaluateChanges(shape, subs, changes);
        }
      } finally {
        shape.running = false;
      }
    })();
  }

  /**
   * Casts, apart from any row, the subscription's values that only PostgreSQL can check (see
   * resolvers/input.ts): refused before the subscription exists, whatever the data holds.
   */
  checkInputs(model: TableModel, field: SelectedField, fn?: RootFunction): Promise<void> {
    const inputs = uncheckedInputs(this.api, model, field);
    if (fn) functionArgs(fn.args, field.args['args'] as Record<string, unknown> | undefined, `${fn.name}.args`, inputs);
    return verifyInputs(this.db, inputs);
  }

  /**
   * A live query: the first result at once, then a new one after each commit that changes it.
   * `fn`: a root function's rows instead of the table's (`fn(args)` as a subscription). What a
   * function reads is not known, so every commit to a captured table re-evaluates it, for everyone.
   */
  subscribeLive(caller: Caller, kind: LiveKind, model: TableModel, field: SelectedField, fn?: RootFunction): AsyncIterable<unknown> {
    const binder = new ColumnBinder();
    const scope = scopeFor(this.api, caller, binder, true);
    const targets = fn ? { root: null, children: new Map() } : targeting(this.api, model, field, kind);
    const keys = new RootKeys(kind, field, targets.children);
    const selected = keys.withKeys();
    const call = fn ? functionCall(scope, fn, selected, []) : null;
    const expr =
      kind === 'list' ? listSql(scope, model, selected, null, call) : kind === 'byPk' ? byPkSql(scope, model, selected) : aggregateSql(scope, model, selected, null, call);
    // Rendered after expr, with the same binder: its values are the columns after expr's. (No
    // closures here: one would keep this call's scope and field alive as long as the subscription.)
    const visible = targets.root === null ? null : this.visibleFor(scope, model, IMAGE);
    const filter =
      targets.root !== 'filter' ? sql.true : kind === 'byPk' ? pkMatch(scope, model, IMAGE, field.args) : whereSql(scope, model, IMAGE, field.args['where'] as Record<string, unknown> | undefined);
    const match = visible === null ? null : visibleAnd(visible, filter);
    const needs = match === null ? null : this.rowNeeds(caller, kind, model, field, targets.root === 'filter');
    // Rendered after match, with the same binder. The rules do not read the row: IMAGE is never written.
    const flag = needs?.flag ? or(needs.rowless.map((r) => this.api.rules.rule(model.name, r.rule, IMAGE, scope.params!))) : null;
    const stored: RowNeeds | null = needs && { keys: needs.keys, flag: needs.flag };
    const compiled = compileSql(sql`SELECT ${expr}, ${match ?? sql.null}, ${flag ?? sql.null}`);
    const key = `${compiled.text}\u0000${JSON.stringify(compiled.values)}`;
    // Registered when the subscription starts (its first next(), see shapeOf); until then only
    // this variable holds it.
    let fresh: LiveShapeState | null = {
      key,
      table: model.name,
      schema: this.api.schema,
      expr,
      match,
      keys: keys.tracked ? keys : null,
      index: match ? new RowIndex<LiveSubscriber>() : null,
      flag,
      flagTables: needs ? this.flagTables(model, needs.rowless) : new Set(),
      flagsStale: false,
      width: binder.values.length,
      tables: fn ? this.capturedTables() : tablesRead(this.api, model, field),
      relations: fn ? new Set([...relationsRead(this.api, model, field), fn.name]) : relationsRead(this.api, model, field),
      subscribers: new Map(),
      dirty: false,
      images: [],
      childImages: new Map(),
      roster: null,
      newcomers: new Set(),
      running: false,
    };
    const values = binder.values;
    const valuesKey = JSON.stringify(values);
    // Only the latest result matters: a client that reads slowly skips states, never the last one.
    return new Repeater<unknown>(async (push, stop) => {
      const refused = this.refusal(fresh!.relations);
      if (refused) return void stop(refused);
      const owner = this.shapeOf(this.live, fresh!);
      fresh = null;
      const sub: LiveSubscriber = {
        sid: String(++this.sids),
        values,
        valuesKey,
        hash: null,
        push: (result) => void push(result),
        fail: (err) => stop(subscriptionError(err, this.observer)),
      };
      owner.subscribers.set(sub.sid, sub);
      owner.roster = null;
      if (stored) owner.index?.add(sub, stored);
      owner.newcomers.add(sub);
      this.started();
      this.drain(owner);
      await stop;
      owner.subscribers.delete(sub.sid);
      owner.roster = null;
      owner.newcomers.delete(sub);
      owner.keys?.forget(sub);
      owner.index?.remove(sub);
      this.ended();
      this.dropIfEmpty(this.live, owner);
    }, new SlidingBuffer(1));
  }

  /**
   * `t_changes`: one event per visible change from `after` (or from now). Catching up reads the
   * change log; live deliveries that arrive meanwhile wait in a backlog and are applied after it,
   * skipping what the catch-up already covered, so nothing is lost or sent twice.
   */
  subscribeChanges(caller: Caller, model: TableModel, field: SelectedField): AsyncIterable<unknown> {
    const binder = new ColumnBinder();
    const scope = scopeFor(this.api, caller, binder);
    const where = field.args['where'] as Record<string, unknown> | undefined;
    const after = field.args['after'] as string | null | undefined;
    if (after !== undefined && after !== null && !isStreamPosition(after)) throw new GraphQLError('after must be a position received from this stream', { extensions: { code: 'BAD_USER_INPUT' } });
    const images = (name: string) => field.children.filter((c) => c.name === name);
    const jsonOf = (name: string, row: symbol): SQL => {
      const pairs = images(name).flatMap((c) => [sql.literal(c.key), rowJson(scope, model, row, c.children)]);
      return pairs.length ? sql`json_build_object(${sql.join(pairs, ', ')})` : sql`'{}'::json`;
    };
    // Each image is judged with the tables its rules and its filter read as they were at the change (as-of.ts).
    const asOf = asOfSpec(this.api, model.name, filterTables(this.api, model, where));
    const match = (row: symbol, side: 'new' | 'old') => {
      const relation = asOfRelation(asOf, side);
      return visibleAnd(scope.params ? this.api.rules.visibility(model.name, row, scope.params, relation) : sql.true, whereSql({ ...scope, relation }, model, row, where));
    };
    // Rendered once, in this order, so every subscriber's values line up with the same columns.
    const parts = { newMatch: match(IMAGE_NEW, 'new'), newJson: jsonOf('row', IMAGE_NEW), oldMatch: match(IMAGE_OLD, 'old'), oldJson: jsonOf('old', IMAGE_OLD) };
    // Per table the rules read: which rows a change of it can move in or out of view (moves in change-stream.ts).
    const deltas = new Map<string, SQL | null>();
    // A table the filter reads can move any row in or out (null: every visible row is compared).
    for (const { name } of asOf.tables) if (name !== model.name) deltas.set(name, asOf.filtered.has(name) ? null : scope.params ? deltaVisibility(this.api, asOf, model.name, name, scope.params) : sql.false);
    const { text, values } = compileSql(sql`${parts.newMatch} ${parts.newJson} ${parts.oldMatch} ${parts.oldJson} ${sql.join([...deltas.values()].map((d) => d ?? sql.null), ' ')}`);
    const key = `${model.name}\u0000${text}\u0000${JSON.stringify(values)}`;
    const boundaries = new Set(asOf.tables.map((t) => t.name));
    const fields = field.children.map((c) => ({ key: c.key, name: c.name }));
    // Events whose images are made of the row's columns only are a function of the change history:
    // kept for resumes (resumes.ts). A relationship or a computed field reads the tables as they are.
    const fromHistory = ['row', 'old'].every((name) => images(name).every((f) => f.children.every((c) => c.typename !== undefined || model.readable.some((col) => col.name === c.name))));
    // Registered when the subscription starts, as in subscribeLive.
    let fresh: ChangeShapeState | null = { key, table: model.name, schema: this.api.schema, ...parts, width: binder.values.length, asOf, deltas, relation: model.table, boundaries, relations: relationsRead(this.api, model, field), subscribers: new Map(), pending: [], running: false, catching: new Set(), catchingUp: false };
    const mine = binder.values.slice();
    return new Repeater<unknown>(async (push, stop) => {
      const refused = this.refusal(fresh!.relations);
      if (refused) return void stop(refused);
      const owner = this.shapeOf(this.changeShapes, fresh!);
      fresh = null;
      const sub: ChangeSubscriber = {
        sid: String(++this.sids),
        values: mine,
        cursor: after ?? this.source.head(),
        backlog: after ? [] : null,
        fields,
        push: (event) => {
          this.resumes.record(sub, event);
          send(event);
        },
        fail: (err) => {
          // What it was judged after an error (a RESYNC ends it) is not a history to replay.
          this.resumes.drop(sub);
          stop(subscriptionError(err, this.observer));
        },
      };
      // Events cannot be skipped: past CHANGE_BUFFER unread events the stream ends, and the
      // client resumes with `after` (nothing is lost, the change log still has them).
      const send = (event: Record<string, unknown>) => {
        try {
          push(event).catch(() => {});
        } catch {
          stop(new GraphQLError(`the client reads too slowly: more than ${CHANGE_BUFFER} events are waiting; resume with after`, { extensions: { code: 'LIMIT_EXCEEDED' } }));
        }
      };
      if (fromHistory) this.resumes.track(sub, `${key}\u0000${JSON.stringify(fields)}\u0000${JSON.stringify(mine)}`, new Set([model.name, ...boundaries]));
      owner.subscribers.set(sub.sid, sub);
      this.started();
      if (sub.backlog) {
        // What the engine judged for an earlier subscription like this one is sent from memory; the
        // log is read from where that ends.
        const kept = this.resumes.replay(sub, sub.cursor);
        if (kept) {
          for (const event of kept.events) send(event);
          sub.cursor = kept.to;
        }
        // Catching up runs beside the shape's live evaluations: until it is done, live deliveries for
        // this subscriber wait in its backlog, and its cursor filters out what both paths saw.
        owner.catching.add(sub);
        this.catchUp(owner);
      }
      await stop;
      this.resumes.end(sub);
      owner.catching.delete(sub);
      owner.subscribers.delete(sub.sid);
      this.ended();
      this.dropIfEmpty(this.changeShapes, owner);
    }, new FixedBuffer(CHANGE_BUFFER));
  }

  /**
   * The shape registered under `fresh.key`, or `fresh`, registered now. Shapes are registered by
   * the subscription's executor, which runs on its first next(): a subscription returned before
   * that (a `complete` that came while it started, its socket closed meanwhile) never runs the
   * executor nor its cleanup, and a shape it had registered would stay, evaluated for no one.
   */
  private shapeOf<T extends { key: string }>(shapes: Map<string, T>, fresh: T): T {
    const known = shapes.get(fresh.key);
    if (known) return known;
    shapes.set(fresh.key, fresh);
    this.stats.shapes++;
    return fresh;
  }

  /**
   * Catches up every subscriber of the shape resuming from `after`, together: one task per shape
   * reads the log from the oldest cursor among them and evaluates each batch for all of them in
   * shared statements (evaluateChanges leaves a subscriber out of the steps at or before its
   * cursor), so a burst of reconnects costs one pass over the log, not one per subscriber. Once the
   * log read finds nothing more, the deliveries that arrived meanwhile (each subscriber's backlog,
   * past its cursor) are evaluated the same way, and the subscribers join the live path.
   */
  private catchUp(shape: ChangeShapeState): void {
    if (shape.catchingUp) return;
    shape.catchingUp = true;
    void (async () => {
      try {
        while (shape.catching.size) {
          const group = [...shape.catching];
          try {
            await this.catchUpRound(shape, group);
          } catch (err) {
            for (const sub of group) {
              sub.fail(err);
              shape.catching.delete(sub);
            }
          }
        }
      } finally {
        shape.catchingUp = false;
      }
    })();
  }

  /** Drops `shape` once its last subscriber left, unless another shape took its key meanwhile (shapeOf's counterpart). */
  private dropIfEmpty<T extends { key: string; subscribers: Map<string, unknown> }>(shapes: Map<string, T>, shape: T): void {
    if (shape.subscribers.size > 0 || shapes.get(shape.key) !== shape) return;
    shapes.delete(shape.key);
    this.stats.shapes--;
  }

  private async catchUpRound(shape: ChangeShapeState, group: ChangeSubscriber[]): Promise<void> {
    const done = (subs: Iterable<ChangeSubscriber>) => {
      for (const sub of subs) shape.catching.delete(sub);
    };
    const evaluate = async (subs: ChangeSubscriber[], changes: Change[]) => {
      const live = new Set(await this.evaluateChanges(shape, subs, changes));
      // An ended subscriber's cursor stays where it was: reading on would read the same changes forever.
      done(subs.filter((sub) => !live.has(sub)));
      return subs.filter((sub) => live.has(sub));
    };
    const from = group.map((sub) => logPosition(sub.cursor)).reduce((a, b) => (comparePositions(a, b) <= 0 ? a : b));
    let changes: Change[];
    try {
      changes = await this.source.readAfter(from, 1000);
    } catch (err) {
      // Expired (retention deleted what follows `from`): only the subscribers resuming from there
      // fail; the others read on from their own cursors in the next round.
      const failing = (err as { code?: string }).code === 'POSITION_EXPIRED' ? group.filter((sub) => logPosition(sub.cursor) === from) : group;
      for (const sub of failing) sub.fail(err);
      done(failing);
      return;
    }
    // A resume across a truncation or a resync cannot be filled in: those whose cursor is before it re-fetch.
    const cut = breakIn(changes, (t) => t === shape.table || shape.boundaries.has(t));
    if (cut) {
      const failing = group.filter((sub) => comparePositions(sub.cursor, cut.position) < 0);
      for (const sub of failing) sub.fail(changesResync(cut));
      done(failing);
      return;
    }
    if (changes.length) {
      await evaluate(group, changes);
      return;
    }
    // The log is read up to the feed's head for all of them: what is left is in their backlogs.
    let live = group;
    while (live.some((sub) => sub.backlog?.length)) {
      const pending = new Map<string, Change>();
      for (const sub of live) {
        for (const c of sub.backlog ?? []) if (comparePositions(c.position, sub.cursor) > 0) pending.set(c.position, c);
        sub.backlog = [];
      }
      const ordered = [...pending.values()].sort((a, b) => comparePositions(a.position, b.position));
      if (ordered.length) live = await evaluate(live, ordered);
    }
    for (const sub of live) sub.backlog = null;
    done(live);
  }

  /** evaluateChanges, and what it judged for each subscriber still live kept for resumes (resumes.ts). */
  private async evaluateChanges(shape: ChangeShapeState, subs: ChangeSubscriber[], changes: Change[]): Promise<ChangeSubscriber[]> {
    const from = subs.map((sub) => sub.cursor);
    const live = await this.timed('change_stream', () => evaluateChanges(this.db, shape, subs, changes, this.batch, this.count, this.source.logSnapshot));
    const still = new Set(live);
    subs.forEach((sub, i) => {
      if (still.has(sub)) this.resumes.covered(sub, from[i]!, sub.cursor);
    });
    return live;
  }

  private visibleFor(scope: ReturnType<typeof scopeFor>, model: TableModel, row: symbol): SQL {
    return scope.params ? this.api.rules.visibility(model.name, row, scope.params) : sql.true;
  }

  /**
   * `t_stream`: batches of rows past a cursor, in cursor order, then new rows as they commit.
   * Subscribers of the same shape share each statement (stream.ts); a subscriber whose batch is
   * still unread is left out until it is read, so a slow reader holds back no one and nothing piles up.
   */
  subscribeStream(caller: Caller, model: TableModel, field: SelectedField): AsyncIterable<unknown> {
    const compiled = compileStream(this.api, caller, model, field);
    let fresh: StreamShapeState | null = {
      ...compiled.shape,
      subscribers: new Map(),
      tables: tablesRead(this.api, model, field),
      relations: relationsRead(this.api, model, field),
      dirty: false,
      waiting: new Set(),
      running: false,
    };
    return new Repeater<unknown>(async (push, stop) => {
      const refused = this.refusal(fresh!.relations);
      if (refused) return void stop(refused);
      const owner = this.shapeOf(this.streamShapes, fresh!);
      fresh = null;
      const sub: StreamSubscriber = {
        sid: String(++this.sids),
        values: compiled.values,
        cursor: compiled.cursor,
        busy: false,
        again: false,
        push: (rows) => push(rows),
        fail: (err) => stop(subscriptionError(err, this.observer)),
      };
      owner.subscribers.set(sub.sid, sub);
      this.started();
      owner.waiting.add(sub);
      this.drainStream(owner);
      await stop;
      owner.waiting.delete(sub);
      owner.subscribers.delete(sub.sid);
      this.ended();
      this.dropIfEmpty(this.streamShapes, owner);
    });
  }

  /** Every table the change log can hold a change of: the listed ones and those their rules read, as capture installs them. */
  private capturedTables(): Set<string> {
    if (!this.captured) {
      this.captured = new Set();
      for (const name of this.api.tables.keys()) for (const t of this.api.rules.readsTables(name)) for (const b of this.api.reads(t)) this.captured.add(b);
    }
    return this.captured;
  }

  /** Evaluates a stream shape until nothing waits; one evaluation of a shape at a time. */
  private drainStream(shape: StreamShapeState): void {
    if (shape.running) return;
    shape.running = true;
    const onRead = (sub: StreamSubscriber) => {
      if (!sub.again || shape.subscribers.get(sub.sid) !== sub) return;
      sub.again = false;
      shape.waiting.add(sub);
      this.drainStream(shape);
    };
    void (async () => {
      try {
        while (shape.dirty || shape.waiting.size) {
          const subs = shape.dirty ? [...shape.subscribers.values()] : [...shape.waiting];
          shape.dirty = false;
          shape.waiting.clear();
          const ready = subs.filter((sub) => {
            // Unread: looked at again once read, for whatever this evaluation would have found.
            if (sub.busy) sub.again = true;
            return !sub.busy;
          });
          if (ready.length) await this.timed('stream', () => evaluateStream(this.db, shape, ready, this.batch, this.count, onRead));
        }
      } catch (err) {
        // The database stayed unreachable through every retry: the streams end, their clients resubscribe.
        for (const sub of [...shape.subscribers.values()]) sub.fail(err);
      } finally {
        shape.running = false;
      }
    })();
  }
}
