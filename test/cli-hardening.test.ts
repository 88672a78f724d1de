// The CLI against hostile input: --config files that are not files, checkpoints whose stored run
// options are corrupt, flag values a megabyte long. Every case ends in a clear UsageError (exit
// code 2) naming what was wrong, and nothing is written. Most cases call the commands in-process:
// they fail before any GPU or data is touched.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { train, MAX_CONFIG_FILE_BYTES } from '../src/cli/train.ts';
import { evalCommand } from '../src/cli/eval.ts';
import { UsageError, intFlag } from '../src/cli/args.ts';
import { checkStoredOptions } from '../src/cli/run-options.ts';
import { buildModel, checkBatchFits, loadExperimentData, specOf } from '../src/cli/experiments.ts';
import { gpu } from './helpers/gpu.ts';
import { makeBaselineConfig } from '../src/model/baseline-config.ts';
import { encodeCheckpoint } from '../src/io/checkpoint.ts';
import { makeConfig, parameterShapes } from '../src/model/config.ts';

let root = '';
const hardening = suite('capsnet CLI hardening', {});
hardening.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-hardening-'));
});
hardening.after(() => rmSync(root, { recursive: true, force: true }));

/** The UsageError `run` throws; fails the test if it resolves or throws anything else. */
async function usageError(run: () => Promise<unknown>, what: string): Promise<string> {
  try {
    await run();
  } catch (error) {
    assert.instance(error, UsageError, `${what}: ${(error as Error).stack}`);
    return (error as Error).message;
  }
  assert.unreachable(`${what}: no error`);
  return '';
}

