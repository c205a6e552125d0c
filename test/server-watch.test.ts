import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { run, within, wsClient } from './support/transports.ts';
import { ids, killChildren, post, serveChild, socketQuery as query, WAIT, writeConfigFile } from './support/watch.ts';

// Issue 14: `rowgate serve --watch` (a child process, as users run it) on a config file in a temp
// folder, with a graphql-ws socket and a live subscription open across every reload. The database
// user is a superuser, so DDL arrives through the event trigger (server-watch-poll.test.ts: without).
const db = useTestDatabase();
const SECRET = 'watch-test-secret-0123456789abcdef0123456';
const ADMIN = 'watch-test-admin';
let dir: string;
let configPath: string;

const NOTE_RULE = "SELECT * FROM note WHERE owner = :sender OR owner = 'bob'";
const config = (tables: Record<string, unknown>) => ({ database: { url: db.url }, auth: { jwt: { secret: SECRET }, adminSecret: ADMIN }, tables });
const token = (sender: string) => signToken(parseConfig(config({}), {}), { sender, expires: '1h' });
const writeConfig = (tables: Record<string, unknown>) => writeConfigFile(configPath, config(tables));
const serve = (flags: string[]) => serveChild(configPath, flags);

async function gql(url: string, sender: string, text: string) {
  return (await post(url, { authorization: `Bearer ${await token(sender)}` }, text)).body;
}

