// Builders of valid files and independent oracles for the formats the fuzzer attacks. The oracles
// are written from the format descriptions, not from the readers (they share no code with src/):
// they say whether bytes are a valid file and what a correct reader returns for them.
//
// IDX: magic 00 00 08 <ndims>, ndims big-endian u32 sizes, then exactly prod(sizes) bytes (the
//   readers accept only unsigned bytes, at most 2^31 elements, and no trailing bytes).
// safetensors: u64 LE header length N <= 100,000,000, N bytes of UTF-8 JSON object; entries
//   {dtype in F32/F16/I32/U8, shape: safe non-negative integers, data_offsets [begin, end]} whose
//   byte ranges tile the data exactly (no gap, no overlap, nothing after); __metadata__: strings.
// CIFAR-10: 3073-byte records, label byte 0..9 then the R, G, B planes of 32x32.

import { gzipSync } from 'node:zlib';

export type Oracle<T> = { ok: true; value: T } | { ok: false; why: string };

const fail = (why: string): { ok: false; why: string } => ({ ok: false, why });

// ---------------------------------------------------------------------------------------------
// IDX

export function idxFile(dims: number[], data: Uint8Array, type = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = type;
  out[3] = dims.length;
  dims.forEach((d, k) => view.setUint32(4 + 4 * k, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

export interface IdxReading {
  dims: number[];
  data: Uint8Array;
}

export function idxOracle(bytes: Uint8Array): Oracle<IdxReading> {
  if (bytes.length < 4) return fail('shorter than the magic number');
  if (bytes[0] !== 0 || bytes[1] !== 0) return fail('magic does not start with two zero bytes');
  if (bytes[2] !== 0x08) return fail(`type code ${bytes[2]} is not unsigned byte`);
  const ndims = bytes[3];
  if (ndims === 0) return fail('zero dimensions');
  const headerEnd = 4 + 4 * ndims;
  if (bytes.length < headerEnd) return fail('truncated header');
  const dims: number[] = [];
  let product = 1n;
  for (let k = 0; k < ndims; k++) {
    const at = 4 + 4 * k;
    const d = ((bytes[at] << 24) >>> 0) + (bytes[at + 1] << 16) + (bytes[at + 2] << 8) + bytes[at + 3];
    dims.push(d);
    product *= BigInt(d);
  }
  if (product > 2n ** 31n) return fail(`declares ${product} elements, over 2^31`);
  const present = BigInt(bytes.length - headerEnd);
  if (present !== product) return fail(`declares ${product} data bytes, has ${present}`);
  return { ok: true, value: { dims, data: bytes.slice(headerEnd) } };
}

export function idxImagesOracle(bytes: Uint8Array): Oracle<IdxReading> {
  const r = idxOracle(bytes);
  if (!r.ok) return r;
  if (r.value.dims.length !== 3) return fail(`${r.value.dims.length} dimensions, images need 3`);
  if (r.value.dims[1] === 0 || r.value.dims[2] === 0) return fail('an image side is 0');
  return r;
}

export function idxLabelsOracle(bytes: Uint8Array, classes = 10): Oracle<IdxReading> {
  const r = idxOracle(bytes);
  if (!r.ok) return r;
  if (r.value.dims.length !== 1) return fail(`${r.value.dims.length} dimensions, labels need 1`);
  const bad = r.value.data.findIndex((v) => v >= classes);
  if (bad >= 0) return fail(`label ${bad} is ${r.value.data[bad]} >= ${classes}`);
  return r;
}

export const gzip = (bytes: Uint8Array) => new Uint8Array(gzipSync(bytes));

// ---------------------------------------------------------------------------------------------
// safetensors

export type StDtype = 'F32' | 'F16' | 'I32' | 'U8';
export const ST_DTYPE_BYTES: Record<StDtype, number> = { F32: 4, F16: 2, I32: 4, U8: 1 };

/** A safetensors file from a header given as text (anything: the mutations edit it) and data bytes. */
export function safetensorsFromText(headerText: string | Uint8Array, data: Uint8Array, declaredLength?: bigint): Uint8Array {
  const header = typeof headerText === 'string' ? new TextEncoder().encode(headerText) : headerText;
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

export interface StTensor {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/**
 * A valid file: tensors laid out in the given order, header as a plain object (so the mutations
 * can edit it before it is written). Returns the header object and the data bytes.
 */
export function safetensorsParts(tensors: Array<[string, StTensor]>, metadata?: Record<string, string>): { header: Record<string, unknown>; data: Uint8Array } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = { ...metadata };
  let at = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of tensors) {
    Object.defineProperty(header, name, {
      value: { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.data.length] }, enumerable: true, writable: true, configurable: true,
    });
    chunks.push(t.data);
    at += t.data.length;
  }
  const data = new Uint8Array(at);
  let k = 0;
  for (const c of chunks) {
    data.set(c, k);
    k += c.length;
  }
  return { header, data };
}

export interface StReading {
  tensors: Map<string, { dtype: StDtype; shape: number[]; bytes: Uint8Array }>;
  metadata: Map<string, string>;
}

export const MAX_ST_HEADER = 100_000_000;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isSize = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function safetensorsOracle(file: Uint8Array): Oracle<StReading> {
  if (file.length < 8) return fail('no 8-byte header length');
  let n = 0n;
  for (let k = 7; k >= 0; k--) n = (n << 8n) | BigInt(file[k]);
  if (n > BigInt(MAX_ST_HEADER)) return fail(`header length ${n} over the limit`);
  if (8n + n > BigInt(file.length)) return fail('header runs past the end');
  const headerEnd = 8 + Number(n);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, headerEnd));
  } catch {
    return fail('header is not UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    return fail('header is not JSON');
  }
  if (!isPlainObject(header)) return fail('header is not an object');
  const dataLength = file.length - headerEnd;
  const metadata = new Map<string, string>();
  const spans: Array<{ name: string; dtype: StDtype; shape: number[]; begin: number; end: number }> = [];
  for (const key of Object.keys(header)) {
    const value = header[key];
    if (key === '__metadata__') {
      if (!isPlainObject(value)) return fail('__metadata__ is not an object');
      for (const mk of Object.keys(value)) {
        if (typeof value[mk] !== 'string') return fail(`__metadata__.${mk} is not a string`);
        metadata.set(mk, value[mk] as string);
      }
      continue;
    }
    if (!isPlainObject(value)) return fail(`entry ${key} is not an object`);
    const dtype = value.dtype;
    if (typeof dtype !== 'string' || !['F32', 'F16', 'I32', 'U8'].includes(dtype)) return fail(`entry ${key} has an unknown dtype`);
    const shape = value.shape;
    if (!Array.isArray(shape) || !shape.every(isSize)) return fail(`entry ${key} has a bad shape`);
    const offsets = value.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize)) return fail(`entry ${key} has bad data_offsets`);
    const [begin, end] = offsets as number[];
    if (begin > end) return fail(`entry ${key} begins after it ends`);
    if (end > dataLength) return fail(`entry ${key} ends past the data`);
    const bytes = (shape as number[]).reduce((p, d) => p * BigInt(d), BigInt(ST_DTYPE_BYTES[dtype as StDtype]));
    if (bytes !== BigInt(end - begin)) return fail(`entry ${key}: shape needs ${bytes} bytes, span is ${end - begin}`);
    spans.push({ name: key, dtype: dtype as StDtype, shape: shape as number[], begin, end });
  }
  const ordered = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const s of ordered) {
    if (s.begin !== covered) return fail(s.begin < covered ? `entry ${s.name} overlaps` : `gap before entry ${s.name}`);
    covered = s.end;
  }
  if (covered !== dataLength) return fail('data bytes after the last tensor');
  const tensors = new Map<string, { dtype: StDtype; shape: number[]; bytes: Uint8Array }>();
  for (const s of spans) tensors.set(s.name, { dtype: s.dtype, shape: s.shape, bytes: file.slice(headerEnd + s.begin, headerEnd + s.end) });
  return { ok: true, value: { tensors, metadata } };
}

