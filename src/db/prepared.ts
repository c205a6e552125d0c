import { LRUCache } from 'lru-cache';
import type { Sql } from './connect.ts';

/**
 * postgres.js keeps the longest a connection lives (its default `max_lifetime` is 30–60 minutes,
 * which `connect` does not change): a statement it prepared is gone with its connection by then.
 */
const CONNECTION_LIFETIME_MS = 60 * 60 * 1000;

/**
 * Which statement texts a pool runs as prepared statements (planned once per connection, then one
 * round trip per run instead of two). postgres.js keeps every statement it prepared on each
 * connection until the connection closes and never evicts one, so preparing every text callers can
 * produce would let server-side statements grow without bound. A text is admitted once it recurs
 * (seen twice among the last few texts: an LRU window), and at most `max` texts are admitted per
 * connection lifetime: the admitted set starts afresh once a lifetime has passed since it last did.
 * A connection lives through at most two such periods, so it holds at most 2 × `max` statements.
 * Texts that are not admitted run unprepared, as before; what a statement returns is the same.
 */
export class PreparedStatements {
  private readonly recent: LRUCache<string, true>;
  private admitted = new Set<string>();
  private since: number;

  constructor(
    private readonly max: number,
    private readonly now: () => number = Date.now,
  ) {
    this.recent = new LRUCache({ max: Math.max(1, max) * 4 });
    this.since = now();
  }

  /** Whether to run `text` prepared; counts the text as seen. */
  admit(text: string): boolean {
    if (this.max === 0) return false;
    if (this.now() - this.since >= CONNECTION_LIFETIME_MS) {
      this.admitted = new Set();
      this.since = this.now();
    }
    if (this.admitted.has(text)) return true;
    if (this.admitted.size >= this.max) return false;
    if (!this.recent.has(text)) {
      this.recent.set(text, true);
      return false;
    }
    this.recent.delete(text);
    this.admitted.add(text);
    return true;
  }
}

const byPool = new WeakMap<Sql, PreparedStatements>();

/** The admission of one pool (statements live on its connections, whoever builds them). */
export function preparedStatementsOf(pool: Sql, max: number): PreparedStatements {
  let statements = byPool.get(pool);
  if (!statements) {
    statements = new PreparedStatements(max);
    byPool.set(pool, statements);
  }
  return statements;
}
