import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, freePort, readCatalog, retryOnDisconnect, startEmbedded, type EmbeddedServer, type Sql } from '../src/db/index.ts';
import { status } from './support/changes.ts';
import type { TestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { NOTE_CHANGES, NOTE_LIVE, NOTE_SCHEMA, NOTE_TABLES, NoteModel, noteEvents, withoutPositions, type Note } from './support/notes.ts';
import { run, within, type Running } from './support/transports.ts';
import { serverDir } from './support/server-dir.ts';

// Hardening §2, PostgreSQL restart: a gateway with live-query and change-stream subscribers of
// several identities on a PostgreSQL server of this file's own (it is stopped and started again,
// so no other test file may use it). While it is down /readyz says 503 and /healthz 200; after it
// is back the gateway reconnects by itself and every subscriber ends with exactly what it may
// see: live queries their visible result, change streams every visible change exactly once —
// including changes committed after the restart but before the change feed reconnected.

const PEOPLE = ['alice', 'bob', 'carol', 'dave'];

let dir: string;
let port: number;
let server: EmbeddedServer;
let db: TestDatabase;
let writer: Sql;
let admin: Sql;
let gw: LiveGateway;
let appUrl: string;
let model: NoteModel;

beforeAll(async () => {
  dir = serverDir('rowgate-pg-restart-');
  port = await freePort();
  server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: true, port });
  admin = connect(server.url, { max: 1, connection: { application_name: 'test-admin' } });
  await admin.unsafe('CREATE DATABASE app');
  const u = new URL(server.url);
  u.pathname = '/app';
  appUrl = u.toString();
  const sql = connect(appUrl, { max: 2, connection: { jit: 'off', application_name: 'test-runner' } });
  db = { sql, url: appUrl, catalog: (schema = 'public') => readCatalog(sql, schema) };
  // One connection that stays open across the restart's "no new connections" window.
  writer = connect(appUrl, { max: 1, idle_timeout: 0, max_lifetime: null, connection: { application_name: 'test-writer' } });
  await db.sql.unsafe(NOTE_SCHEMA);
  model = new NoteModel(writer);
  gw = await startLiveGateway(db, { tables: NOTE_TABLES });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await writer?.end({ timeout: 5 });
  await db?.sql.end({ timeout: 5 });
  await admin?.end({ timeout: 5 });
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const insert = (id: number, owner: string, body: string) => model.insert(id, owner, body);
const update = (id: number, set: Partial<Omit<Note, 'id'>>) => model.update(id, set);
const remove = (id: number) => model.remove(id);
const CHANGES = NOTE_CHANGES;
const LIVE = NOTE_LIVE;

interface Watch {
  who: string;
  live: Running;
  changes: Running;
  /** alice's second stream, filtered by `where`. */
  filtered?: Running;
}

const liveRows = (r: Running): Note[] | undefined => (r.values.at(-1)?.data as { note: Note[] } | undefined)?.note;
const keep = (row: Note) => row.body.startsWith('keep');
const FROM_START = { after: '0' };

async function settled(watches: Watch[], phase: string): Promise<void> {
  for (const w of watches) {
    const want = model.expectedLive(w.who);
    await within(
      (async () => {
        while (JSON.stringify(liveRows(w.live)) !== JSON.stringify(want)) await w.live.received(w.live.values.length + 1);
      })(),
      30_000,
      `${phase}: ${w.who}'s live query to become ${JSON.stringify(want)} (has ${JSON.stringify(liveRows(w.live))})`,
    );
    for (const [r, where] of [[w.changes, undefined], ...(w.filtered ? [[w.filtered, keep] as const] : [])] as const) {
      const want = model.expectedEvents(w.who, where);
      await within(r.received(want.length), 30_000, `${phase}: ${want.length} events for ${w.who} (has ${r.values.length})`);
      // Exactly once: positions strictly increase and the events are the model's, no more, no less.
      expect(withoutPositions(noteEvents(r.values)), `${phase}: ${w.who}'s change stream${where ? ' (where)' : ''}`).toEqual(want);
    }
  }
}

async function probe(path: '/readyz' | '/healthz'): Promise<number> {
  const res = await fetch(new URL(path, gw.url), { signal: AbortSignal.timeout(5_000) });
  await res.arrayBuffer();
  return res.status;
}

describe('PostgreSQL stops and starts again under a running gateway', () => {
  it('503 while down, reconnects, and every subscriber ends exactly right', async () => {
    const watches: Watch[] = [];
    for (const who of PEOPLE) {
      const client = await gw.ws(who);
      // Every change since the log began: the writes below start after the subscriptions, whenever they register.
      const w: Watch = { who, live: run(client.client, LIVE), changes: run(client.client, CHANGES, FROM_START) };
      if (who === 'alice') w.filtered = run(client.client, CHANGES, { ...FROM_START, where: { body: { _like: 'keep%' } } });
      watches.push(w);
    }
    for (const w of watches) await within(w.live.received(1), 10_000, `${w.who}'s first live result`);
    expect(await probe('/readyz')).toBe(200);

    // Before: inserts for several owners, an update, a row moving between owners, a delete.
    await insert(1, 'alice', 'keep a1');
    await insert(2, 'bob', 'b1');
    await insert(3, 'carol', 'c1');
    await insert(4, 'alice', 'a2');
    await update(1, { body: 'keep a1 edited' });
    await update(4, { owner: 'bob' });
    await remove(3);
    await settled(watches, 'before the restart');

    // Down. Nothing is written meanwhile.
    const down = status(gw.feed, false);
    await server.stop();
    await down;
    expect(await probe('/readyz')).toBe(503);
    expect(await probe('/healthz')).toBe(200);

    // Up again on the same port and data directory. Let only the test's writer in until its
    // writes are committed, so the feed surely reconnects after them (it can only catch up).
    server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: true, port });
    await retryOnDisconnect(() => admin`SELECT 1`);
    await retryOnDisconnect(() => writer`SELECT 1`);
    await admin.unsafe('ALTER DATABASE app WITH ALLOW_CONNECTIONS false');
    try {
      await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app' AND application_name LIKE 'rowgate%'`;
      await status(gw.feed, false);
      await insert(5, 'alice', 'keep after restart');
      await insert(6, 'dave', 'd1');
      await update(2, { owner: 'alice', body: 'keep moved to alice' });
      await update(5, { body: 'no longer kept' });
      await remove(1);
      expect(gw.feed.ready(), 'the feed reconnected before the writes were done').toBe(false);
      expect(await probe('/readyz')).toBe(503);
    } finally {
      await admin.unsafe('ALTER DATABASE app WITH ALLOW_CONNECTIONS true');
    }
    // The feed retries with backoff (up to 5 s between tries) and catches up from the log.
    await status(gw.feed, true, 30_000);
    expect(await probe('/readyz')).toBe(200);
    await settled(watches, 'caught up after the restart');

    // And it goes on as before.
    await insert(7, 'bob', 'keep b7');
    await update(6, { owner: 'carol' });
    await update(7, { owner: 'alice' });
    for (const [i, who] of PEOPLE.entries()) await insert(100 + i, who, `keep last of ${who}`);
    await settled(watches, 'after the restart');

    // Sanity: the model is the database.
    const actual = await writer<Note[]>`SELECT id, owner, body FROM note ORDER BY id`;
    expect([...actual]).toEqual([...model.rows.values()].sort((a, b) => a.id - b.id));
    for (const w of watches) {
      w.live.stop();
      w.changes.stop();
      w.filtered?.stop();
    }
  });
});
