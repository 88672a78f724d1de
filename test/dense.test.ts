// The dense layer: GPU vs the f64 reference (test/reference/dense.ts), forward and backward, every
// tile variant, odd sizes (no dimension a multiple of any tile, In not a multiple of 4 so the
// padded path runs), the decoder's real sizes (160 -> 512 -> 1024 -> 784 at batch 1 and 8), all
// three activations, a finite-difference check through the tape, shape errors before dispatch.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { F32_TOLERANCE, assertClose, type Tolerance } from './helpers/assert.ts';
import { randomUniform } from './helpers/random.ts';
import { type Activation, denseBackward, denseForward } from './reference/dense.ts';
import { gradcheck } from './reference/gradcheck.ts';
import { fromArray, parameter, tidy } from '../src/tensor.ts';
import { type DenseTiles, chooseDenseTiles, dense, setDenseTiles } from '../src/ops/dense.ts';
import { backward } from '../src/autograd/tape.ts';
import { mul, sum } from '../src/ops/elementwise.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu } from '../src/gpu/node.ts';

const f32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
const ACTS: Activation[] = ['none', 'relu', 'sigmoid'];

// Long dot products in f32: the rounding error grows like sqrt(K) * eps * |terms|, so atol scales
// with sqrt(K) (K = In for y and dW's rows, Out for dx, B for dW) on top of the f32 default.
const tol = (K: number): Tolerance => ({ atol: F32_TOLERANCE.atol * Math.max(1, Math.sqrt(K / 16)), rtol: F32_TOLERANCE.rtol });

interface Case { B: number; In: number; Out: number; act: Activation; bias?: boolean; seed: number }

/** Runs forward and backward (with a random upstream gradient) on the GPU and the reference. */
async function check(ctx: GpuContext, c: Case, what: string): Promise<void> {
  const { B, In, Out, act, seed } = c;
  const x = f32(randomUniform(B * In, seed, -1, 1));
  const W = f32(randomUniform(Out * In, seed + 1, -1 / Math.sqrt(In), 1 / Math.sqrt(In)).map((v) => v * 3));
  const b = c.bias === false ? null : f32(randomUniform(Out, seed + 2, -0.5, 0.5));
  const dy = f32(randomUniform(B * Out, seed + 3, -1, 1));
  const dims = { B, In, Out };
  const yRef = denseForward(x, W, b, dims, act);
  const gRef = denseBackward(x, W, dy, dims, act, yRef);

  const px = parameter(ctx, [B, In], x, 'x');
  const pw = parameter(ctx, [Out, In], W, 'W');
  const pb = b ? parameter(ctx, [Out], b, 'b') : null;
  const gy = fromArray(ctx, [B, Out], dy, 'dy');
  const y = tidy(() => {
    const out = dense(px, pw, pb, act);
    backward(sum(mul(out, gy))); // d/d out of sum(out * dy) is dy
    return out;
  });
  assertClose(await y.read(), yRef, tol(In), `${what}: y`);
  assertClose(await px.grad!.read(), gRef.dx, tol(Out), `${what}: dx`);
  assertClose(await pw.grad!.read(), gRef.dW, tol(B), `${what}: dW`);
  if (pb) assertClose(await pb.grad!.read(), gRef.db, tol(B), `${what}: db`);
  for (const t of [px, pw, pb, gy, y]) t?.dispose();
}

const forced = (ctx: GpuContext, B: number, t: Partial<DenseTiles>): DenseTiles => ({ ...chooseDenseTiles(ctx, B), ...t });

const layer = suite('dense layer');

// Odd sizes: nothing is a multiple of any tile; In = 13 and 37 take the zero-padded path.
const ODD: Array<[number, number, number]> = [[1, 1, 1], [3, 13, 7], [5, 37, 19], [11, 36, 45], [17, 20, 9]];
for (const [B, In, Out] of ODD) {
  for (const act of ACTS) {
    layer(`B ${B}, In ${In}, Out ${Out}, ${act}: forward and backward match the reference`, async () => {
      const ctx = await gpu();
      await check(ctx, { B, In, Out, act, seed: B * 1000 + In * 10 + Out }, `${B}x${In}->${Out} ${act}`);
    });
  }
}

layer('without a bias', async () => {
  const ctx = await gpu();
  await check(ctx, { B: 6, In: 24, Out: 10, act: 'relu', bias: false, seed: 77 }, 'no bias');
});

