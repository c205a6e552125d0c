#!/usr/bin/env node
// rowgate is written in TypeScript and runs through tsx, so there is no build step to forget.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
// Exit explicitly: the WebAssembly parser's runtime resets process.exitCode from its own timers.
process.exit(code);
