// In-memory image classification data sets, subsets, the validation split, seeded shuffling,
// shift augmentation and batching. Pure: no file system, runs in Node and in the browser.

import { Rng } from './rng.ts';

export interface Dataset {
  /** count * height * width * channels bytes, per example row-major (y, x, channel); MNIST: channels = 1. */
  images: Uint8Array;
  /** count class indices. */
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
}

/** Throws (naming `source` and the field) unless the arrays match the declared sizes. */
export function checkDataset(ds: Dataset, source: string): void {
  for (const field of ['count', 'height', 'width', 'channels'] as const) {
    if (!Number.isInteger(ds[field]) || ds[field] < 0) throw new Error(`${source}: ${field} = ${ds[field]}, expected a non-negative integer`);
  }
  const pixels = ds.count * ds.height * ds.width * ds.channels;
  if (ds.images.length !== pixels) {
    throw new Error(`${source}: images has ${ds.images.length} bytes, expected count * height * width * channels = ${pixels}`);
  }
  if (ds.labels.length !== ds.count) {
    throw new Error(`${source}: labels has ${ds.labels.length} entries, expected count = ${ds.count}`);
  }
}

const exampleSize = (ds: Dataset) => ds.height * ds.width * ds.channels;

/** Examples [start, start + n) as views of the same memory (no copy). */
export function subset(ds: Dataset, n: number, start = 0): Dataset {
  if (!Number.isInteger(n) || !Number.isInteger(start) || n < 0 || start < 0 || start + n > ds.count) {
    throw new Error(`subset: examples [${start}, ${start} + ${n}) requested, the dataset has ${ds.count}`);
  }
  const size = exampleSize(ds);
  return {
    ...ds,
    images: ds.images.subarray(start * size, (start + n) * size),
    labels: ds.labels.subarray(start, start + n),
    count: n,
  };
}

/** The examples at `indices`, in that order, copied into new arrays. */
export function take(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const size = exampleSize(ds);
  const images = new Uint8Array(indices.length * size);
  const labels = new Uint8Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= ds.count) throw new Error(`take: index ${i} at position ${k}, the dataset has ${ds.count} examples`);
    images.set(ds.images.subarray(i * size, (i + 1) * size), k * size);
    labels[k] = ds.labels[i];
  }
  return { ...ds, images, labels, count: indices.length };
}

/** Datasets of one image shape joined in order into new arrays; `source` names the whole in errors. */
export function concatDatasets(parts: readonly Dataset[], source: string): Dataset {
  if (parts.length === 0) throw new Error(`${source}: nothing to join`);
  const [first] = parts;
  for (const p of parts) {
    if (p.height !== first.height || p.width !== first.width || p.channels !== first.channels) {
      throw new Error(`${source}: images of ${p.channels}x${p.height}x${p.width} joined to ${first.channels}x${first.height}x${first.width}`);
    }
  }
  if (parts.length === 1) return first;
  const size = exampleSize(first);
  const count = parts.reduce((sum, p) => sum + p.count, 0);
  const images = new Uint8Array(count * size);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * size);
    labels.set(p.labels, at);
    at += p.count;
  }
  return { ...first, images, labels, count };
}

/**
 * Hold out `validationCount` examples for validation.
 * - Without a seed: the last `validationCount` examples (views, no copy). Deterministic, and the
 *   same split whatever the shuffling seed of training.
 * - With a seed: a seeded random choice of examples (copies); both parts keep the original order.
 */
export function splitValidation(ds: Dataset, validationCount: number, seed?: number): { train: Dataset; validation: Dataset } {
  if (!Number.isInteger(validationCount) || validationCount < 0 || validationCount > ds.count) {
    throw new Error(`splitValidation: ${validationCount} validation examples requested, the dataset has ${ds.count}`);
  }
  const trainCount = ds.count - validationCount;
  if (seed === undefined) {
    return { train: subset(ds, trainCount, 0), validation: subset(ds, validationCount, trainCount) };
  }
  const held = new Uint8Array(ds.count);
  const order = permutation(ds.count, new Rng(seed));
  for (let k = 0; k < validationCount; k++) held[order[k]] = 1;
  const trainIdx: number[] = [];
  const valIdx: number[] = [];
  for (let i = 0; i < ds.count; i++) (held[i] ? valIdx : trainIdx).push(i);
  return { train: take(ds, trainIdx), validation: take(ds, valIdx) };
}

