// Checkpoints: exact round trips, files written by other tools, and every kind of bad file refused
// with a message that says what does not match.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeConfig, parameterShapes, parameterCount, PAPER_CONFIG, type CapsNetConfig } from '../src/model/config.ts';
import { CheckpointError, decodeAnyCheckpoint, decodeCheckpoint, encodeCheckpoint, type Checkpoint } from '../src/io/checkpoint.ts';
import { makeBaselineConfig, baselineParameterShapes } from '../src/model/baseline-config.ts';
import { saveCheckpoint, loadCheckpoint } from '../src/io/checkpoint-file.ts';
import { encodeSafetensors, type TensorToEncode } from '../src/io/safetensors.ts';
import { countCapsNetParams, capsNetConfig } from './reference/capsnet.ts';
import { makeRng } from './helpers/random.ts';

const SMALL = makeConfig({
  inputSize: 12, conv1Channels: 4, conv1Kernel: 3, primaryTypes: 2, primaryDim: 4, primaryKernel: 3,
  digitCaps: 3, digitDim: 5, decoderHidden: [6, 7],
});

function randomParams(cfg: CapsNetConfig, seed: number): Record<string, Float32Array> {
  const rng = makeRng(seed);
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(parameterShapes(cfg))) {
    out[name] = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng() - 0.5);
  }
  return out;
}

function sample(cfg = SMALL): Checkpoint {
  return {
    config: cfg,
    params: randomParams(cfg, 1),
    optimizer: { step: 17, m: randomParams(cfg, 2), v: randomParams(cfg, 3) },
    step: 17,
    training: { seed: 5, epoch: 1, rng: 123456 },
  };
}

const ckpt = suite('checkpoints');

ckpt('the parameter count of the paper model is 8,215,568 (6,804,224 without the decoder), as the reference says', () => {
  assert.is(parameterCount(PAPER_CONFIG), 8_215_568);
  assert.is(parameterCount(makeConfig({ decoder: false })), 6_804_224);
  assert.is(parameterCount(SMALL), countCapsNetParams(capsNetConfig({ ...SMALL })));
});

ckpt('round trip is exact: parameters, Adam moments, step, config, training state', () => {
  const original = sample();
  const back = decodeCheckpoint(encodeCheckpoint(original), 'mem');
  assert.equal(back.config, original.config);
  assert.is(back.step, 17);
  assert.equal(back.training, original.training);
  assert.is(back.optimizer!.step, 17);
  for (const name of Object.keys(original.params)) {
    assert.equal(Array.from(back.params[name]), Array.from(original.params[name]), name);
    assert.equal(Array.from(back.optimizer!.m[name]), Array.from(original.optimizer!.m[name]), `m ${name}`);
  }
});

ckpt('a file from another tool with only the model tensors loads with the paper config', () => {
  const params = randomParams(PAPER_CONFIG as CapsNetConfig, 4);
  const tensors: Record<string, TensorToEncode> = {};
  for (const [name, shape] of Object.entries(parameterShapes(PAPER_CONFIG as CapsNetConfig))) tensors[name] = { shape, data: params[name] };
  const back = decodeCheckpoint(encodeSafetensors(tensors), 'other-tool.safetensors');
  assert.equal(back.config, makeConfig());
  assert.is(back.step, 0);
  assert.is(back.optimizer, undefined);
  assert.equal(back.params['digit.W'].subarray(0, 5), params['digit.W'].subarray(0, 5));
});

ckpt('half precision storage halves the size and rounds to f16', () => {
  const original = sample();
  delete original.optimizer;
  const full = encodeCheckpoint(original);
  const half = encodeCheckpoint(original, { half: true });
  assert.ok(half.length < full.length * 0.6, `${half.length} vs ${full.length}`);
  const back = decodeCheckpoint(half, 'half');
  const w = original.params['conv1.weight'];
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back.params['conv1.weight'][i] - w[i]) <= Math.abs(w[i]) * 1e-3 + 1e-7);
});

