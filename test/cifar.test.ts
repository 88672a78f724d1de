// CIFAR-10 binary reader (src/data/cifar.ts, src/io/cifar-file.ts) on small files the test writes
// (there is no CIFAR-10 offline): the plane-to-pixel layout, labels, the folder loader with its
// batch order and limits, and clear errors on corrupted files.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  CIFAR10_LABEL_NAMES, CIFAR_PIXEL_BYTES, CIFAR_RECORD_BYTES, concatCifarBatches, parseCifarBatch,
} from '../src/data/cifar.ts';
import { checkDataset, fillBatch } from '../src/data/dataset.ts';
import { isCifar10Folder, loadCifar10, readCifarBatch } from '../src/io/cifar-file.ts';
import { makeRng } from './helpers/random.ts';

/**
 * A batch file built from its definition: per record the label byte, then the red plane, the
 * green plane, the blue plane, each 32 rows of 32 bytes. pixel(n, y, x, c) gives each value.
 */
function batchFile(labels: number[], pixel: (n: number, y: number, x: number, c: number) => number): Uint8Array {
  const bytes: number[] = [];
  labels.forEach((label, n) => {
    bytes.push(label);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) bytes.push(pixel(n, y, x, c));
  });
  return Uint8Array.from(bytes);
}

/** A pixel value that differs for every (n, y, x, c) within a few records, so any mix-up shows. */
const distinct = (n: number, y: number, x: number, c: number) => (n * 97 + y * 31 + x * 7 + c * 101) % 256;

function randomBatch(count: number, seed: number): { bytes: Uint8Array; labels: number[]; values: Uint8Array } {
  const rng = makeRng(seed);
  const labels = Array.from({ length: count }, () => Math.floor(rng() * 10));
  const values = Uint8Array.from({ length: count * 3072 }, () => Math.floor(rng() * 256));
  return { bytes: batchFile(labels, (n, y, x, c) => values[n * 3072 + c * 1024 + y * 32 + x]), labels, values };
}

const parse = suite('cifar parser');

parse('records become 32x32x3 examples stored (y, x, channel), labels kept', () => {
  const labels = [3, 0, 9, 7];
  const ds = parseCifarBatch(batchFile(labels, distinct), 'data_batch_1.bin');
  checkDataset(ds, 'parsed');
  assert.equal([ds.count, ds.height, ds.width, ds.channels], [4, 32, 32, 3]);
  assert.equal(Array.from(ds.labels), labels);
  for (let n = 0; n < 4; n++) {
    for (const [y, x] of [[0, 0], [0, 31], [31, 0], [17, 5], [31, 31]]) {
      for (let c = 0; c < 3; c++) assert.is(ds.images[((n * 32 + y) * 32 + x) * 3 + c], distinct(n, y, x, c), `record ${n} (${y}, ${x}) channel ${c}`);
    }
  }
  // Every byte, on random data.
  const r = randomBatch(3, 5);
  const all = parseCifarBatch(r.bytes, 'r.bin');
  for (let n = 0; n < 3; n++) {
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 1024; p++) assert.is(all.images[(n * 1024 + p) * 3 + c], r.values[n * 3072 + c * 1024 + p]);
    }
  }
});

parse('batches feed fillBatch as [B, 3, 32, 32] planes again (red plane first)', () => {
  const ds = parseCifarBatch(batchFile([1, 2], distinct), 'b.bin');
  const images = new Float32Array(2 * 3 * 32 * 32);
  const labels = new Int32Array(2);
  fillBatch(ds, [1, 0], 0, images, labels);
  assert.equal(Array.from(labels), [2, 1]);
  for (const [c, y, x] of [[0, 0, 0], [1, 4, 9], [2, 31, 30]]) {
    assert.ok(Math.abs(images[(c * 32 + y) * 32 + x] - distinct(1, y, x, c) / 255) < 1e-7, `example 0 = record 1, channel ${c}`);
    assert.ok(Math.abs(images[3072 + (c * 32 + y) * 32 + x] - distinct(0, y, x, c) / 255) < 1e-7, `example 1 = record 0, channel ${c}`);
  }
});

