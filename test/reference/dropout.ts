// Inverted dropout, f64 reference, forward and backward, with the kernel's counter-based mask
// (kernels/dropout.wgsl) written out again here, independently of src/, so that the GPU's mask and
// this one can be compared element for element:
//   mix(h)  = lowbias32: h ^= h >> 16; h *= 0x7feb352d; h ^= h >> 15; h *= 0x846ca68b; h ^= h >> 16
//   k1      = mix(seed_lo ^ mix(seed_hi + 0x9e3779b9)), k2 = mix(k1 + 0x632be5ab)
//   h(i)    = mix(mix(i + k1) ^ k2)     (u32 arithmetic, wrapping)
//   keep(i) = h(i) >= min(2^32 - 1, round(p * 2^32))
// out[i] = x[i] * (keep(i) ? 1 / (1 - p) : 0); dx[i] = dy[i] * (keep(i) ? 1 / (1 - p) : 0).

const TWO_32 = 4294967296;

function mix(v: number): number {
  let h = v >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The u32 hash of element `i` under `seed` (a non-negative safe integer). */
export function dropoutHash(seed: number, i: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`dropoutHash: seed ${seed} is not a non-negative safe integer`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / TWO_32) >>> 0;
  const k1 = mix(lo ^ mix((hi + 0x9e3779b9) >>> 0));
  const k2 = mix((k1 + 0x632be5ab) >>> 0);
  return mix((mix((i + k1) >>> 0) ^ k2) >>> 0);
}

/** keep[i] = 1 where element i survives dropout with probability p under `seed`, else 0. */
export function dropoutMask(n: number, p: number, seed: number): Uint8Array {
  if (!(p >= 0 && p < 1)) throw new Error(`dropoutMask: p ${p} is not in [0, 1)`);
  const threshold = Math.min(TWO_32 - 1, Math.round(p * TWO_32));
  const keep = new Uint8Array(n);
  for (let i = 0; i < n; i++) keep[i] = dropoutHash(seed, i) >= threshold ? 1 : 0;
  return keep;
}

/** out = x * mask * 1 / (1 - p) (x itself, copied, when p = 0). */
export function dropoutForward(x: Float64Array, p: number, seed: number): Float64Array {
  return applyMask(x, dropoutMask(x.length, p, seed), p);
}

/** dx = dy * mask * 1 / (1 - p): the same mask as the forward pass. */
export function dropoutBackward(dy: Float64Array, p: number, seed: number): Float64Array {
  return applyMask(dy, dropoutMask(dy.length, p, seed), p);
}

/** x * (keep ? 1 / (1 - p) : 0), elementwise, for a given mask (finite differences with a fixed mask). */
export function applyMask(x: Float64Array, keep: Uint8Array, p: number): Float64Array {
  if (keep.length !== x.length) throw new Error(`dropout applyMask: mask has ${keep.length} entries, x has ${x.length}`);
  const scale = 1 / (1 - p);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * (keep[i] ? scale : 0);
  return out;
}
