import { sql, type SQL } from 'pg-sql2';
import type { TypeRef } from '../db/index.ts';
import { typeSql } from '../rules/index.ts';

/**
 * The helper functions native policies read the caller with, installed in the `rowgate` schema.
 * They read `rowgate.sender` / `rowgate.claims` at query time and convert a parameter's text to
 * the type it meets with the semantics of `coerceParam` (src/rules/params.ts): a value that does
 * not convert is NULL, never an error (an error inside a policy would break every query on the
 * table). Where `coerceParam` passes a text on that PostgreSQL would then refuse (numeric or
 * float overflow, year 0000, a time zone displacement out of range), the helper gives NULL.
 *
 * Every function here is a constant template of this module (never built from input); installing
 * compares each body with `pg_proc.prosrc`, so re-installing unchanged helpers rewrites nothing.
 */

export const HELPER_SCHEMA = 'rowgate';

/** Characters JavaScript's String.prototype.trim removes (WhiteSpace and LineTerminator). */
const JS_WHITESPACE = (() => {
  let s = '';
  for (let c = 0; c <= 0xffff; c++) {
    if (c >= 0xd800 && c <= 0xdfff) continue;
    const ch = String.fromCharCode(c);
    if (ch.trim() === '') s += ch;
  }
  return s;
})();

/** `JS_WHITESPACE` as a SQL string of `chr()` calls: the function bodies stay ASCII. */
const WS = [...JS_WHITESPACE].map((ch) => `pg_catalog.chr(${ch.codePointAt(0)})`).join(' || ');
/** `t.trim()` in SQL. Helpers call only pg_catalog: they run as the caller, who needs no USAGE on schema rowgate. */
const TRIM = `pg_catalog.btrim(t, ${WS})`;

interface Helper {
  name: string;
  /** Arguments as `pg_get_function_identity_arguments` prints them (names and types). */
  args: string;
  /** The CREATE OR REPLACE statement, constant text. */
  create: string;
  body: string;
}

function helper(name: string, args: string, header: string, body: string): Helper {
  const text = `CREATE OR REPLACE FUNCTION rowgate.${name}(${args}) ${header} AS $rowgate$${body}$rowgate$`;
  return { name, args, create: text, body };
}

// Claim text: what `claimText` gives for the value JSON.parse would produce: strings as they are,
// booleans as true/false, objects and arrays as JSON (jsonb's spacing and key order, where
// JSON.stringify has none and keeps the order given), and numbers as JavaScript prints them
// (Number(text) then String(): the shortest text that reads back as the same double, in
// JavaScript's choice of plain or exponent form).
const PARAM = helper(
  'param',
  'claim text',
  'RETURNS text LANGUAGE plpgsql STABLE PARALLEL SAFE SET extra_float_digits = 1',
  `
DECLARE
  claims jsonb;
  v jsonb;
  json_text text;
  d float8;
  s text;
  m text[];
  neg boolean;
  digits text;
  point integer;
  k integer;
BEGIN
  IF claim = 'sender' THEN
    RETURN NULLIF(pg_catalog.current_setting('rowgate.sender', true), '');
  END IF;
  BEGIN
    claims := pg_catalog.current_setting('rowgate.claims', true)::jsonb;
  EXCEPTION WHEN others THEN
    RETURN NULL;
  END;
  IF claims IS NULL OR pg_catalog.jsonb_typeof(claims) <> 'object' THEN
    RETURN NULL;
  END IF;
  v := claims -> claim;
  CASE pg_catalog.jsonb_typeof(v)
    WHEN 'string' THEN RETURN v #>> '{}';
    WHEN 'boolean' THEN RETURN v::text;
    WHEN 'object', 'array' THEN RETURN v::text;
    WHEN 'number' THEN json_text := v::text;
    ELSE RETURN NULL;
  END CASE;
  BEGIN
    d := json_text::float8;
  EXCEPTION WHEN others THEN
    -- Out of range: JavaScript reads an overflow as Infinity and an underflow as 0. Every JSON
    -- number jsonb holds is a valid numeric.
    IF pg_catalog.abs(json_text::numeric) >= 1 THEN
      RETURN CASE WHEN json_text LIKE '-%' THEN '-Infinity' ELSE 'Infinity' END;
    END IF;
    RETURN '0';
  END;
  IF d = 0 THEN
    RETURN '0';
  END IF;
  s := d::text;
  m := pg_catalog.regexp_match(s, '^(-?)([0-9]+)(?:\\.([0-9]+))?(?:e([-+][0-9]+))?$');
  IF m IS NULL THEN
    RETURN s;
  END IF;
  neg := m[1] = '-';
  digits := m[2] || COALESCE(m[3], '');
  point := pg_catalog.length(m[2]) + COALESCE(m[4]::integer, 0);
  WHILE pg_catalog.length(digits) > 1 AND pg_catalog.left(digits, 1) = '0' LOOP
    digits := pg_catalog.substr(digits, 2);
    point := point - 1;
  END LOOP;
  digits := pg_catalog.rtrim(digits, '0');
  k := pg_catalog.length(digits);
  IF k <= point AND point <= 21 THEN
    s := digits || pg_catalog.repeat('0', point - k);
  ELSIF 0 < point AND point <= 21 THEN
    s := pg_catalog.left(digits, point) || '.' || pg_catalog.substr(digits, point + 1);
  ELSIF -6 < point AND point <= 0 THEN
    s := '0.' || pg_catalog.repeat('0', -point) || digits;
  ELSE
    s := pg_catalog.left(digits, 1)
      || CASE WHEN k > 1 THEN '.' || pg_catalog.substr(digits, 2) ELSE '' END
      || 'e' || CASE WHEN point - 1 >= 0 THEN '+' ELSE '-' END || pg_catalog.abs(point - 1)::text;
  END IF;
  RETURN CASE WHEN neg THEN '-' || s ELSE s END;
END
`,
);

