import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { connect, freePort, type Sql } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { NOTE_CHANGES, NOTE_LIVE, NOTE_SCHEMA, NOTE_TABLES, NoteModel, noteEvents, withoutPositions } from './support/notes.ts';
import { run, within, wsClient, type Running, type TestClient } from './support/transports.ts';

// Hardening §2, the gateway process itself: `rowgate serve` as a child process on the test
// database. (a) SIGKILL in the middle of a change stream: clients that resume `note_changes` with
// `after` on the restarted gateway miss nothing, also what was written while no gateway ran.
// (b) SIGTERM: no new connections, the in-flight request completes, WebSockets close with 1001,
// exit code 0.
const db = useTestDatabase();
const BIN = fileURLToPath(new URL('../bin/rowgate.mjs', import.meta.url));
const SECRET = 'process-test-secret-0123456789abcdef0123';
const PEOPLE = ['alice', 'bob', 'carol', 'dave'];
let dir: string;
let configPath: string;
let writer: Sql;
let model: NoteModel;
const children = new Set<ChildProcess>();
const config = () => ({ database: { url: db.url }, auth: { jwt: { secret: SECRET } }, tables: NOTE_TABLES });
const token = (sender: string) => signToken(parseConfig(config(), {}), { sender, expires: '1h' });

