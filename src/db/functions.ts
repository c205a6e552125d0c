import type { Catalog, FunctionInfo } from './catalog.ts';

/**
 * The function a computed field of `table` names, or why it cannot be one: a function of the
 * schema taking the table's row (and, with `session`, the caller's claims as json or jsonb),
 * returning one value of a scalar type, and not volatile (it runs once per row read; a query must
 * not write).
 */
export function computedFunction(catalog: Catalog, table: string, name: string, session: boolean): FunctionInfo | string {
  const candidates = (catalog.functions.get(name) ?? []).filter((f) => f.schema === catalog.schema && f.kind === 'f');
  if (candidates.length === 0) return `no function "${name}" in schema "${catalog.schema}"`;
  const args = session ? 2 : 1;
  const fn = candidates.find((f) => f.argTypes.length === args && f.argTypes[0] === table && (!session || ['json', 'jsonb'].includes(f.argTypes[1]!)));
  if (!fn) return `"${name}" must take (${table}${session ? ', json or jsonb' : ''}); it takes ${candidates.map((f) => `(${f.argTypes.join(', ')})`).join(' or ')}`;
  if (fn.volatility === 'v') return `"${name}" is VOLATILE; declare it STABLE or IMMUTABLE (a query must not write)`;
  if (fn.returnsSet) return `"${name}" returns a set; a computed field returns one value`;
  if (!catalog.types.has(fn.returns.name) || ['c', 'p'].includes(fn.returns.category)) return `"${name}" returns ${fn.returns.name}, which is not a scalar type`;
  return fn;
}

/**
 * A function exposed as a root query field, or why it cannot be: one function of that name in the
 * schema, STABLE or IMMUTABLE, returning SETOF a listed table, every argument named and of a scalar
 * type (its GraphQL `args`).
 */
export function rootFunction(catalog: Catalog, name: string, listed: Set<string>): FunctionInfo | string {
  const candidates = (catalog.functions.get(name) ?? []).filter((f) => f.schema === catalog.schema && f.kind === 'f');
  if (candidates.length === 0) return `no function "${name}" in schema "${catalog.schema}"`;
  if (candidates.length > 1) return `"${name}" is overloaded; expose one function per name`;
  const fn = candidates[0]!;
  if (fn.volatility === 'v') return `"${name}" is VOLATILE; declare it STABLE or IMMUTABLE (a query must not write)`;
  if (!fn.returnsSet || !listed.has(fn.returns.name)) return `"${name}" must return SETOF a listed table; it returns ${fn.returnsSet ? 'SETOF ' : ''}${fn.returns.name}`;
  const unnamed = fn.argNames.findIndex((n) => !/^[_a-zA-Z][_a-zA-Z0-9]*$/.test(n));
  if (unnamed >= 0) return `argument ${unnamed + 1} of "${name}" needs a name (it becomes a field of args)`;
  const bad = fn.argTypes.find((t) => !catalog.types.has(t));
  if (bad) return `"${name}" takes ${bad}, which is not a scalar type`;
  return fn;
}
