// Fuzz targets for the CIFAR-10 binary reader: the pure parser (src/data/cifar.ts) and the folder
// loader (src/io/cifar-file.ts: data_batch_N.bin + test_batch.bin, limits, odd folders).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Rng } from '../../src/data/rng.ts';
import type { Dataset } from '../../src/data/dataset.ts';
import { parseCifarBatch } from '../../src/data/cifar.ts';
import { loadCifar10 } from '../../src/io/cifar-file.ts';
import type { PreparedCase, Target } from './harness.ts';
import { chance, concat, mutateBytes, pick, randomBytes } from './mutate.ts';
import { CIFAR_RECORD, cifarFile, cifarOracle, gzip, type CifarReading, type Oracle } from './formats.ts';

function validBatch(rng: Rng, records = 1 + rng.int(4)): Uint8Array {
  const labels = Array.from({ length: records }, () => rng.int(10));
  return cifarFile(labels, randomBytes(rng, records * 3072));
}

function mutateCifar(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } {
  const count = bytes.length / CIFAR_RECORD;
  switch (rng.int(9)) {
    case 0: {
      const out = bytes.slice();
      const n = rng.int(Math.max(1, Math.floor(count)));
      const v = pick(rng, [10, 11, 255, 128, 9, 0]);
      if (out.length > n * CIFAR_RECORD) out[n * CIFAR_RECORD] = v;
      return { bytes: out, what: `label of record ${n} := ${v}` };
    }
    case 1: {
      const cut = pick(rng, [1, 1000, CIFAR_RECORD - 1, CIFAR_RECORD + 1]);
      return { bytes: bytes.slice(0, Math.max(0, bytes.length - cut)), what: `last ${cut} bytes cut` };
    }
    case 2:
      return { bytes: concat(bytes, new Uint8Array(pick(rng, [1, count]))), what: 'extra bytes appended' };
    case 3: {
      // CIFAR-100's layout: 2 label bytes per record (3074 bytes).
      const records = Math.max(1, Math.floor(count));
      return { bytes: new Uint8Array(records * (CIFAR_RECORD + 1)), what: `${records} CIFAR-100 records (3074 bytes each)` };
    }
    case 4:
      return { bytes: gzip(bytes), what: 'gzipped' };
    case 5:
      return { bytes: concat(Uint8Array.of(0x80, 0x02), bytes), what: 'a pickle header in front' };
    case 6:
      return { bytes: concat(bytes, validBatch(rng, 1)), what: 'one more valid record (valid)' };
    case 7: {
      const out = bytes.slice();
      for (let k = 0; k < 8 && out.length > 0; k++) {
        const i = rng.int(out.length);
        if (i % CIFAR_RECORD !== 0) out[i] ^= 0xff; // pixels only: still valid
      }
      return { bytes: out, what: 'pixel bytes flipped (valid)' };
    }
    default: {
      const m = mutateBytes(rng, bytes);
      return { bytes: m.value, what: m.what };
    }
  }
}

function checkBatch(result: unknown, expected: CifarReading): string | null {
  const ds = result as Dataset;
  if (ds.count !== expected.count || ds.height !== 32 || ds.width !== 32 || ds.channels !== 3) {
    return `dataset ${ds.count} x ${ds.channels}x${ds.height}x${ds.width}, expected ${expected.count} x 3x32x32`;
  }
  if (ds.images.length !== expected.count * 3072 || ds.labels.length !== expected.count) return `array lengths ${ds.images.length}, ${ds.labels.length}`;
  for (let n = 0; n < expected.count; n++) {
    if (ds.labels[n] !== expected.labels[n]) return `label ${n} = ${ds.labels[n]}, expected ${expected.labels[n]}`;
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        for (let c = 0; c < 3; c++) {
          const got = ds.images[((n * 32 + y) * 32 + x) * 3 + c];
          const want = expected.pixel(n, y, x, c);
          if (got !== want) return `pixel (${n}, y ${y}, x ${x}, channel ${c}) = ${got}, expected ${want}`;
        }
      }
    }
  }
  return null;
}

function mutated(rng: Rng, base: Uint8Array): { bytes: Uint8Array; what: string[] } {
  let bytes = base;
  const what: string[] = [`${base.length / CIFAR_RECORD} records`];
  const rounds = chance(rng, 0.2) ? 0 : 1 + rng.int(2);
  for (let r = 0; r < rounds; r++) {
    const m = mutateCifar(rng, bytes);
    bytes = m.bytes;
    what.push(m.what);
  }
  return { bytes, what };
}

export const cifarParseTarget: Target = {
  name: 'cifar',
  description: 'CIFAR-10 binary parser, src/data/cifar.ts: parseCifarBatch',
  prepare(rng: Rng): PreparedCase {
    const m = mutated(rng, validBatch(rng));
    const oracle = cifarOracle(m.bytes);
    const source = 'fuzz_batch.bin';
    return {
      mutation: m.what.join('; '),
      source,
      inputBytes: m.bytes.length,
      run: () => parseCifarBatch(m.bytes, source),
      expect: oracle.ok ? { verdict: 'valid', check: (r) => checkBatch(r, oracle.value) } : { verdict: 'invalid', why: oracle.why },
    };
  },
};

let scratch = '';

