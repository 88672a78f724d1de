// CIFAR-10 binary format reader (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version").
// Pure: bytes in, a Dataset out, so the same code runs in Node and in the browser.
//
// A batch file is a sequence of 3073-byte records: 1 label byte (0..9), then 3072 pixel bytes, the
// red, green and blue planes of a 32x32 image one after the other, each row-major. The official
// files hold 10,000 records each (30,730,000 bytes): data_batch_1.bin .. data_batch_5.bin (training)
// and test_batch.bin. The Dataset stores examples as (y, x, channel), like every Dataset here, so
// the planes are interleaved while reading.

import { concatDatasets, type Dataset } from './dataset.ts';

export const CIFAR_SIDE = 32;
export const CIFAR_CHANNELS = 3;
/** Pixel bytes per record: 3 planes of 32x32. */
export const CIFAR_PIXEL_BYTES = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE;
/** Bytes per record: the label byte, then the pixels. */
export const CIFAR_RECORD_BYTES = 1 + CIFAR_PIXEL_BYTES;
export const CIFAR10_CLASSES = 10;
/** The class names of batches.meta.txt, by label. */
export const CIFAR10_LABEL_NAMES: readonly string[] = [
  'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
];

/**
 * Parse one CIFAR-10 binary batch. `source` (a file name) is put in every error message. The
 * output is new memory (the planes are interleaved), exactly `records * 3072` image bytes: its size
 * follows from the input's size, so no declared count can make it large.
 */
export function parseCifarBatch(bytes: Uint8Array, source: string): Dataset {
  const size = bytes.length;
  if (size >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw new Error(`${source}: the bytes are gzipped (magic 1f 8b): extract the .bin files from cifar-10-binary.tar.gz first`);
  }
  if (size >= 2 && bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5) {
    // Python's pickle protocol 2-5 header: the "python version" of CIFAR-10, not the binary one.
    throw new Error(`${source}: this is a Python pickle (the "python version" of CIFAR-10); use the binary version (cifar-10-binary.tar.gz), whose records are 1 label byte + 3072 pixel bytes`);
  }
  if (size === 0) throw new Error(`${source}: empty file, expected ${CIFAR_RECORD_BYTES}-byte records (1 label byte + 3072 pixel bytes)`);
  if (size % CIFAR_RECORD_BYTES !== 0) {
    const full = Math.floor(size / CIFAR_RECORD_BYTES);
    const hint = size % (CIFAR_RECORD_BYTES + 1) === 0
      ? ` (a multiple of ${CIFAR_RECORD_BYTES + 1}: CIFAR-100's records have 2 label bytes; this reader reads CIFAR-10)`
      : '';
    throw new Error(
      `${source}: ${size} bytes is not a whole number of ${CIFAR_RECORD_BYTES}-byte records (1 label byte + 3072 pixel bytes): ` +
        `${full} records and ${size - full * CIFAR_RECORD_BYTES} bytes left over, truncated or not a CIFAR-10 binary batch${hint}`,
    );
  }
  const count = size / CIFAR_RECORD_BYTES;
  // Labels first: a bad file is refused before the (larger) image buffer is allocated.
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const label = bytes[n * CIFAR_RECORD_BYTES];
    if (label >= CIFAR10_CLASSES) {
      throw new Error(`${source}: record ${n} (byte ${n * CIFAR_RECORD_BYTES}) has label ${label}, expected a class index < ${CIFAR10_CLASSES}: not a CIFAR-10 binary batch, or misaligned`);
    }
    labels[n] = label;
  }
  const plane = CIFAR_SIDE * CIFAR_SIDE;
  const images = new Uint8Array(count * CIFAR_PIXEL_BYTES);
  for (let n = 0; n < count; n++) {
    const src = n * CIFAR_RECORD_BYTES + 1;
    const dst = n * CIFAR_PIXEL_BYTES;
    for (let c = 0; c < CIFAR_CHANNELS; c++) {
      const from = src + c * plane;
      for (let p = 0; p < plane; p++) images[dst + p * CIFAR_CHANNELS + c] = bytes[from + p];
    }
  }
  return { images, labels, count, height: CIFAR_SIDE, width: CIFAR_SIDE, channels: CIFAR_CHANNELS };
}

/**
 * Several batches as one Dataset, in order (the training set is data_batch_1..5). Every part must
 * be 32x32x3; `source` names the whole in errors.
 */
