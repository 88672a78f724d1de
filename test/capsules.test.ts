// Capsule layers (src/ops/capsules.ts and their kernels) against the f64 reference
// (test/reference/capsules.ts): squash, PrimaryCaps, the prediction vectors, dynamic routing
// (r = 1, 2, 3, 5; both gradient modes; leaky; bias), lengths, the longest capsule and the mask,
// forward and backward, at the paper's sizes (1152 x 10 capsules, 16x8 matrices, batch 1 and 8)
// and at odd small sizes; every kernel variant (vec4 and generic paths, workgroup sizes, batch
// chunks, batch slices); finite differences through the tape; zero and very large inputs; shape
// errors before any dispatch; and the key checks once on the OpenGL (compatibility) adapter.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { F32_TOLERANCE, assertClose } from './helpers/assert.ts';
import { randomUniform } from './helpers/random.ts';
import { gradcheck } from './reference/gradcheck.ts';
import * as ref from './reference/capsules.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu } from '../src/gpu/node.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import { type Tensor, fromArray, parameter, tidy } from '../src/tensor.ts';
import { backward } from '../src/autograd/tape.ts';
import { add, mul, sum } from '../src/ops/elementwise.ts';
import {
  type PredictTuning, type RoutingOptions, type RoutingTuning, batchSlices, capsPredict, capsuleLengths,
  longestCapsule, maskCapsules, primaryCaps, routing, squash,
} from '../src/ops/capsules.ts';

/** Seeded uniform values rounded to f32, as f64: the reference sees exactly the GPU's inputs. */
function f32in(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  return Float64Array.from(Float32Array.from(randomUniform(n, seed, lo, hi)));
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
}

function allFinite(x: ArrayLike<number>, what: string): void {
  for (let k = 0; k < x.length; k++) if (!Number.isFinite(x[k])) assert.unreachable(`${what}: element ${k} is ${x[k]}`);
}

/** Reads a gradient and frees the parameter (and its gradient). */
async function gradOf(p: Tensor): Promise<Float32Array> {
  assert.ok(p.grad, `${p.describe()} has a gradient`);
  const g = await p.grad.read();
  return g;
}

function disposeAll(...ts: Array<Tensor | null | undefined>): void {
  for (const t of ts) t?.dispose();
}

// -------------------------------------------------------------------------------------------------
const sq = suite('squash');

for (const [rows, dim] of [[1, 1], [37, 5], [3 * 1152, 8], [7, 16], [65, 7]]) {
  sq(`squash forward and backward, ${rows} rows of ${dim}`, async () => {
    const ctx = await gpu();
    const s = f32in(rows * dim, rows + dim, -2, 2);
    const g = f32in(rows * dim, rows + dim + 1);
    const ps = parameter(ctx, [rows, dim], s, 's');
    const v = tidy(() => {
      const out = squash(ps);
      backward(out, fromArray(ctx, [rows, dim], g));
      return out;
    });
    assertClose(await v.read(), ref.squash(s, dim), F32_TOLERANCE, 'squash');
    assertClose(await gradOf(ps), ref.squashBackward(s, g, dim), F32_TOLERANCE, 'squash backward');
    disposeAll(v, ps);
  });
}

sq('reference squash backward matches finite differences (small)', () => {
  const s = randomUniform(4 * 5, 3, -2, 2);
  const g = randomUniform(4 * 5, 4);
  gradcheck(([x]) => dot(ref.squash(x, 5), g), [s], [ref.squashBackward(s, g, 5)], 'squash', { atol: 1e-8, rtol: 1e-6 });
});

sq('squash of zeros and of very large vectors is finite (and exact at 0)', async () => {
  const ctx = await gpu();
  const dim = 8;
  const s = new Float64Array(4 * dim);
  for (let d = 0; d < dim; d++) {
    s[dim + d] = 1e4 * (d % 2 ? 1 : -1);
    s[2 * dim + d] = 1e15 * (d + 1);
    s[3 * dim + d] = 1e-20 * (d + 1);
  }
  const g = f32in(4 * dim, 9);
  const ps = parameter(ctx, [4, dim], s, 's');
  const v = tidy(() => {
    const out = squash(ps);
    backward(out, fromArray(ctx, [4, dim], g));
    return out;
  });
  const vv = await v.read();
  const ds = await gradOf(ps);
  allFinite(vv, 'squash');
  allFinite(ds, 'squash backward');
  assert.equal(Array.from(vv.slice(0, dim)), new Array(dim).fill(0), 'v(0) = 0');
  assert.equal(Array.from(ds.slice(0, dim)), new Array(dim).fill(0), 'ds at 0 = 0');
  // Large: v -> s / |s|; the reference is exact in f64.
  assertClose(vv, ref.squash(Float64Array.from(Float32Array.from(s)), dim), { atol: 1e-6, rtol: 1e-5 }, 'squash extremes');
  assertClose(ds, ref.squashBackward(Float64Array.from(Float32Array.from(s)), g, dim), { atol: 1e-6, rtol: 1e-4 }, 'squash backward extremes');
  disposeAll(v, ps);
});

