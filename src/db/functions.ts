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
