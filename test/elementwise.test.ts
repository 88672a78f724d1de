// Elementwise kernels and the sum: GPU vs the f64 reference, forward and backward, on sizes that
// are and are not multiples of the workgroup, and a grid large enough to need folding.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { F32_TOLERANCE, assertClose } from './helpers/assert.ts';
import { randomUniform } from './helpers/random.ts';
import * as ref from './reference/elementwise.ts';
import { gradcheck } from './reference/gradcheck.ts';
import { fromArray, tidy, parameter } from '../src/tensor.ts';
import { KERNELS, add, addInto, mul, relu, sigmoid, sum, mean, fill } from '../src/ops/elementwise.ts';
import { backward } from '../src/autograd/tape.ts';
import { ShapeError } from '../src/gpu/errors.ts';

const SIZES = [1, 63, 64, 65, 1000, 4097, 100_003];
const f64 = (x: Float32Array) => Float64Array.from(x);
const elementwise = suite('elementwise kernels');

for (const n of SIZES) {
  elementwise(`forward add, mul, relu, sigmoid at n = ${n}`, async () => {
    const ctx = await gpu();
    // Inputs rounded to f32 first, so the reference sees exactly the GPU's inputs.
    const a = f64(Float32Array.from(randomUniform(n, n, -4, 4)));
    const b = f64(Float32Array.from(randomUniform(n, n + 1, -4, 4)));
    const [ga, gb] = [fromArray(ctx, [n], a), fromArray(ctx, [n], b)];
    const outs = tidy(() => [add(ga, gb), mul(ga, gb), relu(ga), sigmoid(ga)]);
    assertClose(await outs[0].read(), ref.add(a, b), F32_TOLERANCE, 'add');
    assertClose(await outs[1].read(), ref.mul(a, b), F32_TOLERANCE, 'mul');
    assertClose(await outs[2].read(), ref.relu(a), F32_TOLERANCE, 'relu');
    assertClose(await outs[3].read(), ref.sigmoid(a), F32_TOLERANCE, 'sigmoid');
    for (const t of [...outs, ga, gb]) t.dispose();
  });
}

elementwise('sigmoid stays finite and exact at large |x|', async () => {
  const ctx = await gpu();
  const x = Float64Array.from([-1e30, -100, -20, 0, 20, 100, 1e30]);
  const out = tidy(() => sigmoid(fromArray(ctx, [x.length], x)));
  const values = await out.read();
  out.dispose();
  assert.ok(values.every(Number.isFinite), `non-finite sigmoid: ${values}`);
  assertClose(values, ref.sigmoid(x), F32_TOLERANCE, 'sigmoid extremes');
});

elementwise('relu and sigmoid pass NaN through (the training monitor must see it)', async () => {
  const ctx = await gpu();
  const [r, s] = tidy(() => {
    const x = fromArray(ctx, [3], [NaN, -1, 2]);
    return [relu(x), sigmoid(x)];
  });
  const [rv, sv] = [await r.read(), await s.read()];
  assert.ok(Number.isNaN(rv[0]) && rv[1] === 0 && rv[2] === 2, `relu: ${rv}`);
  assert.ok(Number.isNaN(sv[0]), `sigmoid: ${sv}`);
  r.dispose();
  s.dispose();
});

for (const n of [1, 255, 4096, 4097, 300_001]) {
  elementwise(`sum at n = ${n} (${n > 4096 ? 'two passes' : 'one pass'})`, async () => {
    const ctx = await gpu();
    const x = f64(Float32Array.from(randomUniform(n, 3 * n, -1, 1)));
    const out = tidy(() => sum(fromArray(ctx, [n], x)));
    // A tree of f32 partial sums: error grows like sqrt(n) * eps * max|x|, so atol scales with sqrt(n).
    assertClose(await out.read(), [ref.sum(x)], { atol: 1e-6 * Math.sqrt(n), rtol: 1e-5 }, `sum of ${n}`);
    out.dispose();
  });
}

elementwise('sum over 17 million elements takes three passes and stays accurate', async () => {
  const ctx = await gpu();
  const n = 4096 * 4096 + 4099;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (i % 7) * 0.125; // exact in f32, so the reference is exact
  const t = fromArray(ctx, [n], x);
  const before = ctx.counters.dispatches;
  const out = tidy(() => sum(t));
  assert.is(ctx.counters.dispatches - before, 3, 'three reduction passes');
  let expected = 0;
  for (let i = 0; i < n; i++) expected += x[i];
  assertClose(await out.read(), [expected], { atol: 0, rtol: 1e-6 }, 'sum of 17M');
  out.dispose();
  t.dispose();
});

elementwise('sum of an empty tensor is 0; mean divides by the count', async () => {
  const ctx = await gpu();
  const [s, m] = tidy(() => [sum(fromArray(ctx, [0], [])), mean(fromArray(ctx, [4], [1, 2, 3, 6]))]);
  assert.equal(Array.from(await s.read()), [0]);
  assert.equal(Array.from(await m.read()), [3]);
  s.dispose();
  m.dispose();
});

