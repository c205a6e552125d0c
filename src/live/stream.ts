import { GraphQLError } from 'graphql';
import { sql } from 'pg-sql2';
import { retryOnDisconnect, runSql, type Sql } from '../db/index.ts';
import { listSql, scopeFor, type SelectedField } from '../resolvers/index.ts';
import type { Caller } from '../rules/index.ts';
import type { ApiModel, TableModel } from '../schema/index.ts';

const CURSOR_KEY = '__rowgate_cursor';

function badInput(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}

/**
 * Hasura's streaming subscription: rows whose cursor column is past the cursor (strictly), in
 * cursor order, `batch_size` at a time; when caught up it waits for a commit to a table the
 * subscription reads and looks again. Each subscriber reads with its own statement: the cursor
 * moves per subscriber, so there is nothing to share between them.
 */
export async function* streamBatches(
  db: Sql,
  api: ApiModel,
  caller: Caller,
  model: TableModel,
  field: SelectedField,
  nextChange: () => Promise<void>,
  stopped: () => boolean,
  count: () => void,
): AsyncGenerator<unknown[]> {
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
  let last: unknown = start;

  while (!stopped()) {
    // Arm the wake-up before reading, so a commit landing during the read is not missed.
    const changed = nextChange();
    const past = { [column]: { [descending ? '_lt' : '_gt']: last } };
    const where = field.args['where'] ? { _and: [field.args['where'], past] } : past;
    const page: SelectedField = {
      ...field,
      args: { where, order_by: [{ [column]: descending ? 'desc' : 'asc' }], limit },
      children: [...field.children, { key: CURSOR_KEY, name: column, args: {}, children: [] }],
    };
    count();
    const statement = sql`SELECT ${listSql(scopeFor(api, caller), model, page)} AS result`;
    const [row] = await retryOnDisconnect(() => runSql<{ result: Record<string, unknown>[] }>(db, statement));
    const rows = row?.result ?? [];
    if (rows.length) {
      last = rows.at(-1)![CURSOR_KEY];
      yield rows;
    }
    if (rows.length < limit) await changed;
  }
}
