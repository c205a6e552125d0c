import { sql, type SQL } from 'pg-sql2';
import { computedFunction, rootFunction, type Catalog } from '../db/index.ts';
import type { Config, TableConfig } from '../config/index.ts';
import { analyzeRule } from './analyze.ts';
import { RuleConfigError, RuleError, type RuleProblem, type RuleSite } from './errors.ts';
import type { AnalyzedRule } from './expr.ts';
import { findCycles } from './graph.ts';
import { parseRule } from './parse.ts';
import { and, or, renderExpr, type Alias, type ParamSource } from './render.ts';

export interface CompiledRule {
  site: RuleSite;
  rule: AnalyzedRule;
  /** Each `:name` the rule uses, where it is first written. */
  params: { name: string; position: number }[];
}

/** A list of rules OR-ed together, or `public` (every row). */
export type RuleSet = 'public' | CompiledRule[];

export interface TablePolicy {
  table: string;
  select: RuleSet;
  /** null: the operation is not declared, so it does not exist. */
  insert: { check: RuleSet; columns: string[]; set: Record<string, string> } | null;
  update: { filter: CompiledRule[] | null; check: CompiledRule[] | null; columns: string[]; set: Record<string, string> } | null;
  delete: CompiledRule[] | null;
}

/** What a rule reads for a table it joins: a relation with the table's columns, or undefined for the table itself. */
export type Relation = (table: string) => SQL | undefined;

export type RuleKind = 'select' | 'insert.check' | 'update.filter' | 'update.check' | 'delete';

/**
 * The rules of a config, checked against the catalog and ready to render. Rendering is where
 * recursion happens: every instance of another table with `select` rules is replaced by that
 * table's visibility for the same caller, so rendering one table renders everything it reads.
 */
export class CompiledRules {
  constructor(
    readonly schema: string,
    readonly policies: Map<string, TablePolicy>,
  ) {}

  policy(table: string): TablePolicy | undefined {
    return this.policies.get(table);
  }

  /** Whether the visibility of `table` depends on the caller (false for public and unlisted tables). */
  isFiltered(table: string): boolean {
    const policy = this.policies.get(table);
    return !!policy && policy.select !== 'public';
  }

  /**
   * The condition a row of `table`, named `row`, must meet to be visible to the caller of `params`.
   * `relation` names what each table the rules join is read from (default: the table itself); the
   * change streams read the tables as they were at a change's position (live/as-of.ts).
   */
  visibility(table: string, row: Alias, params: ParamSource, relation?: Relation): SQL {
    const policy = this.policies.get(table);
    // Unlisted tables are not exposed, but rules may read them as they are (e.g. an ACL table).
    if (!policy || policy.select === 'public') return sql.true;
    return this.ruleSet(table, policy.select, row, params, relation);
  }

  ruleSet(table: string, rules: RuleSet, row: Alias, params: ParamSource, relation?: Relation): SQL {
    if (rules === 'public') return sql.true;
    return or(rules.map((r) => this.rule(table, r.rule, row, params, relation)));
  }

  /**
   * One rule as a condition on `row`. A rule over its table alone becomes a plain condition on
   * the row (indexable as written); a rule with joins becomes a correlated EXISTS, which
   * PostgreSQL plans as a semi-join.
   */
  rule(table: string, rule: AnalyzedRule, row: Alias, params: ParamSource, relation?: Relation): SQL {
    const aliases: Alias[] = rule.instances.map((inst, i) => (i === rule.target ? row : Symbol(inst.name)));
    const conditions: SQL[] = [];
    if (rule.condition) conditions.push(renderExpr(rule.condition, aliases, params));
    const others: SQL[] = [];
    rule.instances.forEach((inst, i) => {
      if (i === rule.target) return;
      others.push(sql`${relation?.(inst.table) ?? sql.identifier(this.schema, inst.table)} AS ${sql.identifier(aliases[i]!)}`);
      // Self-joins read the table as it is; any other table is read through its own visibility.
      if (inst.table !== table) conditions.push(this.visibility(inst.table, aliases[i]!, params, relation));
    });
    const where = and(conditions);
    if (others.length === 0) return where;
    if (where === sql.false) return sql.false;
    return sql`EXISTS (SELECT 1 FROM ${sql.join(others, ', ')} WHERE ${where})`;
  }

