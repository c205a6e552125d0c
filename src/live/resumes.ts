import { LRUCache } from 'lru-cache';
import { comparePositions, eventPosition } from './source.ts';

/** Events kept per (shape, fields, values): a resume further back than that is caught up from the log. */
const EVENTS_KEPT = 2000;
/** Histories kept at most (least recently used go first), and how long one outlives its last use. */
const HISTORIES_KEPT = 10_000;
const HISTORY_MS = 60_000;

/**
 * What the engine has judged for one kind of change-stream subscriber: every event in positions
 * (from, to], in order. An event is a pure function of the change history and of the subscriber's
 * shape, fields and values (visibility is judged as of the change's position, as-of.ts), so any
 * subscriber with the same three gets exactly these.
 */
interface History {
  from: string;
  to: string;
  events: Record<string, unknown>[];
  /** The shape's table and the tables its rules read: a TRUNCATE or RESYNC of one ends the history. */
  tables: ReadonlySet<string>;
}

interface Recorder {
  key: string;
  tables: ReadonlySet<string>;
  /** Events pushed since the subscriber's cursor last moved. */
  recent: Record<string, unknown>[];
  /** What it judged so far; kept in `histories` when it ends. */
  history: History | null;
}

/**
 * Change-stream events kept for resumes. A client that reconnects resumes `after` the last event it
 * received, which for a stream that rarely has an event for it can be far behind where the engine
 * had judged it: catching up from the log would judge every change since again, each table the
 * rules read rebuilt as of each position (the costliest statements the engine runs). Instead, what
 * the engine judged for its previous subscription (or any ended one with the same shape, fields and
 * values) is replayed and the catch-up starts where that ends.
 *
 * A live subscriber extends its own history (no shared structure on the path every commit takes);
 * it joins the bounded cache when the subscription ends.
 *
 * Only shapes whose events are a function of history qualify: `row` and `old` made of the image's
 * columns (a relationship or a computed field would read the tables as they are now).
 */
export class Resumes {
  private readonly histories = new LRUCache<string, History>({ max: HISTORIES_KEPT, ttl: HISTORY_MS, ttlAutopurge: true, updateAgeOnGet: true });
  private readonly recorders = new WeakMap<object, Recorder>();

  /** From now on, `sub`'s events are recorded under `key` (until `end` or `drop`). */
  track(sub: object, key: string, tables: ReadonlySet<string>): void {
    this.recorders.set(sub, { key, tables, recent: [], history: null });
  }

  record(sub: object, event: Record<string, unknown>): void {
    this.recorders.get(sub)?.recent.push(event);
  }

  /** `sub`'s cursor moved from `from` to `to`: every event it has in (from, to] was recorded. */
  covered(sub: object, from: string, to: string): void {
    const rec = this.recorders.get(sub);
    if (!rec) return;
    const events = rec.recent;
    rec.recent = [];
    if (comparePositions(to, from) <= 0) return;
    if (!rec.history || !join(rec.history, { from, to, events, tables: rec.tables })) rec.history = fresh({ from, to, events, tables: rec.tables });
  }

  /**
   * The events a subscriber resuming after `after` would be sent up to where the history ends,
   * and that position (its cursor from then on); null when the history does not reach back to `after`.
   */
  replay(sub: object, after: string): { events: Record<string, unknown>[]; to: string } | null {
    const rec = this.recorders.get(sub);
    const known = rec && this.histories.get(rec.key);
    if (!known || comparePositions(known.from, after) > 0 || comparePositions(after, known.to) >= 0) return null;
    return { events: known.events.filter((e) => comparePositions(eventPosition(e)!, after) > 0), to: known.to };
  }

  /** A TRUNCATE or a RESYNC that `concerns` a history's tables: no history across it can be replayed. */
  broken(concerns: (tables: ReadonlySet<string>) => boolean): void {
    for (const [key, h] of this.histories.entries()) if (concerns(h.tables)) this.histories.delete(key);
  }

  /** The subscription ended: what it judged is kept for the next one like it (joined to what is kept, or replacing it). */
  end(sub: object): void {
    const rec = this.recorders.get(sub);
    this.recorders.delete(sub);
    if (!rec?.history) return;
    const known = this.histories.get(rec.key);
    if (known && join(known, rec.history)) return;
    if (!known || comparePositions(rec.history.to, known.to) > 0) this.histories.set(rec.key, rec.history);
  }

  /** The subscription ended with an error (a RESYNC): what it judged after it is not a history to replay. */
  drop(sub: object): void {
    this.recorders.delete(sub);
  }

  clear(): void {
    this.histories.clear();
  }
}

/** A history of (from, to] from the events given (those after `from`). */
function fresh(h: History): History {
  const out = { ...h, events: h.events.filter((e) => comparePositions(eventPosition(e)!, h.from) > 0) };
  trim(out);
  return out;
}

/** Extends `target` by `next` when next starts inside it and ends past it; false when they do not join so. */
function join(target: History, next: History): boolean {
  if (comparePositions(target.from, next.from) > 0 || comparePositions(next.from, target.to) > 0) return false;
  if (comparePositions(next.to, target.to) <= 0) return true;
  for (const e of next.events) if (comparePositions(eventPosition(e)!, target.to) > 0) target.events.push(e);
  target.to = next.to;
  trim(target);
  return true;
}

/** Past EVENTS_KEPT, the oldest events go and the history starts at the last one dropped. */
function trim(h: History): void {
  const excess = h.events.length - EVENTS_KEPT;
  if (excess <= 0) return;
  h.from = eventPosition(h.events[excess - 1]!)!;
  h.events.splice(0, excess);
}