export const cifarFileTarget: Target = {
  name: 'cifar-file',
  description: 'CIFAR-10 folders, src/io/cifar-file.ts: loadCifar10 (batch files, missing ones, limits, nested folder)',
  setup() {
    scratch = mkdtempSync(join(tmpdir(), 'capsnet-fuzz-cifar-'));
  },
  teardown() {
    rmSync(scratch, { recursive: true, force: true });
  },
  prepare(rng: Rng, index: number): PreparedCase {
    const root = join(scratch, `case-${index}`);
    const nested = chance(rng, 0.2);
    const folder = nested ? join(root, 'cifar-10-batches-bin') : root;
    mkdirSync(folder, { recursive: true });
    const trainCount = rng.int(4);
    const files = new Map<string, Uint8Array>();
    for (let k = 1; k <= trainCount; k++) files.set(`data_batch_${k}.bin`, validBatch(rng, 1 + rng.int(2)));
    files.set('test_batch.bin', validBatch(rng, 1 + rng.int(2)));
    const what = [`${trainCount} training batches${nested ? ' in cifar-10-batches-bin/' : ''}`];
    // Structure of the folder.
    switch (rng.int(8)) {
      case 0: {
        const name = pick(rng, [...files.keys()]);
        files.delete(name);
        what.push(`${name} missing`);
        break;
      }
      case 1:
        files.set('data_batch_10.bin', validBatch(rng, 1));
        what.push('data_batch_10.bin added');
        break;
      case 2:
        files.set('data_batch_1.bin.gz', gzip(validBatch(rng, 1)));
        files.set('batches.meta.txt', new TextEncoder().encode('airplane\n'));
        what.push('unrelated files added');
        break;
      default:
        break;
    }
    // Content of one file.
    let dirInstead: string | null = null;
    if (chance(rng, 0.6) && files.size > 0) {
      const name = pick(rng, [...files.keys()]);
      if (chance(rng, 0.05)) {
        files.delete(name);
        dirInstead = name;
        what.push(`${name} is a folder`);
      } else {
        const m = mutated(rng, files.get(name)!);
        files.set(name, m.bytes);
        what.push(`${name}: ${m.what.slice(1).join('; ') || 'unchanged'}`);
      }
    }
    for (const [name, bytes] of files) writeFileSync(join(folder, name), bytes);
    if (dirInstead) mkdirSync(join(folder, dirInstead));
    const limit = chance(rng, 0.2) ? pick(rng, [CIFAR_RECORD, 2 * CIFAR_RECORD, 4 * CIFAR_RECORD]) : undefined;
    if (limit !== undefined) what.push(`limit ${limit} bytes`);
    const oracle = folderOracle(files, dirInstead, limit ?? 1 << 30);
    return {
      mutation: what.join('; '),
      source: root,
      inputBytes: [...files.values()].reduce((s, b) => s + b.length, 0),
      run: () => loadCifar10(root, limit),
      expect: oracle.ok
        ? { verdict: 'valid', check: (r) => checkFolder(r, oracle.value) }
        : { verdict: 'invalid', why: oracle.why },
      cleanup: () => rmSync(root, { recursive: true, force: true }),
    };
  },
};

function folderOracle(files: Map<string, Uint8Array>, dirInstead: string | null, limit: number): Oracle<{ train: CifarReading[]; test: CifarReading }> {
  const fail = (why: string) => ({ ok: false as const, why });
  if (!files.has('test_batch.bin')) return fail(dirInstead === 'test_batch.bin' ? 'test_batch.bin is a folder' : 'no test_batch.bin');
  const numbers = [...files.keys()].map((n) => /^data_batch_([1-9][0-9]*)\.bin$/.exec(n)).filter((m) => m !== null).map((m) => Number(m![1])).sort((a, b) => a - b);
  if (dirInstead && /^data_batch_[1-9][0-9]*\.bin$/.test(dirInstead)) return fail(`${dirInstead} is a folder`);
  if (numbers.length === 0) return fail('no training batch');
  if (numbers.some((n, k) => n !== k + 1)) return fail('a gap in the batch numbers');
  let total = 0;
  const train: CifarReading[] = [];
  for (const n of numbers) {
    const bytes = files.get(`data_batch_${n}.bin`)!;
    total += bytes.length;
    if (total > limit) return fail('training batches over the limit');
  }
  for (const n of numbers) {
    const r = cifarOracle(files.get(`data_batch_${n}.bin`)!);
    if (!r.ok) return r;
    train.push(r.value);
  }
  const testBytes = files.get('test_batch.bin')!;
  if (testBytes.length > limit) return fail('test batch over the limit');
  const test = cifarOracle(testBytes);
  if (!test.ok) return test;
  return { ok: true, value: { train, test: test.value } };
}

function checkFolder(result: unknown, expected: { train: CifarReading[]; test: CifarReading }): string | null {
  const r = result as { train: Dataset; test: Dataset };
  // The training parts are concatenated: check them as one reading.
  const labels = expected.train.flatMap((p) => p.labels);
  const offsets: number[] = [];
  let at = 0;
  for (const p of expected.train) {
    offsets.push(at);
    at += p.count;
  }
  const joined: CifarReading = {
    count: labels.length,
    labels,
    pixel: (n, y, x, c) => {
      let k = expected.train.length - 1;
      while (offsets[k] > n) k--;
      return expected.train[k].pixel(n - offsets[k], y, x, c);
    },
  };
  const wrongTrain = checkBatch(r.train, joined);
  return wrongTrain ? `train: ${wrongTrain}` : checkBatch(r.test, expected.test) && `test: ${checkBatch(r.test, expected.test)}`;
}
