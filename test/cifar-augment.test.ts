// CIFAR-10's training distortions (src/data/cifar.ts CIFAR10_AUGMENT, applied by CanvasBatches
// with CIFAR10_TRAIN): deterministic in (seed, step), the crops unchanged by them, flips exact
// mirror images, brightness and contrast drawn within their documented ranges and applied as
// documented (checked against an f64 computation from the plain crops), values within [0, 1].
// Data: a generated CIFAR-10 batch (random bytes), parsed by the real reader.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeRng } from './helpers/random.ts';
import { assertClose } from './helpers/assert.ts';
import { CIFAR10_AUGMENT, parseCifarBatch, type ColourAugmentRanges } from '../src/data/cifar.ts';
import { CanvasBatches, CIFAR10_CROPS, CIFAR10_TRAIN } from '../src/data/affine.ts';
import { experimentAugment, experimentBatches } from '../src/cli/experiments.ts';

const test = suite('CIFAR-10 augmentation', {});

function cifarData(count: number, seed: number) {
  const rng = makeRng(seed);
  const bytes = new Uint8Array(count * 3073);
  for (let n = 0; n < count; n++) {
    bytes[n * 3073] = n % 10;
    for (let p = 1; p < 3073; p++) bytes[n * 3073 + p] = Math.floor(rng() * 256);
  }
  return parseCifarBatch(bytes, 'generated.bin');
}

const data = cifarData(40, 11);
const B = 8;
const SIDE = 24;
const SIZE = 3 * SIDE * SIDE;
const PLANE = SIDE * SIDE;

function batchOf(batches: CanvasBatches, step: number) {
  const images = new Float32Array(B * SIZE);
  const labels = new Int32Array(B);
  batches.fill(step, images, labels);
  return { images, labels };
}

const bitwise = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

/** The f64 reference of one example's distortion, from its plain crop [3, 24, 24]. */
function reference(crop: Float32Array, a: { flip: boolean; brightness: number; contrast: number }): Float64Array {
  const out = new Float64Array(SIZE);
  for (let c = 0; c < 3; c++) {
    const v = new Float64Array(PLANE);
    for (let y = 0; y < SIDE; y++) for (let x = 0; x < SIDE; x++) v[y * SIDE + x] = crop[c * PLANE + y * SIDE + (a.flip ? SIDE - 1 - x : x)] + a.brightness;
    const mean = v.reduce((s, x) => s + x, 0) / PLANE;
    for (let p = 0; p < PLANE; p++) out[c * PLANE + p] = Math.min(1, Math.max(0, (v[p] - mean) * a.contrast + mean));
  }
  return out;
}

test('deterministic in (seed, step): another instance, another order of steps; other steps and seeds differ; labels and crops as without distortions', () => {
  const a = new CanvasBatches(data, B, 5, CIFAR10_TRAIN);
  const b = new CanvasBatches(data, B, 5, CIFAR10_TRAIN);
  const first = batchOf(a, 3);
  batchOf(a, 7);
  assert.ok(bitwise(first.images, batchOf(a, 3).images), 'the same instance, later');
  assert.ok(bitwise(first.images, batchOf(b, 3).images), 'another instance');
  assert.not.ok(bitwise(first.images, batchOf(a, 4).images), 'another step');
  assert.not.ok(bitwise(first.images, batchOf(new CanvasBatches(data, B, 6, CIFAR10_TRAIN), 3).images), 'another seed');
  // The examples and labels are those of the plain crops (the distortions have their own generator).
  assert.equal(first.labels, batchOf(new CanvasBatches(data, B, 5, CIFAR10_CROPS), 3).labels);
  // capsnet train --experiment cifar10 trains on the distorted crops.
  const trained = experimentBatches('cifar10', data, B, 5, CIFAR10_CROPS.maxShift, experimentAugment('cifar10') ?? null) as CanvasBatches;
  assert.ok(bitwise(first.images, batchOf(trained, 3).images), 'experimentBatches(cifar10) applies CIFAR10_AUGMENT');
  // A run that stored no distortions (from before they existed) resumes on the plain crops.
  const stored = experimentBatches('cifar10', data, B, 5, CIFAR10_CROPS.maxShift, null) as CanvasBatches;
  assert.ok(bitwise(batchOf(stored, 3).images, batchOf(new CanvasBatches(data, B, 5, CIFAR10_CROPS), 3).images), 'null: no distortions');
});

