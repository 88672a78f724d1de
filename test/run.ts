// The test runner behind `npm test`: loads every test/**/*.test.ts (or those whose path contains one
// of the arguments), runs them with uvu in one process sharing one GPU device, and ends with
// "N passed, N failed, N skipped" and a non-zero exit code when anything failed.
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { releaseGpu } from './helpers/gpu.ts';

const root = fileURLToPath(new URL('.', import.meta.url));
const filters = process.argv.slice(2);

function findTests(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? findTests(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []))
    .sort();
}

const files = findTests(root).filter((f) => filters.length === 0 || filters.some((p) => relative(root, f).includes(p)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(2);
}

type Result = [string | true, number, number, number]; // errors, passed, skipped, total
const g = globalThis as unknown as { UVU_DEFER: number; UVU_QUEUE: unknown[][]; UVU_INDEX: number };
g.UVU_DEFER = 1;
g.UVU_QUEUE = [];
const { exec } = await import('uvu');

for (const [index, file] of files.entries()) {
  g.UVU_INDEX = index;
  g.UVU_QUEUE.push([relative(root, file)]);
  await import(pathToFileURL(file).href);
}

let passed = 0;
let total = 0;
let skipped = 0;
for (const group of g.UVU_QUEUE) {
  for (let k = 1; k < group.length; k++) {
    const run = group[k] as () => Promise<Result>;
    group[k] = async () => {
      const result = await run();
      passed += result[1];
      skipped += result[2];
      total += result[3];
      return result;
    };
  }
}

const started = performance.now();
try {
  await exec();
} finally {
  await releaseGpu();
}
const failed = total - passed;
console.log(`test files: ${files.length}, time ${((performance.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 ? 1 : (process.exitCode ?? 0);
