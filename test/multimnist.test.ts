// MultiMNIST: the pair generator (src/data/multimnist.ts) on real MNIST and on small made-up sets,
// and the model side: the two-of-two correctness op and the two-target loss (margin with two-hot
// targets + one reconstruction per digit from its own capsule), GPU vs the f64 reference
// (test/reference/multimnist.ts), whose gradients are checked against finite differences.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { assertClose, type Tolerance } from './helpers/assert.ts';
import { makeRng } from './helpers/random.ts';
import { gradcheck } from './reference/gradcheck.ts';
import { capsNetConfig, capsNetForward } from './reference/capsnet.ts';
import * as ref from './reference/multimnist.ts';
import type { Dataset } from '../src/data/dataset.ts';
import { Rng } from '../src/data/rng.ts';
import {
  MULTIMNIST_PAPER, MULTIMNIST_SHIFT6, MultiMnistBatches, MultiMnistTestSet, PartnerSampler, createMultiMnistBatch,
  pairOverlap, twoColourImage, writePair,
} from '../src/data/multimnist.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { CapsNet, evaluateTwoDigits, initialParameters, twoDigitLoss } from '../src/model/capsnet.ts';
import { makeConfig, type CapsNetConfig } from '../src/model/config.ts';
import { topKCorrect, topKHits } from '../src/ops/losses.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { sum } from '../src/ops/elementwise.ts';
import { backward } from '../src/autograd/tape.ts';
import { ShapeError } from '../src/gpu/errors.ts';

let mnistCache: { train: Dataset; test: Dataset } | null = null;
const mnist = () => (mnistCache ??= loadMnist());

/** A made-up single-channel dataset: `perClass[c]` examples of class c, random sparse bytes. */
function madeUp(perClass: number[], side = 28, seed = 1): Dataset {
  const rng = makeRng(seed);
  const count = perClass.reduce((a, b) => a + b, 0);
  const labels = new Uint8Array(count);
  let i = 0;
  perClass.forEach((n, c) => { for (let k = 0; k < n; k++) labels[i++] = c; });
  const images = Uint8Array.from({ length: count * side * side }, () => (rng() < 0.3 ? Math.floor(rng() * 256) : 0));
  return { images, labels, count, height: side, width: side, channels: 1 };
}

/** The placed digit, recomputed here: example `index` at ((canvas - 28) / 2 + d) with cropping, as bytes. */
function placed(ds: Dataset, index: number, canvas: number, dx: number, dy: number): Uint8Array {
  const out = new Uint8Array(canvas * canvas);
  const off = (canvas - ds.width) >> 1;
  for (let y = 0; y < ds.height; y++) {
    for (let x = 0; x < ds.width; x++) {
      const X = x + off + dx;
      const Y = y + off + dy;
      if (X >= 0 && X < canvas && Y >= 0 && Y < canvas) out[Y * canvas + X] = ds.images[index * ds.width * ds.height + y * ds.width + x];
    }
  }
  return out;
}

/** Every structural property of a filled batch, against the dataset (n: slots that hold examples). */
function checkBatch(ds: Dataset, batch: ReturnType<typeof createMultiMnistBatch>, maxShift: number, n = batch.size): { clamped: number } {
  const S = batch.canvas;
  const P = S * S;
  let clamped = 0;
  for (let b = 0; b < n; b++) {
    const i = batch.firstIndex[b];
    const j = batch.secondIndex[b];
    assert.ok(i >= 0 && j >= 0 && i < ds.count && j < ds.count, `indices ${i}, ${j}`);
    assert.is(batch.firstLabels[b], ds.labels[i]);
    assert.is(batch.secondLabels[b], ds.labels[j]);
    assert.ok(batch.firstLabels[b] !== batch.secondLabels[b], `example ${b}: both digits are ${batch.firstLabels[b]}`);
    const shifts = Array.from(batch.shifts.subarray(b * 4, b * 4 + 4));
    assert.ok(shifts.every((s) => Number.isInteger(s) && Math.abs(s) <= maxShift), `shifts ${shifts} within ${maxShift}`);
    const t = Array.from(batch.targets.subarray(b * batch.classes, (b + 1) * batch.classes));
    assert.is(t.reduce((a, x) => a + x, 0), 2, 'two-hot');
    assert.is(t[batch.firstLabels[b]], 1);
    assert.is(t[batch.secondLabels[b]], 1);
    const a = placed(ds, i, S, shifts[0], shifts[1]);
    const c = placed(ds, j, S, shifts[2], shifts[3]);
    for (let p = 0; p < P; p++) {
      const k = b * P + p;
      if (batch.first[k] !== Math.fround(a[p] / 255) || batch.second[k] !== Math.fround(c[p] / 255)) {
        assert.unreachable(`example ${b} pixel ${p}: a placed digit differs from the dataset image at its shift`);
      }
      // The sum/clamp rule on the bytes, and the same within rounding on the floats.
      if (batch.images[k] !== Math.fround(Math.min(255, a[p] + c[p]) / 255)) assert.unreachable(`example ${b} pixel ${p}: input is not min(a + b, 255) / 255`);
      if (Math.abs(batch.images[k] - Math.min(1, batch.first[k] + batch.second[k])) > 1e-7) assert.unreachable(`example ${b} pixel ${p}: input is not min(first + second, 1)`);
      if (a[p] + c[p] > 255) clamped++;
    }
  }
  return { clamped };
}

