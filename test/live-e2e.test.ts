import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledRules } from '../src/rules/index.ts';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { as, compile, visible } from './support/rules.ts';
import { readAll, run, sse, within, type Running } from './support/transports.ts';

// The live data path end to end: a real gateway (capture, feed, engine, graphql-ws, SSE), real
// clients with different identities, writes through mutations and through direct SQL. Every
// payload a client receives must be exactly what its rules allowed after some commit: no leak, no
// miss, no duplicate.
const db = useTestDatabase();
const demo = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as { tables: Record<string, unknown> };
let gw: LiveGateway;
let rules: CompiledRules;

beforeAll(async () => {
  await db.sql.file(new URL('../demo/schema.sql', import.meta.url).pathname);
  rules = await compile(db, demo.tables);
  gw = await startLiveGateway(db, { tables: demo.tables });
});
afterAll(() => gw?.stop());

const IDS = (payload: unknown, field: string): number[] => ((payload as { data?: Record<string, { id: number }[]> }).data?.[field] ?? []).map((r) => r.id);

interface Watched {
  who: string;
  table: 'document' | 'account';
  payloads: () => number[][];
  /** Expected states after each step, in order. */
  states: number[][];
}

async function waitFor(check: () => boolean, what: string, ms = 10_000, next?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await (next ? within(next(), Math.max(1, deadline - Date.now()), what) : new Promise((r) => setImmediate(r)));
  }
}

describe('many clients, writes from mutations and from SQL', () => {
  it('each client receives exactly what its rules allow after each commit', async () => {
    const people = ['alice', 'bob', 'carol', 'dave', 'erin'];
    const watched: Watched[] = [];
    const running: Running[] = [];
    for (const who of people) {
      const client = await gw.ws(who);
      for (const table of ['document', 'account'] as const) {
        const r = run(client.client, `subscription { ${table}(order_by: {id: asc}) { id } }`);
        running.push(r);
        watched.push({ who, table, payloads: () => r.values.map((v) => IDS(v, table)), states: [] });
      }
    }
    // One more over SSE: bob's documents.
    const stream = await sse(gw.url, { query: 'subscription { document(order_by: {id: asc}) { id } }' }, { authorization: `Bearer ${await gw.token('bob')}` });
    const ssePayloads: number[][] = [];
    void (async () => {
      for await (const e of stream.events) if (e.event === 'next') ssePayloads.push(IDS(JSON.parse(e.data), 'document'));
    })().catch(() => {});
    const sseWatch: Watched = { who: 'bob', table: 'document', payloads: () => ssePayloads, states: [] };
    watched.push(sseWatch);

    const settle = async (step: string) => {
      for (const w of watched) {
        const expected = (await visible(db, rules, w.table, as(w.who))).map(Number).sort((x, y) => x - y);
        w.states.push(expected);
        await waitFor(() => JSON.stringify(w.payloads().at(-1)) === JSON.stringify(expected), `${step}: ${w.who}'s ${w.table} should become ${JSON.stringify(expected)}, got ${JSON.stringify(w.payloads().at(-1))}`);
      }
    };

    await settle('initial');
    const mutation = await gw.gql('alice', 'mutation { insert_document_one(object: {grp_id: 1, title: "via mutation"}) { id } }');
    expect(mutation.errors).toBeUndefined();
    await settle('insert through a mutation');
    await db.sql`INSERT INTO membership VALUES (2, 'alice', 'r')`;
    await settle('membership granted (dependency table)');
    await db.sql`DELETE FROM membership WHERE grp_id = 1 AND member = 'bob'`;
    await settle('membership revoked');
    await db.sql`INSERT INTO admin VALUES ('dave')`;
    await settle('dave becomes an admin');
    await db.sql`DELETE FROM admin WHERE identity = 'dave'`;
    await settle('dave is no admin any more');
    const [a, b, c] = await db.sql.begin(async (tx) => {
      const rows = await tx`INSERT INTO document (grp_id, author, title) VALUES (2, 'erin', 'm1'), (2, 'erin', 'm2'), (2, 'erin', 'm3') RETURNING id`;
      return rows.map((r) => r['id'] as number);
    });
    await settle('a three-row transaction');
    await db.sql`UPDATE document SET grp_id = 1 WHERE id = ${a!}`;
    await settle('an update moves a row out of bob\'s view and keeps it in alice\'s');
    await db.sql`DELETE FROM document WHERE id = ${b!}`;
    await settle('a delete');

    for (const w of watched) {
      const payloads = w.payloads();
      const allowed = new Set(w.states.map((s) => JSON.stringify(s)));
      for (const p of payloads) expect(allowed.has(JSON.stringify(p)), `${w.who}'s ${w.table} got ${JSON.stringify(p)}, which was never its state`).toBe(true);
      for (let i = 1; i < payloads.length; i++) expect(payloads[i], `${w.who}'s ${w.table} got the same result twice`).not.toEqual(payloads[i - 1]);
    }
    // Every payload is a state after a whole commit, so the three-row transaction arrived whole.
    expect(watched.find((w) => w.who === 'erin' && w.table === 'document')!.payloads().some((p) => [a, b, c].every((id) => p.includes(id!)))).toBe(true);
    // Sanity: the steps changed what people saw.
    expect(new Set(sseWatch.states.map((s) => JSON.stringify(s))).size).toBeGreaterThan(2);
    stream.abort();
    for (const r of running) r.stop();
  });
});

