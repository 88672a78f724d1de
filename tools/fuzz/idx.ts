// Fuzz targets for IDX: the pure parser (src/data/idx.ts) and the file reader (src/io/idx-file.ts:
// plain and gzipped files, size limits, paths that are not regular files).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Rng } from '../../src/data/rng.ts';
import { pairDataset, parseIdx, parseImages, parseLabels, type IdxImages, type IdxLabels } from '../../src/data/idx.ts';
import type { Dataset } from '../../src/data/dataset.ts';
import { loadIdxDataset, readIdxBytes } from '../../src/io/idx-file.ts';
import type { Expectation, PreparedCase, Target } from './harness.ts';
import { INTERESTING_U32, chance, concat, mutateBytes, pick, randomBytes, type Mutated } from './mutate.ts';
import { gzip, idxFile, idxImagesOracle, idxLabelsOracle, idxOracle, sameValues, type IdxReading, type Oracle } from './formats.ts';

type Kind = 'images' | 'labels' | 'any';

/** A valid IDX file of the given kind, small. */
function validIdx(rng: Rng, kind: Kind): { bytes: Uint8Array; what: string } {
  let dims: number[];
  if (kind === 'images') dims = [rng.int(6), 1 + rng.int(7), 1 + rng.int(7)];
  else if (kind === 'labels') dims = [rng.int(12)];
  else dims = Array.from({ length: 1 + rng.int(4) }, () => rng.int(5));
  const n = dims.reduce((a, b) => a * b, 1);
  const data = kind === 'labels' ? Uint8Array.from({ length: n }, () => rng.int(10)) : randomBytes(rng, n);
  return { bytes: idxFile(dims, data), what: `${kind} [${dims.join(', ')}]` };
}

/** One IDX-aware or generic mutation. */
function mutateIdx(rng: Rng, bytes: Uint8Array): Mutated<Uint8Array> {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const ndims = out.length >= 4 ? out[3] : 0;
  switch (rng.int(8)) {
    case 0: {
      const v = pick(rng, [0, 1, 2, 3, 4, 5, 32, 127, 255]);
      if (out.length >= 4) out[3] = v;
      return { value: out, what: `dimension count byte := ${v}` };
    }
    case 1: {
      const v = pick(rng, [0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0x00, 0xff]);
      if (out.length >= 4) out[2] = v;
      return { value: out, what: `type code := 0x${v.toString(16)}` };
    }
    case 2:
    case 3: {
      const k = rng.int(Math.max(1, ndims));
      const v = pick(rng, INTERESTING_U32);
      if (out.length >= 8 + 4 * k) view.setUint32(4 + 4 * k, v, false);
      return { value: out, what: `size ${k} := ${v}` };
    }
    case 4: {
      const k = rng.int(Math.max(1, ndims));
      const delta = pick(rng, [-1, 1, 2, 1000]);
      if (out.length >= 8 + 4 * k) view.setUint32(4 + 4 * k, (view.getUint32(4 + 4 * k, false) + delta) >>> 0, false);
      return { value: out, what: `size ${k} += ${delta}` };
    }
    case 5: {
      const v = pick(rng, [0x1f, 0x01, 0xff]);
      if (out.length >= 2) out[chance(rng, 0.5) ? 0 : 1] = v;
      return { value: out, what: `a magic zero byte := 0x${v.toString(16)}` };
    }
    default:
      return mutateBytes(rng, bytes);
  }
}

function mutateSome(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string[] } {
  const what: string[] = [];
  let b = bytes;
  const rounds = chance(rng, 0.15) ? 0 : 1 + rng.int(2);
  for (let r = 0; r < rounds; r++) {
    const m = mutateIdx(rng, b);
    b = m.value;
    what.push(m.what);
  }
  return { bytes: b, what };
}

const dimsOf = (r: IdxReading) => r.dims;

function checkArray(result: unknown, expected: IdxReading): string | null {
  const r = result as { dims: number[]; data: Uint8Array };
  if (JSON.stringify(r.dims) !== JSON.stringify(dimsOf(expected))) return `dims ${JSON.stringify(r.dims)}, expected ${JSON.stringify(expected.dims)}`;
  return sameValues(r.data, Array.from(expected.data), 'data');
}

function checkImages(result: unknown, expected: IdxReading): string | null {
  const r = result as IdxImages;
  const [count, height, width] = expected.dims;
  if (r.count !== count || r.height !== height || r.width !== width) return `images ${r.count}x${r.height}x${r.width}, expected ${count}x${height}x${width}`;
  return sameValues(r.data, Array.from(expected.data), 'images');
}

function checkLabels(result: unknown, expected: IdxReading): string | null {
  const r = result as IdxLabels;
  if (r.count !== expected.dims[0]) return `count ${r.count}, expected ${expected.dims[0]}`;
  return sameValues(r.data, Array.from(expected.data), 'labels');
}

