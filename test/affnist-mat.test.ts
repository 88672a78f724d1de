// Real affNIST files (issue 8): the MAT level-5 reader (src/io/mat-file.ts) and the affNIST loader
// (src/io/affnist-file.ts) on small files the test writes (test/helpers/mat-writer.ts; no network):
// plain and miCOMPRESSED, little- and big-endian, values stored narrower than their class, the
// pixel order (an asymmetric pattern), extra fields skipped, and a clear error naming the file for
// each kind of damage. When python3 with scipy is installed, a file scipy.io.savemat writes from
// (N, 40, 40) images the way the Python affNIST loaders read them back must give the same images.
// Then `capsnet eval --experiment affnist --affnist FILE` end to end, and its usage errors.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { affnistMat, matFile, type MatSpec } from './helpers/mat-writer.ts';
import { makeRng, randomNormal } from './helpers/random.ts';
import { runCli } from './helpers/cli.ts';
import { skipWithReason } from './helpers/skip.ts';
import { parseMatFile, readMatFile } from '../src/io/mat-file.ts';
import {
  AFFNIST_PIXELS, ORIENTATION_MIN_IMAGES, affnistOrientationWarning, loadAffnist, loadAffnistFiles, parseAffnist,
} from '../src/io/affnist-file.ts';
import { checkDataset, type Dataset } from '../src/data/dataset.ts';
import { parameterShapes, presetConfig } from '../src/model/config.ts';
import { saveCheckpoint } from '../src/io/checkpoint-file.ts';

let root = '';
const mat = suite('affNIST MAT files', {});
mat.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-affnist-'));
});
mat.after(() => rmSync(root, { recursive: true, force: true }));

/**
 * N images with an asymmetric pattern: image n has value 200 at (y = 2 + n, x = 30) (near the top
 * right), 100 + n at (y = 35, x = 1) (bottom left), 0 elsewhere. Row-major (y * 40 + x), which is
 * also the order within a column of the file (the loader's documented convention).
 */
function pattern(n: number): Uint8Array {
  const images = new Uint8Array(n * AFFNIST_PIXELS);
  for (let k = 0; k < n; k++) {
    images[k * AFFNIST_PIXELS + (2 + k) * 40 + 30] = 200;
    images[k * AFFNIST_PIXELS + 35 * 40 + 1] = 100 + k;
  }
  return images;
}

const LABELS = [3, 1, 4, 1, 5, 9, 2];

function write(name: string, bytes: Uint8Array): string {
  const path = join(root, name);
  writeFileSync(path, bytes);
  return path;
}

/** `run` throws an Error whose message names `path` and matches `pattern`. */
function throwsNaming(run: () => unknown, path: string, pattern: RegExp): void {
  let message = '';
  try {
    run();
  } catch (error) {
    message = (error as Error).message;
  }
  assert.ok(message !== '', `expected an error matching ${pattern}`);
  assert.ok(message.startsWith(`${path}: `) || message.includes(` ${path}: `), `the error names the file: ${message}`);
  assert.match(message, pattern);
}

mat('plain, compressed and big-endian files give the same images and labels, in row-major order', () => {
  const images = pattern(LABELS.length);
  for (const options of [{}, { compress: true }, { bigEndian: true }, { bigEndian: true, compress: true }]) {
    const path = write('pattern.mat', affnistMat(images, LABELS, options));
    const ds = loadAffnist(path);
    checkDataset(ds, path);
    assert.equal([ds.count, ds.height, ds.width, ds.channels], [LABELS.length, 40, 40, 1]);
    assert.equal(Array.from(ds.labels), LABELS, JSON.stringify(options));
    assert.ok(Buffer.from(ds.images).equals(Buffer.from(images)), JSON.stringify(options));
    // The pattern where it must be (and only there): pixel (y, x) of image n at n * 1600 + y * 40 + x.
    for (let n = 0; n < ds.count; n++) {
      assert.is(ds.images[n * 1600 + (2 + n) * 40 + 30], 200);
      assert.is(ds.images[n * 1600 + 35 * 40 + 1], 100 + n);
    }
    // --affnist-transpose reads each column the other way: the pattern mirrored about the diagonal.
    const t = loadAffnist(path, { transpose: true });
    for (let n = 0; n < t.count; n++) {
      assert.is(t.images[n * 1600 + 30 * 40 + (2 + n)], 200);
      assert.is(t.images[n * 1600 + 1 * 40 + 35], 100 + n);
      assert.is(t.images[n * 1600 + (2 + n) * 40 + 30], 0);
    }
  }
});

