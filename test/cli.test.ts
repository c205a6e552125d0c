import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildClientSchema, getIntrospectionQuery, printSchema, type IntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.ts';
import { parseConfig } from '../src/config/index.ts';
import { noAuthenticationWarning } from '../src/server/auth.ts';
import { useTestDatabase } from './support/db.ts';
import { startGateway } from './support/gateway.ts';
import { serverDir } from './support/server-dir.ts';

// The real CLI (docs/configuration.md): `node bin/rowgate.mjs …` in a directory holding rowgate.config.json.
const db = useTestDatabase();
// Every test starts Node processes (tsx compiles the CLI in each), several at once: on a loaded
// machine one takes tens of seconds, so the file allows more than the default 60 s per test.
vi.setConfig({ testTimeout: 180_000 });
const BIN = resolve(import.meta.dirname, '../bin/rowgate.mjs');
const DEMO_CONFIG = resolve(import.meta.dirname, '../demo/rowgate.config.json');
const INJECT = "' OR 1=1 --";

let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rowgate-cli-'));
  await db.sql.unsafe(`
    CREATE TABLE account (id int PRIMARY KEY, identity text NOT NULL UNIQUE, name text);
    CREATE TABLE admin (identity text PRIMARY KEY);
    CREATE TABLE player (id int PRIMARY KEY REFERENCES account(id), level int NOT NULL);
  `);
  // The default config file, for the commands run without --config.
  writeConfig('rowgate.config.json', GOOD_TABLES);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const GOOD_TABLES = {
  account: {
    select: ['SELECT * FROM account WHERE identity = :sender', 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'],
    insert: { check: ['SELECT * FROM account WHERE identity = :sender'], columns: ['name'], set: { identity: ':sender' } },
    update: { filter: ['SELECT * FROM account WHERE identity = :sender'], check: ['SELECT * FROM account WHERE identity = :sender'], columns: ['name'] },
    delete: ['SELECT * FROM account WHERE identity = :sender'],
  },
  player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.id', 'SELECT * FROM player WHERE level = :level'] },
  admin: { select: 'public' },
};

/** Writes `name` in the temp directory: a config on the test database with these tables. */
function writeConfig(name: string, tables: Record<string, unknown>, more: Record<string, unknown> = {}): string {
  writeFileSync(join(dir, name), JSON.stringify({ database: { url: db.url }, tables, ...more }, null, 2));
  return name;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * A long-running command (`serve`, `demo`) in `cwd` until `use` is done: `use` gets the match of
 * `ready` in its stdout; the command then gets SIGTERM and must exit by itself.
 */
async function whileRunning<T>(cwd: string, args: string[], ready: RegExp, use: (match: RegExpExecArray) => Promise<T>): Promise<{ result: T; run: Run }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: withoutDatabaseUrl() });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('exit', done));
  const match = await new Promise<RegExpExecArray>((ok, fail) => {
    child.stdout.on('data', () => {
      const m = ready.exec(out.stdout);
      if (m) ok(m);
    });
    void exited.then(() => fail(new Error(`${args[0]} exited before it was ready:\n${out.stderr}`)));
  });
  try {
    return { result: await use(match), run: { code: (child.kill('SIGTERM'), await exited), ...out } };
  } finally {
    child.kill('SIGKILL');
  }
}

/** The file's database URL must be the one used: no DATABASE_URL from the environment. */
function withoutDatabaseUrl(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['DATABASE_URL'];
  return env;
}

function rowgate(...args: string[]): Promise<Run> {
  return rowgateIn(dir, ...args);
}

/** As `rowgate`, with these environment variables set (`init` reads DATABASE_URL). */
function rowgateWith(extra: Record<string, string>, ...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd: dir, env: { ...withoutDatabaseUrl(), ...extra }, timeout: 150_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

function rowgateIn(cwd: string, ...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env: withoutDatabaseUrl(), timeout: 150_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      done({ code, stdout, stderr });
    });
  });
}