  /** Every table whose rows can change what `table`'s visibility (or `rules`) lets through, `table` included. */
  readsTables(table: string, rules?: RuleSet): Set<string> {
    const seen = new Set<string>([table]);
    const visit = (t: string, set: RuleSet | undefined): void => {
      if (!set || set === 'public') return;
      for (const { rule } of set) {
        for (const inst of rule.instances) {
          if (seen.has(inst.table)) continue;
          seen.add(inst.table);
          visit(inst.table, this.policies.get(inst.table)?.select);
        }
      }
    };
    visit(table, rules ?? this.policies.get(table)?.select);
    return seen;
  }

  /**
   * Per table, the columns that `table`'s visibility reads of it (through every rule of
   * `readsTables`, ON conditions included): an update that leaves all of them as they were cannot
   * change which rows any of those rules let through.
   */
  readsColumns(table: string): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const t of this.readsTables(table)) {
      const set = this.policies.get(t)?.select;
      if (!set || set === 'public') continue;
      for (const { rule } of set) {
        eachNode(rule.condition, (e) => {
          if (e.k !== 'col') return;
          const { inst, column } = e as { inst: number; column: string };
          const name = rule.instances[inst]!.table;
          if (!out.has(name)) out.set(name, new Set());
          out.get(name)!.add(column);
        });
      }
    }
    return out;
  }

  /** Names of the parameters (`sender` and claims) the visibility of `table` uses, recursively. */
  paramNames(table: string): string[] {
    const names = new Set<string>();
    for (const t of this.readsTables(table)) {
      const set = this.policies.get(t)?.select;
      if (!set || set === 'public') continue;
      for (const { rule } of set) collectParams(rule, names);
    }
    return [...names].sort();
  }

  /** Every parameter other than `:sender` any rule uses: claims the caller's token must carry. */
  claimsRead(): string[] {
    return [...new Set([...this.claimUses(), ...this.presetClaims()].map((u) => u.name))].sort();
  }

  /** Each rule's use of a parameter other than `:sender` (first place per rule and name), in config order. */
  claimUses(): { name: string; site: RuleSite; position: number }[] {
    return [...this.policies.values()].flatMap((p) => claimUsesOf(policyRules(p)));
  }

  /** Each insert or update preset taking a claim other than `:sender` (`"set": {"org": ":org"}`). */
  presetClaims(): { name: string; where: string }[] {
    return [...this.policies.values()].flatMap((p) => presetClaimsOf(p));
  }
}

function presetClaimsOf(p: TablePolicy): { name: string; where: string }[] {
  return (['insert', 'update'] as const).flatMap((kind) =>
    Object.entries(p[kind]?.set ?? {})
      .filter(([, v]) => v.startsWith(':') && v !== ':sender')
      .map(([column, v]) => ({ name: v.slice(1), where: `tables.${p.table}.${kind}.set.${column}` })),
  );
}

/** Every compiled rule of a table: select, insert check, update filter and check, delete. */
function policyRules(p: TablePolicy): CompiledRule[] {
  const sets = [p.select, p.insert?.check, p.update?.filter, p.update?.check, p.delete];
  return sets.flatMap((set) => (set && set !== 'public' ? set : []));
}

function claimUsesOf(rules: CompiledRule[]): { name: string; site: RuleSite; position: number }[] {
  return rules.flatMap(({ site, params }) => params.filter((p) => p.name !== 'sender').map((p) => ({ ...p, site })));
}

/** Calls `visit` on every node of a compiled rule expression, depth first. */
function eachNode(e: unknown, visit: (node: { k?: string }) => void): void {
  if (!e || typeof e !== 'object') return;
  visit(e as { k?: string });
  for (const v of Object.values(e)) {
    if (Array.isArray(v)) v.forEach((x) => eachNode(x, visit));
    else eachNode(v, visit);
  }
}

function collectParams(rule: AnalyzedRule, into: Set<string>): void {
  eachNode(rule.condition, (e) => {
    if (e.k === 'param') into.add((e as { name: string }).name);
  });
}

type RulesConfig = Pick<Config, 'tables' | 'database'> & Partial<Pick<Config, 'functions' | 'claims'>>;

/**
 * Parses, validates and compiles every rule of the config against the catalog. Throws a
 * RuleConfigError listing every problem at once; returns only when all rules are sound.
 */
export function compileRules(config: RulesConfig, catalog: Catalog): CompiledRules {
  const { rules, problems } = analyzeRules(config, catalog);
  if (problems.length) throw new RuleConfigError(problems);
  return rules;
}

/** What analyzeRules found: the rules that compiled, and every problem of the others. */
export interface RuleAnalysis {
  /** The rules that compiled; a rule with a structural problem is left out of its table's list. */
  rules: CompiledRules;
  problems: RuleProblem[];
  /** Tables on a cycle of select rules: a rule that reads one cannot be rendered (it never ends). */
  cyclic: Set<string>;
}

