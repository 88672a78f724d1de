// MultiMNIST (paper section 6), generated on the fly. Pure and seeded: no file system, runs in Node
// and in the browser; a training batch is a function of (seed, step), a test example of (seed, n).
//
// An example overlays two digits of different classes taken from the same split:
//   - each digit (28x28) is centred in a 36x36 canvas (4 pixels of padding) and shifted by whole
//     pixels dx, dy, each uniform in [-maxShift, maxShift] (the paper: 4, MULTIMNIST_PAPER; the
//     official data script's other variant: 6, MULTIMNIST_SHIFT6, where a shift beyond the padding
//     drops what leaves the canvas: MNIST digits have a margin of about 4 blank pixels, so that is
//     rarely ink);
//   - the input is the pixel-wise sum, clamped: min(a + b, 255) / 255 on the bytes;
//   - each digit's own placed image is kept as its reconstruction target, with both labels; the
//     margin loss gets two-hot targets.
// The first digit of a training pair runs through the split in a seeded order (each epoch is one
// pass over the split, as TrainingBatches); the second is drawn uniformly among the examples of
// the other classes. (The paper pre-generated 1,000 pairs per image, 60M for training; generating
// them on the fly gives a fresh pair at every step instead.) Test example n pairs example n mod
// count with a partner and shifts drawn from (seed, n) alone: the set does not depend on batching.
//
// Overlap (test/multimnist.test.ts checks these):
//   the digits' 28x28 frames overlap by 80% on average at maxShift 4 (the paper: "on average, the
//     digits' bounding boxes overlap by 80%"; exactly E[(28 - |dx1 - dx2|) / 28]^2 = 0.7996 for
//     independent uniform shifts), 72% at maxShift 6 (0.7158);
//   measured on 4,000 pairs of the MNIST test set (ink = pixel >= 0.5), at maxShift 4 / 6:
//     the ink's bounding boxes: intersection / the smaller box, mean 0.72 / 0.59;
//     the ink: pixels inked in both / pixels inked in either, mean 0.14 / 0.11;
//     pixels where the sum is clamped (a + b > 255), per pixel inked in either: 0.23 / 0.18.
//
// Tests: test/multimnist.test.ts.

import type { Dataset } from './dataset.ts';
import { BYTE_TO_UNIT } from './dataset.ts';
import { Rng } from './rng.ts';
import { exampleSeed, placeBytes } from './affine.ts';
import { TrainingBatches } from '../train/batches.ts';

export interface MultiMnistOptions {
  /** Side of the square canvas (36 in the paper). */
  canvas: number;
  /** Shift of up to this many whole pixels in each direction, per digit (4 in the paper). */
  maxShift: number;
}

/** The paper's MultiMNIST: 36x36, each digit shifted by up to 4 pixels. */
export const MULTIMNIST_PAPER: Readonly<MultiMnistOptions> = Object.freeze({ canvas: 36, maxShift: 4 });
/** The official data script's 6-pixel variant on the same 36x36 canvas. */
export const MULTIMNIST_SHIFT6: Readonly<MultiMnistOptions> = Object.freeze({ canvas: 36, maxShift: 6 });

/** A batch of MultiMNIST examples in caller-owned arrays (allocate once with createMultiMnistBatch). */
export interface MultiMnistBatch {
  readonly size: number;
  readonly canvas: number;
  readonly channels: number;
  readonly classes: number;
  /** The network's input [B, C, canvas, canvas]: min(first + second, 1) (computed on the bytes). */
  images: Float32Array;
  /** The first digit alone, placed: its reconstruction target [B, C * canvas * canvas]. */
  first: Float32Array;
  /** The second digit alone, placed [B, C * canvas * canvas]. */
  second: Float32Array;
  firstLabels: Int32Array;
  secondLabels: Int32Array;
  /** Two-hot margin-loss targets [B, classes]. */
  targets: Float32Array;
  /** Dataset indices of the two digits (provenance, for tests and figures). */
  firstIndex: Int32Array;
  secondIndex: Int32Array;
  /** [B, 4]: dx, dy of the first digit, dx, dy of the second. */
  shifts: Int32Array;
}

export function createMultiMnistBatch(size: number, canvas: number, classes = 10, channels = 1): MultiMnistBatch {
  for (const [k, v] of Object.entries({ size, canvas, classes, channels })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`createMultiMnistBatch: ${k} = ${v}, expected a positive integer`);
  }
  const pixels = channels * canvas * canvas;
  return {
    size, canvas, channels, classes,
    images: new Float32Array(size * pixels),
    first: new Float32Array(size * pixels),
    second: new Float32Array(size * pixels),
    firstLabels: new Int32Array(size),
    secondLabels: new Int32Array(size),
    targets: new Float32Array(size * classes),
    firstIndex: new Int32Array(size),
    secondIndex: new Int32Array(size),
    shifts: new Int32Array(size * 4),
  };
}

