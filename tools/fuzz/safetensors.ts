// Fuzz target for the safetensors decoder (src/io/safetensors.ts), and the header mutations that
// the checkpoint target reuses: wrong dtypes, hostile shapes and offsets, overlapping and gapped
// tensor ranges, deep or enormous JSON, absurd header lengths, bytes that are not UTF-8.

import type { Rng } from '../../src/data/rng.ts';
import { decodeSafetensors, type Safetensors } from '../../src/io/safetensors.ts';
import type { PreparedCase, Target } from './harness.ts';
import { INTERESTING_NUMBERS, INTERESTING_U64, big, chance, deepJsonText, hostileJsonValue, mutateBytes, pick, randomBytes, type Mutated } from './mutate.ts';
import {
  MAX_ST_HEADER, ST_DTYPE_BYTES, safetensorsFromText, safetensorsOracle, safetensorsParts, sameValues, valuesOf,
  type StDtype, type StReading, type StTensor,
} from './formats.ts';

const DTYPES: StDtype[] = ['F32', 'F16', 'I32', 'U8'];
const NAMES = ['w', 'conv1.weight', 'b', '__proto__', 'constructor', 'toString', '', 'é', 'a.b.c', 'x'.repeat(300)];

/** A valid file's parts: 0-5 small tensors of random dtypes, with or without metadata. */
export function validTensors(rng: Rng): Array<[string, StTensor]> {
  const names = new Set<string>();
  const out: Array<[string, StTensor]> = [];
  const count = rng.int(6);
  for (let k = 0; k < count; k++) {
    let name = pick(rng, NAMES);
    if (names.has(name)) name = `t${k}`;
    names.add(name);
    const dtype = pick(rng, DTYPES);
    const shape = Array.from({ length: rng.int(4) }, () => rng.int(5));
    const n = shape.reduce((a, b) => a * b, 1);
    out.push([name, { dtype, shape, data: randomBytes(rng, n * ST_DTYPE_BYTES[dtype]) }]);
  }
  return out;
}

type Header = Record<string, unknown>;

/** An own property even for the key "__proto__" (plain assignment would change the prototype). */
const setKey = (obj: Header, key: string, value: unknown) =>
  Object.defineProperty(obj, key, { value, enumerable: true, configurable: true, writable: true });

const entries = (h: Header) => Object.keys(h).filter((k) => k !== '__metadata__');
const entryOf = (h: Header, name: string) => h[name] as Record<string, unknown>;