elementwise('a grid above 65,535 workgroups is folded into x and y and covers every element', async () => {
  const ctx = await gpu();
  const n = 200_001;
  const oneThread = { ...KERNELS.add, constants: { WG: 1 } };
  assert.ok(ctx.fold(n)[1] > 1, 'needs folding');
  const [fx, fy] = ctx.fold(n);
  assert.ok(fx <= ctx.limits.maxComputeWorkgroupsPerDimension && fx * fy >= n, `fold ${fx}x${fy}`);
  const a = Float32Array.from({ length: n }, (_, i) => i);
  const b = Float32Array.from({ length: n }, () => 0.5);
  const [ga, gb, out] = [fromArray(ctx, [n], a), fromArray(ctx, [n], b), fill(ctx, [n + 7], -1)];
  ctx.dispatch(oneThread, [ga.buffer, gb.buffer, out.buffer], [n], n);
  const values = await out.read();
  for (let i = 0; i < n; i++) if (values[i] !== i + 0.5) assert.unreachable(`element ${i}: ${values[i]}`);
  for (let i = n; i < n + 7; i++) assert.is(values[i], -1, `element ${i} past the end untouched`);
  for (const t of [ga, gb, out]) t.dispose();
});

elementwise('addInto accumulates in place', async () => {
  const ctx = await gpu();
  const a = fromArray(ctx, [5], [1, 2, 3, 4, 5]);
  const b = fromArray(ctx, [5], [10, 20, 30, 40, 50]);
  addInto(a, b, 0.5);
  assert.equal(Array.from(await a.read()), [6, 12, 18, 24, 30]);
  a.dispose();
  b.dispose();
});

elementwise('mismatched shapes are refused before any dispatch', async () => {
  const ctx = await gpu();
  const a = fromArray(ctx, [2, 3], [1, 2, 3, 4, 5, 6]);
  const b = fromArray(ctx, [3, 2], [1, 2, 3, 4, 5, 6]);
  const before = ctx.counters.dispatches;
  assert.throws(() => add(a, b), (e: Error) => e instanceof ShapeError && /\[2, 3\] and \[3, 2\]/.test(e.message));
  assert.throws(() => fromArray(ctx, [2, 2], [1, 2, 3]), /holds 4 values, got 3/);
  assert.is(ctx.counters.dispatches, before);
  a.dispose();
  b.dispose();
});

const gradients = suite('elementwise backward');

gradients('reference backward of relu and sigmoid matches finite differences', () => {
  const x = randomUniform(50, 11, -3, 3);
  const g = randomUniform(50, 12);
  const dot = (u: Float64Array, v: Float64Array) => u.reduce((s, ui, i) => s + ui * v[i], 0);
  gradcheck(([v]) => dot(ref.relu(v), g), [x], [ref.reluBackward(x, g)], 'relu');
  gradcheck(([v]) => dot(ref.sigmoid(v), g), [x], [ref.sigmoidBackward(ref.sigmoid(x), g)], 'sigmoid');
});

for (const n of [7, 1000, 70_001]) {
  gradients(`GPU backward of sum(sigmoid(relu(a * b + a)) * b) at n = ${n} matches the reference`, async () => {
    const ctx = await gpu();
    const a = f64(Float32Array.from(randomUniform(n, 5 * n, -2, 2)));
    const b = f64(Float32Array.from(randomUniform(n, 5 * n + 1, -2, 2)));
    // f(a, b) = sum(sigmoid(relu(a*b + a)) * b): a feeds two ops, so its gradient accumulates.
    const forward = (va: Float64Array, vb: Float64Array) => {
      const h = ref.add(ref.mul(va, vb), va);
      const r = ref.relu(h);
      const s = ref.sigmoid(r);
      return { h, s, f: ref.sum(ref.mul(s, vb)) };
    };
    const { h, s } = forward(a, b);
    const ds = b; // d f / d s
    const dr = ref.sigmoidBackward(s, ds);
    const dh = ref.reluBackward(h, dr);
    const da = ref.add(ref.mul(dh, b), dh);
    const db = ref.add(ref.mul(dh, a), s);
    if (n <= 1000) gradcheck(([va, vb]) => forward(va, vb).f, [a.slice(), b.slice()], [da, db], 'reference graph', { maxPerInput: 100 });

    const pa = parameter(ctx, [n], a, 'a');
    const pb = parameter(ctx, [n], b, 'b');
    const loss = tidy(() => {
      const l = sum(mul(sigmoid(relu(add(mul(pa, pb), pa))), pb));
      backward(l);
      return l;
    });
    assertClose(await loss.read(), [forward(a, b).f], { atol: 1e-6 * Math.sqrt(n), rtol: 1e-5 }, 'loss');
    assertClose(await pa.grad!.read(), da, F32_TOLERANCE, 'd loss / d a');
    assertClose(await pb.grad!.read(), db, F32_TOLERANCE, 'd loss / d b');
    for (const t of [loss, pa, pb]) t.dispose();
  });
}

elementwise.run();
gradients.run();
