// The tape: reverse topological order, accumulation where a tensor feeds several ops, freeing
// what it no longer needs, deep graphs, no-grad mode, and a pool that does not grow over 1,000 steps.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { assertClose, F32_TOLERANCE } from './helpers/assert.ts';
import { fromArray, parameter, tidy } from '../src/tensor.ts';
import { add, mul, relu, sigmoid, sum } from '../src/ops/elementwise.ts';
import { backward, noGrad, topologicalOrder } from '../src/autograd/tape.ts';

const tape = suite('autograd tape');

tape('topological order puts every input before the tensors made from it', async () => {
  const ctx = await gpu();
  const a = parameter(ctx, [3], [1, 2, 3], 'a');
  tidy(() => {
    const b = relu(a);
    const c = mul(b, a);
    const d = add(c, b);
    const order = topologicalOrder(d);
    const pos = (t: unknown) => order.indexOf(t as never);
    assert.is(order.length, 4);
    assert.ok(pos(a) < pos(b) && pos(b) < pos(c) && pos(c) < pos(d));
  });
  a.dispose();
});

tape('a diamond accumulates: d/dx of (x*x + x) * x is 3x^2 + 2x', async () => {
  const ctx = await gpu();
  const xs = [-2, -0.5, 0, 1.5, 3];
  const x = parameter(ctx, [5], xs, 'x');
  tidy(() => backward(sum(mul(add(mul(x, x), x), x))));
  assertClose(await x.grad!.read(), xs.map((v) => 3 * v * v + 2 * v), F32_TOLERANCE, 'dx');
  // A second backward adds to the leaf's gradient, as in PyTorch, until it is zeroed.
  tidy(() => backward(sum(x)));
  assertClose(await x.grad!.read(), xs.map((v) => 3 * v * v + 2 * v + 1), F32_TOLERANCE, 'accumulated dx');
  x.dispose();
});

tape('only tensors that need a gradient get one; noGrad records nothing', async () => {
  const ctx = await gpu();
  const w = parameter(ctx, [2], [1, 2], 'w');
  const c = fromArray(ctx, [2], [3, 4], 'constant');
  tidy(() => {
    const y = mul(w, c);
    assert.ok(y.requiresGrad && y.creator?.name === 'mul');
    const z = noGrad(() => mul(w, c));
    assert.ok(!z.requiresGrad && z.creator === null);
    backward(sum(y));
  });
  assert.is(c.grad, null);
  assert.equal(Array.from(await w.grad!.read()), [3, 4]);
  w.dispose();
  c.dispose();
});

tape('a chain of 3,000 ops back-propagates (iterative, no recursion)', async () => {
  const ctx = await gpu();
  const x = parameter(ctx, [4], [0.1, 0.2, 0.3, 0.4], 'x');
  const one = fromArray(ctx, [4], [1, 1, 1, 1]);
  tidy(() => {
    let h = x;
    for (let k = 0; k < 3000; k++) h = mul(h, one);
    backward(sum(h));
  });
  assert.equal(Array.from(await x.grad!.read()), [1, 1, 1, 1]);
  x.dispose();
  one.dispose();
});

tape('backward after the forward tensors were disposed says what to do', async () => {
  const ctx = await gpu();
  const x = parameter(ctx, [2], [1, 2], 'x');
  const loss = tidy(() => sum(relu(x)));
  assert.throws(() => backward(loss), /was disposed before backward\(\).*same tidy/);
  loss.dispose();
  x.dispose();
});

tape('1,000 training-like steps: the pool creates no buffer after warm-up and frees everything', async () => {
  const ctx = await gpu();
  const n = 1000;
  const w = parameter(ctx, [n], Array.from({ length: n }, (_, i) => Math.sin(i)), 'w');
  const b = parameter(ctx, [n], Array.from({ length: n }, (_, i) => Math.cos(i)), 'b');
  const x = fromArray(ctx, [n], Array.from({ length: n }, (_, i) => (i % 13) / 13), 'x');
  const step = () => {
    const loss = tidy(() => {
      const l = sum(sigmoid(add(relu(mul(w, x)), b)));
      backward(l);
      return l;
    });
    loss.dispose();
    w.grad?.dispose();
    w.grad = null;
    b.grad?.dispose();
    b.grad = null;
  };
  for (let k = 0; k < 10; k++) step();
  await ctx.sync();
  const warm = ctx.poolStats();
  for (let k = 0; k < 1000; k++) step();
  await ctx.sync();
  const after = ctx.poolStats();
  assert.is(after.created, warm.created, `buffers created after warm-up: ${after.created - warm.created}`);
  assert.is(after.inUse, warm.inUse, 'tensors in use return to the same count');
  assert.is(after.allocatedBytes, warm.allocatedBytes);
  for (const t of [w, b, x]) t.dispose();
});

tape.run();
