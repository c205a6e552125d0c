import type { GraphQLResolveInfo } from 'graphql';
import { LRUCache } from 'lru-cache';
import type { SQL } from 'pg-sql2';
import type { UncheckedInput } from './input.ts';

/** A root field's SQL (caller values as slots) and the input values to check before it runs. */
export interface Plan {
  value: SQL;
  inputs: UncheckedInput[];
}

/** Variables longer than this (as JSON) are not worth a key: such requests build their SQL each time. */
const MAX_KEY_VARIABLES = 4096;

/**
 * Root fields' SQL kept per (operation, field, variables' values, admin or not), so a recurring
 * operation is not rebuilt (selection walked, rules rendered) on every request. The SQL holds the
 * caller's values only as slots (`callerIndependentScope`), filled per request, so one plan serves
 * every caller of its kind. The key names everything else the SQL is built from: the operation and
 * field nodes (yoga parses a recurring document once and hands out the same nodes; a new parse gives
 * new nodes, which only miss), the variables (which decide arguments, @include and @skip), admin or
 * not. Bounded (least recently used plans go first).
 */
export class Plans {
  private readonly cache: LRUCache<string, Plan>;
  private readonly ids = new NodeIds();
  /** Requests answered from a kept plan, and requests that built one. */
  hits = 0;
  misses = 0;

  constructor(max: number) {
    this.cache = new LRUCache({ max });
  }

  get(info: GraphQLResolveInfo, admin: boolean, build: () => Plan): Plan {
    const key = this.key(info, admin);
    const kept = key === null ? undefined : this.cache.get(key);
    if (kept) {
      this.hits++;
      return kept;
    }
    this.misses++;
    const plan = build();
    if (key !== null) this.cache.set(key, plan);
    return plan;
  }

  private key(info: GraphQLResolveInfo, admin: boolean): string | null {
    const variables = JSON.stringify(info.variableValues);
    if (variables.length > MAX_KEY_VARIABLES) return null;
    const nodes = [info.operation, ...info.fieldNodes].map((n) => this.ids.of(n)).join(',');
    return `${admin ? 'admin' : 'caller'}|${nodes}|${variables}`;
  }

}

/** A number per object (a parsed document's node), for cache keys; gone with the object. */
export class NodeIds {
  private readonly ids = new WeakMap<object, number>();
  private next = 1;

  of(node: object): number {
    let id = this.ids.get(node);
    if (id === undefined) {
      id = this.next++;
      this.ids.set(node, id);
    }
    return id;
  }
}