// -------------------------------------------------------------------------------------------------
const prim = suite('primaryCaps');

for (const dims of [
  { B: 1, types: 32, dim: 8, G: 6 },
  { B: 8, types: 32, dim: 8, G: 6 },
  { B: 3, types: 3, dim: 5, G: 4 },
  { B: 2, types: 5, dim: 7, G: 3 },
]) {
  for (const withSquash of [true, false]) {
    prim(`regroup${withSquash ? ' + squash' : ''} forward and backward, B ${dims.B}, ${dims.types} types of ${dims.dim}-D on ${dims.G}x${dims.G}`, async () => {
      const ctx = await gpu();
      const { B, types, dim, G } = dims;
      const n = B * types * dim * G * G;
      const conv = f32in(n, n, -2, 2);
      const g = f32in(n, n + 1);
      const pc = parameter(ctx, [B, types * dim, G, G], conv, 'conv');
      const u = tidy(() => {
        const out = primaryCaps(pc, { types, dim, squash: withSquash });
        backward(out, fromArray(ctx, [B, types * G * G, dim], g));
        return out;
      });
      const s = ref.primaryCapsReshape(conv, dims);
      const expected = withSquash ? ref.squash(s, dim) : s;
      const du = withSquash ? ref.squashBackward(s, g, dim) : g;
      assert.equal([...u.shape], [B, types * G * G, dim]);
      assertClose(await u.read(), expected, F32_TOLERANCE, 'u');
      assertClose(await gradOf(pc), ref.primaryCapsReshapeBackward(du, dims), F32_TOLERANCE, 'dconv');
      disposeAll(u, pc);
    });
  }
}

prim('reference: primaryCaps backward (reshape then squash) matches finite differences', () => {
  const dims = { B: 2, types: 3, dim: 4, G: 2 };
  const n = 2 * 3 * 4 * 4;
  const conv = randomUniform(n, 5, -2, 2);
  const g = randomUniform(n, 6);
  const f = ([c]: Float64Array[]) => dot(ref.squash(ref.primaryCapsReshape(c, dims), dims.dim), g);
  const analytic = ref.primaryCapsReshapeBackward(ref.squashBackward(ref.primaryCapsReshape(conv, dims), g, dims.dim), dims);
  gradcheck(f, [conv], [analytic], 'primary caps', { atol: 1e-8, rtol: 1e-6 });
});

// -------------------------------------------------------------------------------------------------
const pred = suite('capsPredict');

interface PredictCase { B: number; I: number; J: number; Dout: number; Din: number; tuning?: PredictTuning; what: string }
const predictCases: PredictCase[] = [
  { B: 1, I: 1152, J: 10, Dout: 16, Din: 8, what: 'paper size, batch 1' },
  { B: 8, I: 1152, J: 10, Dout: 16, Din: 8, what: 'paper size, batch 8' },
  { B: 2, I: 1152, J: 10, Dout: 16, Din: 8, tuning: { vec4: false }, what: 'paper size, generic kernels' },
  { B: 3, I: 37, J: 3, Dout: 7, Din: 5, what: 'odd 5-D -> 7-D (generic kernels)' },
  { B: 3, I: 37, J: 3, Dout: 8, Din: 4, what: 'odd I, J, B with the vec4 kernels' },
  { B: 3, I: 5, J: 2, Dout: 32, Din: 16, what: '32x16 matrices, past the vec4 kernels\' registers (generic kernels)' },
  { B: 5, I: 37, J: 3, Dout: 8, Din: 4, tuning: { batchChunk: 3, batchChunkGradU: 2, wg: 8 }, what: 'batch chunks 3 / 2, WG 8' },
  { B: 5, I: 37, J: 3, Dout: 8, Din: 4, tuning: { batchChunk: 1, batchChunkGradU: 16, wg: 64 }, what: 'batch chunks 1 / 16, WG 64' },
  { B: 20, I: 37, J: 3, Dout: 8, Din: 4, tuning: { maxBindingBytes: 8 * 37 * 3 * 8 * 4 }, what: 'three batch slices (vec4)' },
  { B: 20, I: 37, J: 3, Dout: 7, Din: 5, tuning: { maxBindingBytes: 64 * 37 * 3 * 7 * 4 - 4 }, what: 'batch slices (generic)' },
];

for (const c of predictCases) {
  pred(`forward and backward (dW, du): ${c.what} [B ${c.B}, I ${c.I}, J ${c.J}, ${c.Dout}x${c.Din}]`, async () => {
    const ctx = await gpu();
    const { B, I, J, Dout, Din } = c;
    const dims = { B, I, J, Dout, Din };
    const W = f32in(I * J * Dout * Din, 11 + B, -0.5, 0.5);
    const u = f32in(B * I * Din, 12 + B);
    const g = f32in(B * I * J * Dout, 13 + B);
    const pW = parameter(ctx, [I, J, Dout, Din], W, 'W');
    const pu = parameter(ctx, [B, I, Din], u, 'u');
    const uhat = tidy(() => {
      const out = capsPredict(pW, pu, c.tuning);
      backward(out, fromArray(ctx, [B, I, J, Dout], g));
      return out;
    });
    const { dW, du } = ref.capsPredictBackward(W, u, g, dims);
    assertClose(await uhat.read(), ref.capsPredict(W, u, dims), F32_TOLERANCE, 'uhat');
    assertClose(await gradOf(pW), dW, F32_TOLERANCE, 'dW');
    assertClose(await gradOf(pu), du, F32_TOLERANCE, 'du');
    disposeAll(uhat, pW, pu);
  });
}

