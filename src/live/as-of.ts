import { sql, type SQL } from 'pg-sql2';
import type { Table } from '../db/index.ts';
import { or, type AnalyzedRule, type CompiledRules, type ParamSource, type Relation } from '../rules/index.ts';
import type { ApiModel } from '../schema/index.ts';
import { readsItself } from './tables.ts';

/**
 * Change streams judge each change as of its position, not as of when it is evaluated (issue 15.2:
 * a change must reach only those who could see it at its commit). The rows a rule reads in other
 * tables (`membership`, `admin`) are rebuilt as they were at a position from the change log, which
 * holds every later change of every captured table with its old and new image:
 *
 *   table at p = (rows now whose key no change after p touched)
 *              ∪ (for each key a change after p touched: the old image of the first such change,
 *                 if that change found the row there; none if it created it)
 *
 * "After p" is every log row with a higher position or none yet (committed, not stamped), in the
 * statement's own snapshot, so the rebuilt table and the current one are consistent. With no change
 * after p (the usual case for a live stream) the rebuilt table is the table, at the price of one
 * index probe of the log. Tables without a primary key are rebuilt as multisets of row images (a full
 * scan of the table, only when the log holds later changes of it). Views are read as they are: the
 * log holds changes of tables, not of views (docs/delivery.md).
 */
export interface AsOfSpec {
  /** The changed table (the shape's). */
  table: string;
  /** Tables (not the changed table, unless its rules read it again) whose state decides visibility. */
  tables: { name: string; table: Table }[];
  /** Whether the changed table itself is among them (then every change is judged on its own). */
  selfRead: boolean;
  /** Per table, the columns the rules read of it (CompiledRules.readsColumns). */
  columns: Map<string, Set<string>>;
  /** Tables the stream's `where` reads (through relationships, with their rules' tables): any change of them counts. */
  filtered: Set<string>;
}

export type Side = 'new' | 'old';

/**
 * `filtered`: the tables the stream's `where` reads (live/tables.ts filterTables), judged as of the
 * change like the rules' tables, so a row leaving the filter through another table's change moves.
 */
export function asOfSpec(api: ApiModel, table: string, filtered: ReadonlySet<string> = new Set()): AsOfSpec {
  const selfRead = readsItself(api.rules, table) || filtered.has(table);
  const tables: AsOfSpec['tables'] = [];
  for (const name of [...new Set([...api.rules.readsTables(table), ...filtered])].sort()) {
    if (name === table && !selfRead) continue;
    const t = api.relation(name);
    if (t && t.kind === 'table') tables.push({ name, table: t });
  }
  return { table, tables, selfRead, columns: api.rules.readsColumns(table), filtered: new Set(filtered) };
}

/** The columns of `name` whose change can move rows; undefined: any change of it can. */
export function movingColumns(spec: AsOfSpec, name: string): Set<string> | undefined {
  return spec.filtered.has(name) ? undefined : (spec.columns.get(name) ?? new Set<string>());
}

const cte = (side: Side, i: number, part = '') => sql.identifier(`__rowgate_asof_${side}_${i}${part}`);

/** What the rules read for each table on one side: the rebuilt relation of the WITH clause. */
export function asOfRelation(spec: AsOfSpec, side: Side): Relation {
  const index = new Map(spec.tables.map((t, i) => [t.name, i]));
  return (name) => {
    const i = index.get(name);
    return i === undefined ? undefined : cte(side, i);
  };
}

/**
 * The WITH clause's entries defining every rebuilt table of both sides: the new image is judged as
 * of `newAt`, the old one as of `oldAt` (the position before the change when the table reads itself).
 * `plain`: every table as it is, for a statement that also asks `staleAfter` (run only when the
 * log holds no later change of them, so the tables are as they were; much cheaper to plan and run).
 */