// Every tile variant of each of the three GEMMs (the heuristic picks among these and defaults).
const VARIANTS: Array<[string, (ctx: GpuContext, B: number) => DenseTiles]> = [
  ['forward 8x1', (c, B) => forced(c, B, { forward: { TM: 8, TN4: 1 } })],
  ['forward 8x2', (c, B) => forced(c, B, { forward: { TM: 8, TN4: 2 } })],
  ['forward 8x4, WG 8', (c, B) => forced(c, B, { forward: { TM: 8, TN4: 4 }, WG: 8 })],
  ['forward 3x3, WG 64', (c, B) => forced(c, B, { forward: { TM: 3, TN4: 3 }, WG: 64 })],
  ['dx 1x4, dW 1x2', (c, B) => forced(c, B, { gradInput: { TM: 1, TN4: 4 }, gradWeight: { TM4: 1, TN4: 2 } })],
  ['dx 8x4, dW 2x4', (c, B) => forced(c, B, { gradInput: { TM: 8, TN4: 4 }, gradWeight: { TM4: 2, TN4: 4 } })],
  ['dx 3x3, dW 2x1, WG 64', (c, B) => forced(c, B, { gradInput: { TM: 3, TN4: 3 }, gradWeight: { TM4: 2, TN4: 1 }, WG: 64 })],
];
for (const [name, choose] of VARIANTS) {
  layer(`tile variant ${name}: odd and aligned sizes`, async () => {
    const ctx = await gpu();
    setDenseTiles(choose);
    try {
      await check(ctx, { B: 13, In: 29, Out: 21, act: 'relu', seed: 5 }, `${name} odd`);
      await check(ctx, { B: 16, In: 64, Out: 48, act: 'sigmoid', seed: 6 }, `${name} aligned`);
    } finally {
      setDenseTiles(null);
    }
  });
}

// The decoder of the paper: 160 -> 512 ReLU -> 1024 ReLU -> 784 sigmoid, layer by layer.
const DECODER: Array<[number, number, Activation]> = [[160, 512, 'relu'], [512, 1024, 'relu'], [1024, 784, 'sigmoid']];
for (const B of [1, 8]) {
  for (const [In, Out, act] of DECODER) {
    layer(`decoder layer ${In} -> ${Out} (${act}) at batch ${B}`, async () => {
      const ctx = await gpu();
      await check(ctx, { B, In, Out, act, seed: In + Out + B }, `decoder ${In}->${Out} B=${B}`);
    });
  }
}

layer('the tile heuristic picks valid shapes for batch 1 to 128', async () => {
  const ctx = await gpu();
  for (const B of [1, 2, 3, 8, 32, 128]) {
    const t = chooseDenseTiles(ctx, B);
    assert.ok(t.forward.TN4 >= 1 && t.forward.TN4 <= 4 && t.forward.TM <= 8, `batch ${B}: ${JSON.stringify(t)}`);
  }
});

layer('finite differences through the tape: loss = sum(dense(dense(x, W1, b1, relu), W2, b2, sigmoid) * c)', async () => {
  const ctx = await gpu();
  const [B, In, H, Out] = [3, 6, 5, 4];
  const x = f32(randomUniform(B * In, 1, -1, 1));
  const W1 = f32(randomUniform(H * In, 2, -0.8, 0.8));
  const b1 = f32(randomUniform(H, 3, -0.2, 0.2));
  const W2 = f32(randomUniform(Out * H, 4, -0.8, 0.8));
  const b2 = f32(randomUniform(Out, 5, -0.2, 0.2));
  const c = f32(randomUniform(B * Out, 6, -1, 1));
  const loss = ([vx, vW1, vb1, vW2, vb2]: Float64Array[]) => {
    const h = denseForward(vx, vW1, vb1, { B, In, Out: H }, 'relu');
    const y = denseForward(h, vW2, vb2, { B, In: H, Out }, 'sigmoid');
    return y.reduce((s, v, i) => s + v * c[i], 0);
  };
  // Numerical gradient of the f64 reference (|pre-activations| stay away from the ReLU kink here).
  const inputs = [x, W1, b1, W2, b2].map((a) => a.slice());
  const eps = 1e-6;
  const numeric = inputs.map((arr) => Float64Array.from(arr, (_, i) => {
    const saved = arr[i];
    arr[i] = saved + eps;
    const plus = loss(inputs);
    arr[i] = saved - eps;
    const minus = loss(inputs);
    arr[i] = saved;
    return (plus - minus) / (2 * eps);
  }));
  // The same check through the reference backward (it must agree with the numbers too).
  const h = denseForward(x, W1, b1, { B, In, Out: H }, 'relu');
  const y = denseForward(h, W2, b2, { B, In: H, Out }, 'sigmoid');
  const g2 = denseBackward(h, W2, c, { B, In: H, Out }, 'sigmoid', y);
  const g1 = denseBackward(x, W1, g2.dx, { B, In, Out: H }, 'relu', h);
  gradcheck(loss, inputs, [g1.dx, g1.dW, g1.db, g2.dW, g2.db], 'two dense layers (reference)');

  const p = [x, W1, b1, W2, b2].map((a, k) => parameter(ctx, [[B, In], [H, In], [H], [Out, H], [Out]][k], a, `p${k}`));
  const gc = fromArray(ctx, [B, Out], c, 'c');
  tidy(() => backward(sum(mul(dense(dense(p[0], p[1], p[2], 'relu'), p[3], p[4], 'sigmoid'), gc))));
  for (let k = 0; k < p.length; k++) {
    // f32 GPU gradients vs f64 central differences: step error O(eps^2) plus f32 rounding.
    assertClose(await p[k].grad!.read(), numeric[k], { atol: 2e-5, rtol: 1e-4 }, `input ${k} vs finite differences`);
  }
  for (const t of [...p, gc]) t.dispose();
});

