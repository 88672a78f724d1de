// Losses: GPU vs the f64 reference (test/reference/losses.ts), forward (batch mean) and backward,
// with one-hot and two-hot targets, edge lengths (exactly 0.9 / 0.1, 0, 1), odd batch sizes,
// finite-difference checks through the tape, NaN propagation, and shape errors before dispatch.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { F32_TOLERANCE, assertClose } from './helpers/assert.ts';
import { makeRng, randomUniform } from './helpers/random.ts';
import * as ref from './reference/losses.ts';
import { gradcheck } from './reference/gradcheck.ts';
import { fromArray, parameter, tidy } from '../src/tensor.ts';
import { marginLoss, reconstructionLoss, softmaxCrossEntropy, topKCorrect } from '../src/ops/losses.ts';
import { topKCorrect as topKCorrectRef } from './reference/multimnist.ts';
import { backward } from '../src/autograd/tape.ts';
import { fill, mul, sum } from '../src/ops/elementwise.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu } from '../src/gpu/node.ts';

const f32 = (a: ArrayLike<number>) => Float64Array.from(Float32Array.from(a));

/** Multi-hot targets [B, J] with `hot` distinct classes per example. */
function targets(B: number, J: number, hot: number, seed: number): Float64Array {
  const rng = makeRng(seed);
  const t = new Float64Array(B * J);
  for (let b = 0; b < B; b++) {
    let placed = 0;
    while (placed < hot) {
      const k = Math.floor(rng() * J);
      if (t[b * J + k] === 0) { t[b * J + k] = 1; placed++; }
    }
  }
  return t;
}

/** loss(x) on the GPU and d loss / d x, with an upstream gradient `scale` (tests the dLoss factor). */
async function lossAndGrad(ctx: GpuContext, shape: number[], x: Float64Array, f: (p: ReturnType<typeof parameter>) => ReturnType<typeof sum>, scale = 1) {
  const p = parameter(ctx, shape, x, 'x');
  const loss = tidy(() => {
    const l = f(p);
    backward(l, fill(ctx, [1], scale));
    return l;
  });
  assert.equal(loss.shape, [1]);
  const result = { loss: await loss.read(), grad: await p.grad!.read() };
  loss.dispose();
  p.dispose();
  return result;
}

const margin = suite('margin loss');

for (const [B, J, hot] of [[1, 10, 1], [7, 10, 1], [13, 10, 2], [130, 10, 2], [5, 3, 1]] as const) {
  margin(`B ${B}, J ${J}, ${hot}-hot targets: mean loss and gradient match the reference`, async () => {
    const ctx = await gpu();
    const L = f32(randomUniform(B * J, B * 31 + J, 0, 1.2));
    const T = targets(B, J, hot, B + hot);
    const t = fromArray(ctx, [B, J], T, 'targets');
    const { loss, grad } = await lossAndGrad(ctx, [B, J], L, (p) => marginLoss(p, t), 0.75);
    assertClose(loss, [ref.marginLoss(L, T, B, J).loss], F32_TOLERANCE, 'loss');
    assertClose(grad, ref.marginLossBackward(L, T, B, J, {}, 0.75), F32_TOLERANCE, 'd loss / d lengths');
    t.dispose();
  });
}

margin('edge lengths: exactly m+ and m- (0.9, 0.1 as f32), 0 and 1, for present and absent classes', async () => {
  const ctx = await gpu();
  const values = [0.9, 0.1, 0, 1, 0.5];
  const J = values.length;
  // Row 0: every class present; row 1: every class absent; row 2: two-hot.
  const L = f32([...values, ...values, ...values]);
  const T = Float64Array.from([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]);
  const t = fromArray(ctx, [3, J], T, 'targets');
  const { loss, grad } = await lossAndGrad(ctx, [3, J], L, (p) => marginLoss(p, t));
  assertClose(loss, [ref.marginLoss(L, T, 3, J).loss], F32_TOLERANCE, 'loss');
  const g = ref.marginLossBackward(L, T, 3, J);
  assertClose(grad, g, F32_TOLERANCE, 'gradient');
  // At the margins (as f32, 0.9f < 0.9 and 0.1f > 0.1 by ~1e-8) the gradient is zero to within rounding.
  assert.ok(Math.abs(grad[0]) < 1e-7 && Math.abs(grad[J + 1]) < 1e-7, `gradient at the margins: ${grad[0]}, ${grad[J + 1]}`);
  // A present class at length 1 and an absent one at 0 cost nothing.
  assert.is(grad[3], 0);
  assert.is(grad[J + 2], 0);
  t.dispose();
});