/** One mutation of a header object (in place), aware of the safetensors fields. */
export function mutateHeader(rng: Rng, header: Header, dataLength: number): string {
  const names = entries(header);
  const name = names.length > 0 ? pick(rng, names) : null;
  const e = name !== null && typeof header[name] === 'object' && header[name] !== null ? entryOf(header, name) : null;
  const hostile = () => hostileJsonValue(rng);
  switch (rng.int(20)) {
    case 0: {
      if (!e) break;
      const v = pick(rng, ['F64', 'BF16', 'F8_E4M3', 'I64', 'I8', 'U16', 'BOOL', 'f32', '', 'toString', '__proto__', 'hasOwnProperty', 5, null, [], {}]);
      e.dtype = v;
      return `${name}.dtype := ${JSON.stringify(v)}`;
    }
    case 1: {
      if (!e) break;
      const other = pick(rng, DTYPES.filter((d) => d !== e.dtype));
      e.dtype = other;
      return `${name}.dtype := ${other} (another valid dtype, other element size)`;
    }
    case 2: {
      if (!e || !Array.isArray(e.shape)) break;
      const v = pick(rng, [...INTERESTING_NUMBERS, '2', null, [2]]);
      const shape = [...(e.shape as unknown[])];
      const k = shape.length > 0 ? rng.int(shape.length) : 0;
      shape[k] = v;
      e.shape = shape;
      return `${name}.shape[${k}] := ${JSON.stringify(v)}`;
    }
    case 3: {
      if (!e) break;
      const m = hostile();
      e.shape = m.value;
      return `${name}.shape := ${m.what}`;
    }
    case 4: {
      if (!e || !Array.isArray(e.data_offsets)) break;
      const v = pick(rng, [...INTERESTING_NUMBERS, 1e400, -1e400, '0', null]);
      const k = rng.int(2);
      const offsets = [...(e.data_offsets as unknown[])];
      offsets[k] = v;
      e.data_offsets = offsets;
      return `${name}.data_offsets[${k}] := ${JSON.stringify(v)}`;
    }
    case 5: {
      if (!e) break;
      const m = pick(rng, [[], [0], [0, 0, 0], 'x', null, {}, [[0], [4]]]);
      e.data_offsets = m;
      return `${name}.data_offsets := ${JSON.stringify(m)}`;
    }
    case 6: {
      if (!e || !Array.isArray(e.data_offsets)) break;
      e.data_offsets = [...(e.data_offsets as number[])].reverse();
      return `${name}.data_offsets reversed`;
    }
    case 7: {
      // Overlap: another tensor takes (part of) this one's bytes.
      if (names.length < 2 || !e) break;
      const other = pick(rng, names.filter((n) => n !== name));
      const o = header[other];
      if (typeof o !== 'object' || o === null) break;
      (o as Record<string, unknown>).data_offsets = e.data_offsets;
      (o as Record<string, unknown>).shape = e.shape;
      (o as Record<string, unknown>).dtype = e.dtype;
      return `${other} points at the same bytes as ${name}`;
    }
    case 8: {
      if (!e || !Array.isArray(e.data_offsets)) break;
      const d = pick(rng, [-4, -1, 1, 2, 4, 8, dataLength]);
      e.data_offsets = (e.data_offsets as number[]).map((x) => (typeof x === 'number' ? x + d : x));
      return `${name}.data_offsets shifted by ${d}`;
    }
    case 9: {
      if (name === null) break;
      delete header[name];
      return `${JSON.stringify(name)} deleted (its bytes belong to no tensor)`;
    }
    case 10: {
      if (!e) break;
      const copy = `copy of ${name}`;
      setKey(header, copy, { ...e });
      return `duplicate entry ${JSON.stringify(copy)} for the same bytes`;
    }
    case 11: {
      const at = pick(rng, [0, dataLength, Math.floor(dataLength / 2)]);
      header[`empty@${at}`] = { dtype: pick(rng, DTYPES), shape: [0, 3], data_offsets: [at, at] };
      return `zero-size tensor at offset ${at}`;
    }
    case 12: {
      const m = hostile();
      header.__metadata__ = m.value;
      return `__metadata__ := ${m.what}`;
    }
    case 13: {
      const meta = typeof header.__metadata__ === 'object' && header.__metadata__ !== null ? (header.__metadata__ as Header) : (header.__metadata__ = {});
      const key = pick(rng, ['step', '__proto__', 'constructor', '', 'k']);
      const m = chance(rng, 0.5) ? hostile() : { value: 'x'.repeat(pick(rng, [0, 100, big(1_000_000)])), what: 'a long string' };
      Object.defineProperty(meta, key, { value: m.value, enumerable: true, configurable: true, writable: true });
      return `__metadata__.${key} := ${m.what}`;
    }
    case 14: {
      if (name === null) break;
      const m = hostile();
      setKey(header, name, m.value);
      return `entry ${JSON.stringify(name)} := ${m.what}`;
    }
    case 15: {
      if (!e) break;
      const m = hostile();
      e[pick(rng, ['extra', '__proto__', 'dtype_'])] = m.value;
      return `${name} gains an extra field := ${m.what}`;
    }
    case 16: {
      // Many tiny valid tensors after the data (and the data grows to match: done by the caller).
      const n = pick(rng, [1000, big(20_000)]);
      for (let k = 0; k < n; k++) header[`many.${k}`] = { dtype: 'U8', shape: [], data_offsets: [dataLength + k, dataLength + k + 1] };
      return `+${n} one-byte tensors (data extended)`;
    }
    case 17: {
      if (!e || !Array.isArray(e.shape)) break;
      // A shape whose byte count only matches modulo 2^32 or 2^53.
      const shape = [2 ** 16, 2 ** 16, ...(e.shape as number[])];
      e.shape = shape;
      return `${name}.shape := [65536, 65536, ...] (2^32 times larger)`;
    }
    case 18: {
      if (!e || !Array.isArray(e.shape)) break;
      e.shape = [...(e.shape as number[]), 1, 1, 1];
      return `${name}.shape gains trailing 1s (same size, valid)`;
    }
    default: {
      if (!e) break;
      const big = pick(rng, [2 ** 31, 2 ** 32, 2 ** 53 - 1]);
      e.data_offsets = [0, big];
      e.shape = [big / ST_DTYPE_BYTES[(e.dtype as StDtype)] || big];
      return `${name} declares ${big} bytes`;
    }
  }
  return 'no header change';
}

