import { spawn, type ChildProcess } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, within, type Outcome, type TestClient } from './transports.ts';

// `rowgate serve` in a child process, as users run it, for the reload tests (server-watch*.test.ts,
// server-reload-settings.test.ts): its JSON log is read back line by line to wait for reloads.

const BIN = fileURLToPath(new URL('../../bin/rowgate.mjs', import.meta.url));
export const WAIT = 20_000;

/** Writes a config the way many editors save: a new file renamed over the old one. */
export function writeConfigFile(path: string, config: unknown): void {
  const aside = `${path}.tmp`;
  writeFileSync(aside, JSON.stringify(config, null, 2));
  renameSync(aside, path);
}

export interface LogLine {
  msg: string;
  outcome?: string;
  reason?: string;
  error?: string;
  changed?: string[];
  applied?: string[];
  needRestart?: string[];
  ddl?: string;
  pollMs?: number;
}

export interface ServedChild {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  /** The n-th reload's log line (1-based) that applied or failed, once it is written. */
  reload(n: number): Promise<LogLine>;
  /** The first JSON log line that `matches`, once it is written (pino may write after the serving line). */
  line(matches: (line: LogLine) => boolean, what: string): Promise<LogLine>;
  output(): string;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
}

const children = new Set<ChildProcess>();

/** Kills what `serveChild` started and is still running (afterAll). */
export function killChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
}

/** `rowgate serve --config configPath --port 0 …flags` in a child process; resolves once it says it is serving. */
export async function serveChild(configPath: string, flags: string[], extraEnv: Record<string, string> = {}): Promise<ServedChild> {
  const env = { ...process.env };
  for (const name of ['DATABASE_URL', 'PORT', 'ROWGATE_JWT_SECRET', 'ROWGATE_ADMIN_SECRET', 'LOG_LEVEL']) delete env[name];
  Object.assign(env, extraEnv);
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configPath, '--port', '0', ...flags], { cwd: dirname(configPath), env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  const all: LogLine[] = [];
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
      all.push(line);
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
    line: async (matches, what) => {
      const deadline = Date.now() + WAIT;
      for (;;) {
        const found = all.find(matches);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`timed out waiting for the log line: ${what} (output so far:\n${out})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    reload: (n) =>
      within(
        reloads.length >= n ? Promise.resolve(reloads[n - 1]!) : new Promise<LogLine>((resolve) => waiting.push({ n, resolve })),
        WAIT,
        `reload ${n} to be logged (output so far:\n${out})`,
      ),
    stop: () => {
      child.kill('SIGTERM');
      return within(exited, WAIT, 'the gateway to stop');
    },
  };
}

export interface GqlResult {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** One POST to `url` with `headers`. */
export async function post(url: string, headers: Record<string, string>, query: string): Promise<{ status: number; body: GqlResult }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ query }) });
  return { status: res.status, body: (await res.json()) as GqlResult };
}

/** One query on the socket: its single result. */
export async function socketQuery(client: TestClient, text: string): Promise<Outcome> {
  return within(run(client.client, text).done, WAIT, `the query ${text}`);
}

/** The ids of a result's `field` list. */
export const ids = (result: { data?: Record<string, unknown> | null | undefined } | undefined, field: string) => ((result?.data?.[field] as { id: number }[] | undefined) ?? []).map((r) => r.id);
