import { sql, type SQL } from 'pg-sql2';
import type { ScalarInfo } from './scalars.ts';

/**
 * The aggregate functions of `t_aggregate_fields` (and of `t_aggregate_order_by`), one row per
 * function, as Hasura names them. The schema builder (which `t_<fn>_fields` exist and their field
 * types), the query compiler and the ordering compiler all read this table.
 *
 * `applies` picks the columns a function takes; `result` names the GraphQL scalar of its value
 * (the statistics are double precision in PostgreSQL, and Float in Hasura's schema).
 */
export interface AggregateFunction {
  name: string;
  applies: (scalar: ScalarInfo) => boolean;
  result: (scalar: ScalarInfo) => string;
  /** The aggregate of `column`, as PostgreSQL computes it (what ORDER BY sorts on). */
  sql: (column: SQL, pgType: string) => SQL;
  /** The aggregate's value in the form the JSON answer carries. */
  json: (value: SQL, scalar: ScalarInfo) => SQL;
}

/** Types JSON would round (bigint, numeric) travel as their text form. */
const asScalar = (value: SQL, s: ScalarInfo) => (s.asText ? sql`${value}::text` : value);

const numeric = (s: ScalarInfo) => !s.list && s.numeric;
const ordered = (s: ScalarInfo) => !s.list && s.ordered;
const float = () => 'Float';

/** Statistics over numbers: double precision, as Hasura answers them. Function names are written
 * as quoted identifiers (`"stddev"(…)`), which PostgreSQL resolves like the bare names. */
const statistic = (name: string): AggregateFunction => ({
  name,
  applies: numeric,
  result: float,
  sql: (c) => sql`${sql.identifier(name)}(${c})::float8`,
  json: (v) => v,
});

/** max/min keep the column's type; PostgreSQL has no max/min for uuid, whose text form sorts the same way. */
const extreme = (name: 'max' | 'min'): AggregateFunction => ({
  name,
  applies: ordered,
  result: (s) => s.name,
  sql: (c, pgType) => (pgType === 'uuid' ? sql`${sql.identifier(name)}(${c}::text)::uuid` : sql`${sql.identifier(name)}(${c})`),
  json: asScalar,
});

export const AGGREGATE_FUNCTIONS: AggregateFunction[] = [
  {
    name: 'sum',
    applies: numeric,
    // The sum of integers can leave their range: Int sums as bigint, bigint sums as numeric.
    result: (s) => (s.name === 'Int' ? 'bigint' : s.name === 'bigint' ? 'numeric' : s.name),
    sql: (c) => sql`sum(${c})`,
    // As text whatever the column's type: a sum of integers is a bigint or numeric.
    json: (v) => sql`${v}::text`,
  },
  statistic('avg'),
  extreme('max'),
  extreme('min'),
  statistic('stddev'),
  statistic('stddev_pop'),
  statistic('stddev_samp'),
  statistic('var_pop'),
  statistic('var_samp'),
  statistic('variance'),
];

export const AGGREGATE_BY_NAME = new Map(AGGREGATE_FUNCTIONS.map((a) => [a.name, a]));
