import { sql, type SQL } from 'pg-sql2';
import { unnestRelation, type Binder } from '../rules/index.ts';

/**
 * The subscriber relation of a multiplexed statement: `unnest(…) AS <SUBSCRIBERS>(sid, h, p1 … pn)`.
 * Every subscription's SQL is compiled with its values as columns of this one alias, so the
 * compiled text is the same for every subscription of the same shape and only the values differ.
 */
export const SUBSCRIBERS = Symbol('subscribers');

/** Collects a subscription's values in order, handing out `SUBSCRIBERS.p<n>` in their place. */
export class ColumnBinder implements Binder {
  readonly values: (string | null)[] = [];

  text(value: string | null): SQL {
    this.values.push(value);
    return sql.identifier(SUBSCRIBERS, `p${this.values.length}`);
  }

  textArray(values: (string | null)[]): SQL {
    // Arrays of different lengths cannot share a text[][] column: carry them as JSON text.
    this.values.push(JSON.stringify(values));
    return sql`ARRAY(SELECT jsonb_array_elements_text(${sql.identifier(SUBSCRIBERS, `p${this.values.length}`)}::jsonb))`;
  }
}

export interface BatchRow {
  sid: string;
  values: (string | null)[];
}

/** `unnest($1::text[], …) AS SUBSCRIBERS(sid, <extra>, p1 …)`: the values of each row as columns. */
export function subscriberRelation(rows: BatchRow[], width: number, extra: Record<string, (string | null)[]> = {}): SQL {
  return unnestRelation(SUBSCRIBERS, [
    ['sid', rows.map((r) => r.sid)],
    ...Object.entries(extra),
    ...Array.from({ length: width }, (_, i): [string, (string | null)[]] => [`p${i + 1}`, rows.map((r) => r.values[i] ?? null)]),
  ]);
}

/**
 * The same relation from one JSON text parameter (`[{"sid": …, "p1": …}, …]`): built once and kept
 * while a shape's subscribers stay the same (`Roster` in live-query.ts), so testing every subscriber
 * against a commit's rows costs no per-subscriber work in the gateway. (`unnest` takes one array per
 * column, which postgres.js encodes value by value on every statement.)
 */
export function jsonRelation(json: string, width: number): SQL {
  const columns = ['sid', ...Array.from({ length: width }, (_, i) => `p${i + 1}`)].map((c) => sql`${sql.identifier(c)} text`);
  // One text parameter: typed jsonb, postgres.js would send the string as a JSON string value.
  return sql`jsonb_to_recordset(${sql.value(json)}::text::jsonb) AS ${sql.identifier(SUBSCRIBERS)}(${sql.join(columns, ', ')})`;
}