beforeAll(async () => {
  await db.sql.unsafe(NOTE_SCHEMA);
  dir = mkdtempSync(join(tmpdir(), 'rowgate-process-'));
  configPath = join(dir, 'rowgate.config.json');
  writeFileSync(configPath, JSON.stringify(config(), null, 2));
  writer = connect(db.url, { max: 1, connection: { application_name: 'test-writer' } });
  model = new NoteModel(writer);
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await writer?.end({ timeout: 5 });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Served {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

/** `rowgate serve` in a child process; resolves once it says it is serving. */
async function serve(port: number): Promise<Served> {
  const env = { ...process.env };
  for (const name of ['DATABASE_URL', 'PORT', 'ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET']) delete env[name];
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configPath, '--port', String(port)], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const serving = new Promise<string>((resolve, reject) => {
    const onData = () => {
      const m = /rowgate: serving (\S+)/.exec(out);
      if (m) {
        child.stdout!.off('data', onData);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    void exited.then((e) => reject(new Error(`rowgate serve exited (${e.code ?? e.signal}) before serving:\n${out}`)));
  });
  const url = await within(serving, 45_000, `rowgate serve to listen (output so far: ${out})`);
  return { child, url, wsUrl: url.replace(/^http/, 'ws'), exited, output: () => out };
}

async function connectAs(served: Served, who: string): Promise<TestClient> {
  const client = wsClient(served.wsUrl, { Authorization: `Bearer ${await token(who)}` });
  await within(client.connected, 10_000, `${who} to connect`);
  return client;
}

/** Waits for a condition of the database (a lock wait) that no event announces; bounded. */
async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('rowgate serve killed with SIGKILL mid-stream', () => {
  it('clients resuming with after on the restarted gateway miss nothing and get nothing twice', async () => {
    const port = await freePort();
    const first = await serve(port);
    // From the start of the log: capture was installed by this gateway, so every write below is in it.
    const streams = new Map<string, { client: TestClient; sub: Running }>();
    for (const who of PEOPLE) {
      const client = await connectAs(first, who);
      streams.set(who, { client, sub: run(client.client, NOTE_CHANGES, { after: '0' }) });
    }

    // A writer that goes on regardless of the gateway; the gateway dies while it writes.
    const OWNERS = PEOPLE;
    const writing = (async () => {
      for (let i = 1; i <= 30; i++) {
        await model.insert(i, OWNERS[i % 4]!, `n${i}`);
        if (i % 3 === 0) await model.update(i - 1, { owner: OWNERS[(i + 1) % 4]! });
        if (i % 5 === 0) await model.remove(i - 2);
      }
    })();
    const carol = streams.get('carol')!;
    await within(carol.sub.received(5), 15_000, 'carol\'s first events');
    first.child.kill('SIGKILL');
    expect(await within(first.exited, 10_000, 'the killed gateway to exit')).toEqual({ code: null, signal: 'SIGKILL' });
    for (const [who, s] of streams) expect((await within(s.client.closed, 10_000, `${who}'s socket to drop`)).code).toBe(1006);
    await writing;
    // Written while no gateway runs.
    const beforeDead = model.written.length;
    await model.insert(100, 'alice', 'while dead');
    await model.update(1, { owner: 'bob', body: 'moved while dead' });
    await model.remove(100);
    await model.insert(101, 'bob', 'while dead');
    expect(model.written.length).toBeGreaterThan(beforeDead);

    const second = await serve(port);
    const resumed = new Map<string, Running>();
    for (const who of PEOPLE) {
      const got = noteEvents(streams.get(who)!.sub.values);
      const client = await connectAs(second, who);
      resumed.set(who, run(client.client, NOTE_CHANGES, { after: got.at(-1)?.position ?? '0' }));
    }
    await model.insert(102, 'carol', 'after restart');
    await model.update(101, { owner: 'alice' });
    for (const [i, who] of PEOPLE.entries()) await model.insert(200 + i, who, `last of ${who}`);

    for (const who of PEOPLE) {
      const want = model.expectedEvents(who);
      const before = streams.get(who)!.sub.values.length;
      const again = resumed.get(who)!;
      await within(again.received(want.length - before), 20_000, `${who}'s ${want.length - before} resumed events (has ${again.values.length})`);
      const all = noteEvents([...streams.get(who)!.sub.values, ...again.values]);
      expect(withoutPositions(all), `${who}: before the kill, then resumed`).toEqual(want);
      again.stop();
    }
    second.child.kill('SIGTERM');
    expect(await within(second.exited, 20_000, 'the second gateway to stop')).toEqual({ code: 0, signal: null });
  });
});

describe('rowgate serve stopped with SIGTERM', () => {
  it('stops accepting, finishes the in-flight request, closes sockets with 1001, exits 0', async () => {
    const port = await freePort();
    const served = await serve(port);
    await model.insert(900, 'alice', 'locked');
    const alice = await connectAs(served, 'alice');
    const bob = await connectAs(served, 'bob');
    const live = run(alice.client, NOTE_LIVE);
    const changes = run(alice.client, NOTE_CHANGES);
    const bobLive = run(bob.client, NOTE_LIVE);
    await within(live.received(1), 10_000, 'alice\'s first result');
    await within(bobLive.received(1), 10_000, 'bob\'s first result');

    // The test holds the row's lock, so the mutation below waits inside the gateway.
    const lock = await db.sql.reserve();
    let mutation: Promise<Response> | null = null;
    try {
      await lock`BEGIN`;
      await lock`SELECT 1 FROM note WHERE id = 900 FOR UPDATE`;
      let settled = false;
      mutation = fetch(served.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await token('alice')}` },
        body: JSON.stringify({ query: 'mutation { update_note_by_pk(pk_columns: {id: 900}, _set: {body: "written during shutdown"}) { id body } }' }),
      }).finally(() => (settled = true));
      await until(async () => {
        const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'rowgate' AND wait_event_type = 'Lock'`;
        return row!.n > 0;
      }, 'the mutation to wait for the row lock');

      served.child.kill('SIGTERM');
      // WebSockets are closed with 1001 ("going away"); graphql-ws clients reconnect elsewhere or later.
      for (const [who, c] of [['alice', alice], ['bob', bob]] as const) {
        expect(await within(c.closed, 10_000, `${who}'s socket to close`), who).toEqual({ code: 1001, reason: 'going away' });
      }
      // No new connections: the listening socket is closed.
      const refused = await fetch(new URL('/healthz', served.url), { signal: AbortSignal.timeout(5_000) }).then(
        (res) => `HTTP ${res.status}`,
        (err: Error) => String((err.cause as { code?: string } | undefined)?.code ?? err.message),
      );
      expect(refused).toBe('ECONNREFUSED');
      expect(settled, 'the in-flight mutation ended before its lock was released').toBe(false);
      expect(served.child.exitCode).toBeNull();
    } finally {
      await lock`COMMIT`;
      lock.release();
    }
    const res = await within(mutation, 15_000, 'the in-flight mutation');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ data: { update_note_by_pk: { id: 900, body: 'written during shutdown' } } });
    // Promptly: the finished request's connection is closed, not left idling in keep-alive (~5 s).
    expect(await within(served.exited, 4_500, 'the gateway to exit after its last request')).toEqual({ code: 0, signal: null });
    expect(served.output()).toContain('rowgate: shutting down');
    const [row] = await db.sql<{ body: string }[]>`SELECT body FROM note WHERE id = 900`;
    expect(row!.body).toBe('written during shutdown');
    live.stop();
    changes.stop();
    bobLive.stop();
  });
});
