// The affine-robustness data (src/data/affine.ts): training images placed at random in a 40x40
// canvas, and the affNIST-style test set (random rotation, shear, scale, translation; bilinear).
// Pure CPU tests on real MNIST and on made-up images.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeRng } from './helpers/random.ts';
import type { Dataset } from '../src/data/dataset.ts';
import { Rng } from '../src/data/rng.ts';
import {
  AFFNIST_STYLE, AFFNIST_TRAIN, CIFAR10_CROPS, CanvasBatches, fillCentred, IDENTITY_TRANSFORM, affineMatrix, affineTestExample, fillAffineTest,
  inkBox, placeBytes, sampleTransform, translationRange, warpAffine, type AffineExample,
} from '../src/data/affine.ts';
import { TrainingBatches } from '../src/train/batches.ts';
import { loadMnist } from '../src/io/idx-file.ts';

let mnistCache: { train: Dataset; test: Dataset } | null = null;
const mnist = () => (mnistCache ??= loadMnist());

function madeUp(count: number, side: number, seed: number, channels = 1): Dataset {
  const rng = makeRng(seed);
  // Ink only in the central 20x20, as MNIST's digits.
  const images = new Uint8Array(count * side * side * channels);
  const m = Math.floor((side - 20) / 2);
  for (let i = 0; i < count; i++)
    for (let y = m; y < side - m; y++)
      for (let x = m; x < side - m; x++)
        for (let c = 0; c < channels; c++) images[((i * side + y) * side + x) * channels + c] = rng() < 0.4 ? Math.floor(rng() * 256) : 0;
  return { images, labels: Uint8Array.from({ length: count }, (_, i) => i % 10), count, height: side, width: side, channels };
}

const sum = (a: ArrayLike<number>, from = 0, to = a.length) => {
  let s = 0;
  for (let k = from; k < to; k++) s += a[k];
  return s;
};

const train = suite('training images in a 40x40 canvas');

train('with the canvas at the images\' size it reproduces TrainingBatches bit for bit', () => {
  const ds = madeUp(50, 28, 1);
  const a = new TrainingBatches(ds, 8, 7, 2);
  const b = new CanvasBatches(ds, 8, 7, { canvas: 28, maxShift: 2 });
  const [x1, x2] = [new Float32Array(8 * 784), new Float32Array(8 * 784)];
  const [l1, l2] = [new Int32Array(8), new Int32Array(8)];
  for (const step of [0, 3, 6, 13]) {
    a.fill(step, x1, l1);
    b.fill(step, x2, l2);
    assert.equal(x2, x1, `step ${step}`);
    assert.equal(l2, l1);
  }
});

train('MNIST at 40x40 with shifts up to 6: every digit whole, at a shift in range, every shift drawn, deterministic', () => {
  const { train: ds } = mnist();
  const B = 64;
  const batches = new CanvasBatches(ds, B, 3, AFFNIST_TRAIN);
  const images = new Float32Array(B * 1600);
  const labels = new Int32Array(B);
  const shifts = new Set<string>();
  const scratch = new Uint8Array(1600);
  for (const step of [0, 1, 900]) {
    batches.fill(step, images, labels);
    const order = batches.order(Math.floor(step / batches.stepsPerEpoch));
    const k = step % batches.stepsPerEpoch;
    for (let b = 0; b < B; b++) {
      const i = order[k * B + b];
      assert.is(labels[b], ds.labels[i]);
      // Find the shift that reproduces this image: exactly one in [-6, 6]^2 must.
      let found: string | null = null;
      for (let dy = -6; dy <= 6 && !found; dy++) {
        for (let dx = -6; dx <= 6 && !found; dx++) {
          placeBytes(ds, i, 40, dx, dy, scratch, 0);
          if (scratch.every((v, p) => Math.fround(v / 255) === images[b * 1600 + p])) found = `${dx},${dy}`;
        }
      }
      assert.ok(found, `example ${b} of step ${step} is the digit at some shift within 6`);
      shifts.add(found!);
      // Nothing falls off: the ink of the 28x28 digit is all there.
      assert.ok(Math.abs(sum(images, b * 1600, (b + 1) * 1600) - sum(ds.images, i * 784, (i + 1) * 784) / 255) < 1e-3, 'ink kept');
    }
  }
  assert.ok(shifts.size > 100, `${shifts.size} distinct shifts of the 169 seen`);
  const again = new Float32Array(B * 1600);
  new CanvasBatches(ds, B, 3, AFFNIST_TRAIN).fill(900, again, new Int32Array(B));
  batches.fill(900, images, labels);
  assert.equal(again, images);
});