const gen = suite('MultiMNIST generator');

for (const options of [MULTIMNIST_PAPER, MULTIMNIST_SHIFT6]) {
  gen(`training batches (shift ${options.maxShift}): different classes, shifts within bounds, sum/clamp rule, targets`, () => {
    const { train } = mnist();
    const batches = new MultiMnistBatches(train, 64, 11, options);
    const batch = batches.createBatch();
    let clamped = 0;
    const seenShifts = new Set<number>();
    for (const step of [0, 1, 937, 5000]) {
      batches.fill(step, batch);
      clamped += checkBatch(train, batch, options.maxShift).clamped;
      batch.shifts.forEach((s) => seenShifts.add(s));
    }
    assert.ok(clamped > 0, 'some pixels were clamped (the rule was exercised)');
    assert.is(seenShifts.size, 2 * options.maxShift + 1, `every shift in [-${options.maxShift}, ${options.maxShift}] drawn`);
  });
}

gen('test set: the same properties; padding slots after the end; examples do not depend on the batching', () => {
  const { test } = mnist();
  const set = new MultiMnistTestSet(test, 100, 5);
  const big = set.createBatch(64);
  assert.is(set.fill(64, big), 36);
  checkBatch(test, big, 4, 36);
  assert.ok(big.firstLabels.subarray(36).every((l) => l === -1) && big.targets.subarray(36 * 10).every((t) => t === 0));
  assert.ok(big.images.subarray(36 * 36 * 36).every((x) => x === 0), 'padding images are zero');
  // Example n is the same whether filled at position 0 of a small batch or deep in a big one.
  const small = set.createBatch(5);
  set.fill(70, small);
  for (let b = 0; b < 5; b++) {
    assert.is(small.firstIndex[b], big.firstIndex[6 + b]);
    assert.is(small.secondIndex[b], big.secondIndex[6 + b]);
    assert.equal(Array.from(small.shifts.subarray(b * 4, b * 4 + 4)), Array.from(big.shifts.subarray((6 + b) * 4, (6 + b) * 4 + 4)));
    assert.equal(small.images.subarray(b * 1296, (b + 1) * 1296), big.images.subarray((6 + b) * 1296, (7 + b) * 1296));
  }
  assert.is(small.firstIndex[0], 70, 'example n pairs test image n mod count');
  // A different seed gives other pairs.
  const other = new MultiMnistTestSet(test, 100, 6).createBatch(5);
  new MultiMnistTestSet(test, 100, 6).fill(70, other);
  assert.ok(Array.from(other.secondIndex).some((j, b) => j !== small.secondIndex[b]), 'seed changes the partners');
});

