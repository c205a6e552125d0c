import { GraphQLObjectType, GraphQLSchema, GraphQLString, type GraphQLFieldConfigMap } from 'graphql';
import { afterAll } from 'vitest';
import { parseConfig, type Config } from '../../src/config/index.ts';
import { connect, type Sql } from '../../src/db/index.ts';
import type { GraphQLContext } from '../../src/schema/context.ts';
import { createAuthenticator } from '../../src/server/auth.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/server/http.ts';
import { createLogger, type Logger } from '../../src/server/log.ts';

/**
 * A gateway around a tiny hand-written schema, so the server's behaviour (auth, limits,
 * masking, routes) is tested apart from the catalog-built schema.
 */

export const SECRET = 'server-test-secret-0123456789abcdef0123';

export interface TinyState {
  /** Resolver calls so far, to prove that refused requests ran no GraphQL. */
  calls: number;
  /** `slow` reports here that it started, then waits for `release`. */
  slowStarted?: () => void;
  release?: Promise<void>;
}

/** `Node.child` nests without end, for depth limits. */
const nodeType: GraphQLObjectType = new GraphQLObjectType({
  name: 'Node',
  fields: () => ({
    name: { type: GraphQLString, resolve: () => 'node' },
    child: { type: nodeType, resolve: () => ({}) },
  }),
});

export function tinySchema(state: TinyState, sql: Sql | null = null): GraphQLSchema {
  const fields: GraphQLFieldConfigMap<unknown, GraphQLContext> = {
    whoami: {
      type: GraphQLString,
      resolve: (_root, _args, ctx) => {
        state.calls += 1;
        return ctx.caller.admin ? `admin:${ctx.caller.identity.sender ?? ''}` : ctx.caller.identity.sender;
      },
    },
    claim: {
      type: GraphQLString,
      args: { name: { type: GraphQLString } },
      resolve: (_root, args: { name?: string }, ctx) => JSON.stringify(ctx.caller.identity.claims[args.name ?? ''] ?? null),
    },
    boom: {
      type: GraphQLString,
      resolve: () => {
        throw new Error('relation "secret_internal_table" exploded at 10.0.0.7');
      },
    },
    database: {
      type: GraphQLString,
      resolve: async () => {
        if (!sql) throw new Error('no database in this test');
        await sql`SELECT * FROM secret_missing_table`;
        return 'unreachable';
      },
    },
    node: { type: nodeType, resolve: () => ({}) },
    slow: {
      type: GraphQLString,
      resolve: async () => {
        state.slowStarted?.();
        await state.release;
        return 'done';
      },
    },
  };
  return new GraphQLSchema({ query: new GraphQLObjectType({ name: 'Query', fields }) });
}

export interface TinyGateway {
  url: string;
  /** The separate metrics listener's /metrics, when `metrics.port` is set. */
  metricsUrl?: string;
  base: string;
  config: Config;
  gateway: Gateway;
  state: TinyState;
  internalErrors: unknown[];
  post(body: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: GraphQLBody }>;
}

export interface GraphQLBody {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/**
 * Starts a gateway with `config` (merged over a config with the test secret and no tables) on a
 * free port; closed after the file's tests. The pool is `sql`, else one for `databaseUrl`, else
 * one that is never used. The log is silent unless `logger` is given.
 */
export async function startTiny(
  config: Record<string, unknown> = {},
  options: { sql?: Sql; databaseUrl?: string; readiness?: GatewayOptions['readiness']; graphiql?: GatewayOptions['graphiql']; logger?: Logger; logInternalError?: null; tracerProvider?: GatewayOptions['tracerProvider'] } = {},
): Promise<TinyGateway> {
  const auth = (config['auth'] ?? {}) as Record<string, unknown>;
  const jwt = (auth['jwt'] ?? {}) as Record<string, unknown>;
  const parsed = parseConfig({ tables: {}, ...config, auth: { ...auth, jwt: { secret: SECRET, ...jwt } } }, {});
  // A pool connects on first use, so one for the test database can be made before it exists.
  const ownSql = options.sql ? null : connect(options.databaseUrl ?? 'postgres://unused:unused@127.0.0.1:1/unused', { max: 2 });
  const sql = options.sql ?? (ownSql as Sql);
  const state: TinyState = { calls: 0 };
  const internalErrors: unknown[] = [];
  const gateway = createGateway({
    config: parsed,
    schema: tinySchema(state, options.sql || options.databaseUrl ? sql : null),
    sql,
    authenticator: createAuthenticator(parsed.auth),
    // null: the gateway's default (the logger) instead of collecting into `internalErrors`.
    ...(options.logInternalError === null ? {} : { logInternalError: (err: unknown) => internalErrors.push(err) }),
    logger: options.logger ?? createLogger('silent'),
    ...(options.readiness ? { readiness: options.readiness } : {}),
    ...(options.graphiql ? { graphiql: options.graphiql } : {}),
    ...(options.tracerProvider ? { tracerProvider: options.tracerProvider } : {}),
  });
  const { url, metricsUrl } = await gateway.listen(0);
  afterAll(async () => {
    await gateway.close();
    await ownSql?.end({ timeout: 1 });
  });
  return {
    url,
    ...(metricsUrl ? { metricsUrl } : {}),
    base: url.replace(/\/graphql$/, ''),
    config: parsed,
    gateway,
    state,
    internalErrors,
    async post(body, headers = {}) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      return { status: res.status, headers: res.headers, body: (await res.json()) as GraphQLBody };
    },
  };
}

/** The `extensions.code` of each error, in order. */
export function codes(body: GraphQLBody): unknown[] {
  return (body.errors ?? []).map((e) => e.extensions?.['code']);
}
