import type { Node, SelectStmt, RangeVar, JoinExpr, ColumnRef, A_Expr, FuncCall, TypeCast, TypeName } from 'libpg-query';
import { column, type Catalog, type TypeRef } from '../db/index.ts';
import { RuleError } from './errors.ts';
import type { AnalyzedRule, BoolTest, Expr, Instance, SqlKeyword } from './expr.ts';
import { isBindableType } from './params.ts';
import { isSupportedOperator } from './render.ts';
import type { ParsedRule } from './parse.ts';

/** The only kind of a node: libpg-query wraps each node as `{ Kind: body }`. */
function kindOf(node: Node): string {
  return Object.keys(node)[0] ?? '';
}
function body<T>(node: Node): T {
  return (node as Record<string, unknown>)[kindOf(node)] as T;
}
function str(node: Node | undefined): string | null {
  return node && kindOf(node) === 'String' ? (body<{ sval?: string }>(node).sval ?? '') : null;
}

const SYSTEM_SCHEMAS = new Set(['pg_catalog', 'information_schema', 'pg_toast']);
/**
 * How deeply expressions may nest (operators, function calls, casts, NOT …). Far beyond any real
 * rule; without a bound, a rule like `1 + 1 + … + 1` overflows the analyzer's (and later the
 * renderer's) stack and startup dies with a RangeError instead of a problem report.
 */
const MAX_DEPTH = 200;
const TEXT: TypeRef = { schema: 'pg_catalog', name: 'text', category: 'S', enumLabels: [] };
const BOOL_TESTS: Record<string, BoolTest> = {
  IS_TRUE: 'IS TRUE', IS_NOT_TRUE: 'IS NOT TRUE', IS_FALSE: 'IS FALSE',
  IS_NOT_FALSE: 'IS NOT FALSE', IS_UNKNOWN: 'IS UNKNOWN', IS_NOT_UNKNOWN: 'IS NOT UNKNOWN',
};
const KEYWORDS: Record<string, SqlKeyword> = {
  SVFOP_CURRENT_DATE: 'CURRENT_DATE', SVFOP_CURRENT_TIMESTAMP: 'CURRENT_TIMESTAMP',
  SVFOP_LOCALTIMESTAMP: 'LOCALTIMESTAMP', SVFOP_CURRENT_TIME: 'CURRENT_TIME', SVFOP_LOCALTIME: 'LOCALTIME',
};

/** Names of node kinds as a rule author knows them, for "X is not allowed" messages. */
const NODE_NAMES: Record<string, string> = {
  SubLink: 'a subquery', CaseExpr: 'CASE', A_ArrayExpr: 'an ARRAY constructor', RowExpr: 'a row constructor',
  A_Indirection: 'subscripts and field selection', CollateClause: 'COLLATE', MinMaxExpr: 'GREATEST/LEAST',
  NamedArgExpr: 'named function arguments', A_Star: '*', SetToDefault: 'DEFAULT', GroupingFunc: 'GROUPING',
  XmlExpr: 'XML functions', JsonObjectConstructor: 'JSON constructors', RangeSubselect: 'a subquery in FROM',
  RangeFunction: 'a function in FROM', RangeTableSample: 'TABLESAMPLE',
};

class Analyzer {
  private readonly instances: Instance[] = [];
  private readonly byName = new Map<string, number>();
  /** ON conditions, each with the instances of its own join (the only ones it may use, as in PostgreSQL). */
  private readonly quals: { node: Node; from: number; to: number }[] = [];
  /** While an ON condition is analyzed: the instances [from, to) it may refer to. */
  private scope: { from: number; to: number } | null = null;
  private depth = 0;

  constructor(
    private readonly catalog: Catalog,
    private readonly table: string,
    private readonly parsed: ParsedRule,
  ) {}

  private fail(message: string, location: number | undefined, hint: string): never {
    throw new RuleError(message, this.parsed.position(location), hint);
  }