describe('rowgate init', () => {
  it('writes a config listing every table, private until its rules are written, that check accepts', async () => {
    const run = await rowgateWith({ DATABASE_URL: db.url }, 'init', '--config', 'init.json');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('wrote init.json: 3 tables');
    const written = JSON.parse(readFileSync(join(dir, 'init.json'), 'utf8')) as { tables: Record<string, { select: string; relationships?: Record<string, string> }>; auth: { jwt: { secret: string } } };
    expect(Object.keys(written.tables)).toEqual(['account', 'admin', 'player']);
    expect(written.tables['account']).toEqual({ select: 'SELECT * FROM account WHERE false', relationships: { players: 'players' } });
    expect(written.tables['player']?.relationships).toEqual({ account: 'account' });
    expect(written.auth.jwt.secret).toMatch(/^[0-9a-f]{64}$/);
    // Valid as written, and exposes nothing to anyone until the owner writes rules.
    const check = await rowgateWith({ DATABASE_URL: db.url }, 'check', '--config', 'init.json');
    expect(check.code).toBe(0);
    await db.sql`INSERT INTO account VALUES (1, 'alice', 'a') ON CONFLICT DO NOTHING`;
    const api = await startGateway(db, { tables: written.tables });
    expect((await api.gql('alice', '{ account { id } player { id } admin { identity } }')).data).toEqual({ account: [], player: [], admin: [] });
  });

  it('does not replace an existing file without --force, and needs DATABASE_URL', async () => {
    writeFileSync(join(dir, 'keep.json'), '{"mine": true}');
    const refused = await rowgateWith({ DATABASE_URL: db.url }, 'init', '--config', 'keep.json');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('keep.json exists; pass --force');
    expect(readFileSync(join(dir, 'keep.json'), 'utf8')).toBe('{"mine": true}');
    const forced = await rowgateWith({ DATABASE_URL: db.url }, 'init', '--config', 'keep.json', '--force');
    expect(forced.code).toBe(0);
    const noUrl = await rowgate('init', '--config', 'other.json');
    expect(noUrl.code).toBe(1);
    expect(noUrl.stderr).toContain('set DATABASE_URL');
  });
});

/** `rowgate check --config <config>`: exit 1, nothing on stdout, `lines` together on stderr. */
async function checkFails(config: string, lines: string[]): Promise<Run> {
  const run = await rowgate('check', '--config', config);
  expect(run.code).toBe(1);
  expect(run.stdout).toBe('');
  expect(run.stderr).toContain(lines.join('\n'));
  return run;
}

