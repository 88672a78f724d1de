// Will a batch size fit on this adapter? Worked out from the model's config before anything is
// allocated or dispatched, so a batch that is too large is refused with the largest one that fits,
// instead of failing deep inside a kernel launch (or, on a software adapter, swapping the machine).
//
// Every buffer one training step (or one inference batch) allocates is listed with its size:
// - each must fit its limit: one storage binding (maxStorageBufferBindingSize) for ordinary
//   tensors; for u_hat and its gradient, which the capsule kernels bind in slices of whole examples
//   (src/ops/capsules.ts), one buffer (maxBufferSize, after the pool rounds it up to its size class)
//   and one example per binding;
// - the step's peak is estimated as: persistent (parameters; in training also Adam's m and v and
//   the gradients) + every activation kept for the backward pass and its gradient + the largest
//   set of scratch buffers one kernel pass uses at a time (the convolutions' packed operands, the
//   dense layers' transposed inputs, the routing backward's scratch).
// The convolutions' scratch comes from the same plan the op uses (chooseConv2dPlan, gemmLayout in
// src/ops/conv2d.ts) and counts in the peak; whether it fits is the plan's business, not a reason
// to refuse the batch: when a packed operand would not fit its binding or texture, the plan falls
// back to the direct kernels (which need only the tensors listed here). The buffer pool keeps up to 1 GiB of released
// buffers for reuse on top of this peak (src/gpu/pool.ts); `capsnet train` trims it between its
// last step and the final evaluation (nothing gives it back on an out-of-memory error).
// Test: test/memory-limits.test.ts (the estimate vs the buffers a real step acquires, and fake limits).

import type { GpuContext } from '../gpu/context.ts';
import { sizeClass } from '../gpu/pool.ts';
import { chooseConv2dPlan, conv2dGeometry, deviceInfo, gemmLayout, type Conv2dDeviceInfo } from '../ops/conv2d.ts';
import { geometry, parameterShapes, type CapsNetConfig } from '../model/config.ts';
import { baselineGeometry, baselineParameterShapes, type BaselineConfig } from '../model/baseline-config.ts';

/** The adapter limits that bound one batch (a fake object in tests). */
export interface MemoryLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  /** Default 256 (WebGPU's default). */
  minStorageBufferOffsetAlignment?: number;
  /** Default 65,535. */
  maxComputeWorkgroupsPerDimension?: number;
}

/** What the estimate needs to know about a device: its limits and what picks the convolution plans. */
export interface MemoryDevice {
  limits: MemoryLimits;
  /** Software adapters get other GEMM tiles (and so other scratch sizes). Default false. */
  isSoftware?: boolean;
  /** Subgroups of exactly 8 (llvmpipe on Vulkan): the subgroup GEMM kernels. Default false. */
  subgroups8?: boolean;
  /** Everything conv2d() plans with, from a live context (deviceInfo); overrides the fields above. */
  conv?: Conv2dDeviceInfo;
}

export type ModelSpec = { kind: 'capsnet'; config: CapsNetConfig } | { kind: 'baseline'; config: BaselineConfig };

export type MemoryMode = 'train' | 'eval';

/** One buffer of the step. */
export interface BufferNeed {
  what: string;
  /** Element count per dimension (f32 elements), or [floats] for packed scratch. */
  shape: number[];
  bytes: number;
  /**
   * 'binding': must fit one storage binding; 'sliced': one buffer, bound an example at a time;
   * 'planned': a convolution's packed operand, in the plan only when it fits (counted in the peak).
   */
  limit: 'binding' | 'sliced' | 'planned';
  /** Bytes per example of a sliced buffer (each binding holds whole examples). */
  bytesPerExample?: number;
  kind: 'persistent' | 'kept' | 'scratch';
  /** Scratch buffers of the same pass are alive together; passes run one after another. */
  pass?: string;
}

export interface MemoryEstimate {
  model: ModelSpec['kind'];
  mode: MemoryMode;
  batchSize: number;
  buffers: BufferNeed[];
  persistentBytes: number;
  keptBytes: number;
  /** The largest set of scratch buffers alive at once, and its pass. */
  scratchBytes: number;
  scratchPass: string;
  /** persistent + kept + scratch: the estimated peak of buffers in use. */
  totalBytes: number;
  /** Buffers beyond the device's limits, with the limit each exceeds. */
  tooLarge: Array<{ buffer: BufferNeed; limitName: string; limitBytes: number }>;
}

const floats = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const roundUp = (a: number, b: number) => Math.ceil(a / b) * b;