gen('deterministic in (seed, step): a fresh generator at step s gives the same batch; epochs cover every first digit once', () => {
  const ds = madeUp([7, 9, 5, 11], 28, 3); // 32 examples
  const a = new MultiMnistBatches(ds, 8, 42);
  const b = new MultiMnistBatches(ds, 8, 42);
  const c = new MultiMnistBatches(ds, 8, 43);
  const x = a.createBatch();
  const y = b.createBatch();
  const z = c.createBatch();
  for (let s = 0; s < 6; s++) a.fill(s, x); // a walks through the steps, b jumps straight to 5
  b.fill(5, y);
  c.fill(5, z);
  assert.equal(x.images, y.images);
  assert.equal(x.shifts, y.shifts);
  assert.equal(x.secondIndex, y.secondIndex);
  assert.ok(!x.images.every((v, k) => v === z.images[k]), 'another seed, another batch');
  a.fill(6, y);
  assert.ok(!x.images.every((v, k) => v === y.images[k]), 'another step, another batch');
  // stepsPerEpoch = 4: steps 0-3 use each example once as the first digit, in a new order each epoch.
  assert.is(a.stepsPerEpoch, 4);
  // Each first digit's partner and shifts, per epoch: a new pairing every epoch.
  const pairings: Array<Map<number, string>> = [];
  for (const epoch of [0, 1]) {
    const firsts: number[] = [];
    const pairing = new Map<number, string>();
    for (let s = 0; s < 4; s++) {
      a.fill(epoch * 4 + s, x);
      checkBatch(ds, x, 4);
      firsts.push(...x.firstIndex);
      x.firstIndex.forEach((f, k) => pairing.set(f, `${x.secondIndex[k]}@${Array.from(x.shifts.subarray(4 * k, 4 * k + 4))}`));
    }
    assert.equal([...firsts].sort((p, q) => p - q), Array.from({ length: 32 }, (_, i) => i));
    pairings.push(pairing);
  }
  const same = [...pairings[0]].filter(([f, pair]) => pairings[1].get(f) === pair).length;
  assert.ok(same <= 2, `${same} of 32 first digits got the same partner and shifts in epoch 2 as in epoch 1`);
});

gen('partners are uniform over the examples of the other classes', () => {
  const ds = madeUp([10, 30, 60], 28, 4);
  const sampler = new PartnerSampler(ds);
  const rng = new Rng(9);
  const counts = new Map<number, number>();
  const N = 30000;
  for (let k = 0; k < N; k++) {
    const j = sampler.partner(k % 10, rng); // class-0 examples
    counts.set(j, (counts.get(j) ?? 0) + 1);
  }
  assert.ok([...counts.keys()].every((j) => ds.labels[j] !== 0), 'never the same class');
  assert.is(counts.size, 90, 'every example of the other classes is drawn');
  // Each of the 90 examples has probability 1/90: class 1 gets 1/3, class 2 2/3 (binomial SE 0.0027).
  let class1 = 0;
  counts.forEach((n, j) => { if (ds.labels[j] === 1) class1 += n; });
  assert.ok(Math.abs(class1 / N - 1 / 3) < 0.012, `class 1 share ${class1 / N}`);
  const max = Math.max(...counts.values());
  const min = Math.min(...counts.values());
  assert.ok(min > N / 90 * 0.75 && max < N / 90 * 1.25, `per-example counts ${min}..${max} around ${N / 90}`);
});

gen('overlap statistics on the MNIST test set match the documented values', () => {
  const { test } = mnist();
  const stats = (maxShift: number) => {
    const N = 2000;
    const set = new MultiMnistTestSet(test, N, 1, { canvas: 36, maxShift });
    const batch = set.createBatch(500);
    let frame = 0;
    let box = 0;
    let ink = 0;
    let clamped = 0;
    for (let s = 0; s < N; s += 500) {
      set.fill(s, batch);
      for (let b = 0; b < 500; b++) {
        const o = pairOverlap(batch, b);
        frame += o.frameOverlap;
        box += o.boxOverlap;
        ink += o.inkBoth / o.inkEither;
        clamped += o.clamped / o.inkEither;
      }
    }
    return { frame: frame / N, box: box / N, ink: ink / N, clamped: clamped / N };
  };
  const s4 = stats(4);
  const s6 = stats(6);
  // Frames: the exact expectation of ((28 - |dx1 - dx2|) / 28)^2 for uniform shifts (standard error ~0.003).
  assert.ok(Math.abs(s4.frame - 0.7996) < 0.012, `frame overlap at 4: ${s4.frame} (paper: 80%)`);
  assert.ok(Math.abs(s6.frame - 0.7158) < 0.015, `frame overlap at 6: ${s6.frame}`);
  // Ink statistics: the values measured on 4,000 pairs and written in the header, +- a margin.
  assert.ok(Math.abs(s4.box - 0.72) < 0.03, `ink box overlap at 4: ${s4.box}`);
  assert.ok(Math.abs(s6.box - 0.59) < 0.03, `ink box overlap at 6: ${s6.box}`);
  assert.ok(Math.abs(s4.ink - 0.14) < 0.02, `ink overlap at 4: ${s4.ink}`);
  assert.ok(Math.abs(s6.ink - 0.11) < 0.02, `ink overlap at 6: ${s6.ink}`);
  assert.ok(Math.abs(s4.clamped - 0.23) < 0.03, `clamped share at 4: ${s4.clamped}`);
  assert.ok(s6.frame < s4.frame && s6.box < s4.box && s6.ink < s4.ink, 'larger shifts overlap less');
});

