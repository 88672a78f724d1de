// The affine-robustness data of the paper (section 5.2), generated on the fly. Pure and seeded: no
// file system, runs in Node and in the browser; every image is a function of (seed, step) in
// training and of (seed, example number) at test, so runs resume exactly and test sets need no file.
//
// Training: MNIST placed at a random position in a 40x40 canvas: the 28x28 digit is centred (6
//   pixels of zero padding on each side) and shifted by whole pixels dx, dy, each uniform in
//   [-6, 6] (AFFNIST_TRAIN). With a padding of 6, no pixel ever leaves the canvas. The paper trained
//   on exactly this. fillCentred gives the MNIST test set centred in the canvas (the paper's
//   "expanded MNIST" test accuracy). The same placement with a canvas smaller than the images is a
//   crop: CIFAR-10's random 24x24 crops of the 32x32 images (CIFAR10_CROPS), centre crop at test;
//   CIFAR-10 trains on those crops with the official flips, brightness and contrast changes
//   (CIFAR10_TRAIN; the distortions and their ranges: src/data/cifar.ts).
//
// Test, affNIST-style: each MNIST test digit gets a random affine transform and is resampled
//   (bilinear, zero outside the source) into a 40x40 canvas. The ranges (AFFNIST_STYLE), as
//   affNIST's own description gives them:
//     rotation   uniform in [-20, 20] degrees
//     shear      uniform in [-0.2, 0.2] (horizontal: x' = x + shear * y)
//     scale      x and y independently uniform in [0.8, 1.2]
//     translation uniform over every position (sub-pixel) that keeps the transformed digit's ink,
//                with the 1-pixel support of bilinear sampling, inside the canvas; centred on an
//                axis where it cannot fit (it always fits at 40x40 with these ranges).
//   Forward map, pixel centres (x right, y down), relative to the centres of the source (13.5, 13.5)
//   and of the canvas (19.5, 19.5): p_out = A p_src + t, A = R(rotation) Shear(shear) Scale(sx, sy),
//   R = [[cos, -sin], [sin, cos]] (a positive angle turns clockwise on screen, y pointing down).
//   The identity transform with t = 0 reproduces the digit centred in the canvas exactly. Ink
//   mass scales by det A = sx sy (rotation and shear keep areas), up to bilinear resampling error.
//   The real affNIST (Tieleman 2013) is a set of MATLAB .mat files, read by src/io/affnist-file.ts
//   (`capsnet eval --affnist FILE.mat`) when given; without them (none offline here) this generator
//   stands in with the same kinds of transformations.
//
// Tests: test/affine.test.ts.

import { BYTE_TO_UNIT, type Dataset } from './dataset.ts';
import { Rng } from './rng.ts';
import { TrainingBatches, mixSeed } from '../train/batches.ts';
import { CIFAR10_AUGMENT, type ColourAugment, type ColourAugmentRanges, augmentImage, checkAugmentRanges, drawAugment } from './cifar.ts';

export interface CanvasOptions {
  /** Side of the square canvas the examples are placed in. */
  canvas: number;
  /** Random shift of up to this many whole pixels in each direction, from the centred position. */
  maxShift: number;
  /**
   * Training distortions after the placement (CIFAR10_AUGMENT in src/data/cifar.ts: flips,
   * brightness, contrast), drawn from a generator of (seed, step) of their own, so the crops are
   * those of the same batches without them. Absent: none.
   */
  augment?: Readonly<ColourAugmentRanges>;
}

/** The paper's affine-robustness training set: MNIST in a 40x40 canvas, shifts of up to 6 pixels. */
export const AFFNIST_TRAIN: Readonly<CanvasOptions> = Object.freeze({ canvas: 40, maxShift: 6 });
/** CIFAR-10 in the paper: random 24x24 crops of the 32x32 images (test: the centre crop, fillCentred). */
export const CIFAR10_CROPS: Readonly<CanvasOptions> = Object.freeze({ canvas: 24, maxShift: 4 });
/** CIFAR-10's training recipe: the random crops, then the official flips, brightness and contrast changes. */
export const CIFAR10_TRAIN: Readonly<CanvasOptions> = Object.freeze({ ...CIFAR10_CROPS, augment: CIFAR10_AUGMENT });

