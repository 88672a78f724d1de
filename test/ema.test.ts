// The exponential moving average of parameters (kernels/ema.wgsl, src/optim/ema.ts) vs the f64
// reference: four updates on odd-sized tensors and on the paper's digit.W shape, the decay cap early
// in a run, start() copying bit for bit, the GPU skip flag (a skipped step changes no bit), export
// and import (continuing is bitwise identical), the Vulkan adapter, and errors before any dispatch
// (also Adam's and the average's shared vec4 buffer check).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { assertClose } from './helpers/assert.ts';
import { randomUniform } from './helpers/random.ts';
import * as ref from './reference/ema.ts';
import { Tensor, fromArray, parameter } from '../src/tensor.ts';
import { Adam } from '../src/optim/adam.ts';
import { ParameterEma, emaDecayAt } from '../src/optim/ema.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu } from '../src/gpu/node.ts';

const f32 = (a: ArrayLike<number>) => Float64Array.from(Float32Array.from(a));
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
// Each update is two f32 products and a sum (|values| <= 1), repeated: about 2 ulp at most
// (a 1e-6 relative error in either term fails).
const TIGHT = { atol: 1.5e-7, rtol: 2.5e-7 };

/** start() at step `since`, then `updates` updates, each after giving every parameter new values; GPU average vs reference. */
async function checkAgainstReference(ctx: GpuContext, shapes: number[][], decay: number, since: number, updates: number): Promise<void> {
  const params = shapes.map((s, k) => parameter(ctx, s, f32(randomUniform(s.reduce((a, b) => a * b, 1), k, -1, 1)), `p${k}`));
  const ema = new ParameterEma(ctx, decay);
  ema.start(params, since);
  const averages = await Promise.all(params.map(async (p) => Float64Array.from(await p.read())));
  for (let t = since + 1; t <= since + updates; t++) {
    for (const [k, p] of params.entries()) {
      const values = f32(randomUniform(p.size, 100 * t + k, -1, 1));
      ctx.upload(p.buffer, Float32Array.from(values));
      ref.emaUpdate(averages[k], values, ref.emaDecayAt(decay, t));
    }
    ema.update(params, t);
  }
  const state = await ema.exportState();
  assert.is(state.since, since);
  assert.is(state.decay, decay);
  for (const [k, p] of params.entries()) assertClose(state.params[p.name], averages[k], TIGHT, `average of ${p.name} [${p.shape.join(', ')}] (decay ${decay}, since ${since})`);
  ema.dispose();
  params.forEach((p) => p.dispose());
}

const ema = suite('parameter EMA');

ema('four updates on odd-sized tensors match the reference, early in a run (capped decay) and late', async () => {
  const ctx = await gpu();
  const shapes = [[7], [33, 5], [3, 1, 9, 9], [1], [2, 3]];
  await checkAgainstReference(ctx, shapes, 0.999, 0, 4); // decays 2/11, 3/12, ...: the cap
  await checkAgainstReference(ctx, shapes, 0.9, 5000, 4); // 0.9 throughout
});

ema('the paper\'s digit.W [1152, 10, 16, 8] and a tensor whose grid folds past 65,535 workgroups', async () => {
  const ctx = await gpu();
  await checkAgainstReference(ctx, [[1152, 10, 16, 8]], 0.99, 300, 2);
  await checkAgainstReference(ctx, [[65_535 * 4 * 64 + 13]], 0.5, 1, 1);
});

ema('the decay cap: min(decay, (1 + t) / (10 + t))', () => {
  const cases: Array<[number, number, number]> = [[0.999, 1, 2 / 11], [0.999, 100, 101 / 110], [0.999, 8990, 8991 / 9000], [0.999, 8991, 0.999], [0.999, 20_000, 0.999], [0.15, 1, 0.15], [0.5, 1, 2 / 11], [0.9, 80, 0.9]];
  for (const [decay, t, expected] of cases) assert.is(emaDecayAt(decay, t), expected, `decay ${decay} at t ${t}`);
});