gen('a shift beyond the padding drops what leaves the canvas (6-pixel variant)', () => {
  const ds: Dataset = { images: new Uint8Array(2 * 784).fill(255), labels: Uint8Array.from([0, 1]), count: 2, height: 28, width: 28, channels: 1 };
  const batch = createMultiMnistBatch(1, 36, 2);
  writePair(ds, 0, 1, [6, 0, -6, -6], batch, 0, new Uint8Array(2 * 1296));
  const inked = (img: Float32Array) => img.reduce((n, v) => n + (v > 0 ? 1 : 0), 0);
  assert.is(inked(batch.first), 26 * 28, 'two columns fell off the right');
  assert.is(inked(batch.second), 26 * 26, 'two columns and two rows fell off the top left');
  assert.is(batch.first[4 * 36 + 35], 1, 'the last column is inked');
  assert.is(batch.first[4 * 36 + 9], 0, 'the first 10 columns are blank');
});

gen('bad inputs are refused with clear messages', () => {
  assert.throws(() => new PartnerSampler(madeUp([0, 5])), /examples of 1 class\(es\); pairs need two different classes/);
  const ds = madeUp([3, 3]);
  assert.throws(() => new MultiMnistBatches(ds, 4, 1, { canvas: 20, maxShift: 4 }), /canvas = 20, expected an integer at least the images' 28x28/);
  assert.throws(() => new MultiMnistBatches(ds, 4, 1, { canvas: 36, maxShift: -1 }), /maxShift = -1/);
  assert.throws(() => new MultiMnistBatches(ds, 7, 1), /batch size 7 is larger than the 6 examples/);
  const batches = new MultiMnistBatches(ds, 2, 1);
  assert.throws(() => batches.fill(0, createMultiMnistBatch(2, 40, 2)), /holds 1x40x40 images, the data gives 1x36x36/);
  assert.throws(() => batches.fill(0, createMultiMnistBatch(3, 36, 2)), /holds 3 examples, expected 2/);
  assert.throws(() => writePair(ds, 0, 1, [0, 0, 0, 0], createMultiMnistBatch(1, 36, 2), 0, new Uint8Array(2 * 1296)), /both of class 0/);
  const rgb = twoColourImage(Float32Array.from([1, 0, 0.5, 0]), Float32Array.from([0, 1, 0.5, 0]), 0, 2);
  assert.equal(Array.from(rgb), [255, 0, 0, 0, 255, 0, 128, 128, 0, 0, 0, 0]);
});

// ---------------------------------------------------------------------------------------------
const acc = suite('two-of-two correctness (topKCorrect)');

/** lengths [B, J] and the target classes of each row -> multi-hot targets [B, J]. */
function multiHot(classes: number[][], J: number): Float32Array {
  const t = new Float32Array(classes.length * J);
  classes.forEach((cs, b) => cs.forEach((c) => { t[b * J + c] = 1; }));
  return t;
}

acc('hand-made cases: both right, one wrong, ties (lower index first), one target, no target, NaN, GPU = reference = CPU', async () => {
  const ctx = await gpu();
  const J = 5;
  const cases: Array<[string, number[], number[], number]> = [
    ['the two longest are the targets', [0.9, 0.1, 0.8, 0.2, 0.3], [0, 2], 1],
    ['order among the two does not matter', [0.8, 0.1, 0.9, 0.2, 0.3], [2, 0], 1],
    ['second target beaten by a non-target', [0.9, 0.1, 0.5, 0.6, 0.3], [0, 2], 0],
    ['both beaten', [0.1, 0.9, 0.2, 0.8, 0.3], [0, 2], 0],
    ['tie at the boundary, target has the lower index', [0.9, 0.5, 0.1, 0.5, 0.2], [0, 1], 1],
    ['tie at the boundary, target has the higher index', [0.9, 0.5, 0.1, 0.5, 0.2], [0, 3], 0],
    ['one target: the longest', [0.2, 0.7, 0.7, 0.1, 0], [1], 1],
    ['one target: tie lost to a lower index', [0.2, 0.7, 0.7, 0.1, 0], [2], 0],
    ['no target (padding row)', [0.2, 0.7, 0.7, 0.1, 0], [], 0],
    ['NaN length', [0.9, NaN, 0.8, 0.2, 0.3], [0, 2], 0],
    ['every class a target', [0.1, 0.2, 0.3, 0.4, 0.5], [0, 1, 2, 3, 4], 1],
    ['three targets', [0.5, 0.6, 0.1, 0.7, 0.2], [0, 1, 3], 1],
  ];
  const B = cases.length;
  const L = Float32Array.from(cases.flatMap((c) => c[1]));
  const T = multiHot(cases.map((c) => c[2]), J);
  const lengths = fromArray(ctx, [B, J], L);
  const targets = fromArray(ctx, [B, J], T);
  const out = topKCorrect(lengths, targets);
  const got = await out.read();
  const expected = ref.topKCorrect(L, T, B, J);
  cases.forEach(([name, row, classes, want], b) => {
    assert.is(expected[b], want, `reference: ${name}`);
    assert.is(got[b], want, `GPU: ${name}`);
    if (classes.length > 0) {
      const hits = topKHits(row, classes);
      assert.is(hits === classes.length ? 1 : 0, want, `CPU topKHits: ${name}`);
      assert.is(hits, ref.topKHits(row, classes), `CPU hits vs reference: ${name}`);
    }
  });
  assert.is(topKHits([0.9, 0.1, 0.5, 0.6, 0.3], [0, 2]), 1, 'one of two right');
  for (const t of [lengths, targets, out]) t.dispose();
});

acc('random cases with ties, K = 1, 2, 3 targets, B = 257: GPU vs reference, CPU hits vs reference', async () => {
  const ctx = await gpu();
  const rng = makeRng(77);
  const [B, J] = [257, 10];
  // Lengths on a coarse grid so that ties happen often.
  const L = Float32Array.from({ length: B * J }, () => Math.floor(rng() * 6) / 5);
  const classes = Array.from({ length: B }, (_, b) => {
    const K = 1 + (b % 3);
    const set = new Set<number>();
    while (set.size < K) set.add(Math.floor(rng() * J));
    return [...set];
  });
  const T = multiHot(classes, J);
  const lengths = fromArray(ctx, [B, J], L);
  const targets = fromArray(ctx, [B, J], T);
  const out = topKCorrect(lengths, targets);
  const got = await out.read();
  const expected = ref.topKCorrect(L, T, B, J);
  assert.equal(Array.from(got), Array.from(expected));
  const right = expected.reduce((a, b) => a + b, 0);
  assert.ok(right > 10 && right < B - 10, `a mix of right and wrong rows (${right} of ${B})`);
  for (let b = 0; b < B; b++) {
    const row = L.subarray(b * J, (b + 1) * J);
    assert.is(topKHits(row, classes[b]), ref.topKHits(row, classes[b]), `row ${b}`);
  }
  assert.throws(() => topKCorrect(lengths, fromArray(ctx, [B, J - 1], new Float32Array(B * (J - 1)))), (e: Error) => e instanceof ShapeError);
  assert.throws(() => topKHits([0.1, 0.2], [1, 1]), /class 1 given twice/);
  assert.throws(() => topKHits([0.1, 0.2], [2]), /class 2 is not in \[0, 2\)/);
  for (const t of [lengths, targets, out]) t.dispose();
});

// ---------------------------------------------------------------------------------------------
const model = suite('MultiMNIST model: two-hot margin loss + a reconstruction per digit');

const f64 = (x: Float32Array) => Float64Array.from(x);

function scaled(r: Float64Array, rel = 1e-4): Tolerance {
  let m = 0;
  for (const v of r) m = Math.max(m, Math.abs(v));
  return { atol: rel * m + 1e-7, rtol: 1e-3 };
}

/** A MultiMNIST-like batch for any config: two-hot targets, two separate digit images and their sum. */
function pairBatch(config: CapsNetConfig, B: number, seed: number) {
  const rng = makeRng(seed);
  const P = config.inputChannels * config.inputSize * config.inputSize;
  const one = () => Float32Array.from({ length: B * P }, () => (rng() < 0.25 ? rng() : 0));
  const first = one();
  const second = one();
  const images = Float32Array.from(first, (v, k) => Math.min(1, v + second[k]));
  const a = Int32Array.from({ length: B }, (_, b) => (b * 3 + seed) % config.digitCaps);
  const c = Int32Array.from(a, (x, b) => (x + 1 + (b % (config.digitCaps - 1))) % config.digitCaps);
  const targets = new Float32Array(B * config.digitCaps);
  for (let b = 0; b < B; b++) { targets[b * config.digitCaps + a[b]] = 1; targets[b * config.digitCaps + c[b]] = 1; }
  return { images, first, second, a, c, targets };
}

async function compareTwoTargets(config: CapsNetConfig, B: number, seed: number, withGradients = true) {
  const ctx = await gpu();
  const values = initialParameters(config, seed, 0.05);
  const net = new CapsNet(ctx, config, values);
  const d = pairBatch(config, B, seed);
  const r = ref.capsNetGeneralForward(
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, f64(v)])),
    config,
    { images: f64(d.images), targets: f64(d.targets), recon: [{ classes: d.a, images: f64(d.first) }, { classes: d.c, images: f64(d.second) }] },
  );
  const refGrads = withGradients ? r.backward().grads : {};
  const out = tidy(() => {
    const shape = [B, config.inputChannels, config.inputSize, config.inputSize];
    const x = fromArray(ctx, shape, d.images, 'images');
    const t = fromArray(ctx, [B, config.digitCaps], d.targets, 'targets');
    const first = fromArray(ctx, [B, shape[1] * shape[2] * shape[3]], d.first);
    const second = fromArray(ctx, shape, d.second); // [B, C, H, W] is accepted as well
    const res = net.lossWithTargets(x, t, [{ classes: d.a, images: first }, { classes: fromArray(ctx, [B], Float32Array.from(d.c)), images: second }]);
    if (withGradients) backward(res.loss);
    return {
      loss: res.loss, margin: res.margin, lengths: res.lengths, total: res.reconstructionLoss!,
      r1: res.reconstructionLosses[0], r2: res.reconstructionLosses[1], x1: res.reconstructions[0], x2: res.reconstructions[1],
    };
  });
  assertClose(await out.lengths.read(), r.lengths, { atol: 2e-5, rtol: 2e-4 }, 'lengths');
  assertClose(await out.margin.read(), [r.marginLoss], { atol: 1e-5, rtol: 1e-4 }, 'margin loss (two-hot)');
  assertClose(await out.r1.read(), [r.reconLosses[0]], { atol: 1e-5, rtol: 1e-4 }, 'reconstruction loss of the first digit');
  assertClose(await out.r2.read(), [r.reconLosses[1]], { atol: 1e-5, rtol: 1e-4 }, 'reconstruction loss of the second digit');
  assertClose(await out.total.read(), [r.reconLosses[0] + r.reconLosses[1]], { atol: 1e-5, rtol: 1e-4 }, 'summed reconstruction loss');
  assertClose(await out.loss.read(), [r.loss], { atol: 1e-5, rtol: 1e-4 }, 'loss');
  assertClose(await out.x1.read(), r.reconstructions[0], { atol: 2e-5, rtol: 2e-4 }, 'reconstruction of the first digit');
  assertClose(await out.x2.read(), r.reconstructions[1], { atol: 2e-5, rtol: 2e-4 }, 'reconstruction of the second digit');
  for (const [name, p] of withGradients ? Object.entries(net.params) : []) {
    assert.ok(p.grad, `${name} has a gradient`);
    assertClose(await p.grad!.read(), refGrads[name], scaled(refGrads[name]), `d loss / d ${name}`);
  }
  for (const t of Object.values(out)) t.dispose();
  net.dispose();
  return r;
}

