import { createHash } from 'node:crypto';
import { scanSync } from 'libpg-query';
import { sql, type SQL } from 'pg-sql2';
import type { Catalog, TypeRef } from '../db/index.ts';
import { and, or, typeSql, type CompiledRule, type CompiledRules, type Expr, type ParamSource, type RuleSet } from '../rules/index.ts';
import { isBindableType } from '../rules/params.ts';
import { HELPER_SCHEMA, settingParam } from './helpers.ts';

/**
 * What `rowgate policies` installs for each listed table: native row-level security policies
 * equivalent to the compiled rules, reading the caller from `rowgate.sender` / `rowgate.claims`.
 *
 * A rule over its table alone is written into the policy as it is (with parameters read by
 * InitPlans), so PostgreSQL can use an index for it. Every rule that joins other tables goes into
 * one SECURITY DEFINER function per (table, rule kind), which returns the compiled predicate for
 * the columns of the row it is given: it runs as its owner, whom RLS does not filter (tables are
 * not FORCE'd), so a rule reading its own table (a self-join) does not recurse into the policy,
 * and tables it reads are filtered once, by the compiled visibility inlined in the predicate,
 * instead of twice; the caller needs no privilege on the tables rules read (an ACL table).
 */

export const POLICY_NAMES = ['rowgate_select', 'rowgate_insert', 'rowgate_update', 'rowgate_delete'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

/** Prefix of the comment on every function and policy this module creates. */
export const COMMENT_PREFIX = 'rowgate-policies ';
/** Bump when the shape of what is generated changes, so every table is reinstalled once. */
const GENERATION = 1;

export type FunctionKind = 'select' | 'insert_check' | 'update_filter' | 'update_check' | 'delete';

export interface PolicyFunction {
  name: string;
  kind: FunctionKind;
  /** Argument types, e.g. `"pg_catalog"."text", "pg_catalog"."int4"`. */
  signature: SQL;
  create: string;
}

export interface PolicySpec {
  name: PolicyName;
  create: string;
}

export interface TablePlan {
  table: string;
  /** A digest of every statement below: a table whose installed objects carry it is up to date. */
  fingerprint: string;
  functions: PolicyFunction[];
  policies: PolicySpec[];
}

export interface PolicyPlan {
  schema: string;
  tables: TablePlan[];
  /** Listed relations that cannot carry policies (views), with the reason. */
  skipped: { table: string; reason: string }[];
}

export interface PlanOptions {
  /** Write rules over their table alone into the policy itself (default true); false puts every rule in a function. */
  inline?: boolean;
}

/** The comment stored on every generated function and policy. */
export interface ObjectComment {
  schema: string;
  table: string;
  fingerprint: string;
}

export function commentText(c: ObjectComment): string {
  return COMMENT_PREFIX + JSON.stringify({ schema: c.schema, table: c.table, fingerprint: c.fingerprint });
}

export function parseComment(text: string | null): ObjectComment | null {
  if (!text?.startsWith(COMMENT_PREFIX)) return null;
  try {
    const v = JSON.parse(text.slice(COMMENT_PREFIX.length)) as Partial<ObjectComment>;
    return typeof v.schema === 'string' && typeof v.table === 'string' && typeof v.fingerprint === 'string'
      ? { schema: v.schema, table: v.table, fingerprint: v.fingerprint }
      : null;
  } catch {
    return null;
  }
}

/** Function names: `rowgate."<schema>.<table>:<kind>"`, shortened with a digest past 63 bytes. */
export function functionName(schema: string, table: string, kind: FunctionKind): string {
  const full = `${schema}.${table}:${kind}`;
  if (Buffer.byteLength(full) <= 63) return full;
  const digest = createHash('sha256').update(`${schema}.${table}`).digest('hex').slice(0, 16);
  return `t${digest}:${kind}`;
}

/** Every target-row column the rules' conditions read. */
function targetColumns(rules: CompiledRule[]): string[] {
  const out = new Set<string>();
  for (const { rule } of rules) {
    const walk = (e: unknown): void => {
      if (!e || typeof e !== 'object') return;
      const x = e as Expr;
      if (x.k === 'col' && x.inst === rule.target) out.add(x.column);
      for (const v of Object.values(e)) {
        if (Array.isArray(v)) v.forEach(walk);
        else walk(v);
      }
    };
    walk(rule.condition);
  }
  return [...out].sort();
}

/** A value as a SQL literal that reads the same whatever `standard_conforming_strings` is. */
export function quoteLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') throw new Error(`internal error: cannot write ${typeof value} into a policy statement`);
  if (value.includes('\u0000')) throw new Error('internal error: a policy statement cannot hold NUL');
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * Compiles `query` to DDL text. DDL cannot carry `$n` parameters, so the constants pg-sql2 would
 * bind (string literals of rules it does not print raw, e.g. 'a%') are written in as quoted
 * literals, at the positions PostgreSQL's own scanner finds the `$n` tokens. No value from a
 * caller is ever among them: policies read the caller from the settings when they run.
 */
export function ddlText(query: SQL): string {
  const { text, values } = sql.compile(query);
  if (values.length === 0) return text;
  const bytes = Buffer.from(text);
  const parts: Buffer[] = [];
  let cursor = 0;
  for (const token of scanSync(text).tokens) {
    if (token.tokenName !== 'PARAM') continue;
    const n = Number(token.text.slice(1));
    if (!(n >= 1 && n <= values.length)) throw new Error(`internal error: unexpected ${token.text} in a policy statement`);
    parts.push(bytes.subarray(cursor, token.start), Buffer.from(quoteLiteral(values[n - 1])));
    cursor = token.end;
  }
  parts.push(bytes.subarray(cursor));
  return Buffer.concat(parts).toString();
}

class TableBuilder {
  readonly functions = new Map<FunctionKind, PolicyFunction & { call: SQL }>();
  private readonly row: string;
  private readonly inlineParams: ParamSource = { param: (name, type) => settingParam(name, type) };

  constructor(
    private readonly rules: CompiledRules,
    private readonly catalog: Catalog,
    private readonly table: string,
    private readonly inline: boolean,
  ) {
    // Inside a policy the table is in scope under its own name.
    this.row = table;
  }

  private columnType(column: string): TypeRef {
    const col = this.catalog.tables.get(this.table)?.columns.find((c) => c.name === column);
    if (!col) throw new Error(`internal error: no column ${this.table}.${column}`);
    return col.type;
  }

  /** A rule set as a condition of the policy on the row; null and public mean every row. */
  ruleSet(kind: FunctionKind, set: RuleSet | null): SQL {
    if (set === null || set === 'public') return sql.true;
    const inline = this.inline ? set.filter((r) => r.rule.instances.length === 1) : [];
    const joined = set.filter((r) => !inline.includes(r));
    const parts = inline.map((r) => this.rules.rule(this.table, r.rule, this.row, this.inlineParams));
    if (joined.length) parts.push(this.functionCall(kind, joined));
    return or(parts);
  }

  /** A SECURITY DEFINER function returning the rules' predicate for a row's columns and the caller's parameters. */
  private functionCall(kind: FunctionKind, set: CompiledRule[]): SQL {
    const existing = this.functions.get(kind);
    if (existing) return existing.call;
    const columns = targetColumns(set);
    const name = functionName(this.rules.schema, this.table, kind);
    // Arguments are referred to qualified by the function's name, which no alias of the body can
    // take (pg-sql2 aliases are plain words): a column of the same name cannot capture them.
    const arg = (i: number) => sql.identifier(name, `a${i}`);
    const slots: { name: string; type: TypeRef }[] = [];
    const key = (n: string, type: TypeRef) => `${n}\u0000${type.schema}.${type.name}`;
    const params: ParamSource = {
      param: (n, type) => {
        let i = slots.findIndex((s) => key(s.name, s.type) === key(n, type));
        if (i < 0) i = slots.push({ name: n, type }) - 1;
        return arg(columns.length + i + 1);
      },
    };
    const r = Symbol('row');
    const predicate = or(set.map((c) => this.rules.rule(this.table, c.rule, r, params)));
    const from = columns.length
      ? sql` FROM (SELECT ${sql.join(columns.map((c, i) => sql`${arg(i + 1)} AS ${sql.identifier(c)}`), ', ')}) AS ${sql.identifier(r)}`
      : sql.blank;
    const body = ddlText(sql`SELECT COALESCE(${predicate}, false)${from}`);
    const types = [...columns.map((c) => this.columnType(c)), ...slots.map((s) => s.type)];
    const signature = sql.join(types.map((t) => typeSql(t)), ', ');
    const fn = sql.identifier(HELPER_SCHEMA, name);
    const args = sql.join(types.map((t, i) => sql`${sql.identifier(`a${i + 1}`)} ${typeSql(t)}`), ', ');
    const create = `${ddlText(sql`CREATE OR REPLACE FUNCTION ${fn}(${args}) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp`)}
  AS ${quoteLiteral(body)}`;
    const direct = sql`${fn}(${sql.join([...columns.map((c) => sql.identifier(this.row, c)), ...slots.map((s) => settingParam(s.name, s.type))], ', ')})`;
    // A predicate that reads no column of the row ("the caller is an admin") is the same for every
    // row: as a sub-select PostgreSQL evaluates it once per statement (an InitPlan), not per row,
    // and the other branch of the OR can still use its index (bench:peers: 0 → 3 req/s, see README).
    const call = columns.length ? direct : sql`(SELECT ${direct})`;
    this.functions.set(kind, { name, kind, signature, create, call });
    return call;
  }

  /** Preset columns (`set`) must hold what the gateway would have written there. */
  presets(set: Record<string, string>): SQL {
    return and(
      Object.entries(set).map(([column, preset]) => {
        const type = this.columnType(column);
        const target = sql.identifier(this.row, column);
        if (!preset.startsWith(':')) return sql`(${target} IS NOT DISTINCT FROM ${sql.literal(preset)}::${typeSql(type)})`;
        if (!isBindableType(type)) return sql.true;
        return sql`(${target} IS NOT DISTINCT FROM ${settingParam(preset.slice(1), type)})`;
      }),
    );
  }
}

const paren = (s: SQL): SQL => sql`(${s})`;

/** The functions and policies of every listed table. */
export function planPolicies(rules: CompiledRules, catalog: Catalog, options: PlanOptions = {}): PolicyPlan {
  const schema = rules.schema;
  const tables: TablePlan[] = [];
  const skipped: PolicyPlan['skipped'] = [];
  for (const policy of [...rules.policies.values()].sort((a, b) => (a.table < b.table ? -1 : a.table > b.table ? 1 : 0))) {
    const table = policy.table;
    if (catalog.tables.get(table)?.kind === 'view') {
      skipped.push({ table, reason: 'a view cannot have row-level security; the policies of the tables it reads apply (security_invoker views) or not (the default)' });
      continue;
    }
    const b = new TableBuilder(rules, catalog, table, options.inline ?? true);
    const target = sql.identifier(schema, table);
    const policies: PolicySpec[] = [];
    const create = (name: PolicyName, command: SQL, clauses: SQL) =>
      policies.push({ name, create: ddlText(sql`CREATE POLICY ${sql.identifier(name)} ON ${target} AS PERMISSIVE FOR ${command} TO PUBLIC${clauses}`) });

    const visible = b.ruleSet('select', policy.select);
    create('rowgate_select', sql`SELECT`, sql`\n  USING ${paren(visible)}`);
    if (policy.insert) {
      const check = and([b.ruleSet('insert_check', policy.insert.check), b.presets(policy.insert.set)]);
      create('rowgate_insert', sql`INSERT`, sql`\n  WITH CHECK ${paren(check)}`);
    }
    if (policy.update) {
      const using = and([visible, b.ruleSet('update_filter', policy.update.filter)]);
      // Without WITH CHECK, PostgreSQL would check the new row against USING: say `true` when no check rule is given.
      const check = and([b.ruleSet('update_check', policy.update.check), b.presets(policy.update.set)]);
      create('rowgate_update', sql`UPDATE`, sql`\n  USING ${paren(using)}\n  WITH CHECK ${paren(check)}`);
    }
    if (policy.delete) {
      const using = and([visible, b.ruleSet('delete', policy.delete)]);
      create('rowgate_delete', sql`DELETE`, sql`\n  USING ${paren(using)}`);
    }

    const functions = [...b.functions.values()].map(({ call: _call, ...f }) => f);
    const hash = createHash('sha256').update(`generation ${GENERATION}\n`);
    for (const f of functions) hash.update(f.create).update('\n');
    for (const p of policies) hash.update(p.create).update('\n');
    tables.push({ table, fingerprint: hash.digest('hex').slice(0, 32), functions, policies });
  }
  return { schema, tables, skipped };
}