hardening('--config FILE: a FIFO or /dev/zero is refused at once (readFileSync would block or never end)', async () => {
  const fifo = join(root, 'config-fifo');
  try {
    execFileSync('mkfifo', [fifo]);
  } catch (error) {
    assert.unreachable(`mkfifo failed: ${(error as Error).message}`);
  }
  const out = join(root, 'never-fifo');
  const cases: Array<[string, RegExp]> = [[fifo, /not a regular file \(a device, FIFO or socket\)/]];
  if (existsSync('/dev/zero')) cases.push(['/dev/zero', /\/dev\/zero: cannot read model config JSON: not a regular file/]);
  for (const [path, pattern] of cases) {
    // A child process with a time limit: before the fix the FIFO blocked the process forever.
    const r = await runCli(['train', '--out', out, '--config', path], { timeoutMs: 30_000 });
    assert.is(r.code, 2, `${path}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /^--config: /, path);
    assert.match(r.stderr, pattern, path);
    assert.ok(r.stderr.includes(path), `${path} is named`);
  }
  assert.not.ok(existsSync(out), 'nothing written');
});

hardening('--checkpoint FILE (eval, figures, predict, train --init-from): a FIFO or /dev/zero is refused at once, naming it', async () => {
  const fifo = join(root, 'checkpoint-fifo');
  execFileSync('mkfifo', [fifo]);
  const out = join(root, 'never-checkpoint');
  const paths = existsSync('/dev/zero') ? [fifo, '/dev/zero'] : [fifo];
  for (const path of paths) {
    for (const args of [
      ['eval', '--checkpoint', path],
      ['figures', '--checkpoint', path, '--out', out],
      ['predict', '--checkpoint', path, '--image', join(root, 'none.png')],
      ['train', '--out', out, '--init-from', path],
    ]) {
      const r = await runCli(args, { timeoutMs: 30_000 });
      assert.is(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.ok(r.stderr.includes(`${path}: cannot read checkpoint: not a regular file`), `${args.join(' ')}: ${r.stderr}`);
    }
  }
  assert.not.ok(existsSync(out), 'nothing written');
});

hardening('--config FILE: a file over the size limit is refused by its size, naming it; bad JSON names the file', async () => {
  const big = join(root, 'big.json');
  // Valid JSON (an object padded with blanks), so only the size limit can refuse it.
  writeFileSync(big, `{${' '.repeat(MAX_CONFIG_FILE_BYTES)}}`);
  const out = join(root, 'never-big');
  const message = await usageError(() => train(['--out', out, '--config', big]), 'big --config');
  assert.match(message, new RegExp(`^--config: ${big}: cannot read model config JSON: ${MAX_CONFIG_FILE_BYTES + 2} bytes, more than the ${MAX_CONFIG_FILE_BYTES}-byte limit$`));
  const bad = join(root, 'bad.json');
  writeFileSync(bad, '{"routings": ');
  const badMessage = await usageError(() => train(['--out', out, '--config', bad]), 'bad JSON --config');
  assert.match(badMessage, new RegExp(`^--config: ${bad}: not valid JSON`));
  assert.not.ok(existsSync(out), 'nothing written');
});

/** A run's stored options as `capsnet train` writes them (valid). */
const GOOD_OPTIONS = {
  model: 'capsnet', seed: 7, batchSize: 8, lr: 0.001, decayRate: 0.96, decaySteps: 2000, maxShift: 2, limit: 64, validation: 0,
  data: null, totalSteps: 4, experiment: 'mnist', dataOptions: { canvas: 28, maxShift: 2 }, testSeed: 1,
};

/** A small CapsNet checkpoint (zero parameters) whose __metadata__.training.options is `options`. */
function checkpointWith(options: unknown): Uint8Array {
  const config = makeConfig({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] });
  const params = Object.fromEntries(Object.entries(parameterShapes(config)).map(([name, shape]) => [name, new Float32Array(shape.reduce((a, b) => a * b, 1))]));
  return encodeCheckpoint({ config, params, step: 2, training: { options, consecutiveSkips: 0 } });
}

hardening('train --resume refuses stored run options that break the flags\' rules, naming the file, the field and what was expected', async () => {
  // The good options pass the same check (so the cases below fail for their one edited field).
  assert.equal(checkStoredOptions(GOOD_OPTIONS, 'good', 'test'), GOOD_OPTIONS);
  const { batchSize: _, ...withoutBatchSize } = GOOD_OPTIONS;
  const cases: Array<[string, unknown, RegExp]> = [
    ['batchSize "abc"', { ...GOOD_OPTIONS, batchSize: 'abc' }, /options\.batchSize: expected an integer >= 1 \(as --batch-size\), got "abc"$/],
    ['batchSize 0', { ...GOOD_OPTIONS, batchSize: 0 }, /options\.batchSize: expected an integer >= 1 \(as --batch-size\), got 0$/],
    ['batchSize missing', withoutBatchSize, /options\.batchSize: expected an integer >= 1 \(as --batch-size\), got nothing$/],
    ['totalSteps 1e300', { ...GOOD_OPTIONS, totalSteps: 1e300 }, /options\.totalSteps: expected an integer >= 1 \(as --steps\), got 1e\+300$/],
    ['totalSteps 2.5', { ...GOOD_OPTIONS, totalSteps: 2.5 }, /options\.totalSteps: expected an integer >= 1 \(as --steps\), got 2\.5$/],
    ['negative seed', { ...GOOD_OPTIONS, seed: -1 }, /options\.seed: expected an integer in \[0, 4294967295\] \(as --seed\), got -1$/],
    ['seed 2^32', { ...GOOD_OPTIONS, seed: 2 ** 32 }, /options\.seed: expected an integer in \[0, 4294967295\] \(as --seed\), got 4294967296$/],
    ['testSeed "1"', { ...GOOD_OPTIONS, testSeed: '1' }, /options\.testSeed: expected an integer in \[0, 4294967295\] \(as --test-seed\), got "1"$/],
    // NaN has no JSON form: JSON.stringify writes null, another tool may write the string.
    ['lr NaN (null)', { ...GOOD_OPTIONS, lr: NaN }, /options\.lr: expected a learning rate > 0 \(as --lr\), got null$/],
    ['lr "NaN"', { ...GOOD_OPTIONS, lr: 'NaN' }, /options\.lr: expected a learning rate > 0 \(as --lr\), got "NaN"$/],
    ['lr -1', { ...GOOD_OPTIONS, lr: -1 }, /options\.lr: expected a learning rate > 0/],
    ['decayRate 1.5', { ...GOOD_OPTIONS, decayRate: 1.5 }, /options\.decayRate: expected a number in \(0, 1\] \(as --decay-rate\), got 1\.5$/],
    ['maxShift -2', { ...GOOD_OPTIONS, maxShift: -2 }, /options\.maxShift: expected an integer >= 0 \(as --shift\), got -2$/],
    ['limit 0', { ...GOOD_OPTIONS, limit: 0 }, /options\.limit: expected an integer >= 1 \(as --limit\) or null, got 0$/],
    ['validation true', { ...GOOD_OPTIONS, validation: true }, /options\.validation: expected an integer >= 0 \(as --validation\), got true$/],
    ['unknown experiment', { ...GOOD_OPTIONS, experiment: 'imagenet' }, /options\.experiment: expected one of mnist, fashion-mnist, affnist, multimnist, cifar10 \(as --experiment\), got "imagenet"$/],
    ['unknown model', { ...GOOD_OPTIONS, model: 'resnet' }, /options\.model: expected one of capsnet, baseline \(as --model\), got "resnet"$/],
    ['data 42', { ...GOOD_OPTIONS, data: 42 }, /options\.data: expected a folder path of at most 4096 characters or null \(as --data\), got 42$/],
    ['data a long string', { ...GOOD_OPTIONS, data: 'd'.repeat(5000) }, /options\.data: expected a folder path of at most 4096 characters or null \(as --data\), got "d{79}\.\.\. \(5002 characters\)$/],
    ['dataOptions.canvas "x"', { ...GOOD_OPTIONS, dataOptions: { canvas: 'x', maxShift: 2 } }, /options\.dataOptions\.canvas: expected an integer >= 1, got "x"$/],
    ['dataOptions.augment contrast reversed', { ...GOOD_OPTIONS, dataOptions: { canvas: 28, maxShift: 2, augment: { flip: true, maxBrightnessDelta: 0.2, minContrast: 1.8, maxContrast: 0.2 } } }, /options\.dataOptions\.augment: expected valid distortion ranges \(contrast range \[1\.8, 0\.2\]/],
    ['dataOptions.augment a string', { ...GOOD_OPTIONS, dataOptions: { canvas: 28, maxShift: 2, augment: 'flip' } }, /options\.dataOptions\.augment: expected an object \{ flip, maxBrightnessDelta, minContrast, maxContrast \}, got "flip"$/],
    ['checkpointEvery 0', { ...GOOD_OPTIONS, checkpointEvery: 0 }, /options\.checkpointEvery: expected an integer >= 1 \(as --checkpoint-every\), got 0$/],
    ['evalLimit 0', { ...GOOD_OPTIONS, evalLimit: 0 }, /options\.evalLimit: expected an integer >= 1 \(as --eval-limit\), got 0$/],
    ['validationSplit "first"', { ...GOOD_OPTIONS, validationSplit: 'first' }, /options\.validationSplit: expected one of last, random \(as --validation-split\), got "first"$/],
    ['keepEvery "weekly"', { ...GOOD_OPTIONS, keepEvery: 'weekly' }, /options\.keepEvery: expected an integer >= 1 or 'epoch' \(as --keep-every\), got "weekly"$/],
    ['lrMult an array', { ...GOOD_OPTIONS, lrMult: [0.5] }, /options\.lrMult: expected an object of parameter names and learning-rate multipliers >= 0 \(as --lr-mult\), got \[0\.5\]$/],
    ['lrMult negative', { ...GOOD_OPTIONS, lrMult: { 'primary.weight': -1 } }, /options\.lrMult: expected an object of parameter names .*, got \{"primary\.weight":-1\}$/],
    ['lrMult a string value', { ...GOOD_OPTIONS, lrMult: { 'primary.weight': '0.5' } }, /options\.lrMult: expected an object/],
    ['lrMult a name with a comma', { ...GOOD_OPTIONS, lrMult: { 'a,b': 1 } }, /options\.lrMult: expected an object/],
    ['options an array', [1, 2], /__metadata__\.training\.options: expected a JSON object of run options, got an array$/],
    // A megabyte of text is quoted clipped, not whole.
    ['batchSize a long string', { ...GOOD_OPTIONS, batchSize: 'x'.repeat(1 << 20) }, /options\.batchSize: expected an integer >= 1 \(as --batch-size\), got "x{79}\.\.\. \(1048578 characters\)$/],
  ];
  for (const [what, options, pattern] of cases) {
    const out = join(root, 'resume');
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out);
    const path = join(out, 'checkpoint.safetensors');
    const bytes = checkpointWith(options);
    writeFileSync(path, bytes);
    const message = await usageError(() => train(['--out', out, '--resume']), what);
    assert.ok(message.startsWith(`capsnet train --resume: ${path}: __metadata__.training.options`), `${what}: names the command and the file: ${message.slice(0, 300)}`);
    assert.match(message, pattern, what);
    assert.ok(message.length < 400, `${what}: a short message (${message.length} characters)`);
    assert.equal(readdirSync(out), ['checkpoint.safetensors'], `${what}: nothing written`);
    assert.ok(readFileSync(path).equals(bytes), `${what}: the checkpoint is untouched`);
  }
});

hardening('train --resume with corrupt stored options exits with code 2; eval refuses a corrupt stored experiment the same way', async () => {
  const out = join(root, 'resume-cli');
  mkdirSync(out);
  writeFileSync(join(out, 'checkpoint.safetensors'), checkpointWith({ ...GOOD_OPTIONS, totalSteps: 1e300 }));
  const r = await runCli(['train', '--out', out, '--resume'], { timeoutMs: 30_000 });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /checkpoint\.safetensors: __metadata__\.training\.options\.totalSteps: expected an integer >= 1 \(as --steps\), got 1e\+300/);
  assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(readdirSync(out), ['checkpoint.safetensors'], 'nothing written');

  const file = join(root, 'eval-corrupt.safetensors');
  writeFileSync(file, checkpointWith({ ...GOOD_OPTIONS, experiment: 'x'.repeat(5000) }));
  const message = await usageError(() => evalCommand(['--checkpoint', file]), 'eval with a corrupt stored experiment');
  assert.match(message, new RegExp(`^capsnet eval: ${file}: __metadata__\\.training\\.options\\.experiment: expected one of .*, got "x{79}\\.\\.\\. \\(5002 characters\\)$`));
  const testSeedFile = join(root, 'eval-test-seed.safetensors');
  writeFileSync(testSeedFile, checkpointWith({ ...GOOD_OPTIONS, testSeed: -3 }));
  assert.match(await usageError(() => evalCommand(['--checkpoint', testSeedFile]), 'eval with a negative stored test seed'), /options\.testSeed: expected an integer in \[0, 4294967295\]/);
});

hardening('a flag value of 100,000 characters is quoted clipped (80 characters and the length) in every error', async () => {
  const long = 'x'.repeat(100_000);
  const clipped = `${'x'.repeat(80)}... (100000 characters)`;
  const out = join(root, 'never-long');
  const check = (message: string, what: string) => {
    assert.ok(message.includes(clipped), `${what}: the value is quoted clipped: ${message.slice(0, 300)}`);
    assert.ok(message.length < 400, `${what}: ${message.length} characters`);
  };
  const trainCases: Array<[string, string[]]> = [
    ['--backend', ['--backend', long]],
    ['--grad-mode', ['--grad-mode', long]],
    ['--model', ['--model', long]],
    ['--experiment', ['--experiment', long]],
    ['--on-nonfinite', ['--on-nonfinite', long]],
    ['--seed', ['--seed', long]],
    ['--test-seed', ['--test-seed', long]],
    ['--batch-size', ['--batch-size', long]],
    ['--lr', ['--lr', long]],
    ['--out', ['--out', long]],
    ['--data', ['--data', long]],
    ['--config FILE', ['--config', long]],
    ['--config field name', ['--config', JSON.stringify({ [long]: 1 })]],
    ['--inject-fault', ['--inject-fault', `nan-input@1,${long}`]],
  ];
  for (const [what, args] of trainCases) {
    const argv = args.includes('--out') ? args : ['--out', out, ...args];
    check(await usageError(() => train(argv), `train ${what}`), `train ${what}`);
  }
  // makeConfig's message quotes the value after the field and what it expects: the message is clipped at 400.
  const configValue = await usageError(() => train(['--out', out, '--config', JSON.stringify({ routings: long })]), 'train --config field value');
  assert.match(configValue, /routings must be a positive integer, got "x+\.\.\. \(100\d\d\d characters\)$/);
  assert.ok(configValue.length < 450, `--config field value: ${configValue.length} characters`);
  const ckpt = join(root, 'good.safetensors');
  writeFileSync(ckpt, checkpointWith(GOOD_OPTIONS));
  for (const [what, args] of [
    ['--backend', ['--checkpoint', ckpt, '--backend', long]],
    ['--experiment', ['--checkpoint', ckpt, '--experiment', long]],
    ['--checkpoint', ['--checkpoint', long]],
    ['--limit', ['--checkpoint', ckpt, '--limit', long]],
  ] as Array<[string, string[]]>) {
    check(await usageError(() => evalCommand(args), `eval ${what}`), `eval ${what}`);
  }
  // Through the command: doctor's --backend, and an unknown flag's name.
  for (const args of [['doctor', '--backend', long], ['figures', '--checkpoint', ckpt, '--out', out, '--backend', long]]) {
    const r = await runCli(args, { timeoutMs: 30_000 });
    assert.is(r.code, 2, `${args[0]}: ${r.stderr.slice(0, 300)}`);
    check(r.stderr.trim(), `${args[0]} --backend`);
  }
  assert.not.ok(existsSync(out), 'nothing written');
});

hardening('a path with a file or folder name over 255 bytes is refused by the flag, not by ENAMETOOLONG from a stat (fuzz: eval --output 999...9)', async () => {
  const long = '9'.repeat(266);
  const output = await usageError(() => evalCommand(['--checkpoint', join(root, 'none.safetensors'), '--output', long]), 'eval --output with a long name');
  assert.match(output, /^--output: expected file and folder names of at most 255 bytes, got one of 266 in '9{80}\.\.\. \(266 characters\)'$/);
  const out = join(root, 'a'.repeat(200), 'é'.repeat(128));
  assert.match(await usageError(() => train(['--out', out]), 'train --out with a long name'), /^--out: expected file and folder names of at most 255 bytes, got one of 256 in /);
  assert.not.ok(existsSync(join(root, 'a'.repeat(200))), 'nothing written');
  assert.match(await usageError(() => evalCommand(['--checkpoint', join(root, 'c'.repeat(300))]), 'eval --checkpoint with a long name'), /^--checkpoint: expected file and folder names of at most 255 bytes, got one of 300 in /);
});

hardening('intFlag checks an optional max; --seed and --test-seed (train and eval) take 0..4294967295', async () => {
  assert.is(intFlag('4', '--n', 1, 0, 4), 4);
  assert.is(intFlag(undefined, '--n', 9, 0, 4), 9, 'the fallback is not checked');
  assert.throws(() => intFlag('5', '--n', 1, 0, 4), /^--n: expected an integer in \[0, 4\], got '5'$/);
  assert.throws(() => intFlag('5', '--n', 1, 6), /^--n: expected an integer >= 6, got '5'$/);
  const out = join(root, 'never-seed');
  for (const flag of ['--seed', '--test-seed']) {
    assert.match(await usageError(() => train(['--out', out, flag, '4294967296']), `train ${flag}`), new RegExp(`^${flag}: expected an integer in \\[0, 4294967295\\], got '4294967296'$`));
  }
  const ckpt = join(root, 'seed.safetensors');
  writeFileSync(ckpt, checkpointWith(GOOD_OPTIONS));
  // Before, eval took any --test-seed up to 2^53 - 1 (the generators use 32 bits).
  assert.match(await usageError(() => evalCommand(['--checkpoint', ckpt, '--test-seed', '4294967296']), 'eval --test-seed'), /^--test-seed: expected an integer in \[0, 4294967295\], got '4294967296'$/);
  assert.not.ok(existsSync(out), 'nothing written');
});

/** An IDX file: magic (type 0x08 = unsigned bytes, `dims.length` dimensions), big-endian sizes, then the bytes. */
function idx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0x0800 + dims.length);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** A folder with only MNIST's two test files (t10k-*), `count` seeded images of 28x28 and labels 0..9 in turn. */
function testOnlyMnist(dir: string, count: number): void {
  mkdirSync(dir, { recursive: true });
  let state = 12345;
  const pixels = Uint8Array.from({ length: count * 28 * 28 }, () => ((state = (state * 1103515245 + 12345) >>> 0) >>> 24));
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idx([count, 28, 28], pixels));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([count], Uint8Array.from({ length: count }, (_, i) => i % 10)));
}