export function concatCifarBatches(parts: Dataset[], source: string): Dataset {
  if (parts.length === 0) throw new Error(`${source}: no batches to join`);
  for (const p of parts) {
    if (p.height !== CIFAR_SIDE || p.width !== CIFAR_SIDE || p.channels !== CIFAR_CHANNELS) {
      throw new Error(`${source}: a batch of ${p.channels}x${p.height}x${p.width} images, expected ${CIFAR_CHANNELS}x${CIFAR_SIDE}x${CIFAR_SIDE}`);
    }
  }
  return concatDatasets(parts, source);
}

// ---------------------------------------------------------------------------------------------
// Training distortions of the 24x24 crops, as the official implementation has them
// (research/capsules/input_data/cifar10/cifar10_input.py, _distort_resize): after the random crop,
// a random horizontal flip (probability 1/2), a random brightness change (one delta added to every
// pixel of every channel, uniform in [-63, 63] on the 0-255 scale: +-63/255 here, where pixels are
// byte / 255) and a random contrast change (per channel: x -> (x - mean) * factor + mean, the mean
// over the crop's pixels of that channel, factor uniform in [0.2, 1.8]), in that order.
// Two differences from the official pipeline, both because our inputs are pixel / 255 without
// per-image standardisation (the test crops too): the result is clamped to [0, 1], so training
// inputs stay in the range of the test inputs; and the brightness change is not undone afterwards
// (the official code's per_image_standardization subtracts the image mean, which cancels it).
// The draws come from a generator of the step (CanvasBatches), so a batch stays a function of
// (seed, step). Tests: test/cifar-augment.test.ts.

/** The ranges of the distortions (CIFAR10_AUGMENT: the official ones). */
export interface ColourAugmentRanges {
  /** Mirror left-right with probability 1/2. */
  flip: boolean;
  /** Brightness delta uniform in [-maxBrightnessDelta, maxBrightnessDelta] (pixel values are byte / 255). */
  maxBrightnessDelta: number;
  /** Contrast factor uniform in [minContrast, maxContrast] (1, 1: unchanged). */
  minContrast: number;
  maxContrast: number;
}

export const CIFAR10_AUGMENT: Readonly<ColourAugmentRanges> = Object.freeze({
  flip: true, maxBrightnessDelta: 63 / 255, minContrast: 0.2, maxContrast: 1.8,
});

/** The distortion of one example. */
export interface ColourAugment {
  flip: boolean;
  brightness: number;
  contrast: number;
}

export function checkAugmentRanges(r: Readonly<ColourAugmentRanges>, what: string): void {
  if (typeof r.flip !== 'boolean') throw new Error(`${what}: flip = ${String(r.flip)}, expected true or false`);
  if (!(Number.isFinite(r.maxBrightnessDelta) && r.maxBrightnessDelta >= 0)) throw new Error(`${what}: maxBrightnessDelta = ${r.maxBrightnessDelta}, expected a finite number >= 0`);
  if (!(Number.isFinite(r.minContrast) && Number.isFinite(r.maxContrast) && r.minContrast >= 0 && r.minContrast <= r.maxContrast)) {
    throw new Error(`${what}: contrast range [${r.minContrast}, ${r.maxContrast}], expected finite 0 <= minContrast <= maxContrast`);
  }
}

/**
 * One example's distortion from `rng`: three draws always (flip, brightness, contrast), so the
 * generator's position does not depend on the ranges.
 */
export function drawAugment(rng: { next(): number }, ranges: Readonly<ColourAugmentRanges>): ColourAugment {
  const flip = rng.next() < 0.5;
  const brightness = (2 * rng.next() - 1) * ranges.maxBrightnessDelta;
  const contrast = ranges.minContrast + (ranges.maxContrast - ranges.minContrast) * rng.next();
  return { flip: ranges.flip && flip, brightness, contrast };
}

/**
 * Applies `a` in place to one planar image [channels, side, side] at `images[offset]`: mirror,
 * brightness, contrast around each channel's mean, then clamp to [0, 1] (in f64, stored as f32).
 */
export function augmentImage(images: Float32Array, offset: number, channels: number, side: number, a: ColourAugment): void {
  const plane = side * side;
  if (offset < 0 || offset + channels * plane > images.length) {
    throw new Error(`augmentImage: an image of ${channels}x${side}x${side} at ${offset} does not fit in ${images.length} values`);
  }
  const channel = new Float64Array(plane);
  for (let c = 0; c < channels; c++) {
    const base = offset + c * plane;
    let sum = 0;
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const v = images[base + y * side + (a.flip ? side - 1 - x : x)] + a.brightness;
        channel[y * side + x] = v;
        sum += v;
      }
    }
    const mean = sum / plane;
    for (let p = 0; p < plane; p++) {
      const v = (channel[p] - mean) * a.contrast + mean;
      images[base + p] = v > 0 ? (v < 1 ? v : 1) : 0;
    }
  }
}