pred('the batch is split into slices that fit one binding, at aligned offsets', async () => {
  const ctx = await gpu();
  const per = 1152 * 10 * 16 * 4;
  assert.equal(batchSlices(ctx, 128, per, 'x'), [[0, 128]]);
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const slices = batchSlices(ctx, 256, per, 'x');
  assert.ok(slices.length >= 2, 'batch 256 needs two slices');
  for (const [b0, nb] of slices) {
    assert.ok(nb * per <= limit);
    assert.is((b0 * per) % ctx.limits.minStorageBufferOffsetAlignment, 0);
  }
  assert.is(slices.reduce((s, [, nb]) => s + nb, 0), 256);
  assert.equal(batchSlices(ctx, 20, 3552, 'x', 8 * 3552), [[0, 8], [8, 8], [16, 4]]);
  assert.throws(() => batchSlices(ctx, 20, 3552, 'x', 5 * 3552), (e: Error) => e instanceof ShapeError && /aligned/.test(e.message));
});

pred('reference: capsPredict backward matches finite differences (small)', () => {
  const dims = { B: 2, I: 3, J: 2, Dout: 3, Din: 2 };
  const W = randomUniform(3 * 2 * 3 * 2, 21);
  const u = randomUniform(2 * 3 * 2, 22);
  const g = randomUniform(2 * 3 * 2 * 3, 23);
  const { dW, du } = ref.capsPredictBackward(W, u, g, dims);
  gradcheck(([w, x]) => dot(ref.capsPredict(w, x, dims), g), [W, u], [dW, du], 'capsPredict', { atol: 1e-8, rtol: 1e-6 });
});

// -------------------------------------------------------------------------------------------------
const rout = suite('routing');

interface RoutingRun { v: Float32Array; duhat: Float32Array; dbias: Float32Array | null }

async function runRouting(
  ctx: GpuContext, uhat: Float64Array, dims: ref.RoutingDims, options: ref.RoutingOptions, dv: Float64Array, tuning?: RoutingTuning,
): Promise<RoutingRun> {
  const { B, I, J, D } = dims;
  const pu = parameter(ctx, [B, I, J, D], uhat, 'uhat');
  const pb = options.bias ? parameter(ctx, [J, D], options.bias, 'bias') : null;
  const opts: RoutingOptions = { iterations: options.iterations, gradMode: options.gradMode, leaky: options.leaky, bias: pb, tuning };
  const v = tidy(() => {
    const out = routing(pu, opts);
    backward(out, fromArray(ctx, [B, J, D], dv));
    return out;
  });
  const result = { v: await v.read(), duhat: await gradOf(pu), dbias: pb ? await gradOf(pb) : null };
  disposeAll(v, pu, pb);
  return result;
}

async function checkRouting(ctx: GpuContext, dims: ref.RoutingDims, options: ref.RoutingOptions, seed: number, tuning?: RoutingTuning, scale = 1): Promise<void> {
  const { B, I, J, D } = dims;
  const uhat = f32in(B * I * J * D, seed, -scale, scale);
  const dv = f32in(B * J * D, seed + 1);
  const opts = { ...options, bias: options.bias ? f32in(J * D, seed + 2, -0.5, 0.5) : null };
  const got = await runRouting(ctx, uhat, dims, opts, dv, tuning);
  const { v, saved } = ref.routingForward(uhat, dims, opts);
  const { duhat, dbias } = ref.routingBackward(uhat, dims, saved, dv, opts);
  // Sums over I = 1152 children in f32: measured errors stay below 6e-7, within the f32 default.
  const tol = F32_TOLERANCE;
  const what = `r ${opts.iterations} ${opts.gradMode ?? 'all'}${opts.leaky ? ' leaky' : ''}${opts.bias ? ' bias' : ''}`;
  assertClose(got.v, v, tol, `v (${what})`);
  assertClose(got.duhat, duhat, tol, `duhat (${what})`);
  if (dbias) assertClose(got.dbias!, dbias, tol, `dbias (${what})`);
}

