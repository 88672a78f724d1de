// Batch sizes against the adapter's limits (issue 10, out of memory): src/train/memory.ts lists
// every buffer of a step from the model config. Checked here: (1) against the buffers a real
// training step acquires (the largest one exactly, the peak in use within a few tens of percent),
// (2) at a real binding limit: the largest batch it says fits runs, one more is refused by the ops,
// (3) with fake limits objects (the paper models, parameters that cannot fit, a memory budget), and
// (4) through `capsnet train`: refused before anything runs, with the largest batch that fits.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './helpers/gpu.ts';
import { runCli } from './helpers/cli.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import type { BufferPool, PooledTexture } from '../src/gpu/pool.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { backward, noGrad } from '../src/autograd/tape.ts';
import { CapsNet, oneHotTargets } from '../src/model/capsnet.ts';
import { BaselineCNN } from '../src/model/baseline.ts';
import { makeConfig, type CapsNetConfig } from '../src/model/config.ts';
import { BASELINE_OFFICIAL_OVERRIDES, makeBaselineConfig, type BaselineConfig } from '../src/model/baseline-config.ts';
import { Adam } from '../src/optim/adam.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import {
  BatchTooLargeError, checkBatchSize, estimateMemory, fits, largestBatchThatFits, memoryDevice, type MemoryDevice, type ModelSpec,
} from '../src/train/memory.ts';

const MiB = 2 ** 20;
const LLVMPIPE_LIKE: MemoryDevice = { limits: { maxStorageBufferBindingSize: 128 * MiB, maxBufferSize: 2048 * MiB }, isSoftware: true };
const PAPER_CAPSNET: ModelSpec = { kind: 'capsnet', config: makeConfig() };
const PAPER_BASELINE: ModelSpec = { kind: 'baseline', config: makeBaselineConfig() };

/**
 * Runs fn while recording every storage buffer and texture the pool hands out: the peak of bytes in
 * use, and the largest buffers by label.
 */
async function measure(ctx: GpuContext, fn: () => Promise<void>) {
  const pool = ctx.pool as BufferPool & Record<string, unknown>;
  const saved = { acquire: pool.acquire, release: pool.release, acquireTexture: pool.acquireTexture, releaseTexture: pool.releaseTexture };
  const held = new Map<unknown, number>();
  const acquired: Array<{ label: string; bytes: number; texture: boolean }> = [];
  let inUse = 0;
  let peak = 0;
  const take = (resource: unknown, bytes: number) => {
    held.set(resource, bytes);
    inUse += bytes;
    peak = Math.max(peak, inUse);
  };
  const give = (resource: unknown) => {
    inUse -= held.get(resource) ?? 0;
    held.delete(resource);
  };
  pool.acquire = (bytes: number, usage: GPUBufferUsageFlags, label?: string) => {
    const b = saved.acquire.call(pool, bytes, usage, label);
    if (usage & 0x80) { // STORAGE: not the readback staging buffers
      take(b, bytes);
      acquired.push({ label: label ?? '', bytes, texture: false });
    }
    return b;
  };
  pool.release = (b: GPUBuffer) => {
    give(b);
    return saved.release.call(pool, b);
  };
  pool.acquireTexture = (width: number, height: number, label?: string) => {
    const t = saved.acquireTexture.call(pool, width, height, label);
    take(t, width * height * 16);
    acquired.push({ label: label ?? '', bytes: width * height * 16, texture: true });
    return t;
  };
  pool.releaseTexture = (t: PooledTexture) => {
    give(t);
    return saved.releaseTexture.call(pool, t);
  };
  try {
    await fn();
  } finally {
    Object.assign(pool, saved);
  }
  return { peak, acquired };
}

/** One training step (or an inference batch) of a fresh model, measured; the estimate for the same step. */
async function measuredStep(ctx: GpuContext, spec: ModelSpec, B: number, mode: 'train' | 'eval') {
  const C = spec.config.inputChannels;
  const S = spec.config.inputSize;
  const images = Float32Array.from({ length: B * C * S * S }, (_, i) => (i % 13) / 13);
  const labels = Int32Array.from({ length: B }, (_, i) => i % 10);
  const result = await measure(ctx, async () => {
    const model = spec.kind === 'capsnet' ? CapsNet.create(ctx, spec.config, 1) : BaselineCNN.create(ctx, spec.config, 1);
    const adam = new Adam(ctx);
    try {
      tidy(() => {
        const x = fromArray(ctx, [B, C, S, S], images, 'images');
        if (mode === 'eval') {
          noGrad(() => (model instanceof CapsNet ? model.forward(x) : model.forward(x)));
          return;
        }
        const y = fromArray(ctx, [B], Float32Array.from(labels), 'labels');
        const out = model instanceof CapsNet
          ? model.loss(x, y, oneHotTargets(ctx, labels, model.config.digitCaps))
          : model.loss(x, y, { dropoutSeed: 7 });
        backward(out.loss);
        adam.step(model.parameterList());
        adam.zeroGrad(model.parameterList());
      });
      await ctx.sync();
    } finally {
      adam.dispose();
      model.dispose();
    }
  });
  return { ...result, estimate: estimateMemory(spec, B, mode, memoryDevice(ctx)) };
}

