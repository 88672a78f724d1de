// safetensors encode / decode (https://github.com/huggingface/safetensors), pure: Uint8Array in and out.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
//   { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ..., "__metadata__": { str: str } }
// then the raw little-endian data; offsets are relative to the start of the data.
//
// Decoding checks the whole header before allocating any tensor, so a corrupt or hostile file
// gives an error naming the file, the tensor and the field instead of a huge allocation or garbage.

export type Dtype = 'F32' | 'F16' | 'I32' | 'U8';

export type TensorData = Float32Array | Int32Array | Uint8Array;

export interface TensorToEncode {
  shape: number[];
  data: TensorData;
  /** Stored dtype; default from the array type (F32, I32, U8). 'F16' converts a Float32Array (rounded to nearest even). */
  dtype?: Dtype;
}

export interface DecodedTensor {
  /** The dtype stored in the file. */
  dtype: Dtype;
  shape: number[];
  /** F32 and F16 decode to Float32Array, I32 to Int32Array, U8 to Uint8Array. */
  data: TensorData;
}

export interface Safetensors {
  tensors: Map<string, DecodedTensor>;
  metadata: Record<string, string>;
}

const DTYPE_BYTES: Record<Dtype, number> = { F32: 4, F16: 2, I32: 4, U8: 1 };

/** Header length limit: real headers are kilobytes; this bounds what a corrupt length can make us parse. */
export const MAX_HEADER_BYTES = 100_000_000;

// Typed-array views are read and written as raw bytes: that is little-endian on every platform
// WebGPU runs on. Refuse to run on a big-endian host rather than write wrong files.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('safetensors: this host is big-endian; only little-endian hosts are supported');
}

// ---------------------------------------------------------------------------------------------
// f16 conversion

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The f16 bit pattern nearest to `value` (ties to even; overflow to infinity; NaN stays NaN). */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf, or a quiet NaN
  const e = exp - 127 + 15; // the f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large even before rounding
  if (e <= 0) {
    // f16 subnormal: value = m * 2^-24, with m = (1.mant * 2^23) >> (14 - e)
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const full = mant | 0x800000;
    const shift = 14 - e;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1))) m++; // may carry into the smallest normal: still correct
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent (even to 0x7c00 = inf) is correct
  return sign | h;
}

let f16Table: Float32Array | undefined;

/** All 65,536 f16 values as f32, built on first use (256 KB): decoding is then a lookup. */
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >>> 10) & 0x1f;
      const mant = h & 0x3ff;
      f16Table[h] = exp === 0 ? sign * mant * 2 ** -24
        : exp === 0x1f ? (mant ? NaN : sign * Infinity)
        : sign * (1 + mant / 1024) * 2 ** (exp - 15);
    }
  }
  return f16Table;
}

/** The value of an f16 bit pattern. */
export function f16BitsToF32(bits: number): number {
  return f16ToF32Table()[bits & 0xffff];
}

// ---------------------------------------------------------------------------------------------
// encode

function defaultDtype(data: TensorData): Dtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Int32Array) return 'I32';
  return 'U8';
}

const ARRAY_FOR: Record<Dtype, Function> = { F32: Float32Array, F16: Float32Array, I32: Int32Array, U8: Uint8Array };

/** Plain `name in DTYPE_BYTES` would accept "toString" and friends. */
const isDtype = (v: unknown): v is Dtype => typeof v === 'string' && Object.hasOwn(DTYPE_BYTES, v);

/** Sets an own property even for the name "__proto__" (which plain assignment turns into a prototype change). */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Encode tensors and string metadata as safetensors bytes. Header keys are sorted by name. The data
 * is laid out by element size (largest first), then by name, as the Python library does, so every
 * tensor starts aligned to its element size; the header is padded with spaces to a multiple of 8.
 */
