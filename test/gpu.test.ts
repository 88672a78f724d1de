// The GPU layer itself: adapter acquisition, the pipeline cache, the buffer pool's size classes,
// batched submits, and WebGPU errors turned into messages a user can act on.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { BufferPool, sizeClass } from '../src/gpu/pool.ts';
import { REQUIRED_LIMITS, createContext } from '../src/gpu/device.ts';
import { GpuDeviceLostError, GpuUnavailableError, GpuValidationError, GpuOutOfMemoryError, fromGpuError } from '../src/gpu/errors.ts';
import { KERNELS } from '../src/ops/elementwise.ts';
import { fromArray, tidy, empty } from '../src/tensor.ts';
import { type GpuContext, f32 } from '../src/gpu/context.ts';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
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

layer('a buffer that fits one storage binding never gets a size class past maxStorageBufferBindingSize (a limit that is not a class)', () => {
  const limit = 2 ** 31 - 4;
  const created: number[] = [];
  const pool = new BufferPool((size) => (created.push(size), { size, destroy() {} } as unknown as GPUBuffer), () => {}, 1 << 30, null, limit);
  for (const bytes of [limit - 12, limit - 100, 1_900_000_000, 1000]) pool.acquire(bytes, 0x80);
  assert.ok(sizeClass(limit - 100) > limit, 'the size class alone would pass the limit');
  assert.equal(created.slice(0, 3).map((size) => size <= limit && size % 16 === 0), [true, true, true], 'within the limit, whole vec4s');
  assert.ok(created.slice(0, 3).every((size, k) => size >= [limit - 12, limit - 100, 1_900_000_000][k]));
  assert.is(created[3], sizeClass(1000), 'smaller requests keep their size class');
});