margin('options m+, m-, lambda are honoured', async () => {
  const ctx = await gpu();
  const [B, J] = [4, 6];
  const L = f32(randomUniform(B * J, 9, 0, 1));
  const T = targets(B, J, 1, 10);
  const opts = { mPlus: 0.8, mMinus: 0.2, lambda: 0.25 };
  const t = fromArray(ctx, [B, J], T);
  const { loss, grad } = await lossAndGrad(ctx, [B, J], L, (p) => marginLoss(p, t, opts));
  assertClose(loss, [ref.marginLoss(L, T, B, J, opts).loss], F32_TOLERANCE, 'loss');
  assertClose(grad, ref.marginLossBackward(L, T, B, J, opts), F32_TOLERANCE, 'gradient');
  t.dispose();
});

margin('finite differences: reference backward, then GPU gradient through the tape', async () => {
  const ctx = await gpu();
  const [B, J] = [3, 5];
  const L = f32(randomUniform(B * J, 21, 0.02, 1.05));
  const T = targets(B, J, 2, 22);
  gradcheck(([v]) => ref.marginLoss(v, T, B, J).loss, [L.slice()], [ref.marginLossBackward(L, T, B, J)], 'margin loss');
  const t = fromArray(ctx, [B, J], T);
  const { grad } = await lossAndGrad(ctx, [B, J], L, (p) => marginLoss(p, t));
  const fd = gradcheck(([v]) => ref.marginLoss(v, T, B, J).loss, [L.slice()], [Float64Array.from(grad)], 'GPU margin gradient', { atol: 1e-6, rtol: 1e-4 });
  assert.ok(fd.checked === B * J);
  t.dispose();
});

margin('a NaN length makes the loss and its gradient NaN (not absorbed by max(0, .))', async () => {
  const ctx = await gpu();
  const L = Float64Array.from([0.5, NaN, 0.2, 0.95]);
  const T = Float64Array.from([1, 0, 0, 1]);
  const t = fromArray(ctx, [2, 2], T);
  const { loss, grad } = await lossAndGrad(ctx, [2, 2], L, (p) => marginLoss(p, t));
  assert.ok(Number.isNaN(loss[0]), `loss ${loss[0]}`);
  assert.ok(Number.isNaN(grad[1]), `gradient ${grad[1]}`);
  assert.ok(Number.isFinite(grad[0]) && Number.isFinite(grad[2]), 'other elements stay finite');
  t.dispose();
});

const recon = suite('reconstruction loss');

for (const [B, P] of [[1, 784], [8, 784], [3, 1], [5, 65], [129, 100]] as const) {
  recon(`B ${B}, P ${P}: mean loss and gradient match the reference`, async () => {
    const ctx = await gpu();
    const R = f32(randomUniform(B * P, B + P, 0, 1));
    const X = f32(Float64Array.from(randomUniform(B * P, B + P + 1, 0, 1), (v) => Math.round(v * 255) / 255));
    const images = fromArray(ctx, [B, P], X, 'images');
    const { loss, grad } = await lossAndGrad(ctx, [B, P], R, (p) => reconstructionLoss(p, images), 2);
    // A sum of P squares in f32: rounding grows like sqrt(P).
    assertClose(loss, [ref.reconstructionLoss(R, X, B, P).loss], { atol: 1e-6 * Math.sqrt(P), rtol: 1e-5 }, 'loss');
    assertClose(grad, ref.reconstructionLossBackward(R, X, B, P, ref.RECON_WEIGHT, 2), F32_TOLERANCE, 'gradient');
    images.dispose();
  });
}

