// Pipelines created before the first step (issue 7): GpuContext.collectKernels notes the kernels a
// piece of work dispatches without running them, warmPipelines creates their pipelines at once
// (createComputePipelineAsync), and Trainer.run does both before its first step. Checked here: the
// first real step then creates no pipeline and trains exactly as without the warm-up; the
// collecting mode refuses reads and leaves the context usable; a broken kernel is named; nothing
// leaks from the pool. Start-up times are measured by tools/profile-step.ts --startup, not here.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { makeRng } from './helpers/random.ts';
import { acquireGpu } from '../src/gpu/node.ts';
import { GpuValidationError } from '../src/gpu/errors.ts';
import type { GpuContext, KernelSpec } from '../src/gpu/context.ts';
import type { Dataset } from '../src/data/dataset.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { add } from '../src/ops/elementwise.ts';
import { CapsNet } from '../src/model/capsnet.ts';
import { Adam } from '../src/optim/adam.ts';
import { TrainingBatches } from '../src/train/batches.ts';
import { Trainer, evaluate, type StartupReport, type StepRecord } from '../src/train/trainer.ts';

const test = suite('warmup');

const TINY_CAPSNET = { conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] };

function randomData(): Dataset {
  const rng = makeRng(17);
  const count = 32;
  return {
    images: Uint8Array.from({ length: count * 784 }, () => Math.floor(rng() * 256)),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 10),
    count, height: 28, width: 28, channels: 1,
  };
}

