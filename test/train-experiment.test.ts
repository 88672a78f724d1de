// `capsnet train/eval --experiment` (issue 8): affnist, multimnist and cifar10 (on a generated CIFAR
// folder) run end to end on tiny configs and report their sets; the run's experiment, shift and test
// seed are stored and --resume keeps them (another experiment is refused); a stopped and resumed
// MultiMNIST run is bitwise the uninterrupted one; the step statistics count MultiMNIST's
// per-example two-of-two correctness instead of one argmax per example.
import { CIFAR10_AUGMENT } from '../src/data/cifar.ts';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { skipWithReason } from './helpers/skip.ts';
import { FASHION_MNIST_DIR, experimentLrMult } from '../src/cli/experiments.ts';
import { formatLrMult, parseLrMult } from '../src/cli/run-options.ts';
import { PAPER_CONFIG, makeConfig } from '../src/model/config.ts';
import { makeBaselineConfig } from '../src/model/baseline-config.ts';
import { gpu } from './helpers/gpu.ts';
import { makeRng } from './helpers/random.ts';
import { writeMnistFolder } from './helpers/idx.ts';
import { readMetrics } from '../src/io/metrics.ts';
import { loadAnyCheckpoint } from '../src/io/checkpoint-file.ts';
import { StepMonitor } from '../src/train/monitor.ts';
import { fromArray, tidy } from '../src/tensor.ts';

// Tiny models: a few hundred microseconds of GPU work per example on llvmpipe.
const CAPS = JSON.stringify({ conv1Channels: 8, primaryTypes: 2, decoderHidden: [16, 16] });
const COMMON = ['--batch-size', '8', '--eval-batch-size', '8', '--log-every', '2', '--config', CAPS];

let root = '';
const exp = suite('capsnet train --experiment', {});
exp.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-experiment-'));
});
exp.after(() => rmSync(root, { recursive: true, force: true }));

const ckptPath = (dir: string) => join(dir, 'checkpoint.safetensors');
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function evalRecords(dir: string) {
  const { records } = await readMetrics(join(dir, 'metrics.jsonl'));
  return { train: records.filter((m) => m.type === 'train'), evals: records.filter((m) => m.type === 'eval') as Array<Record<string, unknown>> };
}

exp('step statistics: a per-example correct tensor is summed instead of counting argmax == label', async () => {
  const ctx = await gpu();
  const monitor = new StepMonitor(ctx, 2);
  const B = 5;
  const J = 3;
  // Argmax of each row: 0, 1, 2, 0, 1; labels match rows 0, 1 and 3 (3 right by argmax).
  const scores = [0.9, 0.1, 0.2, 0.1, 0.8, 0.3, 0.1, 0.2, 0.7, 0.6, 0.5, 0.4, 0.2, 0.9, 0.1];
  const labels = [0, 1, 0, 0, 2];
  // 2 right, on other rows than the argmax count: only a sum of this tensor gives 2.
  const correct = [0, 0, 0, 1, 1];
  for (const perExample of [false, true]) {
    monitor.beginStep(perExample ? 1 : 0);
    tidy(() => {
      const loss = fromArray(ctx, [1], [0.5]);
      const s = fromArray(ctx, [B, J], scores);
      const y = fromArray(ctx, [B], labels);
      monitor.stats(loss, loss, s, y, perExample ? fromArray(ctx, [B], correct) : undefined);
    });
  }
  const [byArgmax, byTensor] = await monitor.read();
  assert.is(byArgmax.correct, 3);
  assert.is(byTensor.correct, 2);
  assert.is(byTensor.flagged, false);
  assert.throws(() => {
    monitor.beginStep(0);
    tidy(() => {
      const loss = fromArray(ctx, [1], [0.5]);
      monitor.stats(loss, loss, fromArray(ctx, [B, J], scores), fromArray(ctx, [B], labels), fromArray(ctx, [B + 1], [0, 0, 0, 0, 0, 0]));
    });
  }, /correct must be \[5\]/);
  monitor.dispose();
});

