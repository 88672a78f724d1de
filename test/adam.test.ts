// Adam and the learning-rate schedule: three GPU steps vs the f64 reference (tight tolerance), a
// schedule crossing a decay boundary, the staircase at 0, 1999, 2000, 4000, a tensor large enough
// to fold the grid, NaN/infinite gradients (propagate, never absorbed), the GPU skip flag (a skipped
// update changes no bit), state export/import (resuming is bitwise identical), per-parameter
// learning-rate multipliers, and errors before any dispatch.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { assertClose } from './helpers/assert.ts';
import { randomUniform } from './helpers/random.ts';
import * as ref from './reference/adam.ts';
import { type Tensor, fromArray, parameter } from '../src/tensor.ts';
import { Adam, adamStateTensors } from '../src/optim/adam.ts';
import { constantLr, learningRate, staircaseDecay } from '../src/optim/schedule.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu } from '../src/gpu/node.ts';

const f32 = (a: ArrayLike<number>) => Float64Array.from(Float32Array.from(a));
// Tight: each step is one f32 rounding of the parameter (|p| <= 1, ulp/2 ~ 6e-8) and of m, v.
const TIGHT = { atol: 2e-7, rtol: 1e-6 };

function setGrad(ctx: GpuContext, p: Tensor, g: ArrayLike<number>): void {
  p.grad?.dispose();
  p.grad = fromArray(ctx, p.shape, g, `${p.name}.grad`);
}

const adam = suite('Adam');

adam('three steps on odd-sized tensors match the reference (with a schedule crossing a decay)', async () => {
  const ctx = await gpu();
  const shapes = [[7], [33, 5], [3, 1, 9, 9], [1]];
  const schedule = { lr0: 0.01, decayRate: 0.5, decaySteps: 2 };
  const opt = new Adam(ctx, { lr: staircaseDecay(schedule), beta1: 0.8, beta2: 0.99, eps: 1e-6 });
  const refState = shapes.map((s, k) => {
    const n = s.reduce((a, b) => a * b, 1);
    return { p: f32(randomUniform(n, k, -1, 1)), m: new Float64Array(n), v: new Float64Array(n) };
  });
  const params = shapes.map((s, k) => parameter(ctx, s, refState[k].p, `p${k}`));
  for (let step = 0; step < 3; step++) {
    assert.is(opt.lr, learningRate(step, schedule));
    params.forEach((p, k) => {
      // Gradients of mixed scales, including exact zeros.
      const g = f32(randomUniform(p.size, 100 * step + k, -2, 2).map((v, i) => (i % 5 === 0 ? 0 : v * 10 ** ((i % 3) - 1))));
      setGrad(ctx, p, g);
      ref.adamStep(refState[k].p, g, refState[k].m, refState[k].v, step + 1, { lr: learningRate(step, schedule), beta1: 0.8, beta2: 0.99, eps: 1e-6 });
    });
    opt.step(params);
  }
  assert.is(opt.stepCount, 3);
  const state = await opt.exportState();
  for (let k = 0; k < params.length; k++) {
    assertClose(await params[k].read(), refState[k].p, TIGHT, `p${k}`);
    assertClose(state.m[`p${k}`], refState[k].m, TIGHT, `m of p${k}`);
    assertClose(state.v[`p${k}`], refState[k].v, { atol: 1e-9, rtol: 1e-6 }, `v of p${k}`);
  }
  opt.dispose();
  params.forEach((p) => p.dispose());
});