/** The stream of the distortions' generator (a step's: exampleSeed(seed, AUGMENT_STREAM, step)). */
const AUGMENT_STREAM = 0xc01a;

function checkCanvas(canvas: number, what: string): void {
  if (!Number.isInteger(canvas) || canvas < 1) throw new Error(`${what}: canvas = ${canvas}, expected a positive integer`);
}

function checkShift(maxShift: number, what: string): void {
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new Error(`${what}: maxShift = ${maxShift}, expected a non-negative integer`);
}

/** Top-left corner of an image of side `size` centred in `canvas` (rounded down when odd). */
export function centredOffset(size: number, canvas: number): number {
  return Math.floor((canvas - size) / 2);
}

/**
 * Example `index` centred in a canvas and shifted by (dx, dy) whole pixels (dx > 0: right, dy > 0:
 * down), written as bytes [channels, canvas, canvas] into `out` at `offset`; pixels that leave the
 * canvas are dropped, the rest of the canvas is 0. A canvas smaller than the image is a crop: the
 * window of the image at ((size - canvas) / 2 - dx, ...), so CIFAR-10's random 24x24 crops of its
 * 32x32 images are canvas 24 with shifts up to 4 (the centre crop: no shift).
 */
export function placeBytes(ds: Dataset, index: number, canvas: number, dx: number, dy: number, out: Uint8Array, offset: number): void {
  const { height: h, width: w, channels: c } = ds;
  if (!Number.isInteger(index) || index < 0 || index >= ds.count) throw new Error(`placeBytes: index ${index}, the dataset has ${ds.count} examples`);
  const plane = canvas * canvas;
  out.fill(0, offset, offset + c * plane);
  const y0 = centredOffset(h, canvas) + dy;
  const x0 = centredOffset(w, canvas) + dx;
  const src = index * h * w * c;
  for (let y = 0; y < h; y++) {
    const ty = y0 + y;
    if (ty < 0 || ty >= canvas) continue;
    for (let x = 0; x < w; x++) {
      const tx = x0 + x;
      if (tx < 0 || tx >= canvas) continue;
      for (let ch = 0; ch < c; ch++) out[offset + ch * plane + ty * canvas + tx] = ds.images[src + (y * w + x) * c + ch];
    }
  }
}

/**
 * Training batches of examples placed at random in a larger canvas (AFFNIST_TRAIN: 40x40, shifts up
 * to 6) or cropped at random from a smaller one (CIFAR10_CROPS: 24x24 windows of 32x32), a pure
 * function of (seed, step) like TrainingBatches, whose epoch order and shift draws it keeps: with
 * canvas = the images' side it gives exactly TrainingBatches' batches. It is one, so the Trainer
 * takes it as is (the model's inputSize must be the canvas).
 */
export class CanvasBatches extends TrainingBatches {
  private readonly scratch: Uint8Array;

  constructor(data: Dataset, batchSize: number, seed: number, readonly options: Readonly<CanvasOptions>) {
    super(data, batchSize, seed, options.maxShift);
    checkCanvas(options.canvas, 'CanvasBatches');
    checkShift(options.maxShift, 'CanvasBatches');
    if (options.augment) checkAugmentRanges(options.augment, 'CanvasBatches');
    this.scratch = new Uint8Array(data.channels * options.canvas * options.canvas);
  }

  /** Writes the batch of global step `step` into images [B, C, canvas, canvas] (pixel / 255) and labels [B]. */
  override fill(step: number, images: Float32Array, labels: Int32Array): void {
    const { canvas, maxShift } = this.options;
    const B = this.batchSize;
    const size = this.scratch.length;
    if (images.length !== B * size || labels.length !== B) {
      throw new Error(`CanvasBatches.fill: expected images of ${B} x ${size} floats and ${B} labels, got ${images.length} and ${labels.length}`);
    }
    const { order, offset, rng } = this.locate(step);
    for (let b = 0; b < B; b++) {
      const i = order[offset + b];
      let dx = 0;
      let dy = 0;
      if (maxShift > 0) {
        dx = rng.int(2 * maxShift + 1) - maxShift;
        dy = rng.int(2 * maxShift + 1) - maxShift;
      }
      placeBytes(this.data, i, canvas, dx, dy, this.scratch, 0);
      for (let p = 0; p < size; p++) images[b * size + p] = BYTE_TO_UNIT[this.scratch[p]];
      labels[b] = this.data.labels[i];
    }
    const augments = this.augmentations(step);
    augments?.forEach((a, b) => augmentImage(images, b * size, this.data.channels, canvas, a));
  }

