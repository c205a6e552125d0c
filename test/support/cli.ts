import { execFile, spawn } from 'node:child_process';
import { resolve } from 'node:path';

/** `bin/rowgate.mjs`, run as `npx rowgate` runs it: a Node process of its own. */
export const ROWGATE_BIN = resolve(import.meta.dirname, '../../bin/rowgate.mjs');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `env` on top of this process's environment, less a DATABASE_URL the caller did not pass. */
function environment(env: Record<string, string>): NodeJS.ProcessEnv {
  const merged: NodeJS.ProcessEnv = { ...process.env };
  delete merged['DATABASE_URL'];
  return { ...merged, ...env };
}

/** Runs `rowgate …args` in `cwd` to its end. */
export function runRowgate(cwd: string, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((done) => {
    execFile(process.execPath, [ROWGATE_BIN, ...args], { cwd, env: environment(env), timeout: 150_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

export interface RunningRowgate {
  /** The URL after `rowgate: serving `. */
  url: string;
  /** SIGTERM, then the exit code once the process has shut itself down. */
  stop(): Promise<number | null>;
  output(): string;
}

/** Starts a serving command (`serve`, `demo`) in `cwd` and resolves once it says where it serves. */
export function startRowgate(cwd: string, args: string[], env: Record<string, string> = {}): Promise<RunningRowgate> {
  const child = spawn(process.execPath, [ROWGATE_BIN, ...args], { cwd, env: environment(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  return new Promise((ok, fail) => {
    child.stdout.on('data', () => {
      const m = /rowgate: serving (\S+)/.exec(out);
      if (m) ok({ url: m[1]!, stop: () => (child.kill('SIGTERM'), exited), output: () => out });
    });
    void exited.then((code) => fail(new Error(`rowgate ${args.join(' ')} exited (${code}) before it served:\n${out}`)));
  });
}
