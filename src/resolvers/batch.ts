import { sql, type SQL } from 'pg-sql2';
import { runSql, type PreparedStatements, type Sql } from '../db/index.ts';
import { fillCaller, type Identity } from '../rules/index.ts';

interface Field {
  value: SQL;
  resolve: (result: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * The root fields of one query read in one statement, `SELECT (<field 1>) AS r0, (<field 2>) AS r1`:
 * one round trip (and one snapshot) per operation instead of one per root field. graphql-js calls
 * every root resolver of a query operation before the event loop turns, so the fields queued for
 * one context by then go out together. Each field's value is the same scalar subquery it would be
 * alone, planned on its own. When the shared statement fails, each field runs alone, so each gets
 * its own answer or error, exactly as without batching.
 */
export class RootFieldBatcher {
  private readonly pending = new WeakMap<object, { db: Sql; identity: Identity; fields: Field[] }>();

  constructor(private readonly prepared: PreparedStatements) {}

  /**
   * The JSON answer of `value` (a scalar subquery, its caller values as slots) for the operation whose
   * context is `ctx`, with the slots filled for `identity` (the context's caller).
   */
  run(ctx: object, db: Sql, value: SQL, identity: Identity): Promise<unknown> {
    let batch = this.pending.get(ctx);
    if (batch && (batch.db !== db || batch.identity !== identity)) return this.one(db, value, identity);
    if (!batch) {
      const queued = { db, identity, fields: [] as Field[] };
      this.pending.set(ctx, queued);
      setImmediate(() => {
        this.pending.delete(ctx);
        void this.flush(queued.db, queued.identity, queued.fields);
      });
      batch = queued;
    }
    const fields = batch.fields;
    return new Promise((resolve, reject) => fields.push({ value, resolve, reject }));
  }

  private async flush(db: Sql, identity: Identity, fields: Field[]): Promise<void> {
    if (fields.length > 1) {
      try {
        const columns = fields.map((f, i) => sql`${f.value} AS ${sql.identifier(`r${i}`)}`);
        const [row] = await runSql<Record<string, unknown>>(db, sql`SELECT ${sql.join(columns, ', ')}`, this.prepared, (values) => fillCaller(values, identity));
        fields.forEach((f, i) => f.resolve(row?.[`r${i}`] ?? null));
        return;
      } catch {
        // Some field failed: find out which, and give the others their answers.
      }
    }
    for (const f of fields) this.one(db, f.value, identity).then(f.resolve, f.reject);
  }

  /** The JSON answer of `value` in a statement of its own. */
  async one(db: Sql, value: SQL, identity: Identity): Promise<unknown> {
    const [row] = await runSql<{ result: unknown }>(db, sql`SELECT ${value} AS result`, this.prepared, (values) => fillCaller(values, identity));
    return row?.result ?? null;
  }
}