export function encodeSafetensors(tensors: Record<string, TensorToEncode>, metadata: Record<string, string> = {}): Uint8Array {
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new Error(`encodeSafetensors: __metadata__.${key} is a ${typeof value}, expected a string`);
  }
  const names = Object.keys(tensors).sort();
  const plan = names.map((name) => {
    if (name === '__metadata__') throw new Error('encodeSafetensors: "__metadata__" is reserved and cannot name a tensor');
    const t = tensors[name];
    const dtype = t.dtype ?? defaultDtype(t.data);
    if (!isDtype(dtype)) throw new Error(`encodeSafetensors: tensor ${name}: dtype ${dtype}, expected one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
    if (!(t.data instanceof ARRAY_FOR[dtype])) {
      throw new Error(`encodeSafetensors: tensor ${name}: dtype ${dtype} needs a ${ARRAY_FOR[dtype].name}, got a ${t.data.constructor.name}`);
    }
    let count = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new Error(`encodeSafetensors: tensor ${name}: shape [${t.shape.join(', ')}] has ${d}, expected non-negative integers`);
      count *= d;
    }
    if (count !== t.data.length) {
      throw new Error(`encodeSafetensors: tensor ${name}: shape [${t.shape.join(', ')}] has ${count} elements, the data has ${t.data.length}`);
    }
    return { name, dtype, shape: t.shape, data: t.data, bytes: count * DTYPE_BYTES[dtype] };
  });

  const layout = [...plan].sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : 1));
  const offsets = new Map<string, [number, number]>();
  let dataBytes = 0;
  for (const t of layout) {
    offsets.set(t.name, [dataBytes, dataBytes + t.bytes]);
    dataBytes += t.bytes;
  }

  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  for (const t of plan) setOwn(header, t.name, { dtype: t.dtype, shape: t.shape, data_offsets: offsets.get(t.name) });
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20); // spaces: still valid JSON
    p.set(json);
    json = p;
  }

  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const dataStart = 8 + json.length;
  for (const t of layout) {
    const at = dataStart + offsets.get(t.name)![0];
    if (t.dtype === 'F16') {
      const half = new Uint16Array(t.data.length);
      for (let i = 0; i < half.length; i++) half[i] = f32ToF16Bits(t.data[i]);
      out.set(new Uint8Array(half.buffer), at);
    } else {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// decode

// Error messages quote what the file holds, but never more than a line of it: a hostile header can
// hold megabyte names and values, and arrays nested deeper than JSON.stringify can recurse.
/** A value quoted in an error, cut to `max` characters (hostile files carry megabyte names). */
export const clip = (text: string, max = 80) => (text.length > max ? `${text.slice(0, max)}... (${text.length} characters)` : text);

/** A JSON value's kind (null, an array, an object) or the value itself when it is a primitive (clipped). */
const describe = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : clip(JSON.stringify(v) ?? String(v));

/** A shape or offsets value as found: its JSON when flat and short, else its size; never recursing. */
function quoteValue(v: unknown): string {
  if (Array.isArray(v)) {
    if (v.length <= 8 && v.every((x) => x === null || typeof x !== 'object')) return clip(JSON.stringify(v));
    return `an array of ${v.length} items${v.some((x) => x !== null && typeof x === 'object') ? ' (nested)' : ''}`;
  }
  return describe(v);
}

/** A tensor or metadata key as quoted in errors. */
const quoteName = (name: string) => clip(name);

/** A shape already checked to be integers, at most 8 dimensions shown. */
const shapeText = (shape: number[]) => `[${shape.slice(0, 8).join(', ')}${shape.length > 8 ? `, ... (${shape.length} dimensions)` : ''}]`;

interface Entry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** Decode safetensors bytes; `source` (a file name) is put in every error message. */
export function decodeSafetensors(bytes: Uint8Array, source: string): Safetensors {
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (bytes.length < 8) fail(`${bytes.length} bytes is too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit: corrupt file or not safetensors`);
  const n = Number(headerLength);
  if (8 + n > bytes.length) fail(`header length ${n} runs past the end of the file (${bytes.length} bytes)`);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail(`header is ${describe(header)}, expected a JSON object`);
  const dataLength = bytes.length - 8 - n;

  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`__metadata__ is ${describe(value)}, expected an object of strings`);
      for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${quoteName(key)} is ${describe(v)}, expected a string`);
        setOwn(metadata, key, v);
      }
      continue;
    }
    const at = `tensor ${quoteName(name)}`;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`${at} is ${describe(value)}, expected an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (!isDtype(dtype)) fail(`${at}: dtype ${describe(dtype)}, expected one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${at}: shape ${quoteValue(shape)}, expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`${at}: data_offsets ${quoteValue(offsets)}, expected [begin, end], non-negative integers`);
    }
    const [begin, end] = offsets as number[];
    if (begin > end) fail(`${at}: data_offsets [${begin}, ${end}] has begin > end`);
    if (end > dataLength) fail(`${at}: data_offsets [${begin}, ${end}] run past the end of the data (${dataLength} bytes)`);
    // The product stops once past 2^53 (far beyond any span), so a huge shape is never miscompared.
    let bytesNeeded = (shape as number[]).includes(0) ? 0 : DTYPE_BYTES[dtype as Dtype];
    for (const d of shape as number[]) {
      bytesNeeded *= d;
      if (bytesNeeded > Number.MAX_SAFE_INTEGER) break;
    }
    if (bytesNeeded !== end - begin) {
      const needs = bytesNeeded > Number.MAX_SAFE_INTEGER ? 'more than 2^53' : String(bytesNeeded);
      fail(`${at}: shape ${shapeText(shape as number[])} of ${dtype} needs ${needs} bytes, data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    entries.push({ name, dtype: dtype as Dtype, shape: shape as number[], begin, end });
  }

  // Every data byte belongs to exactly one tensor: sorted by offset, each starts where the last ended.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let previous = '';
  for (const e of sorted) {
    if (e.begin < pos) fail(`tensor ${quoteName(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap tensor ${quoteName(previous)} (ends at ${pos})`);
    if (e.begin > pos) fail(`data bytes [${pos}, ${e.begin}) belong to no tensor (gap before tensor ${quoteName(e.name)})`);
    pos = e.end;
    previous = e.name;
  }
  if (pos !== dataLength) fail(`data bytes [${pos}, ${dataLength}) belong to no tensor (trailing bytes)`);

  // Everything checked: now allocate. Copies, so the tensors are aligned and do not pin `bytes`.
  const tensors = new Map<string, DecodedTensor>();
  const dataStart = bytes.byteOffset + 8 + n;
  for (const e of entries) {
    const raw = new Uint8Array(bytes.buffer, dataStart + e.begin, e.end - e.begin).slice();
    let data: TensorData;
    if (e.dtype === 'F32') data = new Float32Array(raw.buffer);
    else if (e.dtype === 'I32') data = new Int32Array(raw.buffer);
    else if (e.dtype === 'U8') data = raw;
    else {
      const half = new Uint16Array(raw.buffer);
      const table = f16ToF32Table();
      data = new Float32Array(half.length);
      for (let i = 0; i < half.length; i++) data[i] = table[half[i]];
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}