layer('a NaN input gives NaN outputs through every activation (ReLU does not turn it into 0)', async () => {
  const ctx = await gpu();
  const x = fromArray(ctx, [2, 4], [NaN, 1, 2, 3, 1, 1, 1, 1]);
  const w = fromArray(ctx, [3, 4], new Float32Array(12).fill(-1));
  for (const act of ACTS) {
    const y = tidy(() => dense(x, w, null, act));
    const values = await y.read();
    y.dispose();
    assert.ok(values.slice(0, 3).every(Number.isNaN), `${act}: row with a NaN input gives ${values.slice(0, 3)}`);
    assert.ok(values.slice(3).every(Number.isFinite), `${act}: the other row stays finite`);
  }
  x.dispose();
  w.dispose();
});

layer('a NaN upstream gradient is not absorbed by the ReLU backward (as the reference: dy * [y > 0])', async () => {
  const ctx = await gpu();
  const [B, In, Out] = [2, 4, 3];
  const x = Float64Array.from([1, -1, 0.5, 2, -1, 1, 1, -2]);
  const W = Float64Array.from([1, 0, 0, 0, -1, 0, 0, 0, 0, 1, 1, 0]);
  const px = parameter(ctx, [B, In], x, 'x');
  const pw = parameter(ctx, [Out, In], W, 'W');
  const dyValues = [NaN, NaN, 1, 1, 1, 1];
  const dy = fromArray(ctx, [B, Out], dyValues);
  tidy(() => backward(dense(px, pw, null, 'relu'), dy));
  const ref = denseBackward(x, W, Float64Array.from(dyValues), { B, In, Out }, 'relu', denseForward(x, W, null, { B, In, Out }, 'relu'));
  const dw = await pw.grad!.read();
  // Units 0 (active) and 1 (inactive, y = 0 in row 0) both see a NaN gradient in row 0.
  assert.ok(Number.isNaN(dw[0]) && Number.isNaN(dw[4]), `dW rows 0 and 1: ${dw.slice(0, 8)}`);
  assert.ok(Number.isNaN(ref.dW[4]), 'the reference agrees');
  assert.ok(dw.slice(8).every(Number.isFinite), `dW row 2: ${dw.slice(8)}`);
  for (const t of [px, pw, dy]) t.dispose();
});

layer('wrong shapes are refused with a clear message before any dispatch', async () => {
  const ctx = await gpu();
  const x = fromArray(ctx, [2, 3], [1, 2, 3, 4, 5, 6]);
  const w = fromArray(ctx, [4, 3], new Float32Array(12));
  const wBad = fromArray(ctx, [4, 5], new Float32Array(20));
  const b = fromArray(ctx, [4], new Float32Array(4));
  const bBad = fromArray(ctx, [3], new Float32Array(3));
  const flat = fromArray(ctx, [6], new Float32Array(6));
  const before = ctx.counters.dispatches;
  const isShape = (re: RegExp) => (e: Error) => e instanceof ShapeError && re.test(e.message);
  assert.throws(() => dense(x, wBad, b), isShape(/3 features but weight \[4, 5\] expects 5/));
  assert.throws(() => dense(x, w, bBad), isShape(/bias \[3\] must have shape \[4\]/));
  assert.throws(() => dense(flat, w, b), isShape(/input \[6\] must have shape \[batch, in\]/));
  assert.throws(() => dense(x, flat, b), isShape(/weight \[6\] must have shape \[out, in\]/));
  assert.throws(() => dense(x, w, b, 'tanh' as Activation), isShape(/activation 'tanh'/));
  assert.is(ctx.counters.dispatches, before, 'nothing dispatched');
  for (const t of [x, w, wBad, b, bBad, flat]) t.dispose();
});

layer('on the OpenGL adapter (compatibility level): odd sizes, every activation, a decoder layer', async () => {
  const gl = await acquireGpu({ backend: 'opengl' });
  try {
    assert.is(gl.adapter.featureLevel, 'compatibility');
    for (const act of ACTS) await check(gl, { B: 5, In: 37, Out: 19, act, seed: 8 }, `OpenGL ${act}`);
    await check(gl, { B: 8, In: 1024, Out: 784, act: 'sigmoid', seed: 9 }, 'OpenGL decoder fc3');
    setDenseTiles((c, B) => forced(c, B, { forward: { TM: 8, TN4: 4 }, gradInput: { TM: 8, TN4: 4 }, gradWeight: { TM4: 2, TN4: 4 } }));
    await check(gl, { B: 13, In: 64, Out: 48, act: 'relu', seed: 10 }, 'OpenGL largest tiles');
  } finally {
    setDenseTiles(null);
    gl.destroy();
  }
});

layer.run();