adam('learning-rate multipliers by name: each parameter steps with lr * its multiplier (0 freezes it), vs the reference', async () => {
  const ctx = await gpu();
  const mults: Record<string, number> = { slow: 1 / 32, frozen: 0 };
  const names = ['slow', 'plain', 'frozen'];
  const opt = new Adam(ctx, { lr: 0.01, lrMult: mults });
  const refState = names.map((_, k) => ({ p: f32(randomUniform(37, 10 + k, -1, 1)), m: new Float64Array(37), v: new Float64Array(37) }));
  const start = refState.map((r) => Float64Array.from(r.p));
  const params = names.map((name, k) => parameter(ctx, [37], refState[k].p, name));
  for (let step = 0; step < 3; step++) {
    params.forEach((p, k) => {
      const g = f32(randomUniform(p.size, 50 * step + k, -2, 2));
      setGrad(ctx, p, g);
      ref.adamStep(refState[k].p, g, refState[k].m, refState[k].v, step + 1, { lr: 0.01 * (mults[p.name] ?? 1) });
    });
    opt.step(params);
  }
  for (const [k, p] of params.entries()) assertClose(await p.read(), refState[k].p, TIGHT, p.name);
  assert.equal(await params[2].read(), Float32Array.from(start[2]), 'multiplier 0: the parameter does not move');
  // The multiplied step differs from the plain one by far more than the tolerance (the test can fail).
  const moved = (k: number) => Math.max(...refState[k].p.map((v, i) => Math.abs(v - start[k][i])));
  assert.ok(moved(0) < moved(1) / 10 && moved(0) > 1e-4, `slow moved ${moved(0)}, plain ${moved(1)}`);
  assert.equal([...opt.lrMult], [['slow', 1 / 32], ['frozen', 0]]);
  opt.dispose();
  params.forEach((p) => p.dispose());
});

adam('learning-rate multipliers: a bad value is refused at construction, a name that is no parameter before any dispatch', async () => {
  const ctx = await gpu();
  for (const bad of [-1, NaN, Infinity]) assert.throws(() => new Adam(ctx, { lrMult: { w: bad } }), new RegExp(`multiplier of 'w' must be a finite number >= 0, got ${bad}`));
  const w = parameter(ctx, [3], [1, 2, 3], 'w');
  setGrad(ctx, w, [1, 1, 1]);
  const opt = new Adam(ctx, { lrMult: { 'primary.W': 0.5, w: 2 } });
  const before = ctx.counters.dispatches;
  assert.throws(() => opt.step([w]), (e: Error) => e instanceof ShapeError && /learning-rate multipliers for 'primary\.W', which is not among the parameters \(w\)/.test(e.message));
  assert.is(ctx.counters.dispatches, before);
  assert.is(opt.stepCount, 0);
  opt.dispose();
  w.dispose();
});

adam('default hyper-parameters, a tensor of 4.2M elements (grid folded past 65,535 workgroups)', async () => {
  const ctx = await gpu();
  const n = 65_535 * 64 + 77;
  const p0 = f32(randomUniform(n, 1, -1, 1));
  const p = parameter(ctx, [n], p0, 'big');
  const opt = new Adam(ctx);
  const refP = p0.slice();
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  for (let step = 0; step < 3; step++) {
    const g = f32(randomUniform(n, 10 + step, -1, 1));
    setGrad(ctx, p, g);
    opt.step([p]);
    ref.adamStep(refP, g, m, v, step + 1);
  }
  assertClose(await p.read(), refP, TIGHT, 'big parameter');
  opt.dispose();
  p.dispose();
});

adam('a NaN or infinite gradient is not absorbed: that element (and its m, v) becomes NaN, others are untouched', async () => {
  const ctx = await gpu();
  const p = parameter(ctx, [4], [0.5, -0.5, 0.25, 1], 'p');
  setGrad(ctx, p, [NaN, 0.1, Infinity, -0.2]);
  const opt = new Adam(ctx);
  opt.step([p]);
  const values = await p.read();
  const state = await opt.exportState();
  assert.ok(Number.isNaN(values[0]) && Number.isNaN(state.m.p[0]) && Number.isNaN(state.v.p[0]), `NaN gradient: p ${values[0]}, m ${state.m.p[0]}, v ${state.v.p[0]}`);
  // Infinite gradient: m = v = inf, and inf / inf makes the parameter NaN.
  assert.ok(Number.isNaN(values[2]), `infinite gradient: p ${values[2]}, m ${state.m.p[2]}, v ${state.v.p[2]}`);
  const refP = Float64Array.from([0.5, -0.5, 0.25, 1]);
  ref.adamStep(refP, Float64Array.from([0, 0.1, 0, -0.2]), new Float64Array(4), new Float64Array(4), 1);
  assertClose([values[1], values[3]], [refP[1], refP[3]], TIGHT, 'finite elements');
  opt.dispose();
  p.dispose();
});

