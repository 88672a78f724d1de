// Seeded random numbers for tests: every random input is reproducible from its seed.

/** mulberry32: small, fast, good enough for test data. Returns floats in [0, 1). */
export function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [lo, hi), as f64 (the reference's precision). */
export function randomUniform(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const rng = makeRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rng();
  return out;
}

/** n standard-normal values (Box-Muller) times `scale`. */
export function randomNormal(n: number, seed: number, scale = 1): Float64Array {
  const rng = makeRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rng();
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** Round f64 values to f32, so the reference sees exactly what the GPU sees. */
export function toF32(values: ArrayLike<number>): Float32Array {
  return Float32Array.from(values);
}
