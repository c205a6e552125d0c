import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { connect } from '../src/db/index.ts';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { run, within, wsClient } from './support/transports.ts';
import { ids, killChildren, serveChild, socketQuery, WAIT, writeConfigFile } from './support/watch.ts';

// Issue 14: `rowgate serve --watch` as a role that is not a superuser, so the DDL event trigger
// cannot be installed and the catalog is polled (watch.catalogPollMs). The DDL is done by the
// superuser, as a migration would be; a socket with two subscriptions stays open across it.
const ROLE = `rowgate_gw_${Math.random().toString(36).slice(2, 10)}`;
// Registered before useTestDatabase, so it runs after the database (which the role owns) is dropped.
afterAll(async () => {
  const server = connect(inject('databaseUrl'), { max: 1 });
  await server.unsafe(`DROP ROLE IF EXISTS ${ROLE}`);
  await server.end();
});
const db = useTestDatabase();
const SECRET = 'watch-poll-secret-0123456789abcdef0123456';
let dir: string;
let configPath: string;

const config = () => ({
  database: { url: roleUrl() },
  auth: { jwt: { secret: SECRET } },
  watch: { catalogPollMs: 200 },
  tables: { note: { select: 'SELECT * FROM note WHERE owner = :sender' }, tag: { select: 'SELECT * FROM tag WHERE owner = :sender' } },
});
const token = (sender: string) => signToken(parseConfig(config(), {}), { sender, expires: '1h' });

// The embedded server (the WAL pass) asks for passwords; the machine's trusts 127.0.0.1.
const PASSWORD = randomBytes(12).toString('hex');
function roleUrl(): string {
  const u = new URL(db.url);
  u.username = ROLE;
  u.password = PASSWORD;
  return u.toString();
}

beforeAll(async () => {
  const database = new URL(db.url).pathname.slice(1);
  // What a gateway's own role has in a typical deployment: it owns its database (capture creates
  // the rowgate schema there) and the tables it serves (capture triggers), and nothing more.
  await db.sql.unsafe(`
    CREATE ROLE ${ROLE} LOGIN NOSUPERUSER PASSWORD '${PASSWORD}';
    ALTER DATABASE ${database} OWNER TO ${ROLE};
    GRANT CREATE ON SCHEMA public TO ${ROLE};
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
    CREATE TABLE tag (id int PRIMARY KEY, owner text NOT NULL, label text NOT NULL);
    ALTER TABLE note OWNER TO ${ROLE};
    ALTER TABLE tag OWNER TO ${ROLE};
    INSERT INTO note VALUES (1, 'alice', 'a1');
    INSERT INTO tag VALUES (1, 'alice', 'red');
  `);
  dir = mkdtempSync(join(tmpdir(), 'rowgate-watch-poll-'));
  configPath = join(dir, 'rowgate.config.json');
  writeConfigFile(configPath, config());
});
afterAll(async () => {
  killChildren();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('rowgate serve --watch without a superuser (catalog polling)', () => {
  it('serves DDL done by another role without a restart; the untouched subscription keeps delivering', async () => {
    const served = await serveChild(configPath, ['--watch']);
    expect(await served.line((l) => l.ddl !== undefined, 'how DDL is watched')).toMatchObject({ ddl: 'polling', pollMs: 200 });
    const [{ present }] = (await db.sql`SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'rowgate_ddl') AS present`) as unknown as [{ present: boolean }];
    expect(present).toBe(false);

    const client = wsClient(served.url.replace(/^http/, 'ws'), { Authorization: `Bearer ${await token('alice')}` });
    await within(client.connected, WAIT, 'the socket');
    let closed = false;
    void client.closed.then(() => (closed = true));
    const notes = run(client.client, 'subscription { note { id } }');
    const tags = run(client.client, 'subscription { tag(order_by: { id: asc }) { id } }');
    await within(notes.received(1), WAIT, 'the first note result');
    await within(tags.received(1), WAIT, 'the first tag result');
    expect((await socketQuery(client, '{ note { mood } }')).errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');

    // The superuser's DDL: no NOTIFY reaches the gateway; the poll sees the catalog differ.
    await db.sql`ALTER TABLE note ADD COLUMN mood text NOT NULL DEFAULT 'calm'`;
    expect(await served.reload(1)).toMatchObject({ outcome: 'applied', reason: 'catalog poll', changed: ['note'] });
    expect((await socketQuery(client, '{ note { id mood } }')).values).toEqual([{ data: { note: [{ id: 1, mood: 'calm' }] } }]);
    expect((await within(notes.done, WAIT, 'the note subscription to end')).errors?.map((e) => e.extensions?.['code'])).toEqual(['SCHEMA_CHANGED']);

    // The tag subscription reads nothing that changed: it goes on, on the same socket.
    await db.sql`INSERT INTO tag VALUES (2, 'alice', 'green')`;
    await within(tags.received(2), WAIT, 'the tag subscription after the DDL');
    expect(ids(tags.values[1], 'tag')).toEqual([1, 2]);
    // A write through the altered table is captured and delivered to a new subscription.
    const again = run(client.client, 'subscription { note(order_by: { id: asc }) { id mood } }');
    await within(again.received(1), WAIT, 'the re-subscribed note');
    await db.sql`INSERT INTO note (id, owner, body, mood) VALUES (2, 'alice', 'a2', 'glad')`;
    await within(again.received(2), WAIT, 'a note commit after the DDL');
    expect(again.values[1]).toEqual({ data: { note: [{ id: 1, mood: 'calm' }, { id: 2, mood: 'glad' }] } });

    expect(closed).toBe(false);
    again.stop();
    tags.stop();
    await client.client.dispose();
    expect(await served.stop()).toBe(0);
  });
});