// Every combination at two odd small sizes: D = 7 (generic path) and D = 8 (vec4 path).
for (const dims of [{ B: 3, I: 37, J: 3, D: 7 }, { B: 3, I: 37, J: 3, D: 8 }]) {
  for (const iterations of [1, 2, 3, 5]) {
    rout(`forward and backward vs reference, ${dims.B}x${dims.I}x${dims.J}x${dims.D}, r = ${iterations}: both grad modes, leaky or not, bias or not`, async () => {
      const ctx = await gpu();
      let seed = 100 * iterations + dims.D;
      for (const gradMode of ['all', 'last'] as const) {
        for (const leaky of [false, true]) {
          for (const withBias of [false, true]) {
            await checkRouting(ctx, dims, { iterations, gradMode, leaky, bias: withBias ? new Float64Array(1) : null }, seed++);
          }
        }
      }
    });
  }
}

for (const B of [1, 8]) {
  rout(`paper size 1152 x 10 x 16, batch ${B}, r = 3, both grad modes; leaky + bias`, async () => {
    const ctx = await gpu();
    const dims = { B, I: 1152, J: 10, D: 16 };
    await checkRouting(ctx, dims, { iterations: 3, gradMode: 'all' }, 500 + B, undefined, 0.05);
    await checkRouting(ctx, dims, { iterations: 3, gradMode: 'last' }, 510 + B, undefined, 0.05);
    if (B === 8) await checkRouting(ctx, dims, { iterations: 3, leaky: true, bias: new Float64Array(1) }, 520 + B, undefined, 0.05);
  });
}

rout('paper size with the generic (component by component) kernels, r = 3', async () => {
  const ctx = await gpu();
  await checkRouting(ctx, { B: 2, I: 1152, J: 10, D: 16 }, { iterations: 3, bias: new Float64Array(1) }, 530, { vec4: false }, 0.05);
});

rout('workgroup sizes 1 and 32, and batch slices (vec4 and generic)', async () => {
  const ctx = await gpu();
  await checkRouting(ctx, { B: 9, I: 37, J: 3, D: 8 }, { iterations: 3, leaky: true, bias: new Float64Array(1) }, 540, { wg: 1 });
  await checkRouting(ctx, { B: 9, I: 37, J: 3, D: 8 }, { iterations: 2, bias: new Float64Array(1) }, 541, { wg: 32 });
  // 37*3*8*4 = 3552 bytes per example: aligned slices of 8 examples.
  await checkRouting(ctx, { B: 20, I: 37, J: 3, D: 8 }, { iterations: 3, bias: new Float64Array(1) }, 542, { maxBindingBytes: 8 * 3552 });
  // 37*3*7*4 = 3108 bytes: 64 examples per aligned step, so 130 examples make three slices.
  await checkRouting(ctx, { B: 130, I: 37, J: 3, D: 7 }, { iterations: 2, gradMode: 'all', leaky: true, bias: new Float64Array(1) }, 543, { maxBindingBytes: 64 * 3108 });
});

rout('a batch whose uhat exceeds maxStorageBufferBindingSize (paper size): predict and routing run in slices', async () => {
  const ctx = await gpu();
  const per = 1152 * 10 * 16 * 4;
  const B = Math.floor(ctx.limits.maxStorageBufferBindingSize / per) + 2; // 184 with 128 MiB
  if (B * per > ctx.limits.maxBufferSize) throw new Error(`maxBufferSize ${ctx.limits.maxBufferSize} cannot hold a batch of ${B}`);
  assert.ok(batchSlices(ctx, B, per, 'uhat').length >= 2, 'needs slices');
  const dims = { B, I: 1152, J: 10, Dout: 16, Din: 8 };
  const W = f32in(1152 * 10 * 128, 560, -0.1, 0.1);
  const u = f32in(B * 1152 * 8, 561, -0.5, 0.5);
  const dv = f32in(B * 160, 562);
  const pW = parameter(ctx, [1152, 10, 16, 8], W, 'W');
  const pu = parameter(ctx, [B, 1152, 8], u, 'u');
  const v = tidy(() => {
    const out = routing(capsPredict(pW, pu), { iterations: 2 });
    backward(out, fromArray(ctx, [B, 10, 16], dv));
    return out;
  });
  const uhat = ref.capsPredict(W, u, dims);
  const fwd = ref.routingForward(uhat, { B, I: 1152, J: 10, D: 16 }, { iterations: 2 });
  const { duhat } = ref.routingBackward(uhat, { B, I: 1152, J: 10, D: 16 }, fwd.saved, dv, { iterations: 2 });
  const { dW, du } = ref.capsPredictBackward(W, u, duhat, dims);
  assertClose(await v.read(), fwd.v, F32_TOLERANCE, 'v');
  assertClose(await gradOf(pu), du, F32_TOLERANCE, 'du');
  // dW sums 184 examples: f32 accumulation error grows like sqrt(B).
  assertClose(await gradOf(pW), dW, { atol: 1e-5 * Math.sqrt(B / 8), rtol: 1e-4 }, 'dW');
  disposeAll(v, pW, pu);
});

