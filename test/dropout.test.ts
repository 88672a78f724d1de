// Dropout (kernels/dropout.wgsl, src/ops/dropout.ts) against the f64 reference with the same hash
// (test/reference/dropout.ts): the GPU's mask equals the reference's element for element, forward
// and backward, on sizes that are and are not multiples of the workgroup and on a grid that needs
// folding; the drop fraction is p; the same seed gives the same mask, other seeds other masks;
// identity in inference and at p = 0; finite differences through the reference with a fixed mask.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { F32_TOLERANCE, assertClose } from './helpers/assert.ts';
import { randomUniform } from './helpers/random.ts';
import * as ref from './reference/dropout.ts';
import { gradcheck } from './reference/gradcheck.ts';
import { type Tensor, fromArray, parameter, tidy } from '../src/tensor.ts';
import { dropout, dropoutSeed, dropoutThreshold } from '../src/ops/dropout.ts';
import { backward } from '../src/autograd/tape.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu } from '../src/gpu/node.ts';

const test = suite('dropout');

/** Values in [0.5, 2) with random signs: never 0, so a zero in the output is a dropped element. */
function nonZero(n: number, seed: number): Float32Array {
  const u = randomUniform(n, seed, -1, 1);
  return Float32Array.from(u, (v) => Math.sign(v || 1) * (0.5 + 1.5 * Math.abs(v)));
}

async function runDropout(ctx: GpuContext, x: Float32Array, p: number, seed: number): Promise<Float32Array> {
  const out = tidy(() => dropout(fromArray(ctx, [x.length], x, 'x'), p, seed));
  const values = await out.read();
  out.dispose();
  return values;
}

/** Forward and backward of the GPU against the reference: same mask exactly, values one f32 multiply. */
async function checkAgainstReference(ctx: GpuContext, n: number, p: number, seed: number, what: string): Promise<void> {
  const xv = nonZero(n, seed + 1);
  const gv = nonZero(n, seed + 2);
  const x = parameter(ctx, [n], xv, 'x');
  const [out, dx] = tidy(() => {
    const y = dropout(x, p, seed);
    backward(y, fromArray(ctx, [n], gv, 'dy'));
    return [y, x.grad!];
  });
  const [o, d] = [await out.read(), await dx.read()];
  const keep = ref.dropoutMask(n, p, seed);
  const scale = Math.fround(1 / (1 - p));
  let mismatches = 0;
  for (let i = 0; i < n; i++) {
    // The kernel multiplies x by the f32 scale (or by 0): one correctly rounded f32 product.
    const expectedOut = keep[i] ? Math.fround(xv[i] * scale) : 0;
    const expectedGrad = keep[i] ? Math.fround(gv[i] * scale) : 0;
    if (!Object.is(o[i] + 0, expectedOut) || !Object.is(d[i] + 0, expectedGrad)) {
      if (mismatches++ === 0) console.log(`  ${what}: first mismatch at ${i}: keep ${keep[i]}, out ${o[i]} vs ${expectedOut}, dx ${d[i]} vs ${expectedGrad}`);
    }
  }
  assert.is(mismatches, 0, `${what}: ${mismatches} of ${n} elements differ from the reference mask`);
  // And against the f64 reference at the f32 tolerance (the scale rounded to f32 is within it).
  assertClose(o, ref.dropoutForward(Float64Array.from(xv), p, seed), F32_TOLERANCE, `${what} forward`);
  assertClose(d, ref.dropoutBackward(Float64Array.from(gv), p, seed), F32_TOLERANCE, `${what} backward`);
  out.dispose();
  x.dispose();
}

for (const [n, p, seed] of [[1, 0.5, 3], [63, 0.5, 4], [64, 0.3, 5], [65, 0.7, 6], [1000, 0.5, 7], [192 * 128, 0.5, 8], [100_003, 0.1, 9]] as const) {
  test(`forward and backward match the reference mask exactly: n = ${n}, p = ${p}`, async () => {
    await checkAgainstReference(await gpu(), n, p, seed, `n ${n} p ${p}`);
  });
}

test('a grid folded past 65,535 workgroups (n = 4,200,007) and a seed above 2^32 match the reference', async () => {
  const ctx = await gpu();
  const n = 4_200_007; // 65,626 workgroups of 64
  assert.ok(Math.ceil(n / 64) > ctx.limits.maxComputeWorkgroupsPerDimension);
  await checkAgainstReference(ctx, n, 0.5, 2 ** 40 + 12345, 'folded grid');
});

test('the drop fraction is p over a large tensor, and neighbouring elements are independent', async () => {
  const ctx = await gpu();
  const n = 1_000_003;
  const x = new Float32Array(n).fill(1);
  for (const p of [0.1, 0.5, 0.9]) {
    const o = await runDropout(ctx, x, p, 77);
    let dropped = 0;
    let sameAsNext = 0;
    const scale = Math.fround(1 / (1 - p));
    for (let i = 0; i < n; i++) {
      if (o[i] === 0) dropped++;
      else assert.is(o[i], scale, `kept element ${i} is scaled by 1/(1-p)`);
      if (i + 1 < n && (o[i] === 0) === (o[i + 1] === 0)) sameAsNext++;
    }
    // 6 standard deviations of a binomial proportion: fails only if the hash is biased.
    const sd = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(dropped / n - p) < 6 * sd, `p = ${p}: dropped fraction ${dropped / n}`);
    const agree = p * p + (1 - p) * (1 - p);
    const sdAgree = Math.sqrt((agree * (1 - agree)) / n);
    assert.ok(Math.abs(sameAsNext / (n - 1) - agree) < 6 * sdAgree, `p = ${p}: neighbours agree ${sameAsNext / (n - 1)}, expected ${agree}`);
  }
});