export function asOfCtes(schema: string, spec: AsOfSpec, newAt: string, oldAt: string, plain = false): SQL[] {
  const out: SQL[] = [];
  for (const [side, at] of [['new', newAt], ['old', oldAt]] as const) {
    spec.tables.forEach(({ name, table }, i) => {
      if (plain) out.push(sql`${cte(side, i)} AS NOT MATERIALIZED (SELECT * FROM ${sql.identifier(schema, name)})`);
      // Both sides as of one position: the old side reads the new side's rebuild.
      else if (side === 'old' && oldAt === newAt) out.push(sql`${cte(side, i)} AS NOT MATERIALIZED (SELECT * FROM ${cte('new', i)})`);
      else out.push(...rebuilt(schema, name, table, cte(side, i), cte(side, i, '_log'), cte(side, i, '_keys'), at, relevantColumns(spec, name, table)));
    });
  }
  return out;
}

/**
 * The WITH clause's entries for a moves statement judged on the tables as they are (with
 * `staleAfter(…, to)` false, and the changed table not changed after `to` either): the new side is
 * every table as it is; the old side too, but for the table of `cause` (the change at `to`), which is
 * as it is with that one change undone: the row under the new image's key left out, the old image put
 * back. Null when that table has no key (its images could not be told apart from equal rows).
 */
export function asOfMovesCtes(schema: string, spec: AsOfSpec, cause: { table: string; old: Record<string, unknown> | null; new: Record<string, unknown> | null }): SQL[] | null {
  const out: SQL[] = [];
  for (const side of ['new', 'old'] as const) {
    for (const [i, { name, table }] of spec.tables.entries()) {
      const t = sql.identifier(schema, name);
      if (side === 'new' || name !== cause.table) {
        out.push(sql`${cte(side, i)} AS NOT MATERIALIZED (SELECT * FROM ${t})`);
        continue;
      }
      if (!table.primaryKey.length) return null;
      const x = Symbol('now');
      const image = (img: Record<string, unknown> | null) => sql`${sql.value(img === null ? null : JSON.stringify(img))}::text::jsonb`;
      const key = sql.join(table.primaryKey.map((c) => sql.identifier(x, c)), ', ');
      const newKey = sql.join(table.primaryKey.map((c) => sql`r.${sql.identifier(c)}`), ', ');
      out.push(sql`${cte(side, i)} AS NOT MATERIALIZED (
        SELECT ${sql.identifier(x)}.* FROM ${t} AS ${sql.identifier(x)}
         WHERE NOT EXISTS (SELECT 1 FROM jsonb_populate_record(NULL::${t}, ${image(cause.new)}) AS r WHERE ${image(cause.new)} IS NOT NULL AND (${newKey}) = (${key}))
        UNION ALL
        SELECT r.* FROM jsonb_populate_record(NULL::${t}, ${image(cause.old)}) AS r WHERE ${image(cause.old)} IS NOT NULL)`);
    }
  }
  return out;
}

/**
 * Another table is read only for its rules' columns: an update leaving them as they were cannot
 * change what the rules see, so it need not be undone (this keeps the rebuild small when a stream
 * is behind a busy table's renames). The changed table's own images are sent to subscribers: every
 * change of it counts; so does every change of a table without a key, rebuilt as a multiset of
 * whole images that must cancel exactly. Undefined: every change matters.
 */
function relevantColumns(spec: AsOfSpec, name: string, table: Table): Set<string> | undefined {
  return name === spec.table || !table.primaryKey.length ? undefined : movingColumns(spec, name);
}

/** The log rows `l` of `name` that change what a rebuild as of a position must undo. */
function matters(relevant: Set<string> | undefined): SQL {
  if (!relevant) return sql.blank;
  const changedColumns = [...relevant].sort().map((c) => sql`l.old -> ${sql.literal(c)} IS DISTINCT FROM l.new -> ${sql.literal(c)}`);
  return sql` AND (l.op <> 'UPDATE'${changedColumns.length ? sql` OR ${sql.join(changedColumns, ' OR ')}` : sql.blank})`;
}