rout('reference: routing backward matches finite differences (r = 1, 2, 3; both modes; leaky; bias)', () => {
  const dims = { B: 2, I: 5, J: 3, D: 4 };
  for (const iterations of [1, 2, 3]) {
    for (const gradMode of ['all', 'last'] as const) {
      for (const leaky of [false, true]) {
        const uhat = randomUniform(2 * 5 * 3 * 4, 600 + iterations, -1, 1);
        const bias = randomUniform(3 * 4, 601);
        const dv = randomUniform(2 * 3 * 4, 602);
        const opts = { iterations, gradMode, leaky, bias };
        const { saved } = ref.routingForward(uhat, dims, opts);
        const { duhat, dbias } = ref.routingBackward(uhat, dims, saved, dv, opts);
        // 'last' holds the last coefficients at their base-point values (stop-gradient).
        const frozen = gradMode === 'last' ? { frozenLogits: saved.logits[iterations - 1] } : {};
        const f = ([u, b]: Float64Array[]) => dot(ref.routingForward(u, dims, { ...opts, bias: b, ...frozen }).v, dv);
        gradcheck(f, [uhat, bias], [duhat, dbias!], `routing r ${iterations} ${gradMode} leaky ${leaky}`, { atol: 1e-7, rtol: 1e-5 });
      }
    }
  }
});

rout('all-zero and very large (1e4) inputs give finite outputs and gradients', async () => {
  const ctx = await gpu();
  const dims = { B: 2, I: 1152, J: 10, D: 16 };
  for (const scale of [0, 1e4]) {
    for (const leaky of [false, true]) {
      const uhat = scale === 0 ? new Float64Array(2 * 1152 * 160) : f32in(2 * 1152 * 160, 700, -scale, scale);
      const dv = f32in(2 * 160, 701);
      const got = await runRouting(ctx, uhat, dims, { iterations: 3, leaky, bias: scale === 0 ? null : f32in(160, 702) }, dv);
      allFinite(got.v, `v at scale ${scale}`);
      allFinite(got.duhat, `duhat at scale ${scale}`);
      if (got.dbias) allFinite(got.dbias, `dbias at scale ${scale}`);
      if (scale === 0) {
        assert.ok(got.v.every((x) => x === 0) && got.duhat.every((x) => x === 0), 'zero in, zero out');
      } else {
        // |s| ~ 1e5..1e7 here: every v has length 1 - O(1e-10), as in the reference.
        const { v } = ref.routingForward(uhat, dims, { iterations: 3, leaky, bias: f32in(160, 702) });
        assertClose(got.v, v, { atol: 1e-5, rtol: 1e-4 }, 'v at 1e4');
      }
    }
  }
});

// -------------------------------------------------------------------------------------------------
const lens = suite('lengths, longest capsule, mask');

for (const [B, J, D] of [[8, 10, 16], [3, 3, 5], [1, 10, 16]]) {
  lens(`capsuleLengths forward and backward, and the longest capsule [${B}, ${J}, ${D}]`, async () => {
    const ctx = await gpu();
    const v = f32in(B * J * D, B * J + D, -0.5, 0.5);
    const g = f32in(B * J, B * J + D + 1);
    const pv = parameter(ctx, [B, J, D], v, 'v');
    const [len, idx] = tidy(() => {
      const l = capsuleLengths(pv);
      backward(l, fromArray(ctx, [B, J], g));
      return [l, longestCapsule(l)];
    });
    const dims = { B, J, D };
    const expected = ref.capsuleLengths(v, dims);
    assertClose(await len.read(), expected, F32_TOLERANCE, 'lengths');
    assertClose(await gradOf(pv), ref.capsuleLengthsBackward(v, g, dims), F32_TOLERANCE, 'dv');
    assert.equal(Array.from(await idx.read()), Array.from(ref.longestCapsule(expected, B, J)), 'longest');
    disposeAll(len, idx, pv);
  });
}

lens('lengths of zero capsules are sqrt(1e-9) with zero gradient; ties pick the first', async () => {
  const ctx = await gpu();
  const pv = parameter(ctx, [2, 3, 4], new Float64Array(24), 'v');
  const [len, idx] = tidy(() => {
    const l = capsuleLengths(pv);
    backward(l, fromArray(ctx, [2, 3], [1, 2, 3, 4, 5, 6]));
    return [l, longestCapsule(l)];
  });
  assertClose(await len.read(), new Array(6).fill(Math.sqrt(1e-9)), F32_TOLERANCE, 'lengths');
  assert.ok((await gradOf(pv)).every((x) => x === 0));
  assert.equal(Array.from(await idx.read()), [0, 0]);
  disposeAll(len, idx, pv);
});

lens('reference: lengths and mask backward match finite differences', () => {
  const dims = { B: 2, J: 3, D: 4 };
  const v = randomUniform(24, 31);
  const g = randomUniform(6, 32);
  gradcheck(([x]) => dot(ref.capsuleLengths(x, dims), g), [v], [ref.capsuleLengthsBackward(v, g, dims)], 'lengths', { atol: 1e-8, rtol: 1e-6 });
  const gm = randomUniform(24, 33);
  const sel = [2, 0];
  gradcheck(([x]) => dot(ref.maskCapsules(x, dims, sel), gm), [v], [ref.maskCapsulesBackward(gm, dims, sel)], 'mask', { atol: 1e-8, rtol: 1e-6 });
});