class Recorder {
  readonly buffers: BufferNeed[] = [];
  add(what: string, shape: number[], kind: BufferNeed['kind'], pass?: string): void {
    this.buffers.push({ what, shape, bytes: floats(shape) * 4, limit: 'binding', kind, pass });
  }
  planned(what: string, count: number, pass: string): void {
    this.buffers.push({ what, shape: [count], bytes: count * 4, limit: 'planned', kind: 'scratch', pass });
  }
  sliced(what: string, shape: number[], kind: BufferNeed['kind']): void {
    const bytes = floats(shape) * 4;
    this.buffers.push({ what, shape, bytes, limit: 'sliced', bytesPerExample: bytes / shape[0], kind });
  }
  /** An activation kept for the backward pass, and (training) its gradient. */
  activation(what: string, shape: number[], training: boolean, hasGrad = true): void {
    this.add(what, shape, 'kept');
    if (training && hasGrad) this.add(`gradient of ${what}`, shape, 'kept');
  }
}

function convDeviceInfo(device: MemoryDevice): Conv2dDeviceInfo {
  if (device.conv) return { ...device.conv, maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize };
  return {
    isSoftware: device.isSoftware ?? false,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension ?? 65_535,
    subgroups8: device.subgroups8 ?? false,
  };
}

/** A convolution's output and the scratch of each of its passes, from the plan conv2d() would choose. */
function conv(
  rec: Recorder, device: MemoryDevice, name: string, xShape: number[], wShape: number[],
  options: { stride?: number; padding: number; relu: boolean; inputNeedsGrad: boolean; training: boolean },
): number[] {
  const g = conv2dGeometry(xShape, wShape, [wShape[0]], { stride: options.stride ?? 1, padding: options.padding, relu: options.relu });
  const plan = chooseConv2dPlan(g, convDeviceInfo(device));
  const L = gemmLayout(g, plan);
  const out = [g.B, g.Cout, g.OH, g.OW];
  rec.activation(`${name} output`, out, options.training);
  if (plan.forward === 'gemm') {
    rec.planned(`${name} packed input`, L.xqFloats, `${name} forward`);
    rec.planned(`${name} packed weights`, L.wtFloats, `${name} forward`);
  }
  if (!options.training) return out;
  if (options.inputNeedsGrad && plan.gradInput === 'gemm') {
    rec.planned(`${name} packed output gradient`, L.dpFloats, `${name} grad input`);
    if (!L.wrDirect) rec.planned(`${name} packed weight rows`, L.wrFloats, `${name} grad input`);
    rec.planned(`${name} column gradient`, L.dcolsFloats, `${name} grad input`);
  }
  if (plan.gradWeight === 'gemm') {
    rec.planned(`${name} packed input`, L.xqFloats, `${name} grad weight`);
    rec.planned(`${name} transposed output gradient`, L.dptFloats, `${name} grad weight`);
    rec.planned(`${name} weight gradient slabs`, L.dwpFloats, `${name} grad weight`);
  }
  return out;
}

/** A dense layer y = act(x W^T + b): its output, and the transposed / padded operands of its passes. */
function dense(rec: Recorder, name: string, B: number, In: number, Out: number, training: boolean, lastOutputHasGrad = true): void {
  rec.activation(`${name} output`, [B, Out], training, lastOutputHasGrad);
  rec.add(`${name} transposed input`, [In, roundUp(B, 4)], 'scratch', `${name} forward`);
  if (!training) return;
  const pass = `${name} backward`;
  rec.add(`${name} pre-activation gradient`, [B, roundUp(Out, 4)], 'scratch', pass);
  if (In % 4 !== 0) {
    rec.add(`${name} padded weight`, [Out, roundUp(In, 4)], 'scratch', pass);
    rec.add(`${name} padded input`, [B, roundUp(In, 4)], 'scratch', pass);
  }
}

function persistent(rec: Recorder, shapes: Record<string, number[]>, training: boolean): void {
  for (const [name, shape] of Object.entries(shapes)) {
    rec.add(name, shape, 'persistent');
    if (training) {
      rec.add(`adam.m.${name}`, shape, 'persistent');
      rec.add(`adam.v.${name}`, shape, 'persistent');
      rec.add(`gradient of ${name}`, shape, 'persistent');
    }
  }
}