ema('start() copies the parameters bit for bit (negative zero, subnormal and huge values included)', async () => {
  const ctx = await gpu();
  const values = Float32Array.from([1, -0.5, 1e-38, -3e38, 123.456, -0, 7, 1e-45, -2]);
  const p = parameter(ctx, [9], values, 'w');
  const e = new ParameterEma(ctx, 0.9);
  e.start([p], 3);
  assert.is(e.since, 3);
  assert.ok(bytes((await e.exportState()).params.w).equals(bytes(values)), 'the copy differs from the parameters');
  e.dispose();
  p.dispose();
});

ema('a skip flag on the GPU: not 0 (1 or NaN) leaves the average bitwise as it was; 0 updates as without a flag', async () => {
  const ctx = await gpu();
  const flags = fromArray(ctx, [4], [7, 0, 1, NaN], 'flags');
  const run = async (flagAt: Array<number | null>) => {
    const p = parameter(ctx, [37], f32(randomUniform(37, 5, -1, 1)), 'w');
    const e = new ParameterEma(ctx, 0.9);
    e.start([p], 10);
    const snapshots: Float32Array[] = [];
    for (let s = 0; s < flagAt.length; s++) {
      ctx.upload(p.buffer, Float32Array.from(randomUniform(37, 60 + s, -1, 1)));
      const index = flagAt[s];
      e.update([p], 11 + s, index === null ? {} : { skipFlag: { buffer: flags.buffer, index } });
      snapshots.push((await e.exportState()).params.w);
    }
    e.dispose();
    p.dispose();
    return snapshots;
  };
  const plain = await run([null, null, null]);
  const go = await run([1, 1, 1]);
  for (let s = 0; s < 3; s++) assert.ok(bytes(go[s]).equals(bytes(plain[s])), `flag 0 at update ${s} differs from no flag`);
  for (const skipIndex of [2, 3]) {
    const skipped = await run([1, skipIndex, 1]);
    assert.ok(bytes(skipped[1]).equals(bytes(skipped[0])), `the average changed on a skipped step (flag index ${skipIndex})`);
    assert.not.ok(bytes(skipped[2]).equals(bytes(skipped[1])), 'the update after the skipped one averages again');
  }
  flags.dispose();
});

ema('export, import into a new average, continue: bitwise identical to an uninterrupted run', async () => {
  const ctx = await gpu();
  const run = async (split: boolean) => {
    const p = parameter(ctx, [5, 10], f32(randomUniform(50, 3, -1, 1)), 'w');
    const q = parameter(ctx, [3], [1, 2, 3], 'b');
    let e = new ParameterEma(ctx, 0.95);
    e.start([p, q], 0);
    for (let t = 1; t <= 4; t++) {
      if (split && t === 3) {
        const state = await e.exportState();
        assert.equal(Object.keys(state.params).sort(), ['b', 'w']);
        e.dispose();
        e = new ParameterEma(ctx, 0.95);
        e.importState(state, [p, q]);
        assert.is(e.since, 0);
      }
      ctx.upload(p.buffer, Float32Array.from(randomUniform(50, 40 + t, -1, 1)));
      ctx.upload(q.buffer, Float32Array.from(randomUniform(3, 50 + t, -1, 1)));
      e.update([p, q], t);
    }
    const state = await e.exportState();
    e.dispose();
    p.dispose();
    q.dispose();
    return [...state.params.w, ...state.params.b];
  };
  assert.equal(await run(true), await run(false));
});