// Each test spawns its own process with its own config file, so they run concurrently.
describe.concurrent('rowgate check', () => {
  it('exits 0 and prints one summary line per table', async () => {
    const run = await rowgate('check');
    // Which database it looked at, on stderr, without user or password.
    const { hostname, port, pathname } = new URL(db.url);
    // No "claims" in the config: each rule parameter besides :sender is pointed at.
    expect(run.stderr).toBe(
      [
        `rowgate: database ${hostname}:${port}${pathname} (from database.url in the config)`,
        `rowgate: warning: tables.player.select[2], line 1, column 36: :level is read from the caller's token, and the config declares no "claims"`,
        '  SELECT * FROM player WHERE level = :level',
        `  ${' '.repeat(35)}^`,
        '  A token without "level" makes it null, which matches nothing. If tokens carry it, list it: "claims": ["level"] (a parameter not listed is then an error); else fix the name (:sender is the caller).',
        '',
      ].join('\n'),
    );
    expect(run.code).toBe(0);
    expect(run.stdout.trimEnd().split('\n')).toEqual([
      'account: select 2 rules, insert 1 rule, update 1 rule, delete 1 rule; reads admin',
      'player: select 2 rules, insert —, update —, delete —; reads account, admin',
      'admin: select public, insert —, update —, delete —',
      "claims read from the caller's token (null when a token lacks one): :level",
      'ok: 3 tables, every rule valid',
    ]);
  });

  it('exits 1 and prints every problem with its caret', async () => {
    const config = writeConfig('bad.json', {
      account: {
        select: ['SELECT * FROM account WHERE identity = :sender', 'SELECT account.* FROM account JOIN admin WHERE admin.identity = :sender'],
        delete: ['SELECT * FROM account\nWHERE identity = :sender\n  AND id = 1 LIMIT 5'],
      },
      player: { select: ['SELECT * FROM player WHERE lvl = :level'] },
    });
    const run = await rowgate('check', '--config', config);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    const [where, ...problems] = run.stderr.split('\n');
    expect(where).toMatch(/^rowgate: database /);
    const err = problems.join('\n');
    expect(err.startsWith('3 problems in the rules:\n\n')).toBe(true);
    expect(err).toContain(
      [
        'tables.account.select[2], line 1, column 42: a JOIN needs a join condition: "JOIN admin WHERE …" is not PostgreSQL',
        '  SELECT account.* FROM account JOIN admin WHERE admin.identity = :sender',
        `  ${' '.repeat(41)}^`,
        '  Write the condition with ON (`JOIN admin ON admin.identity = :sender`), or join without one: `CROSS JOIN admin` or `FROM account, admin`, and keep the WHERE.',
      ].join('\n'),
    );
    expect(err).toContain(
      [
        'tables.account.delete[1], line 3, column 20: LIMIT/OFFSET is not allowed in a rule',
        '    AND id = 1 LIMIT 5',
        `  ${' '.repeat(19)}^`,
      ].join('\n'),
    );
    expect(err).toContain(
      ['tables.player.select[1], line 1, column 28: unknown column "lvl"', '  SELECT * FROM player WHERE lvl = :level', `  ${' '.repeat(27)}^`].join('\n'),
    );
    // A stack trace would mean the error was not handled as a rule problem.
    expect(err).not.toMatch(/\n\s+at /);
  });

  it('exits 1 on a type error only PostgreSQL can find', async () => {
    const config = writeConfig('types.json', { account: { select: ["SELECT * FROM account WHERE id = 'x'"] } });
    const run = await rowgate('check', '--config', config);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('1 problem in the rules:\n\ntables.account.select[1]: PostgreSQL rejects this rule: invalid input syntax for type integer: "x"');
  });

  it('reports structure, cycle and planning problems of every rule in one run', async () => {
    const config = writeConfig('rounds.json', {
      // Structure: an unknown column. The second rule and admin's read each other: a cycle.
      account: { select: ['SELECT * FROM account WHERE identiti = :sender', 'SELECT account.* FROM account JOIN admin ON admin.identity = :sender'] },
      admin: { select: ['SELECT admin.* FROM admin JOIN account ON account.identity = admin.identity'] },
      // Planning: only PostgreSQL finds that 'x' is no integer. (The first rule reads the cycle: not planned.)
      player: { select: ['SELECT p.* FROM account a JOIN player p ON a.id = p.id', "SELECT * FROM player WHERE level = 'x'"] },
    });
    const run = await rowgate('check', '--config', config);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('3 problems in the rules:\n\n');
    expect(run.stderr).toContain('tables.account.select[1], line 1, column 29: unknown column "identiti"');
    expect(run.stderr).toContain('rules form a cycle: account → admin → account');
    expect(run.stderr).toContain('tables.player.select[2]: PostgreSQL rejects this rule: invalid input syntax for type integer: "x"');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('with "claims" declared, a rule parameter outside them is an error at its place', async () => {
    const tables = { ...GOOD_TABLES, account: { ...GOOD_TABLES.account, delete: ['SELECT * FROM account WHERE identity = :sendr'] } };
    const run = await checkFails(writeConfig('declared.json', tables, { claims: ['level'] }), [
      '1 problem in the rules:',
      '',
      'tables.account.delete[1], line 1, column 40: :sendr is not a claim the config declares',
      '  SELECT * FROM account WHERE identity = :sendr',
      `  ${' '.repeat(39)}^`,
      '  Declared in "claims": :level (and :sender, the caller). Fix the name, or add "sendr" to "claims" if tokens carry it.',
    ]);
    // :level is declared: neither an error nor a warning.
    expect(run.stderr).not.toContain(':level is');
    const fixed = await rowgate('check', '--config', writeConfig('declared-ok.json', GOOD_TABLES, { claims: ['level'] }));
    expect(fixed.code).toBe(0);
    expect(fixed.stderr).not.toContain('warning');
  });

  it('a preset taking a claim is checked like a rule parameter: an error outside "claims", a warning without it', async () => {
    const tables = { ...GOOD_TABLES, account: { ...GOOD_TABLES.account, insert: { ...GOOD_TABLES.account.insert, set: { identity: ':sender', name: ':nick' } } } };
    await checkFails(writeConfig('preset-declared.json', tables, { claims: ['level'] }), [
      '1 problem in the rules:',
      '',
      'tables.account.insert.set.name: :nick is not a claim the config declares',
      '  Declared in "claims": :level (and :sender, the caller). Fix the name, or add "nick" to "claims" if tokens carry it.',
    ]);
    const warned = await rowgate('check', '--config', writeConfig('preset-undeclared.json', tables));
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain(`rowgate: warning: tables.account.insert.set.name: :nick is read from the caller's token, and the config declares no "claims"`);
    expect(warned.stdout).toContain("claims read from the caller's token (null when a token lacks one): :level, :nick\n");
    const fixed = await rowgate('check', '--config', writeConfig('preset-ok.json', tables, { claims: ['level', 'nick'] }));
    expect(fixed.code).toBe(0);
    expect(fixed.stderr).not.toContain('warning');
  });

  it('exits 1 when a listed table is missing from the database', async () => {
    const config = writeConfig('missing.json', { account: { select: 'public' }, ghost: { select: 'public' } });
    const run = await rowgate('check', '--config', config);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('tables.ghost: no table "ghost" in schema "public"');
  });

  it('lists the claims the rules read, so a misspelt :sender shows', async () => {
    const config = writeConfig('claims.json', { account: { select: 'public', delete: ['SELECT * FROM account WHERE identity = :sendr'] } });
    const run = await rowgate('check', '--config', config);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("claims read from the caller's token (null when a token lacks one): :sendr\n");
    expect(run.stderr).toContain(`rowgate: warning: tables.account.delete[1], line 1, column 40: :sendr is read from the caller's token, and the config declares no "claims"`);
  });

  it('exits 1 naming the known relationships when a relationships rename names none', async () => {
    const config = writeConfig('renames.json', {
      ...GOOD_TABLES,
      account: { ...GOOD_TABLES.account, relationships: { players: 'members', playerz: 'squad' } },
      admin: { select: 'public', relationships: { accounts: 'granted' } },
    });
    const run = await checkFails(config, [
      'the config renames relationships that do not exist:',
      '  tables.account.relationships: "playerz" is not a relationship of account; its relationships are "players"',
      '  tables.admin.relationships: "accounts" is not a relationship of admin; it has none (they come from foreign keys between listed tables, on readable columns)',
    ]);
    // The valid rename is not reported.
    expect(run.stderr).not.toContain('"players" is not');
  });

  it('exits 1 when the config file does not exist', async () => {
    const run = await rowgate('check', '--config', 'nope.json');
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('cannot read config nope.json');
  });
});

describe.concurrent('rowgate explain', () => {
  it('prints SQL with placeholders and the bound values apart; the sender never reaches the SQL', async () => {
    const run = await rowgate('explain', '--table', 'player', '--sender', INJECT, '--claims', '{"level":3}');
    expect(run.stderr).toMatch(/^rowgate: database [^\n]+\n$/);
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    const bound = lines.filter((l) => l.startsWith('--   $'));
    const sqlLines = lines.filter((l) => !l.startsWith('--'));

    expect(lines[0]).toBe('-- visibility (select)');
    expect(lines.filter((l) => l.startsWith('-- ') && !l.startsWith('--   '))).toEqual([
      '-- visibility (select)',
      '-- insert check: not declared',
      '-- update filter: not declared',
      '-- update check: not declared',
      '-- delete: not declared',
    ]);
    expect(sqlLines).toHaveLength(1);
    const statement = sqlLines[0]!;
    expect(statement).toMatch(/^SELECT .* FROM "public"\."player" AS .* WHERE .*;$/);
    // Every placeholder the statement uses has its value on its own line, and nothing else is bound.
    const used = [...new Set([...statement.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])))].sort((a, b) => a - b);
    expect(used).toEqual(bound.map((_, i) => i + 1));
    // The sender twice (own account, admin, both through the account rules), then the level claim, as text.
    expect(bound).toEqual([`--   $1 = ${JSON.stringify(INJECT)}`, `--   $2 = ${JSON.stringify(INJECT)}`, '--   $3 = "3"']);
    for (const line of sqlLines) {
      expect(line).not.toContain(INJECT);
      expect(line).not.toContain('OR 1=1');
    }
  });

  it('shows every declared write rule', async () => {
    const run = await rowgate('explain', '--table', 'account', '--sender', 'alice');
    expect(run.code).toBe(0);
    const headers = run.stdout.split('\n').filter((l) => l.startsWith('-- ') && !l.startsWith('--   '));
    expect(headers).toEqual(['-- visibility (select)', '-- insert check', '-- update filter', '-- update check', '-- delete']);
    expect(run.stdout).toContain('--   $1 = "alice"');
    expect(run.stdout.split('\n').filter((l) => !l.startsWith('--')).every((l) => !l.includes('alice'))).toBe(true);
  });

  it('without a sender binds null', async () => {
    const run = await rowgate('explain', '--table', 'account');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('--   $1 = null');
  });

  it('exits 1 for a table that is not listed', async () => {
    const run = await rowgate('explain', '--table', 'secret');
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('table "secret" is not listed under "tables"');
  });

  it('exits 2 without --table', async () => {
    const run = await rowgate('explain');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('explain needs --table T');
  });
});