hardening('eval and figures read only the test split: a --data folder with only the test files is enough', async () => {
  const data = join(root, 'mnist-test-only');
  testOnlyMnist(data, 40);
  const { test, ...rest } = loadExperimentData('mnist', data, 'test', ['test']);
  assert.is(test.count, 40);
  assert.equal(Object.keys(rest), [], 'no training split');
  // Asking for the training split still finds it missing, with the file named.
  assert.throws(() => loadExperimentData('mnist', data, 'capsnet train'), /^capsnet train: the IDX data folder .* has no train-images-idx3-ubyte \(looked for train-images-idx3-ubyte and train-images-idx3-ubyte\.gz\)$/);

  // CIFAR-10: test_batch.bin alone (records of a label byte and 3x32x32 pixels).
  const cifar = join(root, 'cifar-test-only');
  mkdirSync(cifar);
  const records = new Uint8Array(5 * 3073);
  for (let r = 0; r < 5; r++) records[r * 3073] = r;
  writeFileSync(join(cifar, 'test_batch.bin'), records);
  const cifarSets = loadExperimentData('cifar10', cifar, 'test', ['test']);
  assert.is(cifarSets.test.count, 5);
  assert.equal(Object.keys(cifarSets), ['test']);

  // End to end: eval of a (tiny, zero-parameter) checkpoint on that folder, and its figures.
  const ckpt = join(root, 'mnist-test-only.safetensors');
  writeFileSync(ckpt, checkpointWith(GOOD_OPTIONS));
  const output = join(root, 'mnist-test-only.json');
  const log = console.log;
  console.log = () => {};
  try {
    assert.is(await evalCommand(['--checkpoint', ckpt, '--data', data, '--output', output, '--batch-size', '20']), 0);
  } finally {
    console.log = log;
  }
  const report = JSON.parse(readFileSync(output, 'utf8')) as { count: number; images: Array<{ label: number }> };
  assert.is(report.count, 40);
  assert.equal(report.images.map((image) => image.label), Array.from({ length: 40 }, (_, i) => i % 10));
  const { figures } = await import('../src/cli/figures.ts');
  const written = await figures(ckpt, join(root, 'figures-test-only'), { data });
  assert.ok(written.some((f) => f.endsWith('reconstructions.png')), written.join(', '));
});