recon('weight option, and finite differences through the tape', async () => {
  const ctx = await gpu();
  const [B, P] = [2, 9];
  const R = f32(randomUniform(B * P, 1, 0, 1));
  const X = f32(randomUniform(B * P, 2, 0, 1));
  const images = fromArray(ctx, [B, P], X);
  const { loss, grad } = await lossAndGrad(ctx, [B, P], R, (p) => reconstructionLoss(p, images, 0.5));
  assertClose(loss, [ref.reconstructionLoss(R, X, B, P, 0.5).loss], F32_TOLERANCE, 'loss with weight 0.5');
  gradcheck(([v]) => ref.reconstructionLoss(v, X, B, P, 0.5).loss, [R.slice()], [Float64Array.from(grad)], 'GPU recon gradient', { atol: 1e-6, rtol: 1e-4 });
  images.dispose();
});

const xent = suite('softmax cross-entropy');

for (const [B, K] of [[1, 10], [7, 10], [64, 10], [3, 1], [5, 300]] as const) {
  xent(`B ${B}, K ${K}: mean loss and gradient match the reference`, async () => {
    const ctx = await gpu();
    const Z = f32(randomUniform(B * K, B * K, -6, 6));
    const rng = makeRng(B + K);
    const labels = Array.from({ length: B }, () => Math.floor(rng() * K));
    const lab = fromArray(ctx, [B], labels, 'labels');
    const { loss, grad } = await lossAndGrad(ctx, [B, K], Z, (p) => softmaxCrossEntropy(p, lab), 1.5);
    assertClose(loss, [ref.softmaxCrossEntropy(Z, labels, B, K).loss], F32_TOLERANCE, 'loss');
    assertClose(grad, ref.softmaxCrossEntropyBackward(Z, labels, B, K, 1.5), F32_TOLERANCE, 'gradient');
    lab.dispose();
  });
}

xent('large logits do not overflow; finite differences through the tape', async () => {
  const ctx = await gpu();
  const [B, K] = [2, 4];
  const Z = f32([1000, -1000, 999, 0, 3, 1, -2, 0.5]);
  const labels = [2, 0];
  const lab = fromArray(ctx, [B], labels);
  const { loss, grad } = await lossAndGrad(ctx, [B, K], Z, (p) => softmaxCrossEntropy(p, lab));
  assertClose(loss, [ref.softmaxCrossEntropy(Z, labels, B, K).loss], F32_TOLERANCE, 'loss');
  assertClose(grad, ref.softmaxCrossEntropyBackward(Z, labels, B, K), F32_TOLERANCE, 'gradient');
  const small = f32(randomUniform(B * K, 3, -2, 2));
  const r = await lossAndGrad(ctx, [B, K], small, (p) => softmaxCrossEntropy(p, lab));
  gradcheck(([v]) => ref.softmaxCrossEntropy(v, labels, B, K).loss, [small.slice()], [Float64Array.from(r.grad)], 'GPU xent gradient', { atol: 1e-6, rtol: 1e-4 });
  lab.dispose();
});

xent('a label outside [0, K) or not an integer makes that example NaN, others unaffected', async () => {
  const ctx = await gpu();
  const [B, K] = [3, 4];
  const Z = f32(randomUniform(B * K, 4, -1, 1));
  const lab = fromArray(ctx, [B], [1, 4, 2.5]);
  const { loss, grad } = await lossAndGrad(ctx, [B, K], Z, (p) => softmaxCrossEntropy(p, lab));
  assert.ok(Number.isNaN(loss[0]), `loss ${loss[0]}`);
  const okRow = ref.softmaxCrossEntropyBackward(Z.slice(0, K), [1], 1, K, 1 / B);
  assertClose(grad.slice(0, K), okRow, F32_TOLERANCE, 'valid row');
  assert.ok(grad.slice(K).every(Number.isNaN), `rows with bad labels: ${grad.slice(K)}`);
  lab.dispose();
});

const errors = suite('loss shape errors');