for (const [B, J, D] of [[8, 10, 16], [3, 3, 5]]) {
  lens(`maskCapsules by labels (Int32Array and GPU tensor) and by the longest capsule [${B}, ${J}, ${D}]`, async () => {
    const ctx = await gpu();
    const dims = { B, J, D };
    const v = f32in(B * J * D, 40 + B, -0.5, 0.5);
    const g = f32in(B * J * D, 41 + B);
    const labels = Int32Array.from({ length: B }, (_, b) => (3 * b + 1) % J);
    const longest = ref.longestCapsule(ref.capsuleLengths(v, dims), B, J);
    for (const how of ['labels', 'tensor', 'longest'] as const) {
      const pv = parameter(ctx, [B, J, D], v, 'v');
      const sel = how === 'labels' ? labels : how === 'longest' ? 'longest' : fromArray(ctx, [B], Float32Array.from(labels));
      const out = tidy(() => {
        const m = maskCapsules(pv, sel);
        backward(m, fromArray(ctx, [B, J * D], g));
        return m;
      });
      const chosen = how === 'longest' ? longest : labels;
      assert.equal([...out.shape], [B, J * D]);
      assertClose(await out.read(), ref.maskCapsules(v, dims, chosen), { atol: 0, rtol: 0 }, `mask by ${how}`);
      assertClose(await gradOf(pv), ref.maskCapsulesBackward(g, dims, chosen), { atol: 0, rtol: 0 }, `mask backward by ${how}`);
      disposeAll(out, pv, typeof sel === 'object' && !(sel instanceof Int32Array) ? sel : null);
    }
  });
}

lens('label -1 (a padding example) masks everything; other bad labels are refused', async () => {
  const ctx = await gpu();
  const v = f32in(2 * 3 * 4, 50);
  const pv = parameter(ctx, [2, 3, 4], v, 'v');
  const out = tidy(() => maskCapsules(pv, Int32Array.from([-1, 2])));
  const got = await out.read();
  assert.ok(got.slice(0, 12).every((x) => x === 0), 'row of label -1 is zero');
  assertClose(got.slice(12), ref.maskCapsules(v, { B: 2, J: 3, D: 4 }, [0, 2]).slice(12), { atol: 0, rtol: 0 }, 'row of label 2');
  const before = ctx.counters.dispatches;
  assert.throws(() => maskCapsules(pv, Int32Array.from([0, 3])), (e: Error) => e instanceof ShapeError && /selected\[1\] = 3/.test(e.message));
  assert.throws(() => maskCapsules(pv, Int32Array.from([0])), (e: Error) => e instanceof ShapeError && /1 selected classes for a batch of 2/.test(e.message));
  assert.is(ctx.counters.dispatches, before);
  disposeAll(out, pv);
});

// -------------------------------------------------------------------------------------------------
const tape = suite('capsule layers on the tape');

tape('finite differences through the whole chain: conv -> primaryCaps -> capsPredict -> routing (bias) -> lengths + mask', async () => {
  const ctx = await gpu();
  // Tiny sizes: 2 types of 4-D capsules on a 2x2 grid (I = 8), 3 parents of 4-D, batch 2.
  const pd = { B: 2, types: 2, dim: 4, G: 2 };
  const I = 8, J = 3, Dout = 4, Din = 4, B = 2;
  const conv = f32in(B * 8 * 4, 60, -1.5, 1.5);
  const W = f32in(I * J * Dout * Din, 61, -1, 1);
  const bias = f32in(J * Dout, 62, -0.3, 0.3);
  const wl = f32in(B * J, 63);
  const wm = f32in(B * J * Dout, 64);
  const labels = Int32Array.from([2, 0]);
  const opts = { iterations: 3, gradMode: 'all' as const, leaky: true };
  // loss = sum(lengths * wl) + sum(mask(v, labels) * wm), in f64 through the reference.
  const f = ([c, w, b]: Float64Array[]) => {
    const u = ref.squash(ref.primaryCapsReshape(c, pd), pd.dim);
    const uhat = ref.capsPredict(w, u, { B, I, J, Dout, Din });
    const { v } = ref.routingForward(uhat, { B, I, J, D: Dout }, { ...opts, bias: b });
    return dot(ref.capsuleLengths(v, { B, J, D: Dout }), wl) + dot(ref.maskCapsules(v, { B, J, D: Dout }, labels), wm);
  };
  const pc = parameter(ctx, [B, 8, 2, 2], conv, 'conv');
  const pW = parameter(ctx, [I, J, Dout, Din], W, 'W');
  const pb = parameter(ctx, [J, Dout], bias, 'bias');
  const loss = tidy(() => {
    const u = primaryCaps(pc, { types: 2, dim: 4 });
    const v = routing(capsPredict(pW, u), { ...opts, bias: pb });
    const l = dot2(capsuleLengths(v), fromArray(ctx, [B, J], wl), maskCapsules(v, labels), fromArray(ctx, [B, J * Dout], wm));
    backward(l);
    return l;
  });
  assertClose(await loss.read(), [f([conv, W, bias])], { atol: 1e-5, rtol: 1e-5 }, 'loss');
  const grads = [await gradOf(pc), await gradOf(pW), await gradOf(pb)].map((x) => Float64Array.from(x));
  // The GPU gradients (f32) against central differences of the f64 reference forward.
  gradcheck(f, [conv.slice(), W.slice(), bias.slice()], grads, 'tape vs finite differences', { eps: 1e-6, atol: 2e-5, rtol: 1e-3 });
  disposeAll(loss, pc, pW, pb);
});