describe('rowgate schema', () => {
  it('prints the SDL serve exposes, Subscription type included', async () => {
    const config = 'served.json';
    // :level declared, so serve has nothing to warn about.
    writeFileSync(join(dir, config), JSON.stringify({ database: { url: db.url }, auth: { adminSecret: 'cli-admin' }, claims: ['level'], tables: GOOD_TABLES }));
    const printed = await rowgate('schema', '--config', config);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain('type Subscription {');
    expect(printed.stdout).toContain('account_changes(');
    const { result: introspection, run } = await whileRunning(dir, ['serve', '--port', '0', '--config', config], /rowgate: serving (\S+)/, async ([, url]) => {
      const res = await fetch(url!, { method: 'POST', headers: { 'content-type': 'application/json', 'x-rowgate-admin-secret': 'cli-admin' }, body: JSON.stringify({ query: getIntrospectionQuery() }) });
      return ((await res.json()) as { data: IntrospectionQuery }).data;
    });
    expect(run.code).toBe(0);
    // An admin secret is a way in: no warning.
    expect(run.stderr).not.toContain('warning');
    expect(printed.stdout.trimEnd()).toBe(printSchema(buildClientSchema(introspection)));
  });
});

describe('beside the demo (npm start)', () => {
  it('schema and check use the embedded database the demo runs, and say so; the demo prints its DATABASE_URL', async () => {
    const demoDir = serverDir('rowgate-cli-demo-');
    try {
      const { result, run } = await whileRunning(demoDir, ['demo', '--port', '0'], /DATABASE_URL=(\S+)/, async ([, url]) => {
        const check = await rowgateIn(demoDir, 'check', '--config', DEMO_CONFIG);
        const schema = await rowgateIn(demoDir, 'schema', '--config', DEMO_CONFIG);
        return { url: url!, check, schema };
      });
      expect(run.code).toBe(0);
      const { port, pathname } = new URL(result.url);
      expect(result.check.code).toBe(0);
      expect(result.check.stdout).toContain('every rule valid');
      expect(result.check.stderr).toMatch(
        new RegExp(`^rowgate: database 127\\.0\\.0\\.1:${port}${pathname}: no DATABASE_URL or database\\.url is set, so this is the embedded demo database in \\.rowgate/pgdata, already running as PostgreSQL process \\d+`),
      );
      expect(result.schema.code).toBe(0);
      expect(result.schema.stdout).toContain('type Subscription {');
      expect(result.schema.stderr).not.toContain('TypeError');
    } finally {
      rmSync(demoDir, { recursive: true, force: true });
    }
  });
});

