/** One committed change of a captured table, as the change log holds it (see db/changes). */
export interface Change {
  /** Opaque, ordered: a decimal string of the change's place in commit order. */
  position: string;
  table: string;
  op: 'INSERT' | 'UPDATE' | 'DELETE';
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
}

export function comparePositions(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