test('flips alone: each image is exactly its plain crop or the crop mirrored left-right, as drawn; both occur', () => {
  const flipsOnly: ColourAugmentRanges = { flip: true, maxBrightnessDelta: 0, minContrast: 1, maxContrast: 1 };
  const flipped = new CanvasBatches(data, B, 2, { ...CIFAR10_CROPS, augment: flipsOnly });
  const plain = new CanvasBatches(data, B, 2, CIFAR10_CROPS);
  const seen = new Set<boolean>();
  for (let step = 0; step < 6; step++) {
    const got = batchOf(flipped, step).images;
    const crop = batchOf(plain, step).images;
    flipped.augmentations(step)!.forEach((a, b) => {
      seen.add(a.flip);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < SIDE; y++) {
          for (let x = 0; x < SIDE; x++) {
            const o = b * SIZE + c * PLANE + y * SIDE;
            const want = crop[o + (a.flip ? SIDE - 1 - x : x)];
            if (got[o + x] !== want) assert.unreachable(`step ${step} example ${b} (flip ${a.flip}) channel ${c} (${y}, ${x}): ${got[o + x]}, expected ${want}`);
          }
        }
      }
      if (a.flip) assert.not.ok(bitwise(got.slice(b * SIZE, (b + 1) * SIZE), crop.slice(b * SIZE, (b + 1) * SIZE)), 'a mirrored random image differs from the original');
    });
  }
  assert.equal([...seen].sort(), [false, true]);
  // flip: false never mirrors, whatever the draw.
  const never = new CanvasBatches(data, B, 2, { ...CIFAR10_CROPS, augment: { ...flipsOnly, flip: false } });
  assert.ok(bitwise(batchOf(never, 1).images, batchOf(plain, 1).images));
});

test('the draws stay within the documented ranges and cover them; brightness alone adds one delta, clamped to [0, 1]', () => {
  const batches = new CanvasBatches(data, B, 9, CIFAR10_TRAIN);
  const draws = Array.from({ length: 60 }, (_, step) => batches.augmentations(step)!).flat();
  const maxDelta = 63 / 255;
  assert.is(CIFAR10_AUGMENT.maxBrightnessDelta, maxDelta);
  for (const a of draws) {
    assert.ok(Math.abs(a.brightness) <= maxDelta, `brightness ${a.brightness}`);
    assert.ok(a.contrast >= 0.2 && a.contrast <= 1.8, `contrast ${a.contrast}`);
  }
  const flips = draws.filter((a) => a.flip).length / draws.length;
  assert.ok(flips > 0.4 && flips < 0.6, `flip frequency ${flips} over ${draws.length} draws`);
  assert.ok(Math.max(...draws.map((a) => a.brightness)) > 0.9 * maxDelta && Math.min(...draws.map((a) => a.brightness)) < -0.9 * maxDelta, 'brightness spans its range');
  assert.ok(Math.max(...draws.map((a) => a.contrast)) > 1.7 && Math.min(...draws.map((a) => a.contrast)) < 0.3, 'contrast spans its range');

  const brightnessOnly = new CanvasBatches(data, B, 9, { ...CIFAR10_CROPS, augment: { flip: false, maxBrightnessDelta: maxDelta, minContrast: 1, maxContrast: 1 } });
  const plain = batchOf(new CanvasBatches(data, B, 9, CIFAR10_CROPS), 4).images;
  const got = batchOf(brightnessOnly, 4).images;
  const deltas = brightnessOnly.augmentations(4)!.map((a) => a.brightness);
  const want = Array.from(plain, (x, i) => Math.min(1, Math.max(0, x + deltas[Math.floor(i / SIZE)])));
  assertClose(got, want, { atol: 1e-6, rtol: 0 }, 'crop + brightness delta, clamped');
});

test('flip, brightness and contrast together match the f64 reference from the plain crops; every value in [0, 1]', () => {
  const batches = new CanvasBatches(data, B, 13, CIFAR10_TRAIN);
  const plain = new CanvasBatches(data, B, 13, CIFAR10_CROPS);
  let clamped = 0;
  for (let step = 0; step < 5; step++) {
    const got = batchOf(batches, step).images;
    const crop = batchOf(plain, step).images;
    batches.augmentations(step)!.forEach((a, b) => {
      const want = reference(crop.subarray(b * SIZE, (b + 1) * SIZE), a);
      assertClose(got.subarray(b * SIZE, (b + 1) * SIZE), want, { atol: 1e-6, rtol: 0 }, `step ${step} example ${b}`);
      clamped += want.filter((v) => v === 0 || v === 1).length;
    });
    for (const v of got) if (!(v >= 0 && v <= 1)) assert.unreachable(`value ${v} outside [0, 1]`);
  }
  // Random bytes under contrast up to 1.8 and brightness +-0.25 reach both ends: the clamp is exercised.
  assert.ok(clamped > 0, 'some values were clamped');
});

test('bad ranges are refused, naming the field', () => {
  assert.throws(() => new CanvasBatches(data, B, 1, { ...CIFAR10_CROPS, augment: { ...CIFAR10_AUGMENT, minContrast: 2 } }), /contrast range \[2, 1\.8\]/);
  assert.throws(() => new CanvasBatches(data, B, 1, { ...CIFAR10_CROPS, augment: { ...CIFAR10_AUGMENT, maxBrightnessDelta: -1 } }), /maxBrightnessDelta = -1/);
  assert.throws(() => new CanvasBatches(data, B, 1, { ...CIFAR10_CROPS, augment: { ...CIFAR10_AUGMENT, maxBrightnessDelta: Number.NaN } }), /maxBrightnessDelta = NaN/);
});

test.run();