  /** Like notAllowed, for a fault found by token (a character offset in the rule as written). */
  private notAllowedAt(what: string, position: number | null, hint: string): never {
    throw new RuleError(`${what} is not allowed in a rule`, position, hint);
  }

  private notAllowed(what: string, location: number | undefined, hint = 'Allowed: one SELECT over inner joins with a WHERE of comparisons, AND/OR/NOT, IN (list), IS [NOT] NULL, LIKE, casts and stable functions.'): never {
    this.fail(`${what} is not allowed in a rule`, location, hint);
  }

  run(): AnalyzedRule {
    const { stmt } = this.parsed;
    if (kindOf(stmt) !== 'SelectStmt') {
      const word = (this.parsed.firstWord || kindOf(stmt).replace(/Stmt$/, '')).toUpperCase();
      this.notAllowedAt(`${/^[AEIOU]/.test(word) ? 'an' : 'a'} ${word} statement`, this.parsed.start, 'A rule is one SELECT that returns the rows of its table.');
    }
    const select = body<SelectStmt>(stmt);
    this.checkClauses(select);
    for (const item of select.fromClause ?? []) this.from(item);
    if (this.instances.length === 0) this.fail('the rule has no FROM', undefined, `Write \`SELECT * FROM ${this.table} WHERE …\`.`);
    const target = this.target(select);
    const conditions = this.quals.map((q) => {
      this.scope = q;
      try {
        return this.bool(q.node);
      } finally {
        this.scope = null;
      }
    });
    if (select.whereClause) conditions.push(this.bool(select.whereClause));
    const condition = conditions.length === 0 ? null : conditions.length === 1 ? conditions[0]! : { k: 'bool' as const, op: 'AND' as const, args: conditions };
    return { instances: this.instances, target, condition };
  }

  private checkClauses(s: SelectStmt): void {
    const kw = (...words: string[]) => this.parsed.keyword(...words);
    if (s.op && s.op !== 'SETOP_NONE') {
      const op = s.op.replace('SETOP_', '');
      this.notAllowedAt(`${op} (a set operation)`, kw(op), 'List several rules instead: they are OR-ed.');
    }
    if (s.withClause) this.notAllowedAt('WITH (a CTE)', kw('WITH'), 'Join the tables directly in FROM.');
    if (s.valuesLists) this.notAllowedAt('VALUES', kw('VALUES'), 'A rule selects rows of a table.');
    if (s.intoClause) this.notAllowedAt('SELECT INTO', kw('INTO'), 'A rule only reads.');
    if (s.distinctClause) this.notAllowedAt('DISTINCT', kw('DISTINCT'), 'Remove DISTINCT: a rule only decides which rows are visible.');
    const group = s.groupClause?.[0];
    if (group) this.notAllowed('GROUP BY', this.locationOf(group), 'A rule returns rows of one table, not groups.');
    if (s.havingClause) this.notAllowed('HAVING', this.locationOf(s.havingClause), 'Move the condition into WHERE.');
    const window = s.windowClause?.[0];
    if (window) this.notAllowed('WINDOW', this.locationOf(window), 'A rule cannot use window functions.');
    const sort = s.sortClause?.[0];
    if (sort) this.notAllowed('ORDER BY', this.locationOf(sort), 'Remove ORDER BY: order is chosen by each query.');
    if (s.limitCount || s.limitOffset) this.notAllowed('LIMIT/OFFSET', this.locationOf(s.limitCount ?? s.limitOffset), 'Remove it: a rule decides visibility row by row.');
    if (s.lockingClause) this.notAllowedAt('FOR UPDATE/SHARE', kw('FOR'), 'A rule only reads.');
  }

  /**
   * Where a node is: its own location, else (none recorded, or -1 as for `ORDER BY x`, a subquery
   * or a function in FROM) the earliest location inside it.
   */
  private locationOf(node: Node | undefined): number | undefined {
    if (!node) return undefined;
    const b = body<{ location?: number }>(node);
    return b.location !== undefined && b.location >= 0 ? b.location : earliestLocation(b);
  }

