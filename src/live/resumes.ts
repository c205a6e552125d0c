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
}

/**
 * Change-stream events kept for resumes. A client that reconnects resumes `after` the last event it
 * received, which for a stream that rarely has an event for it can be far behind where the engine
 * had judged it: catching up from the log would judge every change since again, each table the
 * rules read rebuilt as of each position (the costliest statements the engine runs). Instead, what
 * the engine judged for its previous subscription (or for any live subscriber with the same shape,
 * fields and values) is replayed and the catch-up starts where that ends.
 *
 * Only shapes whose events are a function of history qualify: `row` and `old` made of the image's
 * columns (a relationship or a computed field would read the tables as they are now).
 */
export class Resumes {
  private readonly histories = new LRUCache<string, History>({ max: HISTORIES_KEPT, ttl: HISTORY_MS, ttlAutopurge: true, updateAgeOnGet: true });
  private readonly recorders = new WeakMap<object, Recorder>();

  /** From now on, `sub`'s events are recorded under `key` (until `end`). */
  track(sub: object, key: string, tables: ReadonlySet<string>): void {
    this.recorders.set(sub, { key, tables, recent: [] });
  }

  record(sub: object, event: Record<string, unknown>): void {
    this.recorders.get(sub)?.recent.push(event);
  }

  /**
   * `sub`'s cursor moved from `from` to `to`: every event it has in (from, to] was recorded. A
   * history joined by that interval grows; one it does not touch is replaced by the newer interval.
   */
  covered(sub: object, from: string, to: string): void {
    const rec = this.recorders.get(sub);
    if (!rec) return;
    const events = rec.recent;
    rec.recent = [];
    if (comparePositions(to, from) <= 0) return;
    const known = this.histories.get(rec.key);
    if (known && comparePositions(known.from, from) <= 0 && comparePositions(from, known.to) <= 0) {
      if (comparePositions(to, known.to) <= 0) return;
      for (const e of events) if (comparePositions(eventPosition(e)!, known.to) > 0) known.events.push(e);
      known.to = to;
      trim(known);
      return;
    }
    const fresh: History = { from, to, events: events.filter((e) => comparePositions(eventPosition(e)!, from) > 0), tables: rec.tables };
    trim(fresh);
    this.histories.set(rec.key, fresh);
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

  end(sub: object): void {
    this.recorders.delete(sub);
  }

  clear(): void {
    this.histories.clear();
  }
}

/** Past EVENTS_KEPT, the oldest events go and the history starts at the last one dropped. */
function trim(h: History): void {
  const excess = h.events.length - EVENTS_KEPT;
  if (excess <= 0) return;
  h.from = eventPosition(h.events[excess - 1]!)!;
  h.events.splice(0, excess);
}