errors('mismatched shapes are refused before any dispatch', async () => {
  const ctx = await gpu();
  const a = fromArray(ctx, [2, 10], new Float32Array(20));
  const b = fromArray(ctx, [2, 9], new Float32Array(18));
  const flat = fromArray(ctx, [20], new Float32Array(20));
  const lab = fromArray(ctx, [3], [0, 1, 2]);
  const before = ctx.counters.dispatches;
  const isShape = (re: RegExp) => (e: Error) => e instanceof ShapeError && re.test(e.message);
  assert.throws(() => marginLoss(a, b), isShape(/lengths \[2, 10\] and targets \[2, 9\] must have the same shape/));
  assert.throws(() => marginLoss(flat, flat), isShape(/must have shape \[batch, n\]/));
  assert.throws(() => marginLoss(a, a, { lambda: NaN }), isShape(/lambda must be a finite number/));
  assert.throws(() => topKCorrect(a, b), isShape(/topKCorrect: lengths \[2, 10\] and targets \[2, 9\] must have the same shape/));
  assert.throws(() => reconstructionLoss(a, b), isShape(/reconstruction \[2, 10\] and images \[2, 9\]/));
  assert.throws(() => softmaxCrossEntropy(a, lab), isShape(/labels \[3\] must have shape \[2\]/));
  assert.throws(() => softmaxCrossEntropy(flat, lab), isShape(/logits \[20\] must have shape \[batch, classes\]/));
  assert.is(ctx.counters.dispatches, before, 'nothing dispatched');
  for (const t of [a, b, flat, lab]) t.dispose();
});

errors('targets disposed before backward are caught by the tape', async () => {
  const ctx = await gpu();
  const p = parameter(ctx, [1, 3], [0.2, 0.5, 0.95], 'lengths');
  const t = fromArray(ctx, [1, 3], [0, 0, 1]);
  assert.throws(() => tidy(() => {
    const l = marginLoss(p, t);
    t.dispose();
    backward(mul(l, l));
  }), /was disposed before backward/);
  p.dispose();
});

errors('all three losses on the OpenGL adapter (compatibility level)', async () => {
  const gl = await acquireGpu({ backend: 'opengl' });
  try {
    assert.is(gl.adapter.featureLevel, 'compatibility');
    const [B, J, P, K] = [9, 10, 784, 10];
    const L = f32(randomUniform(B * J, 1, 0, 1));
    const T = targets(B, J, 2, 2);
    const t = fromArray(gl, [B, J], T);
    const m = await lossAndGrad(gl, [B, J], L, (p) => marginLoss(p, t));
    assertClose(m.loss, [ref.marginLoss(L, T, B, J).loss], F32_TOLERANCE, 'GL margin loss');
    assertClose(m.grad, ref.marginLossBackward(L, T, B, J), F32_TOLERANCE, 'GL margin gradient');
    // The two-of-two correctness entry point of margin_loss.wgsl, on coarse lengths (ties); the
    // targets of even rows are lengthened so that both outcomes occur.
    const coarse = Float32Array.from(L, (v, k) => Math.round(v * 4) / 4 + (Math.floor(k / J) % 2 === 0 ? T[k] : 0));
    const lc = fromArray(gl, [B, J], coarse);
    const correct = topKCorrect(lc, t);
    const expected = Array.from(topKCorrectRef(coarse, T, B, J));
    assert.equal(Array.from(await correct.read()), expected, 'GL topKCorrect');
    assert.ok(expected.includes(0) && expected.includes(1), `both outcomes: ${expected}`);
    lc.dispose();
    correct.dispose();
    const R = f32(randomUniform(B * P, 3, 0, 1));
    const X = f32(randomUniform(B * P, 4, 0, 1));
    const images = fromArray(gl, [B, P], X);
    const r = await lossAndGrad(gl, [B, P], R, (p) => reconstructionLoss(p, images));
    assertClose(r.loss, [ref.reconstructionLoss(R, X, B, P).loss], { atol: 1e-6 * Math.sqrt(P), rtol: 1e-5 }, 'GL recon loss');
    assertClose(r.grad, ref.reconstructionLossBackward(R, X, B, P), F32_TOLERANCE, 'GL recon gradient');
    const Z = f32(randomUniform(B * K, 5, -5, 5));
    const labels = Array.from({ length: B }, (_, b) => (b * 3) % K);
    const lab = fromArray(gl, [B], labels);
    const x = await lossAndGrad(gl, [B, K], Z, (p) => softmaxCrossEntropy(p, lab));
    assertClose(x.loss, [ref.softmaxCrossEntropy(Z, labels, B, K).loss], F32_TOLERANCE, 'GL xent loss');
    assertClose(x.grad, ref.softmaxCrossEntropyBackward(Z, labels, B, K), F32_TOLERANCE, 'GL xent gradient');
    for (const v of [t, images, lab]) v.dispose();
  } finally {
    gl.destroy();
  }
});

margin.run();
recon.run();
xent.run();
errors.run();
