import { graphql, parse, subscribe, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { afterAll, expect } from 'vitest';
import { capturedTables } from '../../src/cli/capture.ts';
import { parseConfig } from '../../src/config/index.ts';
import { installCapture, startChangeFeed, type ChangeFeed } from '../../src/db/changes/index.ts';
import { connect } from '../../src/db/index.ts';
import type { Caller } from '../../src/rules/index.ts';
import { buildApi } from '../../src/schema/index.ts';
import type { LiveEngine } from '../../src/live/index.ts';
import { testCapture, type TestDatabase } from './db.ts';
import { compile } from './rules.ts';

export interface LiveHarness {
  schema: GraphQLSchema;
  live: LiveEngine;
  feed: ChangeFeed;
  /** Subscribes in-process (no transport) as `sender` (or the admin), or as a caller with claims. */
  open(sender: string | 'admin' | Caller, query: string, variables?: Record<string, unknown>): Promise<Subscription>;
}

export interface Subscription {
  /** The next payload, or a failure after `ms`. */
  next(ms?: number): Promise<ExecutionResult>;
  /** Resolves true if nothing arrives within `ms` (used after a sentinel write, never as a sleep). */
  close(): Promise<void>;
  /** Payloads received and not yet taken. */
  pending(): number;
}

export const asCaller = (sender: string | 'admin'): Caller =>
  sender === 'admin' ? { admin: true, identity: { sender: null, claims: {} } } : { admin: false, identity: { sender, claims: { sub: sender } } };

/** Capture installed as `rowgate serve` installs it (listed tables, tables rules and views read), a feed, and the live schema. */
export async function startLive(db: TestDatabase, tables: Record<string, unknown>, options: { statementTimeoutMs?: number; functions?: string[]; capture?: 'wal' | 'triggers' | 'auto'; subscribersPerStatement?: number } = {}): Promise<LiveHarness> {
  const rules = await compile(db, tables);
  const limits = options.subscribersPerStatement ? { limits: { subscribersPerStatement: options.subscribersPerStatement } } : {};
  const config = parseConfig({ tables, ...(options.functions ? { functions: options.functions } : {}), ...limits }, {});
  const catalog = await db.catalog();
  await installCapture(db.sql, 'public', capturedTables(rules, catalog, Object.keys(config.tables)).tables, options.capture ?? testCapture());
  // Its own pool, closed with it: the test database's pool may be closed first.
  const sql = connect(db.url, { max: 5 });
  const feed = await startChangeFeed({ url: db.url, sql, schema: 'public', retentionHours: 24, pollMs: 100 });
  // The engine's statements on a pool of their own when they get a timeout, so the feed's do not.
  const engineSql = options.statementTimeoutMs ? connect(db.url, { max: 5 }, { statementTimeoutMs: options.statementTimeoutMs }) : sql;
  const { schema, live } = buildApi({ config, catalog, rules, sql: engineSql, changes: feed });
  afterAll(async () => {
    live!.close();
    await feed.close();
    await sql.end({ timeout: 5 });
    if (engineSql !== sql) await engineSql.end({ timeout: 5 });
  });
  return {
    schema,
    live: live!,
    feed,
    async open(sender, query, variables) {
      const result = await subscribe({ schema, document: parse(query), contextValue: { caller: typeof sender === 'string' ? asCaller(sender) : sender }, variableValues: variables ?? null });
      if (!(Symbol.asyncIterator in result)) throw new Error(`subscription refused: ${JSON.stringify(result.errors)}`);
      const iterator = result[Symbol.asyncIterator]();
      const received: ExecutionResult[] = [];
      const waiting: ((r: ExecutionResult) => void)[] = [];
      void (async () => {
        for (;;) {
          const step = await iterator.next();
          if (step.done) return;
          const w = waiting.shift();
          if (w) w(step.value);
          else received.push(step.value);
        }
      })();
      return {
        next: (ms = 5000) =>
          new Promise<ExecutionResult>((resolve, reject) => {
            const ready = received.shift();
            if (ready) return resolve(ready);
            const timer = setTimeout(() => reject(new Error(`no payload within ${ms} ms`)), ms);
            waiting.push((r) => {
              clearTimeout(timer);
              resolve(r);
            });
          }),
        close: async () => {
          await iterator.return?.();
        },
        pending: () => received.length,
      };
    },
  };
}

/** A live query under test: who subscribed (`who`, for messages), as which caller, and the latest payload read. */
export interface Watched {
  who: string;
  caller: Caller;
  query: string;
  sub: Subscription;
  last: ExecutionResult | null;
}

/** Reads w's payloads until its latest equals what the same query returns now; a missed commit times out. */
export async function converge(schema: GraphQLSchema, w: Watched, step: string): Promise<void> {
  const now = await graphql({ schema, source: `query { ${w.query} }`, contextValue: { caller: w.caller } });
  expect(now.errors).toBeUndefined();
  const want = JSON.stringify(now.data);
  while (JSON.stringify(w.last?.data) !== want) {
    try {
      w.last = await w.sub.next(4000);
    } catch {
      throw new Error(`${step}: ${w.who} never got ${want} for ${w.query}; last: ${JSON.stringify(w.last?.data)}`);
    }
  }
}