/**
 * Whether the statement's snapshot holds a change after `at` of a table the spec rebuilds (one
 * that `asOfCtes` would undo), or of any change of the tables `also` names: false means every such
 * table is now as it was at `at`. A committed
 * change is in the log from its own transaction on (stamped or not), so this is exact.
 */
export function staleAfter(spec: AsOfSpec, at: string, also: string[] = []): SQL {
  const tables = [...spec.tables.map(({ name, table }) => ({ name, table: table as Table | null })), ...also.map((name) => ({ name, table: null }))];
  if (!tables.length) return sql.false;
  const probes = tables.flatMap(({ name, table }) => {
    const tail = sql`l.tbl = ${sql.literal(name)}${table ? matters(relevantColumns(spec, name, table)) : sql.blank}`;
    // Two probes, so that each reads an index: positions above `at`, and the few not stamped yet.
    return [
      sql`EXISTS (SELECT 1 FROM rowgate.change_log AS l WHERE l.pos > ${sql.value(at)}::text::bigint AND ${tail})`,
      sql`EXISTS (SELECT 1 FROM rowgate.change_log AS l WHERE l.pos IS NULL AND ${tail})`,
    ];
  });
  return sql`(${sql.join(probes, ' OR ')})`;
}

/**
 * The changed table itself as of a position, for the moves (change-stream.ts): `relation` names it
 * on `side`; `ctes` define it (nothing to add when its rules read it, the spec already has it).
 */
export function asOfSelf(schema: string, spec: AsOfSpec, name: string, table: Table, side: Side, at: string): { relation: SQL; ctes: SQL[] } {
  const mine = asOfRelation(spec, side)(name);
  if (mine) return { relation: mine, ctes: [] };
  const self = sql.identifier(`__rowgate_asof_self_${side}`);
  return { relation: self, ctes: rebuilt(schema, name, table, self, sql.identifier(`__rowgate_asof_self_${side}_log`), sql.identifier(`__rowgate_asof_self_${side}_keys`), at) };
}

