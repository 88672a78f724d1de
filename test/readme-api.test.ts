// The README's library examples (section "Library API"), run as a user would: each ```js block
// written next to the package (so `import ... from 'capsnet-webgpu'` resolves to the built package
// by its exports, as from a project that installed it) and run with node in an empty folder. They
// must finish (exit 0) and print what they promise; the checkpoint the training example saves must
// load. The built package (dist/, `npm run build`) is what runs, not src/.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { loadMnist } from '../src/io/idx-file.ts';
import { loadCheckpoint } from '../src/io/checkpoint-file.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const test = suite('README: the library API examples');

/** The ```js blocks of the README's "## Library API" section. */
function examples(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Library API\n');
  assert.ok(start >= 0, 'the README has a "## Library API" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
}

function run(code: string, name: string, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const dir = join(root, 'test-output');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, code);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('error', reject);
    child.on('close', (exit) => {
      clearTimeout(timer);
      resolve({ code: exit, stdout, stderr });
    });
  });
}

let cwd = '';
test.before(() => {
  assert.ok(existsSync(join(root, 'dist', 'index.js')), 'dist/index.js is missing: run `npm run build`');
  cwd = mkdtempSync(join(tmpdir(), 'capsnet-readme-'));
});
test.after(() => rmSync(cwd, { recursive: true, force: true }));

test('there are two examples: prediction and training', () => {
  const blocks = examples();
  assert.is(blocks.length, 2);
  for (const block of blocks) assert.match(block, /from 'capsnet-webgpu'/);
});

test('prediction: the pretrained model reads the first 8 MNIST test digits right, with lengths and reconstructions', async () => {
  const r = await run(examples()[0], 'readme-predict', cwd);
  assert.is(r.code, 0, r.stderr);
  const labels = Array.from(loadMnist(undefined, ['test']).test.labels.subarray(0, 8)).join(' ');
  assert.match(r.stdout, new RegExp(`^labels {4}${labels}$`, 'm'));
  assert.match(r.stdout, new RegExp(`^predicted ${labels}$`, 'm'), 'the shipped model (99.3%) gets these 8 right');
  assert.match(r.stdout, /^length of the first prediction [01]\.\d{3} ; reconstruction pixels 6272$/m);
});

test('training: 30 steps of a small model lower the loss, evaluate, and save a checkpoint that loads', async () => {
  const r = await run(examples()[1], 'readme-train', cwd);
  assert.is(r.code, 0, r.stderr);
  const losses = [...r.stdout.matchAll(/^loss (\d+\.\d{4})$/gm)].map((m) => Number(m[1]));
  assert.is(losses.length, 3, r.stdout);
  assert.ok(losses[2] < losses[0], `loss ${losses.join(' -> ')}`);
  const accuracy = r.stdout.match(/^after 30 steps: (\d+\.\d)% of 500 test images$/m);
  assert.ok(accuracy, r.stdout);
  assert.ok(Number(accuracy![1]) > 20, `above chance after 30 steps: ${accuracy![1]}%`);
  const ckpt = await loadCheckpoint(join(cwd, 'small.safetensors'));
  assert.is(ckpt.step, 30);
  assert.is(ckpt.config.conv1Channels, 32);
  assert.is(ckpt.optimizer?.step, 30);
});

test.run();
