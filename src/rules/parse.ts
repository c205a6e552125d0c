import { loadModule, parseSync, scanSync, type ScanToken } from 'libpg-query';
import type { Node, ParseResult } from 'libpg-query';
import { RuleError } from './errors.ts';

let loaded: Promise<void> | null = null;

/** libpg-query is WebAssembly: it must be loaded once before the sync API can be used. */
export function loadParser(): Promise<void> {
  return (loaded ??= loadModule());
}

export interface ParsedRule {
  /** The statement as PostgreSQL's parser produced it, with `:name` turned into `$n`. */
  stmt: Node;
  /** `$n` → the name written as `:name` (index n - 1). */
  paramNames: string[];
  /** Character offset in the rule as written of each name's first `:name` (index n - 1). */
  paramPositions: number[];
  /** Maps a byte offset in the rewritten text (AST `location`) to a character offset in the rule as written. */
  position(location: number | undefined): number | null;
  /** Character offset of the rule's first token (after comments and whitespace). */
  start: number;
  /** The first token of the rule, as written (for messages about the statement). */
  firstWord: string;
  /**
   * Character offset of the first keyword token spelled like one of `words`, or null: for clauses
   * the AST records no location for (UNION, DISTINCT, WITH, VALUES, INTO, FOR UPDATE).
   */
  keyword(...words: string[]): number | null;
}

interface Edit {
  origStart: number;
  origEnd: number;
  newStart: number;
  newEnd: number;
}

/** Converts byte offsets of a string's UTF-8 encoding to character (UTF-16) offsets. */
function byteToCharIndex(text: string): (byte: number) => number {
  const table: number[] = [];
  let byte = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.codePointAt(i) ?? 0;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    for (let b = 0; b < size; b++) table[byte + b] = i;
    byte += size;
    if (code >= 0x10000) i++; // the low surrogate belongs to the same code point
  }
  return (b) => (b >= byte ? text.length : (table[b] ?? text.length));
}