const SMALL: Partial<CapsNetConfig> = {
  inputSize: 15, conv1Channels: 6, conv1Kernel: 5, primaryTypes: 3, primaryDim: 4, primaryKernel: 3,
  digitCaps: 5, digitDim: 6, decoderHidden: [11, 9], reconWeight: 0.05,
};

model('reference: with valid padding and one target equal to the input, it is test/reference/capsnet.ts', () => {
  const cfg = { ...capsNetConfig({ inputSize: 12, conv1Channels: 4, conv1Kernel: 3, primaryTypes: 2, primaryDim: 4, primaryKernel: 3, digitCaps: 3, digitDim: 5, decoderHidden: [6, 7], reconWeight: 0.25 }), convPadding: 'valid' as const };
  const params = Object.fromEntries(Object.entries(ref.generalParamShapes(cfg)).map(([k, s], n) => {
    const r = makeRng(50 + n);
    return [k, Float64Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * 0.6)];
  }));
  const images = Float64Array.from({ length: 2 * 144 }, (_, k) => ((k * 37) % 11) / 10);
  const labels = [1, 2];
  const targets = Float64Array.from([0, 1, 0, 0, 0, 1]);
  const a = capsNetForward(params, cfg, { images, labels });
  const b = ref.capsNetGeneralForward(params, cfg, { images, targets, recon: [{ classes: labels, images }] });
  assertClose([b.loss], [a.loss], { atol: 0, rtol: 1e-12 }, 'loss');
  assertClose(b.v, a.v, { atol: 1e-15, rtol: 1e-12 }, 'v');
  const ga = a.backward().grads;
  const gb = b.backward().grads;
  for (const k of Object.keys(ga)) assertClose(gb[k], ga[k], { atol: 1e-15, rtol: 1e-10 }, `gradient ${k}`);
});