async function reloadCount(url: string, outcome: string): Promise<number> {
  const res = await fetch(url.replace(/\/graphql$/, '/metrics'), { headers: { 'x-rowgate-admin-secret': ADMIN } });
  const m = new RegExp(`^rowgate_reloads_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
    CREATE TABLE tag (id int PRIMARY KEY, owner text NOT NULL, label text NOT NULL);
    INSERT INTO note VALUES (1, 'alice', 'a1'), (2, 'bob', 'b1');
    INSERT INTO tag VALUES (1, 'alice', 'red'), (2, 'bob', 'blue');
    CREATE FUNCTION note_loud(n note) RETURNS text LANGUAGE sql STABLE AS $$ SELECT upper(n.body) $$;
    CREATE FUNCTION first_notes() RETURNS SETOF note LANGUAGE sql STABLE AS $$ SELECT * FROM note WHERE id <= 2 $$;
  `);
  dir = mkdtempSync(join(tmpdir(), 'rowgate-watch-'));
  configPath = join(dir, 'rowgate.config.json');
  writeConfig({ note: { select: NOTE_RULE } });
});
afterAll(async () => {
  killChildren();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('rowgate serve --watch reload with an open socket', () => {
  it('applies config and DDL changes on the same socket, keeps what did not change running, ends what did', async () => {
    const served = await serve(['--watch']);
    const client = wsClient(served.url.replace(/^http/, 'ws'), { Authorization: `Bearer ${await token('alice')}` });
    await within(client.connected, WAIT, 'the socket');
    let closed = false;
    void client.closed.then(() => (closed = true));
    const notes = run(client.client, 'subscription { note(order_by: { id: asc }) { id owner } }');
    await within(notes.received(1), WAIT, 'the first live result');
    expect(ids(notes.values[0], 'note')).toEqual([1, 2]);

    // (a) A new table in the config: a new query on the same socket sees it; the note subscription goes on.
    expect((await query(client, '{ tag { id } }')).errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
    writeConfig({ note: { select: NOTE_RULE }, tag: { select: 'SELECT * FROM tag WHERE owner = :sender' } });
    const added = await served.reload(1);
    expect(added).toMatchObject({ outcome: 'applied', changed: ['tag'] });
    expect((await query(client, '{ tag { id label } }')).values).toEqual([{ data: { tag: [{ id: 1, label: 'red' }] } }]);
    await db.sql`INSERT INTO note VALUES (3, 'alice', 'a2')`;
    await within(notes.received(2), WAIT, 'the note subscription to deliver after the reload');
    expect(ids(notes.values[1], 'note')).toEqual([1, 2, 3]);
    // The new table is captured: a live query on it gets its commits.
    const tags = run(client.client, 'subscription { tag { id } }');
    await within(tags.received(1), WAIT, 'the first tag result');
    await db.sql`INSERT INTO tag VALUES (3, 'alice', 'green')`;
    await within(tags.received(2), WAIT, 'a tag commit');
    expect(ids(tags.values[1], 'tag')).toEqual([1, 3]);

    // (b) An invalid rule: logged with its place, the previous schema stays, the subscriptions go on.
    writeConfig({ note: { select: NOTE_RULE }, tag: { select: 'SELECT * FROM tag WHERE colour = :sender' }, extra: { select: 'public' } });
    const failed = await served.reload(2);
    expect(failed.outcome).toBe('failed');
    expect(failed.error).toContain('tables.tag.select[1], line 1, column 25: unknown column "colour"');
    expect(failed.error).toContain('tables.extra: no table "extra"');
    expect((await query(client, '{ tag { id } }')).values).toEqual([{ data: { tag: [{ id: 1 }, { id: 3 }] } }]);
    expect((await gql(served.url, 'alice', '{ extra { id } }')).errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
    await db.sql`INSERT INTO note VALUES (4, 'bob', 'b2')`;
    await within(notes.received(3), WAIT, 'the note subscription after the failed reload');
    expect(ids(notes.values[2], 'note')).toEqual([1, 2, 3, 4]);
    expect(await reloadCount(served.url, 'failed')).toBe(1);
    expect(await reloadCount(served.url, 'applied')).toBe(1);

    // (c) The subscribed table's rules now hide bob's notes: the subscription ends with
    // SCHEMA_CHANGED and delivers nothing under the old rules; the tag subscription goes on.
    const delivered = notes.values.length;
    writeConfig({ note: { select: 'SELECT * FROM note WHERE owner = :sender' }, tag: { select: 'SELECT * FROM tag WHERE owner = :sender' } });
    expect(await served.reload(3)).toMatchObject({ outcome: 'applied', changed: ['note'] });
    const ended = await within(notes.done, WAIT, 'the note subscription to end');
    expect(ended.errors?.map((e) => e.extensions?.['code'])).toEqual(['SCHEMA_CHANGED']);
    await db.sql`INSERT INTO note VALUES (5, 'bob', 'b3')`;
    await db.sql`INSERT INTO tag VALUES (4, 'alice', 'blue')`;
    await within(tags.received(3), WAIT, 'the tag subscription after the rules of note changed');
    expect(ids(tags.values[2], 'tag')).toEqual([1, 3, 4]);
    // Nothing after the end, and no result of the old subscription ever held a row the new rules hide past its end.
    expect(notes.values.length).toBe(delivered);
    const again = run(client.client, 'subscription { note(order_by: { id: asc }) { id owner } }');
    await within(again.received(1), WAIT, 'the re-subscribed note');
    expect(ids(again.values[0], 'note')).toEqual([1, 3]);

    // (d) DDL on an exposed table whose rule is SELECT *: the new column is in the schema, without a restart.
    expect((await query(client, '{ note { mood } }')).errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
    await db.sql`ALTER TABLE note ADD COLUMN mood text NOT NULL DEFAULT 'calm'`;
    const ddl = await served.reload(4);
    expect(ddl).toMatchObject({ outcome: 'applied', reason: 'ddl', changed: ['note'] });
    expect((await query(client, '{ note(order_by: { id: asc }) { id mood } }')).values).toEqual([{ data: { note: [{ id: 1, mood: 'calm' }, { id: 3, mood: 'calm' }] } }]);
    expect((await within(again.done, WAIT, 'the subscription on the altered table to end')).errors?.map((e) => e.extensions?.['code'])).toEqual(['SCHEMA_CHANGED']);
    expect(tags.values.length).toBe(3);
    await db.sql`INSERT INTO tag VALUES (5, 'alice', 'grey')`;
    await within(tags.received(4), WAIT, 'the tag subscription after the DDL');

    expect(closed).toBe(false);
    tags.stop();
    await client.client.dispose();
    served.child.kill('SIGTERM');
    expect(await within(served.exited, WAIT, 'the gateway to stop')).toBe(0);
  });

  it('SIGHUP reloads without --watch; the socket open across it sees the new field', async () => {
    writeConfig({ note: { select: 'SELECT * FROM note WHERE owner = :sender' }, tag: { select: 'SELECT * FROM tag WHERE owner = :sender' } });
    const served = await serve([]);
    const client = wsClient(served.url.replace(/^http/, 'ws'), { Authorization: `Bearer ${await token('bob')}` });
    await within(client.connected, WAIT, 'the socket');
    expect((await query(client, '{ tag(order_by: { id: asc }) { id } }')).values).toEqual([{ data: { tag: [{ id: 2 }] } }]);
    writeConfig({ note: { select: 'SELECT * FROM note WHERE owner = :sender' }, tag: { select: 'public' } });
    served.child.kill('SIGHUP');
    expect(await served.reload(1)).toMatchObject({ outcome: 'applied', reason: 'SIGHUP', changed: ['tag'] });
    expect((await query(client, '{ tag(order_by: { id: asc }) { id } }')).values).toEqual([{ data: { tag: [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }] } }]);
    expect(served.child.exitCode).toBeNull();
    await client.client.dispose();
    served.child.kill('SIGTERM');
    expect(await within(served.exited, WAIT, 'the gateway to stop')).toBe(0);
  });
  it('a replaced function ends the subscriptions computing with it (computed field, root function); others go on', async () => {
    const tables = { note: { select: 'SELECT * FROM note WHERE owner = :sender', computedFields: { loud: { function: 'note_loud' } } }, tag: { select: 'SELECT * FROM tag WHERE owner = :sender' } };
    writeConfigFile(configPath, { ...config(tables), functions: ['first_notes'] });
    const served = await serve(['--watch']);
    const client = wsClient(served.url.replace(/^http/, 'ws'), { Authorization: `Bearer ${await token('alice')}` });
    await within(client.connected, WAIT, 'the socket');
    const loud = run(client.client, 'subscription { note(where: { id: { _eq: 1 } }) { id loud } }');
    const first = run(client.client, 'subscription { first_notes(order_by: { id: asc }) { id } }');
    const tags = run(client.client, 'subscription { tag(order_by: { id: asc }) { id } }');
    for (const [sub, what] of [[loud, 'loud'], [first, 'first_notes'], [tags, 'tag']] as const) await within(sub.received(1), WAIT, `the first ${what} result`);
    expect(loud.values[0]).toEqual({ data: { note: [{ id: 1, loud: 'A1' }] } });
    expect(ids(first.values[0], 'first_notes')).toEqual([1]);

    // A new body computes other values: the subscription must not go on showing the old ones.
    await db.sql.unsafe('CREATE OR REPLACE FUNCTION note_loud(n note) RETURNS text LANGUAGE sql STABLE AS $$ SELECT upper(n.body) || \'!\' $$');
    expect(await served.reload(1)).toMatchObject({ outcome: 'applied', reason: 'ddl', changed: ['note'] });
    expect((await within(loud.done, WAIT, 'the computed-field subscription to end')).errors?.map((e) => e.extensions?.['code'])).toEqual(['SCHEMA_CHANGED']);
    expect((await query(client, '{ note(where: { id: { _eq: 1 } }) { loud } }')).values).toEqual([{ data: { note: [{ loud: 'A1!' }] } }]);

    await db.sql.unsafe('CREATE OR REPLACE FUNCTION first_notes() RETURNS SETOF note LANGUAGE sql STABLE AS $$ SELECT * FROM note WHERE id <= 3 $$');
    expect(await served.reload(2)).toMatchObject({ outcome: 'applied', reason: 'ddl', changed: ['first_notes'] });
    expect((await within(first.done, WAIT, 'the root-function subscription to end')).errors?.map((e) => e.extensions?.['code'])).toEqual(['SCHEMA_CHANGED']);

    // The tag subscription computes with neither: it goes on.
    await db.sql`INSERT INTO tag VALUES (6, 'alice', 'pink')`;
    await within(tags.received(2), WAIT, 'the tag subscription after both replacements');
    expect(ids(tags.values[1], 'tag')).toEqual([...ids(tags.values[0], 'tag'), 6]);
    tags.stop();
    await client.client.dispose();
    expect(await served.stop()).toBe(0);
  });
});