function capsnetBuffers(rec: Recorder, device: MemoryDevice, c: CapsNetConfig, B: number, training: boolean): void {
  const g = geometry(c);
  persistent(rec, parameterShapes(c), training);
  rec.add('images', [B, c.inputChannels, c.inputSize, c.inputSize], 'kept');
  const conv1 = conv(rec, device, 'conv1', [B, c.inputChannels, c.inputSize, c.inputSize], [c.conv1Channels, c.inputChannels, c.conv1Kernel, c.conv1Kernel],
    { padding: g.conv1Padding, relu: true, inputNeedsGrad: false, training });
  conv(rec, device, 'primary conv', conv1, [c.primaryTypes * c.primaryDim, c.conv1Channels, c.primaryKernel, c.primaryKernel],
    { stride: c.primaryStride, padding: g.primaryPadding, relu: false, inputNeedsGrad: true, training });
  const I = g.primaryCaps;
  const J = c.digitCaps;
  const D = c.digitDim;
  const r = c.routings;
  rec.activation('primary capsules', [B, I, c.primaryDim], training);
  rec.sliced('predictions u_hat', [B, I, J, D], 'kept');
  if (training) rec.sliced('gradient of predictions u_hat', [B, I, J, D], 'kept');
  rec.activation('digit capsules', [B, J, D], training);
  rec.add('routing s (saved)', [B, r, J, D], 'kept');
  rec.add('routing v per iteration (saved)', [B, r, J, D], 'kept');
  if (r > 1) rec.add('routing couplings (saved)', [B, r - 1, I, J], 'kept');
  if (training) {
    // The routing backward runs over slices of uhat that fit one binding.
    const perExample = I * J * D * 4;
    const slice = Math.max(1, Math.min(B, Math.floor(device.limits.maxStorageBufferBindingSize / perExample)));
    rec.add('routing gradient scratch', [slice, r, I, J], 'scratch', 'routing backward');
    rec.add('routing gradient of s', [B, r, J, D], 'scratch', 'routing backward');
  }
  rec.activation('capsule lengths', [B, J], training);
  if (training) rec.add('targets', [B, J], 'kept');
  if (c.decoder) {
    const decoderIn = J * D;
    rec.activation('decoder input (masked capsules)', [B, decoderIn], training);
    const sizes = [decoderIn, ...c.decoderHidden, g.pixels];
    for (let l = 1; l < sizes.length; l++) dense(rec, `decoder fc${l}`, B, sizes[l - 1], sizes[l], training);
  }
}

function baselineBuffers(rec: Recorder, device: MemoryDevice, c: BaselineConfig, B: number, training: boolean): void {
  const g = baselineGeometry(c);
  persistent(rec, baselineParameterShapes(c), training);
  let x = [B, c.inputChannels, c.inputSize, c.inputSize];
  rec.add('images', x, 'kept');
  let cin = c.inputChannels;
  c.convChannels.forEach((cout, k) => {
    x = conv(rec, device, `conv${k + 1}`, x, [cout, cin, c.convKernel, c.convKernel],
      { stride: c.convStride, padding: g.padding, relu: true, inputNeedsGrad: k > 0, training });
    if (c.pool > 1) {
      x = [B, cout, g.pooledSizes[k], g.pooledSizes[k]];
      rec.activation(`pool${k + 1} output`, x, training);
    }
    cin = cout;
  });
  rec.activation('flattened features', [B, g.flat], training);
  const sizes = [g.flat, ...c.fcHidden, c.classes];
  for (let l = 1; l < sizes.length; l++) {
    const last = l === sizes.length - 1;
    if (last && training && c.dropout > 0) rec.activation('dropout output', [B, sizes[l - 1]], training);
    dense(rec, last ? 'logits' : `fc${l}`, B, sizes[l - 1], sizes[l], training);
  }
}

/** Every buffer of one step at `batchSize`, their sizes, the estimated peak, and what exceeds a limit. */
export function estimateMemory(model: ModelSpec, batchSize: number, mode: MemoryMode, device: MemoryDevice): MemoryEstimate {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`estimateMemory: batch size must be a positive integer, got ${batchSize}`);
  const rec = new Recorder();
  const training = mode === 'train';
  if (model.kind === 'capsnet') capsnetBuffers(rec, device, model.config, batchSize, training);
  else baselineBuffers(rec, device, model.config, batchSize, training);
  const sum = (kind: BufferNeed['kind']) => rec.buffers.filter((b) => b.kind === kind).reduce((n, b) => n + b.bytes, 0);
  const passes = new Map<string, number>();
  for (const b of rec.buffers) if (b.kind === 'scratch') passes.set(b.pass!, (passes.get(b.pass!) ?? 0) + b.bytes);
  let scratchBytes = 0;
  let scratchPass = '';
  for (const [pass, bytes] of passes) if (bytes > scratchBytes) [scratchBytes, scratchPass] = [bytes, pass];
  const { maxStorageBufferBindingSize: binding, maxBufferSize } = device.limits;
  const tooLarge: MemoryEstimate['tooLarge'] = [];
  for (const b of rec.buffers) {
    if (b.limit === 'binding' && b.bytes > binding) tooLarge.push({ buffer: b, limitName: 'maxStorageBufferBindingSize', limitBytes: binding });
    if (b.limit === 'sliced') {
      if (sizeClass(b.bytes) > maxBufferSize) tooLarge.push({ buffer: b, limitName: 'maxBufferSize', limitBytes: maxBufferSize });
      else if (b.bytesPerExample! > binding) tooLarge.push({ buffer: b, limitName: 'maxStorageBufferBindingSize (one example)', limitBytes: binding });
    }
  }
  const persistentBytes = sum('persistent');
  const keptBytes = sum('kept');
  return {
    model: model.kind, mode, batchSize, buffers: rec.buffers, persistentBytes, keptBytes, scratchBytes, scratchPass,
    totalBytes: persistentBytes + keptBytes + scratchBytes, tooLarge,
  };
}

