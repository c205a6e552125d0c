import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { run, within, wsClient, type Outcome, type TestClient } from './support/transports.ts';

// Issue 14: `rowgate serve --watch` (a child process, as users run it) on a config file in a temp
// folder, with a graphql-ws socket and a live subscription open across every reload. The database
// user is a superuser, so DDL arrives through the event trigger.
const db = useTestDatabase();
const BIN = fileURLToPath(new URL('../bin/rowgate.mjs', import.meta.url));
const SECRET = 'watch-test-secret-0123456789abcdef0123456';
const ADMIN = 'watch-test-admin';
const WAIT = 20_000;
let dir: string;
let configPath: string;
const children = new Set<ChildProcess>();

const NOTE_RULE = "SELECT * FROM note WHERE owner = :sender OR owner = 'bob'";
const config = (tables: Record<string, unknown>) => ({ database: { url: db.url }, auth: { jwt: { secret: SECRET }, adminSecret: ADMIN }, tables });
const token = (sender: string) => signToken(parseConfig(config({}), {}), { sender, expires: '1h' });

/** Writes the config the way many editors save: a new file renamed over the old one. */
function writeConfig(tables: Record<string, unknown>): void {
  const aside = `${configPath}.tmp`;
  writeFileSync(aside, JSON.stringify(config(tables), null, 2));
  renameSync(aside, configPath);
}

interface LogLine {
  msg: string;
  outcome?: string;
  reason?: string;
  error?: string;
  changed?: string[];
}

interface Served {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  /** The n-th reload's log line (1-based) that applied or failed, once it is written. */
  reload(n: number): Promise<LogLine>;
  output(): string;
}

/** `rowgate serve` (with `flags`) in a child process; resolves once it says it is serving. */
async function serve(flags: string[]): Promise<Served> {
  const env = { ...process.env };
  for (const name of ['DATABASE_URL', 'PORT', 'ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET', 'LOG_LEVEL']) delete env[name];
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configPath, '--port', '0', ...flags], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  const reloads: LogLine[] = [];
  const waiting: { n: number; resolve: (line: LogLine) => void }[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const text of lines) {
      if (!text.startsWith('{')) continue;
      const line = JSON.parse(text) as LogLine;
      // Reloads that found nothing changed are not counted: a wake-up for nothing is harmless.
      if (!line.msg.startsWith('reload') || line.outcome === 'unchanged') continue;
      reloads.push(line);
      for (const w of waiting.filter((w) => reloads.length >= w.n)) w.resolve(reloads[w.n - 1]!);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const serving = new Promise<string>((resolve, reject) => {
    const onData = () => {
      const m = /rowgate: serving (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, signal) => reject(new Error(`rowgate serve exited (${code ?? signal}) before serving:\n${out}`)));
  });
  const url = await within(serving, 45_000, 'rowgate serve to listen');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    url,
    exited,
    output: () => out,
    reload: (n) =>
      within(
        reloads.length >= n ? Promise.resolve(reloads[n - 1]!) : new Promise<LogLine>((resolve) => waiting.push({ n, resolve })),
        WAIT,
        `reload ${n} to be logged (output so far:\n${out})`,
      ),
  };
}

async function gql(url: string, sender: string, query: string): Promise<{ data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(sender)}` }, body: JSON.stringify({ query }) });
  return (await res.json()) as { data?: Record<string, unknown> | null };
}

/** One query on the socket: its single result. */
async function query(client: TestClient, text: string): Promise<Outcome> {
  return within(run(client.client, text).done, WAIT, `the query ${text}`);
}

async function reloadCount(url: string, outcome: string): Promise<number> {
  const res = await fetch(url.replace(/\/graphql$/, '/metrics'), { headers: { 'x-rowgate-admin-secret': ADMIN } });
  const m = new RegExp(`^rowgate_reloads_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : 0;
}

const ids = (result: { data?: Record<string, unknown> | null | undefined } | undefined, field: string) => ((result?.data?.[field] as { id: number }[] | undefined) ?? []).map((r) => r.id);

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
    CREATE TABLE tag (id int PRIMARY KEY, owner text NOT NULL, label text NOT NULL);
    INSERT INTO note VALUES (1, 'alice', 'a1'), (2, 'bob', 'b1');
    INSERT INTO tag VALUES (1, 'alice', 'red'), (2, 'bob', 'blue');
  `);
  dir = mkdtempSync(join(tmpdir(), 'rowgate-watch-'));
  configPath = join(dir, 'rowgate.config.json');
  writeConfig({ note: { select: NOTE_RULE } });
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
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
});
