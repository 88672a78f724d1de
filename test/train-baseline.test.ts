// `capsnet train --model baseline` (issue 8): the paper's baseline CNN through the same CLI and
// Trainer as CapsNet, on tiny budgets: the checkpoint says which model it holds, a stopped and
// resumed run is bitwise the uninterrupted one (the dropout masks come from (seed, step)), eval
// loads the right model and writes logits, figures draws the curves and says why it skips the
// capsule figures, and flags that only make sense for CapsNet are refused.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { readMetrics } from '../src/io/metrics.ts';
import { loadAnyCheckpoint, loadCheckpoint } from '../src/io/checkpoint-file.ts';
import { decodeAnyCheckpoint, encodeCheckpoint } from '../src/io/checkpoint.ts';
import { baselineParameterShapes, makeBaselineConfig } from '../src/model/baseline-config.ts';
import { makeConfig, parameterShapes, type CapsNetConfig } from '../src/model/config.ts';
import { decodeSafetensors, encodeSafetensors } from '../src/io/safetensors.ts';

const TINY = JSON.stringify({ convChannels: [4, 4, 4], convPadding: 'valid', fcHidden: [16, 8] });
const FLAGS = ['--model', 'baseline', '--limit', '64', '--batch-size', '8', '--log-every', '2', '--config', TINY];

let root = '';
const base = suite('capsnet train --model baseline', {});
base.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-baseline-'));
});
base.after(() => rmSync(root, { recursive: true, force: true }));

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

base('train: a baseline checkpoint (model recorded), metrics without capsule losses, test accuracy', async () => {
  const out = join(root, 'run');
  const r = await runCli(['train', '--out', out, '--steps', '4', '--eval-limit', '30', ...FLAGS]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /baseline CNN, 17,538 parameters/);
  const ckpt = await loadAnyCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(ckpt.model, 'baseline');
  assert.is(ckpt.step, 4);
  assert.equal(ckpt.config, makeBaselineConfig(JSON.parse(TINY)));
  assert.equal(Object.keys(ckpt.params), Object.keys(baselineParameterShapes(ckpt.config as never)));
  assert.is((ckpt.training!.options as { model: string }).model, 'baseline');
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  const train = records.filter((m) => m.type === 'train');
  assert.equal(train.map((m) => m.step), [1, 2, 3, 4]);
  for (const m of train) {
    assert.ok(typeof m.loss === 'number' && Number.isFinite(m.loss), 'cross-entropy loss');
    assert.is(m.marginLoss, undefined);
    assert.is(m.reconLoss, undefined);
  }
  assert.is((records.find((m) => m.type === 'eval') as { count: number }).count, 30);
  // The CapsNet-only reader says what the file is instead of listing missing capsule tensors.
  await loadCheckpoint(join(out, 'checkpoint.safetensors')).then(
    () => assert.unreachable('a baseline file loaded as CapsNet'),
    (e: Error) => assert.match(e.message, /__metadata__\.model is 'baseline' \(the baseline CNN\), expected a CapsNet checkpoint/),
  );
});

base('stopped and resumed: bitwise the same parameters and Adam state as an uninterrupted run (dropout masks from seed and step)', async () => {
  const straight = join(root, 'straight');
  const resumed = join(root, 'resumed');
  const flags = [...FLAGS, '--checkpoint-every', '2', '--no-eval', '--seed', '9'];
  assert.is((await runCli(['train', '--out', straight, '--steps', '4', ...flags])).code, 0);
  assert.is((await runCli(['train', '--out', resumed, '--steps', '2', ...flags])).code, 0);
  const r = await runCli(['train', '--out', resumed, '--steps', '4', '--resume', '--no-eval']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /baseline CNN.*steps 3\.\.4 \(resumed\)/);
  const [a, b] = [await loadAnyCheckpoint(join(straight, 'checkpoint.safetensors')), await loadAnyCheckpoint(join(resumed, 'checkpoint.safetensors'))];
  assert.is(b.step, 4);
  for (const name of Object.keys(a.params)) {
    assert.ok(bytes(a.params[name]).equals(bytes(b.params[name])), `${name} differs`);
    assert.ok(bytes(a.optimizer!.m[name]).equals(bytes(b.optimizer!.m[name])), `adam.m.${name} differs`);
  }
  // Another seed drops other units: the run differs (the seed reaches the dropout masks and the data order).
  const other = join(root, 'other-seed');
  assert.is((await runCli(['train', '--out', other, '--steps', '4', ...flags.slice(0, -1), '10'])).code, 0);
  const c = await loadAnyCheckpoint(join(other, 'checkpoint.safetensors'));
  assert.not.ok(bytes(a.params['fc3.weight']).equals(bytes(c.params['fc3.weight'])), 'seed 10 trains differently');
});