model('reference backward vs finite differences: two targets, same padding, leaky routing, bias', () => {
  const cfg = {
    ...capsNetConfig({ inputSize: 8, inputChannels: 2, conv1Channels: 3, conv1Kernel: 3, primaryTypes: 2, primaryDim: 3, primaryKernel: 3, digitCaps: 4, digitDim: 3, decoderHidden: [5], reconWeight: 0.3, leaky: true, routingBias: true }),
    convPadding: 'same' as const,
  };
  const g = ref.generalGeometry(cfg);
  assert.equal([g.pad1, g.conv1Size, g.pad2, g.grid], [1, 8, 1, 4]);
  const shapes = ref.generalParamShapes(cfg);
  const params = Object.fromEntries(Object.entries(shapes).map(([k, s], n) => {
    const r = makeRng(70 + n);
    return [k, Float64Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * (k.startsWith('decoder') && k.endsWith('bias') ? 0.2 : 1.2) + (k.endsWith('bias') && k.startsWith('decoder') ? 0.3 : 0))];
  }));
  const B = 2;
  const P = 2 * 64;
  const r = makeRng(5);
  const images = Float64Array.from({ length: B * P }, () => r());
  const first = Float64Array.from({ length: B * P }, () => r());
  const second = Float64Array.from({ length: B * P }, () => r());
  const batch = { images, targets: Float64Array.from([1, 0, 1, 0, 0, 1, 0, 1]), recon: [{ classes: [0, 1], images: first }, { classes: [2, 3], images: second }] };
  const base = ref.capsNetGeneralForward(params, cfg, batch);
  assert.is(base.reconLosses.length, 2);
  const { grads, dImages } = base.backward();
  const names = Object.keys(shapes);
  gradcheck(() => ref.capsNetGeneralForward(params, cfg, batch).loss, [...names.map((n) => params[n]), images], [...names.map((n) => grads[n]), dImages],
    'two-target capsnet', { eps: 1e-6, atol: 1e-9, rtol: 1e-5, maxPerInput: 200 });
  for (const n of names) assert.ok(grads[n].some((x) => x !== 0), `${n} has a nonzero gradient`);
});