/** Whether `batchSize` fits the device's limits and (if given) a memory budget for the estimated peak. */
export function fits(model: ModelSpec, batchSize: number, mode: MemoryMode, device: MemoryDevice, budgetBytes?: number): boolean {
  const e = estimateMemory(model, batchSize, mode, device);
  return e.tooLarge.length === 0 && (budgetBytes === undefined || e.totalBytes <= budgetBytes);
}

/**
 * The largest batch size in [1, upTo] that fits, or 0 when not even one example does. Every size in
 * the estimate grows with the batch, so a binary search finds the boundary.
 */
export function largestBatchThatFits(model: ModelSpec, mode: MemoryMode, device: MemoryDevice, upTo: number, budgetBytes?: number): number {
  if (!fits(model, 1, mode, device, budgetBytes)) return 0;
  let [lo, hi] = [1, Math.max(1, upTo)];
  if (fits(model, hi, mode, device, budgetBytes)) return hi;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(model, mid, mode, device, budgetBytes)) lo = mid;
    else hi = mid;
  }
  return lo;
}

export class BatchTooLargeError extends Error {
  override name = 'BatchTooLargeError';
  constructor(message: string, readonly largest: number, readonly estimate: MemoryEstimate) {
    super(message);
  }
}

export const formatBytes = (n: number): string =>
  n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} bytes`;

/**
 * Refuses a batch size that does not fit (BatchTooLargeError naming the buffers, their sizes, the
 * limits, and the largest batch size that fits); returns the estimate otherwise. `flag` names the
 * option in the message (e.g. '--batch-size'); `adapter` names the device.
 */
export function checkBatchSize(
  model: ModelSpec, batchSize: number, mode: MemoryMode, device: MemoryDevice,
  options: { flag?: string; adapter?: string; budgetBytes?: number; budgetWhat?: string } = {},
): MemoryEstimate {
  const estimate = estimateMemory(model, batchSize, mode, device);
  const overBudget = options.budgetBytes !== undefined && estimate.totalBytes > options.budgetBytes;
  if (estimate.tooLarge.length === 0 && !overBudget) return estimate;
  const flag = options.flag ?? 'batch size';
  const what = mode === 'train' ? 'a training step' : 'an evaluation batch';
  const on = options.adapter ? ` on ${options.adapter}` : '';
  const reasons = estimate.tooLarge.slice(0, 3).map(({ buffer, limitName, limitBytes }) => {
    const bytes = limitName === 'maxBufferSize' ? sizeClass(buffer.bytes) : limitName.endsWith('(one example)') ? buffer.bytesPerExample! : buffer.bytes;
    return `${buffer.what} [${buffer.shape.join(', ')}] needs ${formatBytes(bytes)}, above ${limitName} (${formatBytes(limitBytes)})`;
  });
  if (estimate.tooLarge.length > 3) reasons.push(`and ${estimate.tooLarge.length - 3} more buffers`);
  if (overBudget) reasons.push(`the estimated peak of ${formatBytes(estimate.totalBytes)} is above ${options.budgetWhat ?? 'the memory budget'} (${formatBytes(options.budgetBytes!)})`);
  const largest = largestBatchThatFits(model, mode, device, batchSize - 1, options.budgetBytes);
  const advice = largest > 0
    ? `the largest batch size that fits is ${largest}`
    : `no batch size fits: ${estimate.tooLarge.some((t) => t.buffer.kind === 'persistent') ? 'the model\'s parameters alone exceed the limits' : 'not even one example'}; choose a smaller model config`;
  throw new BatchTooLargeError(`${flag} ${batchSize}: ${what} does not fit${on}: ${reasons.join('; ')}. ${advice[0].toUpperCase()}${advice.slice(1)}.`, largest, estimate);
}

/** The device description the estimate needs, from a live context (the same facts conv2d() plans with). */
export function memoryDevice(ctx: GpuContext): MemoryDevice {
  const conv = deviceInfo(ctx);
  return { limits: ctx.limits, isSoftware: conv.isSoftware, subgroups8: conv.subgroups8, conv };
}