adam('export, import into a new optimizer, continue: bitwise identical to an uninterrupted run', async () => {
  const ctx = await gpu();
  const init = f32(randomUniform(50, 3, -1, 1));
  const grads = [0, 1, 2, 3].map((s) => f32(randomUniform(50, 40 + s, -1, 1)));
  const run = async (split: boolean) => {
    const p = parameter(ctx, [5, 10], init, 'w');
    const q = parameter(ctx, [3], [1, 2, 3], 'b');
    let opt = new Adam(ctx, { lr: staircaseDecay({ decaySteps: 3 }) });
    for (let s = 0; s < 4; s++) {
      if (split && s === 2) {
        const state = await opt.exportState();
        assert.equal(Object.keys(adamStateTensors(state)).sort(), ['adam.m.b', 'adam.m.w', 'adam.v.b', 'adam.v.w']);
        opt.dispose();
        opt = new Adam(ctx, { lr: staircaseDecay({ decaySteps: 3 }) });
        opt.importState(state, [p, q]);
        assert.is(opt.stepCount, 2);
      }
      setGrad(ctx, p, grads[s]);
      setGrad(ctx, q, grads[s].slice(0, 3));
      opt.step([p, q]);
    }
    const out = [...(await p.read()), ...(await q.read())];
    opt.dispose();
    p.dispose();
    q.dispose();
    return out;
  };
  assert.equal(await run(true), await run(false));
});

adam('a skip flag on the GPU: not 0 leaves parameters, m and v bitwise as they were; 0 updates as without a flag', async () => {
  const ctx = await gpu();
  const init = f32(randomUniform(37, 5, -1, 1));
  const grads = [0, 1, 2].map((s) => f32(randomUniform(37, 60 + s, -1, 1)));
  // flags[1] = 0 (go), flags[2] = 1 (skip), flags[3] = NaN (not 0: skip too).
  const flags = fromArray(ctx, [4], [7, 0, 1, NaN], 'flags');
  const run = async (flagAt: Array<number | null>) => {
    const p = parameter(ctx, [37], init, 'w');
    const opt = new Adam(ctx);
    const snapshots: Array<{ p: Float32Array; m: Float32Array; v: Float32Array }> = [];
    for (let s = 0; s < grads.length; s++) {
      setGrad(ctx, p, grads[s]);
      const index = flagAt[s];
      opt.step([p], index === null ? {} : { skipFlag: { buffer: flags.buffer, index } });
      const state = await opt.exportState();
      snapshots.push({ p: await p.read(), m: state.m.w, v: state.v.w });
    }
    opt.dispose();
    p.dispose();
    return snapshots;
  };
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const plain = await run([null, null, null]);
  const go = await run([1, 1, 1]);
  for (let s = 0; s < 3; s++) assert.ok(bytes(go[s].p).equals(bytes(plain[s].p)), `flag 0 at step ${s} differs from no flag`);
  for (const skipIndex of [2, 3]) {
    const skipped = await run([1, skipIndex, 1]);
    // Step 1 skipped: everything equals the state after step 0, bit for bit.
    for (const k of ['p', 'm', 'v'] as const) {
      assert.ok(bytes(skipped[1][k]).equals(bytes(skipped[0][k])), `${k} changed on a skipped step (flag index ${skipIndex})`);
    }
    assert.not.ok(bytes(skipped[2].p).equals(bytes(skipped[1].p)), 'the step after the skipped one updates again');
  }
  const p = parameter(ctx, [3], [1, 2, 3], 'w');
  setGrad(ctx, p, [1, 1, 1]);
  const opt = new Adam(ctx);
  assert.throws(() => opt.step([p], { skipFlag: { buffer: flags.buffer, index: flags.buffer.size / 4 } }), (e: Error) => e instanceof ShapeError && /skip flag index \d+ is outside buffer/.test(e.message));
  assert.is(opt.stepCount, 0, 'a refused step changes nothing');
  opt.dispose();
  p.dispose();
  flags.dispose();
});