function checkDatasetPair(result: unknown, images: IdxReading, labels: IdxReading): string | null {
  const ds = result as Dataset;
  const [count, height, width] = images.dims;
  if (ds.count !== count || ds.height !== height || ds.width !== width || ds.channels !== 1) {
    return `dataset ${ds.count} x ${ds.channels}x${ds.height}x${ds.width}, expected ${count} x 1x${height}x${width}`;
  }
  return sameValues(ds.images, Array.from(images.data), 'images') ?? sameValues(ds.labels, Array.from(labels.data), 'labels');
}

function expectFrom<T>(oracle: Oracle<T>, check: (value: T, result: unknown) => string | null): Expectation {
  return oracle.ok ? { verdict: 'valid', check: (result) => check(oracle.value, result) } : { verdict: 'invalid', why: oracle.why };
}

function pairOracle(images: Uint8Array, labels: Uint8Array): Oracle<{ images: IdxReading; labels: IdxReading }> {
  const i = idxImagesOracle(images);
  if (!i.ok) return i;
  const l = idxLabelsOracle(labels);
  if (!l.ok) return l;
  if (i.value.dims[0] !== l.value.dims[0]) return { ok: false, why: `${i.value.dims[0]} images, ${l.value.dims[0]} labels` };
  return { ok: true, value: { images: i.value, labels: l.value } };
}

/** A valid images + labels pair of the same count, one of them mutated (or neither). */
function pairCase(rng: Rng): { images: Uint8Array; labels: Uint8Array; what: string } {
  const count = rng.int(6);
  const [h, w] = [1 + rng.int(5), 1 + rng.int(5)];
  let images = idxFile([count, h, w], randomBytes(rng, count * h * w));
  let labels = idxFile([chance(rng, 0.2) ? count + 1 : count], Uint8Array.from({ length: count }, () => rng.int(10)));
  const what = [`pair of ${count} images ${h}x${w}`];
  if (chance(rng, 0.7)) {
    const m = mutateSome(rng, chance(rng, 0.5) ? images : labels);
    if (chance(rng, 0.5)) images = m.bytes;
    else labels = m.bytes;
    what.push(...m.what);
  }
  return { images, labels, what: what.join('; ') };
}

export const idxParseTarget: Target = {
  name: 'idx',
  description: 'IDX parser, src/data/idx.ts: parseIdx, parseImages, parseLabels, pairDataset',
  prepare(rng: Rng): PreparedCase {
    const mode = pick(rng, ['any', 'images', 'labels', 'pair', 'images-of-labels'] as const);
    const source = 'fuzz.idx';
    if (mode === 'pair') {
      const p = pairCase(rng);
      const oracle = pairOracle(p.images, p.labels);
      // The pair's own name is in pairDataset's errors; each file's name in its parser's.
      return {
        mutation: `pairDataset: ${p.what}`,
        source: /fuzz\.(images|labels|pair)/,
        inputBytes: p.images.length + p.labels.length,
        run: () => pairDataset(parseImages(p.images, 'fuzz.images'), parseLabels(p.labels, 'fuzz.labels'), 'fuzz.pair'),
        expect: expectFrom(oracle, (v, r) => checkDatasetPair(r, v.images, v.labels)),
      };
    }
    const baseKind: Kind = mode === 'images-of-labels' ? 'labels' : mode;
    const base = validIdx(rng, baseKind);
    const m = mutateSome(rng, base.bytes);
    let bytes = m.bytes;
    if (chance(rng, 0.05)) bytes = gzip(bytes);
    const what = `${base.what}${m.what.length ? ': ' + m.what.join('; ') : ''}${bytes !== m.bytes ? '; gzipped' : ''}`;
    if (mode === 'any') {
      return { mutation: `parseIdx ${what}`, source, inputBytes: bytes.length, run: () => parseIdx(bytes, source), expect: expectFrom(idxOracle(bytes), (v, r) => checkArray(r, v)) };
    }
    if (mode === 'labels') {
      return { mutation: `parseLabels ${what}`, source, inputBytes: bytes.length, run: () => parseLabels(bytes, source), expect: expectFrom(idxLabelsOracle(bytes), (v, r) => checkLabels(r, v)) };
    }
    return { mutation: `parseImages ${what}`, source, inputBytes: bytes.length, run: () => parseImages(bytes, source), expect: expectFrom(idxImagesOracle(bytes), (v, r) => checkImages(r, v)) };
  },
};

// ---------------------------------------------------------------------------------------------
// Files

/** What readIdxBytes must return for a regular file's raw bytes under a limit (zlib is the reference decompressor). */
function rawOracle(raw: Uint8Array, maxBytes: number): Oracle<Uint8Array> {
  if (raw.length > maxBytes) return { ok: false, why: `${raw.length} bytes over the ${maxBytes}-byte limit` };
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return { ok: true, value: new Uint8Array(gunzipSync(raw, { maxOutputLength: maxBytes })) };
    } catch (e) {
      return { ok: false, why: `gunzip fails: ${(e as Error).message}` };
    }
  }
  return { ok: true, value: raw };
}

function chain<A, B>(a: Oracle<A>, f: (value: A) => Oracle<B>): Oracle<B> {
  return a.ok ? f(a.value) : a;
}