mat('the MAT reader: classes, stored types converted to the class, small elements, char and unsupported values', () => {
  const bytes = matFile([
    ['a', { kind: 'numeric', class: 'double', stored: 'int16', dims: [2, 3], values: [-1, 2, -300, 4, 5, 6] }],
    ['single', { kind: 'numeric', class: 'single', dims: [1, 2], values: [0.5, -2.25] }],
    ['u16', { kind: 'numeric', class: 'uint16', stored: 'uint8', dims: [1, 3], values: [0, 255, 7] }],
    ['s', { kind: 'struct', fields: [['note', { kind: 'char', text: 'affNIST' }], ['c', { kind: 'cell' }], ['z', { kind: 'numeric', class: 'double', dims: [2, 1], values: [1, 2], complex: true }]] }],
  ], { compress: true });
  const file = parseMatFile(bytes, 'mem.mat');
  assert.ok(file.littleEndian);
  assert.match(file.header, /^MATLAB 5\.0 MAT-file/);
  assert.equal([...file.variables.keys()], ['a', 'single', 'u16', 's']);
  const a = file.variables.get('a')!;
  assert.ok(a.kind === 'numeric');
  if (a.kind !== 'numeric') return;
  assert.equal([a.class, a.stored, a.dims, a.count], ['double', 'int16', [2, 3], 6]);
  const av = a.values();
  assert.ok(av instanceof Float64Array);
  assert.equal(Array.from(av), [-1, 2, -300, 4, 5, 6]);
  const single = file.variables.get('single')!;
  assert.ok(single.kind === 'numeric' && single.values() instanceof Float32Array);
  if (single.kind === 'numeric') assert.equal(Array.from(single.values()), [0.5, -2.25]);
  const u16 = file.variables.get('u16')!;
  assert.ok(u16.kind === 'numeric' && u16.values() instanceof Uint16Array);
  if (u16.kind === 'numeric') assert.equal(Array.from(u16.values()), [0, 255, 7]);
  const s = file.variables.get('s')!;
  assert.ok(s.kind === 'struct');
  if (s.kind !== 'struct') return;
  assert.equal(s.fields.get('note'), { kind: 'char', dims: [1, 7], text: 'affNIST' });
  // Well-formed but not interpreted: a cell and a complex array are values saying what they are.
  assert.is(s.fields.get('c')!.kind, 'unsupported');
  assert.match((s.fields.get('c') as { what: string }).what, /class cell/);
  assert.match((s.fields.get('z') as { what: string }).what, /a complex double array/);
});

