import { badInput } from './scope.ts';

/**
 * A json column's `path` argument (Hasura's "JSON select path") as the keys of PostgreSQL's `#>`:
 * `$.a.b[0]`, `a.b[0]`, `$["a b"]`, `['a'][2]`. It is parsed here, into text bound as one text[]
 * parameter, so a bad path is refused before any row is read and `#>` gives NULL, never an error,
 * for a path a row's value lacks.
 */
export function jsonPath(path: unknown, what: string): string[] {
  if (typeof path !== 'string') throw badInput(`${what}: path must be a string`);
  const bad = (why: string) => badInput(`${what}: invalid JSON path ${JSON.stringify(path)}: ${why}`);
  const keys: string[] = [];
  let i = path.startsWith('$') ? 1 : 0;
  let first = true;
  while (i < path.length) {
    const c = path[i]!;
    if (c === '[') {
      const quote = path[i + 1];
      if (quote === '"' || quote === "'") {
        const end = path.indexOf(quote, i + 2);
        if (end < 0 || path[end + 1] !== ']') throw bad('an unterminated quoted key');
        keys.push(path.slice(i + 2, end));
        i = end + 2;
      } else {
        const m = /^\[(\d+)\]/.exec(path.slice(i));
        if (!m) throw bad(`expected an index or a quoted key at ${i + 1}`);
        keys.push(m[1]!);
        i += m[0].length;
      }
    } else {
      if (c === '.') i++;
      else if (!first || path.startsWith('$')) throw bad(`expected "." or "[" at ${i + 1}`);
      const m = /^[^.[\]]+/.exec(path.slice(i));
      if (!m) throw bad(`an empty key at ${i + 1}`);
      keys.push(m[0]);
      i += m[0].length;
    }
    first = false;
  }
  if (keys.some((k) => k.includes('\u0000'))) throw bad('a key holds NUL');
  return keys;
}
