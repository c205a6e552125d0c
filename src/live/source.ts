import type { LogSnapshot } from '../db/changes/index.ts';

/** One committed change of a captured table, as the change log holds it (see db/changes). */
export interface Change {
  /** Opaque, ordered: a decimal string of the change's place in commit order. */
  position: string;
  table: string;
  /** TRUNCATE: `table` was emptied (no images); RESYNC: changes were lost, every subscriber re-fetches (db/changes README). */
  op: 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' | 'RESYNC';
  key: Record<string, unknown>;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}

/** What the live engine needs from the change feed; db/changes implements it. */
export interface ChangeSource {
  /** Called with every stamped batch of changes, in position order; returns an unsubscribe. */
  onChanges(listener: (delivery: { changes: Change[]; position: string }) => void): () => void;
  /** Changes after `position`, oldest first; throws a `POSITION_EXPIRED` error past retention. */
  readAfter(position: string, limit: number): Promise<Change[]>;
  /** The position of the last delivered change. */
  head(): string;
  /** Set when change streams must run in a snapshot the log explains (WAL capture; live/log-snapshot.ts). */
  logSnapshot?: LogSnapshot;
}

/**
 * Positions of change-stream events: a change's own event is at its log position `p`; the events a
 * change causes beside it (rows moving in or out of view because a table the rules read changed,
 * live/change-stream.ts) are at `p:1`, `p:2`, … in a fixed order, and the event of a change that also
 * causes moves at `p:0`. So `p:k` sorts after `p - 1` and before `p`, and a stream resumed in the
 * middle of the events of one change gets exactly the rest of them.
 */
const POSITION = /^(0|[1-9]\d{0,18})(?::(0|[1-9]\d{0,8}))?$/;

function split(p: string): { pos: bigint; sub: number } {
  const m = POSITION.exec(p);
  if (!m) throw new Error(`not a position: ${p}`);
  return { pos: BigInt(m[1]!), sub: m[2] === undefined ? Infinity : Number(m[2]) };
}

/** Whether a client's `after` is a position of this form (its log part is checked by the log too). */
export function isStreamPosition(p: unknown): p is string {
  return typeof p === 'string' && POSITION.test(p) && BigInt(POSITION.exec(p)![1]!) < 2n ** 63n;
}

export function comparePositions(a: string, b: string): number {
  const x = split(a);
  const y = split(b);
  if (x.pos !== y.pos) return x.pos < y.pos ? -1 : 1;
  return x.sub === y.sub ? 0 : x.sub < y.sub ? -1 : 1;
}

/** The log position to read after to resume from `cursor`: `p:k` needs change `p` again. */
export function logPosition(cursor: string): string {
  const { pos, sub } = split(cursor);
  return sub === Infinity ? pos.toString() : (pos - 1n).toString();
}

/**
 * Where a change-stream event carries its position whether or not the client selected `position`:
 * the SSE transport sends it as the event's `id:`, so a reconnect's `Last-Event-ID` resumes there.
 * A symbol, so it is never part of the GraphQL result (JSON drops it).
 */
export const EVENT_POSITION = Symbol('rowgate.eventPosition');

/** The position a change-stream event was tagged with (undefined for any other payload). */
export function eventPosition(payload: unknown): string | undefined {
  if (!payload || typeof payload !== 'object') return undefined;
  const position = (payload as { [EVENT_POSITION]?: unknown })[EVENT_POSITION];
  return typeof position === 'string' ? position : undefined;
}

/** The position of the `sub`-th event change `position` causes (0: its own, when it causes others). */
export function subPosition(position: string, sub: number): string {
  return `${position}:${sub}`;
}