  /** The distortions of step `step`'s examples, in batch order (null without options.augment). */
  augmentations(step: number): ColourAugment[] | null {
    const ranges = this.options.augment;
    if (!ranges) return null;
    const rng = new Rng(exampleSeed(this.seed, AUGMENT_STREAM, step));
    return Array.from({ length: this.batchSize }, () => drawAugment(rng, ranges));
  }
}

/**
 * Fills images [B, C, canvas, canvas] and labels [B] with examples start, start + 1, ... centred in
 * the canvas (no shift: MNIST's test set in the 40x40 canvas, CIFAR-10's centre crops), for
 * evaluate(); returns how many were written, the remaining slots get zero pixels and label -1.
 */
export function fillCentred(ds: Dataset, canvas: number, start: number, images: Float32Array, labels: Int32Array): number {
  checkCanvas(canvas, 'fillCentred');
  const B = labels.length;
  const size = ds.channels * canvas * canvas;
  if (images.length !== B * size) throw new Error(`fillCentred: images has ${images.length} floats, expected ${B} * ${size}`);
  if (!Number.isInteger(start) || start < 0 || start > ds.count) throw new Error(`fillCentred: start = ${start}, expected an integer in [0, ${ds.count}]`);
  const n = Math.min(B, ds.count - start);
  const scratch = new Uint8Array(size);
  for (let b = 0; b < n; b++) {
    placeBytes(ds, start + b, canvas, 0, 0, scratch, 0);
    for (let p = 0; p < size; p++) images[b * size + p] = BYTE_TO_UNIT[scratch[p]];
    labels[b] = ds.labels[start + b];
  }
  images.fill(0, n * size);
  labels.fill(-1, n);
  return n;
}

// ---------------------------------------------------------------------------------------------
// The affNIST-style test set

export interface AffineRanges {
  canvas: number;
  /** Rotation uniform in [-maxRotationDeg, maxRotationDeg] degrees. */
  maxRotationDeg: number;
  /** Horizontal shear uniform in [-maxShear, maxShear]. */
  maxShear: number;
  /** Scale of each axis uniform in [minScale, maxScale]. */
  minScale: number;
  maxScale: number;
}

/** The ranges of affNIST's transformations, on its 40x40 canvas. */
export const AFFNIST_STYLE: Readonly<AffineRanges> = Object.freeze({
  canvas: 40, maxRotationDeg: 20, maxShear: 0.2, minScale: 0.8, maxScale: 1.2,
});

export interface AffineTransform {
  /** Radians; positive turns clockwise on screen (y down). */
  rotation: number;
  /** x' = x + shear * y, before the rotation. */
  shear: number;
  scaleX: number;
  scaleY: number;
  /** Translation of the centre, canvas pixels (0, 0: centred). */
  tx: number;
  ty: number;
}

export const IDENTITY_TRANSFORM: Readonly<AffineTransform> = Object.freeze({ rotation: 0, shear: 0, scaleX: 1, scaleY: 1, tx: 0, ty: 0 });

/** A = R(rotation) Shear(shear) Scale(scaleX, scaleY) as [a, b, c, d] = [[a, b], [c, d]]. */
export function affineMatrix(t: AffineTransform): [number, number, number, number] {
  const cos = Math.cos(t.rotation);
  const sin = Math.sin(t.rotation);
  // Shear * Scale = [[sx, shear sy], [0, sy]]; then R times that.
  const m00 = t.scaleX;
  const m01 = t.shear * t.scaleY;
  const m11 = t.scaleY;
  return [cos * m00, cos * m01 - sin * m11, sin * m00, sin * m01 + cos * m11];
}