/** Header text mutations: what a text editor, a bad encoder or an attacker could put there. */
function mutateHeaderText(rng: Rng, text: string): Mutated<string | Uint8Array> {
  const enc = new TextEncoder();
  switch (rng.int(10)) {
    case 0: {
      const depth = pick(rng, [100, 10_000, big(1_000_000)]);
      return { value: deepJsonText(depth, chance(rng, 0.5)), what: `header := JSON nested ${depth} deep` };
    }
    case 1: {
      const depth = pick(rng, [1000, big(100_000)]);
      return { value: `{"x":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"deep":${deepJsonText(depth, false)}}}`, what: `an entry with a field nested ${depth} deep` };
    }
    case 9: {
      const depth = pick(rng, [10_000, big(100_000), big(1_000_000)]);
      const deep = deepJsonText(depth, chance(rng, 0.3));
      const where = rng.int(3);
      const value = where === 0
        ? `{"x":{"dtype":"U8","shape":${deep},"data_offsets":[0,0]}}`
        : where === 1 ? `{"x":{"dtype":"U8","shape":[0],"data_offsets":${deep}}}` : `{"__metadata__":{"k":${deep}}}`;
      return { value, what: `${['a shape', 'data_offsets', 'a metadata value'][where]} nested ${depth} deep` };
    }
    case 2: {
      const pad = pick(rng, [1 << 10, big(1 << 20), big(5 << 20)]);
      return { value: text + ' '.repeat(pad), what: `header padded with ${pad} spaces (valid)` };
    }
    case 3:
      return { value: '\ufeff' + text, what: 'byte order mark before the JSON' };
    case 4:
      return { value: text + '\u0000\u0000', what: 'two NUL bytes after the JSON' };
    case 5: {
      const b = enc.encode(text);
      const out = new Uint8Array(b.length + 2);
      out.set(b);
      out.set([0xc3, 0x28], b.length - 1); // an invalid UTF-8 sequence in place of the closing brace...
      out[b.length + 1] = 0x7d; // ...then the brace
      return { value: out, what: 'invalid UTF-8 in the header' };
    }
    case 6:
      return { value: text.replace('{', '{"dup":1,"dup":2,'), what: 'duplicate keys' };
    case 7:
      return { value: pick(rng, ['[]', 'null', '"text"', '0', 'true', '', ' ', '{', '}', '{}']), what: 'header is not an object (or empty)' };
    default: {
      const n = pick(rng, [10_000, big(200_000)]);
      const many = Array.from({ length: n }, (_, k) => `"k${k}":${k}`).join(',');
      return { value: `{"__metadata__":{},${many}}`, what: `${n} entries that are numbers` };
    }
  }
}

export interface BuiltFile {
  bytes: Uint8Array;
  what: string[];
}

