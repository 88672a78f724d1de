// CIFAR-10 binary batches on disk (Node only): a folder holding data_batch_1.bin .. data_batch_5.bin
// and test_batch.bin, as extracted from cifar-10-binary.tar.gz (the folder cifar-10-batches-bin;
// its parent works too). Parsing and every check of the format: src/data/cifar.ts.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from '../data/dataset.ts';
import { CIFAR_RECORD_BYTES, concatCifarBatches, parseCifarBatch } from '../data/cifar.ts';
import { readRegularFile } from './idx-file.ts';

/** The folder name inside the official archive. */
export const CIFAR10_BIN_FOLDER = 'cifar-10-batches-bin';
export const CIFAR10_TEST_FILE = 'test_batch.bin';
const TRAIN_FILE = /^data_batch_([1-9][0-9]*)\.bin$/;

/**
 * Largest batch file read (the official ones are 30,730,000 bytes), and largest total of the
 * training batches: guards against a wrong path (a disk image, /dev/zero) before anything is read.
 */
export const MAX_CIFAR_FILE_BYTES = 1 << 30;

/** Reads and parses one batch file; errors name the path. */
export function readCifarBatch(path: string, maxBytes = MAX_CIFAR_FILE_BYTES): Dataset {
  return parseCifarBatch(readRegularFile(path, maxBytes, 'CIFAR-10 batch'), path);
}

/** The folder that holds the batch files: `dir` itself, or its cifar-10-batches-bin subfolder. */
export function cifar10Folder(dir: string): string {
  if (!existsSync(dir)) throw new Error(`loadCifar10: folder ${dir} does not exist`);
  if (existsSync(join(dir, CIFAR10_TEST_FILE))) return dir;
  const inner = join(dir, CIFAR10_BIN_FOLDER);
  if (existsSync(join(inner, CIFAR10_TEST_FILE))) return inner;
  throw new Error(`loadCifar10: folder ${dir} has no ${CIFAR10_TEST_FILE} (nor ${CIFAR10_BIN_FOLDER}/${CIFAR10_TEST_FILE}): expected the CIFAR-10 binary batches (data_batch_1.bin .. data_batch_5.bin, test_batch.bin)`);
}

/** True when `dir` (or its cifar-10-batches-bin subfolder) holds CIFAR-10 binary batches: lets a --data flag tell CIFAR from IDX. */
export function isCifar10Folder(dir: string): boolean {
  try {
    cifar10Folder(dir);
    return true;
  } catch {
    return false;
  }
}

/**
 * CIFAR-10's training set (every data_batch_N.bin of the folder, in order of N: 50,000 images with
 * the official five) and test set (test_batch.bin, 10,000), as Datasets of 32x32x3 images.
 */
export function loadCifar10(dir: string, maxBytes = MAX_CIFAR_FILE_BYTES): { train: Dataset; test: Dataset } {
  const folder = cifar10Folder(dir);
  const numbered = readdirSync(folder)
    .map((name) => ({ name, m: TRAIN_FILE.exec(name) }))
    .filter((f) => f.m !== null)
    .map((f) => ({ name: f.name, n: Number(f.m![1]) }))
    .sort((a, b) => a.n - b.n);
  if (numbered.length === 0) throw new Error(`loadCifar10: folder ${folder} has ${CIFAR10_TEST_FILE} but no data_batch_N.bin training batches`);
  const gap = numbered.findIndex((f, k) => f.n !== k + 1);
  if (gap >= 0) {
    throw new Error(`loadCifar10: folder ${folder} has ${numbered.map((f) => f.name).join(', ')}: data_batch_${gap + 1}.bin is missing (expected data_batch_1.bin .. data_batch_${numbered.at(-1)!.n}.bin)`);
  }
  // Sizes checked before any file is read, so a wrong folder fails at once and the total is bounded.
  let total = 0;
  for (const f of numbered) {
    const path = join(folder, f.name);
    const size = statSync(path).size;
    total += size;
    if (total > maxBytes) throw new Error(`loadCifar10: the training batches in ${folder} exceed ${maxBytes} bytes (at ${f.name}), more than any CIFAR-10 set (${5 * 10000 * CIFAR_RECORD_BYTES})`);
  }
  const train = concatCifarBatches(numbered.map((f) => readCifarBatch(join(folder, f.name), maxBytes)), `${folder}/data_batch_*.bin`);
  const test = readCifarBatch(join(folder, CIFAR10_TEST_FILE), maxBytes);
  return { train, test };
}