  private from(item: Node): void {
    switch (kindOf(item)) {
      case 'RangeVar':
        return this.rangeVar(body<RangeVar>(item));
      case 'JoinExpr': {
        const join = body<JoinExpr>(item);
        if (join.jointype !== 'JOIN_INNER') {
          const kind = join.jointype?.replace('JOIN_', '') ?? 'this';
          this.notAllowed(`a ${kind} JOIN`, this.locationOf(join.rarg), 'Only inner joins: `JOIN t ON …`, `CROSS JOIN t`, or `FROM a, b WHERE …`.');
        }
        if (join.isNatural || join.usingClause) this.notAllowed(join.isNatural ? 'NATURAL JOIN' : 'JOIN … USING', this.locationOf(join.rarg), 'Write the condition with ON.');
        if (join.alias) this.notAllowed('an alias for a join', this.locationOf(join.rarg), 'Alias the tables, not the join.');
        const from = this.instances.length;
        if (join.larg) this.from(join.larg);
        if (join.rarg) this.from(join.rarg);
        if (join.quals) this.quals.push({ node: join.quals, from, to: this.instances.length });
        return;
      }
      default:
        this.notAllowed(NODE_NAMES[kindOf(item)] ?? kindOf(item), this.locationOf(item), 'FROM may only name tables of the configured schema, joined with inner joins.');
    }
  }

  private rangeVar(rv: RangeVar): void {
    const name = rv.relname ?? '';
    if (rv.catalogname) this.notAllowed('a database-qualified name', rv.location, 'Name tables of the configured schema only.');
    if (rv.schemaname && SYSTEM_SCHEMAS.has(rv.schemaname)) {
      this.fail(`system catalog ${rv.schemaname}.${name} cannot be read by a rule`, rv.location, 'Rules may read only tables of the configured schema.');
    }
    if (name.startsWith('pg_') && !this.catalog.tables.has(name)) {
      this.fail(`system catalog ${name} cannot be read by a rule`, rv.location, 'Rules may read only tables of the configured schema.');
    }
    if (rv.schemaname && rv.schemaname !== this.catalog.schema) {
      this.fail(`table ${rv.schemaname}.${name} is in another schema`, rv.location, `Rules may read only tables of schema "${this.catalog.schema}".`);
    }
    if (!this.catalog.tables.has(name)) {
      const known = [...this.catalog.tables.keys()].sort().join(', ') || '(none)';
      this.fail(`unknown table "${name}"`, rv.location, `Tables of schema "${this.catalog.schema}": ${known}.`);
    }
    if (rv.alias?.colnames) this.notAllowed('renaming columns in an alias', rv.location, 'Alias the table only: `account a`.');
    const alias = rv.alias?.aliasname ?? name;
    if (this.byName.has(alias)) this.fail(`"${alias}" is used twice in FROM`, rv.location, 'Give each instance its own alias: `player p JOIN player q ON …`.');
    this.byName.set(alias, this.instances.length);
    this.instances.push({ table: name, name: alias });
  }