tape('the whole chain stays finite on all-zero and on very large (1e4) inputs, forward and backward', async () => {
  const ctx = await gpu();
  const B = 2;
  for (const scale of [0, 1e4]) {
    const conv = scale === 0 ? new Float64Array(B * 256 * 36) : f32in(B * 256 * 36, 70, -scale, scale);
    const W = scale === 0 ? new Float64Array(1152 * 10 * 128) : f32in(1152 * 10 * 128, 71, -scale, scale);
    const pc = parameter(ctx, [B, 256, 6, 6], conv, 'conv');
    const pW = parameter(ctx, [1152, 10, 16, 8], W, 'W');
    const pb = parameter(ctx, [10, 16], f32in(160, 72, -scale, scale), 'bias');
    const [loss, v] = tidy(() => {
      const out = routing(capsPredict(pW, primaryCaps(pc, { types: 32, dim: 8 })), { iterations: 3, leaky: true, bias: pb });
      const l = add(sum(capsuleLengths(out)), sum(maskCapsules(out, 'longest')));
      backward(l);
      return [l, out];
    });
    allFinite(await loss.read(), `loss at ${scale}`);
    allFinite(await v.read(), `v at ${scale}`);
    for (const p of [pc, pW, pb]) allFinite(await gradOf(p), `${p.name} gradient at ${scale}`);
    disposeAll(loss, v, pc, pW, pb);
  }
});

/** sum(a * wa) + sum(b * wb) as a [1] tensor on the tape, from the elementwise ops. */
function dot2(a: Tensor, wa: Tensor, b: Tensor, wb: Tensor): Tensor {
  return add(sum(mul(a, wa)), sum(mul(b, wb)));
}

tape('shape errors are clear and come before any dispatch', async () => {
  const ctx = await gpu();
  const W = fromArray(ctx, [4, 3, 8, 4], new Float32Array(4 * 3 * 8 * 4));
  const u = fromArray(ctx, [2, 4, 4], new Float32Array(32));
  const badU = fromArray(ctx, [2, 5, 4], new Float32Array(40));
  const uhat = fromArray(ctx, [2, 4, 3, 8], new Float32Array(2 * 4 * 3 * 8));
  const conv = fromArray(ctx, [1, 6, 3, 3], new Float32Array(54));
  const v3 = fromArray(ctx, [2, 3, 8], new Float32Array(48));
  const before = ctx.counters.dispatches;
  const isShape = (pattern: RegExp) => (e: Error) => e instanceof ShapeError && pattern.test(e.message);
  assert.throws(() => capsPredict(W, badU), isShape(/u must be \[B, I = 4, Din = 4\].*got \[2, 5, 4\]/));
  assert.throws(() => capsPredict(u, W), isShape(/W must be \[I, J, Dout, Din\]/));
  assert.throws(() => capsPredict(W, u, { vec4: true, batchChunkGradU: 17 }), isShape(/batchChunkGradU/));
  const wide = fromArray(ctx, [1, 1, 32, 16], new Float32Array(512));
  const wideU = fromArray(ctx, [1, 1, 16], new Float32Array(16));
  assert.throws(() => capsPredict(wide, wideU, { vec4: true }), isShape(/Dout x Din <= 256 values in registers, got W .*\[1, 1, 32, 16\]/));
  assert.throws(() => routing(u), isShape(/uhat must be \[B, I, J, D\], got \[2, 4, 4\]/));
  assert.throws(() => routing(uhat, { iterations: 0 }), isShape(/iterations/));
  assert.throws(() => routing(uhat, { iterations: 9 }), isShape(/iterations/));
  assert.throws(() => routing(uhat, { gradMode: 'first' as 'all' }), isShape(/gradMode/));
  assert.throws(() => routing(uhat, { bias: v3 }), isShape(/bias must be \[J, D\] = \[3, 8\]/));
  assert.throws(() => primaryCaps(conv, { types: 4, dim: 2 }), isShape(/types\*dim = 8/));
  assert.throws(() => primaryCaps(conv, { types: 0, dim: 6 }), isShape(/types must be a positive integer/));
  assert.throws(() => capsuleLengths(fromArray(ctx, [3], [1, 2, 3])), isShape(/rank >= 2/));
  assert.throws(() => maskCapsules(uhat, Int32Array.from([0, 1])), isShape(/v must be \[B, J, D\]/));
  assert.throws(() => maskCapsules(v3, fromArray(ctx, [3], [0, 1, 2])), isShape(/selected must be \[B = 2\]/));
  assert.throws(() => longestCapsule(v3), isShape(/lengths \[B, J\]/));
  assert.is(ctx.counters.dispatches, before, 'nothing dispatched');
  disposeAll(W, u, badU, uhat, conv, v3);
});