describe('change streams over graphql-ws', () => {
  const CHANGES = 'subscription($after: String) { document_changes(after: $after) { op position row { id title } old { id title } } }';
  type Ev = { op: string; position: string; row: { id: number; title: string } | null; old: { id: number; title: string } | null };
  const ev = (v: unknown) => (v as { data: { document_changes: Ev } }).data.document_changes;

  it('reconnecting with after misses nothing and repeats nothing', async () => {
    const client = await gw.ws('erin');
    const first = run(client.client, CHANGES);
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (1, 'erin', 'r1')`;
    await within(first.received(1), 10_000, 'first event');
    const last = ev(first.values[0]).position;
    first.stop();
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (1, 'erin', 'r2')`;
    await db.sql`UPDATE document SET title = 'r1!' WHERE title = 'r1'`;
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (2, 'bob', 'not hers')`;
    const again = run(client.client, CHANGES, { after: last });
    await within(again.received(2), 10_000, 'missed events');
    expect(again.values.map(ev).map((e) => [e.op, e.row?.title, e.old?.title ?? null])).toEqual([
      ['INSERT', 'r2', null],
      ['UPDATE', 'r1!', 'r1'],
    ]);
    again.stop();
  });

  it('a malformed after is BAD_USER_INPUT over graphql-ws and SSE, whatever the log holds', async () => {
    const client = await gw.ws('erin');
    const token = await gw.token('erin');
    // "01" looks numeric but is no position this stream ever sent; the others are not numbers at all.
    for (const after of ['01', '1:01', '', '-1', '1e3', '99999999999999999999']) {
      const outcome = await within(run(client.client, CHANGES, { after }).done, 10_000, `the answer to after ${JSON.stringify(after)}`);
      // graphql-ws sends a subscription refused before its stream exists as one result with errors.
      expect(outcome.values.map((r) => r.errors?.map((e) => e.extensions?.['code']))).toEqual([['BAD_USER_INPUT']]);
      const stream = await sse(gw.url, { query: CHANGES, variables: { after } }, { authorization: `Bearer ${token}` });
      const { next } = await readAll(stream);
      expect(next.map((r) => (r['errors'] as { extensions?: { code?: string } }[] | undefined)?.map((e) => e.extensions?.code))).toEqual([['BAD_USER_INPUT']]);
    }
  });

  it('a gateway restarted mid-stream: the client resumes on the new one and nothing is lost', async () => {
    const port = Number(new URL(gw.url).port);
    const client = await gw.ws('erin');
    const sub = run(client.client, CHANGES);
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (1, 'erin', 'before restart')`;
    await within(sub.received(1), 10_000, 'event before restart');
    const last = ev(sub.values[0]).position;
    await gw.stop();
    // Written while no gateway runs.
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (1, 'erin', 'during restart')`;
    gw = await startLiveGateway(db, { tables: demo.tables }, port);
    const client2 = await gw.ws('erin');
    const resumed = run(client2.client, CHANGES, { after: last });
    await within(resumed.received(1), 10_000, 'event written during the restart');
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (1, 'erin', 'after restart')`;
    await within(resumed.received(2), 10_000, 'event after the restart');
    expect(resumed.values.map(ev).map((e) => e.row?.title)).toEqual(['during restart', 'after restart']);
    resumed.stop();
  });
});

describe('faults', () => {
  it('PostgreSQL connections killed: the gateway recovers and results are right afterwards', async () => {
    const client = await gw.ws('alice');
    const live = run(client.client, 'subscription { document(order_by: {id: asc}) { id title } }');
    await within(live.received(1), 10_000, 'first result');
    const before = live.values.length;
    // Every connection of the gateway (its pool and its change feed), none of the test's.
    const [killed] = await db.sql<{ n: number }[]>`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'rowgate%'`;
    expect(killed?.n).toBeGreaterThan(1);
    await db.sql`INSERT INTO document (grp_id, author, title) VALUES (1, 'alice', 'after the kill')`;
    await within(live.received(before + 1), 20_000, 'a result after the connections were killed');
    const titles = (live.values.at(-1) as { data: { document: { title: string }[] } }).data.document.map((d) => d.title);
    expect(titles).toContain('after the kill');
    const expected = (await visible(db, rules, 'document', as('alice'))).map(Number).sort((x, y) => x - y);
    expect(IDS(live.values.at(-1), 'document')).toEqual(expected);
    live.stop();
  });

  it('two gateways on one database: a subscriber on one sees a mutation made through the other', async () => {
    const other = await startLiveGateway(db, { tables: demo.tables });
    try {
      const client = await gw.ws('bob');
      const sub = run(client.client, 'subscription { document(where: {title: {_eq: "from the other gateway"}}) { title author } }');
      await within(sub.received(1), 10_000, 'first result');
      expect(sub.values[0]).toEqual({ data: { document: [] } });
      const res = await other.gql('bob', 'mutation { insert_document_one(object: {grp_id: 2, title: "from the other gateway"}) { id } }');
      expect(res.errors).toBeUndefined();
      await within(sub.received(2), 10_000, 'the other gateway\'s write');
      expect(sub.values[1]).toEqual({ data: { document: [{ title: 'from the other gateway', author: 'bob' }] } });
      sub.stop();
    } finally {
      await other.stop();
    }
  });
});
