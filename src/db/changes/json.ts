// Row images are jsonb. JSON.parse turns every number into a double, which silently changes a
// bigint key such as 9007199254740993 or a numeric such as 1.50. Numbers whose text a double
// does not reproduce exactly are kept as their decimal text instead, so nothing is lost; the
// consumer shapes values by column type anyway (bigint and numeric travel as strings in GraphQL).

// A JSON string (skipped as a whole, so digits inside strings are never touched) or a number.
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

export function parseJsonExact(text: string): unknown {
  const exact = text.replace(TOKEN, (tok) => (tok.charCodeAt(0) === 34 || String(Number(tok)) === tok ? tok : `"${tok}"`));
  return JSON.parse(exact) as unknown;
}

export function parseJsonObject(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  const value = parseJsonExact(text);
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}