model('small config, batch 3: losses, both reconstructions and every gradient match the reference', async () => {
  await compareTwoTargets(makeConfig(SMALL), 3, 2);
});

model('small config with same padding, leaky routing, a routing bias and 3 input channels, batch 2', async () => {
  await compareTwoTargets(makeConfig({ ...SMALL, inputChannels: 3, convPadding: 'same', leaky: true, routingBias: true }), 2, 4);
});

model('one target through lossWithTargets is loss(); errors name what is wrong', async () => {
  const ctx = await gpu();
  const config = makeConfig(SMALL);
  const net = CapsNet.create(ctx, config, 3);
  const d = pairBatch(config, 2, 3);
  const [one, two] = await tidy(() => {
    const x = fromArray(ctx, [2, 1, 15, 15], d.images);
    const t = fromArray(ctx, [2, 5], d.targets);
    const y = fromArray(ctx, [2], Float32Array.from(d.a));
    return [net.loss(x, y, t).loss, net.lossWithTargets(x, t, [{ classes: d.a, images: x }]).loss];
  }).map((t) => t.read());
  assert.equal(one, two);
  const x = fromArray(ctx, [2, 1, 15, 15], d.images);
  const t = fromArray(ctx, [2, 5], d.targets);
  assert.throws(() => net.lossWithTargets(x, t, [{ classes: d.a, images: fromArray(ctx, [2, 200], new Float32Array(400)) }]),
    /reconstruction target 1: images must be \[2, 225\]/);
  const noDecoder = CapsNet.create(ctx, { ...config, decoder: false }, 3);
  assert.throws(() => noDecoder.lossWithTargets(x, t, [{ classes: d.a, images: x }]), /1 reconstruction target\(s\) given, but this model has no decoder/);
  for (const m of [net, noDecoder]) m.dispose();
  x.dispose();
  t.dispose();
});