base('eval loads the baseline from the checkpoint and writes logits; figures draws the curves and says why it skips the rest', async () => {
  const ckpt = join(root, 'run', 'checkpoint.safetensors');
  const file = join(root, 'eval.json');
  const r = await runCli(['eval', '--checkpoint', ckpt, '--limit', '25', '--output', file]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /baseline CNN, 25 test images, step 4/);
  const report = JSON.parse(readFileSync(file, 'utf8'));
  assert.is(report.model, 'baseline');
  assert.is(report.images.length, 25);
  for (const img of report.images) {
    assert.is(img.logits.length, 10);
    assert.is(img.lengths, undefined);
    assert.is(img.prediction, img.logits.indexOf(Math.max(...img.logits)));
  }
  const out = join(root, 'figures');
  const f = await runCli(['figures', '--checkpoint', ckpt, '--out', out]);
  assert.is(f.code, 0, f.stderr);
  assert.equal(readdirSync(out).sort(), ['accuracy.svg', 'loss.svg']);
  assert.match(f.stderr, /reconstructions and perturbation grids skipped: the checkpoint holds the baseline CNN/);
  const svg = readFileSync(join(out, 'loss.svg'), 'utf8');
  assert.not.match(svg, /reconstruction/, 'no capsule loss series for the baseline');
});

base('flags: CapsNet-only options, a wrong --model, changing the model on --resume, baseline --config fields', async () => {
  const out = join(root, 'never');
  const cases: Array<[string[], RegExp]> = [
    [['train', '--out', out, '--model', 'baseline', '--routings', '2'], /--model baseline: --routings only apply to CapsNet/],
    [['train', '--out', out, '--model', 'baseline', '--no-recon'], /--no-recon only apply to CapsNet/],
    [['train', '--out', out, '--model', 'resnet'], /--model: expected 'capsnet' or 'baseline', got 'resnet'/],
    [['train', '--out', out, '--model', 'baseline', '--config', '{"primaryTypes": 4}'], /unknown field 'primaryTypes' for --model baseline/],
    [['train', '--out', out, '--model', 'baseline', '--config', '{"dropout": 1.5}'], /dropout must be a number in \[0, 1\)/],
    [['train', '--out', out, '--seed', '4294967296'], /--seed: expected an integer in \[0, 4294967295\]/],
    [['train', '--out', join(root, 'run'), '--resume', '--model', 'capsnet'], /--model capsnet differs from the run's baseline/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(args);
    assert.is(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, pattern, args.join(' '));
  }
});

base('checkpoint metadata: model absent means CapsNet; an unknown model is refused by name', () => {
  const config = makeBaselineConfig(JSON.parse(TINY));
  const params = Object.fromEntries(Object.entries(baselineParameterShapes(config)).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1)).fill(0.25)]));
  const encoded = encodeCheckpoint({ model: 'baseline', config, params, step: 3 });
  const back = decodeAnyCheckpoint(encoded, 'mem');
  assert.is(back.model, 'baseline');
  assert.equal(back.params['fc1.bias'], params['fc1.bias']);
  const withMetadata = (bytes: Uint8Array, change: (meta: Record<string, string>) => void) => {
    const file = decodeSafetensors(bytes, 'mem');
    change(file.metadata);
    return encodeSafetensors(Object.fromEntries([...file.tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data }])), file.metadata);
  };
  const tampered = withMetadata(encoded, (meta) => (meta.model = 'resnet!!'));
  assert.throws(() => decodeAnyCheckpoint(tampered, 'tampered.safetensors'), /tampered\.safetensors: __metadata__\.model is 'resnet!!', expected one of 'capsnet', 'baseline'/);
  // A CapsNet file written before the field existed (or by another tool) has no model: CapsNet.
  const capsConfig = makeConfig({ conv1Channels: 4, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoder: false } as Partial<CapsNetConfig>);
  const capsParams = Object.fromEntries(Object.entries(parameterShapes(capsConfig)).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1))]));
  const old = withMetadata(encodeCheckpoint({ config: capsConfig, params: capsParams, step: 1 }), (meta) => delete meta.model);
  const caps = decodeAnyCheckpoint(old, 'old.safetensors');
  assert.is(caps.model, undefined);
  assert.equal(caps.config, capsConfig);
  // A baseline file without its model field is read as CapsNet and refused, listing what does not match.
  const unmarked = withMetadata(encoded, (meta) => delete meta.model);
  assert.throws(() => decodeAnyCheckpoint(unmarked, 'unmarked.safetensors'), /unmarked\.safetensors: __metadata__\.config: unknown field|unmarked\.safetensors: .*not a checkpoint of this model/);
});

base.run();