/** Trains `steps` steps of a tiny CapsNet (seed 3, batch 8) on ctx; what it logged and its final state. */
async function train(ctx: GpuContext, warmUp: boolean, steps: number) {
  const pool0 = ctx.poolStats().inUse;
  const model = CapsNet.create(ctx, TINY_CAPSNET, 3);
  const adam = new Adam(ctx);
  const data = randomData();
  const trainer = new Trainer(ctx, model, adam, new TrainingBatches(data, 8, 5, 2), 2, { warmUp, evalBatchSize: 4 });
  const records: StepRecord[] = [];
  const startups: StartupReport[] = [];
  const created0 = ctx.counters.pipelinesCreated;
  let createdBeforeFirstStep = -1;
  await trainer.run(0, steps, {
    onStartup: (s) => {
      startups.push(s);
      createdBeforeFirstStep = ctx.counters.pipelinesCreated - created0;
    },
    beforeStep: (step) => {
      if (step === 0 && createdBeforeFirstStep < 0) createdBeforeFirstStep = ctx.counters.pipelinesCreated - created0;
    },
    onRecords: (r) => void records.push(...r),
  });
  const createdByTraining = ctx.counters.pipelinesCreated - created0;
  const evalCreated0 = ctx.counters.pipelinesCreated;
  const evaluation = await evaluate(model, 8, 4, (start, images, labels) => {
    for (let i = 0; i < 4; i++) {
      for (let p = 0; p < 784; p++) images[i * 784 + p] = data.images[(start + i) * 784 + p] / 255;
      labels[i] = data.labels[start + i];
    }
    return 4;
  });
  const createdByEvaluation = ctx.counters.pipelinesCreated - evalCreated0;
  const state = await adam.exportState();
  const params = await model.exportParams();
  trainer.dispose();
  adam.dispose();
  model.dispose();
  return {
    records, startups, createdBeforeFirstStep, createdByTraining, createdByEvaluation, evaluation, state, params,
    stepCount: state.step, inUseLeft: ctx.poolStats().inUse - pool0,
  };
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test('after the warm-up a training step and an evaluation create no pipeline, and train exactly as without it', async () => {
  // A context of its own: on the shared one, other tests' kernels would already be compiled.
  const ctx = await acquireGpu();
  try {
    const warm = await train(ctx, true, 2);
    assert.is(warm.startups.length, 1, 'onStartup is called once');
    const startup = warm.startups[0];
    assert.ok(startup.kernels >= 10, `a CapsNet step dispatches many distinct kernels (got ${startup.kernels})`);
    assert.is(startup.pipelines, startup.kernels, 'on a fresh context every kernel met needs a pipeline');
    assert.ok(startup.seconds > 0 && Number.isFinite(startup.seconds), `startup seconds ${startup.seconds}`);
    assert.is(warm.createdBeforeFirstStep, startup.pipelines, 'the pipelines are created before the first step');
    assert.is(warm.createdByTraining, startup.pipelines, 'the training steps create no pipeline of their own');
    assert.is(warm.createdByEvaluation, 0, 'the evaluation forward pass (evalBatchSize) was warmed up too');
    assert.is(warm.stepCount, 2, "the warm-up does not advance the trainer's Adam");
    assert.is(warm.inUseLeft, 0, 'no pooled buffer is left in use');

    // The same run without a warm-up on the same context (whose pipelines are all created by now):
    // the collecting pass must not have changed any state the steps use.
    const cold = await train(ctx, false, 2);
    assert.is(cold.startups.length, 0, 'no warm-up, no onStartup');
    assert.equal(warm.records, cold.records, 'same losses, accuracies and learning rates');
    for (const name of Object.keys(cold.params)) {
      assert.ok(bytes(warm.params[name]).equals(bytes(cold.params[name])), `parameter ${name} bitwise equal`);
      assert.ok(bytes(warm.state.m[name]).equals(bytes(cold.state.m[name])), `Adam m of ${name} bitwise equal`);
      assert.ok(bytes(warm.state.v[name]).equals(bytes(cold.state.v[name])), `Adam v of ${name} bitwise equal`);
    }
    assert.ok(bytes(warm.evaluation.scores).equals(bytes(cold.evaluation.scores)), 'same evaluation scores');
  } finally {
    ctx.destroy();
  }
});

test('collectKernels notes dispatches without running them, keeps host data movement, and does not leak pooled buffers', async () => {
  const ctx = await gpu();
  const a = Float32Array.from({ length: 37 }, (_, i) => i * 0.5);
  const b = Float32Array.from({ length: 37 }, (_, i) => 100 - i);
  const before = ctx.poolStats().inUse;
  const dispatches0 = ctx.counters.dispatches;
  let kept: ReturnType<typeof fromArray> | null = null;
  const kernels = ctx.collectKernels(() => {
    tidy(() => void add(fromArray(ctx, [37], a), fromArray(ctx, [37], b)));
    kept = fromArray(ctx, [37], b, 'uploaded while collecting');
  });
  assert.is(ctx.counters.dispatches, dispatches0, 'no kernel was dispatched');
  assert.is(ctx.isCollecting, false);
  // The add kernel is noted only if its pipeline is not created yet (the shared context may have it).
  for (const k of kernels) assert.ok(typeof k.code === 'string' && k.name.length > 0, `kernel spec ${k.name}`);
  assert.equal([...(await kept!.read())], [...b], 'an upload made while collecting happened');
  kept!.dispose();
  assert.is(ctx.poolStats().inUse, before, 'every pooled buffer acquired while collecting went back');
});

test('collectKernels refuses reads and waits with a clear error, and the context stays usable', async () => {
  const ctx = await gpu();
  const x = fromArray(ctx, [5], [1, 2, 3, 4, 5]);
  let readError: unknown = null;
  let pending: Promise<unknown> | null = null;
  ctx.collectKernels(() => {
    try {
      void ctx.readBuffer(x.buffer, 20);
    } catch (e) {
      readError = e;
    }
    pending = x.read();
    assert.throws(() => ctx.collectKernels(() => {}), /already collecting/);
  });
  assert.instance(readError, Error);
  assert.match((readError as Error).message, /inside collectKernels/);
  try {
    await pending;
    assert.unreachable('Tensor.read inside collectKernels must fail');
  } catch (e) {
    assert.match((e as Error).message, /inside collectKernels/);
  }
  let syncError: unknown = null;
  ctx.collectKernels(() => void ctx.sync().catch((e) => (syncError = e)));
  await new Promise((r) => setTimeout(r, 0));
  assert.match((syncError as Error | null)?.message ?? 'no error', /sync inside collectKernels/);
  assert.throws(() => ctx.collectKernels((() => Promise.resolve()) as () => void), /returned a promise/);
  // Still usable: the collecting mode is off and real work runs and reads.
  assert.is(ctx.isCollecting, false);
  const y = add(x, x);
  assert.equal([...(await y.read())], [2, 4, 6, 8, 10]);
  x.dispose();
  y.dispose();
});

test('collectKernels with emptyDispatches creates the pipelines and runs nothing', async () => {
  const ctx = await gpu();
  // A kernel of its own (the constant makes the source unique in this process): writes 1 to out[0..3].
  const kernel: KernelSpec = {
    name: 'warmup-test-writer',
    code: `// ${Date.now()}\n@group(0) @binding(0) var<uniform> p: vec4<u32>;\n@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n` +
      '@compute @workgroup_size(4) fn main(@builtin(global_invocation_id) id: vec3<u32>) { if (id.x < p.x) { out[id.x] = 1.0; } }',
  };
  const out = fromArray(ctx, [4], [5, 6, 7, 8]);
  const [created0, dispatches0] = [ctx.counters.pipelinesCreated, ctx.counters.dispatches];
  const noted = ctx.collectKernels(() => ctx.dispatch(kernel, [out.buffer], [4], 1), { emptyDispatches: true });
  assert.equal(noted.map((k) => k.name), ['warmup-test-writer'], 'the kernel is noted');
  assert.is(ctx.counters.pipelinesCreated - created0, 1, 'its pipeline was created');
  assert.is(ctx.counters.dispatches, dispatches0, 'an empty dispatch is not counted as one');
  await ctx.sync();
  assert.equal([...(await out.read())], [5, 6, 7, 8], 'zero workgroups wrote nothing');
  assert.equal(ctx.collectKernels(() => ctx.dispatch(kernel, [out.buffer], [4], 1)), [], 'a kernel with a pipeline is not noted again');
  ctx.dispatch(kernel, [out.buffer], [4], 1);
  assert.equal([...(await out.read())], [1, 1, 1, 1], 'the same dispatch outside collectKernels runs');
  assert.is(ctx.counters.pipelinesCreated - created0, 1);
  out.dispose();
});

test('warmPipelines names the kernel, entry point and constants of a pipeline that fails', async () => {
  const ctx = await gpu();
  const broken: KernelSpec = { name: 'warmup-test-broken-wgsl', code: '@compute @workgroup_size(1) fn main() { let x: f32 = no_such_value; }' };
  const created0 = ctx.counters.pipelinesCreated;
  try {
    await ctx.warmPipelines([broken]);
    assert.unreachable('a WGSL error must reject');
  } catch (e) {
    assert.instance(e, GpuValidationError);
    assert.match((e as Error).message, /compiling kernel 'warmup-test-broken-wgsl' \(entry point 'main', constants \{\}\)/);
    assert.match((e as Error).message, /no_such_value/, 'the WGSL compiler message is kept');
  }
  const goodCode = 'override WG: u32 = 1;\n@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(WG) fn main() { out[0] = 1.0; }';
  const badConstant: KernelSpec = { name: 'warmup-test-bad-constant', code: goodCode, constants: { NOT_DECLARED: 4 } };
  const badEntry: KernelSpec = { name: 'warmup-test-bad-entry', code: goodCode, entryPoint: 'nowhere' };
  const good: KernelSpec = { name: 'warmup-test-good', code: goodCode, constants: { WG: 2 } };
  try {
    await ctx.warmPipelines([good, badConstant, badEntry]);
    assert.unreachable('a bad constant or entry point must reject');
  } catch (e) {
    assert.instance(e, GpuValidationError);
    const message = (e as Error).message;
    assert.ok(
      /compiling kernel 'warmup-test-bad-constant' \(entry point 'main', constants \{"NOT_DECLARED":4\}\)/.test(message) ||
        /compiling kernel 'warmup-test-bad-entry' \(entry point 'nowhere', constants \{\}\)/.test(message),
      message,
    );
    assert.match(message, /1 more kernels failed/);
  }
  assert.is(ctx.counters.pipelinesCreated - created0, 1, 'only the good kernel got a pipeline');
  assert.is(await ctx.warmPipelines([good]), 0, 'a cached pipeline is not created again');
  await ctx.checkErrors(); // nothing left over for the next sync point
});

test.run();
