import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { useTestDatabase } from './support/db.ts';

// The package as a user gets it: `npm pack` (prepack builds dist/), installed without devDependencies
// into a fresh folder, run there through `npx rowgate`. Packing and installing take tens of seconds.
vi.setConfig({ testTimeout: 240_000, hookTimeout: 240_000 });
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const db = useTestDatabase();
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rowgate-install-'));
  await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: ROOT });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error('npm pack wrote no tarball');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'rowgate-install-test', private: true }));
  await run('npm', ['install', `./${tarball}`, '--omit=dev', '--no-audit', '--no-fund'], { cwd: dir });
  await db.sql.unsafe(`CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL, name text);
    INSERT INTO account VALUES (1, 'alice', 'Alice'), (2, 'bob', 'Bob')`);
  writeFileSync(join(dir, 'rowgate.config.json'), JSON.stringify({
    database: { url: db.url },
    auth: { jwt: { secret: 'install-test-secret-of-at-least-32-bytes!' } },
    tables: { account: { select: ['SELECT * FROM account WHERE identity = :sender'] } },
  }));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function env(): NodeJS.ProcessEnv {
  const e = { ...process.env };
  delete e['DATABASE_URL'];
  return e;
}

it('installs without tsx or sources and runs compiled JavaScript', () => {
  const pkg = join(dir, 'node_modules', 'rowgate');
  expect(existsSync(join(pkg, 'dist', 'cli', 'main.js'))).toBe(true);
  expect(existsSync(join(pkg, 'src'))).toBe(false);
  expect(existsSync(join(pkg, 'test'))).toBe(false);
  expect(existsSync(join(pkg, 'bench'))).toBe(false);
  expect(existsSync(join(dir, 'node_modules', 'tsx'))).toBe(false);
});

it('`npx rowgate serve` answers a query with a token from `npx rowgate token`', async () => {
  const { stdout: token } = await run('npx', ['rowgate', 'token', '--sender', 'alice'], { cwd: dir, env: env() });
  const child = spawn('npx', ['rowgate', 'serve', '--port', '0'], { cwd: dir, env: env(), detached: true });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('exit', done));
  try {
    const url = await new Promise<string>((ok, fail) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /rowgate: serving (\S+)/.exec(out);
        if (m?.[1]) ok(m[1]);
      });
      void exited.then((code) => fail(new Error(`serve exited with ${code} before serving:\n${err}`)));
    });
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token.trim()}` },
      body: JSON.stringify({ query: '{ account { name } }' }),
    });
    expect(await res.json()).toEqual({ data: { account: [{ name: 'Alice' }] } });
  } finally {
    // npx runs rowgate as its child: signal the whole group.
    if (child.pid) process.kill(-child.pid, 'SIGTERM');
    await exited;
  }
});