adam('importState refuses missing, mis-sized and unknown names, and changes nothing', async () => {
  const ctx = await gpu();
  const p = parameter(ctx, [4], [1, 2, 3, 4], 'w');
  const opt = new Adam(ctx);
  setGrad(ctx, p, [1, 1, 1, 1]);
  opt.step([p]);
  const good = await opt.exportState();
  const bad = { step: 5, m: { w: new Float32Array(3), extra: new Float32Array(1) }, v: {} };
  assert.throws(() => opt.importState(bad, [p]), (e: Error) =>
    e instanceof ShapeError && /adam\.m\.w holds 3 values/.test(e.message) && /no adam\.v\.w/.test(e.message) && /adam\.m\.extra matches no parameter/.test(e.message));
  assert.is(opt.stepCount, 1, 'step unchanged');
  assert.equal(await opt.exportState(), good, 'state unchanged');
  opt.dispose();
  p.dispose();
});

adam('errors before any dispatch: missing gradient, mismatched gradient, unnamed or duplicate parameters', async () => {
  const ctx = await gpu();
  const a = parameter(ctx, [3], [1, 2, 3], 'a');
  const b = parameter(ctx, [2], [1, 2], 'b');
  const anon = parameter(ctx, [2], [1, 2], '');
  const dup = parameter(ctx, [2], [1, 2], 'a');
  setGrad(ctx, a, [1, 1, 1]);
  anon.grad = fromArray(ctx, [2], [1, 1]);
  dup.grad = fromArray(ctx, [2], [1, 1]);
  const opt = new Adam(ctx);
  const before = ctx.counters.dispatches;
  assert.throws(() => opt.step([a, b]), (e: Error) => e instanceof ShapeError && /'b' \[2\] has no gradient/.test(e.message));
  b.grad = fromArray(ctx, [3], [1, 1, 1]);
  assert.throws(() => opt.step([a, b]), /gradient \[3\] does not match parameter 'b' \[2\]/);
  assert.throws(() => opt.step([a, anon]), /has no name/);
  assert.throws(() => opt.step([a, dup]), /two parameters are named 'a'/);
  assert.throws(() => new Adam(ctx, { beta1: 1 }), /beta1 must be in \[0, 1\)/);
  assert.is(ctx.counters.dispatches, before, 'nothing dispatched');
  assert.is(opt.stepCount, 0);
  opt.zeroGrad([a, b]);
  assert.is(a.grad, null);
  for (const t of [a, b, anon, dup]) t.dispose();
  opt.dispose();
});

const schedule = suite('learning-rate schedule');

schedule('staircase decay at steps 0, 1, 1999, 2000, 4000 matches the reference; options configurable', () => {
  for (const step of [0, 1, 1999, 2000, 2001, 3999, 4000, 100_000]) {
    assert.is(learningRate(step), ref.learningRate(step), `step ${step}`);
  }
  assert.is(learningRate(0), 1e-3);
  assert.is(learningRate(1999), 1e-3);
  assert.is(learningRate(2000), 1e-3 * 0.96);
  assert.is(learningRate(4000), 1e-3 * 0.96 * 0.96);
  const o = { lr0: 0.1, decayRate: 0.5, decaySteps: 10 };
  for (const step of [0, 9, 10, 25]) assert.is(staircaseDecay(o)(step), ref.learningRate(step, o), `configured, step ${step}`);
  assert.is(constantLr(0.3)(12345), 0.3);
  assert.throws(() => learningRate(-1), /step must be an integer >= 0/);
  assert.throws(() => staircaseDecay({ decaySteps: 0 }), /decaySteps must be an integer >= 1/);
});

adam('three steps on the OpenGL adapter (compatibility level) match the reference', async () => {
  const gl = await acquireGpu({ backend: 'opengl' });
  try {
    const n = 1001;
    const p0 = f32(randomUniform(n, 7, -1, 1));
    const p = parameter(gl, [n], p0, 'p');
    const opt = new Adam(gl);
    const refP = p0.slice();
    const [m, v] = [new Float64Array(n), new Float64Array(n)];
    for (let step = 0; step < 3; step++) {
      const g = f32(randomUniform(n, 20 + step, -1, 1));
      setGrad(gl, p, g);
      opt.step([p]);
      ref.adamStep(refP, g, m, v, step + 1);
    }
    assertClose(await p.read(), refP, TIGHT, 'GL parameter');
    opt.dispose();
    p.dispose();
  } finally {
    gl.destroy();
  }
});

adam.run();
schedule.run();