ckpt('a moving average of the parameters (train --ema) round-trips exactly, F32 even in a half file, and its refusals name the field', () => {
  const original: Checkpoint = { ...sample(), ema: { decay: 0.999, since: 5, params: randomParams(SMALL, 9) } };
  for (const half of [false, true]) {
    const back = decodeCheckpoint(encodeCheckpoint(original, { half }), 'ema.safetensors');
    assert.is(back.ema!.decay, 0.999);
    assert.is(back.ema!.since, 5);
    for (const name of Object.keys(original.params)) assert.equal(Array.from(back.ema!.params[name]), Array.from(original.ema!.params[name]), `ema ${name} (half ${half})`);
  }
  assert.is(decodeCheckpoint(encodeCheckpoint(sample()), 'plain').ema, undefined, 'none when not trained with one');
  assert.throws(() => encodeCheckpoint({ ...original, ema: { ...original.ema!, decay: 1 } }), /ema: decay 1 is not a number in \(0, 1\)/);
  assert.throws(() => encodeCheckpoint({ ...original, ema: { ...original.ema!, since: 18 } }), /ema: since 18 is not a step in \[0, 17\]/);
  const withEma = (t: Record<string, TensorToEncode>, m: Record<string, string>) => {
    for (const [name, shape] of Object.entries(parameterShapes(SMALL))) t[`ema.${name}`] = { shape, data: original.ema!.params[name] };
    m.ema = JSON.stringify({ decay: 0.999, since: 5 });
  };
  refused((t, m) => { withEma(t, m); delete t['ema.digit.W']; }, /missing tensor 'ema\.digit\.W'/);
  refused((t, m) => { withEma(t, m); delete m.ema; }, /has ema tensors but no 'ema'/);
  refused((t, m) => { withEma(t, m); m.ema = '{"decay": 0, "since": 5}'; }, /__metadata__\.ema: decay 0 is not a number in \(0, 1\)/);
  refused((t, m) => { withEma(t, m); m.ema = '{"decay": 0.9, "since": "5"}'; }, /__metadata__\.ema: since "5" is not a step in \[0, 17\]/);
  refused((t, m) => { withEma(t, m); m.ema = '[0.9]'; }, /__metadata__\.ema must be a JSON object/);
  refused((t, m) => { withEma(t, m); m.ema = '{"decay":'; }, /__metadata__\.ema is not valid JSON/);
  refused((t) => (t['ema.extra'] = { shape: [1], data: new Float32Array(1) }), /unexpected tensor 'ema\.extra'/);
  refused((_, m) => (m.ema = '{"decay": 0.9, "since": 5}'), /__metadata__\.ema describes a moving average but the file has no ema\.<name> tensors/);
});

function refused(mutate: (t: Record<string, TensorToEncode>, meta: Record<string, string>) => void, pattern: RegExp) {
  const c = sample();
  const tensors: Record<string, TensorToEncode> = {};
  for (const [name, shape] of Object.entries(parameterShapes(c.config))) {
    tensors[name] = { shape, data: c.params[name] };
    tensors[`adam.m.${name}`] = { shape, data: c.optimizer!.m[name] };
    tensors[`adam.v.${name}`] = { shape, data: c.optimizer!.v[name] };
  }
  const meta: Record<string, string> = { format: 'capsnet-webgpu/1', config: JSON.stringify(c.config), step: '17', 'adam.step': '17' };
  mutate(tensors, meta);
  assert.throws(() => decodeCheckpoint(encodeSafetensors(tensors, meta), 'bad.safetensors'), (e: Error) => {
    if (!pattern.test(e.message)) throw new Error(`message did not match ${pattern}: ${e.message}`);
    if (!(e instanceof CheckpointError)) throw new Error(`a ${e.constructor.name}, not a CheckpointError: ${e.message}`);
    return /bad\.safetensors/.test(e.message);
  });
}

