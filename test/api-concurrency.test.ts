import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReservedSql } from 'postgres';
import { useTestDatabase } from './support/db.ts';
import { SECRET, startGateway, type GraphQLResponse, type TestGateway } from './support/gateway.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { run, within, wsClient } from './support/transports.ts';

// One caller cannot take every connection (limits.perCallerConcurrency), and queries cannot take
// the live engine's (database.livePoolSize). Slow queries are slow for a reason the test controls:
// `gated.open` takes an advisory lock that a side connection holds, so they wait for it until the
// test lets them go. Nothing here depends on how long anything takes. (A session-level advisory
// lock, not a table lock in an open transaction: the change feed waits for older transactions.)
const db = useTestDatabase();
let api: TestGateway;

const TABLES = {
  doc: { select: 'public', insert: { check: 'public' } },
  gated: { select: 'public', computedFields: { open: { function: 'gated_open' } } },
};
const SLOW = '{ gated { id open } }';
const GATE = 7411;
const QUICK = '{ doc_by_pk(id: 1) { id title } }';

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, title text NOT NULL);
    CREATE TABLE gated (id int PRIMARY KEY);
    CREATE FUNCTION gated_open(g gated) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
      BEGIN PERFORM pg_advisory_xact_lock_shared(${GATE}); RETURN true; END $$;
    INSERT INTO doc VALUES (1, 'one');
    INSERT INTO gated VALUES (1);
  `);
  api = await startGateway(db, { tables: TABLES, auth: { jwt: { secret: SECRET }, anonymous: true }, limits: { perCallerConcurrency: 2 } });
});

/** Holds the gate's lock until `open()`: every statement reading `gated.open` waits. */
async function closeGate(): Promise<{ open(): Promise<void> }> {
  const side: ReservedSql = await db.sql.reserve();
  await side`SELECT pg_advisory_lock(${GATE})`;
  return {
    async open() {
      await side`SELECT pg_advisory_unlock(${GATE})`;
      side.release();
    },
  };
}

/** The gateway's statements waiting for the gate's lock, once there are `n` of them. */
async function waiting(n: number): Promise<number[]> {
  for (;;) {
    const rows = await db.sql<{ pid: number }[]>`
      SELECT pid FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'rowgate' AND wait_event_type = 'Lock'`;
    if (rows.length >= n) return rows.map((r) => r.pid);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const code = (res: GraphQLResponse) => res.errors?.[0]?.extensions?.['code'];

async function post(who: string | null, query: string): Promise<{ status: number; body: GraphQLResponse }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (who !== null) headers['authorization'] = `Bearer ${await api.token(who)}`;
  const res = await fetch(api.url, { method: 'POST', headers, body: JSON.stringify({ query }) });
  return { status: res.status, body: (await res.json()) as GraphQLResponse };
}

describe('limits.perCallerConcurrency', () => {
  it('refuses a third operation of one caller at once while others are served; slots come back on success', async () => {
    const gate = await closeGate();
    const slow = [post('alice', SLOW), post('alice', SLOW)];
    await waiting(2);

    const third = await post('alice', SLOW);
    expect(third.status).toBe(429);
    expect(code(third.body)).toBe('LIMIT_EXCEEDED');
    expect(third.body.errors?.[0]?.message).toContain('limits.perCallerConcurrency');
    // The budget is the caller's, not the query's, and holds on every transport.
    expect(code((await post('alice', QUICK)).body)).toBe('LIMIT_EXCEEDED');
    const ws = wsClient(api.url.replace(/^http/, 'ws'), { Authorization: `Bearer ${await api.token('alice')}` });
    const overWs = await within(run(ws.client, QUICK).done, 10_000, 'the answer over graphql-ws');
    expect(overWs.values.map((r) => r.errors?.[0]?.extensions?.['code'])).toEqual(['LIMIT_EXCEEDED']);
    await ws.client.dispose();

    // Another caller is not held back.
    expect((await post('bob', QUICK)).body).toEqual({ data: { doc_by_pk: { id: 1, title: 'one' } } });

    await gate.open();
    for (const res of await Promise.all(slow)) expect(res.body).toEqual({ data: { gated: [{ id: 1, open: true }] } });
    expect((await post('alice', QUICK)).body).toEqual({ data: { doc_by_pk: { id: 1, title: 'one' } } });
  });

  it('gives slots back when the operations fail', async () => {
    const gate = await closeGate();
    try {
      const slow = [post('carol', SLOW), post('carol', SLOW)];
      const pids = await waiting(2);
      expect(code((await post('carol', QUICK)).body)).toBe('LIMIT_EXCEEDED');
      // Cancelled as a statement timeout would: both answer with an error.
      await db.sql`SELECT pg_cancel_backend(pid) FROM unnest(${pids}::int[]) AS pid`;
      for (const res of await Promise.all(slow)) expect(res.body.errors).toHaveLength(1);
      // The gate is still closed, and carol is served again.
      expect((await post('carol', QUICK)).body).toEqual({ data: { doc_by_pk: { id: 1, title: 'one' } } });
    } finally {
      await gate.open();
    }
  });

  it('counts a mutation like a query: refused, it writes nothing', async () => {
    const gate = await closeGate();
    const slow = [post('dave', SLOW), post('dave', SLOW)];
    await waiting(2);
    const mutation = await post('dave', 'mutation { insert_doc_one(object: {id: 99, title: "refused"}) { id } }');
    expect(code(mutation.body)).toBe('LIMIT_EXCEEDED');
    await gate.open();
    await Promise.all(slow);
    expect(await db.sql`SELECT id FROM doc WHERE id = 99`).toHaveLength(0);
    expect((await post('dave', 'mutation { insert_doc_one(object: {id: 99, title: "admitted"}) { id } }')).body).toEqual({ data: { insert_doc_one: { id: 99 } } });
  });

  it('keys anonymous callers by their address: callers from one address share a budget', async () => {
    const gate = await closeGate();
    const slow = [post(null, SLOW), post(null, SLOW)];
    await waiting(2);
    expect(code((await post(null, QUICK)).body)).toBe('LIMIT_EXCEEDED');
    expect((await post('erin', QUICK)).body.data).toEqual({ doc_by_pk: { id: 1, title: 'one' } });
    await gate.open();
    for (const res of await Promise.all(slow)) expect(res.body).toEqual({ data: { gated: [{ id: 1, open: true }] } });
  });
});

describe('database.livePoolSize', () => {
  let gw: LiveGateway;
  beforeAll(async () => {
    // A query pool of two, both taken by slow queries of two callers within their limit.
    gw = await startLiveGateway(db, { tables: TABLES }, 0, { queryPoolSize: 2 });
  });
  afterAll(() => gw?.stop());

  it('live queries keep being answered while queries hold every connection of the query pool', async () => {
    const watcher = await gw.ws('frank');
    const live = run(watcher.client, 'subscription { doc_by_pk(id: 2) { id title } }');
    await within(live.received(1), 10_000, 'the first result');

    const gate = await closeGate();
    const slow = [gw.gql('gina', SLOW), gw.gql('hal', SLOW)];
    await waiting(2);
    await db.sql`INSERT INTO doc VALUES (2, 'two')`;
    await within(live.received(2), 10_000, 'the result after the insert, with the query pool held');
    expect(live.values).toEqual([{ data: { doc_by_pk: null } }, { data: { doc_by_pk: { id: 2, title: 'two' } } }]);

    await gate.open();
    for (const res of await Promise.all(slow)) expect(res).toEqual({ data: { gated: [{ id: 1, open: true }] } });
    live.stop();
  });
});