describe('rowgate serve', () => {
  it('warns on stderr when the config can authenticate nobody, and every request is refused', async () => {
    const { result: status, run } = await whileRunning(dir, ['serve', '--port', '0'], /rowgate: serving (\S+)/, async ([, url]) => {
      const res = await fetch(url!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }' }) });
      return res.status;
    });
    expect(status).toBe(401);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('rowgate: warning: no way to authenticate anyone: every request is refused with 401; set auth.jwt.secret');
    // The default config declares no "claims": its :level is pointed at.
    expect(run.stderr).toContain(`rowgate: warning: tables.player.select[2], line 1, column 36: :level is read from the caller's token, and the config declares no "claims"`);
  });

  it('the warning: none with a usable secret, JWKS file or admin secret; a secret no accepted algorithm uses is none', () => {
    const warning = (auth: Record<string, unknown>) => noAuthenticationWarning(parseConfig({ auth, tables: {} }, {}).auth);
    expect(warning({ jwt: { secret: 's' } })).toBeNull();
    expect(warning({ jwt: { jwksFile: 'keys.json', algorithms: ['RS256'] } })).toBeNull();
    expect(warning({ adminSecret: 'a' })).toBeNull();
    expect(warning({ jwt: { secret: 's', algorithms: ['RS256'] } })).toContain('auth.jwt.secret is set, but auth.jwt.algorithms RS256 lists no HMAC algorithm');
    expect(warning({ anonymous: true })).toContain('every request is anonymous');
  });
});