const TO_INT = helper(
  'to_int',
  't text, lo numeric, hi numeric',
  'RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE',
  `
DECLARE
  s text := ${TRIM};
  n numeric;
BEGIN
  IF s !~ '^[+-]?[0-9]+$' OR pg_catalog.length(pg_catalog.ltrim(pg_catalog.ltrim(s, '+-'), '0')) > 20 THEN
    RETURN NULL;
  END IF;
  n := s::numeric;
  RETURN CASE WHEN n BETWEEN lo AND hi THEN n::text END;
END
`,
);

const DECIMAL = `'^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]{1,5})?$'`;

const TO_NUMERIC = helper(
  'to_numeric',
  't text',
  'RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE',
  `
DECLARE
  s text := ${TRIM};
  n numeric;
BEGIN
  IF s !~ ${DECIMAL} THEN
    RETURN NULL;
  END IF;
  n := s::numeric;
  RETURN s;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
`,
);

const TO_FLOAT = helper(
  'to_float',
  't text, single boolean',
  'RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE',
  `
DECLARE
  s text := ${TRIM};
  f4 float4;
  f8 float8;
BEGIN
  IF s !~ ${DECIMAL} AND s NOT IN ('NaN', 'Infinity', '-Infinity') THEN
    RETURN NULL;
  END IF;
  IF single THEN
    f4 := s::float4;
  ELSE
    f8 := s::float8;
  END IF;
  RETURN s;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
`,
);

const TO_BOOL = helper(
  'to_bool',
  't text',
  'RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE',
  `
SELECT CASE pg_catalog.lower(${TRIM})
  WHEN 't' THEN 'true' WHEN 'true' THEN 'true' WHEN 'y' THEN 'true' WHEN 'yes' THEN 'true' WHEN 'on' THEN 'true' WHEN '1' THEN 'true'
  WHEN 'f' THEN 'false' WHEN 'false' THEN 'false' WHEN 'n' THEN 'false' WHEN 'no' THEN 'false' WHEN 'off' THEN 'false' WHEN '0' THEN 'false'
END
`,
);

const TO_UUID = helper(
  'to_uuid',
  't text',
  'RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE',
  `
SELECT CASE WHEN s ~ '^(\\{[0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}\\}|[0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7})$' THEN s END
  FROM (SELECT ${TRIM} AS s) AS x
`,
);

