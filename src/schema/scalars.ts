import { GraphQLError, GraphQLScalarType, Kind, type ValueNode } from 'graphql';
import type { Catalog, TypeRef } from '../db/index.ts';
import { coerceParam } from '../rules/index.ts';

/**
 * PostgreSQL types as GraphQL scalars, named as Hasura names them so frontends' variable
 * definitions (`$id: uuid!`, `$n: bigint`) work unchanged. bigint and numeric travel as strings:
 * JSON numbers would lose precision past 2^53.
 */

const builtin = (name: string): TypeRef => ({ schema: 'pg_catalog', name, category: '', enumLabels: [] });

function badInput(scalar: string, value: unknown): GraphQLError {
  const shown = typeof value === 'string' ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value) : typeof value;
  return new GraphQLError(`${shown} is not a valid ${scalar}`, { extensions: { code: 'BAD_USER_INPUT' } });
}

function literalValue(node: ValueNode): unknown {
  switch (node.kind) {
    case Kind.STRING:
    case Kind.ENUM:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return node.value;
    case Kind.BOOLEAN:
      return node.value;
    case Kind.NULL:
      return null;
    case Kind.LIST:
      return node.values.map(literalValue);
    case Kind.OBJECT:
      return Object.fromEntries(node.fields.map((f) => [f.name.value, literalValue(f.value)]));
    default:
      return undefined;
  }
}

/** A scalar whose values are validated the way the rule parameters are, then kept as PostgreSQL text. */
function textScalar(name: string, pgType: string, description: string): GraphQLScalarType {
  const parse = (value: unknown): string => {
    if (typeof value !== 'string' && typeof value !== 'number') throw badInput(name, value);
    const text = coerceParam(value, builtin(pgType));
    if (text === null) throw badInput(name, value);
    return text;
  };
  return new GraphQLScalarType({
    name,
    description,
    serialize: (v) => (typeof v === 'string' ? v : String(v)),
    parseValue: parse,
    parseLiteral: (node) => parse(literalValue(node)),
  });
}

function jsonScalar(name: string): GraphQLScalarType {
  return new GraphQLScalarType({
    name,
    description: `PostgreSQL ${name}: any JSON value`,
    serialize: (v) => v,
    parseValue: (v) => v,
    parseLiteral: (node, variables) => {
      if (node.kind === Kind.VARIABLE) return variables?.[node.name.value];
      return literalValue(node);
    },
  });
}

export const SCALARS: GraphQLScalarType[] = [
  textScalar('bigint', 'int8', 'PostgreSQL bigint, as a string so no digit is lost'),
  textScalar('numeric', 'numeric', 'PostgreSQL numeric, as a string so no digit is lost'),
  textScalar('uuid', 'uuid', 'PostgreSQL uuid'),
  textScalar('timestamptz', 'timestamptz', 'PostgreSQL timestamp with time zone, ISO 8601'),
  textScalar('timestamp', 'timestamp', 'PostgreSQL timestamp without time zone, ISO 8601'),
  textScalar('date', 'date', 'PostgreSQL date, YYYY-MM-DD'),
  jsonScalar('jsonb'),
  jsonScalar('json'),
];

const BY_PG: Record<string, string> = {
  int2: 'Int', int4: 'Int', int8: 'bigint', numeric: 'numeric', float4: 'Float', float8: 'Float',
  bool: 'Boolean', text: 'String', varchar: 'String', bpchar: 'String', citext: 'String', name: 'String',
  uuid: 'uuid', timestamptz: 'timestamptz', timestamp: 'timestamp', date: 'date', json: 'json', jsonb: 'jsonb',
};

export interface ScalarInfo {
  /** GraphQL scalar of the value (of the element, for arrays). */
  name: string;
  list: boolean;
  /** The value is sent to GraphQL as `::text` (bigint, numeric, and types GraphQL has no scalar for). */
  asText: boolean;
  /** Comparable with < and >, so it gets _gt/_lt filters, min/max aggregates and ordering. */
  ordered: boolean;
  /** sum/avg make sense. */
  numeric: boolean;
}

export function scalarFor(type: TypeRef, catalog: Catalog): ScalarInfo {
  if (type.category === 'A' && type.name.startsWith('_')) {
    const element = catalog.types.get(type.name.slice(1));
    const inner = element ? scalarFor(element, catalog) : { name: 'String', asText: true };
    return { name: inner.name, list: true, asText: inner.asText, ordered: false, numeric: false };
  }
  const name = BY_PG[type.name] ?? 'String';
  const asText = !(type.name in BY_PG) || name === 'bigint' || name === 'numeric';
  const numeric = ['Int', 'bigint', 'numeric', 'Float'].includes(name);
  const ordered = numeric || ['String', 'uuid', 'timestamptz', 'timestamp', 'date'].includes(name) || type.category === 'E';
  return { name, list: false, asText, ordered, numeric };
}
