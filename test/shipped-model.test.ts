// The pretrained model the web app opens on first visit (src/web/models/capsnet-mnist.safetensors,
// written by tools/export-web-model.ts from a `capsnet train` checkpoint): the paper's full model in
// F16, with a sidecar that says how it was trained and what it scores. Checked here: the file is
// what the sidecar says (config, step, F16), the claim is the export's own full evaluation, and the
// model really is trained: Node classifies the first test images with it (an untrained or
// mis-exported model scores about 10%).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gpu } from './helpers/gpu.ts';
import { decodeCheckpoint } from '../src/io/checkpoint.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { CapsNet } from '../src/model/capsnet.ts';
import { makeConfig, parameterCount } from '../src/model/config.ts';
import { evaluate } from '../src/train/trainer.ts';
import { fillBatch } from '../src/data/dataset.ts';

// DEFAULT_MODEL of src/web/build-web.mjs: the file the page opens on first visit.
const MODEL = fileURLToPath(new URL('../src/web/models/capsnet-mnist.safetensors', import.meta.url));
const SIDECAR = MODEL.replace(/\.safetensors$/, '.json');
/** Test images Node classifies here: enough to tell trained from broken, a few seconds on llvmpipe. */
const CHECKED = 500;

const shipped = suite('the shipped pretrained model', {});

shipped('is the paper model in F16, and its sidecar records how it was trained and its full test accuracy', () => {
  const bytes = readFileSync(MODEL);
  const ckpt = decodeCheckpoint(bytes, MODEL);
  assert.equal(ckpt.config, makeConfig(), 'the paper configuration');
  const parameters = parameterCount(ckpt.config);
  assert.is(parameters, 8_215_568);
  // F16: two bytes a parameter plus the JSON header (an F32 export would be twice the size).
  assert.ok(bytes.length > 2 * parameters && bytes.length < 2 * parameters + 65_536, `${bytes.length} bytes for ${parameters} F16 parameters`);
  assert.is(ckpt.optimizer ?? null, null, 'no Adam state shipped');

  const info = JSON.parse(readFileSync(SIDECAR, 'utf8')) as Record<string, unknown>;
  assert.is(info.step, ckpt.step);
  assert.type(info.name, 'string');
  const training = info.training as Record<string, unknown>;
  assert.is(training.batchSize, 128, 'the paper recipe');
  assert.is(training.lr, 0.001);
  assert.is(training.experiment, 'mnist');
  assert.is(info.testCount, 10_000, 'the accuracy claim is the export\'s evaluation of the F16 copy on the whole test set');
  // The file carries the recipe too, so that `capsnet train --init-from` it continues the run.
  assert.equal((ckpt.training as { options?: unknown } | undefined)?.options, info.training, 'the recipe in the file is the sidecar\'s');
  // An average (capsnet average) lists its members, by file name and step, in both.
  const averaged = (ckpt.training as { averaged?: Array<{ file: string; step: number }> } | undefined)?.averaged;
  assert.equal(averaged, info.averaged, 'the averaged members in the file are the sidecar\'s');
  for (const m of averaged ?? []) assert.ok(!m.file.includes('/') && m.step <= ckpt.step, `member ${JSON.stringify(m)}: a file name (no local path), at most the model's step`);
  // A moving average (capsnet train --ema) says its decay, start step and run file, in both.
  const moving = (ckpt.training as { movingAverage?: { decay: number; since: number; of: string } } | undefined)?.movingAverage;
  assert.equal(moving, info.movingAverage, 'the moving average in the file is the sidecar\'s');
  if (moving) assert.ok(moving.decay > 0 && moving.decay < 1 && moving.since < ckpt.step && !moving.of.includes('/'), `movingAverage ${JSON.stringify(moving)}`);
  // What the page tells its users (README: Results).
  assert.ok(typeof info.testAccuracy === 'number' && info.testAccuracy >= 0.985, `test accuracy ${info.testAccuracy}`);
});

shipped(`classifies MNIST's first ${CHECKED} test images as a trained model does (in Node, from the F16 file)`, async () => {
  const ctx = await gpu();
  const ckpt = decodeCheckpoint(readFileSync(MODEL), MODEL);
  const model = new CapsNet(ctx, ckpt.config, ckpt.params);
  try {
    const test = loadMnist(undefined, ['test']).test;
    const order = Uint32Array.from({ length: CHECKED }, (_, i) => i);
    const result = await evaluate(model, CHECKED, 100, (start, images, labels) => fillBatch(test, order, start, images, labels));
    const info = JSON.parse(readFileSync(SIDECAR, 'utf8')) as { testAccuracy: number };
    console.log(`  shipped model: ${(result.accuracy * 100).toFixed(1)}% on the first ${CHECKED} test images (sidecar: ${(info.testAccuracy * 100).toFixed(2)}% on 10,000)`);
    // The first test images are no harder than the rest: at about 99% on 10,000, a handful of errors in 500.
    assert.ok(result.accuracy >= 0.98, `accuracy ${result.accuracy} on the first ${CHECKED} test images`);
  } finally {
    model.dispose();
  }
});

shipped.run();