exp('default learning-rate multipliers: affnist and multimnist CapsNet only; --lr-mult off or another value replaces them', () => {
  const paper = { kind: 'capsnet', config: PAPER_CONFIG } as const;
  for (const experiment of ['affnist', 'multimnist'] as const) assert.equal(experimentLrMult(experiment, paper), { 'primary.weight': 1 / 32 }, experiment);
  // 1 / primaryTypes: the official forward pass divides by the number of capsule types.
  assert.equal(experimentLrMult('affnist', { kind: 'capsnet', config: makeConfig({ primaryTypes: 64 }) }), { 'primary.weight': 1 / 64 });
  for (const experiment of ['mnist', 'fashion-mnist', 'cifar10'] as const) assert.is(experimentLrMult(experiment, paper), null, experiment);
  assert.is(experimentLrMult('affnist', { kind: 'baseline', config: makeBaselineConfig({}) }), null);
  assert.is(parseLrMult('off'), null);
  assert.is(parseLrMult(undefined), null);
  assert.equal(parseLrMult('primary.weight=0.5,digit.W=2'), { 'primary.weight': 0.5, 'digit.W': 2 });
  assert.is(formatLrMult(parseLrMult('primary.weight=0.03125')), 'primary.weight=0.03125');
  assert.is(formatLrMult(null), 'off');
  assert.is(formatLrMult({}), 'off', 'a stored empty object is none (no empty flag text)');
  assert.is(formatLrMult({ b: 1, a: 2 }), 'a=2,b=1', 'sorted: the order they were given in is no part of the recipe');
});

