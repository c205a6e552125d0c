import type { TypeRef } from '../db/index.ts';

/**
 * Parameter values cross into PostgreSQL as bound text, cast to the type they are compared
 * with. A value that does not convert must match nothing instead of raising an error (which
 * would let a caller probe types, or break a whole batch of subscribers), so conversion is
 * decided here, before binding: an inconvertible value becomes NULL, and NULL compares to nothing.
 */

const INT_RANGE: Record<string, [bigint, bigint]> = {
  int2: [-32768n, 32767n],
  int4: [-2147483648n, 2147483647n],
  int8: [-9223372036854775808n, 9223372036854775807n],
};
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name', 'citext']);
const BOOL_WORDS = new Map([
  ['t', 'true'], ['true', 'true'], ['y', 'true'], ['yes', 'true'], ['on', 'true'], ['1', 'true'],
  ['f', 'false'], ['false', 'false'], ['n', 'false'], ['no', 'false'], ['off', 'false'], ['0', 'false'],
]);

/** True when a parameter may be compared with a value of this type. */
export function isBindableType(type: TypeRef): boolean {
  return (
    type.name in INT_RANGE ||
    TEXT_TYPES.has(type.name) ||
    ['numeric', 'float4', 'float8', 'bool', 'uuid', 'date', 'timestamp', 'timestamptz'].includes(type.name) ||
    type.category === 'E'
  );
}

function isDecimal(s: string): boolean {
  // A hand check rather than Number(): Number accepts hex, binary and whitespace PostgreSQL refuses.
  let i = s[0] === '+' || s[0] === '-' ? 1 : 0;
  let digits = 0;
  let dot = false;
  for (; i < s.length; i++) {
    const c = s[i]!;
    if (c >= '0' && c <= '9') digits++;
    else if (c === '.' && !dot) dot = true;
    else if ((c === 'e' || c === 'E') && digits > 0) return isExponent(s.slice(i + 1));
    else return false;
  }
  return digits > 0;
}

function isExponent(s: string): boolean {
  const body = s[0] === '+' || s[0] === '-' ? s.slice(1) : s;
  return body.length > 0 && body.length < 7 && [...body].every((c) => c >= '0' && c <= '9');
}

/** numeric holds up to 131072 digits before the point and 16383 after it; beyond is an error. */
function fitsNumeric(s: string): boolean {
  const [mantissa = '', exp = '0'] = s.replace(/^[+-]/, '').toLowerCase().split('e');
  const [int = '', frac = ''] = mantissa.split('.');
  const e = Number(exp);
  const intDigits = int.replace(/^0+/, '').length + e;
  const fracDigits = frac.replace(/0+$/, '').length - e;
  return intDigits <= 131072 && fracDigits <= 16383;
}

/** float8 and float4 refuse overflow to infinity and underflow to zero (a denormal is fine). */
function fitsFloat(s: string, single: boolean): boolean {
  const n = single ? Math.fround(Number(s)) : Number(s);
  if (!Number.isFinite(n)) return false;
  return n !== 0 || !/[1-9]/.test(s.toLowerCase().split('e')[0] ?? '');
}

function isUuid(s: string): boolean {
  // PostgreSQL accepts 32 hex digits, optionally in braces, with a hyphen after any group of four.
  const body = s.startsWith('{') && s.endsWith('}') ? s.slice(1, -1) : s;
  let hex = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!.toLowerCase();
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) hex++;
    else if (c === '-' && hex > 0 && hex % 4 === 0 && body[i - 1] !== '-' && i < body.length - 1) continue;
    else return false;
  }
  return hex === 32;
}

const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(?:Z|[+-](\d{2})(?::?(\d{2}))?)?)?$/;

/**
 * Strict ISO 8601 (what PostgreSQL prints and every client sends), checked against the real
 * calendar, and passed on unchanged: `Date.parse` would accept "abc 2024" or roll 2024-02-30
 * over to March, turning a value that should match nothing into one that matches something.
 */
function isIsoDateTime(s: string, timeAllowed: boolean): boolean {
  const m = ISO_DATE_TIME.exec(s);
  if (!m || (!timeAllowed && m[4] !== undefined)) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  // There is no year 0; offsets beyond ±15:59 are refused by PostgreSQL.
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > days) return false;
  if (Number(m[7] ?? 0) > 15 || Number(m[8] ?? 0) > 59) return false;
  return m[4] === undefined || (Number(m[4]) < 24 && Number(m[5]) < 60 && Number(m[6] ?? 0) < 60);
}

/** The claim as text: scalars as PostgreSQL would print them, objects and arrays as JSON. */
export function claimText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  // JSON.stringify gives undefined for functions and symbols: those match nothing.
  return JSON.stringify(value) ?? null;
}

/** Converts a claim to the text PostgreSQL accepts for `type`, or null when it does not convert. */
export function coerceParam(value: unknown, type: TypeRef): string | null {
  const text = claimText(value);
  // PostgreSQL text cannot hold NUL: such a value can equal nothing stored. A lone surrogate would
  // reach PostgreSQL as U+FFFD and so equal a different identity: it matches nothing either.
  if (text === null || text.includes('\u0000') || /\p{Cs}/u.test(text)) return null;
  const range = INT_RANGE[type.name];
  if (range) {
    const s = text.trim();
    if (!/^[+-]?\d+$/.test(s)) return null;
    const n = BigInt(s);
    return n >= range[0] && n <= range[1] ? n.toString() : null;
  }
  if (TEXT_TYPES.has(type.name)) return text;
  switch (type.name) {
    case 'numeric': {
      const s = text.trim();
      return isDecimal(s) && fitsNumeric(s) ? s : null;
    }
    case 'float4':
    case 'float8': {
      const s = text.trim();
      if (['NaN', 'Infinity', '-Infinity'].includes(s)) return s;
      return isDecimal(s) && fitsFloat(s, type.name === 'float4') ? s : null;
    }
    case 'bool':
      return BOOL_WORDS.get(text.trim().toLowerCase()) ?? null;
    case 'uuid':
      return isUuid(text.trim()) ? text.trim() : null;
    case 'date':
      return isIsoDateTime(text.trim(), false) ? text.trim() : null;
    case 'timestamp':
    case 'timestamptz':
      return isIsoDateTime(text.trim(), true) ? text.trim() : null;
  }
  if (type.category === 'E') return type.enumLabels.includes(text) ? text : null;
  return null;
}
