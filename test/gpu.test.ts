// The GPU layer itself: adapter acquisition, the pipeline cache, the buffer pool's size classes,
// batched submits, and WebGPU errors turned into messages a user can act on.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { sizeClass } from '../src/gpu/pool.ts';
import { GpuDeviceLostError, GpuUnavailableError, GpuValidationError, GpuOutOfMemoryError, fromGpuError } from '../src/gpu/errors.ts';
import { KERNELS } from '../src/ops/elementwise.ts';
import { fromArray, tidy, empty } from '../src/tensor.ts';
import { add } from '../src/ops/elementwise.ts';

const layer = suite('gpu layer');

layer('the adapter is named and its limits were raised to what it offers', async () => {
  const ctx = await gpu();
  assert.ok(ctx.adapter.name.length > 0 && ctx.adapter.description.length > 0);
  assert.ok(['core', 'compatibility'].includes(ctx.adapter.featureLevel));
  // The WebGPU default is 128 MiB for storage bindings and 16 KiB of workgroup memory; we asked for the adapter's.
  assert.ok(ctx.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
  assert.ok(ctx.limits.maxComputeWorkgroupStorageSize >= 16 * 1024);
});

layer('pipelines are cached per kernel and override constants', async () => {
  const ctx = await gpu();
  const p1 = ctx.pipeline(KERNELS.add);
  const p2 = ctx.pipeline({ ...KERNELS.add });
  const p3 = ctx.pipeline({ ...KERNELS.add, constants: { WG: 32 } });
  const p4 = ctx.pipeline({ ...KERNELS.add, constants: { WG: 32 } });
  assert.is(p1, p2);
  assert.is(p3, p4);
  assert.is.not(p1, p3);
  await ctx.sync();
});

layer('size classes waste at most 25% and are multiples of 4 bytes', () => {
  for (const bytes of [1, 4, 255, 256, 257, 1000, 4096, 5000, 123_457, 21_233_664]) {
    const c = sizeClass(bytes);
    assert.ok(c >= bytes && c % 4 === 0, `${bytes} -> ${c}`);
    assert.ok(bytes < 256 || c <= bytes * 1.25 + 4, `${bytes} -> ${c} wastes too much`);
  }
});

layer('work is batched: many dispatches, one submit per readback', async () => {
  const ctx = await gpu();
  await ctx.sync();
  const a = fromArray(ctx, [10], new Float32Array(10).fill(1));
  const before = { ...ctx.counters };
  const out = tidy(() => {
    let h = a;
    for (let k = 0; k < 50; k++) h = add(h, a);
    return h;
  });
  assert.equal(Array.from(await out.read()), new Array(10).fill(51));
  assert.is(ctx.counters.dispatches - before.dispatches, 50);
  assert.is(ctx.counters.submits - before.submits, 1, 'one submit for 50 kernels and the readback copy');
  a.dispose();
  out.dispose();
});

layer('a shader that does not compile is reported with the kernel name', async () => {
  const ctx = await gpu();
  const broken = { name: 'broken_kernel', code: '@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }' };
  const t = empty(ctx, [4]);
  const original = console.error;
  try {
    ctx.dispatch(broken, [t.buffer], null, 1);
    await ctx.sync();
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, GpuValidationError);
    assert.match((e as Error).message, /broken_kernel/);
  } finally {
    console.error = original;
    t.dispose();
  }
  // The context stays usable after a validation error.
  const ok = tidy(() => add(fromArray(ctx, [2], [1, 2]), fromArray(ctx, [2], [3, 4])));
  assert.equal(Array.from(await ok.read()), [4, 6]);
  ok.dispose();
});

layer('a wrong binding is reported as a validation error naming the kernels of that submit', async () => {
  const ctx = await gpu();
  const a = empty(ctx, [4]);
  // add expects three storage buffers; give it two.
  ctx.dispatch(KERNELS.add, [a.buffer, a.buffer], [4], 1);
  try {
    await ctx.sync();
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, GpuValidationError);
    assert.match((e as Error).message, /binary\.add/);
  }
  a.dispose();
});

layer('GPU errors map to out-of-memory or validation with advice', () => {
  const oom = fromGpuError({ message: 'Out of memory allocating 8 GiB' } as GPUError, 'creating buffer x');
  assert.instance(oom, GpuOutOfMemoryError);
  assert.match(oom.message, /creating buffer x.*\n.*--batch-size/s);
  const val = fromGpuError({ message: 'Binding size mismatch' } as GPUError, 'running kernels [conv]');
  assert.instance(val, GpuValidationError);
  assert.match(val.message, /running kernels \[conv\]: Binding size mismatch/);
});

layer('a lost device turns every later operation into a clear error', async () => {
  const ctx = await acquireGpu();
  const t = fromArray(ctx, [4], [1, 2, 3, 4]);
  ctx.device.destroy(); // simulates a driver reset: the context did not ask for it
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(ctx.isLost);
  assert.throws(() => empty(ctx, [4]), (e: Error) => e instanceof GpuDeviceLostError && /--resume/.test(e.message));
  try {
    await t.read();
    assert.unreachable('read after loss');
  } catch (e) {
    assert.instance(e, GpuDeviceLostError);
  }
  ctx.destroy();
});

layer('the profiler times every dispatch by kernel name (timestamp queries)', async () => {
  const ctx = await gpu();
  if (!ctx.canProfile) {
    process.stdout.write(`\n  [skip inside test] ${ctx.adapter.name} has no timestamp-query: checking that beginProfile refuses\n`);
    assert.throws(() => ctx.beginProfile(), /timestamp-query/);
    return;
  }
  const a = fromArray(ctx, [100_000], new Float32Array(100_000).fill(1));
  ctx.beginProfile();
  const out = tidy(() => add(add(add(a, a), a), a));
  const profile = await ctx.endProfile();
  assert.equal(Array.from((await out.read()).subarray(0, 2)), [4, 4]);
  const entry = profile.get('binary.add');
  assert.ok(entry, `profile has ${[...profile.keys()]}`);
  assert.is(entry!.count, 3);
  assert.ok(entry!.ms > 0 && entry!.ms < 10_000, `${entry!.ms} ms`);
  a.dispose();
  out.dispose();
});

layer('a buffer the pool gives up while recorded commands still use it is destroyed only after the submit', async () => {
  const ctx = await gpu();
  const saved = ctx.pool.maxFreeBytes;
  ctx.pool.maxFreeBytes = 0; // every release is over budget: the pool destroys instead of keeping
  try {
    const out = tidy(() => {
      const a = fromArray(ctx, [1000], new Float32Array(1000).fill(2));
      const b = add(a, a); // recorded, not submitted
      return add(b, a); // a and b are released when tidy ends, before anything is submitted
    });
    assert.equal(Array.from((await out.read()).subarray(0, 3)), [6, 6, 6]); // fails with "used in submit while destroyed" otherwise
    out.dispose();
    await ctx.sync();
  } finally {
    ctx.pool.maxFreeBytes = saved;
  }
});

layer('an unknown backend name is refused with the list of valid ones', () => {
  assert.throws(() => resolveBackend('metal'), (e: Error) => e instanceof GpuUnavailableError && /auto, default, vulkan, opengl/.test(e.message));
  assert.is(resolveBackend('opengl'), 'opengl');
});

layer.run();