/** Serialises a (possibly mutated) header and data, with an optional header-length mutation and byte mutation. */
export function hostileSafetensors(rng: Rng, header: Header, data: Uint8Array, what: string[]): BuiltFile {
  let text: string | Uint8Array = JSON.stringify(header);
  if (chance(rng, 0.25)) {
    const m = mutateHeaderText(rng, text);
    text = m.value;
    what.push(m.what);
  }
  const headerBytes = typeof text === 'string' ? new TextEncoder().encode(text).length : text.length;
  let declared: bigint | undefined;
  if (chance(rng, 0.15)) {
    const v = pick(rng, [
      ...INTERESTING_U64, BigInt(MAX_ST_HEADER), BigInt(MAX_ST_HEADER + 1), BigInt(headerBytes + 1), BigInt(Math.max(0, headerBytes - 1)),
      BigInt(headerBytes + data.length), BigInt(headerBytes + data.length + 1),
    ]);
    declared = v;
    what.push(`header length := ${v} (actual ${headerBytes})`);
  }
  let bytes = safetensorsFromText(text, data, declared);
  if (chance(rng, 0.2)) {
    const m = mutateBytes(rng, bytes);
    bytes = m.value;
    what.push(`bytes: ${m.what}`);
  }
  return { bytes, what };
}

/** Extends `data` with zero bytes when a mutation declared more one-byte tensors past its end. */
function extendForMany(header: Header, data: Uint8Array): Uint8Array {
  let need = data.length;
  for (const k of Object.keys(header)) {
    if (!k.startsWith('many.')) continue;
    const offsets = (header[k] as { data_offsets?: unknown } | null)?.data_offsets;
    if (Array.isArray(offsets) && typeof offsets[1] === 'number' && offsets[1] < 1e7) need = Math.max(need, offsets[1]);
  }
  if (need === data.length) return data;
  const out = new Uint8Array(need);
  out.set(data);
  return out;
}

export function checkDecoded(result: unknown, expected: StReading): string | null {
  const r = result as Safetensors;
  const names = [...r.tensors.keys()].sort();
  const want = [...expected.tensors.keys()].sort();
  if (JSON.stringify(names) !== JSON.stringify(want)) return `tensors ${short(names)}, expected ${short(want)}`;
  for (const [name, t] of expected.tensors) {
    const got = r.tensors.get(name)!;
    if (got.dtype !== t.dtype) return `${name}: dtype ${got.dtype}, expected ${t.dtype}`;
    if (JSON.stringify(got.shape) !== JSON.stringify(t.shape)) return `${name}: shape ${JSON.stringify(got.shape)}, expected ${JSON.stringify(t.shape)}`;
    const wrong = sameValues(got.data, valuesOf(t.dtype, t.bytes), name);
    if (wrong) return wrong;
  }
  const metaKeys = Object.keys(r.metadata).sort();
  const wantKeys = [...expected.metadata.keys()].sort();
  if (JSON.stringify(metaKeys) !== JSON.stringify(wantKeys)) return `metadata keys ${short(metaKeys)}, expected ${short(wantKeys)}`;
  for (const [k, v] of expected.metadata) if (r.metadata[k] !== v) return `metadata ${k} differs`;
  return null;
}

const short = (names: string[]) => {
  const s = JSON.stringify(names);
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
};

export const safetensorsTarget: Target = {
  name: 'safetensors',
  description: 'safetensors decoder, src/io/safetensors.ts: decodeSafetensors',
  prepare(rng: Rng): PreparedCase {
    const tensors = validTensors(rng);
    const withMeta = chance(rng, 0.5);
    const { header, data: baseData } = safetensorsParts(tensors, withMeta ? { format: 'pt', step: '3' } : undefined);
    const what = [`${tensors.length} tensors${withMeta ? ' + metadata' : ''}`];
    const rounds = chance(rng, 0.1) ? 0 : 1 + rng.int(2);
    for (let r = 0; r < rounds; r++) what.push(mutateHeader(rng, header, baseData.length));
    const data = extendForMany(header, baseData);
    const file = hostileSafetensors(rng, header, data, what);
    const oracle = safetensorsOracle(file.bytes);
    const source = 'fuzz.safetensors';
    return {
      mutation: file.what.join('; '),
      source,
      inputBytes: file.bytes.length,
      run: () => decodeSafetensors(file.bytes, source),
      expect: oracle.ok ? { verdict: 'valid', check: (r) => checkDecoded(r, oracle.value) } : { verdict: 'invalid', why: oracle.why },
    };
  },
};
