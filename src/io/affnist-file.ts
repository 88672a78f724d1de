// The real affNIST files (https://www.cs.toronto.edu/~tijmen/affNIST/), MATLAB level-5 MAT files
// read by src/io/mat-file.ts: e.g. just_centered/test.mat, transformed/test.mat and
// transformed/test_batches/1.mat .. 32.mat. Each holds one 1x1 struct variable `affNISTdata` with
// the fields
//   image           uint8, 1600 x N: one column per image
//   label_int       1 x N (uint8 or double): the digit, 0..9
//   label_one_of_n  10 x N, human_readable_transform, matlab_transform, index: not used here (a
//                   label_one_of_n whose size disagrees with N is refused; the others are skipped)
//
// Pixel order. MATLAB stores the 1600 x N matrix column-major, so image n is the 1600 consecutive
// bytes n * 1600 .. n * 1600 + 1599 of the data, in the order of its column. Within a column,
// pixel p is at row y = floor(p / 40), column x = p % 40 (row-major, like our Datasets), so the
// bytes are used as they are. The evidence (no affNIST file could be checked here: no network):
// the Python loaders all take scipy.io.loadmat's (1600, N) array and either transpose it and
// `reshape(N, 40, 40)` in C order (e.g. `data['affNISTdata']['image'].transpose().reshape(n, 40,
// 40, 1)` in several CapsNet ports) or `reshape(1, 40, 40, N)` then move the last axis first
// (fabio-deep/Variational-Capsule-Routing): both give p = y * 40 + x. The latter trains on
// torchvision's MNIST (row-major) and tests on affNIST, which would fail on transposed digits. In
// MATLAB terms, an image is reshape(column, 40, 40)' (column-major reshape, then transposed).
// Should a file be transposed all the same, affnistOrientationWarning says so (MNIST digits are
// taller than wide: measured mean ink box on MNIST's test set 19.7 rows x 15.6 columns, on our
// affNIST-style set 20.2 x 15.1; transposed digits are wider than tall), and `transpose` (CLI:
// --affnist-transpose) reads each image as x = floor(p / 40), y = p % 40 instead.

import { concatDatasets, type Dataset } from '../data/dataset.ts';
import { inkBox } from '../data/affine.ts';
import { MAX_MAT_FILE_BYTES, parseMatFile, type MatNumeric, type MatReadOptions, type MatValue } from './mat-file.ts';
import { readRegularFile } from './idx-file.ts';

export const AFFNIST_SIDE = 40;
export const AFFNIST_PIXELS = AFFNIST_SIDE * AFFNIST_SIDE;
export const AFFNIST_VARIABLE = 'affNISTdata';
export const AFFNIST_CLASSES = 10;

export interface AffnistOptions extends MatReadOptions {
  /** Read each 1600-byte column as column-major (x = floor(p / 40), y = p % 40) instead of row-major. */
  transpose?: boolean;
}

const describe = (v: MatValue): string => {
  const dims = v.dims.join('x');
  if (v.kind === 'numeric') return `a ${dims} ${v.class} array`;
  if (v.kind === 'unsupported') return `${dims}: ${v.what}`;
  return `a ${dims} ${v.kind} array`;
};

/** One affNIST MAT file as a Dataset of 40x40x1 images; every error names `path` and the field. */
export function loadAffnist(path: string, options: AffnistOptions = {}): Dataset {
  return parseAffnist(readRegularFile(path, options.maxFileBytes ?? MAX_MAT_FILE_BYTES, 'MAT file'), path, options);
}