function checkOptions(ds: Dataset, options: Readonly<MultiMnistOptions>, what: string): void {
  const { canvas, maxShift } = options;
  if (!Number.isInteger(canvas) || canvas < ds.height || canvas < ds.width) {
    throw new Error(`${what}: canvas = ${canvas}, expected an integer at least the images' ${ds.height}x${ds.width}`);
  }
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new Error(`${what}: maxShift = ${maxShift}, expected a non-negative integer`);
}

function checkBatch(ds: Dataset, batch: MultiMnistBatch, options: Readonly<MultiMnistOptions>, what: string): void {
  if (batch.canvas !== options.canvas || batch.channels !== ds.channels) {
    throw new Error(`${what}: the batch holds ${batch.channels}x${batch.canvas}x${batch.canvas} images, the data gives ${ds.channels}x${options.canvas}x${options.canvas}`);
  }
}

/**
 * Draws, for an example, a partner of a different class uniformly among all such examples of the
 * dataset (one draw, no rejection): per-class index lists are built once.
 */
export class PartnerSampler {
  private readonly byClass: Uint32Array[];
  readonly classes: number;

  constructor(readonly data: Dataset) {
    let classes = 0;
    for (let i = 0; i < data.count; i++) classes = Math.max(classes, data.labels[i] + 1);
    const counts = new Array<number>(classes).fill(0);
    for (let i = 0; i < data.count; i++) counts[data.labels[i]]++;
    this.byClass = counts.map((n) => new Uint32Array(n));
    const fill = new Array<number>(classes).fill(0);
    for (let i = 0; i < data.count; i++) this.byClass[data.labels[i]][fill[data.labels[i]]++] = i;
    this.classes = classes;
    if (counts.filter((n) => n > 0).length < 2) {
      throw new Error(`MultiMNIST: the dataset has examples of ${counts.filter((n) => n > 0).length} class(es); pairs need two different classes`);
    }
  }

  /** A uniformly random example whose class differs from example `index`'s. */
  partner(index: number, rng: Rng): number {
    const own = this.data.labels[index];
    const others = this.data.count - this.byClass[own].length;
    let r = rng.int(others);
    for (let c = 0; c < this.classes; c++) {
      if (c === own) continue;
      const list = this.byClass[c];
      if (r < list.length) return list[r];
      r -= list.length;
    }
    throw new Error('PartnerSampler: unreachable (class counts changed?)');
  }
}

/**
 * Writes the pair (first, second) with shifts (dx1, dy1, dx2, dy2) into slot b of `batch`: each
 * digit placed in the canvas, the input = min(a + b, 255) / 255 on the bytes, both digits' own
 * images, both labels and the two-hot targets. `scratch` holds 2 * C * canvas^2 bytes.
 */
export function writePair(
  ds: Dataset, first: number, second: number, shifts: readonly [number, number, number, number],
  batch: MultiMnistBatch, b: number, scratch: Uint8Array,
): void {
  const { canvas, classes } = batch;
  const size = ds.channels * canvas * canvas;
  if (scratch.length < 2 * size) throw new Error(`writePair: scratch holds ${scratch.length} bytes, needs ${2 * size}`);
  const la = ds.labels[first];
  const lb = ds.labels[second];
  if (la === lb) throw new Error(`writePair: examples ${first} and ${second} are both of class ${la}; MultiMNIST pairs differ in class`);
  if (la >= classes || lb >= classes) throw new Error(`writePair: classes ${la}, ${lb} do not fit the batch's ${classes} targets`);
  placeBytes(ds, first, canvas, shifts[0], shifts[1], scratch, 0);
  placeBytes(ds, second, canvas, shifts[2], shifts[3], scratch, size);
  const o = b * size;
  for (let p = 0; p < size; p++) {
    const x = scratch[p];
    const y = scratch[size + p];
    batch.first[o + p] = BYTE_TO_UNIT[x];
    batch.second[o + p] = BYTE_TO_UNIT[y];
    batch.images[o + p] = BYTE_TO_UNIT[Math.min(255, x + y)];
  }
  batch.firstLabels[b] = la;
  batch.secondLabels[b] = lb;
  batch.targets.fill(0, b * classes, (b + 1) * classes);
  batch.targets[b * classes + la] = 1;
  batch.targets[b * classes + lb] = 1;
  batch.firstIndex[b] = first;
  batch.secondIndex[b] = second;
  batch.shifts.set(shifts, b * 4);
}

