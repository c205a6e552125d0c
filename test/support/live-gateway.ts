import { parseConfig, type Config } from '../../src/config/index.ts';
import { capturedTables } from '../../src/cli/capture.ts';
import { installCapture, startChangeFeed, type ChangeFeed } from '../../src/db/changes/index.ts';
import { connect, LIVE_APPLICATION_NAME } from '../../src/db/index.ts';
import { buildApi } from '../../src/schema/index.ts';
import type { LiveEngine } from '../../src/live/index.ts';
import { createAuthenticator } from '../../src/server/auth.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/server/http.ts';
import { createLogger } from '../../src/server/log.ts';
import { signToken } from '../../src/server/token.ts';
import { testCapture, type TestDatabase } from './db.ts';
import type { GraphQLResponse } from './gateway.ts';
import { compile } from './rules.ts';
import { wsClient, type TestClient } from './transports.ts';

export const LIVE_SECRET = 'live-test-secret-0123456789abcdef0123456789';

export interface LiveGateway {
  url: string;
  wsUrl: string;
  config: Config;
  gateway: Gateway;
  live: LiveEngine;
  feed: ChangeFeed;
  token(sender: string): Promise<string>;
  gql(sender: string, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse>;
  ws(sender: string): Promise<TestClient>;
  /** Stops the gateway, its live engine and its feed (a restart is a new startLiveGateway). */
  stop(): Promise<void>;
}

/** A complete gateway as `rowgate serve` assembles it: capture, change feed, live engine, HTTP + WS. */
export async function startLiveGateway(
  db: TestDatabase,
  config: Record<string, unknown>,
  port = 0,
  options: Pick<GatewayOptions, 'onSlowSocket'> & { queryPoolSize?: number } = {},
): Promise<LiveGateway> {
  const parsed = parseConfig({ auth: { jwt: { secret: LIVE_SECRET } }, ...config, limits: { maxSubscriptionsPerSocket: 1000, ...((config['limits'] as object) ?? {}) } }, {});
  const rules = await compile(db, parsed.tables as Record<string, unknown>);
  const catalog = await db.catalog();
  // What `rowgate serve` captures: the listed tables, the tables rules read, the tables views read.
  await installCapture(db.sql, 'public', capturedTables(rules, catalog, Object.keys(parsed.tables)).tables, testCapture());
  // The gateway's own pools, as in `rowgate serve`: tests can kill their connections and keep theirs.
  const sql = connect(db.url, { max: options.queryPoolSize ?? 10 });
  const livePool = connect(db.url, { max: parsed.database.livePoolSize }, { applicationName: LIVE_APPLICATION_NAME });
  const feed = await startChangeFeed({ url: db.url, sql: livePool, schema: 'public', retentionHours: 24, pollMs: 100 });
  const { schema, live } = buildApi({ config: parsed, catalog, rules, sql, liveSql: livePool, changes: feed });
  const gatewayOptions = options.onSlowSocket ? { onSlowSocket: options.onSlowSocket } : {};
  const gateway = createGateway({ config: parsed, schema, sql, authenticator: createAuthenticator(parsed.auth), logInternalError: () => {}, logger: createLogger('silent'), live, feed, readiness: [async () => feed.ready()], ...gatewayOptions });
  const { url } = await gateway.listen(port);
  const wsUrl = url.replace(/^http/, 'ws');
  const token = (sender: string) => signToken(parsed, { sender, expires: '1h' });
  const clients: TestClient[] = [];
  return {
    url,
    wsUrl,
    config: parsed,
    gateway,
    live: live!,
    feed,
    token,
    async gql(sender, query, variables) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(sender)}` },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as GraphQLResponse;
    },
    async ws(sender) {
      const client = wsClient(wsUrl, { Authorization: `Bearer ${await token(sender)}` });
      clients.push(client);
      await client.connected;
      return client;
    },
    async stop() {
      for (const c of clients) await c.client.dispose();
      await gateway.close();
      live!.close();
      await feed.close();
      await sql.end({ timeout: 5 });
      await livePool.end({ timeout: 5 });
    },
  };
}
