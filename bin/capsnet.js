#!/usr/bin/env node
// The `capsnet` command: runs the bundled CLI (built by `npm run build`, or by `npm ci` via prepare).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('capsnet: dist/cli.js is missing. Run `npm run build` in the capsnet-webgpu folder first.');
  process.exit(1);
}
await import(cli.href);