// Strict ISO 8601, checked against the calendar as JavaScript's Date.UTC does (years 0-99 are
// 1900-1999 there, which only matters for year 0, a year PostgreSQL refuses anyway), then read
// by PostgreSQL once: what it refuses (year 0, an offset out of range) is NULL.
const TO_DATETIME = helper(
  'to_datetime',
  't text, time_allowed boolean, target text',
  'RETURNS text LANGUAGE plpgsql STABLE PARALLEL SAFE',
  `
DECLARE
  s text := ${TRIM};
  m text[];
  y integer;
  mo integer;
  d integer;
  days integer;
  probe_d date;
  probe_t timestamp;
  probe_tz timestamptz;
BEGIN
  m := pg_catalog.regexp_match(s, '^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$');
  IF m IS NULL OR (NOT time_allowed AND m[4] IS NOT NULL) THEN
    RETURN NULL;
  END IF;
  y := m[1]::integer;
  mo := m[2]::integer;
  d := m[3]::integer;
  IF y < 100 THEN
    y := y + 1900;
  END IF;
  IF mo < 1 OR mo > 12 THEN
    RETURN NULL;
  END IF;
  days := CASE WHEN mo = 2 THEN CASE WHEN y % 4 = 0 AND (y % 100 <> 0 OR y % 400 = 0) THEN 29 ELSE 28 END
               WHEN mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END;
  IF d < 1 OR d > days THEN
    RETURN NULL;
  END IF;
  IF m[4] IS NOT NULL AND (m[4]::integer >= 24 OR m[5]::integer >= 60 OR COALESCE(m[6], '0')::integer >= 60) THEN
    RETURN NULL;
  END IF;
  IF target = 'date' THEN
    probe_d := s::date;
  ELSIF target = 'timestamp' THEN
    probe_t := s::timestamp;
  ELSE
    probe_tz := s::timestamptz;
  END IF;
  RETURN s;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
`,
);

const TO_ENUM = helper(
  'to_enum',
  't text, enum_type oid',
  'RETURNS text LANGUAGE sql STABLE PARALLEL SAFE',
  `
SELECT t FROM pg_catalog.pg_enum AS e WHERE e.enumtypid = enum_type AND e.enumlabel = t
`,
);


export const HELPERS: Helper[] = [PARAM, TO_INT, TO_NUMERIC, TO_FLOAT, TO_BOOL, TO_UUID, TO_DATETIME, TO_ENUM];

const INT_RANGE: Record<string, [string, string]> = {
  int2: ['-32768', '32767'],
  int4: ['-2147483648', '2147483647'],
  int8: ['-9223372036854775808', '9223372036854775807'],
};
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name', 'citext']);

/**
 * SQL (of type text) for parameter `name` converted for `type` as `coerceParam` converts it:
 * the text PostgreSQL accepts for `type`, or NULL. Reads the settings when it runs.
 */
export function coercedParamText(name: string, type: TypeRef): SQL {
  const raw = sql`rowgate.param(${sql.literal(name)})`;
  const range = INT_RANGE[type.name];
  if (range) return sql`rowgate.to_int(${raw}, ${sql.literal(range[0])}::numeric, ${sql.literal(range[1])}::numeric)`;
  if (TEXT_TYPES.has(type.name)) return raw;
  switch (type.name) {
    case 'numeric':
      return sql`rowgate.to_numeric(${raw})`;
    case 'float4':
      return sql`rowgate.to_float(${raw}, true)`;
    case 'float8':
      return sql`rowgate.to_float(${raw}, false)`;
    case 'bool':
      return sql`rowgate.to_bool(${raw})`;
    case 'uuid':
      return sql`rowgate.to_uuid(${raw})`;
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return sql`rowgate.to_datetime(${raw}, ${sql.literal(type.name !== 'date')}, ${sql.literal(type.name)})`;
  }
  if (type.category === 'E') return sql`rowgate.to_enum(${raw}, ${sql.literal(`${quoteIdent(type.schema)}.${quoteIdent(type.name)}`)}::regtype::oid)`;
  return sql`NULL::text`;
}

/**
 * Parameter `name` as a value of `type`, evaluated once per statement: an uncorrelated scalar
 * subquery is an InitPlan, so the settings are read and converted once, not once per row, and
 * an index on the column it meets can be used.
 */
export function settingParam(name: string, type: TypeRef): SQL {
  return sql`(SELECT (${coercedParamText(name, type)})::${typeSql(type)})`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