layer('trim destroys every free buffer and only those: in-use buffers stay, the stats drop to what is held', () => {
  const destroyed: GPUBuffer[] = [];
  const pool = new BufferPool((size) => ({ size, label: 'b' }) as unknown as GPUBuffer, (b) => destroyed.push(b), 1 << 30, null, 1 << 30);
  const kept = pool.acquire(4096, 0x80);
  const freed = [pool.acquire(4096, 0x80), pool.acquire(1000, 0x80), pool.acquire(100_000, 0x88)];
  for (const b of freed) pool.release(b);
  const before = pool.getStats();
  assert.is(before.freeBytes, freed.reduce((n, b) => n + b.size, 0));
  pool.trim();
  const after = pool.getStats();
  assert.equal(new Set(destroyed), new Set(freed), 'exactly the free buffers destroyed');
  assert.is(after.freeBytes, 0);
  assert.is(after.allocatedBytes, kept.size);
  assert.is(after.inUseBytes, kept.size);
  // The next request of a trimmed size class creates a new buffer instead of reusing a destroyed one.
  const again = pool.acquire(4096, 0x80);
  assert.ok(!destroyed.includes(again));
  assert.is(pool.getStats().created, before.created + 1);
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

// Textures: kernels write them through write-only storage textures and read them through read-only
// storage textures (where the WGSL feature exists) or textureLoad on a texture_2d<f32>.
const TEXTURE_KERNELS = {
  // t[x, y] = (x, y, x * y, -1) + offset, for a w x h texture
  fill: {
    name: 'test_texture_fill',
    code: `struct P { w: u32, h: u32, offset: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var t: texture_storage_2d<rgba32float, write>;
@compute @workgroup_size(8, 8) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= p.w || id.y >= p.h) { return; }
  textureStore(t, vec2i(id.xy), vec4f(f32(id.x), f32(id.y), f32(id.x * id.y), -1.0) + p.offset);
}`,
  },
  // out[y w + x] = t[x, y] (read-only storage texture)
  readStorage: {
    name: 'test_texture_read_storage',
    code: `struct P { w: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4f>;
@compute @workgroup_size(8, 8) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= p.w || id.y >= p.h) { return; }
  out[id.y * p.w + id.x] = textureLoad(t, vec2i(id.xy));
}`,
  },
  // the same through a sampled texture_2d<f32>
  readSampled: {
    name: 'test_texture_read_sampled',
    code: `struct P { w: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var t: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4f>;
@compute @workgroup_size(8, 8) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= p.w || id.y >= p.h) { return; }
  out[id.y * p.w + id.x] = textureLoad(t, vec2i(id.xy), 0);
}`,
  },
};

/** Writes, reads back and reads through kernels a w x h texture on `ctx`; checks every texel. */
async function checkTextureRoundTrip(ctx: GpuContext, w: number, h: number): Promise<void> {
  const expected = new Float32Array(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) expected.set([x + 0.5, y + 0.5, x * y + 0.5, -0.5], (y * w + x) * 4);
  const t = ctx.acquireTexture(w, h, 'round trip');
  ctx.dispatch(TEXTURE_KERNELS.fill, [t], [w, h, f32(0.5)], [Math.ceil(w / 8), Math.ceil(h / 8)]);
  assert.equal(await ctx.readTexture(t), expected, 'readTexture after a kernel wrote it');
  const kernels = ctx.hasReadOnlyStorageTextures ? [TEXTURE_KERNELS.readStorage, TEXTURE_KERNELS.readSampled] : [TEXTURE_KERNELS.readSampled];
  for (const kernel of kernels) {
    const out = empty(ctx, [w * h * 4]);
    ctx.dispatch(kernel, [t, out.buffer], [w, h], [Math.ceil(w / 8), Math.ceil(h / 8)]);
    assert.equal(await out.read(), expected, `${kernel.name} on ${ctx.adapter.name}`);
    out.dispose();
  }
  const uploaded = expected.map((v) => v * 3);
  ctx.writeTexture(t, uploaded);
  assert.equal(await ctx.readTexture(t), uploaded, 'writeTexture then readTexture');
  ctx.releaseTexture(t);
}

layer('an adapter below the kernels\' limits (a compatibility-mode adapter) is refused naming each limit, before a device is requested', async () => {
  const ctx = await gpu();
  for (const [name, need] of Object.entries(REQUIRED_LIMITS)) {
    assert.ok((ctx.device.limits as unknown as Record<string, number>)[name] >= need, `this machine's adapter gives ${name} >= ${need}`);
  }
  let requested = false;
  const compat = {
    info: { description: 'Example GLES', vendor: 'example', architecture: '', device: '' },
    features: new Set<string>(),
    limits: { ...REQUIRED_LIMITS, maxStorageBuffersPerShaderStage: 4, maxComputeInvocationsPerWorkgroup: 128 },
    requestDevice: async () => {
      requested = true;
      throw new Error('not reached');
    },
  } as unknown as GPUAdapter;
  const error = await createContext(compat, 'browser', null, []).then(() => null, (e: Error) => e);
  assert.ok(error instanceof GpuUnavailableError, `expected GpuUnavailableError, got ${error}`);
  assert.match(error!.message, /Example GLES \(browser WebGPU\) \(compatibility feature level\) is below what the CapsNet kernels need: maxStorageBuffersPerShaderStage 4 \(need 8\), maxComputeInvocationsPerWorkgroup 128 \(need 256\)/);
  assert.not.ok(requested, 'no device requested');
});

const textures = suite('gpu textures');

textures('kernels write textures and read them as read-only storage and sampled textures (odd sizes, rows not 256-byte aligned)', async () => {
  const ctx = await gpu();
  assert.ok(ctx.maxTextureSize >= 8192, `maxTextureDimension2D was raised to the adapter's (${ctx.maxTextureSize})`);
  if (ctx.adapter.isSoftware) assert.ok(ctx.hasReadOnlyStorageTextures, 'Dawn on Mesa offers read-only storage textures');
  await checkTextureRoundTrip(ctx, 13, 7);
  await checkTextureRoundTrip(ctx, 1, 300);
});

textures('the same on the other software backend (OpenGL at the compatibility level, or Vulkan)', async () => {
  const shared = await gpu();
  const backend = shared.adapter.backend === 'opengl' ? 'vulkan' : 'opengl';
  let ctx: GpuContext;
  try {
    ctx = await acquireGpu({ backend });
  } catch (error) {
    throw new Error(`the ${backend} adapter is required for this test (tools/install-software-gpu.sh): ${(error as Error).message}`);
  }
  try {
    if (backend === 'opengl') assert.is(ctx.adapter.featureLevel, 'compatibility');
    assert.ok(ctx.hasReadOnlyStorageTextures);
    await checkTextureRoundTrip(ctx, 21, 5);
  } finally {
    ctx.destroy();
  }
});

textures('pooled textures are reused by shape and counted in the pool statistics', async () => {
  const ctx = await gpu();
  await ctx.sync();
  const before = ctx.poolStats();
  const a = ctx.acquireTexture(17, 3, 'a');
  const b = ctx.acquireTexture(17, 4, 'b');
  let stats = ctx.poolStats();
  assert.is(stats.texturesCreated - before.texturesCreated, 2);
  assert.is(stats.textureBytes - before.textureBytes, (17 * 3 + 17 * 4) * 16);
  assert.is(stats.inUse - before.inUse, 2);
  ctx.releaseTexture(a);
  const again = ctx.acquireTexture(17, 3, 'a again');
  assert.is(again, a, 'same shape: the free texture comes back');
  stats = ctx.poolStats();
  assert.is(stats.texturesCreated - before.texturesCreated, 2, 'nothing new created');
  ctx.releaseTexture(again);
  ctx.releaseTexture(b);
  assert.throws(() => ctx.releaseTexture(b), /not in use/);
  assert.is(ctx.poolStats().inUse, before.inUse);
});

textures('a texture the pool gives up while recorded commands still use it is destroyed only after the submit', async () => {
  const ctx = await gpu();
  const saved = ctx.pool.maxFreeBytes;
  ctx.pool.maxFreeBytes = 0;
  try {
    const t = ctx.acquireTexture(8, 8, 'short-lived');
    const out = empty(ctx, [8 * 8 * 4]);
    ctx.dispatch(TEXTURE_KERNELS.fill, [t], [8, 8, f32(0)], [1, 1]);
    ctx.dispatch(TEXTURE_KERNELS.readSampled, [t, out.buffer], [8, 8], [1, 1]);
    const allocated = ctx.poolStats().allocatedBytes;
    ctx.releaseTexture(t); // over budget: destroyed, but only after the submit below
    assert.is(ctx.poolStats().allocatedBytes, allocated - 8 * 8 * 16);
    const values = await out.read();
    assert.equal(Array.from(values.subarray(4 * 9, 4 * 10)), [1, 1, 1, -1], 'texel (1, 1)');
    out.dispose();
  } finally {
    ctx.pool.maxFreeBytes = saved;
  }
});

textures('a texture past maxTextureDimension2D is refused with the limit named', async () => {
  const ctx = await gpu();
  const max = ctx.maxTextureSize;
  assert.throws(() => ctx.acquireTexture(max + 1, 1, 'too wide'), (e: Error) => /too wide/.test(e.message) && e.message.includes(String(max)) && /maxTextureDimension2D/.test(e.message));
  assert.throws(() => ctx.acquireTexture(4, 0, 'empty'), /maxTextureDimension2D/);
});

layer("'auto' takes the default adapter when it is a GPU, and software OpenGL (llvmpipe, faster here) when the default is software", async () => {
  const byDefault = await acquireGpu({ backend: 'default' });
  const auto = await acquireGpu({ backend: 'auto' });
  try {
    if (byDefault.adapter.isSoftware) {
      assert.is(auto.adapter.backend, 'opengl', `auto chose ${auto.adapter.backend} (${auto.adapter.name})`);
      assert.is(auto.adapter.featureLevel, 'compatibility');
    } else {
      assert.is(auto.adapter.backend, 'default', `the default adapter ${byDefault.adapter.name} is a GPU`);
    }
  } finally {
    byDefault.destroy();
    auto.destroy();
  }
});

layer('software Vulkan gets 4 llvmpipe worker threads unless the user set LP_NUM_THREADS (OpenGL keeps Mesa\'s default)', async () => {
  if (process.env.LP_NUM_THREADS !== undefined || !existsSync('/proc/self/task')) {
    process.stdout.write(`\n  [skip inside test] LP_NUM_THREADS is set by the user (${process.env.LP_NUM_THREADS}) or /proc is missing: nothing to check\n`);
    return;
  }
  const ctx = await acquireGpu({ backend: 'vulkan' });
  try {
    const a = fromArray(ctx, [8], new Float32Array(8).fill(1));
    await tidy(() => add(a, a)).read();
    a.dispose();
    const threads = readdirSync('/proc/self/task').map((t) => readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim());
    if (ctx.adapter.isSoftware) assert.ok(threads.includes('llvmpipe-3'), `a pool of 4 llvmpipe threads: ${threads.filter((t) => t.startsWith('llvmpipe')).join(', ')}`);
    assert.is(process.env.LP_NUM_THREADS, undefined, 'set only while the driver loads: child processes inherit nothing');
  } finally {
    ctx.destroy();
  }
});

layer('an unknown backend name is refused with the list of valid ones', () => {
  assert.throws(() => resolveBackend('metal'), (e: Error) => e instanceof GpuUnavailableError && /auto, default, vulkan, opengl/.test(e.message));
  assert.is(resolveBackend('opengl'), 'opengl');
  // From the environment: named as CAPSNET_BACKEND, and a long value quoted clipped.
  const saved = process.env.CAPSNET_BACKEND;
  process.env.CAPSNET_BACKEND = 'x'.repeat(100_000);
  try {
    assert.throws(() => resolveBackend(), (e: Error) => /^CAPSNET_BACKEND: 'x{80}\.\.\. \(100000 characters\)' is not a backend/.test(e.message) && e.message.length < 300);
  } finally {
    if (saved === undefined) delete process.env.CAPSNET_BACKEND;
    else process.env.CAPSNET_BACKEND = saved;
  }
});

layer.run();
textures.run();