train('a smaller canvas crops: CIFAR-10\'s random 24x24 windows of 32x32 colour images, and the centre crop', () => {
  const ds = madeUp(20, 32, 6, 3); // (y, x, channel) bytes, as the CIFAR-10 reader gives them
  ds.images.forEach((_, k, a) => { a[k] = (k * 7 + 3) % 251; }); // ink everywhere, so every window differs
  const B = 5;
  const batches = new CanvasBatches(ds, B, 2, CIFAR10_CROPS);
  const images = new Float32Array(B * 3 * 576);
  const labels = new Int32Array(B);
  const offsets = new Set<string>();
  for (const step of [0, 1, 2, 3]) {
    batches.fill(step, images, labels);
    const order = batches.order(0);
    for (let b = 0; b < B; b++) {
      const i = order[step * B + b];
      // Find the window (x0, y0) in [0, 8]^2 this crop is, channel planes [3, 24, 24].
      let found: string | null = null;
      for (let y0 = 0; y0 <= 8 && !found; y0++) {
        for (let x0 = 0; x0 <= 8 && !found; x0++) {
          let same = true;
          for (let c = 0; c < 3 && same; c++)
            for (let y = 0; y < 24 && same; y++)
              for (let x = 0; x < 24 && same; x++)
                same = images[((b * 3 + c) * 24 + y) * 24 + x] === Math.fround(ds.images[((i * 32 + y + y0) * 32 + x + x0) * 3 + c] / 255);
          if (same) found = `${x0},${y0}`;
        }
      }
      assert.ok(found, `crop ${b} of step ${step} is a 24x24 window of example ${i}`);
      offsets.add(found!);
    }
  }
  assert.ok(offsets.size > 10, `${offsets.size} different windows`);
  const centre = new Float32Array(2 * 3 * 576);
  const centreLabels = new Int32Array(2);
  assert.is(fillCentred(ds, 24, 19, centre, centreLabels), 1);
  assert.is(centre[0], Math.fround(ds.images[((19 * 32 + 4) * 32 + 4) * 3] / 255), 'the centre window starts at (4, 4)');
  assert.is(centreLabels[1], -1);
  assert.ok(centre.subarray(3 * 576).every((v) => v === 0));
});

train('fillCentred puts the MNIST test set in the middle of the 40x40 canvas', () => {
  const { test } = mnist();
  const images = new Float32Array(3 * 1600);
  const labels = new Int32Array(3);
  assert.is(fillCentred(test, 40, 9998, images, labels), 2);
  const bytes = new Uint8Array(1600);
  placeBytes(test, 9999, 40, 0, 0, bytes, 0);
  assert.equal(images.subarray(1600, 3200), Float32Array.from(bytes, (v) => v / 255));
  assert.equal(Array.from(labels), [test.labels[9998], test.labels[9999], -1]);
});

train('bad canvas options are refused', () => {
  const ds = madeUp(4, 28, 2);
  assert.throws(() => new CanvasBatches(ds, 2, 1, { canvas: 0, maxShift: 2 }), /canvas = 0, expected a positive integer/);
  assert.throws(() => new CanvasBatches(ds, 2, 1, { canvas: 40, maxShift: 1.5 }), /maxShift = 1.5/);
  assert.throws(() => new CanvasBatches(ds, 2, 1, AFFNIST_TRAIN).fill(0, new Float32Array(10), new Int32Array(2)), /expected images of 2 x 1600 floats/);
});

const aff = suite('affNIST-style transforms');

aff('the identity reproduces the digit centred in the canvas exactly; whole-pixel translations shift it exactly', () => {
  const ds = madeUp(3, 28, 3, 2); // two channels: planes [C, 40, 40]
  const out = new Float32Array(2 * 1600);
  const bytes = new Uint8Array(2 * 1600);
  for (const [dx, dy] of [[0, 0], [3, -2], [-5, 6]]) {
    warpAffine(ds, 1, { ...IDENTITY_TRANSFORM, tx: dx, ty: dy }, 40, out, 0);
    placeBytes(ds, 1, 40, dx, dy, bytes, 0);
    for (let p = 0; p < bytes.length; p++) {
      if (Math.abs(out[p] - bytes[p] / 255) > 1e-7) assert.unreachable(`translation (${dx}, ${dy}) pixel ${p}: ${out[p]} vs ${bytes[p] / 255}`);
    }
  }
});