describe('help and version', () => {
  const COMMANDS = ['serve', 'schema', 'token', 'check', 'explain', 'demo', 'capture', 'policies'];

  it('rowgate serve --help prints its usage and options and exits 0; --version prints package.json\'s version', async () => {
    const help = await rowgate('serve', '--help');
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout.startsWith('usage: rowgate serve [--config F] [--port N] [--host H] [--watch]\n')).toBe(true);
    for (const option of ['--config F', '--port N', '--host H', '--watch']) expect(help.stdout).toContain(option);
    const version = await rowgate('--version');
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`${(JSON.parse(readFileSync(resolve(import.meta.dirname, '../package.json'), 'utf8')) as { version: string }).version}\n`);
  });

  // The same entry point in this process (a process per case would be dozens of startups).
  it.each(COMMANDS)('%s --help, -h and help %s print its usage on stdout and exit 0', async (name) => {
    const help = await inProcess([name, '--help']);
    expect(help).toEqual({ code: 0, stdout: expect.stringMatching(new RegExp(`^usage: rowgate ${name}`)), stderr: '' });
    expect(await inProcess([name, '-h'])).toEqual(help);
    expect(await inProcess(['help', name])).toEqual(help);
  });

  it.each([['--help'], ['-h'], ['help']])('%s prints every command on stdout and exits 0', async (arg) => {
    const run = await inProcess([arg]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout.startsWith('usage: rowgate <command> [options]')).toBe(true);
    for (const name of COMMANDS) expect(run.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
  });

  it('no command exits 2 with the usage', async () => {
    const run = await inProcess([]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('usage: rowgate <command> [options]');
  });

  it('help of an unknown command exits 2', async () => {
    const run = await inProcess(['help', 'frobnicate']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "frobnicate"');
  });
});

/** `main(args)` in this process, with what it writes to stdout and stderr. */
async function inProcess(args: string[]): Promise<Run> {
  const out = { stdout: '', stderr: '' };
  const capture = (stream: 'stdout' | 'stderr') =>
    vi.spyOn(process[stream], 'write').mockImplementation((chunk: string | Uint8Array) => {
      out[stream] += chunk.toString();
      return true;
    });
  const spies = [capture('stdout'), capture('stderr')];
  try {
    return { code: await main(args), ...out };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

describe.concurrent('usage', () => {
  it('an unknown command exits 2 with the usage', async () => {
    const run = await rowgate('frobnicate');
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expect(run.stderr).toContain('usage: rowgate <command> [options]');
  });

  it("an unknown option exits 2 with the command's usage", async () => {
    const run = await rowgate('check', '--bogus');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('usage: rowgate check [--config F]');
  });

});