/** The bytes of an affNIST MAT file as a Dataset (loadAffnist without the file system); `path` names the file in errors. */
export function parseAffnist(bytes: Uint8Array, path: string, options: AffnistOptions = {}): Dataset {
  const file = parseMatFile(bytes, path, options);
  const root = file.variables.get(AFFNIST_VARIABLE);
  if (root === undefined) {
    const names = [...file.variables.keys()].map((n) => `'${n}'`).join(', ') || 'none';
    throw new Error(`${path}: no variable '${AFFNIST_VARIABLE}' (variables: ${names}): not an affNIST file`);
  }
  if (root.kind !== 'struct') throw new Error(`${path}: '${AFFNIST_VARIABLE}' is ${describe(root)}, expected a struct with fields image and label_int`);
  const field = (name: string): MatNumeric => {
    const value = root.fields.get(name);
    if (value === undefined) throw new Error(`${path}: ${AFFNIST_VARIABLE}.${name} is missing (fields: ${[...root.fields.keys()].join(', ') || 'none'})`);
    if (value.kind !== 'numeric') throw new Error(`${path}: ${AFFNIST_VARIABLE}.${name} is ${describe(value)}, expected a numeric array`);
    return value;
  };

  const image = field('image');
  if (image.class !== 'uint8') throw new Error(`${path}: ${AFFNIST_VARIABLE}.image is ${describe(image)}, expected class uint8`);
  if (image.dims.length !== 2 || image.dims[0] !== AFFNIST_PIXELS) {
    const hint = image.dims.length === 2 && image.dims[1] === AFFNIST_PIXELS ? ' (N x 1600: saved transposed; affNIST stores one image per column)' : '';
    throw new Error(`${path}: ${AFFNIST_VARIABLE}.image is ${image.dims.join('x')}, expected ${AFFNIST_PIXELS} x N (one 40x40 image per column)${hint}`);
  }
  const count = image.dims[1];

  const label = field('label_int');
  const vector = label.dims.length === 2 && (label.dims[0] === 1 || label.dims[1] === 1 || label.count === 0);
  if (!vector || label.count !== count) {
    throw new Error(
      `${path}: ${AFFNIST_VARIABLE}.label_int is ${label.dims.join('x')} (${label.count} labels), expected 1 x ${count}: ${AFFNIST_VARIABLE}.image has ${count} images`,
    );
  }
  const oneOfN = root.fields.get('label_one_of_n');
  if (oneOfN !== undefined && oneOfN.kind === 'numeric' && oneOfN.count !== AFFNIST_CLASSES * count) {
    throw new Error(`${path}: ${AFFNIST_VARIABLE}.label_one_of_n is ${oneOfN.dims.join('x')}, expected ${AFFNIST_CLASSES} x ${count}: ${AFFNIST_VARIABLE}.image has ${count} images`);
  }
  const rawLabels = label.values();
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const v = rawLabels[n];
    if (!(Number.isInteger(v) && v >= 0 && v < AFFNIST_CLASSES)) {
      throw new Error(`${path}: ${AFFNIST_VARIABLE}.label_int(${n + 1}) (image ${n}) is ${v}, expected a digit 0..${AFFNIST_CLASSES - 1}`);
    }
    labels[n] = v;
  }

  const pixels = image.values() as Uint8Array;
  let images: Uint8Array;
  if (options.transpose) {
    images = new Uint8Array(pixels.length);
    for (let n = 0; n < count; n++) {
      const base = n * AFFNIST_PIXELS;
      for (let x = 0; x < AFFNIST_SIDE; x++) {
        for (let y = 0; y < AFFNIST_SIDE; y++) images[base + y * AFFNIST_SIDE + x] = pixels[base + x * AFFNIST_SIDE + y];
      }
    }
  } else {
    // A copy, so the Dataset does not keep the rest of the file (or its inflated data) alive.
    images = pixels.slice();
  }
  return { images, labels, count, height: AFFNIST_SIDE, width: AFFNIST_SIDE, channels: 1 };
}

/** Several affNIST files (e.g. the 32 test batches) as one Dataset, in the order given; at least one image in all. */
export function loadAffnistFiles(paths: readonly string[], options: AffnistOptions = {}): Dataset {
  if (paths.length === 0) throw new Error('loadAffnistFiles: no files');
  const parts = paths.map((path) => loadAffnist(path, options));
  if (parts.every((p) => p.count === 0)) throw new Error(`${paths.join(', ')}: no images (${AFFNIST_VARIABLE}.image is 1600 x 0)`);
  return concatDatasets(parts, paths.join(', '));
}

/** Fewest images with ink for the orientation check to say anything. */
export const ORIENTATION_MIN_IMAGES = 100;
/** A pixel counts as ink from this value (of 255): interpolation leaves faint pixels at the edges. */
const INK = 64;

/** Mean height and width (pixels) of the box around each image's ink, over the images with ink. */
export function meanInkBox(ds: Dataset): { height: number; width: number; images: number } {
  let sumH = 0;
  let sumW = 0;
  let images = 0;
  for (let n = 0; n < ds.count; n++) {
    const box = inkBox(ds, n, INK);
    if (!box) continue;
    sumH += box.y1 - box.y0 + 1;
    sumW += box.x1 - box.x0 + 1;
    images++;
  }
  return { height: images ? sumH / images : 0, width: images ? sumW / images : 0, images };
}

/**
 * A warning when the digits look transposed (wider than tall on average, where MNIST's are about
 * 1.3 times taller than wide), or null. Says nothing about fewer than ORIENTATION_MIN_IMAGES
 * images with ink: too few to tell.
 */
export function affnistOrientationWarning(ds: Dataset, source: string, transposed: boolean): string | null {
  const box = meanInkBox(ds);
  if (box.images < ORIENTATION_MIN_IMAGES || box.width <= box.height) return null;
  const fix = transposed ? 'without --affnist-transpose' : 'with --affnist-transpose';
  return (
    `${source}: the digits look transposed: their ink is on average ${box.width.toFixed(1)} pixels wide and ${box.height.toFixed(1)} tall ` +
    `(${box.images} images), where MNIST digits are taller than wide; if the accuracy is poor, try ${fix}`
  );
}
