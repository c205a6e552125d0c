import { readFileSync } from 'node:fs';
import { Client, cacheExchange, fetchExchange, gql, subscriptionExchange, type ExecutionResult, type OperationResult } from '@urql/core';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';

// urql as a frontend sets it up: queries and mutations over HTTP (fetchExchange), subscriptions
// over graphql-ws (subscriptionExchange), against the demo on a gateway assembled as `rowgate serve` does.
const db = useTestDatabase();
const demoConfig = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as { tables: Record<string, unknown> };
let api: LiveGateway;
let ws: WsClient;
let client: Client;

beforeAll(async () => {
  await db.sql.unsafe(readFileSync(new URL('../demo/schema.sql', import.meta.url), 'utf8'));
  api = await startLiveGateway(db, { tables: demoConfig.tables });
  const token = await api.token('alice');
  ws = createWsClient({ url: api.wsUrl, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${token}` } });
  client = new Client({
    url: api.url,
    fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({
            // The two libraries type an absent `data` apart (only under exactOptionalPropertyTypes): same object.
            unsubscribe: ws.subscribe({ ...request, query: request.query ?? '' }, { next: (r) => sink.next(r as ExecutionResult), error: (e) => sink.error(e), complete: () => sink.complete() }),
          }),
        }),
      }),
    ],
  });
});
afterAll(async () => {
  await ws?.dispose();
  await api?.stop();
});

type Accounts = { account: { name: string; players: { level: number }[] }[] };

/** A subscription's results as they arrive; `next()` resolves with the next one not yet taken. */
function collect<T>(subscribe: (push: (r: OperationResult<T>) => void) => { unsubscribe(): void }) {
  const arrived: OperationResult<T>[] = [];
  const waiting: ((r: OperationResult<T>) => void)[] = [];
  const subscription = subscribe((r) => {
    const w = waiting.shift();
    if (w) w(r);
    else arrived.push(r);
  });
  return {
    next: () => new Promise<OperationResult<T>>((resolve) => (arrived.length ? resolve(arrived.shift()!) : waiting.push(resolve))),
    stop: () => subscription.unsubscribe(),
  };
}

describe('urql with graphql-ws', () => {
  it('a query, then a live query that gets the update after a write; no row of anyone else', async () => {
    const query = await client.query<Accounts>(gql`{ account { name players { level } } }`, {}).toPromise();
    expect(query.error).toBeUndefined();
    expect(query.data?.account).toMatchObject([{ name: 'Alice', players: [{ level: 3 }] }]);

    const live = collect<Accounts>((push) => client.subscription<Accounts>(gql`subscription { account { name players { level } } }`, {}).subscribe(push));
    try {
      const first = await live.next();
      expect(first.error).toBeUndefined();
      expect(first.data?.account).toMatchObject([{ name: 'Alice', players: [{ level: 3 }] }]);

      // Bob's rename commits first and is not hers to see: the next result she gets is her own change.
      await db.sql`UPDATE account SET name = 'Robert' WHERE identity = 'bob'`;
      const renamed = await client.mutation(gql`mutation($id: Int!, $name: String!) { update_account_by_pk(pk_columns: {id: $id}, _set: {name: $name}) { name } }`, { id: 1, name: 'Alicia' }).toPromise();
      expect(renamed.error).toBeUndefined();
      expect(renamed.data).toMatchObject({ update_account_by_pk: { name: 'Alicia' } });

      const update = await live.next();
      expect(update.error).toBeUndefined();
      expect(update.data?.account).toMatchObject([{ name: 'Alicia', players: [{ level: 3 }] }]);
      expect(update.data?.account).toHaveLength(1);
    } finally {
      live.stop();
    }
  });
});
