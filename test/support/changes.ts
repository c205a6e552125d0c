import type { Change, ChangeBatch, ChangeFeed } from '../../src/db/changes/index.ts';

export interface Collector {
  batches: ChangeBatch[];
  /** Every delivered change, in delivery order. */
  changes(): Change[];
  /** Resolves once `done(changes)` holds; rejects after `ms` with what arrived so far. */
  until(done: (changes: Change[]) => boolean, ms?: number): Promise<Change[]>;
  stop(): void;
}

/** Records what a feed delivers; tests wait on it instead of sleeping. */
export function collect(feed: ChangeFeed): Collector {
  const batches: ChangeBatch[] = [];
  const waiters = new Set<() => void>();
  const all = (): Change[] => batches.flatMap((b) => b.changes);
  const stop = feed.onChanges((batch) => {
    batches.push(batch);
    for (const w of [...waiters]) w();
  });
  return {
    batches,
    changes: all,
    stop,
    until(done, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!done(all())) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(all());
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${ms} ms; ${all().length} changes arrived: ${JSON.stringify(all().slice(-5))}`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Resolves with the next status `feed` reports that equals `ready`. */
export function status(feed: ChangeFeed, ready: boolean, ms = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (feed.ready() === ready) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(new Error(`feed did not become ${ready ? 'ready' : 'not ready'} within ${ms} ms`));
    }, ms);
    const off = feed.onStatus((now) => {
      if (now !== ready) return;
      off();
      clearTimeout(timer);
      resolve();
    });
  });
}

export const ofTable = (table: string) => (c: Change) => c.table === table;