test('same seed: same mask; other seeds (neighbouring, and 2^32 apart): unrelated masks', async () => {
  const ctx = await gpu();
  const n = 200_000;
  const x = nonZero(n, 11);
  const a = await runDropout(ctx, x, 0.5, 1234);
  const again = await runDropout(ctx, x, 0.5, 1234);
  assert.ok(a.every((v, i) => Object.is(v, again[i])), 'the same seed gives bitwise the same output');
  for (const other of [1235, 1233, 1234 + 2 ** 32, 0]) {
    const b = await runDropout(ctx, x, 0.5, other);
    let agree = 0;
    for (let i = 0; i < n; i++) if ((a[i] === 0) === (b[i] === 0)) agree++;
    // Independent masks at p = 0.5 agree on half the elements (sd 0.0011).
    assert.ok(Math.abs(agree / n - 0.5) < 0.01, `seed ${other} vs 1234: masks agree on ${agree / n} of the elements`);
  }
});

test('inference and p = 0 return x itself; nothing is dispatched', async () => {
  const ctx = await gpu();
  const x = parameter(ctx, [5], [1, 2, 3, 4, 5], 'x');
  const before = ctx.counters.dispatches;
  assert.is(dropout(x, 0.5, 1, false), x);
  assert.is(dropout(x, 0, 1, true), x);
  assert.is(ctx.counters.dispatches, before);
  x.dispose();
});

test('NaN and infinity stay non-finite whether the element is kept or dropped', async () => {
  const ctx = await gpu();
  const n = 64;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = i % 2 ? NaN : Infinity;
  const o = await runDropout(ctx, x, 0.5, 5);
  const keep = ref.dropoutMask(n, 0.5, 5);
  assert.ok(keep.includes(0) && keep.includes(1), 'both kept and dropped elements are checked');
  for (let i = 0; i < n; i++) {
    // kept: NaN stays NaN, infinity stays infinity; dropped: NaN * 0 and infinity * 0 are NaN.
    assert.ok(Object.is(o[i], ref.dropoutForward(Float64Array.from(x), 0.5, 5)[i]), `element ${i} (keep ${keep[i]}): ${o[i]}`);
  }
});

test('bad p or seed: ShapeError before any dispatch', async () => {
  const ctx = await gpu();
  const x = fromArray(ctx, [4], [1, 2, 3, 4]);
  const before = ctx.counters.dispatches;
  for (const [p, seed] of [[1, 0], [-0.1, 0], [NaN, 0], [1.5, 0], [0.5, -1], [0.5, 1.5], [0.5, 2 ** 53]] as const) {
    assert.throws(() => dropout(x, p, seed), (e: Error) => e instanceof ShapeError, `p ${p} seed ${seed}`);
  }
  assert.is(ctx.counters.dispatches, before);
  x.dispose();
});

test('threshold and seed helpers', () => {
  assert.is(dropoutThreshold(0), 0);
  assert.is(dropoutThreshold(0.5), 2 ** 31);
  assert.is(dropoutThreshold(1 - 1e-12), 2 ** 32 - 1);
  const seeds = new Set<number>();
  for (let step = 0; step < 1000; step++) seeds.add(dropoutSeed(7, step));
  assert.is(seeds.size, 1000, 'every step of a run gets its own seed');
  assert.is(dropoutSeed(7, 42), dropoutSeed(7, 42));
  assert.is.not(dropoutSeed(7, 42), dropoutSeed(8, 42));
  assert.ok([...seeds].every((s) => Number.isInteger(s) && s >= 0 && s < 2 ** 32));
  assert.throws(() => dropoutSeed(-1, 0));
  assert.throws(() => dropoutSeed(0, 2 ** 32));
});

test('reference backward vs finite differences with a fixed mask', () => {
  const n = 40;
  const p = 0.4;
  const keep = ref.dropoutMask(n, p, 99);
  assert.ok(keep.includes(0) && keep.includes(1));
  const w = randomUniform(n, 5);
  const x = randomUniform(n, 6);
  const f = ([xi]: Float64Array[]) => ref.applyMask(xi, keep, p).reduce((s, v, i) => s + v * w[i], 0);
  // d/dx sum(w * dropout(x)) = dropout backward of w, with the same seed.
  gradcheck(f, [x], [ref.dropoutBackward(w, p, 99)], 'dropout');
});

test('a chain dropout(dropout(x)) with two seeds: gradients compose (GPU vs reference)', async () => {
  const ctx = await gpu();
  const n = 333;
  const xv = nonZero(n, 21);
  const x = parameter(ctx, [n], xv, 'x');
  const gv = nonZero(n, 22);
  const out: Tensor = tidy(() => {
    const y = dropout(dropout(x, 0.3, 1), 0.6, 2);
    backward(y, fromArray(ctx, [n], gv));
    return y;
  });
  const xr = Float64Array.from(xv);
  assertClose(await out.read(), ref.dropoutForward(ref.dropoutForward(xr, 0.3, 1), 0.6, 2), F32_TOLERANCE, 'forward');
  const gr = ref.dropoutBackward(ref.dropoutBackward(Float64Array.from(gv), 0.6, 2), 0.3, 1);
  assertClose(await x.grad!.read(), gr, F32_TOLERANCE, 'backward');
  out.dispose();
  x.dispose();
});

test('on the OpenGL adapter (compatibility level): the same masks', async () => {
  const gl = await acquireGpu({ backend: 'opengl' });
  try {
    assert.is(gl.adapter.featureLevel, 'compatibility');
    await checkAgainstReference(gl, 1000, 0.5, 31, 'OpenGL n 1000');
    await checkAgainstReference(gl, 100_003, 0.2, 2 ** 33 + 7, 'OpenGL n 100003');
  } finally {
    gl.destroy();
  }
});

test.run();