let scratch = '';
let fifo: string | null = null;

export const idxFileTarget: Target = {
  name: 'idx-file',
  description: 'IDX files, src/io/idx-file.ts: readIdxBytes (plain, gzipped, limits, odd paths) and loadIdxDataset',
  setup() {
    scratch = mkdtempSync(join(tmpdir(), 'capsnet-fuzz-idx-'));
    mkdirSync(join(scratch, 'a-folder'));
    try {
      execFileSync('mkfifo', [join(scratch, 'a-fifo')]);
      fifo = join(scratch, 'a-fifo');
    } catch {
      fifo = null; // no mkfifo on this platform: the FIFO case is replaced by a folder
    }
  },
  teardown() {
    rmSync(scratch, { recursive: true, force: true });
  },
  prepare(rng: Rng, index: number): PreparedCase {
    const path = join(scratch, `case-${index}`);
    const cleanup = () => rmSync(path, { force: true });
    const odd = rng.int(40);
    if (odd === 0 || odd === 1 || odd === 2) {
      const special = odd === 0 ? join(scratch, 'a-folder') : odd === 1 ? (fifo ?? join(scratch, 'a-folder')) : join(scratch, 'missing');
      return {
        mutation: `readIdxBytes of ${odd === 0 ? 'a folder' : odd === 1 ? 'a FIFO (would block a plain read)' : 'a missing file'}`,
        source: special,
        inputBytes: 0,
        run: () => readIdxBytes(special),
        expect: { verdict: 'invalid', why: 'not a regular file' },
      };
    }
    if (odd === 3) {
      // A gzip bomb against a small limit: decompresses to 4x the limit.
      const limit = 1 << 16;
      const bomb = gzip(new Uint8Array(4 * limit));
      writeFileSync(path, bomb);
      return { mutation: `gzip of ${4 * limit} zero bytes, limit ${limit}`, source: path, inputBytes: bomb.length, run: () => readIdxBytes(path, limit), expect: { verdict: 'invalid', why: 'decompresses past the limit' }, cleanup };
    }
    if (odd === 4) {
      const p = pairCase(rng);
      const [ip, lp] = [`${path}-images`, `${path}-labels.gz`];
      writeFileSync(ip, p.images);
      writeFileSync(lp, gzip(p.labels));
      const oracle = pairOracle(p.images, p.labels);
      return {
        mutation: `loadIdxDataset (labels gzipped): ${p.what}`,
        source: new RegExp(`${path}-(images|labels)`),
        inputBytes: p.images.length + p.labels.length,
        run: () => loadIdxDataset(ip, lp),
        expect: expectFrom(oracle, (v, r) => checkDatasetPair(r, v.images, v.labels)),
        cleanup: () => {
          rmSync(ip, { force: true });
          rmSync(lp, { force: true });
        },
      };
    }
    const kind = pick(rng, ['images', 'labels'] as const);
    const base = validIdx(rng, kind);
    let bytes = base.bytes;
    const what = [base.what];
    // Mutate the plain bytes, or gzip first and mutate the compressed stream, or both.
    const order = rng.int(4);
    if (order === 0 || order === 2) {
      const m = mutateSome(rng, bytes);
      bytes = m.bytes;
      what.push(...m.what);
    }
    if (order >= 1) {
      bytes = gzip(bytes);
      what.push('gzipped');
      if (chance(rng, 0.2)) {
        bytes = concat(bytes, gzip(randomBytes(rng, rng.int(8))));
        what.push('a second gzip member');
      }
    }
    if (order === 2 || order === 3) {
      if (chance(rng, 0.7)) {
        const m = mutateBytes(rng, bytes);
        bytes = m.value;
        what.push(`then ${m.what}`);
      }
    }
    const limit = pick(rng, [undefined, 1 << 16, bytes.length, Math.max(0, bytes.length - 1)]);
    if (limit !== undefined) what.push(`limit ${limit} bytes`);
    const asLink = chance(rng, 0.05);
    writeFileSync(asLink ? `${path}.target` : path, bytes);
    if (asLink) {
      symlinkSync(`${path}.target`, path);
      what.push('through a symlink');
    }
    const maxBytes = limit ?? 1 << 30;
    const raw = rawOracle(bytes, maxBytes);
    const parse = kind === 'images' ? idxImagesOracle : idxLabelsOracle;
    return {
      mutation: `read + parse${kind === 'images' ? 'Images' : 'Labels'}: ${what.join('; ')}`,
      source: path,
      inputBytes: bytes.length,
      run: () => {
        const read = readIdxBytes(path, limit);
        return kind === 'images' ? parseImages(read, path) : parseLabels(read, path);
      },
      expect: expectFrom(chain(raw, (b) => parse(b)), (v, r) => (kind === 'images' ? checkImages(r, v) : checkLabels(r, v))),
      cleanup: () => {
        rmSync(path, { force: true });
        rmSync(`${path}.target`, { force: true });
      },
    };
  },
};
