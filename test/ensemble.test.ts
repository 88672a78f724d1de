// `capsnet eval --checkpoint A --checkpoint B` (issue 8): the ensemble's per-example scores are the
// mean of the members' own (capsule lengths for CapsNet, softmax probabilities for the baseline
// CNN, MultiMNIST's lengths with the two longest scored), as written by single-checkpoint evals of
// the same files, and its accuracy is computed from those means; checkpoints of different
// experiments, data, models, classes, input shapes or MultiMNIST shifts are refused (exit 2) naming the file.
// Members: tiny networks initialised from seeds (no training needed to compare arithmetic; digit.W
// drawn with std 0.5 so the capsule lengths differ clearly between classes and members).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { assertClose } from './helpers/assert.ts';
import { saveCheckpoint } from '../src/io/checkpoint-file.ts';
import { initialParameters } from '../src/model/capsnet.ts';
import { makeConfig } from '../src/model/config.ts';
import { baselineInitialParameters } from '../src/model/baseline.ts';
import { makeBaselineConfig } from '../src/model/baseline-config.ts';
import { topKHits } from '../src/ops/losses.ts';
import { mnistDataDir } from '../src/io/idx-file.ts';

const test = suite('capsnet eval: ensembles', {});
let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-ensemble-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

const TINY = { conv1Channels: 8, primaryTypes: 2, decoderHidden: [16, 16] };
const LIMIT = ['--limit', '24', '--batch-size', '8'];

async function capsnetFile(name: string, seed: number, overrides: Record<string, unknown> = {}, options?: Record<string, unknown>): Promise<string> {
  const config = makeConfig({ ...TINY, ...overrides });
  const path = join(root, name);
  await saveCheckpoint(path, { config, params: initialParameters(config, seed, 0.5), step: seed * 10, ...(options ? { training: { options } } : {}) });
  return path;
}

async function baselineFile(name: string, seed: number): Promise<string> {
  const config = makeBaselineConfig({ convChannels: [4, 4, 4], fcHidden: [16, 8] });
  const path = join(root, name);
  await saveCheckpoint(path, { model: 'baseline', config, params: baselineInitialParameters(config, seed), step: seed });
  return path;
}

interface Image { label?: number; labels?: [number, number]; prediction?: number; predictions?: [number, number]; lengths?: number[]; logits?: number[]; probabilities?: number[] }
interface Report { accuracy: number; count: number; images: Image[]; members?: Array<{ checkpoint: string; step: number; accuracy: number }>; sets: Array<{ accuracy: number; almost?: number }> }

async function evalJson(name: string, checkpoints: string[]): Promise<Report> {
  const output = join(root, `${name}.json`);
  const r = await runCli(['eval', ...checkpoints.flatMap((c) => ['--checkpoint', c]), ...LIMIT, '--output', output]);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(readFileSync(output, 'utf8')) as Report;
}

const softmax = (row: number[]) => {
  const max = Math.max(...row);
  const e = row.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
};

/** Argmax, the first on ties. */
const argmax = (row: number[]) => row.reduce((best, x, j) => (x > row[best] ? j : best), 0);

test('CapsNet: the ensemble\'s lengths are the mean of the members\' lengths; accuracy and predictions from them', async () => {
  const a = await capsnetFile('caps-a.safetensors', 1);
  const b = await capsnetFile('caps-b.safetensors', 2);
  const [ra, rb, ens] = [await evalJson('caps-a', [a]), await evalJson('caps-b', [b]), await evalJson('caps-ab', [a, b])];
  assert.is(ens.count, 24);
  assert.equal(ens.members!.map((m) => [m.checkpoint, m.step, m.accuracy]), [[a, 10, ra.accuracy], [b, 20, rb.accuracy]]);
  const mean = ra.images.flatMap((img, i) => img.lengths!.map((x, j) => (x + rb.images[i].lengths![j]) / 2));
  assertClose(ens.images.flatMap((img) => img.lengths!), mean, { atol: 1e-6, rtol: 1e-6 }, 'ensemble lengths');
  // The members really differ (else any averaging would pass).
  assert.ok(ra.images.some((img, i) => argmax(img.lengths!) !== argmax(rb.images[i].lengths!)), 'the two members disagree somewhere');
  let correct = 0;
  ens.images.forEach((img, i) => {
    assert.is(img.label, ra.images[i].label);
    assert.is(img.prediction, argmax(img.lengths!), `example ${i}: prediction is the longest mean length`);
    if (img.prediction === img.label) correct++;
  });
  assert.is(ens.accuracy, correct / 24);
  assert.is(ens.sets[0].accuracy, ens.accuracy);
});

