import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { signToken } from '../src/server/token.ts';
import { useTestDatabase } from './support/db.ts';
import { run, within, wsClient } from './support/transports.ts';
import { ids, killChildren, post, serveChild, socketQuery, WAIT, writeConfigFile } from './support/watch.ts';

// Issue 14: what a reload (SIGHUP) applies besides the schema, without a restart: a rotated JWT
// secret and admin secret, limits; and what it names as needing a restart. `rowgate serve` runs as
// a child process, as operators run it.
const db = useTestDatabase();
const OLD_SECRET = 'reload-settings-old-secret-0123456789abcdef';
const NEW_SECRET = 'reload-settings-new-secret-fedcba9876543210';
let dir: string;
let configPath: string;

const TABLES = { note: { select: 'SELECT * FROM note WHERE owner = :sender' } };
interface Settings {
  secret: string;
  admin: string;
  limits?: Record<string, unknown>;
  database?: Record<string, unknown>;
  algorithms?: string[];
}
const config = (s: Settings) => ({
  database: { url: db.url, ...s.database },
  auth: { jwt: { secret: s.secret, ...(s.algorithms ? { algorithms: s.algorithms } : {}) }, adminSecret: s.admin },
  ...(s.limits ? { limits: s.limits } : {}),
  tables: TABLES,
});
const tokenFor = (secret: string, sender: string) => signToken(parseConfig(config({ secret, admin: 'x' }), {}), { sender, expires: '1h' });
const bearer = async (secret: string) => ({ authorization: `Bearer ${await tokenFor(secret, 'alice')}` });
const NOTES = '{ note(order_by: { id: asc }) { id } }';
const code = (body: { errors?: { extensions?: Record<string, unknown> }[] }) => body.errors?.[0]?.extensions?.['code'];

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL);
    INSERT INTO note VALUES (1, 'alice'), (2, 'alice'), (3, 'alice');
  `);
  dir = mkdtempSync(join(tmpdir(), 'rowgate-reload-settings-'));
  configPath = join(dir, 'rowgate.config.json');
});
afterAll(() => {
  killChildren();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('reload applies secrets and limits without a restart', () => {
  it('a token signed with the new secret works after SIGHUP, the old one is refused; new limits hold; restart-only keys are named', async () => {
    writeConfigFile(configPath, config({ secret: OLD_SECRET, admin: 'old-admin-secret' }));
    const served = await serveChild(configPath, []);
    expect((await post(served.url, await bearer(OLD_SECRET), NOTES)).body).toEqual({ data: { note: [{ id: 1 }, { id: 2 }, { id: 3 }] } });
    expect(code((await post(served.url, await bearer(NEW_SECRET), NOTES)).body)).toBe('UNAUTHENTICATED');
    // A socket authenticated before the rotation.
    const before = wsClient(served.url.replace(/^http/, 'ws'), await bearer(OLD_SECRET));
    await within(before.connected, WAIT, 'the socket opened before the reload');

    writeConfigFile(
      configPath,
      config({ secret: NEW_SECRET, admin: 'new-admin-secret', limits: { maxRows: 2, maxSubscriptionsPerSocket: 1, statementTimeoutMs: 5000 }, database: { livePoolSize: 2 } }),
    );
    served.child.kill('SIGHUP');
    const line = await served.reload(1);
    expect(line).toMatchObject({ outcome: 'applied', reason: 'SIGHUP', changed: [], applied: ['auth', 'limits'], needRestart: ['database', 'limits.statementTimeoutMs'] });

    // The rotated secret: old tokens refused over HTTP and for new sockets, new ones accepted.
    const old = await post(served.url, await bearer(OLD_SECRET), NOTES);
    expect(old.status).toBe(401);
    expect(code(old.body)).toBe('UNAUTHENTICATED');
    expect((await post(served.url, await bearer(NEW_SECRET), NOTES)).body).toEqual({ data: { note: [{ id: 1 }, { id: 2 }] } });
    const refused = wsClient(served.url.replace(/^http/, 'ws'), await bearer(OLD_SECRET));
    expect((await within(refused.closed, WAIT, 'the socket with an old token to be refused')).code).toBe(4403);
    // The admin secret rotated too (it also opens /metrics).
    expect(code((await post(served.url, { 'x-rowgate-admin-secret': 'old-admin-secret' }, NOTES)).body)).toBe('UNAUTHENTICATED');
    expect(ids((await post(served.url, { 'x-rowgate-admin-secret': 'new-admin-secret' }, NOTES)).body, 'note')).toEqual([1, 2]);
    const metrics = (secret: string) => fetch(served.url.replace(/\/graphql$/, '/metrics'), { headers: { 'x-rowgate-admin-secret': secret } }).then((r) => r.status);
    expect([await metrics('old-admin-secret'), await metrics('new-admin-secret')]).toEqual([401, 200]);

    // limits.maxSubscriptionsPerSocket: a second subscription on a new socket is refused.
    const after = wsClient(served.url.replace(/^http/, 'ws'), await bearer(NEW_SECRET));
    await within(after.connected, WAIT, 'a socket with a new token');
    const live = run(after.client, 'subscription { note(order_by: { id: asc }) { id } }');
    await within(live.received(1), WAIT, 'the first live result');
    expect(ids(live.values[0], 'note')).toEqual([1, 2]);
    const second = await within(run(after.client, 'subscription { note { id } }').done, WAIT, 'the second subscription');
    expect(second.errors?.map((e) => e.extensions?.['code'])).toEqual(['LIMIT_EXCEEDED']);
    // The socket authenticated before the rotation keeps its session until its token expires (docs).
    expect((await socketQuery(before, NOTES)).values).toEqual([{ data: { note: [{ id: 1 }, { id: 2 }] } }]);

    // An auth section that cannot work fails the reload and changes nothing.
    writeConfigFile(configPath, config({ secret: 'a-third-secret-0123456789abcdef0123456789', admin: 'new-admin-secret', algorithms: ['XX256'] }));
    served.child.kill('SIGHUP');
    expect(await served.reload(2)).toMatchObject({ outcome: 'failed' });
    expect((await served.reload(2)).error).toContain('auth.jwt.algorithms: "XX256" is not a supported JWS algorithm');
    expect(ids((await post(served.url, await bearer(NEW_SECRET), NOTES)).body, 'note')).toEqual([1, 2]);

    live.stop();
    await before.client.dispose();
    await after.client.dispose();
    expect(await served.stop()).toBe(0);
  });
});