  private target(s: SelectStmt): number {
    const hint = `Return whole rows of ${this.table}: \`SELECT * FROM ${this.table} …\` or, with joins, \`SELECT t.* FROM ${this.table} t JOIN …\`.`;
    const list = s.targetList ?? [];
    const first = list[0];
    // `SELECT FROM t` has no target to point at: the caret goes under SELECT.
    if (!first) throw new RuleError('a rule returns exactly one table\'s rows; this SELECT returns no columns', this.parsed.start, hint);
    if (list.length !== 1) this.fail('a rule returns exactly one table\'s rows; column lists are not allowed', this.locationOf(list[1]), hint);
    const res = body<{ name?: string; val?: Node; location?: number }>(first);
    if (res.name) this.fail('a rule cannot rename what it returns', res.location, hint);
    const val = res.val;
    if (!val || kindOf(val) !== 'ColumnRef') this.fail('a rule returns whole rows, not computed values', this.locationOf(val), hint);
    const fields = body<ColumnRef>(val).fields ?? [];
    const loc = body<ColumnRef>(val).location;
    const last = fields.at(-1);
    if (!last || kindOf(last) !== 'A_Star') this.fail('column projections are not allowed', loc, hint);
    let target: number;
    if (fields.length === 1) {
      if (this.instances.length !== 1) this.fail('`*` is ambiguous when FROM names several tables', loc, `Say whose rows the rule returns: \`SELECT ${this.instances.find((i) => i.table === this.table)?.name ?? 't'}.* …\`.`);
      target = 0;
    } else if (fields.length === 2) {
      const alias = str(fields[0]) ?? '';
      const found = this.byName.get(alias);
      if (found === undefined) this.fail(`"${alias}" is not a table in FROM`, loc, hint);
      target = found;
    } else {
      this.fail('a schema-qualified star is not allowed', loc, hint);
    }
    const returned = this.instances[target]!.table;
    if (returned !== this.table) {
      this.fail(`this rule returns rows of "${returned}" but is listed under "${this.table}"`, loc, `A rule under tables.${this.table} must return ${this.table} rows; move it under tables.${returned} or select the ${this.table} instance.`);
    }
    return target;
  }

  private inScope(inst: number): boolean {
    return !this.scope || (inst >= this.scope.from && inst < this.scope.to);
  }

  /** PostgreSQL: "invalid reference to FROM-clause entry", e.g. `FROM a, b JOIN c ON c.x = a.x`. */
  private outOfScope(alias: string, location: number | undefined): never {
    this.fail(`"${alias}" cannot be used in this ON condition: it is not part of this JOIN`, location, 'An ON condition may use only the tables its JOIN joins; move the condition to WHERE.');
  }

  private resolve(ref: ColumnRef): { inst: number; column: string; type: TypeRef } {
    const fields = ref.fields ?? [];
    const names = fields.map(str);
    if (names.some((n) => n === null)) this.notAllowed('`*` in a condition', ref.location);
    if (fields.length === 1) {
      const col = names[0]!;
      const all = this.instances.flatMap((inst, i) => {
        const c = column(this.catalog.tables.get(inst.table)!, col);
        return c ? [{ inst: i, column: col, type: c.type }] : [];
      });
      const matches = all.filter((m) => this.inScope(m.inst));
      if (matches.length === 0 && all.length > 0) this.outOfScope(this.instances[all[0]!.inst]!.name, ref.location);
      if (matches.length === 1) return matches[0]!;
      if (matches.length > 1) this.fail(`column "${col}" is ambiguous`, ref.location, `Qualify it: ${matches.map((m) => `${this.instances[m.inst]!.name}.${col}`).join(' or ')}.`);
      const param = ['sender', 'identity', 'user'].includes(col) ? ` To compare with the caller, write \`:sender\`.` : '';
      this.fail(`unknown column "${col}"`, ref.location, `No table in FROM has a column "${col}".${param}`);
    }
    if (fields.length === 2) {
      const [alias, col] = names as [string, string];
      const inst = this.byName.get(alias);
      if (inst === undefined) this.fail(`"${alias}" is not a table in FROM`, ref.location, `Tables in FROM: ${[...this.byName.keys()].join(', ')}.`);
      if (!this.inScope(inst)) this.outOfScope(alias, ref.location);
      const table = this.catalog.tables.get(this.instances[inst]!.table)!;
      const c = column(table, col);
      if (!c) this.fail(`unknown column "${alias}.${col}"`, ref.location, `Columns of ${table.name}: ${table.columns.map((x) => x.name).join(', ')}.`);
      return { inst, column: col, type: c.type };
    }
    this.notAllowed('a schema-qualified column', ref.location, 'Qualify columns with the table or alias only: `a.identity`.');
  }