hardening('specOf, buildModel and checkBatchFits: the one way train and eval turn a checkpoint into a model', async () => {
  const ctx = await gpu();
  const config = makeConfig({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] });
  const params = Object.fromEntries(Object.entries(parameterShapes(config)).map(([name, shape], k) => [name, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 7 + k) % 13) / 13 - 0.5)]));
  // A checkpoint without __metadata__.model holds CapsNet.
  assert.equal(specOf({ config, params, step: 0 }), { kind: 'capsnet', config });
  const baselineConfig = makeBaselineConfig();
  assert.equal(specOf({ model: 'baseline', config: baselineConfig, params: {}, step: 0 }), { kind: 'baseline', config: baselineConfig });
  const model = buildModel(ctx, { kind: 'capsnet', config }, { params });
  try {
    const exported = await model.exportParams();
    for (const name of Object.keys(params)) assert.ok(Buffer.from(exported[name].buffer).equals(Buffer.from(params[name].buffer)), `${name}: the checkpoint's values`);
  } finally {
    model.dispose();
  }
  const seeded = [buildModel(ctx, { kind: 'capsnet', config }, { seed: 3 }), buildModel(ctx, { kind: 'capsnet', config }, { seed: 3 })];
  try {
    const [a, b] = await Promise.all(seeded.map((m) => m.exportParams()));
    for (const name of Object.keys(params)) assert.ok(Buffer.from(a[name].buffer).equals(Buffer.from(b[name].buffer)), `${name}: the same seed, the same initial values`);
  } finally {
    for (const m of seeded) m.dispose();
  }
  assert.ok(checkBatchFits(ctx, { kind: 'capsnet', config }, 2, 'eval', '--batch-size', 'capsnet eval').totalBytes > 0);
  const message = await usageError(async () => checkBatchFits(ctx, { kind: 'capsnet', config }, 2 ** 40, 'eval', '--batch-size', 'capsnet eval'), 'a batch of 2^40');
  assert.match(message, /^capsnet eval: --batch-size 1099511627776: an evaluation batch does not fit on .*The largest batch size that fits is \d+\.$/s);
});

hardening.run();
