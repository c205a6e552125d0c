import { scanSync } from 'libpg-query';
import { mulberry32 } from './reference.ts';

/**
 * Shared pieces of the fuzz tests: a seeded random source whose seed is printed on failure, and
 * the run count, both overridable from the environment (FUZZ_SEED, FUZZ_RUNS).
 */

export interface Rng {
  seed: number;
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  /** A new generator derived from this one's seed and `label`, so parts of a run stay independent. */
  fork(label: string | number): Rng;
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function rng(seed: number): Rng {
  const next = mulberry32(seed);
  const self: Rng = {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
    fork: (label) => rng(hash(`${seed}:${label}`)),
  };
  return self;
}

/** FUZZ_SEED (decimal or 0x…) or the default. */
export function fuzzSeed(fallback: number): number {
  const given = process.env['FUZZ_SEED'];
  if (!given) return fallback;
  const n = Number(given);
  if (!Number.isFinite(n)) throw new Error(`FUZZ_SEED must be a number, not ${given}`);
  return n >>> 0;
}

/** FUZZ_RUNS or the default: the main count of a fuzz file, from which it derives its others. */
export function fuzzRuns(fallback: number): number {
  const given = process.env['FUZZ_RUNS'];
  if (!given) return fallback;
  const n = Number(given);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`FUZZ_RUNS must be a positive number, not ${given}`);
  return Math.max(1, Math.round(n));
}

/** Shortens a text for a failure report, keeping its length visible. */
export function shown(text: string, max = 400): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

/** A token of a text, by character (UTF-16) offsets. */
export interface Token {
  start: number;
  end: number;
  text: string;
  kind: string;
  keyword: boolean;
}

/** PostgreSQL's scanner tokens with character offsets (the scanner counts bytes); words when it fails. */
export function tokenize(text: string): Token[] {
  let raw: { start: number; end: number; tokenName: string; keywordKind: number }[];
  try {
    raw = scanSync(text).tokens;
  } catch {
    raw = [];
  }
  if (raw.length === 0) {
    const out: Token[] = [];
    for (const m of text.matchAll(/\S+/g)) out.push({ start: m.index, end: m.index + m[0].length, text: m[0], kind: 'WORD', keyword: false });
    return out;
  }
  // Byte offset → character offset.
  const map: number[] = [];
  let byte = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.codePointAt(i)!;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    for (let b = 0; b < size; b++) map[byte + b] = i;
    byte += size;
    if (code > 0xffff) i++;
  }
  const at = (b: number) => (b >= byte ? text.length : (map[b] ?? text.length));
  return raw.map((t) => {
    const start = at(t.start);
    const end = at(t.end);
    return { start, end, text: text.slice(start, end), kind: t.tokenName, keyword: t.keywordKind > 0 };
  });
}