test('baseline CNN: the ensemble averages the members\' softmax probabilities', async () => {
  const a = await baselineFile('base-a.safetensors', 3);
  const b = await baselineFile('base-b.safetensors', 4);
  const [ra, rb, ens] = [await evalJson('base-a', [a]), await evalJson('base-b', [b]), await evalJson('base-ab', [a, b])];
  const mean = ra.images.flatMap((img, i) => softmax(img.logits!).map((p, j) => (p + softmax(rb.images[i].logits!)[j]) / 2));
  assertClose(ens.images.flatMap((img) => img.probabilities!), mean, { atol: 1e-6, rtol: 1e-5 }, 'ensemble probabilities');
  let correct = 0;
  ens.images.forEach((img, i) => {
    assert.is(img.prediction, argmax(img.probabilities!), `example ${i}`);
    if (img.prediction === img.label) correct++;
  });
  assert.is(ens.accuracy, correct / 24);
});

test('MultiMNIST: mean lengths, both digits among the two longest (and at least one)', async () => {
  const options = { experiment: 'multimnist', testSeed: 3, maxShift: 4 };
  const a = await capsnetFile('mm-a.safetensors', 5, { inputSize: 36 }, options);
  const b = await capsnetFile('mm-b.safetensors', 6, { inputSize: 36 }, options);
  const [ra, rb, ens] = [await evalJson('mm-a', [a]), await evalJson('mm-b', [b]), await evalJson('mm-ab', [a, b])];
  const mean = ra.images.flatMap((img, i) => img.lengths!.map((x, j) => (x + rb.images[i].lengths![j]) / 2));
  assertClose(ens.images.flatMap((img) => img.lengths!), mean, { atol: 1e-6, rtol: 1e-6 }, 'ensemble lengths');
  let correct = 0;
  let almost = 0;
  ens.images.forEach((img, i) => {
    assert.equal(img.labels, ra.images[i].labels, `example ${i}: the same pair for every member`);
    assert.ok(img.labels![0] !== img.labels![1]);
    const hits = topKHits(img.lengths!, img.labels!);
    if (hits === 2) correct++;
    if (hits >= 1) almost++;
  });
  assert.is(ens.accuracy, correct / 24);
  assert.is(ens.sets[0].almost, almost / 24);
});

test('checkpoints of another model, class count, input shape or experiment are refused, naming the file', async () => {
  const a = await capsnetFile('ref.safetensors', 1);
  const cases: Array<[string, string, RegExp]> = [
    ['model', await baselineFile('other-model.safetensors', 1), /model baseline differs from .*ref\.safetensors's capsnet/],
    ['classes', await capsnetFile('other-classes.safetensors', 2, { digitCaps: 5 }), /classes 5 differs from .*ref\.safetensors's 10/],
    ['input shape', await capsnetFile('other-size.safetensors', 3, { inputSize: 36 }), /input shape 1x36x36 differs from .*ref\.safetensors's 1x28x28/],
    ['experiment', await capsnetFile('other-experiment.safetensors', 4, {}, { experiment: 'fashion-mnist', testSeed: 1, maxShift: 2 }), /experiment fashion-mnist differs from .*ref\.safetensors's mnist/],
    // An mnist run on other IDX files (Fashion-MNIST's, say) is another task.
    ['data', await capsnetFile('other-data.safetensors', 5, {}, { experiment: 'mnist', testSeed: 1, maxShift: 2, data: join(root, 'fashion') }), /data --data .*fashion differs from .*ref\.safetensors's the default data; .*; --data DIR scores them all on the same files/],
  ];
  for (const [what, other, message] of cases) {
    const r = await runCli(['eval', '--checkpoint', a, '--checkpoint', a, '--checkpoint', other, ...LIMIT]);
    assert.is(r.code, 2, `${what}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${other.replace(/[.]/g, '\\.')}: `), `${what}: the message names the file`);
    assert.match(r.stderr, message, what);
    assert.match(r.stderr, /must have the same experiment, data, model, classes and input shape/);
  }
});

test('with --data, members trained on other data folders are scored on the given files, with a warning naming them', async () => {
  const a = await capsnetFile('data-ref.safetensors', 1);
  const other = await capsnetFile('data-other.safetensors', 5, {}, { experiment: 'mnist', testSeed: 1, maxShift: 2, data: join(root, 'elsewhere') });
  const r = await runCli(['eval', '--checkpoint', a, '--checkpoint', other, '--data', mnistDataDir(), ...LIMIT]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: .*data-other\.safetensors was trained on .*elsewhere, .*data-ref\.safetensors on the default data; all are scored on --data /);
});

test('MultiMNIST checkpoints trained with different shifts are refused (the test pairs are drawn with one shift)', async () => {
  const a = await capsnetFile('mm-shift4.safetensors', 5, { inputSize: 36 }, { experiment: 'multimnist', testSeed: 3, maxShift: 4 });
  const b = await capsnetFile('mm-shift6.safetensors', 6, { inputSize: 36 }, { experiment: 'multimnist', testSeed: 3, maxShift: 6 });
  const r = await runCli(['eval', '--checkpoint', a, '--checkpoint', b, ...LIMIT]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /mm-shift6\.safetensors: shift 6 differs from .*mm-shift4\.safetensors's 4/);
});

test.run();