/**
 * The first two rounds of validation, both reported whatever the other finds: each rule's
 * structure against the catalog (and the config's tables, columns and functions), then cycles
 * between the select rules that compiled. With `claims` declared, a parameter outside them is a
 * problem at its place. Planning by PostgreSQL (verify.ts) can then run on the rules that compiled.
 */
export function analyzeRules(config: RulesConfig, catalog: Catalog): RuleAnalysis {
  const problems: RuleProblem[] = [];
  const policies = new Map<string, TablePolicy>();
  const declared = config.claims ? new Set(config.claims) : null;

  const compileList = (table: string, kind: RuleKind, texts: string[]): CompiledRule[] =>
    texts.flatMap((text, i) => {
      const site: RuleSite = { table, kind, index: i + 1, text };
      try {
        const parsed = parseRule(text);
        const compiled: CompiledRule = { site, rule: analyzeRule(catalog, table, parsed), params: parsed.paramNames.map((name, n) => ({ name, position: parsed.paramPositions[n]! })) };
        if (declared) for (const use of claimUsesOf([compiled]).filter((u) => !declared.has(u.name))) problems.push(undeclaredClaim(use, declared));
        return [compiled];
      } catch (err) {
        if (!(err instanceof RuleError)) throw err;
        problems.push({ site, position: err.position, message: err.message, hint: err.hint });
        return [];
      }
    });
  const compileSet = (table: string, kind: RuleKind, rules: 'public' | string[]): RuleSet =>
    rules === 'public' ? 'public' : compileList(table, kind, rules);

  for (const [table, tc] of Object.entries(config.tables)) {
    const info = catalog.tables.get(table);
    if (!info) {
      const known = [...catalog.tables.keys()].sort().join(', ') || '(none)';
      problems.push(tableProblem(`tables.${table}: no table "${table}" in schema "${catalog.schema}"`, `Tables there: ${known}.`));
      continue;
    }
    const select = tc.select;
    if (select === undefined) {
      problems.push(tableProblem(`tables.${table} has no "select"`, `A listed table is exposed, so say who sees its rows: "select": ["SELECT * FROM ${table} WHERE …"] or "select": "public". Unlisted tables stay private.`));
      continue;
    }
    if (tc.primaryKey) {
      if (info.kind !== 'view') problems.push(tableProblem(`tables.${table}.primaryKey: "${table}" is a table; its key is its PRIMARY KEY`, 'Only a view takes a declared primaryKey. Remove it, or ALTER TABLE … ADD PRIMARY KEY.'));
      for (const c of tc.primaryKey.filter((c) => !info.columns.some((x) => x.name === c)))
        problems.push(tableProblem(`tables.${table}.primaryKey: view "${table}" has no column "${c}"`, `Its columns: ${info.columns.map((x) => x.name).join(', ')}.`));
    }
    // Rows a mutation wrote are found again by key to test the check rules (a trigger may move them).
    if ((tc.insert || tc.update || tc.delete) && info.primaryKey.length === 0 && !(info.kind === 'view' && tc.primaryKey)) {
      const what = (['insert', 'update', 'delete'] as const).filter((k) => tc[k]).map((k) => `"${k}"`).join(' or ');
      problems.push(tableProblem(`tables.${table}: ${info.kind === 'view' ? 'view' : 'table'} "${table}" has no primary key, so it cannot have ${what} rules`, `Rows a mutation writes are found again by primary key to test the check rules and build returning. ${info.kind === 'view' ? `Declare the view's key ("primaryKey": ["id"]) if it is auto-updatable` : `Add a PRIMARY KEY to ${table}`}, or remove its ${what}.`));
    }
    const columnsOf = new Set(info.columns.map((c) => c.name));
    checkColumns(problems, table, tc, columnsOf);
    for (const [field, spec] of Object.entries(tc.computedFields ?? {})) {
      const fn = computedFunction(catalog, table, spec.function, spec.session);
      if (typeof fn === 'string') problems.push(tableProblem(`tables.${table}.computedFields.${field}: ${fn}`, `A computed field is CREATE FUNCTION ${spec.function}(${table}${spec.session ? ', json' : ''}) RETURNS <scalar> STABLE.`));
      else if (columnsOf.has(field)) problems.push(tableProblem(`tables.${table}.computedFields.${field}: "${table}" already has a column "${field}"`, 'Give the computed field another name.'));
    }
    const presets = (set: Record<string, string> | undefined) => set ?? {};
    const writable = (cols: string[] | undefined, set: Record<string, string>) =>
      cols ?? info.columns.filter((c) => !c.generated && !(c.name in set)).map((c) => c.name);
    policies.set(table, {
      table,
      select: compileSet(table, 'select', select),
      insert: tc.insert
        ? { check: compileSet(table, 'insert.check', tc.insert.check), columns: writable(tc.insert.columns, presets(tc.insert.set)), set: presets(tc.insert.set) }
        : null,
      update: tc.update
        ? {
            filter: tc.update.filter ? compileList(table, 'update.filter', tc.update.filter) : null,
            check: tc.update.check ? compileList(table, 'update.check', tc.update.check) : null,
            columns: writable(tc.update.columns, presets(tc.update.set)),
            set: presets(tc.update.set),
          }
        : null,
      delete: tc.delete ? compileList(table, 'delete', tc.delete) : null,
    });
  }

  for (const name of config.functions ?? []) {
    const fn = rootFunction(catalog, name, new Set(Object.keys(config.tables)));
    if (typeof fn === 'string') problems.push(tableProblem(`functions: ${fn}`, `A root function is CREATE FUNCTION ${name}(<named scalar arguments>) RETURNS SETOF <listed table> STABLE.`));
    else {
      const fields = [name, `${name}_aggregate`];
      const clash = Object.keys(config.tables).find((t) => [t, `${t}_aggregate`, `${t}_by_pk`].some((f) => fields.includes(f)));
      if (clash) problems.push(tableProblem(`functions: "${name}" clashes with the root fields of table "${clash}"`, 'A root field has one name: rename the function.'));
    }
  }

  // Only `select` rules recurse, so only they can form cycles.
  const edges = new Map<string, { to: string; site: RuleSite }[]>();
  for (const [table, policy] of policies) {
    if (policy.select === 'public') continue;
    const out = policy.select.flatMap(({ site, rule }) =>
      rule.instances.filter((i) => i.table !== table && isRuled(policies, i.table)).map((i) => ({ to: i.table, site })),
    );
    edges.set(table, out);
  }
  const cyclic = new Set<string>();
  for (const cycle of findCycles(edges)) {
    for (const step of cycle) cyclic.add(step.table);
    const path = [...cycle.map((step) => step.table), cycle[0]!.table].join(' → ');
    const via = cycle.map((step) => `tables.${step.table}.select[${step.site.index}] reads ${step.to}`).join('; ');
    problems.push(tableProblem(`rules form a cycle: ${path}`, `Each table's rules are applied to the tables it reads, so this never ends (${via}). Let one of these rules test the caller directly instead of through the other table.`));
  }

  // A preset takes its value from the token as a rule parameter does: a misspelt one writes null.
  if (declared) for (const p of policies.values()) for (const use of presetClaimsOf(p).filter((u) => !declared.has(u.name))) problems.push(tableProblem(`${use.where}: :${use.name} is not a claim the config declares`, undeclaredHint(use.name, declared)));

  return { rules: new CompiledRules(config.database.schema, policies), problems, cyclic };
}

function undeclaredClaim(use: { name: string; site: RuleSite; position: number }, declared: Set<string>): RuleProblem {
  return { site: use.site, position: use.position, message: `:${use.name} is not a claim the config declares`, hint: undeclaredHint(use.name, declared) };
}

function undeclaredHint(name: string, declared: Set<string>): string {
  const known = [...declared].sort().map((c) => `:${c}`).join(', ') || 'none';
  return `Declared in "claims": ${known} (and :sender, the caller). Fix the name, or add "${name}" to "claims" if tokens carry it.`;
}

function isRuled(policies: Map<string, TablePolicy>, table: string): boolean {
  const p = policies.get(table);
  return !!p && p.select !== 'public';
}

function tableProblem(message: string, hint: string): RuleProblem {
  return { site: null, position: null, message, hint };
}

function checkColumns(problems: RuleProblem[], table: string, tc: TableConfig, columns: Set<string>): void {
  const check = (path: string, names: string[]) => {
    for (const name of names) {
      if (!columns.has(name)) problems.push(tableProblem(`${path}: table "${table}" has no column "${name}"`, `Columns of ${table}: ${[...columns].join(', ')}.`));
    }
  };
  check(`tables.${table}.selectColumns`, tc.selectColumns ?? []);
  check(`tables.${table}.insert.columns`, tc.insert?.columns ?? []);
  check(`tables.${table}.insert.set`, Object.keys(tc.insert?.set ?? {}));
  check(`tables.${table}.update.columns`, tc.update?.columns ?? []);
  check(`tables.${table}.update.set`, Object.keys(tc.update?.set ?? {}));
}