/** IEEE half to double, from the definition (sign, 5-bit exponent, 10-bit fraction). */
export function halfToNumber(h: number): number {
  const sign = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const f = h & 1023;
  if (e === 0) return sign * f * Math.pow(2, -24);
  if (e === 31) return f === 0 ? sign * Infinity : NaN;
  return sign * (1024 + f) * Math.pow(2, e - 25);
}

/** The values a reader must produce for stored bytes of `dtype` (as numbers; F32 via a DataView, little-endian). */
export function valuesOf(dtype: StDtype, bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / ST_DTYPE_BYTES[dtype];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (dtype === 'F32') out.push(view.getFloat32(4 * i, true));
    else if (dtype === 'F16') out.push(halfToNumber(view.getUint16(2 * i, true)));
    else if (dtype === 'I32') out.push(view.getInt32(4 * i, true));
    else out.push(bytes[i]);
  }
  return out;
}

/** Null when `actual` holds exactly `expected` (NaN equals NaN, -0 differs from 0), else the first difference. */
export function sameValues(actual: ArrayLike<number>, expected: number[], what: string): string | null {
  if (actual.length !== expected.length) return `${what}: ${actual.length} values, expected ${expected.length}`;
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) return `${what}[${i}] = ${actual[i]}, expected ${expected[i]}`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10 binary

export const CIFAR_RECORD = 3073;

/** A batch file of `labels.length` records with the given pixels (3072 bytes per record, R, G, B planes). */
export function cifarFile(labels: number[], pixels: Uint8Array): Uint8Array {
  const out = new Uint8Array(labels.length * CIFAR_RECORD);
  labels.forEach((label, n) => {
    out[n * CIFAR_RECORD] = label;
    out.set(pixels.subarray(n * 3072, (n + 1) * 3072), n * CIFAR_RECORD + 1);
  });
  return out;
}

export interface CifarReading {
  labels: number[];
  /** pixel(n, y, x, c) */
  pixel(n: number, y: number, x: number, c: number): number;
  count: number;
}

export function cifarOracle(file: Uint8Array): Oracle<CifarReading> {
  if (file.length === 0) return fail('empty');
  if (file.length % CIFAR_RECORD !== 0) return fail(`${file.length} bytes is not a multiple of ${CIFAR_RECORD}`);
  const count = file.length / CIFAR_RECORD;
  const labels: number[] = [];
  for (let n = 0; n < count; n++) {
    if (file[n * CIFAR_RECORD] > 9) return fail(`record ${n} has label ${file[n * CIFAR_RECORD]}`);
    labels.push(file[n * CIFAR_RECORD]);
  }
  return { ok: true, value: { labels, count, pixel: (n, y, x, c) => file[n * CIFAR_RECORD + 1 + c * 1024 + y * 32 + x] } };
}
