import { afterAll } from 'vitest';
import { parseConfig, type Config } from '../../src/config/index.ts';
import { connect, type Sql } from '../../src/db/index.ts';
import { buildSchema } from '../../src/schema/index.ts';
import { createAuthenticator } from '../../src/server/auth.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/server/http.ts';
import { createLogger } from '../../src/server/log.ts';
import { signToken } from '../../src/server/token.ts';
import type { TestDatabase } from './db.ts';
import { compile } from './rules.ts';

export const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
export const ADMIN_SECRET = 'test-admin-secret';

export interface GraphQLResponse {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

export interface TestGateway {
  url: string;
  config: Config;
  gateway: Gateway;
  /** The gateway's own pool (with `pool: 1`, one connection: its session state can be read). */
  sql: Sql;
  token(sender: string, claims?: Record<string, unknown>): Promise<string>;
  /** POSTs a GraphQL request as `who`: a sender name, `admin` for the admin secret, or null for none. */
  gql(who: string | null, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse>;
}

/** A real gateway on a free port over the test database, configured with `config` (tables, limits …); `options` go to createGateway. */
export async function startGateway(db: TestDatabase, config: Record<string, unknown>, pool = 5, options: Pick<GatewayOptions, 'passThrough'> = {}): Promise<TestGateway> {
  const parsed = parseConfig({ auth: { jwt: { secret: SECRET }, adminSecret: ADMIN_SECRET }, ...config }, {});
  const rules = await compile(db, config['tables'] as Record<string, unknown>, config['functions'] ? { functions: config['functions'] } : {});
  // The gateway's own pool, with the statement timeout `rowgate serve` would set.
  const sql = connect(db.url, { max: pool }, { statementTimeoutMs: parsed.limits.statementTimeoutMs });
  const schema = buildSchema({ config: parsed, catalog: await db.catalog(), rules, sql });
  const gateway = createGateway({ config: parsed, schema, sql, authenticator: createAuthenticator(parsed.auth), logInternalError: () => {}, logger: createLogger('silent'), ...options });
  const { url } = await gateway.listen(0);
  afterAll(async () => {
    await gateway.close();
    await sql.end({ timeout: 5 });
  });
  const token = (sender: string, claims: Record<string, unknown> = {}) => signToken(parsed, { sender, claims, expires: '1h' });
  return {
    url,
    config: parsed,
    gateway,
    sql,
    token,
    async gql(who, query, variables) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (who === 'admin') headers['x-rowgate-admin-secret'] = ADMIN_SECRET;
      else if (who !== null) headers['authorization'] = `Bearer ${await token(who)}`;
      const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
      return (await res.json()) as GraphQLResponse;
    },
  };
}