/** Fisher-Yates shuffle of `array` in place, driven by `rng`. */
export function shuffleInPlace<T extends { length: number; [i: number]: number }>(array: T, rng: Rng): T {
  for (let i = array.length - 1; i > 0; i--) {
    const j = rng.int(i + 1); // j in [0, i]: j < i would only produce cyclic permutations (Sattolo)
    const t = array[i];
    array[i] = array[j];
    array[j] = t;
  }
  return array;
}

/** A seeded random permutation of 0 .. n-1 (an epoch's example order). */
export function permutation(n: number, rng: Rng): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return shuffleInPlace(p, rng);
}

/** pixel / 255 for every byte value, so batching is a table lookup. */
export const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * Write example `index`, shifted by (dx, dy) pixels (dx > 0: right, dy > 0: down) with zero
 * padding, into `out` at `outOffset` as [channels, height, width] floats in [0, 1].
 * Pixels shifted past the border are dropped.
 */
export function writeShifted(ds: Dataset, index: number, dx: number, dy: number, out: Float32Array, outOffset: number): void {
  const { height: h, width: w, channels: c } = ds;
  const src = index * h * w * c;
  for (let ch = 0; ch < c; ch++) {
    const plane = outOffset + ch * h * w;
    for (let y = 0; y < h; y++) {
      const sy = y - dy;
      const row = plane + y * w;
      if (sy < 0 || sy >= h) {
        out.fill(0, row, row + w);
        continue;
      }
      for (let x = 0; x < w; x++) {
        const sx = x - dx;
        out[row + x] = sx < 0 || sx >= w ? 0 : BYTE_TO_UNIT[ds.images[src + (sy * w + sx) * c + ch]];
      }
    }
  }
}

export interface BatchOptions {
  /** Random shift of up to this many pixels in each direction (paper: 2). Default 0: no shift. */
  maxShift?: number;
  /** Draws the shifts (dx then dy, per example). Required when maxShift > 0; not used otherwise. */
  rng?: Rng;
}

/**
 * Fill a batch from examples order[start], order[start + 1], ... into caller-owned buffers, so a
 * training loop allocates nothing per batch. The batch size B is labels.length; images must hold
 * B * channels * height * width floats ([B, C, H, W], pixel / 255). Returns how many examples were
 * written: min(B, order.length - start). The remaining slots of a short last batch get zero pixels
 * and label -1 (matches no class), so stale data never looks like a real example.
 */
export function fillBatch(
  ds: Dataset,
  order: ArrayLike<number>,
  start: number,
  images: Float32Array,
  labels: Int32Array,
  options: BatchOptions = {},
): number {
  const B = labels.length;
  const size = exampleSize(ds);
  if (images.length !== B * size) {
    throw new Error(`fillBatch: images has ${images.length} floats, expected labels.length * C * H * W = ${B} * ${size} = ${B * size}`);
  }
  const maxShift = options.maxShift ?? 0;
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new Error(`fillBatch: maxShift = ${maxShift}, expected a non-negative integer`);
  if (maxShift > 0 && !options.rng) throw new Error('fillBatch: maxShift > 0 needs options.rng');
  if (!Number.isInteger(start) || start < 0 || start > order.length) {
    throw new Error(`fillBatch: start = ${start}, expected an integer in [0, ${order.length}]`);
  }
  const n = Math.min(B, order.length - start);
  for (let b = 0; b < n; b++) {
    const i = order[start + b];
    if (!Number.isInteger(i) || i < 0 || i >= ds.count) throw new Error(`fillBatch: order[${start + b}] = ${i}, the dataset has ${ds.count} examples`);
    let dx = 0;
    let dy = 0;
    if (maxShift > 0) {
      dx = options.rng!.int(2 * maxShift + 1) - maxShift;
      dy = options.rng!.int(2 * maxShift + 1) - maxShift;
    }
    writeShifted(ds, i, dx, dy, images, b * size);
    labels[b] = ds.labels[i];
  }
  images.fill(0, n * size);
  labels.fill(-1, n);
  return n;
}