exp('affnist: trains in the 40x40 canvas, reports the centred test set and the affNIST-style set; eval prints both; the baseline CNN runs it too (pooled, as the official code\'s)', async () => {
  const out = join(root, 'affnist');
  const r = await runCli(['train', '--out', out, '--experiment', 'affnist', '--limit', '32', '--steps', '2', '--eval-limit', '16', ...COMMON]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /affnist, /);
  const ckpt = await loadAnyCheckpoint(ckptPath(out));
  assert.is(ckpt.config.inputSize, 40);
  const options = ckpt.training!.options as Record<string, unknown>;
  assert.is(options.experiment, 'affnist');
  assert.equal(options.dataOptions, { canvas: 40, maxShift: 6 });
  assert.is(options.maxShift, 6);
  assert.is(options.testSeed, 1);
  // affnist's default PrimaryCaps multiplier (experimentLrMult: 1 / CAPS's 2 capsule types), said and stored.
  assert.equal(options.lrMult, { 'primary.weight': 0.5 });
  assert.match(r.stderr, /learning-rate multipliers primary\.weight=0\.5\n/);
  const { train, evals } = await evalRecords(out);
  assert.equal(train.map((m) => m.step), [1, 2]);
  assert.equal(evals.map((m) => [m.split, m.count]), [['test', 16], ['affnist', 16]]);
  for (const m of evals) assert.ok(typeof m.accuracy === 'number' && m.accuracy >= 0 && m.accuracy <= 1);

  const json = join(root, 'affnist-eval.json');
  const e = await runCli(['eval', '--checkpoint', ckptPath(out), '--limit', '16', '--batch-size', '8', '--output', json]);
  assert.is(e.code, 0, e.stderr);
  assert.match(e.stdout, /\(16 MNIST test images centred in 40x40, step 2\)/);
  assert.match(e.stdout, /affnist accuracy [0-9.]+%/);
  const report = JSON.parse(readFileSync(json, 'utf8'));
  assert.is(report.experiment, 'affnist');
  assert.equal(report.sets.map((s: { split: string }) => s.split), ['test', 'affnist']);
  // The same sets as the training run's evaluation (same checkpoint, test seed and data).
  assert.equal(report.sets.map((s: { accuracy: number }) => s.accuracy), evals.map((m) => m.accuracy));
  assert.is(report.images.length, 16);
  assert.is(report.images[0].lengths.length, 10);
  // Another test seed draws another affNIST-style set (the centred set is the same).
  const other = await runCli(['eval', '--checkpoint', ckptPath(out), '--limit', '16', '--batch-size', '8', '--test-seed', '77']);
  assert.is(other.code, 0, other.stderr);

  // figures: the curves; the image figures say why they are skipped (28x28 test images, 40x40 model).
  const fig = await runCli(['figures', '--checkpoint', ckptPath(out), '--out', join(out, 'figures')]);
  assert.is(fig.code, 0, fig.stderr);
  assert.match(fig.stderr, /skipped: the model's inputs are 40x40 \(--experiment affnist\)/);
  assert.match(fig.stdout, /loss\.svg/);

  const base = join(root, 'affnist-baseline');
  const b = await runCli([
    'train', '--out', base, '--experiment', 'affnist', '--model', 'baseline', '--limit', '32', '--steps', '2', '--eval-limit', '8',
    // The official code's layout (2x2 max pooling after each 'valid' conv), on narrow channels.
    '--batch-size', '8', '--eval-batch-size', '8', '--config', JSON.stringify({ convChannels: [4, 4], convPadding: 'valid', pool: 2, fcHidden: [16], dropout: 0 }),
  ]);
  assert.is(b.code, 0, b.stderr);
  assert.match(b.stderr, /baseline CNN, 3,830 parameters/);
  assert.not.match(b.stderr, /learning-rate multipliers/, 'the baseline has no PrimaryCaps: no default multiplier');
  assert.is(((await loadAnyCheckpoint(ckptPath(base))).training!.options as { lrMult?: unknown }).lrMult, undefined);
  const baselineConfig = (await loadAnyCheckpoint(ckptPath(base))).config as { inputSize: number; pool: number };
  assert.equal([baselineConfig.inputSize, baselineConfig.pool], [40, 2]);
  const be = await runCli(['eval', '--checkpoint', ckptPath(base), '--limit', '8', '--batch-size', '8']);
  assert.is(be.code, 0, be.stderr);
  assert.equal((await evalRecords(base)).evals.map((m) => m.split), ['test', 'affnist']);
});

exp('multimnist: two-digit training and the two-of-two evaluation; --shift 6 stored; stopped and resumed is bitwise the uninterrupted run', async () => {
  const flags = ['--experiment', 'multimnist', '--shift', '6', '--limit', '48', '--seed', '5', ...COMMON];
  const straight = join(root, 'mm-straight');
  const r = await runCli(['train', '--out', straight, '--steps', '4', '--eval-limit', '16', ...flags]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /at least one digit right: [0-9.]+%/);
  const a = await loadAnyCheckpoint(ckptPath(straight));
  assert.is(a.config.inputSize, 36);
  const options = a.training!.options as Record<string, unknown>;
  assert.is(options.experiment, 'multimnist');
  assert.equal(options.dataOptions, { canvas: 36, maxShift: 6 });
  assert.equal(options.lrMult, { 'primary.weight': 0.5 }, 'multimnist\'s default multiplier (1 / CAPS\'s 2 capsule types)');
  const { train, evals } = await evalRecords(straight);
  assert.equal(train.map((m) => m.step), [1, 2, 3, 4]);
  for (const m of train) {
    assert.ok(Number.isFinite(m.loss) && Number.isFinite(m.reconLoss as number) && (m.reconLoss as number) > 0, 'two reconstructions are trained');
    // Whole examples of a batch of 8.
    const accuracy = m.accuracy as number;
    assert.ok(Number.isInteger(accuracy * 8) && accuracy >= 0 && accuracy <= 1);
  }
  assert.is(evals.length, 1);
  assert.is(evals[0].count, 16);
  assert.ok((evals[0].almost as number) >= (evals[0].accuracy as number), 'one digit right is at least as frequent as both');

  const resumed = join(root, 'mm-resumed');
  assert.is((await runCli(['train', '--out', resumed, '--steps', '2', '--no-eval', ...flags])).code, 0);
  const refused = await runCli(['train', '--out', resumed, '--steps', '4', '--resume', '--experiment', 'affnist']);
  assert.is(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /--experiment affnist differs from the run's multimnist/);
  const c = await runCli(['train', '--out', resumed, '--steps', '4', '--resume', '--no-eval']);
  assert.is(c.code, 0, c.stderr);
  assert.match(c.stderr, /multimnist, .*steps 3\.\.4 \(resumed\)/);
  const b = await loadAnyCheckpoint(ckptPath(resumed));
  assert.is(b.step, 4);
  for (const name of Object.keys(a.params)) {
    assert.ok(bytes(a.params[name]).equals(bytes(b.params[name])), `${name} differs`);
    assert.ok(bytes(a.optimizer!.m[name]).equals(bytes(b.optimizer!.m[name])), `adam.m.${name} differs`);
  }

  const e = await runCli(['eval', '--checkpoint', ckptPath(straight), '--limit', '16', '--batch-size', '8']);
  assert.is(e.code, 0, e.stderr);
  assert.match(e.stdout, /\(16 multimnist test examples, step 4\)/);
  // Same checkpoint, test seed and shift as the run's own evaluation: the same accuracy.
  assert.match(e.stdout, new RegExp(`accuracy ${(100 * (evals[0].accuracy as number)).toFixed(2)}%`));
  assert.match(e.stdout, new RegExp(`at least one of the two digits right: ${(100 * (evals[0].almost as number)).toFixed(2)}%`));

  const baseline = await runCli(['train', '--out', join(root, 'mm-baseline'), '--experiment', 'multimnist', '--model', 'baseline']);
  assert.is(baseline.code, 2);
  assert.match(baseline.stderr, /CapsNet only/);
});

/** A CIFAR-10 binary batch of `count` records (label byte, then 3x32x32 pixels), seeded. */
function cifarBatch(count: number, seed: number): Uint8Array {
  const rng = makeRng(seed);
  const bytes = new Uint8Array(count * 3073);
  for (let n = 0; n < count; n++) {
    bytes[n * 3073] = n % 10;
    for (let p = 1; p < 3073; p++) bytes[n * 3073 + p] = Math.floor(rng() * 256);
  }
  return bytes;
}

exp('cifar10: random 24x24 crops of a generated CIFAR folder, 3-channel preset without decoder, centre-crop evaluation; --data is required', async () => {
  const data = join(root, 'cifar');
  mkdirSync(data);
  writeFileSync(join(data, 'data_batch_1.bin'), cifarBatch(16, 1));
  writeFileSync(join(data, 'data_batch_2.bin'), cifarBatch(16, 2));
  writeFileSync(join(data, 'test_batch.bin'), cifarBatch(12, 3));
  const out = join(root, 'cifar-run');
  const r = await runCli(['train', '--out', out, '--experiment', 'cifar10', '--data', data, '--steps', '2', ...COMMON]);
  assert.is(r.code, 0, r.stderr);
  const ckpt = await loadAnyCheckpoint(ckptPath(out));
  assert.is(ckpt.config.inputChannels, 3);
  assert.is(ckpt.config.inputSize, 24);
  assert.is((ckpt.config as { decoder: boolean }).decoder, false);
  assert.is((ckpt.config as { leaky: boolean }).leaky, true);
  assert.is((ckpt.config as { convPadding: string }).convPadding, 'same');
  // The run stores its colour distortions, so a resume keeps them even if the default changes.
  assert.equal((ckpt.training!.options as Record<string, unknown>).dataOptions, { canvas: 24, maxShift: 4, augment: { ...CIFAR10_AUGMENT } });
  const { train, evals } = await evalRecords(out);
  assert.equal(train.map((m) => m.step), [1, 2]);
  assert.equal(evals.map((m) => [m.split, m.count]), [['test', 12]]);

  // eval finds the data through the checkpoint.
  const e = await runCli(['eval', '--checkpoint', ckptPath(out), '--batch-size', '8']);
  assert.is(e.code, 0, e.stderr);
  assert.match(e.stdout, /\(12 cifar10 test examples, step 2\)/);

  const missing = await runCli(['train', '--out', join(root, 'cifar-nodata'), '--experiment', 'cifar10']);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, /--experiment cifar10 needs --data DIR/);
  const unknown = await runCli(['train', '--out', join(root, 'unknown'), '--experiment', 'svhn']);
  assert.is(unknown.code, 2);
  assert.match(unknown.stderr, /--experiment: expected one of mnist, fashion-mnist, affnist, multimnist, cifar10, got 'svhn'/);
});

exp('mnist --data DIR: eval and figures default to the run\'s own data folder; a folder that is gone is refused by name', async () => {
  const data = join(root, 'own-digits');
  mkdirSync(data);
  writeMnistFolder(data, 48, 40, 31);
  const out = join(root, 'own-data-run');
  // A relative --data, given in another folder: stored absolute, so it is found from anywhere.
  const r = await runCli(['train', '--out', out, '--data', 'own-digits', '--steps', '1', '--no-eval', ...COMMON], { cwd: root });
  assert.is(r.code, 0, r.stderr);
  const resumed = await runCli(['train', '--out', out, '--resume', '--data', data, '--steps', '2', '--no-eval']);
  assert.is(resumed.code, 0, `the same folder, named absolutely: ${resumed.stderr}`);
  const e = await runCli(['eval', '--checkpoint', ckptPath(out), '--batch-size', '8']);
  assert.is(e.code, 0, e.stderr);
  assert.match(e.stdout, /\(40 test images, step 2\)/, 'scored on the run\'s 40 test digits, not the 10,000 of the MNIST package');
  const f = await runCli(['figures', '--checkpoint', ckptPath(out), '--out', join(out, 'figures')]);
  assert.is(f.code, 0, f.stderr);
  rmSync(data, { recursive: true });
  for (const args of [['eval', '--checkpoint', ckptPath(out)], ['figures', '--checkpoint', ckptPath(out), '--out', join(out, 'figures-2')]]) {
    const gone = await runCli(args);
    assert.is(gone.code, 2, `${args[0]}: ${gone.stderr}`);
    assert.ok(gone.stderr.includes(`was trained on --data ${data}, which does not exist here; pass --data DIR`), `${args[0]}: ${gone.stderr}`);
  }
  assert.not.ok(existsSync(join(out, 'figures-2')), 'figures wrote nothing');
});

const fashionName = 'fashion-mnist: the MNIST model on the installed Fashion-MNIST split; eval and figures use it too';
if (existsSync(FASHION_MNIST_DIR)) {
  exp(fashionName, async () => {
    const out = join(root, 'fashion');
    const r = await runCli(['train', '--out', out, '--experiment', 'fashion-mnist', '--limit', '32', '--steps', '2', '--eval-limit', '8', ...COMMON]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /fashion-mnist, /);
    assert.equal((await evalRecords(out)).evals.map((m) => [m.split, m.count]), [['test', 8]]);
    const e = await runCli(['eval', '--checkpoint', ckptPath(out), '--limit', '8', '--batch-size', '8']);
    assert.is(e.code, 0, e.stderr);
    assert.match(e.stdout, /\(8 fashion-mnist test examples, step 2\)/);
    const missing = await runCli(['train', '--out', join(root, 'fashion-missing'), '--experiment', 'fashion-mnist', '--data', join(root, 'nothing-here')]);
    assert.is(missing.code, 2);
    assert.match(missing.stderr, /nothing-here does not exist/);
  });
} else {
  skipWithReason(exp, fashionName, `${FASHION_MNIST_DIR} is absent (Debian package dataset-fashion-mnist)`);
}

exp.run();