/** Slots b .. size-1 as padding: zero images, labels -1, no targets (matches no class). */
function padFrom(batch: MultiMnistBatch, b: number): void {
  const size = batch.channels * batch.canvas * batch.canvas;
  for (const a of [batch.images, batch.first, batch.second]) a.fill(0, b * size);
  for (const a of [batch.firstLabels, batch.secondLabels, batch.firstIndex, batch.secondIndex]) a.fill(-1, b);
  batch.targets.fill(0, b * batch.classes);
  batch.shifts.fill(0, b * 4);
}

/** The pair of `first` drawn from `rng`: partner, then dx1, dy1, dx2, dy2. */
function drawPair(sampler: PartnerSampler, first: number, rng: Rng, maxShift: number): { second: number; shifts: [number, number, number, number] } {
  const second = sampler.partner(first, rng);
  const s = () => (maxShift > 0 ? rng.int(2 * maxShift + 1) - maxShift : 0);
  return { second, shifts: [s(), s(), s(), s()] };
}

/**
 * MultiMNIST training batches, a pure function of (seed, step): the first digits follow the same
 * seeded epoch order as TrainingBatches (one pass over the split per epoch, the last partial batch
 * dropped), partners and shifts come from a generator seeded by (seed, step).
 */
export class MultiMnistBatches {
  readonly stepsPerEpoch: number;
  private readonly sampler: PartnerSampler;
  private readonly scratch: Uint8Array;
  /** The first digits' order and each step's generator: TrainingBatches' (no shifts of its own). */
  private readonly steps: TrainingBatches;

  constructor(
    readonly data: Dataset,
    readonly batchSize: number,
    readonly seed: number,
    readonly options: Readonly<MultiMnistOptions> = MULTIMNIST_PAPER,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`MultiMnistBatches: batch size ${batchSize}, expected a positive integer`);
    if (batchSize > data.count) throw new Error(`MultiMnistBatches: batch size ${batchSize} is larger than the ${data.count} examples`);
    checkOptions(data, options, 'MultiMnistBatches');
    this.sampler = new PartnerSampler(data);
    this.scratch = new Uint8Array(2 * data.channels * options.canvas * options.canvas);
    this.steps = new TrainingBatches(data, batchSize, seed, 0);
    this.stepsPerEpoch = this.steps.stepsPerEpoch;
  }

  /** Classes of the split (the targets' width). */
  get classes(): number {
    return this.sampler.classes;
  }

  /** A batch of the right shape for fill(); `classes`: the targets' width (the model's digitCaps, at least the split's classes). */
  createBatch(classes = this.classes): MultiMnistBatch {
    return createMultiMnistBatch(this.batchSize, this.options.canvas, classes, this.data.channels);
  }

  /** The first digits' order in an epoch (TrainingBatches.order). */
  order(epoch: number): Uint32Array {
    return this.steps.order(epoch);
  }

  /** Writes the batch of global step `step` (0-based). */
  fill(step: number, batch: MultiMnistBatch): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`MultiMnistBatches.fill: step ${step}, expected a non-negative integer`);
    if (batch.size !== this.batchSize) throw new Error(`MultiMnistBatches.fill: the batch holds ${batch.size} examples, expected ${this.batchSize}`);
    checkBatch(this.data, batch, this.options, 'MultiMnistBatches.fill');
    const { order, offset, rng } = this.steps.locate(step);
    for (let b = 0; b < this.batchSize; b++) {
      const first = order[offset + b];
      const { second, shifts } = drawPair(this.sampler, first, rng, this.options.maxShift);
      writePair(this.data, first, second, shifts, batch, b, this.scratch);
    }
  }
}

const MULTIMNIST_TEST_STREAM = 0x3a17;

/**
 * A MultiMNIST test set of `count` examples (the paper: 1,000 pairs per test image, 10M): example n
 * pairs example n mod data.count with a partner and shifts drawn from (seed, n). Fills `batch` with
 * examples start, start + 1, ... and returns how many were written; the remaining slots are padding
 * (zero images, labels -1, no targets).
 */
export class MultiMnistTestSet {
  private readonly sampler: PartnerSampler;
  private readonly scratch: Uint8Array;

  constructor(
    readonly data: Dataset,
    readonly count: number,
    readonly seed: number,
    readonly options: Readonly<MultiMnistOptions> = MULTIMNIST_PAPER,
  ) {
    if (!Number.isInteger(count) || count < 0) throw new Error(`MultiMnistTestSet: count = ${count}, expected a non-negative integer`);
    checkOptions(data, options, 'MultiMnistTestSet');
    this.sampler = new PartnerSampler(data);
    this.scratch = new Uint8Array(2 * data.channels * options.canvas * options.canvas);
  }