// The convolutions' packed operands: the plan sizes them and falls back when they do not fit.
const isConvScratch = (label: string) => label.startsWith('conv2d.') && !['conv2d.dx', 'conv2d.dw', 'conv2d.db'].includes(label);

const mem = suite('memory limits');

mem('the estimate matches the buffers of real steps: the largest exactly, the peak in use within -20%..+40%', async () => {
  const ctx = await gpu();
  const cases: Array<[string, ModelSpec, number, 'train' | 'eval']> = [
    ['small CapsNet, training', { kind: 'capsnet', config: makeConfig({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] } as Partial<CapsNetConfig>) }, 3, 'train'],
    ['the paper CapsNet, training', PAPER_CAPSNET, 2, 'train'],
    ['the paper CapsNet, inference', PAPER_CAPSNET, 5, 'eval'],
    ['small baseline CNN, training', { kind: 'baseline', config: makeBaselineConfig({ convChannels: [16, 16, 8], fcHidden: [40, 24] } as Partial<BaselineConfig>) }, 4, 'train'],
    ['small pooled baseline CNN (the official layout), training', { kind: 'baseline', config: makeBaselineConfig({ ...BASELINE_OFFICIAL_OVERRIDES, convChannels: [16, 8], fcHidden: [40] }) }, 4, 'train'],
  ];
  for (const [what, spec, B, mode] of cases) {
    const { peak, acquired, estimate } = await measuredStep(ctx, spec, B, mode);
    const largestActual = Math.max(...acquired.filter((a) => !a.texture && !isConvScratch(a.label)).map((a) => a.bytes));
    const largestEstimated = Math.max(...estimate.buffers.filter((b) => b.limit !== 'planned').map((b) => b.bytes));
    assert.is(largestEstimated, largestActual, `${what}: largest buffer`);
    const ratio = estimate.totalBytes / peak;
    process.stdout.write(`  [memory] ${what}, batch ${B}: measured peak ${(peak / MiB).toFixed(1)} MiB, estimate ${(estimate.totalBytes / MiB).toFixed(1)} MiB (x${ratio.toFixed(2)})\n`);
    // Never far below the real peak (that is what the check relies on); somewhat above is fine.
    assert.ok(ratio > 0.8 && ratio < 1.4, `${what}: estimate ${estimate.totalBytes} vs measured peak ${peak}`);
  }
});

mem('at the real binding limit: the largest batch said to fit runs, one more is refused by the ops before any dispatch', async () => {
  const ctx = await gpu();
  // 128 digit capsules and 8 routing iterations: the saved couplings [B, 7, 1152, 128] (4.1 MB per
  // example) reach maxStorageBufferBindingSize at a few dozen examples, with a cheap forward pass.
  const config = makeConfig({ conv1Channels: 8, primaryTypes: 32, primaryDim: 4, digitCaps: 128, digitDim: 4, routings: 8, decoder: false } as Partial<CapsNetConfig>);
  const spec: ModelSpec = { kind: 'capsnet', config };
  const device = memoryDevice(ctx);
  const largest = largestBatchThatFits(spec, 'eval', device, 10_000);
  const perExample = 7 * 1152 * 128 * 4;
  assert.is(largest, Math.floor(ctx.limits.maxStorageBufferBindingSize / perExample), 'the couplings are the limit');
  assert.equal(estimateMemory(spec, largest + 1, 'eval', device).tooLarge.map((t) => t.buffer.what), ['routing couplings (saved)']);
  const model = CapsNet.create(ctx, config, 1);
  try {
    const run = (B: number) => tidy(() => noGrad(() => model.forward(fromArray(ctx, [B, 1, 28, 28], new Float32Array(B * 784).fill(0.5))).lengths));
    const out = run(largest);
    const lengths = await out.read();
    out.dispose();
    assert.ok(lengths.every(Number.isFinite), `batch ${largest} ran`);
    const before = ctx.counters.dispatches;
    assert.throws(() => run(largest + 1), (e: Error) => e instanceof ShapeError && /maxStorageBufferBindingSize/.test(e.message));
    await ctx.sync();
    assert.ok(ctx.counters.dispatches - before < 40, 'refused during the forward pass, at the couplings');
  } finally {
    model.dispose();
  }
});