function checkRanges(r: AffineRanges, what: string): void {
  for (const k of ['maxRotationDeg', 'maxShear', 'minScale', 'maxScale'] as const) {
    if (!Number.isFinite(r[k]) || r[k] < 0) throw new Error(`${what}: ${k} = ${r[k]}, expected a finite number >= 0`);
  }
  if (!(r.minScale > 0 && r.minScale <= r.maxScale)) throw new Error(`${what}: scales must satisfy 0 < minScale <= maxScale, got ${r.minScale}, ${r.maxScale}`);
  if (!Number.isInteger(r.canvas) || r.canvas < 1) throw new Error(`${what}: canvas = ${r.canvas}, expected a positive integer`);
}

/** The ink's bounding box of example `index` (pixels >= `threshold`, any channel), or null for a blank image. */
export function inkBox(ds: Dataset, index: number, threshold = 1): { x0: number; x1: number; y0: number; y1: number } | null {
  const { height: h, width: w, channels: c } = ds;
  const src = index * h * w * c;
  let x0 = w;
  let x1 = -1;
  let y0 = h;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < c; ch++) {
        if (ds.images[src + (y * w + x) * c + ch] >= threshold) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
  }
  return x1 < 0 ? null : { x0, x1, y0, y1 };
}

/**
 * The range of translations (per axis, canvas pixels) that keep the transformed ink of example
 * `index` inside the canvas: every output pixel that bilinear sampling can make nonzero (source
 * positions within one pixel of the ink box) has its centre in [0, canvas - 1]. Null on an axis
 * where the ink cannot fit; null for a blank image.
 */
export function translationRange(
  ds: Dataset, index: number, A: readonly number[], canvas: number,
): { x: [number, number] | null; y: [number, number] | null } | null {
  const box = inkBox(ds, index);
  if (!box) return null;
  const cx = (ds.width - 1) / 2;
  const cy = (ds.height - 1) / 2;
  const co = (canvas - 1) / 2;
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const px of [box.x0 - 1, box.x1 + 1]) {
    for (const py of [box.y0 - 1, box.y1 + 1]) {
      const u = px - cx;
      const v = py - cy;
      const X = A[0] * u + A[1] * v;
      const Y = A[2] * u + A[3] * v;
      minX = Math.min(minX, X);
      maxX = Math.max(maxX, X);
      minY = Math.min(minY, Y);
      maxY = Math.max(maxY, Y);
    }
  }
  const axis = (lo: number, hi: number): [number, number] | null => {
    const from = -co - lo;
    const to = co - hi;
    return from <= to ? [from, to] : null;
  };
  return { x: axis(minX, maxX), y: axis(minY, maxY) };
}

/** A random transform within `ranges` for example `index` (draws: rotation, shear, scaleX, scaleY, tx, ty). */
export function sampleTransform(ds: Dataset, index: number, rng: Rng, ranges: Readonly<AffineRanges> = AFFNIST_STYLE): AffineTransform {
  const uniform = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const maxRot = (ranges.maxRotationDeg * Math.PI) / 180;
  const t: AffineTransform = {
    rotation: uniform(-maxRot, maxRot),
    shear: uniform(-ranges.maxShear, ranges.maxShear),
    scaleX: uniform(ranges.minScale, ranges.maxScale),
    scaleY: uniform(ranges.minScale, ranges.maxScale),
    tx: 0,
    ty: 0,
  };
  const range = translationRange(ds, index, affineMatrix(t), ranges.canvas);
  // Both draws always happen, so the generator's position never depends on the image.
  const ux = rng.next();
  const uy = rng.next();
  if (range?.x) t.tx = range.x[0] + (range.x[1] - range.x[0]) * ux;
  if (range?.y) t.ty = range.y[0] + (range.y[1] - range.y[0]) * uy;
  return t;
}

/**
 * Example `index` resampled through transform `t` into [channels, canvas, canvas] floats (pixel /
 * 255) at `out[offset]`: each output pixel centre is mapped back through the inverse transform and
 * the source is sampled bilinearly, zero outside it.
 */
