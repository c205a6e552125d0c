#!/usr/bin/env node
// A clone runs its TypeScript sources through tsx (a devDependency), so editing src/ needs no build
// and can never run stale output; the published package ships no src/, only the compiled dist/
// (`npm run build`, run by `prepack`), and runs that with plain Node.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let main;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(source.href));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
const code = await main(process.argv.slice(2));
// Exit explicitly: the WebAssembly parser's runtime resets process.exitCode from its own timers.
process.exit(code);
