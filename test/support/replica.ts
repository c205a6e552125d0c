import { expect } from 'vitest';
import type { ChangeFeed } from '../../src/db/changes/index.ts';
import type { Sql } from '../../src/db/index.ts';
import type { Subscription } from './live.ts';

/** A change-stream event's images, keyed by `id`. */
export type Imaged<Row> = { op: string; row: Row | null; old: Row | null };

/** A subscriber's copy of what it may see, kept from its change-stream events only. */
export class Replica<Row extends { id: number }> {
  rows = new Map<number, Row>();
  faults: string[] = [];
  constructor(
    readonly sub: Subscription,
    /** The subscription's root field (`doc_changes`). */
    readonly field: string,
  ) {}
  apply(e: Imaged<Row>): void {
    const id = (e.row ?? e.old)!.id;
    if (e.op === 'INSERT' && this.rows.has(id)) this.faults.push(`INSERT of ${id}, which it holds`);
    if (e.op !== 'INSERT' && !this.rows.has(id)) this.faults.push(`${e.op} of ${id}, which it does not hold`);
    if (e.op === 'DELETE') this.rows.delete(id);
    else this.rows.set(id, e.row!);
  }
  sorted(): Row[] {
    return [...this.rows.values()].sort((a, b) => a.id - b.id);
  }
  /** Applies events until the replica equals `want` (a fresh query, by id) or fails after a few seconds. */
  async converge(want: Row[], who: string): Promise<void> {
    const deadline = Date.now() + 5000;
    while (JSON.stringify(this.sorted()) !== JSON.stringify(want)) {
      if (Date.now() > deadline) throw new Error(`${who}: replica ${JSON.stringify(this.sorted())} != query ${JSON.stringify(want)}`);
      const r = await this.sub.next(Math.max(1, deadline - Date.now()));
      expect(r.errors).toBeUndefined();
      this.apply(r.data![this.field] as Imaged<Row>);
    }
  }
}

/** A change-stream event as the tests select it: `{ op position row { id title } old { id title } }`. */
export type TitledEvent = { op: string; position: string; row: { id?: number; title: string } | null; old: { id?: number; title: string } | null };

/** The events of `field` up to the first whose row (or old row) has `title`. */
export async function eventsUntil(sub: Subscription, field: string, title: string): Promise<TitledEvent[]> {
  const out: TitledEvent[] = [];
  for (;;) {
    const r = await sub.next();
    expect(r.errors).toBeUndefined();
    const e = r.data![field] as TitledEvent;
    out.push(e);
    if ((e.row ?? e.old)?.title === title) return out;
  }
}

/** The change log's top position once nothing in it waits for a position (every commit so far is stamped; with WAL capture, appended first). */
export async function stampedHead(sql: Sql, feed: ChangeFeed): Promise<string> {
  await feed.poll();
  for (;;) {
    const [row] = await sql<{ held: boolean; top: string }[]>`
      SELECT EXISTS (SELECT 1 FROM rowgate.change_log WHERE pos IS NULL) AS held, COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    if (!row!.held) return row!.top;
    await new Promise((r) => setTimeout(r, 25));
  }
}