  /** The type an expression has without looking deeper: what a parameter beside it is cast to. */
  private staticType(node: Node | undefined): TypeRef | null {
    if (!node) return null;
    switch (kindOf(node)) {
      case 'ColumnRef':
        try {
          return this.resolve(body<ColumnRef>(node)).type;
        } catch {
          return null;
        }
      case 'TypeCast':
        return this.typeRef(body<TypeCast>(node).typeName, true);
      case 'A_Const': {
        const c = body<Record<string, unknown>>(node);
        const name = 'ival' in c ? 'int8' : 'fval' in c ? 'numeric' : 'boolval' in c ? 'bool' : null;
        return name ? (this.catalog.types.get(name) ?? null) : null;
      }
      default:
        return null;
    }
  }

  private typeRef(tn: TypeName | undefined, quiet = false): TypeRef | null {
    const names = (tn?.names ?? []).map(str);
    const name = names.at(-1);
    const schema = names.length > 1 ? names.at(-2) : null;
    if (!name || names.length > 2 || tn?.setof || tn?.pct_type) return quiet ? null : this.notAllowed('this type name', tn?.location);
    if (schema && schema !== 'pg_catalog' && schema !== this.catalog.schema) {
      return quiet ? null : this.fail(`type ${schema}.${name} is in another schema`, tn?.location, 'Use built-in types or types of the configured schema.');
    }
    const type = this.catalog.types.get(tn?.arrayBounds ? `_${name}` : name);
    if (!type) return quiet ? null : this.fail(`unknown type "${name}"`, tn?.location, 'Use a type that exists in the database.');
    return type;
  }

  private bool(node: Node): Expr {
    return this.expr(node, null);
  }

  private expr(node: Node, hint: TypeRef | null): Expr {
    if (this.depth >= MAX_DEPTH) {
      // The node's own location only: looking deeper could overflow the stack this guards.
      const at = body<{ location?: number }>(node).location;
      this.fail(`the rule is too deeply nested (more than ${MAX_DEPTH} levels of operators, calls or casts)`, at, 'Simplify the condition, e.g. list several rules instead of one long expression.');
    }
    this.depth++;
    try {
      return this.exprAt(node, hint);
    } finally {
      this.depth--;
    }
  }