export function warpAffine(ds: Dataset, index: number, t: AffineTransform, canvas: number, out: Float32Array, offset: number): void {
  const { height: h, width: w, channels: c } = ds;
  if (!Number.isInteger(index) || index < 0 || index >= ds.count) throw new Error(`warpAffine: index ${index}, the dataset has ${ds.count} examples`);
  const [a, b, cc, d] = affineMatrix(t);
  const det = a * d - b * cc;
  if (!(Math.abs(det) > 1e-12) || !Number.isFinite(det)) throw new Error(`warpAffine: the transform ${JSON.stringify(t)} is singular`);
  // Inverse of [[a, b], [c, d]].
  const i00 = d / det;
  const i01 = -b / det;
  const i10 = -cc / det;
  const i11 = a / det;
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const co = (canvas - 1) / 2;
  const src = index * h * w * c;
  const plane = canvas * canvas;
  const pixel = (x: number, y: number, ch: number) => (x < 0 || x >= w || y < 0 || y >= h ? 0 : ds.images[src + (y * w + x) * c + ch]);
  for (let oy = 0; oy < canvas; oy++) {
    for (let ox = 0; ox < canvas; ox++) {
      const X = ox - co - t.tx;
      const Y = oy - co - t.ty;
      const sx = i00 * X + i01 * Y + cx;
      const sy = i10 * X + i11 * Y + cy;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      for (let ch = 0; ch < c; ch++) {
        let v = 0;
        if (x0 >= -1 && x0 < w && y0 >= -1 && y0 < h) {
          v = (1 - fy) * ((1 - fx) * pixel(x0, y0, ch) + fx * pixel(x0 + 1, y0, ch))
            + fy * ((1 - fx) * pixel(x0, y0 + 1, ch) + fx * pixel(x0 + 1, y0 + 1, ch));
        }
        out[offset + ch * plane + oy * canvas + ox] = v / 255;
      }
    }
  }
}

/** A u32 seed for test example n of a generated set (a different stream from the training steps'). */
export function exampleSeed(seed: number, stream: number, n: number): number {
  return mixSeed(mixSeed(seed, stream), n);
}

const AFFINE_STREAM = 0xaff1e;

export interface AffineExample {
  /** The source example's index in the dataset. */
  index: number;
  label: number;
  transform: AffineTransform;
}

/**
 * The affNIST-style test example n (n >= 0): source example n mod count, a transform drawn from a
 * generator seeded by (seed, n) alone, so the set is the same whatever the batching.
 */
export function affineTestExample(
  ds: Dataset, seed: number, n: number, out: Float32Array, offset: number, ranges: Readonly<AffineRanges> = AFFNIST_STYLE,
): AffineExample {
  if (!Number.isInteger(n) || n < 0) throw new Error(`affineTestExample: example ${n}, expected a non-negative integer`);
  if (ds.count < 1) throw new Error('affineTestExample: the dataset is empty');
  const index = n % ds.count;
  const rng = new Rng(exampleSeed(seed, AFFINE_STREAM, n));
  const transform = sampleTransform(ds, index, rng, ranges);
  warpAffine(ds, index, transform, ranges.canvas, out, offset);
  return { index, label: ds.labels[index], transform };
}

/**
 * Fills images [B, C, canvas, canvas] and labels [B] with test examples start, start + 1, ... of an
 * affNIST-style set of `count` examples (B = labels.length); returns how many were written. The
 * remaining slots get zero pixels and label -1 (the same contract as fillBatch, for evaluate()).
 * `transforms`, when given, receives each example's transform (tests, figures).
 */
export function fillAffineTest(
  ds: Dataset, seed: number, count: number, start: number, images: Float32Array, labels: Int32Array,
  ranges: Readonly<AffineRanges> = AFFNIST_STYLE, transforms?: AffineExample[],
): number {
  checkRanges(ranges, 'fillAffineTest');
  const B = labels.length;
  const size = ds.channels * ranges.canvas * ranges.canvas;
  if (images.length !== B * size) throw new Error(`fillAffineTest: images has ${images.length} floats, expected ${B} * ${size}`);
  if (!Number.isInteger(count) || count < 0) throw new Error(`fillAffineTest: count = ${count}, expected a non-negative integer`);
  if (!Number.isInteger(start) || start < 0 || start > count) throw new Error(`fillAffineTest: start = ${start}, expected an integer in [0, ${count}]`);
  const n = Math.min(B, count - start);
  for (let b = 0; b < n; b++) {
    const ex = affineTestExample(ds, seed, start + b, images, b * size, ranges);
    labels[b] = ex.label;
    transforms?.push(ex);
  }
  images.fill(0, n * size);
  labels.fill(-1, n);
  return n;
}