ckpt('mismatched checkpoints are refused, naming what does not match', () => {
  refused((t) => delete t['conv1.bias'], /missing tensor 'conv1\.bias' \[4\]/);
  refused((t) => (t['digit.W'] = { shape: [32, 3, 5, 2], data: new Float32Array(960) }), /'digit\.W' has shape \[32, 3, 5, 2\], expected \[32, 3, 5, 4\]/);
  refused((t) => (t['extra.weight'] = { shape: [2], data: new Float32Array(2) }), /unexpected tensor 'extra\.weight'/);
  refused((t) => (t['conv1.bias'] = { shape: [4], data: new Int32Array(4) }), /'conv1\.bias' has dtype I32, expected F32 or F16/);
  refused((t) => delete t['adam.v.primary.bias'], /missing tensor 'adam\.v\.primary\.bias'/);
  refused((_, m) => (m.config = '{"inputSize": 12,'), /__metadata__\.config is not valid JSON/);
  refused((_, m) => (m.config = JSON.stringify({ ...SMALL, routings: 0 })), /routings must be a positive integer/);
  refused((_, m) => (m.step = '-3'), /__metadata__\.step must be a non-negative integer/);
  refused((_, m) => (m.training = '[1, 2]'), /__metadata__\.training must be a JSON object/);
  refused((_, m) => (m.training = '"options"'), /__metadata__\.training must be a JSON object/);
  refused((_, m) => (m.format = 'something-else/9'), /format is 'something-else\/9'/);
  refused((_, m) => delete m['adam.step'], /no 'adam\.step'/);
});

ckpt('every refusal is a CheckpointError (one class to catch), also corrupt bytes and the other model kind', () => {
  const bytes = encodeCheckpoint(sample());
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['truncated', () => decodeCheckpoint(bytes.subarray(0, 100), 'cut.safetensors'), /cut\.safetensors/],
    ['not safetensors', () => decodeAnyCheckpoint(new TextEncoder().encode('hello, world'), 'text.safetensors'), /text\.safetensors/],
  ];
  const baselineConfig = makeBaselineConfig({ convChannels: [2, 2, 2], fcHidden: [4, 3], inputSize: 8 });
  const baselineParams = Object.fromEntries(Object.entries(baselineParameterShapes(baselineConfig)).map(([n, shape]) => [n, new Float32Array(shape.reduce((a, b) => a * b, 1))]));
  const baseline = encodeCheckpoint({ model: 'baseline', config: baselineConfig, params: baselineParams, step: 3 });
  cases.push(['baseline as CapsNet', () => decodeCheckpoint(baseline, 'cnn.safetensors'), /cnn\.safetensors: __metadata__\.model is 'baseline'/]);
  for (const [what, decode, pattern] of cases) {
    try {
      decode();
    } catch (error) {
      assert.instance(error, CheckpointError, what);
      assert.is((error as Error).name, 'CheckpointError', what);
      assert.match((error as Error).message, pattern, what);
      if (what !== 'baseline as CapsNet') assert.instance((error as Error).cause, Error, `${what}: the check's own error as cause`);
      continue;
    }
    assert.unreachable(`${what}: decoded`);
  }
  // Not the file's fault (a bug, memory running out): not a CheckpointError, its own type kept.
  assert.throws(() => decodeAnyCheckpoint(null as unknown as Uint8Array, 'null.safetensors'), (e: Error) => e instanceof TypeError && !(e instanceof CheckpointError));
  // The same baseline file decodes as what it is.
  assert.is(decodeAnyCheckpoint(baseline, 'cnn.safetensors').model, 'baseline');
});

ckpt('files: save is atomic, load names the file; a truncated or corrupt file is refused and nothing is overwritten', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-ckpt-'));
  try {
    const path = join(dir, 'model.safetensors');
    await saveCheckpoint(path, sample());
    assert.equal(readdirSync(dir), ['model.safetensors'], 'no temporary file left');
    const good = readFileSync(path);
    assert.is((await loadCheckpoint(path)).step, 17);
    const truncated = join(dir, 'truncated.safetensors');
    writeFileSync(truncated, good.subarray(0, good.length - 100));
    await loadCheckpoint(truncated).then(() => assert.unreachable('truncated file loaded'), (e: Error) => assert.match(e.message, /truncated\.safetensors/));
    const flipped = Buffer.from(good);
    flipped[3] = 0x7f; // header length now absurd
    writeFileSync(truncated, flipped);
    await loadCheckpoint(truncated).then(() => assert.unreachable('corrupt file loaded'), (e: Error) => assert.match(e.message, /truncated\.safetensors/));
    await loadCheckpoint(join(dir, 'missing.safetensors')).then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /missing\.safetensors/));
    // A save that fails (folder gone) leaves the previous checkpoint untouched.
    await saveCheckpoint(join(dir, 'nope', 'x.safetensors'), sample()).then(() => assert.unreachable(), () => {});
    assert.ok(readFileSync(path).equals(good));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

ckpt.run();