ema('errors before any dispatch: bad decay, update before start, unknown or reshaped parameters, a bad import', async () => {
  const ctx = await gpu();
  for (const decay of [0, 1, -0.5, NaN, 2]) assert.throws(() => new ParameterEma(ctx, decay), /decay must be a number in \(0, 1\)/);
  const w = parameter(ctx, [4], [1, 2, 3, 4], 'w');
  const other = parameter(ctx, [2], [1, 2], 'other');
  const anon = parameter(ctx, [2], [1, 2], '');
  const e = new ParameterEma(ctx, 0.9);
  const before = ctx.counters.dispatches;
  assert.throws(() => e.update([w], 1), /start\(\) or importState\(\) first/);
  assert.is(e.since, null);
  assert.throws(() => e.start([w, anon], 0), (err: Error) => err instanceof ShapeError && /has no name/.test(err.message));
  assert.is(ctx.counters.dispatches, before, 'a refused start dispatches nothing');
  e.start([w], 0);
  const started = ctx.counters.dispatches;
  assert.throws(() => e.update([w, other], 1), (err: Error) => err instanceof ShapeError && /'other' \[2\] has no average/.test(err.message));
  assert.throws(() => e.update([w], 0), /t must be an integer >= 1/);
  assert.throws(() => e.update([w], 1, { skipFlag: { buffer: w.buffer, index: w.buffer.size / 4 } }), /skip flag index \d+ is outside buffer/);
  assert.is(ctx.counters.dispatches, started, 'refused updates dispatch nothing');
  const good = await e.exportState();
  assert.throws(() => e.importState({ decay: 0.9, since: -1, params: { w: new Float32Array(3), extra: new Float32Array(1) } }, [w, other]), (err: Error) =>
    err instanceof ShapeError && /since -1/.test(err.message) && /ema\.w holds 3 values/.test(err.message) && /no ema\.other/.test(err.message) && /ema\.extra matches no parameter/.test(err.message));
  assert.equal(await e.exportState(), good, 'a refused import changes nothing');
  e.dispose();
  [w, other, anon].forEach((t: Tensor) => t.dispose());
});

// Both update kernels load whole vec4 (checkVec4Buffers, src/optim/adam.ts): a tensor over a
// buffer the pool would never make (5 elements in 20 bytes; 4 in 20: not a multiple of 16) is
// refused by the average and by Adam before anything is recorded.
ema('a buffer that cannot be read as vec4 is refused by the average and by Adam, before any dispatch', async () => {
  const ctx = await gpu();
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const raw = [ctx.device.createBuffer({ size: 20, usage, label: 'short' }), ctx.device.createBuffer({ size: 20, usage, label: 'odd' })];
  // Not disposed (that would hand foreign buffers to the pool): the buffers are destroyed below.
  const short = new Tensor(ctx, [5], raw[0], 'short');
  const odd = new Tensor(ctx, [4], raw[1], 'odd');
  const fine = parameter(ctx, [4], [1, 2, 3, 4], 'fine');
  const before = ctx.counters.dispatches;
  const e = new ParameterEma(ctx, 0.9);
  assert.throws(() => e.start([fine, short], 0), /ParameterEma\.start: buffer 'short' of 20 bytes cannot be read as 2 vec4/);
  assert.throws(() => e.start([odd], 0), /buffer 'odd' of 20 bytes cannot be read as 1 vec4/);
  assert.is(e.since, null, 'a refused start starts nothing');
  const adam = new Adam(ctx);
  short.grad = fromArray(ctx, [5], [1, 1, 1, 1, 1]);
  assert.throws(() => adam.step([short]), /Adam\.step: buffer 'short' of 20 bytes cannot be read as 2 vec4/);
  fine.grad = new Tensor(ctx, [4], raw[1], 'odd-grad');
  assert.throws(() => adam.step([fine]), /Adam\.step: buffer 'odd' of 20 bytes cannot be read as 1 vec4/);
  assert.is(adam.stepCount, 0);
  assert.is(ctx.counters.dispatches, before, 'nothing was dispatched');
  short.grad.dispose();
  short.grad = null;
  fine.grad = null;
  fine.dispose();
  adam.dispose();
  e.dispose();
  raw.forEach((b) => b.destroy());
});

// The shared context is auto's choice (OpenGL llvmpipe here): the kernel on the other backend too.
ema('four updates on the Vulkan adapter (lavapipe here) match the reference', async () => {
  const vk = await acquireGpu({ backend: 'vulkan' });
  try {
    await checkAgainstReference(vk, [[1001], [3, 5]], 0.99, 7, 4);
  } finally {
    vk.destroy();
  }
});

ema.run();