aff('conventions: a positive rotation turns clockwise on screen, shear moves lower rows right, scale stretches about the centre', () => {
  // One bright pixel at a time; pixel centres are whole numbers, the source centre is (13.5, 13.5).
  const ds: Dataset = { images: new Uint8Array(28 * 28), labels: Uint8Array.from([0]), count: 1, height: 28, width: 28, channels: 1 };
  const brightest = (t: Parameters<typeof warpAffine>[2]) => {
    const out = new Float32Array(40 * 40);
    warpAffine(ds, 0, t, 40, out, 0);
    let best = 0;
    for (let p = 1; p < out.length; p++) if (out[p] > out[best]) best = p;
    return [best % 40, Math.floor(best / 40), out[best]];
  };
  ds.images[13 * 28 + 23] = 255; // x = 23, y = 13: (+9.5, -0.5) from the centre (13.5, 13.5)
  // 90 degrees: (u, v) -> (-v, u): (9.5, -0.5) -> (0.5, 9.5) -> canvas (19.5 + 0.5, 19.5 + 9.5) = (20, 29): below the centre.
  assert.equal(brightest({ ...IDENTITY_TRANSFORM, rotation: Math.PI / 2 }).slice(0, 2), [20, 29]);
  ds.images.fill(0);
  ds.images[23 * 28 + 13] = 255; // (-0.5, +9.5): a row below the centre
  // shear 0.2: x' = x + 0.2 y: (-0.5 + 1.9, 9.5) = (1.4, 9.5) -> canvas x 20.9: between 20 and 21, more on 21.
  const [sx, sy] = brightest({ ...IDENTITY_TRANSFORM, shear: 0.2 });
  assert.equal([sx, sy], [21, 29]);
  // scale y 1.2: v 9.5 -> 11.4: canvas y 30.9 -> pixel 31 brightest.
  assert.equal(brightest({ ...IDENTITY_TRANSFORM, scaleY: 1.2 }).slice(0, 2), [19, 31]);
  const [a, b, c, d] = affineMatrix({ ...IDENTITY_TRANSFORM, rotation: 0.3, shear: 0.1, scaleX: 0.9, scaleY: 1.1 });
  assert.ok(Math.abs(a * d - b * c - 0.99) < 1e-12, 'det = sx sy');
});

aff('sampled transforms stay within the documented ranges, cover them, and keep all the ink inside the canvas', () => {
  const { test } = mnist();
  const rng = new Rng(5);
  const N = 1500;
  const seen = { rot: [Infinity, -Infinity], shear: [Infinity, -Infinity], scale: [Infinity, -Infinity] };
  const out = new Float32Array(1600);
  const maxRot = (20 * Math.PI) / 180;
  let worstMass = 0;
  for (let n = 0; n < N; n++) {
    const index = (n * 7) % test.count;
    const t = sampleTransform(test, index, rng);
    assert.ok(Math.abs(t.rotation) <= maxRot && Math.abs(t.shear) <= 0.2, `rotation ${t.rotation}, shear ${t.shear}`);
    for (const s of [t.scaleX, t.scaleY]) assert.ok(s >= 0.8 && s <= 1.2, `scale ${s}`);
    seen.rot = [Math.min(seen.rot[0], t.rotation), Math.max(seen.rot[1], t.rotation)];
    seen.shear = [Math.min(seen.shear[0], t.shear), Math.max(seen.shear[1], t.shear)];
    seen.scale = [Math.min(seen.scale[0], t.scaleX, t.scaleY), Math.max(seen.scale[1], t.scaleX, t.scaleY)];
    const range = translationRange(test, index, affineMatrix(t), 40)!;
    assert.ok(range.x && range.y, 'the digit fits at 40x40');
    assert.ok(t.tx >= range.x![0] && t.tx <= range.x![1] && t.ty >= range.y![0] && t.ty <= range.y![1], 'translation in its range');
    if (n < 400) {
      // Ink mass scales by det A = sx sy; nothing is cut off at the border.
      warpAffine(test, index, t, 40, out, 0);
      const ratio = sum(out) / ((t.scaleX * t.scaleY * sum(test.images, index * 784, (index + 1) * 784)) / 255);
      worstMass = Math.max(worstMass, Math.abs(ratio - 1));
      for (let k = 0; k < 40; k++) {
        // (Exactly zero but for rounding: a border pixel centre maps at most onto the support's edge.)
        if (Math.max(out[k], out[39 * 40 + k], out[k * 40], out[k * 40 + 39]) > 1e-6) assert.unreachable(`example ${n}: ink on the canvas border`);
      }
    }
  }
  assert.ok(worstMass < 0.035, `ink mass / (det A x source ink) within 3.5% (measured: 2.1% at worst over 2,000) (worst ${worstMass})`);
  assert.ok(seen.rot[0] < -0.95 * maxRot && seen.rot[1] > 0.95 * maxRot, `rotations ${seen.rot}`);
  assert.ok(seen.shear[0] < -0.19 && seen.shear[1] > 0.19, `shears ${seen.shear}`);
  assert.ok(seen.scale[0] < 0.81 && seen.scale[1] > 1.19, `scales ${seen.scale}`);
});

