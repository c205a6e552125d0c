import { GraphQLError } from 'graphql';
import { sql, type SQL } from 'pg-sql2';
import { isConnectionError, retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import { checkedValue, listSql, scopeFor, toText, type SelectedField } from '../resolvers/index.ts';
import { typeSql, type Alias, type Caller } from '../rules/index.ts';
import type { ApiModel, TableModel } from '../schema/index.ts';
import { ColumnBinder, SUBSCRIBERS, subscriberRelation } from './binder.ts';

const CURSOR_KEY = '__rowgate_cursor';

function badInput(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}

/** One `t_stream` subscriber: where its cursor stands, and whether its last batch is still unread. */
export interface StreamSubscriber {
  sid: string;
  values: (string | null)[];
  /** The cursor column's value (text form) of the last row sent; rows strictly past it come next. */
  cursor: string;
  /** Its last batch is not read yet: it is left out of evaluations until it is. */
  busy: boolean;
  /** Looked at again once its batch is read: it was full, or a commit came while it was busy. */
  again: boolean;
  push(rows: unknown[]): Promise<unknown>;
  fail(error: unknown): void;
}

/**
 * Hasura's streaming subscription, multiplexed: subscribers whose operations compile to the same
 * SQL share one statement per evaluation, with each one's cursor as a column of the subscriber
 * relation (`SUBSCRIBERS.cursor`) beside its values, so the rows past each cursor come back for all
 * of them at once (at most `batch_size` each, in cursor order).
 */
export interface StreamShape {
  key: string;
  /** The page as a JSON array, for the subscriber row `SUBSCRIBERS` (its values and cursor). */
  expr: SQL;
  width: number;
  limit: number;
  subscribers: Map<string, StreamSubscriber>;
}

/** Compiles a `t_stream` field for `caller`: its shape (key, SQL) and the caller's values and starting cursor. */
export function compileStream(api: ApiModel, caller: Caller, model: TableModel, field: SelectedField): { shape: Omit<StreamShape, 'subscribers'>; values: (string | null)[]; cursor: string } {
  const batchSize = field.args['batch_size'];
  if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1) throw badInput('batch_size must be a positive integer');
  const cursors = (field.args['cursor'] as { initial_value?: Record<string, unknown>; ordering?: string }[] | undefined) ?? [];
  const initial = Object.entries(cursors[0]?.initial_value ?? {}).filter(([, v]) => v !== undefined && v !== null);
  if (cursors.length !== 1 || initial.length !== 1) throw badInput('give exactly one cursor with exactly one column in initial_value');
  const [column, start] = initial[0]!;
  const col = model.readable.find((c) => c.name === column);
  if (!col?.scalar.ordered) throw badInput(`${column} cannot be a stream cursor`);
  const descending = cursors[0]?.ordering === 'DESC';
  const limit = Math.min(batchSize, api.maxRows);
  // Checked like any filter value, so the cast in the statement cannot fail on some rows only.
  const cursor = toText(checkedValue(col, start, `cursor.initial_value.${column}`)) as string;
  const binder = new ColumnBinder();
  const page: SelectedField = {
    ...field,
    args: { where: field.args['where'], order_by: [{ [column]: descending ? 'desc' : 'asc' }], limit },
    children: [...field.children, { key: CURSOR_KEY, name: column, args: {}, children: [] }],
  };
  const past = (alias: Alias) => sql`${sql.identifier(alias, column)} ${descending ? sql`<` : sql`>`} ${sql.identifier(SUBSCRIBERS, 'cursor')}::${typeSql(col.type)}`;
  const expr = listSql(scopeFor(api, caller, binder, true), model, page, past);
  const { text, values } = sql.compile(expr);
  return { shape: { key: `${model.name}\u0000${text}\u0000${JSON.stringify(values)}`, expr, width: binder.values.length, limit }, values: binder.values, cursor };
}

/**
 * One evaluation of `subs` (none busy): the rows past each cursor, one statement per `batch`
 * subscribers. Each batch found is pushed; the subscriber is busy until it is read, and looked at
 * again then if it was full (`onRead`). A statement that fails is run again per subscriber, and
 * only those whose own statement fails end (as live queries do).
 */
export async function evaluateStream(db: Sql, shape: StreamShape, subs: StreamSubscriber[], batch: number, count: () => void, onRead: (sub: StreamSubscriber) => void): Promise<void> {
  for (let i = 0; i < subs.length; i += batch) {
    const chunk = subs.slice(i, i + batch);
    try {
      await retryOnDisconnect(() => page(db, shape, chunk, count, onRead));
    } catch (err) {
      if (isConnectionError(err)) throw err;
      if (chunk.length === 1) {
        chunk[0]!.fail(err);
        continue;
      }
      for (const sub of chunk) {
        try {
          await page(db, shape, [sub], count, onRead);
        } catch (single) {
          if (isConnectionError(single)) throw single;
          sub.fail(single);
        }
      }
    }
  }
}

async function page(db: Sql, shape: StreamShape, chunk: StreamSubscriber[], count: () => void, onRead: (sub: StreamSubscriber) => void): Promise<void> {
  count();
  const rows = await runSql<{ sid: string; result: string }>(
    db,
    sql`SELECT ${sql.identifier(SUBSCRIBERS, 'sid')} AS sid, (${shape.expr})::text AS result
          FROM ${subscriberRelation(chunk, shape.width, { cursor: chunk.map((s) => s.cursor) })}`,
  );
  const bySid = new Map(chunk.map((s) => [s.sid, s]));
  for (const row of rows) {
    const sub = bySid.get(row.sid);
    const found = JSON.parse(row.result) as Record<string, unknown>[];
    if (!sub || found.length === 0) continue;
    sub.cursor = toText(found.at(-1)![CURSOR_KEY]) as string;
    sub.again = found.length === shape.limit;
    sub.busy = true;
    void sub.push(found).then(() => {
      sub.busy = false;
      onRead(sub);
    });
  }
}
