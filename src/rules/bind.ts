import { sql, type SQL } from 'pg-sql2';
import type { TypeRef } from '../db/index.ts';
import { coerceParam } from './params.ts';
import { typeSql, type ParamSource } from './render.ts';

/** Who is asking: the sender (the `senderClaim` of the token) and all of the token's claims. */
export interface Identity {
  sender: string | null;
  claims: Readonly<Record<string, unknown>>;
}

export function paramValue(identity: Identity, name: string): unknown {
  // `:sender` always means the sender, whatever the sender claim is called in the token.
  // Own properties only: a rule's `:constructor` or `:toString` must not read Object.prototype.
  if (name === 'sender') return identity.sender;
  return Object.hasOwn(identity.claims, name) ? identity.claims[name] : undefined;
}

/**
 * How a value reaches SQL: as a bound `$n` (one caller), or as a column of a subscriber relation
 * (many subscribers in one statement, see live/). Either way it is text, cast where it is used.
 */
export interface Binder {
  /** SQL of type text holding `value`. */
  text(value: string | null): SQL;
  /** SQL of type text[] holding `values`. */
  textArray(values: (string | null)[]): SQL;
}

/** Binds each value as its own `$n`. `::text` first: postgres.js would otherwise serialize the
 * value for the type PostgreSQL infers (its bool serializer turns the string 'true' into false). */
export const boundValues: Binder = {
  text: (value) => sql`${sql.value(value)}::text`,
  textArray: (values) => sql`${sql.value(values)}::text[]`,
};

/** The caller's parameters, each cast to the type it meets, bound through `binder`. */
export function identityParams(identity: Identity, binder: Binder): ParamSource {
  return {
    param: (name, type) => sql`${binder.text(coerceParam(paramValue(identity, name), type))}::${typeSql(type)}`,
  };
}

/**
 * A caller's value not known yet: bound as a `$n` like any value, and replaced by the caller's own
 * (`fillCaller`) just before the statement runs. SQL built with these is the same for every caller,
 * so it can be kept and reused (resolvers/plans.ts); `type` null is the claims as json text.
 */
class CallerSlot {
  constructor(
    readonly name: string,
    readonly type: TypeRef | null,
  ) {}
}

/** Parameters as caller slots: the same text `identityParams` gives, with the values left open. */
export const callerSlots: ParamSource = {
  param: (name, type) => sql`${boundValues.text(new CallerSlot(name, type) as never)}::${typeSql(type)}`,
};

/** The caller's claims as one json text, left open as `callerSlots` does. */
export const claimsSlot = (): SQL => boundValues.text(new CallerSlot('claims', null) as never);

/** Bound values with every caller slot replaced by this caller's value. */
export function fillCaller(values: readonly unknown[], identity: Identity): unknown[] {
  return values.map((v) => (v instanceof CallerSlot ? (v.type ? coerceParam(paramValue(identity, v.name), v.type) : JSON.stringify(identity.claims)) : v));
}

/** Parameters for one caller: each use becomes a bound `$n`, cast to the type it meets. */
export function callerParams(identity: Identity): ParamSource {
  return identityParams(identity, boundValues);
}

interface Slot {
  name: string;
  type: TypeRef;
  column: string;
}

/**
 * Parameters for many subscribers at once: each distinct (name, type) becomes a column of a
 * relation built with `unnest` from one bound array per column, so a single statement
 * evaluates a rule for every subscriber in the batch (joined laterally, or by `sid`).
 */
export class BatchParams implements ParamSource {
  private readonly slots: Slot[] = [];
  /** The alias of the subscriber relation; its `sid` column is the subscriber's id. */
  readonly alias = Symbol('subscriber');

  param(name: string, type: TypeRef): SQL {
    const key = `${name}:${type.schema}.${type.name}`;
    let slot = this.slots.find((s) => `${s.name}:${s.type.schema}.${s.type.name}` === key);
    if (!slot) {
      slot = { name, type, column: `p${this.slots.length + 1}` };
      this.slots.push(slot);
    }
    return sql`${sql.identifier(this.alias, slot.column)}::${typeSql(type)}`;
  }

  /** `sid` of the subscriber relation. */
  get sid(): SQL {
    return sql.identifier(this.alias, 'sid');
  }

  /** The subscriber relation for these subscribers; render it after every rule that uses the params. */
  relation(subscribers: { id: string; identity: Identity }[]): SQL {
    return unnestRelation(this.alias, [
      ['sid', subscribers.map((s) => s.id)],
      ...this.slots.map((slot): [string, (string | null)[]] => [slot.column, subscribers.map((s) => coerceParam(paramValue(s.identity, slot.name), slot.type))]),
    ]);
  }
}

/**
 * `unnest($1::text[], $2::text[], …) AS alias(name1, name2, …)`: one bound text array per column,
 * a row per subscriber. The relation behind every statement that answers for many subscribers.
 */
export function unnestRelation(alias: symbol, columns: [name: string, values: (string | null)[]][]): SQL {
  const arrays = columns.map(([, values]) => sql`${sql.value(values)}::text[]`);
  const names = columns.map(([name]) => sql.identifier(name));
  return sql`unnest(${sql.join(arrays, ', ')}) AS ${sql.identifier(alias)}(${sql.join(names, ', ')})`;
}

/** A request's caller: the admin secret bypasses every rule, like a module owner. */
export interface Caller {
  admin: boolean;
  identity: Identity;
}