aff('the test set is deterministic under a seed, independent of batching, and another seed changes it', () => {
  const { test } = mnist();
  const count = 40;
  const big = new Float32Array(32 * 1600);
  const bigLabels = new Int32Array(32);
  const info: AffineExample[] = [];
  assert.is(fillAffineTest(test, 9, count, 16, big, bigLabels, AFFNIST_STYLE, info), 24);
  assert.ok(bigLabels.subarray(24).every((l) => l === -1) && big.subarray(24 * 1600).every((v) => v === 0), 'padding after the end');
  assert.is(info[0].index, 16);
  const small = new Float32Array(4 * 1600);
  const smallLabels = new Int32Array(4);
  fillAffineTest(test, 9, count, 20, small, smallLabels);
  assert.equal(small, big.subarray(4 * 1600, 8 * 1600));
  assert.equal(Array.from(smallLabels), Array.from(bigLabels.subarray(4, 8)));
  assert.equal(Array.from(smallLabels), Array.from(test.labels.subarray(20, 24)));
  const other = new Float32Array(1600);
  const e1 = affineTestExample(test, 10, 20, other, 0);
  const e2 = affineTestExample(test, 9, 20, new Float32Array(1600), 0);
  assert.ok(e1.transform.rotation !== e2.transform.rotation, 'another seed, another transform');
  assert.ok(!other.every((v, k) => v === small[k]), 'another seed, another image');
  // Example n + count uses the same digit with another transform.
  assert.is(affineTestExample(test, 9, 10_020, new Float32Array(1600), 0).index, 20);
});

aff('inkBox, blank images and bad arguments', () => {
  const ds: Dataset = { images: new Uint8Array(2 * 784), labels: Uint8Array.from([3, 4]), count: 2, height: 28, width: 28, channels: 1 };
  ds.images[784 + 5 * 28 + 7] = 9;
  ds.images[784 + 20 * 28 + 2] = 9;
  assert.equal(inkBox(ds, 1), { x0: 2, x1: 7, y0: 5, y1: 20 });
  ds.images[784 + 6 * 28 + 12] = 200;
  assert.equal(inkBox(ds, 1, 10), { x0: 12, x1: 12, y0: 6, y1: 6 }, 'pixels below the threshold are not ink');
  ds.images[784 + 6 * 28 + 12] = 0;
  assert.is(inkBox(ds, 0), null);
  const t = sampleTransform(ds, 0, new Rng(1));
  assert.equal([t.tx, t.ty], [0, 0], 'a blank image stays centred');
  const out = new Float32Array(1600);
  warpAffine(ds, 0, t, 40, out, 0);
  assert.ok(out.every((v) => v === 0));
  assert.throws(() => warpAffine(ds, 0, { ...IDENTITY_TRANSFORM, scaleX: 0 }, 40, out, 0), /is singular/);
  assert.throws(() => warpAffine(ds, 2, IDENTITY_TRANSFORM, 40, out, 0), /index 2, the dataset has 2 examples/);
  assert.throws(() => fillAffineTest(ds, 1, 10, 0, new Float32Array(100), new Int32Array(2)), /images has 100 floats, expected 2 \* 1600/);
  assert.throws(() => fillAffineTest(ds, 1, 10, 0, out, new Int32Array(1), { ...AFFNIST_STYLE, minScale: 1.3 }), /0 < minScale <= maxScale/);
});

train.run();
aff.run();