mem('fake limits: the paper models, a refused batch names the buffer and the largest batch that fits', () => {
  // llvmpipe's limits: Conv1's output [B, 256, 20, 20] (409,600 bytes per image) reaches 128 MiB at 328.
  assert.is(largestBatchThatFits(PAPER_CAPSNET, 'train', LLVMPIPE_LIKE, 100_000), 327);
  assert.ok(fits(PAPER_CAPSNET, 128, 'train', LLVMPIPE_LIKE), 'the paper recipe (batch 128) fits');
  assert.throws(() => checkBatchSize(PAPER_CAPSNET, 512, 'train', LLVMPIPE_LIKE, { flag: '--batch-size', adapter: 'a fake adapter' }), (e: Error) =>
    e instanceof BatchTooLargeError && e.largest === 327 &&
    /^--batch-size 512: a training step does not fit on a fake adapter: conv1 output \[512, 256, 20, 20\] needs 200\.0 MiB, above maxStorageBufferBindingSize \(128\.0 MiB\)/.test(e.message) &&
    /The largest batch size that fits is 327\.$/.test(e.message));
  // u_hat is bound in slices of whole examples: only maxBufferSize bounds it.
  // (737,280 bytes per image, in a pooled buffer of size class 2^k x {1, 1.25, 1.5, 1.75}: 182 images
  // take 134,184,960 bytes, class 2^27 = 128 MiB; 183 images need class 1.25 x 2^27.)
  const smallBuffer: MemoryDevice = { limits: { maxStorageBufferBindingSize: 128 * MiB, maxBufferSize: 128 * MiB } };
  const uhatLimited = largestBatchThatFits(PAPER_CAPSNET, 'train', smallBuffer, 100_000);
  assert.is(uhatLimited, 182, 'u_hat limits the batch under a 128 MiB maxBufferSize');
  assert.equal(estimateMemory(PAPER_CAPSNET, uhatLimited + 1, 'train', smallBuffer).tooLarge.map((t) => [t.buffer.what, t.limitName]),
    [['predictions u_hat', 'maxBufferSize'], ['gradient of predictions u_hat', 'maxBufferSize']]);
  // Consistency of the search on several devices and both models: the answer fits, one more does not.
  for (const device of [LLVMPIPE_LIKE, smallBuffer, { limits: { maxStorageBufferBindingSize: 64 * MiB, maxBufferSize: 256 * MiB } }]) {
    for (const spec of [PAPER_CAPSNET, PAPER_BASELINE]) {
      for (const mode of ['train', 'eval'] as const) {
        const n = largestBatchThatFits(spec, mode, device, 100_000);
        if (n === 0) continue;
        assert.ok(fits(spec, n, mode, device) && !fits(spec, n + 1, mode, device), `${spec.kind} ${mode}: ${n}`);
      }
    }
  }
  // The baseline's conv outputs [B, 256, 28, 28] (802,816 bytes per image) reach 128 MiB at 168.
  assert.is(largestBatchThatFits(PAPER_BASELINE, 'train', LLVMPIPE_LIKE, 100_000), 167);
});

mem('fake limits: parameters that cannot fit refuse every batch size; a memory budget bounds the estimated peak', () => {
  const narrow: MemoryDevice = { limits: { maxStorageBufferBindingSize: 100 * MiB, maxBufferSize: 2048 * MiB } };
  assert.throws(() => checkBatchSize(PAPER_BASELINE, 8, 'train', narrow, { flag: '--batch-size' }), (e: Error) =>
    e instanceof BatchTooLargeError && e.largest === 0 && /fc1\.weight \[328, 100352\] needs 125\.6 MiB/.test(e.message) &&
    /No batch size fits: the model's parameters alone exceed the limits/.test(e.message));
  const budget = 300 * MiB;
  const n = largestBatchThatFits(PAPER_CAPSNET, 'train', LLVMPIPE_LIKE, 100_000, budget);
  assert.ok(n > 1 && n < 327, `a 300 MiB budget allows ${n}`);
  assert.ok(estimateMemory(PAPER_CAPSNET, n, 'train', LLVMPIPE_LIKE).totalBytes <= budget);
  assert.ok(estimateMemory(PAPER_CAPSNET, n + 1, 'train', LLVMPIPE_LIKE).totalBytes > budget);
  assert.throws(() => checkBatchSize(PAPER_CAPSNET, 128, 'train', LLVMPIPE_LIKE, { budgetBytes: budget, budgetWhat: 'the test budget' }), (e: Error) =>
    e instanceof BatchTooLargeError && /the estimated peak of [\d.]+ MiB is above the test budget \(300\.0 MiB\)/.test(e.message) && e.largest === n);
  assert.throws(() => estimateMemory(PAPER_CAPSNET, 0, 'train', LLVMPIPE_LIKE), /batch size must be a positive integer/);
});

mem('capsnet train refuses a batch too large for the adapter before anything runs, with the largest that fits', async () => {
  const ctx = await gpu();
  const expected = largestBatchThatFits(PAPER_CAPSNET, 'train', memoryDevice(ctx), 400);
  const root = mkdtempSync(join(tmpdir(), 'capsnet-memory-'));
  try {
    const out = join(root, 'run');
    const r = await runCli(['train', '--out', out, '--batch-size', '400', '--limit', '500', '--steps', '1']);
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, /--batch-size 400: a training step does not fit on llvmpipe/);
    assert.match(r.stderr, new RegExp(`The largest batch size that fits is ${expected}\\.`));
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
    assert.not.ok(existsSync(out), 'nothing written');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

mem.run();
