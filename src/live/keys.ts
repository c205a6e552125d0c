import type { SelectedField } from '../resolvers/index.ts';
import type { ChildTarget } from './tables.ts';

/** Hidden fields start with a character no GraphQL response key can have, so they never collide. */
const HIDDEN = '@';

interface KeyedTarget {
  table: string;
  /** The hidden fields that carry the root row's side of the relationship, one per column. */
  fields: SelectedField[];
  /** The changed table's side of the relationship, in the same order. */
  columns: string[];
}

/**
 * A key as text: the relationship's index and its values, each as text. Only relationships whose
 * columns are integers, text or uuids are tracked (`targeting` in tables.ts), so the texts agree
 * whichever side they come from: a row image of the change log (a bigint past 2^53 kept as its
 * digits by parseJsonExact) or a result built by rowJson (bigint as text).
 */
function keyOf(target: number, values: unknown[]): string {
  return `${target}:${JSON.stringify(values.map((v) => (v === null || v === undefined ? null : String(v))))}`;
}

/**
 * Which root rows each subscriber's last result holds, so that a change to a table right below the
 * root (see `targeting` in tables.ts) re-evaluates only the subscribers holding a root row it is
 * related to. The root rows' sides of the relationships travel as hidden fields of the result (the
 * one statement still builds everything); they count in its hash, so a result whose root rows
 * changed always comes back, and they are removed before the result is pushed. A changed row's side
 * is read from its old and new images: no statement is needed to find whom it concerns.
 */
export class RootKeys {
  private readonly targets: KeyedTarget[] = [];
  private readonly holders = new Map<string, Set<object>>();
  private readonly held = new WeakMap<object, string[]>();

  constructor(
    private readonly kind: 'list' | 'byPk' | 'aggregate',
    /** The subscription's field as the client selected it. */
    private readonly field: SelectedField,
    children: Map<string, ChildTarget>,
  ) {
    for (const [table, { rel }] of children) {
      const i = this.targets.length;
      const fields = rel.on.map(([rootColumn], j): SelectedField => ({ key: `${HIDDEN}${i}.${j}`, name: rootColumn, args: {}, children: [] }));
      this.targets.push({ table, fields, columns: rel.on.map(([, column]) => column) });
    }
  }

  get tracked(): boolean {
    return this.targets.length > 0;
  }

  tracks(table: string): boolean {
    return this.targets.some((t) => t.table === table);
  }

  /** The subscription's field with the hidden key fields added to its root rows. */
  withKeys(): SelectedField {
    const field = this.field;
    if (!this.tracked) return field;
    const hidden = this.targets.flatMap((t) => t.fields);
    const addTo = (row: SelectedField): SelectedField => ({ ...row, children: [...row.children, ...hidden] });
    if (this.kind !== 'aggregate') return addTo(field);
    return { ...field, children: field.children.map((c) => (c.name === 'nodes' ? addTo(c) : c)) };
  }

  /** Takes the hidden fields out of a parsed result and returns the root keys they carried. */
  strip(result: unknown): string[] {
    if (!this.tracked) return [];
    const keys: string[] = [];
    const take = (row: unknown): void => {
      if (!row || typeof row !== 'object') return;
      const r = row as Record<string, unknown>;
      this.targets.forEach((t, i) => {
        keys.push(keyOf(i, t.fields.map((f) => r[f.key])));
        for (const f of t.fields) delete r[f.key];
      });
    };
    if (this.kind === 'byPk') take(result);
    else if (this.kind === 'list') (result as unknown[]).forEach(take);
    else for (const nodes of this.field.children.filter((c) => c.name === 'nodes')) ((result as Record<string, unknown[]>)[nodes.key] ?? []).forEach(take);
    return keys;
  }

  /** Records what `subscriber`'s latest result holds. */
  set(subscriber: object, keys: string[]): void {
    this.forget(subscriber);
    if (keys.length === 0) return;
    const unique = [...new Set(keys)];
    this.held.set(subscriber, unique);
    for (const key of unique) {
      let set = this.holders.get(key);
      if (!set) this.holders.set(key, (set = new Set()));
      set.add(subscriber);
    }
  }

  forget(subscriber: object): void {
    for (const key of this.held.get(subscriber) ?? []) {
      const set = this.holders.get(key);
      set?.delete(subscriber);
      if (set?.size === 0) this.holders.delete(key);
    }
    this.held.delete(subscriber);
  }

  /** The subscribers whose results hold a root row related to one of `rows` (old and new images of changed rows, by table). */
  concerned<T extends object>(rows: Map<string, Record<string, unknown>[]>): Set<T> {
    const found = new Set<T>();
    this.targets.forEach((target, i) => {
      for (const row of rows.get(target.table) ?? []) {
        for (const sub of this.holders.get(keyOf(i, target.columns.map((c) => row[c]))) ?? []) found.add(sub as T);
      }
    });
    return found;
  }
}