/** The UTF-16 index of the character `points` code points into `text` (clamped to its length). */
function codePointsToIndex(text: string, points: number): number {
  let i = 0;
  for (let n = 0; n < points && i < text.length; n++) i += (text.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
  return Math.min(i, text.length);
}

function scan(text: string): ScanToken[] {
  try {
    return scanSync(text).tokens;
  } catch {
    // The scanner fails on e.g. an unterminated string; the parser reports that properly.
    return [];
  }
}

const isWord = (t: ScanToken): boolean => t.tokenName === 'IDENT' || t.keywordKind > 0;

/**
 * Turns `:name` parameters, which are not PostgreSQL syntax, into `$n` using PostgreSQL's own
 * scanner, so `::casts`, `':name'` inside strings and comments stay untouched.
 */
function rewriteParams(text: string, tokens: ScanToken[]): { text: string; names: string[]; positions: number[]; edits: Edit[] } {
  const toChar = byteToCharIndex(text);
  const names: string[] = [];
  const positions: number[] = [];
  const edits: Edit[] = [];
  let out = '';
  let cursor = 0;
  for (let i = 0; i < tokens.length; i++) {
    const colon = tokens[i]!;
    if (colon.tokenName === 'PARAM') {
      throw new RuleError(
        `positional parameter ${colon.text} is not allowed in a rule`,
        toChar(colon.start),
        'Name what the parameter is: `:sender` is the caller, `:claim` is a claim of the caller\'s token.',
      );
    }
    const name = tokens[i + 1];
    if (colon.text !== ':' || !name || name.start !== colon.end || !isWord(name)) continue;
    const start = toChar(colon.start);
    let n = names.indexOf(name.text);
    if (n < 0) {
      n = names.push(name.text) - 1;
      positions.push(start);
    }
    const end = toChar(name.end);
    out += text.slice(cursor, start);
    const replacement = `$${n + 1}`;
    edits.push({ origStart: start, origEnd: end, newStart: out.length, newEnd: out.length + replacement.length });
    out += replacement;
    cursor = end;
    i++;
  }
  out += text.slice(cursor);
  return { text: out, names, positions, edits };
}

function mapBack(edits: Edit[], pos: number): number {
  let delta = 0;
  for (const e of edits) {
    if (pos < e.newStart) break;
    if (pos < e.newEnd) return e.origStart;
    delta = e.origEnd - e.newEnd;
  }
  return pos + delta;
}

/**
 * The seed writes `JOIN admin WHERE …`; PostgreSQL has no such join, so say what to write instead.
 * `condition` is what the rule's own WHERE says (null when there is none), for the ON spelling of the fix.
 */
function joinWithoutOn(text: string, tokens: ScanToken[], errorByte: number): { table: string; left: string; condition: string | null } | null {
  const at = tokens.findIndex((t) => t.start >= errorByte);
  const idx = at < 0 ? tokens.length : at;
  const next = tokens[idx];
  if (next && next.text.toUpperCase() !== 'WHERE') return null;
  for (const back of [2, 3]) {
    const joinAt = idx - back;
    const join = tokens[joinAt];
    if (join?.text.toUpperCase() === 'JOIN' && tokens.slice(joinAt + 1, idx).every(isWord)) {
      // The table the join starts from, for the `FROM account, admin` spelling of the fix.
      let from = joinAt - 1;
      while (from >= 0 && tokens[from]!.text.toUpperCase() !== 'FROM') from--;
      const left = tokens[from + 1];
      // Token offsets are bytes of the UTF-8 text.
      const condition = next ? Buffer.from(text).subarray(next.end).toString().replace(/\s+/g, ' ').trim() : '';
      return { table: tokens[joinAt + 1]!.text, left: from >= 0 && left && isWord(left) ? left.text : 'a', condition: condition || null };
    }
  }
  return null;
}

/** Parses one rule with the real PostgreSQL parser. Throws RuleError with a position on any syntax error. */
export function parseRule(text: string): ParsedRule {
  // The parser reads a C string: it would stop at a NUL and compile only the text before it, so
  // `… WHERE public\u0000 AND owner = :sender` would silently lose its second condition.
  const nul = text.indexOf('\u0000');
  if (nul >= 0) throw new RuleError('a rule cannot contain a NUL character (\\u0000)', nul, 'Remove it: PostgreSQL would read the rule only up to it.');
  const tokens = scan(text);
  const rewritten = rewriteParams(text, tokens);
  const toChar = byteToCharIndex(rewritten.text);
  let result: ParseResult;
  try {
    result = parseSync(rewritten.text);
  } catch (err) {
    if (err instanceof RangeError) {
      // The parse tree of e.g. `1 + 1 + … + 1` is deeper than the stack that turns it into JSON.
      throw new RuleError('the rule is too deeply nested (or too long) to parse', null, 'Simplify the condition, e.g. list several rules instead of one long expression.');
    }
    const details = (err as { sqlDetails?: { message: string; cursorPosition: number } }).sqlDetails;
    const message = details?.message ?? (err instanceof Error ? err.message : String(err));
    // cursorPosition is a 0-based offset in code points (PostgreSQL counts characters) into the rewritten text.
    const position = details ? mapBack(rewritten.edits, codePointsToIndex(rewritten.text, details.cursorPosition)) : null;
    const errorByte = details ? Buffer.byteLength(text.slice(0, position ?? 0)) : -1;
    const join = details ? joinWithoutOn(text, tokens, errorByte) : null;
    if (join) {
      const { table, left, condition } = join;
      throw new RuleError(
        `a JOIN needs a join condition: "JOIN ${table}${condition === null ? '' : ' WHERE …'}" is not PostgreSQL`,
        position,
        `Write the condition with ON (\`JOIN ${table} ON ${condition ?? `<a condition on ${table}>`}\`), or join without one: \`CROSS JOIN ${table}\` or \`FROM ${left}, ${table}\`, and keep the WHERE.`,
      );
    }
    throw new RuleError(message, position, 'A rule is one PostgreSQL SELECT statement; fix the syntax at the caret.');
  }
  const stmts = result.stmts ?? [];
  if (stmts.length !== 1 || !stmts[0]?.stmt) {
    const second = stmts[1]?.stmt_location;
    throw new RuleError(
      stmts.length === 0 ? 'the rule is empty' : 'a rule is exactly one statement',
      second !== undefined ? toChar(second) : null,
      'Write one SELECT per rule; list several rules to OR them.',
    );
  }
  const origToChar = byteToCharIndex(text);
  const first = tokens.find((t) => t.tokenName !== 'SQL_COMMENT' && t.tokenName !== 'C_COMMENT');
  return {
    stmt: stmts[0].stmt,
    paramNames: rewritten.names,
    paramPositions: rewritten.positions,
    position: (location) => (location === undefined || location < 0 ? null : mapBack(rewritten.edits, toChar(location))),
    start: first ? origToChar(first.start) : 0,
    firstWord: first?.text ?? '',
    keyword: (...words) => {
      const upper = words.map((w) => w.toUpperCase());
      const found = tokens.find((t) => t.keywordKind > 0 && upper.includes(t.text.toUpperCase()));
      return found ? origToChar(found.start) : null;
    },
  };
}