parse('the class names are the ten of batches.meta.txt', () => {
  assert.equal(CIFAR10_LABEL_NAMES, ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
  assert.is(CIFAR_RECORD_BYTES, 3073);
  assert.is(CIFAR_PIXEL_BYTES, 3072);
});

parse('corrupted batches: clear errors naming the file and what is wrong', () => {
  const good = batchFile([1, 2, 3], distinct);
  const cases: Array<[Uint8Array, RegExp]> = [
    [new Uint8Array(0), /^f\.bin: empty file, expected 3073-byte records/],
    [good.subarray(0, good.length - 1), /^f\.bin: 9218 bytes is not a whole number of 3073-byte records .*: 2 records and 3072 bytes left over, truncated/],
    [Uint8Array.from([...good, 0]), /^f\.bin: 9220 bytes is not a whole number .*3 records and 1 bytes left over/],
    [new Uint8Array(2 * 3074), /f\.bin: 6148 bytes .* \(a multiple of 3074: CIFAR-100's records have 2 label bytes; this reader reads CIFAR-10\)/],
    [gzipSync(good), /^f\.bin: the bytes are gzipped \(magic 1f 8b\): extract the \.bin files from cifar-10-binary\.tar\.gz first$/],
    [Uint8Array.from([0x80, 0x02, ...good.subarray(2)]), /^f\.bin: this is a Python pickle \(the "python version" of CIFAR-10\); use the binary version/],
  ];
  const badLabel = good.slice();
  badLabel[2 * 3073] = 10;
  cases.push([badLabel, /^f\.bin: record 2 \(byte 6146\) has label 10, expected a class index < 10: not a CIFAR-10 binary batch, or misaligned$/]);
  for (const [bytes, pattern] of cases) assert.throws(() => parseCifarBatch(bytes, 'f.bin'), pattern);
});

parse('joining batches keeps their order; mismatched parts are refused', () => {
  const a = parseCifarBatch(batchFile([1, 2], distinct), 'a');
  const b = parseCifarBatch(batchFile([5], (n, y, x, c) => distinct(n + 7, y, x, c)), 'b');
  const ab = concatCifarBatches([a, b], 'ab');
  checkDataset(ab, 'ab');
  assert.equal(Array.from(ab.labels), [1, 2, 5]);
  assert.equal(Array.from(ab.images.subarray(2 * 3072)), Array.from(b.images));
  assert.throws(() => concatCifarBatches([a, { ...b, channels: 1 }], 'ab'), /ab: a batch of 1x32x32 images, expected 3x32x32/);
  assert.throws(() => concatCifarBatches([], 'none'), /none: no batches to join/);
});

parse.run();

// ---------------------------------------------------------------------------------------------
const files = suite('cifar files');

let root = '';
files.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-cifar-'));
});
files.after(() => rmSync(root, { recursive: true, force: true }));

/** A folder in the official layout: data_batch_1..k.bin and test_batch.bin of `counts` records. */
function writeFolder(dir: string, trainCounts: number[], testCount: number, seed: number) {
  mkdirSync(dir, { recursive: true });
  const batches = trainCounts.map((count, k) => {
    const b = randomBatch(count, seed + k);
    writeFileSync(join(dir, `data_batch_${k + 1}.bin`), b.bytes);
    return b;
  });
  const test = randomBatch(testCount, seed + 100);
  writeFileSync(join(dir, 'test_batch.bin'), test.bytes);
  return { batches, test };
}

files('a folder of batches: training = data_batch_1..N in number order, test = test_batch.bin', () => {
  const dir = join(root, 'plain');
  // Ten batches, so a name sort would put data_batch_10 before data_batch_2.
  const { batches, test } = writeFolder(dir, [2, 1, 3, 1, 1, 1, 1, 1, 1, 2], 3, 40);
  const { train, test: t } = loadCifar10(dir);
  checkDataset(train, 'train');
  checkDataset(t, 'test');
  assert.is(train.count, 14);
  assert.equal(Array.from(train.labels), batches.flatMap((b) => b.labels));
  assert.equal(Array.from(t.labels), test.labels);
  assert.equal(Array.from(t.images.subarray(0, 3)), [test.values[0], test.values[1024], test.values[2048]]);
  const last = batches[9];
  const at = 12 * 3072; // the first record of data_batch_10
  assert.equal(Array.from(train.images.subarray(at, at + 3)), [last.values[0], last.values[1024], last.values[2048]]);
  assert.ok(isCifar10Folder(dir));
});

files('the extracted archive\'s parent folder works too (cifar-10-batches-bin inside)', () => {
  const parent = join(root, 'parent');
  writeFolder(join(parent, 'cifar-10-batches-bin'), [1], 1, 50);
  assert.is(loadCifar10(parent).train.count, 1);
  assert.ok(isCifar10Folder(parent));
  assert.not.ok(isCifar10Folder(join(root, 'nowhere')));
});

files('missing, gapped, oversized or corrupt files: errors name the folder or file', () => {
  const missing = join(root, 'missing');
  mkdirSync(missing);
  assert.throws(() => loadCifar10(join(root, 'nowhere')), /loadCifar10: folder .*nowhere does not exist/);
  assert.throws(() => loadCifar10(missing), /folder .*missing has no test_batch\.bin \(nor cifar-10-batches-bin\/test_batch\.bin\): expected the CIFAR-10 binary batches/);
  writeFileSync(join(missing, 'test_batch.bin'), randomBatch(1, 1).bytes);
  assert.throws(() => loadCifar10(missing), /folder .*missing has test_batch\.bin but no data_batch_N\.bin training batches/);

  const gap = join(root, 'gap');
  writeFolder(gap, [1, 1, 1], 1, 60);
  rmSync(join(gap, 'data_batch_2.bin'));
  assert.throws(() => loadCifar10(gap), /has data_batch_1\.bin, data_batch_3\.bin: data_batch_2\.bin is missing \(expected data_batch_1\.bin \.\. data_batch_3\.bin\)/);

  const big = join(root, 'big');
  writeFolder(big, [2, 2], 1, 70);
  assert.throws(() => loadCifar10(big, 3 * CIFAR_RECORD_BYTES), /the training batches in .*big exceed 9219 bytes \(at data_batch_2\.bin\)/);
  assert.throws(() => readCifarBatch(join(big, 'data_batch_1.bin'), CIFAR_RECORD_BYTES), /data_batch_1\.bin: cannot read CIFAR-10 batch: 6146 bytes, more than the 3073-byte limit/);

  const corrupt = join(root, 'corrupt');
  writeFolder(corrupt, [2], 1, 80);
  writeFileSync(join(corrupt, 'test_batch.bin'), randomBatch(2, 3).bytes.subarray(0, 5000));
  assert.throws(() => loadCifar10(corrupt), /corrupt\/test_batch\.bin: 5000 bytes is not a whole number of 3073-byte records/);

  const folderNotFile = join(root, 'folder-not-file');
  writeFolder(folderNotFile, [1], 1, 90);
  rmSync(join(folderNotFile, 'data_batch_1.bin'));
  mkdirSync(join(folderNotFile, 'data_batch_1.bin'));
  assert.throws(() => loadCifar10(folderNotFile), /data_batch_1\.bin: cannot read CIFAR-10 batch: not a regular file \(a folder\)/);
});

files('a FIFO in place of a batch is refused at once instead of blocking the read', () => {
  const dir = join(root, 'fifo');
  writeFolder(dir, [1], 1, 95);
  rmSync(join(dir, 'test_batch.bin'));
  execFileSync('mkfifo', [join(dir, 'test_batch.bin')]); // coreutils; the tests run on Linux
  assert.throws(() => loadCifar10(dir), /test_batch\.bin: cannot read CIFAR-10 batch: not a regular file \(a device, FIFO or socket\)/);
});

files.run();