model('the paper model at MultiMNIST size (36x36, 3,200 primary capsules), batch 1: lengths, both losses and reconstructions', async () => {
  // Forward only: the f64 backward at this size takes 5-10 s here; the gradients are compared at
  // the small sizes above, with the same code paths.
  await compareTwoTargets(makeConfig({ inputSize: 36 }), 1, 9, false);
});

model('twoDigitLoss on real MultiMNIST batches is lossWithTargets with both digits; its correct count matches the lengths', async () => {
  const ctx = await gpu();
  const config = makeConfig({ inputSize: 36, conv1Channels: 8, primaryTypes: 4, primaryDim: 4, digitDim: 8, decoderHidden: [16, 16] });
  const net = CapsNet.create(ctx, config, 4);
  const batches = new MultiMnistBatches(mnist().train, 6, 1);
  const batch = batches.createBatch();
  batches.fill(3, batch);
  const B = 6;
  const got = tidy(() => {
    const r = twoDigitLoss(net, batch, B);
    return { loss: r.loss, recon: r.reconstructionLoss!, lengths: r.lengths, correct: r.correct, count: sum(r.correct) };
  });
  const want = tidy(() => {
    const x = fromArray(ctx, [B, 1, 36, 36], batch.images);
    const t = fromArray(ctx, [B, 10], batch.targets);
    const r = net.lossWithTargets(x, t, [
      { classes: batch.firstLabels, images: fromArray(ctx, [B, 1296], batch.first) },
      { classes: batch.secondLabels, images: fromArray(ctx, [B, 1296], batch.second) },
    ]);
    return { loss: r.loss, recon: r.reconstructionLoss! };
  });
  assert.equal(await got.loss.read(), await want.loss.read());
  assert.equal(await got.recon.read(), await want.recon.read());
  const lengths = await got.lengths.read();
  assert.equal(Array.from(await got.correct.read()), Array.from(ref.topKCorrect(lengths, batch.targets, B, 10)));
  assert.is((await got.count.read())[0], ref.topKCorrect(lengths, batch.targets, B, 10).reduce((a, b) => a + b, 0));
  assert.throws(() => twoDigitLoss(net, batch, 5), /batch.images holds 7776 values, expected 6480 for 5 examples of a 1x36x36 model/);
  for (const t of [...Object.values(got), ...Object.values(want)]) t.dispose();
  net.dispose();
});

model('evaluateTwoDigits: both-right and at-least-one counts from the lengths, over batches with a padded last one', async () => {
  const ctx = await gpu();
  const config = makeConfig({ inputSize: 36, conv1Channels: 8, primaryTypes: 4, primaryDim: 4, digitDim: 8, decoder: false });
  // A wide digit.W so that the untrained model's lengths differ (not all near-ties).
  const net = new CapsNet(ctx, config, initialParameters(config, 6, 0.5));
  const set = new MultiMnistTestSet(mnist().test, 10, 2);
  const result = await evaluateTwoDigits(net, 10, 4, (start, b) => set.fill(start, b));
  assert.is(result.count, 10);
  // The same examples in one batch, scored here.
  const all = set.createBatch(10);
  set.fill(0, all);
  const lengths = tidy(() => net.forward(fromArray(ctx, [10, 1, 36, 36], all.images)).lengths);
  const L = await lengths.read();
  lengths.dispose();
  assertClose(result.lengths, L, { atol: 1e-6, rtol: 1e-5 }, 'lengths');
  let correct = 0;
  let almost = 0;
  for (let b = 0; b < 10; b++) {
    // From the lengths the evaluation read (the same examples, checked just above).
    const hits = ref.topKHits(result.lengths.subarray(b * 10, (b + 1) * 10), [all.firstLabels[b], all.secondLabels[b]]);
    if (hits === 2) correct++;
    if (hits >= 1) almost++;
  }
  assert.equal([result.correct, result.almost, result.accuracy], [correct, almost, correct / 10]);
  net.dispose();
});

gen.run();
acc.run();
model.run();