  get classes(): number {
    return this.sampler.classes;
  }

  createBatch(size: number, classes = this.classes): MultiMnistBatch {
    return createMultiMnistBatch(size, this.options.canvas, classes, this.data.channels);
  }

  fill(start: number, batch: MultiMnistBatch): number {
    if (!Number.isInteger(start) || start < 0 || start > this.count) {
      throw new Error(`MultiMnistTestSet.fill: start = ${start}, expected an integer in [0, ${this.count}]`);
    }
    checkBatch(this.data, batch, this.options, 'MultiMnistTestSet.fill');
    const n = Math.min(batch.size, this.count - start);
    for (let b = 0; b < n; b++) {
      const index = start + b;
      const rng = new Rng(exampleSeed(this.seed, MULTIMNIST_TEST_STREAM, index));
      const first = index % this.data.count;
      const { second, shifts } = drawPair(this.sampler, first, rng, this.options.maxShift);
      writePair(this.data, first, second, shifts, batch, b, this.scratch);
    }
    padFrom(batch, n);
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// Overlap statistics (documented in the header; measured by test/multimnist.test.ts)

export interface PairOverlap {
  /** Inked pixels (>= threshold) of each digit, both, either. */
  inkFirst: number;
  inkSecond: number;
  inkBoth: number;
  inkEither: number;
  /** The ink's bounding boxes: intersection over the smaller box's area (0 when a digit is blank). */
  boxOverlap: number;
  /** The two digits' whole frames (digitSize x digitSize, as placed): intersection over a frame's area. */
  frameOverlap: number;
  /** Pixels where the sum was clamped (first + second > 1). */
  clamped: number;
}

function box(img: ArrayLike<number>, offset: number, S: number, threshold: number) {
  let x0 = S;
  let x1 = -1;
  let y0 = S;
  let y1 = -1;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      if (img[offset + y * S + x] >= threshold) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
  }
  return x1 < 0 ? null : { x0, x1, y0, y1 };
}

/** Overlap of example b's two digits (single-channel batches), ink = value >= threshold. */
export function pairOverlap(batch: MultiMnistBatch, b: number, threshold = 0.5, digitSize = 28): PairOverlap {
  if (batch.channels !== 1) throw new Error('pairOverlap: single-channel batches only');
  const S = batch.canvas;
  const o = b * S * S;
  let inkFirst = 0;
  let inkSecond = 0;
  let inkBoth = 0;
  let inkEither = 0;
  let clamped = 0;
  for (let p = 0; p < S * S; p++) {
    const a = batch.first[o + p] >= threshold;
    const c = batch.second[o + p] >= threshold;
    if (a) inkFirst++;
    if (c) inkSecond++;
    if (a && c) inkBoth++;
    if (a || c) inkEither++;
    if (batch.first[o + p] + batch.second[o + p] > 1) clamped++;
  }
  const A = box(batch.first, o, S, threshold);
  const B = box(batch.second, o, S, threshold);
  let boxOverlap = 0;
  if (A && B) {
    const w = Math.min(A.x1, B.x1) - Math.max(A.x0, B.x0) + 1;
    const h = Math.min(A.y1, B.y1) - Math.max(A.y0, B.y0) + 1;
    const inter = w > 0 && h > 0 ? w * h : 0;
    const area = (r: { x0: number; x1: number; y0: number; y1: number }) => (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1);
    boxOverlap = inter / Math.min(area(A), area(B));
  }
  const [dx1, dy1, dx2, dy2] = batch.shifts.subarray(b * 4, b * 4 + 4);
  const side = (d: number) => Math.max(0, digitSize - Math.abs(d));
  const frameOverlap = (side(dx1 - dx2) * side(dy1 - dy2)) / (digitSize * digitSize);
  return { inkFirst, inkSecond, inkBoth, inkEither, boxOverlap, frameOverlap, clamped };
}

/**
 * RGB bytes [canvas, canvas, 3] showing two single-channel images in two colours (the first in
 * red, the second in green, yellow where both): MultiMNIST's figure of the two reconstructions.
 */
export function twoColourImage(first: ArrayLike<number>, second: ArrayLike<number>, offset: number, canvas: number): Uint8Array {
  const out = new Uint8Array(canvas * canvas * 3);
  const byte = (v: number) => Math.max(0, Math.min(255, Math.round(v * 255)));
  for (let p = 0; p < canvas * canvas; p++) {
    out[p * 3] = byte(first[offset + p]);
    out[p * 3 + 1] = byte(second[offset + p]);
  }
  return out;
}
