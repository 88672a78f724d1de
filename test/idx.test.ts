// IDX reader regressions found by the fuzzer (tools/fuzz.ts): paths that are not regular files
// (a FIFO blocked readIdxBytes, /dev/zero never ended), the bounded read, and a zero size among
// huge ones. The format's main tests are in data.test.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIdx, parseImages } from '../src/data/idx.ts';
import { readIdxBytes, readRegularFile } from '../src/io/idx-file.ts';

import { idxBytes } from './helpers/idx.ts';

const idx = suite('idx hardening');
let dir = '';
idx.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'capsnet-idx-'));
});
idx.after(() => rmSync(dir, { recursive: true, force: true }));

idx('a FIFO, a folder or a device is refused at once, naming the path', () => {
  const fifo = join(dir, 'train-images-idx3-ubyte');
  execFileSync('mkfifo', [fifo]); // coreutils; the tests run on Linux
  const started = performance.now();
  assert.throws(() => readIdxBytes(fifo), new RegExp(`^${fifo}: cannot read IDX file: not a regular file \\(a device, FIFO or socket\\)$`));
  mkdirSync(join(dir, 'folder'));
  assert.throws(() => readIdxBytes(join(dir, 'folder')), /folder: cannot read IDX file: not a regular file \(a folder\)$/);
  if (existsSync('/dev/zero')) assert.throws(() => readIdxBytes('/dev/zero'), /^\/dev\/zero: cannot read IDX file: not a regular file/);
  assert.ok(performance.now() - started < 2000, 'no read blocked');
});

idx('the read is bounded: a file over the limit is refused, one at the limit is read whole', () => {
  const path = join(dir, 'bytes');
  writeFileSync(path, new Uint8Array(1000).fill(7));
  assert.is(readRegularFile(path, 1000, 'test file').length, 1000);
  assert.ok(readRegularFile(path, 1000, 'test file').every((v) => v === 7));
  assert.throws(() => readRegularFile(path, 999, 'test file'), new RegExp(`^${path}: cannot read test file: 1000 bytes, more than the 999-byte limit$`));
  writeFileSync(path, new Uint8Array(0));
  assert.is(readRegularFile(path, 10, 'test file').length, 0);
  assert.throws(() => readRegularFile(join(dir, 'missing'), 10, 'test file'), /missing: cannot read test file: ENOENT/);
});

idx('a size of 0 makes an empty array whatever the other sizes declare', () => {
  const empty = parseIdx(idxBytes([2, 3, 4294967294, 0], []), 'e');
  assert.equal(empty.dims, [2, 3, 4294967294, 0]);
  assert.is(empty.data.length, 0);
  const noImages = parseImages(idxBytes([0, 4294967295, 4294967295], []), 'i');
  assert.equal([noImages.count, noImages.height, noImages.width], [0, 4294967295, 4294967295]);
  // Without a zero, the product is still bounded at every step.
  assert.throws(() => parseIdx(idxBytes([2, 3, 4294967294, 1], []), 'e'), /^e: declared sizes \[2, 3, 4294967294, \.\.\.\] exceed 2147483648 elements/);
});

idx.run();
