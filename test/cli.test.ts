// The `capsnet` command as users run it: exit codes, messages, and node exiting by itself.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from './helpers/cli.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = suite('capsnet command');

cli('doctor names the adapter and its limits, passes its self-check and exits', async () => {
  const r = await runCli(['doctor']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /adapter:\s+\S+/);
  assert.match(r.stdout, /maxStorageBufferBindingSize\s+\d+/);
  assert.match(r.stdout, /self-check:\s+ok/);
});

cli('doctor --backend opengl uses the OpenGL (compatibility) adapter', async () => {
  const r = await runCli(['doctor', '--backend', 'opengl']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /backend:\s+opengl/);
  assert.match(r.stdout, /feature level: compatibility/);
});

cli('with no driver at all, doctor fails with the install command, not a stack trace', async () => {
  // Point Vulkan's loader and EGL's vendor lookup at nothing: what a machine without Mesa looks like.
  const r = await runCli(['doctor'], {
    env: { VK_ICD_FILENAMES: '/nonexistent', VK_DRIVER_FILES: '/nonexistent', __EGL_VENDOR_LIBRARY_FILENAMES: '/nonexistent' },
  });
  assert.is(r.code, 1);
  assert.match(r.stderr, /No WebGPU adapter found/);
  assert.match(r.stderr, /tools\/install-software-gpu\.sh/);
  assert.not.match(r.stderr, /GpuUnavailableError|\n\s+at .*\.(js|ts):\d+/);
});

cli('bad usage exits with code 2 and names the problem', async () => {
  const unknown = await runCli(['frobnicate']);
  assert.is(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  const badFlag = await runCli(['doctor', '--colour']);
  assert.is(badFlag.code, 2);
  assert.match(badFlag.stderr, /--colour/);
  const badBackend = await runCli(['doctor', '--backend', 'metal']);
  assert.is(badBackend.code, 2);
  assert.match(badBackend.stderr, /'metal' is not a backend; expected one of auto, default, vulkan, opengl/);
  const badEnv = await runCli(['doctor'], { env: { CAPSNET_BACKEND: 'metal' } });
  assert.is(badEnv.code, 2, badEnv.stderr);
  assert.match(badEnv.stderr, /CAPSNET_BACKEND: 'metal' is not a backend/);
  // Refused before anything is written (figures: test/train-cli.test.ts, which has a checkpoint).
  const out = join(tmpdir(), `capsnet-badenv-${process.pid}`);
  for (const command of [['train', '--out', out, '--steps', '1'], ['start', '--out', out]]) {
    const r = await runCli(command, { env: { CAPSNET_BACKEND: 'metal' } });
    assert.is(r.code, 2, `${command[0]}: ${r.stderr}`);
    assert.match(r.stderr, /CAPSNET_BACKEND: 'metal' is not a backend/, command[0]);
    assert.not.ok(existsSync(out), `${command[0]}: nothing written`);
  }
  const typo = await runCli(['trian', '--help']);
  assert.is(typo.code, 2, 'an unknown command with --help is still an unknown command');
  assert.match(typo.stderr, /unknown command 'trian'/);
  const both = await runCli(['doctor', '--all', '--backend', 'vulkan']);
  assert.is(both.code, 2);
  assert.match(both.stderr, /give --all or --backend, not both/);
});

cli('help lists the commands; --help after any command prints it too; no command is an error that shows it', async () => {
  const r = await runCli(['help']);
  assert.is(r.code, 0);
  assert.match(r.stdout, /doctor/);
  for (const command of ['train', 'eval', 'figures', 'start']) {
    const h = await runCli([command, '--out', 'never-written', '--help']);
    assert.is(h.code, 0, `${command} --help: ${h.stderr}`);
    assert.is(h.stdout, r.stdout, `${command} --help prints the help`);
  }
  assert.not.ok(existsSync('never-written'));
  const none = await runCli([]);
  assert.is(none.code, 2);
  assert.match(none.stderr, /usage: capsnet <command>/);
});

cli('the package resolves to the Node library, and under the browser condition to the browser bundle with its own types', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
  const entry = pkg.exports['.'];
  // Conditions are tried in order: browser first, or the Node types would shadow the browser's.
  assert.equal(Object.keys(entry), ['browser', 'types', 'default']);
  for (const file of [entry.browser.types, entry.browser.default, entry.types, entry.default]) assert.ok(existsSync(`${root}${file}`), `${file} is built`);
  const resolveWith = (conditions: string[]) => execFileSync(process.execPath, [...conditions, '--input-type=module', '-e', "console.log(import.meta.resolve('capsnet-webgpu'))"], { cwd: root, encoding: 'utf8' }).trim();
  assert.ok(resolveWith([]).endsWith('/dist/index.js'));
  assert.ok(resolveWith(['--conditions=browser']).endsWith('/dist/browser/capsnet.js'));
  // Both entry points export the same names around acquireGpu (one AcquireOptions), so code
  // type-checked against the Node types (TypeScript's default) builds for the browser too.
  for (const file of [entry.types, entry.browser.types]) {
    const text = readFileSync(`${root}${file}`, 'utf8');
    for (const name of ['acquireGpu', 'NODE_BACKENDS', 'BROWSER_HINT', 'AcquireOptions']) assert.match(text, new RegExp(`\\b${name}\\b`), `${file} exports ${name}`);
  }
  // The declarations name WebGPU's types: they reference @webgpu/types, a dependency (not a devDependency).
  for (const file of [entry.types, entry.browser.types]) assert.match(readFileSync(`${root}${file}`, 'utf8'), /^\/\/\/ <reference types="@webgpu\/types" \/>\n/);
  assert.ok(pkg.dependencies['@webgpu/types'], '@webgpu/types is a dependency');
});

cli('the packed package holds the declarations: prepare (run by npm pack, publish and git installs) builds them', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
  assert.not.match(pkg.scripts.prepare, /--no-types/, 'prepare builds the types too');
  // The file list of `npm pack` (scripts not run here: the declarations are the ones `npm test` built).
  const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: root, encoding: 'utf8' })) as Array<{ files: Array<{ path: string }> }>;
  const files = new Set(packed[0].files.map((f) => f.path));
  for (const file of ['dist/index.js', 'dist/browser/capsnet.js', 'dist/types/index.d.ts', 'dist/types/browser.d.ts', 'bin/capsnet.js', 'src/web/models/capsnet-mnist.safetensors']) {
    assert.ok(files.has(file), `npm pack includes ${file}`);
  }
  // The web app's static copy (32 MB of MNIST and the model again) is for `npm run serve` in a checkout.
  assert.equal([...files].filter((f) => f.startsWith('dist/web/')), []);
});

cli.run();