mat('a stored value that does not fit the class is an error naming the file, variable and value', () => {
  const bytes = matFile([['u', { kind: 'numeric', class: 'uint8', stored: 'int16', dims: [1, 3], values: [1, -3, 2] }]]);
  const file = parseMatFile(bytes, 'fit.mat');
  const u = file.variables.get('u')!;
  assert.ok(u.kind === 'numeric');
  if (u.kind === 'numeric') throwsNaming(() => u.values(), 'fit.mat', /variable 'u': value -3 \(index 1, stored as int16\) does not fit the array's class uint8/);
});

mat('extra fields of any kind are skipped; several files are joined in order', () => {
  const images = pattern(LABELS.length);
  const a = write('a.mat', affnistMat(images, LABELS, { compress: true }, {
    human_readable_transform: { kind: 'cell' },
    note: { kind: 'char', text: 'skipped' },
    matlab_transform: { kind: 'numeric', class: 'double', dims: [6, LABELS.length], values: new Array(6 * LABELS.length).fill(0.5), complex: true },
  }));
  const b = write('b.mat', affnistMat(pattern(2), [0, 8], {}, { label_one_of_n: undefined, index: undefined, human_readable_transform: undefined }));
  const ds = loadAffnistFiles([a, b]);
  checkDataset(ds, 'a + b');
  assert.is(ds.count, LABELS.length + 2);
  assert.equal(Array.from(ds.labels), [...LABELS, 0, 8]);
  assert.ok(Buffer.from(ds.images.subarray(0, images.length)).equals(Buffer.from(images)));
  assert.ok(Buffer.from(ds.images.subarray(images.length)).equals(Buffer.from(pattern(2))));
});

mat('damaged files: each error names the file and what is wrong', () => {
  const images = pattern(3);
  const labels = [1, 2, 3];
  const good = affnistMat(images, labels);
  const check = (name: string, bytes: Uint8Array, expected: RegExp, options = {}) => {
    const path = write(name, bytes);
    throwsNaming(() => loadAffnist(path, options), path, expected);
  };
  check('truncated.mat', good.subarray(0, good.length - 100), /truncated element: miMATRIX \(14\) declares \d+ bytes of data, \d+ left \(at byte 128\)/);
  check('short.mat', good.subarray(0, 60), /60 bytes, shorter than the 128-byte header/);
  check('indicator.mat', affnistMat(images, labels, { indicator: 'XY' }), /not the endian indicator 'IM' or 'MI'/);
  check('version.mat', affnistMat(images, labels, { version: 0x0200 }), /version 0x0200 at byte 124, expected 0x0100 \(0x0200: a v7\.3 file/);
  check('text.mat', affnistMat(images, labels, { text: 'Octave binary' }), /header text does not start with 'MATLAB'/);
  const zipped = affnistMat(images, labels, { compress: true });
  const badZlib = zipped.slice();
  for (let k = 140; k < 160; k++) badZlib[k] ^= 0x5a;
  check('zlib.mat', badZlib, /miCOMPRESSED element of \d+ bytes does not inflate \(zlib: .+\) \(at byte 128\)/);
  check('zlib-cut.mat', zipped.subarray(0, zipped.length - 10), /truncated element: miCOMPRESSED \(15\) declares/);
  // A zlib stream cut short inside a complete miCOMPRESSED element.
  const inner = deflateSync(good.subarray(128)).subarray(0, 200);
  const cut = new Uint8Array(128 + 8 + inner.length);
  cut.set(good.subarray(0, 128));
  new DataView(cut.buffer).setUint32(128, 15, true);
  new DataView(cut.buffer).setUint32(132, inner.length, true);
  cut.set(inner, 136);
  check('zlib-short.mat', cut, /does not inflate \(zlib: unexpected end of file\)/);
  check('inflate-cap.mat', zipped, /inflates to more than the 1000-byte limit/, { maxInflatedBytes: 1000 });
  check('file-cap.mat', good, /cannot read MAT file: \d+ bytes, more than the 1000-byte limit/, { maxFileBytes: 1000 });
  check('no-label.mat', affnistMat(images, labels, {}, { label_int: undefined }), /affNISTdata\.label_int is missing \(fields: image, label_one_of_n/);
  check('no-image.mat', affnistMat(images, labels, {}, { image: undefined }), /affNISTdata\.image is missing/);
  check('label-11.mat', affnistMat(images, [1, 11, 3], {}, { label_one_of_n: undefined }), /affNISTdata\.label_int\(2\) \(image 1\) is 11, expected a digit 0\.\.9/);
  check('label-frac.mat', affnistMat(images, labels, {}, { label_int: { kind: 'numeric', class: 'double', dims: [1, 3], values: [1, 2.5, 3] } }), /label_int\(2\) \(image 1\) is 2\.5/);
  const image3: MatSpec = { kind: 'numeric', class: 'uint8', dims: [1600, 3], values: images };
  check('count.mat', affnistMat(images, [1, 2, 3, 4], {}, { image: image3, label_one_of_n: undefined }), /affNISTdata\.label_int is 1x4 \(4 labels\), expected 1 x 3: affNISTdata\.image has 3 images/);
  check('one-of-n.mat', affnistMat(images, labels, {}, { label_one_of_n: { kind: 'numeric', class: 'double', dims: [10, 2], values: new Array(20).fill(0) } }), /affNISTdata\.label_one_of_n is 10x2, expected 10 x 3/);
  check('complex.mat', affnistMat(images, labels, {}, { image: { kind: 'numeric', class: 'uint8', dims: [1600, 3], values: images, complex: true } }), /affNISTdata\.image is 1600x3: a complex uint8 array/);
  check('double-image.mat', affnistMat(images, labels, {}, { image: { kind: 'numeric', class: 'double', stored: 'uint8', dims: [1600, 3], values: images } }), /affNISTdata\.image is a 1600x3 double array, expected class uint8/);
  check('transposed.mat', affnistMat(images, labels, {}, { image: { kind: 'numeric', class: 'uint8', dims: [3, 1600], values: images } }), /affNISTdata\.image is 3x1600, expected 1600 x N .*saved transposed/);
  check('type-8.mat', affnistMat(images, labels, {}, { image: { kind: 'numeric', class: 'uint8', dims: [1600, 3], values: images, storedTypeNumber: 8 } }), /field 'image': the values are stored as unknown data type \(8\)/);
  check('wrong-size.mat', affnistMat(images, labels, {}, { image: { kind: 'numeric', class: 'uint8', dims: [1600, 4], values: images } }), /field 'image': 4800 bytes of miUINT8 \(2\) for a 1600x4 array, expected 6400 values x 1 bytes = 6400/);
  const empty = write('empty.mat', affnistMat(new Uint8Array(0), []));
  assert.is(loadAffnist(empty).count, 0); // a well-formed file...
  throwsNaming(() => loadAffnistFiles([empty]), empty, /no images \(affNISTdata\.image is 1600 x 0\)/); // ...with nothing to evaluate
  check('other-variable.mat', matFile([['data', { kind: 'numeric', class: 'double', dims: [1, 1], values: [1] }]]), /no variable 'affNISTdata' \(variables: 'data'\): not an affNIST file/);
  // A declared element size past the end of the file.
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(132, 0x7fffffff, true);
  check('huge.mat', huge, /miMATRIX \(14\) declares 2147483647 bytes of data, \d+ left/);
});

mat('every truncation and 300 random byte changes give a result or an Error naming the file, never a crash', () => {
  for (const compress of [false, true]) {
    const good = affnistMat(pattern(2), [4, 7], { compress });
    const source = compress ? 'cut.z.mat' : 'cut.mat';
    for (let n = 0; n < good.length; n++) throwsNaming(() => parseAffnist(good.subarray(0, n), source), source, /./);
    const rng = makeRng(compress ? 2 : 1);
    for (let trial = 0; trial < 150; trial++) {
      const bad = good.slice();
      for (let k = 0; k < 3; k++) bad[Math.floor(rng() * bad.length)] = Math.floor(rng() * 256);
      try {
        parseAffnist(bad, source);
      } catch (error) {
        assert.ok(error instanceof Error && error.message.startsWith(`${source}: `), `trial ${trial}: ${(error as Error).message}`);
      }
    }
  }
});

/** Images of one tall bar (rows 8..31, columns 16..23) per image: taller than wide, like MNIST digits. */
function bars(n: number): Dataset {
  const images = new Uint8Array(n * AFFNIST_PIXELS);
  for (let k = 0; k < n; k++) for (let y = 8; y < 32; y++) for (let x = 16; x < 24; x++) images[k * AFFNIST_PIXELS + y * 40 + x] = 255;
  return { images, labels: new Uint8Array(n), count: n, height: 40, width: 40, channels: 1 };
}

mat('the orientation warning: none for taller-than-wide digits, one for transposed ones (from 100 images)', () => {
  const upright = bars(ORIENTATION_MIN_IMAGES);
  assert.is(affnistOrientationWarning(upright, 'up.mat', false), null);
  // The same bars, transposed by the loader's transpose: wider than tall.
  const path = write('bars.mat', affnistMat(upright.images, new Array(ORIENTATION_MIN_IMAGES).fill(0)));
  const sideways = loadAffnist(path, { transpose: true });
  const warning = affnistOrientationWarning(sideways, path, true);
  assert.ok(warning !== null);
  assert.match(warning!, /the digits look transposed: their ink is on average 24\.0 pixels wide and 8\.0 tall \(100 images\).*try without --affnist-transpose/);
  assert.match(affnistOrientationWarning(sideways, path, false)!, /try with --affnist-transpose/);
  // Too few images to tell.
  assert.is(affnistOrientationWarning({ ...sideways, count: 99, images: sideways.images.subarray(0, 99 * AFFNIST_PIXELS), labels: sideways.labels.subarray(0, 99) }, path, true), null);
});

const scipy = spawnSync('python3', ['-c', 'import scipy.io, numpy'], { stdio: 'ignore' }).status === 0;
if (!scipy) {
  skipWithReason(mat, 'scipy.io.savemat files read as the Python affNIST loaders read them', 'python3 with scipy and numpy is not installed');
} else {
  mat('scipy.io.savemat files read as the Python affNIST loaders read them (image.T.reshape(N, 40, 40))', () => {
    // scipy writes its own MAT files (an independent writer): double labels as miDOUBLE, a char
    // field, compressed or not. The images go in as the Python loaders take them out.
    const script = `
import sys, numpy as np, scipy.io as sio
n = 5
imgs = np.zeros((n, 40, 40), dtype=np.uint8)
for k in range(n):
    imgs[k, 2 + k, 30] = 200
    imgs[k, 35, 1] = 100 + k
labels = np.array([[3, 1, 4, 1, 5]], dtype=np.float64)
data = {'affNISTdata': {'image': imgs.reshape(n, 1600).T, 'label_int': labels, 'label_one_of_n': np.eye(10)[[3, 1, 4, 1, 5]].T,
                        'human_readable_transform': np.linspace(0, 1, 35).reshape(7, 5), 'note': 'scipy'}}
sio.savemat(sys.argv[1], data)
sio.savemat(sys.argv[2], data, do_compression=True)
back = sio.loadmat(sys.argv[2])['affNISTdata']['image'][0][0].T.reshape(n, 40, 40)
assert (back == imgs).all()
`;
    const plain = join(root, 'scipy.mat');
    const zipped = join(root, 'scipy-z.mat');
    execFileSync('python3', ['-c', script, plain, zipped]);
    for (const path of [plain, zipped]) {
      const ds = loadAffnist(path);
      assert.equal(Array.from(ds.labels), [3, 1, 4, 1, 5]);
      assert.ok(Buffer.from(ds.images).equals(Buffer.from(pattern(5))), path);
      assert.match(readMatFile(path).header, /^MATLAB 5\.0 MAT-file/);
    }
  });
}

mat('capsnet eval --experiment affnist --affnist FILE (twice): the files are the affnist set; usage errors exit 2', async () => {
  // An untrained tiny CapsNet for 40x40 inputs: evaluation only needs the shapes right.
  const config = presetConfig('affnist', { conv1Channels: 8, primaryTypes: 2, decoderHidden: [16, 16] });
  const params: Record<string, Float32Array> = {};
  Object.entries(parameterShapes(config)).forEach(([name, shape], k) => {
    params[name] = Float32Array.from(randomNormal(shape.reduce((a, b) => a * b, 1), 100 + k, 0.05));
  });
  const ckpt = join(root, 'tiny.safetensors');
  await saveCheckpoint(ckpt, { config, params, step: 0 });
  const a = write('cli-a.mat', affnistMat(pattern(5), [3, 1, 4, 1, 5], { compress: true }));
  const b = write('cli-b.mat', affnistMat(pattern(7), LABELS));
  const json = join(root, 'eval.json');
  const r = await runCli(['eval', '--checkpoint', ckpt, '--experiment', 'affnist', '--affnist', a, '--affnist', b, '--limit', '16', '--batch-size', '8', '--output', json], { timeoutMs: 120_000 });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /affnist accuracy [0-9.]+%  error [0-9.]+%  \(12 examples: affNIST, 2 files\)/);
  const report = JSON.parse(readFileSync(json, 'utf8'));
  // 'test' is MNIST's test set centred in 40x40 (capped by --limit); 'affnist' holds the files' 5 + 7.
  assert.equal(report.sets.map((s: { split: string; count: number }) => [s.split, s.count]), [['test', 16], ['affnist', 12]]);
  assert.equal(report.affnistFiles, [a, b]);
  assert.is(report.affnistTranspose, false);

  const usage = async (args: string[], expected: RegExp) => {
    const u = await runCli(['eval', '--checkpoint', ckpt, ...args]);
    assert.is(u.code, 2, `${args.join(' ')}: ${u.stderr}`);
    assert.match(u.stderr, expected);
  };
  await usage(['--experiment', 'affnist', '--affnist', join(root, 'missing.mat')], /capsnet eval: --affnist: .*missing\.mat: cannot read MAT file: ENOENT/);
  await usage(['--experiment', 'mnist', '--affnist', a], /--affnist FILE evaluates real affNIST files in --experiment affnist; this evaluation's experiment is mnist/);
  await usage(['--affnist', a], /this evaluation's experiment is mnist/); // an untrained checkpoint has no experiment: mnist
  await usage(['--experiment', 'affnist', '--affnist-transpose'], /--affnist-transpose applies to --affnist FILE, which is not given/);
  const bad = write('cli-bad.mat', affnistMat(pattern(3), [1, 11, 3], {}, { label_one_of_n: undefined }));
  await usage(['--experiment', 'affnist', '--affnist', bad], /cli-bad\.mat: affNISTdata\.label_int\(2\) \(image 1\) is 11/);
});

mat.run();
