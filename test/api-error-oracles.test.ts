import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { GROUP_TABLES } from './support/groups.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { run, within } from './support/transports.ts';

// An error that PostgreSQL raises only when it tests some row turns every answer into an oracle:
// "error" means "a row reached the test". As bob, rows 101 (another group) and 102 (private, in his
// group) are hidden; each probe below asks the same question twice, once with a condition a hidden
// row matches (score > 10) and once with one nothing matches (score > 1000), and the two answers
// must be identical, whatever the operator and whatever the path: root list, aggregate, nested list,
// relationship filter, _by_pk children, update/delete `where`, live query, change stream.
const db = useTestDatabase();
let api: LiveGateway;

const TABLES = {
  ...GROUP_TABLES,
  doc: {
    ...GROUP_TABLES.doc,
    update: { filter: 'SELECT * FROM doc WHERE owner = :sender', columns: ['title'] },
    delete: 'SELECT * FROM doc WHERE owner = :sender',
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TYPE mood AS ENUM ('happy', 'sad');
    CREATE TABLE grp (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE membership (grp_id int NOT NULL REFERENCES grp(id), identity text NOT NULL, PRIMARY KEY (grp_id, identity));
    CREATE TABLE doc (id int PRIMARY KEY, grp_id int NOT NULL REFERENCES grp(id), owner text NOT NULL, title text NOT NULL,
                      score int NOT NULL, small int2 NOT NULL DEFAULT 0, mood mood NOT NULL DEFAULT 'happy',
                      addr inet NOT NULL DEFAULT '10.0.0.1', meta jsonb NOT NULL DEFAULT '{"k": 1}',
                      private boolean NOT NULL DEFAULT false);
    INSERT INTO grp VALUES (1, 'mine'), (2, 'theirs');
    INSERT INTO membership VALUES (1, 'bob'), (2, 'carol');
    INSERT INTO doc (id, grp_id, owner, title, score, private) VALUES
      (1, 1, 'bob', 'hello', 5, false),
      (101, 2, 'carol', 'secret plan', 50, false),
      (102, 1, 'carol', 'secret diary', 50, true);
  `);
  api = await startLiveGateway(db, { tables: TABLES });
});
afterAll(() => api.stop());

/** A where that a hidden row matches (threshold 10) or that nothing matches (threshold 1000). */
const probe = (threshold: number, test: Record<string, unknown>) => ({ _and: [{ score: { _gt: threshold } }, test] });

// Each operator with a value that PostgreSQL would refuse while testing a row.
const TESTS: [string, Record<string, unknown>][] = [
  ['_like ending in the escape character', { title: { _like: 'secret\\' } }],
  ['_ilike ending in the escape character', { title: { _ilike: 'SECRET%\\' } }],
  ['_nlike ending in the escape character', { title: { _nlike: '\\' } }],
  ['_nilike ending in the escape character', { title: { _nilike: 'x\\\\\\' } }],
  ['an int2 out of range', { small: { _eq: 40000 } }],
  ['an int2 out of range in _in', { small: { _in: [1, 70000] } }],
  ['an enum label that does not exist', { mood: { _eq: 'angry' } }],
  ['an inet that does not parse', { addr: { _eq: 'not-an-address' } }],
  ['an inet that does not parse in _nin', { addr: { _nin: ['10.0.0.1', '300.1.1.1'] } }],
  ['_regex that does not compile', { title: { _regex: 'secret(' } }],
  ['_iregex that does not compile', { title: { _iregex: '[a' } }],
  ['_nregex with a bad repetition', { title: { _nregex: 'a{2,1}' } }],
  ['_similar that does not compile', { title: { _similar: 'secret(' } }],
  ['_contains with a NUL jsonb cannot hold', { meta: { _contains: { k: 'a\u0000' } } }],
  ['_has_key with a NUL', { meta: { _has_key: 'k\u0000' } }],
  ['_cast to String, then a LIKE ending in the escape character', { meta: { _cast: { String: { _like: '{%\\' } } } }],
];

// Each path, as a query taking the probe as $w.
const PATHS: [string, string][] = [
  ['root list', 'query($w: doc_bool_exp) { doc(where: $w) { id } }'],
  ['aggregate', 'query($w: doc_bool_exp) { doc_aggregate(where: $w) { aggregate { count } } }'],
  ['nested list', 'query($w: doc_bool_exp) { grp { id docs(where: $w) { id } } }'],
  ['nested aggregate', 'query($w: doc_bool_exp) { grp { id docs_aggregate(where: $w) { aggregate { count } } } }'],
  ['relationship filter', 'query($w: doc_bool_exp) { grp(where: {docs: $w}) { id } }'],
  ['relationship filter through two tables', 'query($w: doc_bool_exp) { membership(where: {grp: {docs: $w}}) { identity } }'],
  ['_by_pk children', 'query($w: doc_bool_exp) { grp_by_pk(id: 1) { docs(where: $w) { id } } }'],
  ['update where', 'mutation($w: doc_bool_exp!) { update_doc(where: $w, _set: {title: "x"}) { affected_rows } }'],
  ['delete where', 'mutation($w: doc_bool_exp!) { delete_doc(where: $w) { affected_rows } }'],
  ['update_many where', 'mutation($w: doc_bool_exp!) { update_doc_many(updates: [{where: $w, _set: {title: "x"}}]) { affected_rows } }'],
];

const answer = (res: { data?: unknown; errors?: { message: string; extensions?: Record<string, unknown> }[] | null }) =>
  JSON.stringify({ data: res.data ?? null, errors: (res.errors ?? []).map((e) => [e.extensions?.['code'] ?? null, e.message]) });

describe('a filter cannot tell a hidden row from no row', () => {
  for (const [path, query] of PATHS) {
    it.each(TESTS)(`${path}: %s`, async (_name, test) => {
      const hidden = await api.gql('bob', query, { w: probe(10, test) });
      const none = await api.gql('bob', query, { w: probe(1000, test) });
      expect(answer(hidden)).toBe(answer(none));
      // The value is refused as the caller's mistake, before any row is read.
      expect(hidden.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
    });
  }

  it('leaves every row as it was', async () => {
    const rows = await db.sql`SELECT id, title FROM doc ORDER BY id`;
    expect(rows.map((r) => [r['id'], r['title']])).toEqual([[1, 'hello'], [101, 'secret plan'], [102, 'secret diary']]);
  });

  it('a valid pattern that matches only hidden rows returns what matching nothing returns', async () => {
    const hidden = await api.gql('bob', '{ doc(where: {title: {_like: "secret%"}}) { id } grp { docs(where: {title: {_like: "secret%"}}) { id } } }');
    const none = await api.gql('bob', '{ doc(where: {title: {_like: "zzz%"}}) { id } grp { docs(where: {title: {_like: "zzz%"}}) { id } } }');
    expect(hidden).toEqual({ data: { doc: [], grp: [{ docs: [] }] } });
    expect(answer(hidden)).toBe(answer(none));
  });

  it('an escaped backslash at the end is a literal backslash, not an error', async () => {
    await db.sql`INSERT INTO doc (id, grp_id, owner, title, score) VALUES (2, 1, 'bob', 'ends in \\', 5)`;
    const res = await api.gql('bob', '{ doc(where: {title: {_like: "%\\\\\\\\"}}) { id } }');
    expect(res).toEqual({ data: { doc: [{ id: 2 }] } });
    await db.sql`DELETE FROM doc WHERE id = 2`;
  });
});

async function until(condition: () => boolean, what: string): Promise<void> {
  await within((async () => { while (!condition()) await new Promise((r) => setTimeout(r, 10)); })(), 10_000, what);
}

/** The first thing a subscription receives: its first result, or the error that ends it. */
async function firstOutcome(client: Awaited<ReturnType<LiveGateway['ws']>>, query: string, variables: Record<string, unknown>, commit?: () => Promise<void>): Promise<string> {
  const before = api.live.stats.subscriptions;
  const sub = run(client.client, query, variables);
  let ended = false;
  void sub.done.then(() => (ended = true));
  if (commit) {
    // Commits only once the subscription is live (or has already failed).
    await until(() => ended || api.live.stats.subscriptions > before, 'the subscription to start');
    await commit();
  }
  const first = await within(Promise.race([sub.received(1).then(() => ({ data: sub.values[0]?.data, errors: sub.values[0]?.errors ?? null })), sub.done]), 10_000, 'a first outcome');
  sub.stop();
  await until(() => api.live.stats.subscriptions === before, 'the subscription to end');
  return answer(first as Parameters<typeof answer>[0]);
}

describe('subscriptions cannot tell a hidden row from no row', () => {
  it.each(TESTS)('live query: %s', async (_name, test) => {
    const client = await api.ws('bob');
    const q = 'subscription($w: doc_bool_exp) { doc(where: $w) { id } }';
    const hidden = await firstOutcome(client, q, { w: probe(10, test) });
    const none = await firstOutcome(client, q, { w: probe(1000, test) });
    expect(hidden).toBe(none);
    expect(hidden).toContain('BAD_USER_INPUT');
  });

  let next = 1000;
  it.each(TESTS)('change stream: %s', async (_name, test) => {
    const client = await api.ws('bob');
    const q = 'subscription($w: doc_bool_exp) { doc_changes(where: $w) { op row { id } } }';
    // A hidden row that the probe matches is written, then a row of bob's that both probes match.
    const outcome = (threshold: number) => {
      const mine = ++next;
      return firstOutcome(client, q, { w: { _or: [{ id: { _eq: mine } }, probe(threshold, test)] } }, async () => {
        await db.sql`INSERT INTO doc (id, grp_id, owner, title, score) VALUES (${mine + 5000}, 2, 'carol', 'secret', 50)`;
        await db.sql`INSERT INTO doc (id, grp_id, owner, title, score) VALUES (${mine}, 1, 'bob', 'sentinel', 1)`;
      }).then((text) => text.replaceAll(String(mine), 'SENTINEL'));
    };
    expect(await outcome(10)).toBe(await outcome(1000));
  });
});