/** `relevant`: the only columns whose change matters (undefined: every change matters). */
function rebuilt(schema: string, name: string, table: Table, self: SQL, log: SQL, keys: SQL, at: string, relevant?: Set<string>): SQL[] {
  const t = sql.identifier(schema, name);
  const later = sql`${log} AS MATERIALIZED (
      SELECT l.id AS rowgate_seq, l.pos AS rowgate_pos, l.old, l.new FROM rowgate.change_log AS l
       WHERE l.tbl = ${sql.literal(name)} AND (l.pos > ${sql.value(at)}::text::bigint OR l.pos IS NULL)${matters(relevant)})`;
  if (table.primaryKey.length === 0) {
    // A multiset of images: now + olds − news. Images are re-serialized in this session (through the
    // row type) so that text forms depending on settings (timestamptz and TimeZone) compare equal.
    const norm = (col: 'old' | 'new') => sql`to_jsonb(jsonb_populate_record(NULL::${t}, l.${sql.identifier(col)}))`;
    return [
      later,
      sql`${self} AS NOT MATERIALIZED (
        SELECT x.* FROM ${t} AS x WHERE NOT EXISTS (SELECT 1 FROM ${log})
        UNION ALL
        SELECT r.* FROM ((SELECT to_jsonb(x) AS j FROM ${t} AS x
                          UNION ALL SELECT ${norm('old')} FROM ${log} AS l WHERE l.old IS NOT NULL)
                         EXCEPT ALL SELECT ${norm('new')} FROM ${log} AS l WHERE l.new IS NOT NULL) AS d
          CROSS JOIN LATERAL jsonb_populate_record(NULL::${t}, d.j) AS r
         WHERE EXISTS (SELECT 1 FROM ${log}))`,
    ];
  }
  const rc = table.primaryKey.map((c) => sql`r.${sql.identifier(c)}`);
  const ec = table.primaryKey.map((c) => sql`e.${sql.identifier(c)}`);
  const same = sql.join(table.primaryKey.map((c) => sql`k.${sql.identifier(c)} = x.${sql.identifier(c)}`), ' AND ');
  return [
    later,
    // Per key touched after `at`, its first change: the old image if the row was there (the row at
    // `at`), else NULL (it did not exist yet). An update's old side sorts before its new side.
    sql`${keys} AS MATERIALIZED (
      SELECT DISTINCT ON (${sql.join(ec, ', ')}) ${sql.join(ec, ', ')}, e.rowgate_img FROM (
        SELECT l.rowgate_pos, l.rowgate_seq, 0 AS rowgate_side, ${sql.join(rc, ', ')}, l.old AS rowgate_img
          FROM ${log} AS l CROSS JOIN LATERAL jsonb_populate_record(NULL::${t}, l.old) AS r WHERE l.old IS NOT NULL
        UNION ALL
        SELECT l.rowgate_pos, l.rowgate_seq, 1, ${sql.join(rc, ', ')}, NULL
          FROM ${log} AS l CROSS JOIN LATERAL jsonb_populate_record(NULL::${t}, l.new) AS r WHERE l.new IS NOT NULL
      ) AS e
      ORDER BY ${sql.join(ec, ', ')}, e.rowgate_pos NULLS LAST, e.rowgate_seq, e.rowgate_side)`,
    sql`${self} AS NOT MATERIALIZED (
      SELECT x.* FROM ${t} AS x WHERE NOT EXISTS (SELECT 1 FROM ${keys} AS k WHERE ${same})
      UNION ALL
      SELECT r.* FROM ${keys} AS k CROSS JOIN LATERAL jsonb_populate_record(NULL::${t}, k.rowgate_img) AS r WHERE k.rowgate_img IS NOT NULL)`,
  ];
}

/** The row of the table a candidate-finding condition is rendered on (change-stream.ts, moves). */
export const CANDIDATE = Symbol('candidate');
/** The changed rows of one table (a change's old and new images), for `deltaVisibility`. */
export const DELTA = sql.identifier('__rowgate_delta');

/** How many times `x` appears in what a rule reads, through every table's visibility (an upper bound). */
function occurrences(rules: CompiledRules, table: string, rule: AnalyzedRule, x: string, depth = 0): number {
  if (depth > 32) return Infinity;
  let n = 0;
  rule.instances.forEach((inst, i) => {
    if (i === rule.target) return;
    if (inst.table === x) n++;
    if (inst.table === table) return;
    const set = rules.policy(inst.table)?.select;
    if (set && set !== 'public') for (const r of set) n += occurrences(rules, inst.table, r.rule, x, depth + 1);
  });
  return n;
}

/**
 * A condition on CANDIDATE that holds for every row whose visibility a change of `x` can have
 * changed: the rules of `table` that read `x`, with `x` read as the changed rows only (DELTA) and
 * the other tables as of the change. Rules are joins, so a row whose visibility changed has, in one
 * of the two states, a witness using a changed row of `x`. Null when `x` appears more than once in
 * a rule (a witness could use a changed row in one place and another row elsewhere): then every
 * visible row is compared.
 */
export function deltaVisibility(api: ApiModel, spec: AsOfSpec, table: string, x: string, params: ParamSource): SQL | null {
  const set = api.rules.policy(table)?.select;
  if (!set || set === 'public') return null;
  const asOf = asOfRelation(spec, 'new');
  const relation: Relation = (name) => (name === x ? DELTA : asOf(name));
  const parts: SQL[] = [];
  for (const { rule } of set) {
    const n = occurrences(api.rules, table, rule, x);
    if (n === 0) continue;
    if (n > 1) return null;
    parts.push(api.rules.rule(table, rule, CANDIDATE, params, relation));
  }
  return parts.length ? or(parts) : sql.false;
}