  private exprAt(node: Node, hint: TypeRef | null): Expr {
    const kind = kindOf(node);
    switch (kind) {
      case 'ColumnRef': {
        const { inst, column: col } = this.resolve(body<ColumnRef>(node));
        return { k: 'col', inst, column: col };
      }
      case 'ParamRef': {
        const p = body<{ number?: number; location?: number }>(node);
        const name = this.parsed.paramNames[(p.number ?? 0) - 1] ?? '';
        const type = hint ?? TEXT;
        if (!isBindableType(type)) {
          this.fail(`:${name} is compared with a value of type ${type.name}, which a parameter cannot be converted to`, p.location, `Cast the other side to text, e.g. \`col::text = :${name}\`.`);
        }
        return { k: 'param', name, type };
      }
      case 'A_Const': {
        const c = body<{ ival?: { ival?: number }; fval?: { fval?: string }; sval?: { sval?: string }; boolval?: { boolval?: boolean }; bsval?: unknown; isnull?: boolean; location?: number }>(node);
        if (c.isnull) return { k: 'literal', value: null };
        if (c.ival) return { k: 'literal', value: c.ival.ival ?? 0 };
        if (c.fval) return { k: 'literal', value: c.fval.fval ?? '0', numeric: true };
        if (c.sval) return { k: 'literal', value: c.sval.sval ?? '' };
        if (c.boolval) return { k: 'literal', value: c.boolval.boolval ?? false };
        if ('ival' in c) return { k: 'literal', value: 0 };
        return this.notAllowed('a bit-string constant', c.location);
      }
      case 'TypeCast': {
        const tc = body<TypeCast>(node);
        const type = this.typeRef(tc.typeName)!;
        const typmods = (tc.typeName?.typmods ?? []).map((m) => {
          const v = kindOf(m) === 'A_Const' ? body<{ ival?: { ival?: number } }>(m).ival : undefined;
          if (!v) this.notAllowed('this type modifier', this.locationOf(m));
          return v.ival ?? 0;
        });
        return { k: 'cast', arg: this.expr(tc.arg!, type), type, typmods };
      }
      case 'BoolExpr': {
        const b = body<{ boolop?: string; args?: Node[] }>(node);
        const op = b.boolop === 'AND_EXPR' ? 'AND' : b.boolop === 'OR_EXPR' ? 'OR' : 'NOT';
        return { k: 'bool', op, args: (b.args ?? []).map((a) => this.bool(a)) };
      }
      case 'NullTest': {
        const n = body<{ arg?: Node; nulltesttype?: string }>(node);
        return { k: 'nulltest', negated: n.nulltesttype === 'IS_NOT_NULL', arg: this.expr(n.arg!, null) };
      }
      case 'BooleanTest': {
        const b = body<{ arg?: Node; booltesttype?: string }>(node);
        return { k: 'booltest', test: BOOL_TESTS[b.booltesttype ?? ''] ?? 'IS TRUE', arg: this.expr(b.arg!, this.catalog.types.get('bool') ?? null) };
      }
      case 'A_Expr':
        return this.aExpr(body<A_Expr>(node));
      case 'FuncCall':
        return this.func(body<FuncCall>(node));
      case 'CoalesceExpr': {
        const args = body<{ args?: Node[] }>(node).args ?? [];
        const type = args.map((a) => this.staticType(a)).find((t) => t) ?? hint;
        return { k: 'coalesce', args: args.map((a) => this.expr(a, type)) };
      }
      case 'SQLValueFunction': {
        const v = body<{ op?: string; location?: number }>(node);
        const text = KEYWORDS[v.op ?? ''];
        if (!text) this.notAllowed(`${(v.op ?? '').replace('SVFOP_', '')}`, v.location, 'Rules may use the date and time keywords (CURRENT_DATE, CURRENT_TIMESTAMP …), not session information.');
        return { k: 'keyword', text };
      }
      default:
        return this.notAllowed(NODE_NAMES[kind] ?? kind, this.locationOf(node), kind === 'SubLink' ? 'Join the table in FROM instead of a subquery; rules of other tables apply to it automatically.' : undefined);
    }
  }

  private aExpr(e: A_Expr): Expr {
    const op = (e.name ?? []).map(str).at(-1) ?? '';
    const left = e.lexpr;
    const right = e.rexpr;
    switch (e.kind) {
      case 'AEXPR_OP':
      case 'AEXPR_LIKE':
      case 'AEXPR_ILIKE': {
        if (!isSupportedOperator(op, !left)) this.notAllowed(`operator ${op}`, e.location, 'Use comparison, arithmetic, LIKE, regular-expression, JSON or array containment operators.');
        const like = e.kind !== 'AEXPR_OP';
        const lt = like ? null : this.staticType(right);
        const rt = like ? null : this.staticType(left);
        return { k: 'op', op, left: left ? this.expr(left, lt) : null, right: this.expr(right!, rt) };
      }
      case 'AEXPR_DISTINCT':
      case 'AEXPR_NOT_DISTINCT':
        return {
          k: 'distinct',
          negated: e.kind === 'AEXPR_NOT_DISTINCT',
          left: this.expr(left!, this.staticType(right)),
          right: this.expr(right!, this.staticType(left)),
        };
      case 'AEXPR_IN': {
        const items = body<{ items?: Node[] }>(right!).items ?? [];
        if (kindOf(right!) !== 'List') this.notAllowed('IN with a subquery', e.location, 'Join the table in FROM instead.');
        const leftType = this.staticType(left);
        const itemType = items.map((i) => this.staticType(i)).find((t) => t) ?? null;
        return { k: 'in', negated: op === '<>', left: this.expr(left!, itemType), list: items.map((i) => this.expr(i, leftType)) };
      }
      case 'AEXPR_BETWEEN':
      case 'AEXPR_NOT_BETWEEN':
      case 'AEXPR_BETWEEN_SYM':
      case 'AEXPR_NOT_BETWEEN_SYM': {
        const [low, high] = body<{ items?: Node[] }>(right!).items ?? [];
        const type = this.staticType(left) ?? this.staticType(low) ?? this.staticType(high);
        return {
          k: 'between',
          negated: e.kind.includes('NOT'),
          symmetric: e.kind.endsWith('SYM'),
          arg: this.expr(left!, type),
          low: this.expr(low!, type),
          high: this.expr(high!, type),
        };
      }
      default: {
        const what: Record<string, string> = { AEXPR_OP_ANY: 'ANY(…)', AEXPR_OP_ALL: 'ALL(…)', AEXPR_NULLIF: 'NULLIF', AEXPR_SIMILAR: 'SIMILAR TO' };
        return this.notAllowed(what[e.kind ?? ''] ?? String(e.kind), e.location, e.kind === 'AEXPR_OP_ANY' ? 'Write `col IN (a, b, …)`.' : undefined);
      }
    }
  }

