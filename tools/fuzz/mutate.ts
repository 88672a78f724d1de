// Generic mutations of bytes and of JSON values, driven by a seeded Rng. Each returns the new value
// and a short description of what it did (the fuzzer's report names it, so a case can be reproduced
// and understood without rerunning it).

import type { Rng } from '../../src/data/rng.ts';

export const pick = <T>(rng: Rng, items: readonly T[]): T => items[rng.int(items.length)];

/**
 * The size of the largest hostile inputs (deep nesting, huge headers, many entries) as a factor of
 * the full run's: the quick slice in npm test uses 0.1, which keeps every code path (depths far
 * past any recursion limit, sizes far past any real file) at a tenth of the time.
 */
export const scale = { factor: 1 };
export const big = (n: number) => Math.max(1, Math.round(n * scale.factor));
export const chance = (rng: Rng, p: number) => rng.next() < p;

/** Integers that break size arithmetic: zero, signs, powers of two around every word size. */
export const INTERESTING_U32 = [0, 1, 2, 3, 7, 8, 255, 256, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
export const INTERESTING_U64 = [
  0n, 1n, 8n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n,
  2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n,
];
/** Numbers as they may appear in a JSON header (sizes, offsets, config fields). */
export const INTERESTING_NUMBERS = [
  0, -0, 1, -1, 2, 3, 0.5, 1.5, -1.5, 255, 256, 65535, 65536, 2 ** 20, 2 ** 20 + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32,
  2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 64, 1e15, 1e21, 1e300, -1e300, Number.MIN_VALUE, 1e-7,
];

export function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(256);
  return out;
}

export interface Mutated<T> {
  value: T;
  what: string;
}

/** One random byte-level mutation of `bytes` (a copy; the input is not changed). */
export function mutateBytes(rng: Rng, bytes: Uint8Array): Mutated<Uint8Array> {
  const n = bytes.length;
  const at = (limit = n) => (limit > 0 ? rng.int(limit) : 0);
  switch (rng.int(11)) {
    case 0: {
      const len = at(n);
      return { value: bytes.slice(0, len), what: `truncate to ${len} of ${n} bytes` };
    }
    case 1: {
      const extra = randomBytes(rng, 1 + rng.int(64));
      return { value: concat(bytes, extra), what: `append ${extra.length} random bytes` };
    }
    case 2: {
      const out = bytes.slice();
      const flips = 1 + rng.int(8);
      const where: number[] = [];
      for (let k = 0; k < flips && n > 0; k++) {
        const i = at();
        out[i] ^= 1 << rng.int(8);
        where.push(i);
      }
      return { value: out, what: `flip bits at bytes ${where.join(', ')}` };
    }
    case 3: {
      const out = bytes.slice();
      const i = at();
      const v = pick(rng, [0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0x22, 0x7b, 0x5b]);
      if (n > 0) out[i] = v;
      return { value: out, what: `set byte ${i} to 0x${v.toString(16)}` };
    }
    case 4: {
      const out = bytes.slice();
      const i = at(Math.max(1, n - 3));
      const v = pick(rng, INTERESTING_U32);
      if (n >= 4) new DataView(out.buffer).setUint32(i, v, chance(rng, 0.5));
      return { value: out, what: `write u32 ${v} at byte ${i}` };
    }
    case 5: {
      const out = bytes.slice();
      const i = at(Math.max(1, n - 7));
      const v = pick(rng, INTERESTING_U64);
      if (n >= 8) new DataView(out.buffer).setBigUint64(i, v, chance(rng, 0.5));
      return { value: out, what: `write u64 ${v} at byte ${i}` };
    }
    case 6: {
      const from = at();
      const len = rng.int(Math.max(1, n - from));
      return { value: concat(bytes.subarray(0, from), bytes.subarray(from + len)), what: `delete bytes [${from}, ${from + len})` };
    }
    case 7: {
      const from = at();
      const len = rng.int(Math.max(1, Math.min(256, n - from)));
      const chunk = bytes.slice(from, from + len);
      const to = at(n + 1);
      return { value: concat(bytes.subarray(0, to), chunk, bytes.subarray(to)), what: `copy bytes [${from}, ${from + len}) to ${to}` };
    }
    case 8: {
      const to = at(n + 1);
      const chunk = randomBytes(rng, 1 + rng.int(32));
      return { value: concat(bytes.subarray(0, to), chunk, bytes.subarray(to)), what: `insert ${chunk.length} random bytes at ${to}` };
    }
    case 9: {
      const out = bytes.slice();
      const from = at();
      const len = Math.min(n - from, 1 + rng.int(64));
      out.fill(0, from, from + len);
      return { value: out, what: `zero bytes [${from}, ${from + len})` };
    }
    default:
      return { value: new Uint8Array(0), what: 'empty file' };
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A JSON value nested `depth` levels deep (arrays or objects), built as text: no recursion anywhere. */
export function deepJsonText(depth: number, objects: boolean): string {
  return objects ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + '1' + ']'.repeat(depth);
}

/** A hostile replacement for a JSON value: wrong types, interesting numbers, huge or deep values. */
export function hostileJsonValue(rng: Rng): Mutated<unknown> {
  switch (rng.int(12)) {
    case 0:
      return { value: null, what: 'null' };
    case 1: {
      const v = pick(rng, INTERESTING_NUMBERS);
      return { value: v, what: String(v) };
    }
    case 2:
      return { value: pick(rng, [true, false]), what: 'a boolean' };
    case 3: {
      const s = pick(rng, ['', '0', '1', 'F32', '__proto__', 'constructor', 'toString', '\u0000', '\ud800', 'é']);
      return { value: s, what: `the string ${JSON.stringify(s)}` };
    }
    case 4:
      return { value: [], what: 'an empty array' };
    case 5:
      return { value: {}, what: 'an empty object' };
    case 6: {
      // As a value, at most what JSON.stringify can write back (the harness serialises it); deeper
      // nesting is put in as text by the format-specific mutations.
      const depth = pick(rng, [33, 500, 2000]);
      return { value: JSON.parse(deepJsonText(depth, chance(rng, 0.5))), what: `a value nested ${depth} deep` };
    }
    case 7: {
      const n = pick(rng, [1000, big(100_000)]);
      return { value: new Array(n).fill(1), what: `an array of ${n} ones` };
    }
    case 8: {
      const n = pick(rng, [10_000, big(1_000_000)]);
      return { value: 'x'.repeat(n), what: `a string of ${n} characters` };
    }
    case 9:
      return { value: [pick(rng, INTERESTING_NUMBERS), pick(rng, INTERESTING_NUMBERS)], what: 'a pair of interesting numbers' };
    case 10:
      return { value: JSON.parse('{"__proto__": {"polluted": 1}}'), what: 'an object with an own "__proto__" key' };
    default: {
      const v = pick(rng, INTERESTING_NUMBERS);
      return { value: String(v), what: `the number ${v} as a string` };
    }
  }
}
