import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A new temp directory to hold an embedded PostgreSQL's data. The server runs as an unprivileged
 * user when the tests run as root, so it must be able to enter the directory.
 */
export function serverDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}
