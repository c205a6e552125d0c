import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configJsonSchema, parseConfig } from '../src/config/index.ts';

// The config's JSON Schema (for editors) and its reference (docs/configuration.md) follow the zod
// schema that startup validates with: a key added there without both fails here.
const committed = JSON.parse(readFileSync(new URL('../rowgate.config.schema.json', import.meta.url), 'utf8')) as unknown;
const reference = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');

interface Node { properties?: Record<string, Node>; additionalProperties?: Node | boolean; anyOf?: Node[] }

/** Every leaf key path of the schema: `auth.jwt.secret`, `tables.*.select`, … (objects are sections). */
function paths(node: Node, prefix: string[] = []): string[][] {
  const children = Object.entries(node.properties ?? {}).filter(([key]) => key !== '$schema');
  const map = typeof node.additionalProperties === 'object' && node.additionalProperties.properties ? node.additionalProperties : null;
  if (children.length === 0 && !map) return prefix.length ? [prefix] : [];
  return [...children.flatMap(([key, child]) => paths(child, [...prefix, key])), ...(map ? paths(map, [...prefix, '*']) : [])];
}

describe('config schema', () => {
  it('rowgate.config.schema.json is what the zod schema gives (npm run config-schema)', () => {
    expect(committed).toEqual(configJsonSchema());
  });

  it('docs/configuration.md names every key', () => {
    const all = paths(configJsonSchema() as Node);
    expect(all.length).toBeGreaterThan(30);
    // A key is named in its section's table as `key`, `parent.key` (auth's `jwt.secret`), or with
    // a placeholder for a name the user chooses (`computedFields.<field>.function`).
    const missing = all.filter((p) => {
      const tail = (p.length === 1 ? p : p[0] === 'tables' ? p.slice(2) : p.slice(1)).map((k) => (k === '*' ? '<field>' : k));
      const names = [p.join('.'), ...tail.map((_, i) => tail.slice(i).join('.'))];
      return !names.some((n) => reference.includes(`\`${n}\``));
    });
    expect(missing.map((p) => p.join('.'))).toEqual([]);
  });

  it('accepts "$schema" for editors, and the demo config names it', () => {
    const demo = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    expect(demo['$schema']).toBe('../rowgate.config.schema.json');
    expect(() => parseConfig(demo, {})).not.toThrow();
  });
});
