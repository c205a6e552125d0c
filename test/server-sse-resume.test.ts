import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { comparePositions } from '../src/live/index.ts';
import { useTestDatabase } from './support/db.ts';
import { startLiveGateway, type LiveGateway } from './support/live-gateway.ts';
import { readAll, sse, within, type SseEvent, type SseStream } from './support/transports.ts';

// SSE change streams are resumable the way EventSource resumes: every `next` event carries its
// position as `id:`, and a reconnect that sends it back as `Last-Event-ID` gets exactly the events
// after it (as `after` would), however many were missed, and never another caller's.
const db = useTestDatabase();
let gw: LiveGateway;

beforeAll(async () => {
  await db.sql.unsafe(`CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL)`);
  gw = await startLiveGateway(db, { tables: { note: { select: 'SELECT * FROM note WHERE owner = :sender' } } });
});
afterAll(() => gw.stop());

// `position` is not selected: the id comes with every change event anyway.
const CHANGES = 'subscription($after: String) { note_changes(after: $after) { op row { id owner } } }';
const WAIT = 20_000;

async function open(sender: string, variables: Record<string, unknown>, headers: Record<string, string> = {}): Promise<SseStream> {
  const stream = await sse(gw.url, { query: CHANGES, variables }, { authorization: `Bearer ${await gw.token(sender)}`, ...headers });
  expect(stream.status).toBe(200);
  return stream;
}

/** The next `count` `next` events of `stream`. */
async function take(stream: SseStream, count: number): Promise<SseEvent[]> {
  const got: SseEvent[] = [];
  if (count === 0) return got;
  for await (const e of stream.events) {
    if (e.event !== 'next') continue;
    got.push(e);
    if (got.length === count) break;
  }
  return got;
}

const rowOf = (e: SseEvent) => (JSON.parse(e.data) as { data: { note_changes: { op: string; row: { id: number; owner: string } } } }).data.note_changes;

async function subscribers(n: number): Promise<void> {
  while (gw.live.stats.subscriptions !== n) await new Promise((r) => setTimeout(r, 10));
}

describe('SSE resume with Last-Event-ID', () => {
  it('sends each change event with its position as id, and a reconnect gets exactly the missed events', async () => {
    // From the log's present position, so no insert below races the stream's start.
    const [top] = await db.sql<{ top: string }[]>`SELECT COALESCE(max(pos), 0)::text AS top FROM rowgate.change_log`;
    const first = await open('ann', { after: top!.top });
    await subscribers(1);
    await db.sql`INSERT INTO note VALUES (1, 'ann', 'a'), (100, 'bob', 'b')`;
    await db.sql`INSERT INTO note VALUES (2, 'ann', 'a')`;
    const seen = await within(take(first, 2), WAIT, 'the first two events');
    expect(seen.map(rowOf)).toEqual([
      { op: 'INSERT', row: { id: 1, owner: 'ann' } },
      { op: 'INSERT', row: { id: 2, owner: 'ann' } },
    ]);
    for (const e of seen) expect(e.id).toMatch(/^\d+(:\d+)?$/);
    expect(seen[0]!.id).not.toBe(seen[1]!.id);
    // The client goes away; more is written meanwhile, some of it someone else's.
    first.abort();
    await subscribers(0);
    await db.sql`INSERT INTO note VALUES (3, 'ann', 'a')`;
    await db.sql`INSERT INTO note VALUES (101, 'bob', 'b')`;
    await db.sql`UPDATE note SET body = 'b2' WHERE id = 1`;
    await db.sql`DELETE FROM note WHERE id = 2`;

    // The same request again, as EventSource repeats it: its `after` is the old one, the header wins.
    const again = await open('ann', { after: top!.top }, { 'last-event-id': seen[1]!.id! });
    await subscribers(1);
    await db.sql`INSERT INTO note VALUES (4, 'ann', 'a')`;
    const resumed = await within(take(again, 4), WAIT, 'the missed events and one more');
    again.abort();
    expect(resumed.map(rowOf)).toEqual([
      { op: 'INSERT', row: { id: 3, owner: 'ann' } },
      { op: 'UPDATE', row: { id: 1, owner: 'ann' } },
      { op: 'DELETE', row: null },
      { op: 'INSERT', row: { id: 4, owner: 'ann' } },
    ]);
    // Ordered ids, each after the one resumed from: nothing sent twice.
    const ids = [seen[1]!.id!, ...resumed.map((e) => e.id!)];
    for (let i = 1; i < ids.length; i++) expect(comparePositions(ids[i - 1]!, ids[i]!)).toBe(-1);
  });

  it('refuses a Last-Event-ID that is not a position like a bad after, and changes nothing', async () => {
    const before = await db.sql`SELECT * FROM note ORDER BY id`;
    for (const bad of ['01', "1'; DELETE FROM note; --", 'abc', '']) {
      const stream = await open('ann', {}, { 'last-event-id': bad });
      const { next } = await within(readAll(stream), WAIT, 'the refusal');
      expect(next).toHaveLength(1);
      expect((next[0] as { errors?: { extensions?: { code?: string }; message: string }[] }).errors?.map((e) => [e.extensions?.code, e.message])).toEqual([
        ['BAD_USER_INPUT', 'after must be a position received from this stream'],
      ]);
    }
    expect(await db.sql`SELECT * FROM note ORDER BY id`).toEqual(before);
  });

  it('gives live-query events no id (they have no position to resume from)', async () => {
    const stream = await sse(gw.url, { query: 'subscription { note(order_by: {id: asc}) { id } }' }, { authorization: `Bearer ${await gw.token('ann')}` });
    const [event] = await within(take(stream, 1), WAIT, 'the first result');
    stream.abort();
    expect(JSON.parse(event!.data)).toEqual({ data: { note: [{ id: 1 }, { id: 3 }, { id: 4 }] } });
    expect(event!.id).toBeUndefined();
  });
});