  private func(f: FuncCall): Expr {
    const names = (f.funcname ?? []).map(str);
    const name = names.at(-1) ?? '';
    const schema = names.length > 1 ? (names.at(-2) ?? '') : null;
    if (f.over) this.notAllowed(`window function ${name}() OVER`, f.location, 'A rule decides visibility row by row.');
    if (f.agg_star || f.agg_distinct || f.agg_order || f.agg_filter || f.agg_within_group) this.notAllowed(`aggregate call ${name}(…)`, f.location, 'A rule decides visibility row by row.');
    if (f.func_variadic) this.notAllowed('VARIADIC', f.location);
    if (schema !== null && (SYSTEM_SCHEMAS.has(schema) ? schema !== 'pg_catalog' : schema !== this.catalog.schema)) {
      this.fail(`function ${schema}.${name} is in another schema`, f.location, 'Use built-in functions or functions of the configured schema.');
    }
    const args = f.args ?? [];
    const candidates = (this.catalog.functions.get(name) ?? []).filter(
      (fn) => (schema === null || fn.schema === schema) && (fn.nargs === args.length || (fn.variadic && args.length >= fn.nargs - 1)),
    );
    if (candidates.length === 0) this.fail(`unknown function ${name}() with ${args.length} argument${args.length === 1 ? '' : 's'}`, f.location, 'Use a function that exists in the database.');
    if (candidates.some((fn) => fn.kind === 'a' || fn.kind === 'w')) this.notAllowed(`aggregate ${name}()`, f.location, 'A rule decides visibility row by row.');
    if (candidates.some((fn) => fn.volatility === 'v')) {
      this.fail(`${name}() is volatile`, f.location, 'Rules may call only immutable or stable functions, so a row\'s visibility does not change between two reads of the same data.');
    }
    const resolved = candidates[0]!;
    return { k: 'func', schema: resolved.schema, name, args: args.map((a) => this.expr(a, null)) };
  }
}

/** Iterative: the tree may be nested deeper than the stack goes (e.g. `ORDER BY 1 + 1 + … + 1`). */
function earliestLocation(value: unknown): number | undefined {
  let best: number | undefined;
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (!v || typeof v !== 'object') continue;
    for (const [key, child] of Object.entries(v)) {
      if (key === 'location' && typeof child === 'number') {
        if (child >= 0 && (best === undefined || child < best)) best = child;
      } else stack.push(child);
    }
  }
  return best;
}

/** Checks one parsed rule against the catalog and translates it into the compiler's own tree. */
export function analyzeRule(catalog: Catalog, table: string, parsed: ParsedRule): AnalyzedRule {
  return new Analyzer(catalog, table, parsed).run();
}
