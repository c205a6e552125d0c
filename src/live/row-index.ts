import { coerceParam, paramValue, type AnalyzedRule, type Caller, type CompiledRule, type Expr } from '../rules/index.ts';
import type { ColumnModel, TableModel } from '../schema/index.ts';
import { textStable } from './tables.ts';

/**
 * What a subscriber's `match` (visibility AND filter, see `targeting` in tables.ts) requires of a
 * changed root row, derived from the compiled rules (our tree of libpg-query's AST) and the `where`:
 * a necessary condition, never a sufficient one, so the row is still tested in PostgreSQL.
 *
 * The row can match only if (`keys` null: always) it has one of `keys`, or (`flag`) a branch of the
 * visibility that does not read the row (the admin rule) is true for the subscriber.
 */
export interface RowNeeds {
  /** `column\0text`: the row's column equals that value, compared as PostgreSQL's text form. */
  keys: string[] | null;
  /** The visibility has a branch that does not read the row; its truth is kept per subscriber (RowIndex.setFlag). */
  flag: boolean;
}

const keyOf = (column: string, text: string) => `${column}\u0000${text}`;

/** PostgreSQL's text form of a uuid (lower case, hyphens after 8-4-4-4 hex digits), from any form coerceParam accepts. */
function uuidText(value: string): string {
  const hex = value.replace(/[{}-]/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The text a value compared with `column` has in PostgreSQL, or null when it does not convert or the type is not indexed. */
function valueText(column: ColumnModel, value: unknown): string | null {
  const { type } = column;
  if (!textStable(type)) return null;
  // coerceParam gives what the statement binds: integers in canonical digits, text unchanged.
  const text = coerceParam(value, type);
  if (text === null) return null;
  return type.name === 'uuid' ? uuidText(text) : text;
}

/**
 * A column of a changed row's image (to_jsonb of the row, parsed by parseJsonExact) as PostgreSQL's
 * text form: to_jsonb writes integers as numbers (big ones kept as their digits), text and uuids as
 * their text.
 */
function imageText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return String(value);
  return null;
}

function conjuncts(e: Expr | null): Expr[] {
  if (!e) return [];
  return e.k === 'bool' && e.op === 'AND' ? e.args.flatMap(conjuncts) : [e];
}

function readsRow(e: unknown, target: number): boolean {
  if (!e || typeof e !== 'object') return false;
  const node = e as { k?: string; inst?: number };
  if (node.k === 'col' && node.inst === target) return true;
  return Object.values(e).some((v) => (Array.isArray(v) ? v.some((x) => readsRow(x, target)) : readsRow(v, target)));
}

/**
 * One rule: its keys when a conjunct is `row.col = :param` (either side; the parameter has the
 * column's type, which the analyzer gives it), 'rowless' when it does not read the row at all, null
 * when neither (any row can match).
 */
function ruleNeeds(model: TableModel, rule: AnalyzedRule, caller: Caller): string[] | 'rowless' | null {
  if (!readsRow(rule.condition, rule.target)) return 'rowless';
  for (const c of conjuncts(rule.condition)) {
    if (c.k !== 'op' || c.op !== '=' || !c.left) continue;
    const [col, param] = c.left.k === 'col' ? [c.left, c.right] : [c.right, c.left];
    if (col.k !== 'col' || col.inst !== rule.target || param.k !== 'param') continue;
    const column = model.columns.find((x) => x.name === col.column);
    if (!column || param.type.schema !== column.type.schema || param.type.name !== column.type.name) continue;
    if (!textStable(column.type)) continue;
    // A parameter that does not convert is bound as NULL: `col = NULL` matches no row.
    const text = coerceParam(paramValue(caller.identity, param.name), param.type);
    return text === null ? [] : [keyOf(column.name, column.type.name === 'uuid' ? uuidText(text) : text)];
  }
  return null;
}

/** The visibility's rules (OR-ed): keys of every keyed rule, `flag` when one does not read the row. */
export function visibilityNeeds(model: TableModel, rules: CompiledRule[], caller: Caller): { needs: RowNeeds; rowless: CompiledRule[] } {
  const keys: string[] = [];
  const rowless: CompiledRule[] = [];
  for (const r of rules) {
    const found = ruleNeeds(model, r.rule, caller);
    if (found === null) return { needs: { keys: null, flag: false }, rowless: [] };
    if (found === 'rowless') rowless.push(r);
    else keys.push(...found);
  }
  return { needs: { keys, flag: rowless.length > 0 }, rowless };
}

/** Keys one of which a row must have to pass the `where` (a Hasura bool_exp), or null when none is required. */
export function whereNeeds(model: TableModel, exp: unknown): string[] | null {
  if (!exp || typeof exp !== 'object' || Array.isArray(exp)) return null;
  const parts: (string[] | null)[] = [];
  for (const [key, value] of Object.entries(exp)) {
    if (value === undefined) continue;
    const list = Array.isArray(value) ? value : [value];
    if (key === '_and') parts.push(firstKeyed(list.map((e) => whereNeeds(model, e))));
    else if (key === '_or') {
      const branches = list.map((e) => whereNeeds(model, e));
      parts.push(branches.some((b) => b === null) ? null : branches.flat() as string[]);
    } else {
      const column = model.readable.find((c) => c.name === key);
      const eq = column && value && typeof value === 'object' ? (value as Record<string, unknown>)['_eq'] : undefined;
      const text = column && eq !== undefined && eq !== null ? valueText(column, eq) : null;
      parts.push(text === null ? null : [keyOf(column!.name, text)]);
    }
  }
  return firstKeyed(parts);
}

/** Of conditions AND-ed together, any one that requires keys will do. */
function firstKeyed(parts: (string[] | null)[]): string[] | null {
  return parts.find((p) => p !== null) ?? null;
}

/** Keys a row must have to be the one `t_by_pk(…)` names. */
export function pkNeeds(model: TableModel, args: Record<string, unknown>): string[] | null {
  return firstKeyed(model.primaryKey.map((k) => {
    const text = valueText(k, args[k.name]);
    return text === null ? null : [keyOf(k.name, text)];
  }));
}

/** The needs of `visible AND filter`: the filter's keys when it has some (they hold whatever the visibility), else the visibility's. */
export function matchNeeds(visible: RowNeeds, filter: string[] | null): RowNeeds {
  return filter !== null ? { keys: filter, flag: false } : visible;
}

/**
 * The subscribers of one shape by the keys their match requires of a changed root row, so that a
 * commit's old and new images are looked up here, in the gateway, and only the subscribers they
 * can concern are evaluated. Subscribers without keys (`fallback`) keep the in-statement test;
 * subscribers whose row-independent branch is true (or not known yet) match every row.
 */
export class RowIndex<S extends object> {
  private readonly byKey = new Map<string, Set<S>>();
  /** Every column a subscriber was keyed on (at most the table's columns): each changed row is looked up on these. */
  private readonly columns = new Set<string>();
  private readonly needs = new Map<S, RowNeeds>();
  private readonly unkeyed = new Set<S>();
  /** Subscribers whose row-independent branch was true when last evaluated. */
  private readonly flagged = new Set<S>();
  /** Subscribers whose row-independent branch is not evaluated (new, or a table it reads changed since). */
  private readonly unknown = new Set<S>();

  /** Subscribers whose needs give no keys: every changed row is tested against them in PostgreSQL. */
  get fallback(): ReadonlySet<S> {
    return this.unkeyed;
  }

  add(sub: S, needs: RowNeeds): void {
    this.needs.set(sub, needs);
    if (needs.keys === null) return void this.unkeyed.add(sub);
    if (needs.flag) this.unknown.add(sub);
    for (const key of new Set(needs.keys)) {
      this.columns.add(key.slice(0, key.indexOf('\u0000')));
      let set = this.byKey.get(key);
      if (!set) this.byKey.set(key, (set = new Set()));
      set.add(sub);
    }
  }

  remove(sub: S): void {
    const needs = this.needs.get(sub);
    if (!needs) return;
    this.needs.delete(sub);
    this.unkeyed.delete(sub);
    this.flagged.delete(sub);
    this.unknown.delete(sub);
    for (const key of needs.keys ?? []) {
      const set = this.byKey.get(key);
      set?.delete(sub);
      if (set?.size === 0) this.byKey.delete(key);
    }
  }

  /** The subscribers whose flag must be evaluated (setFlag) before a changed row is looked up. */
  get unevaluated(): ReadonlySet<S> {
    return this.unknown;
  }

  /** A table the row-independent branches read changed: every flag is to be evaluated again. */
  forgetFlags(): void {
    for (const sub of this.needs.keys()) if (this.needs.get(sub)!.flag && this.needs.get(sub)!.keys !== null) this.unknown.add(sub);
  }

  /** The row-independent branch of `sub` is `on` (evaluated on the tables as they are). */
  setFlag(sub: S, on: boolean): void {
    if (!this.unknown.delete(sub)) return;
    if (on) this.flagged.add(sub);
    else this.flagged.delete(sub);
  }

  /** The keyed subscribers one of `rows` (old and new images of changed root rows) can concern; an unevaluated flag counts as true. */
  matched(rows: Iterable<Record<string, unknown>>): Set<S> {
    const found = new Set<S>([...this.flagged, ...this.unknown]);
    for (const row of rows) {
      for (const column of this.columns) {
        const text = imageText(row[column]);
        if (text === null) continue;
        for (const sub of this.byKey.get(keyOf(column, text)) ?? []) found.add(sub);
      }
    }
    return found;
  }
}