// -------------------------------------------------------------------------------------------------
const gl = suite('capsule layers on the OpenGL adapter');

gl('key checks on OpenGL (llvmpipe, compatibility): predict, routing (both paths), primaryCaps, lengths, mask', async () => {
  let ctx: GpuContext;
  try {
    ctx = await acquireGpu({ backend: 'opengl' });
  } catch (error) {
    // Without an OpenGL adapter this cannot run; say so loudly rather than pass silently.
    throw new Error(`no OpenGL adapter to test on: ${(error as Error).message}`);
  }
  try {
    assert.is(ctx.adapter.featureLevel, 'compatibility');
    // capsPredict at the paper size (vec4) and at an odd size (generic), forward and backward.
    for (const [B, I, J, Dout, Din] of [[2, 1152, 10, 16, 8], [3, 37, 3, 7, 5]]) {
      const W = f32in(I * J * Dout * Din, 80, -0.5, 0.5);
      const u = f32in(B * I * Din, 81);
      const g = f32in(B * I * J * Dout, 82);
      const pW = parameter(ctx, [I, J, Dout, Din], W, 'W');
      const pu = parameter(ctx, [B, I, Din], u, 'u');
      const uhat = tidy(() => {
        const out = capsPredict(pW, pu);
        backward(out, fromArray(ctx, [B, I, J, Dout], g));
        return out;
      });
      const dims = { B, I, J, Dout, Din };
      const { dW, du } = ref.capsPredictBackward(W, u, g, dims);
      assertClose(await uhat.read(), ref.capsPredict(W, u, dims), F32_TOLERANCE, 'GL uhat');
      assertClose(await gradOf(pW), dW, F32_TOLERANCE, 'GL dW');
      assertClose(await gradOf(pu), du, F32_TOLERANCE, 'GL du');
      disposeAll(uhat, pW, pu);
    }
    // Routing: paper size (vec4) and odd size (generic), leaky + bias, both grad modes.
    await checkRouting(ctx, { B: 2, I: 1152, J: 10, D: 16 }, { iterations: 3, leaky: true, bias: new Float64Array(1) }, 90, undefined, 0.05);
    await checkRouting(ctx, { B: 3, I: 37, J: 3, D: 7 }, { iterations: 3, gradMode: 'last', bias: new Float64Array(1) }, 91);
    await checkRouting(ctx, { B: 3, I: 37, J: 3, D: 7 }, { iterations: 2, gradMode: 'all', leaky: true }, 92);
    // PrimaryCaps + squash, lengths, longest, mask at the paper's sizes.
    const conv = f32in(2 * 256 * 36, 93, -2, 2);
    const pc = parameter(ctx, [2, 256, 6, 6], conv, 'conv');
    const gu = f32in(2 * 1152 * 8, 94);
    const u = tidy(() => {
      const out = primaryCaps(pc, { types: 32, dim: 8 });
      backward(out, fromArray(ctx, [2, 1152, 8], gu));
      return out;
    });
    const pdims = { B: 2, types: 32, dim: 8, G: 6 };
    const s = ref.primaryCapsReshape(conv, pdims);
    assertClose(await u.read(), ref.squash(s, 8), F32_TOLERANCE, 'GL primary caps');
    assertClose(await gradOf(pc), ref.primaryCapsReshapeBackward(ref.squashBackward(s, gu, 8), pdims), F32_TOLERANCE, 'GL dconv');
    disposeAll(u, pc);
    const v = f32in(4 * 10 * 16, 95, -0.5, 0.5);
    const pv = parameter(ctx, [4, 10, 16], v, 'v');
    const [len, masked] = tidy(() => {
      const l = capsuleLengths(pv);
      const m = maskCapsules(pv, 'longest');
      backward(add(sum(l), sum(m)));
      return [l, m];
    });
    const dims = { B: 4, J: 10, D: 16 };
    const lengths = ref.capsuleLengths(v, dims);
    assertClose(await len.read(), lengths, F32_TOLERANCE, 'GL lengths');
    const longest = ref.longestCapsule(lengths, 4, 10);
    assertClose(await masked.read(), ref.maskCapsules(v, dims, longest), { atol: 0, rtol: 0 }, 'GL mask by longest');
    const dv = ref.capsuleLengthsBackward(v, new Float64Array(40).fill(1), dims);
    const dm = ref.maskCapsulesBackward(new Float64Array(640).fill(1), dims, longest);
    assertClose(await gradOf(pv), dv.map((x, k) => x + dm[k]), F32_TOLERANCE, 'GL dv');
    disposeAll(len, masked, pv);
    await ctx.sync();
  } finally {
    ctx.destroy();
  }
});

sq.run();
prim.run();
pred.run();
rout.run();
lens.run();
tape.run();
gl.run();
