import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Issue 14: the README once sent readers to ../shared/DESIGN.md, which a clone does not have. The
// README, docs/ and the folder READMEs may point only at files the repository carries: every
// Markdown link and every backticked path of a file in it (`docs/api.md`, `test/x.test.ts`).
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOP = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const FOLDER_READMES = ['src', 'src/db', 'test', 'bench'].flatMap((dir) => {
  const path = join(ROOT, dir);
  const found: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (entry.isDirectory() && entry.name !== 'node_modules') walk(join(d, entry.name));
      else if (entry.name === 'README.md') found.push(relative(ROOT, join(d, entry.name)));
    }
  };
  if (existsSync(path)) walk(path);
  return found;
});
const FILES = [...new Set([...TOP, ...FOLDER_READMES])];
// A path as the docs write one: starts at a top folder of the repository, ends in a file extension.
const PATH = /^(?:\.\/)?(?:docs|src|test|bench|demo|bin|\.ci)\/[\w./-]*\.(?:md|ts|mjs|json|sql|svg|sh)$/;

function references(file: string): { target: string; from: string }[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const out: { target: string; from: string }[] = [];
  for (const m of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) if (!/^[a-z]+:/.test(m[1]!)) out.push({ target: resolve(ROOT, dirname(file), m[1]!), from: m[1]! });
  // Backticked paths are written from the repository's root, whichever file names them.
  for (const m of text.matchAll(/`([^`\s]+)`/g)) if (PATH.test(m[1]!)) out.push({ target: resolve(ROOT, m[1]!), from: m[1]! });
  return out;
}

describe('the documentation points only at what the repository carries', () => {
  it.each(FILES)('%s', (file) => {
    const refs = references(file);
    const outside = refs.filter((r) => relative(ROOT, r.target).startsWith('..')).map((r) => r.from);
    const missing = refs.filter((r) => !existsSync(r.target)).map((r) => r.from);
    expect(outside, 'paths outside the repository').toEqual([]);
    expect(missing, 'paths that do not exist').toEqual([]);
  });

  it('finds the references it checks', () => {
    expect(references('README.md').map((r) => r.from)).toContain('docs/configuration.md');
  });
});
