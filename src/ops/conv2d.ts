// 2-D convolution (cross-correlation, as in PyTorch) on the autograd tape: forward with bias and an
// optional fused ReLU, and its backward (dx, dw, db). Layouts are PyTorch's: x [B, Cin, H, W],
// w [Cout, Cin, KH, KW], bias [Cout], out [B, Cout, OH, OW].
//
// Two kernel variants:
//   'direct' - one invocation per output (or gradient) element: the oracle, and the choice for odd
//              or tiny shapes. kernels/conv2d_direct*.wgsl.
//   'gemm'   - implicit GEMM with register blocking, split-K and packed operands, for the real
//              shapes (Conv1, PrimaryCaps). kernels/conv2d_gemm*.wgsl, conv2d_pack.wgsl; where
//              subgroups are exactly 8 wide the *_sg.wgsl kernels share the workgroup-uniform
//              operand by subgroupBroadcast (plan.subgroups). On software adapters (CPUs: llvmpipe,
//              SwiftShader) the packed operands are textures instead of storage buffers
//              (plan.operands = 'texture': kernels/conv2d_gemm*_tex.wgsl, conv2d_pack_tex.wgsl):
//              read-only storage texture loads cost a fraction of buffer loads there (3-4x the
//              GFLOP/s on llvmpipe/OpenGL, ~1.5-2x on Vulkan); real GPUs keep the buffer kernels.
// chooseConv2dPlan() picks one per shape and adapter; options.variant forces one (tests, bench).
// Both use kernels/conv2d_bias_grad.wgsl for the bias gradient.
// Reference: test/reference/conv2d.ts. Tests: test/conv2d.test.ts.

import directWgsl from '../../kernels/conv2d_direct.wgsl';
import directGradInputWgsl from '../../kernels/conv2d_direct_grad_input.wgsl';
import directGradWeightWgsl from '../../kernels/conv2d_direct_grad_weight.wgsl';
import biasGradWgsl from '../../kernels/conv2d_bias_grad.wgsl';
import packWgsl from '../../kernels/conv2d_pack.wgsl';
import gemmWgsl from '../../kernels/conv2d_gemm.wgsl';
import gemmGradInputWgsl from '../../kernels/conv2d_gemm_grad_input.wgsl';
import gemmGradWeightWgsl from '../../kernels/conv2d_gemm_grad_weight.wgsl';
import gemmSgWgsl from '../../kernels/conv2d_gemm_sg.wgsl';
import gemmGradInputSgWgsl from '../../kernels/conv2d_gemm_grad_input_sg.wgsl';
import gemmGradWeightSgWgsl from '../../kernels/conv2d_gemm_grad_weight_sg.wgsl';
import packTexWgsl from '../../kernels/conv2d_pack_tex.wgsl';
import gemmTexWgsl from '../../kernels/conv2d_gemm_tex.wgsl';
import gemmGradInputTexWgsl from '../../kernels/conv2d_gemm_grad_input_tex.wgsl';
import gemmGradWeightTexWgsl from '../../kernels/conv2d_gemm_grad_weight_tex.wgsl';
import type { GpuContext, KernelSpec, PooledTexture } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { Tensor, empty } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';

export type Conv2dVariant = 'direct' | 'gemm';
/** Every variant, for tests that must cover them all. */
export const CONV2D_VARIANTS: readonly Conv2dVariant[] = ['direct', 'gemm'];

export interface Conv2dOptions {
  /** One number for both axes, or [sy, sx]. Default 1. */
  stride?: number | readonly [number, number];
  /** Zero padding: a number, [py, px], 'valid' (0) or 'same' ((K - 1) / 2; stride 1, odd kernels). Default 0. */
  padding?: number | readonly [number, number] | 'valid' | 'same';
  /** Fused ReLU on the output. Default false. */
  relu?: boolean;
  /** Forces a kernel variant for every pass (tests, benchmarks). Default: chooseConv2dPlan(). */
  variant?: Conv2dVariant;
  /** Overrides parts of the chosen plan (tile sizes, split-K chunks...): tests and benchmarks. */
  plan?: Partial<Conv2dPlan>;
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
  packInput: { name: 'conv2d_pack.pack_input', code: packWgsl, entryPoint: 'pack_input' } as KernelSpec,
  packTaps: { name: 'conv2d_pack.pack_taps', code: packWgsl, entryPoint: 'pack_taps' } as KernelSpec,
  packWeight: { name: 'conv2d_pack.pack_weight', code: packWgsl, entryPoint: 'pack_weight' } as KernelSpec,
  packWeightRows: { name: 'conv2d_pack.pack_weight_rows', code: packWgsl, entryPoint: 'pack_weight_rows' } as KernelSpec,
  packGradOut: { name: 'conv2d_pack.pack_grad_out', code: packWgsl, entryPoint: 'pack_grad_out' } as KernelSpec,
  packGradOutT: { name: 'conv2d_pack.pack_grad_out_t', code: packWgsl, entryPoint: 'pack_grad_out_t' } as KernelSpec,
  finalizeGradWeight: { name: 'conv2d_pack.finalize_grad_weight', code: packWgsl, entryPoint: 'finalize_grad_weight' } as KernelSpec,
  col2im: { name: 'conv2d_pack.col2im', code: packWgsl, entryPoint: 'col2im' } as KernelSpec,
  col2imChannels: { name: 'conv2d_pack.col2im_channels', code: packWgsl, entryPoint: 'col2im_channels' } as KernelSpec,
  packInputTex: { name: 'conv2d_pack_tex.pack_input_tex', code: packTexWgsl, entryPoint: 'pack_input_tex' } as KernelSpec,
  packTapsTex: { name: 'conv2d_pack_tex.pack_taps_tex', code: packTexWgsl, entryPoint: 'pack_taps_tex' } as KernelSpec,
  packWeightTex: { name: 'conv2d_pack_tex.pack_weight_tex', code: packTexWgsl, entryPoint: 'pack_weight_tex' } as KernelSpec,
  packWeightRowsTex: { name: 'conv2d_pack_tex.pack_weight_rows_tex', code: packTexWgsl, entryPoint: 'pack_weight_rows_tex' } as KernelSpec,
  packWeightRowsChannelsTex: { name: 'conv2d_pack_tex.pack_weight_rows_channels_tex', code: packTexWgsl, entryPoint: 'pack_weight_rows_channels_tex' } as KernelSpec,
  packGradOutTex: { name: 'conv2d_pack_tex.pack_grad_out_tex', code: packTexWgsl, entryPoint: 'pack_grad_out_tex' } as KernelSpec,
  packGradOutTTex: { name: 'conv2d_pack_tex.pack_grad_out_t_tex', code: packTexWgsl, entryPoint: 'pack_grad_out_t_tex' } as KernelSpec,
};

const PACK_WG = 64;

function gemmKernel(name: string, code: string, tiles: GemmTiles): KernelSpec {
  return { name, code, constants: { WG: tiles.wg, ROWS: tiles.rows } };
}

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
  /** The device has the 'subgroups' feature and every subgroup is exactly 8 invocations (llvmpipe on Vulkan). */
  subgroups8?: boolean;
  /** Kernels can read read-only storage textures (WGSL readonly_and_readwrite_storage_textures). */
  readOnlyStorageTextures?: boolean;
  /** maxTextureDimension2D (8,192 when not given: the WebGPU default). */
  maxTextureDimension2D?: number;
}

export function deviceInfo(ctx: GpuContext): Conv2dDeviceInfo {
  const info = (ctx.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return {
    isSoftware: ctx.adapter.isSoftware,
    maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupsPerDimension: ctx.limits.maxComputeWorkgroupsPerDimension,
    subgroups8: ctx.features.has('subgroups') && info?.subgroupMinSize === 8 && info?.subgroupMaxSize === 8,
    readOnlyStorageTextures: ctx.hasReadOnlyStorageTextures,
    maxTextureDimension2D: ctx.maxTextureSize,
  };
}

/** The register block of the GEMM kernels: `wg` invocations per workgroup, `rows` rows each (x 16 columns). */
export interface GemmTiles {
  wg: number;
  rows: 4 | 8;
}

/** How each pass runs: the kernel variant, and the gemm variant's packing, tiles and split-K. */
export interface Conv2dPlan {
  forward: Conv2dVariant;
  gradInput: Conv2dVariant;
  gradWeight: Conv2dVariant;
  /**
   * gemm: how the input is packed into vec4s along the reduction: 'channels' (Cin padded to 4), 'kx'
   * (kernel columns padded to 4), or 'taps' (an explicit im2col of the Cin KH KW taps padded to 4,
   * for few input channels, e.g. Conv1: 84 slots for 81 taps; the packed input is KH KW / stride^2
   * times the input).
   */
  pack: 'channels' | 'kx' | 'taps';
  /** gemm: use the *_sg kernels (subgroupBroadcast of the shared operand; subgroups of exactly 8, tiles wg = 8; buffer operands). */
  subgroups: boolean;
  /**
   * gemm: where the packed operands live: 'buffer' (storage buffers: real GPUs, and the oracle of
   * the texture kernels) or 'texture' (read-only storage textures: software adapters).
   */
  operands: 'buffer' | 'texture';
  /** gemm with textures: the largest texture side used (maxTextureDimension2D; tests lower it to exercise the folds). */
  textureLimit: number;
  forwardTiles: GemmTiles;
  gradInputTiles: GemmTiles;
  gradWeightTiles: GemmTiles;
  /** gemm forward: kernel positions (ky, kq) per split-K dispatch (each covers CG * 4 of the reduction). */
  forwardChunk: number;
  /** gemm grad input: images per group (the column gradient of a group must fit in memory). */
  gradInputGroup: number;
  /**
   * gemm grad input: the order of the columns of the column gradient dcols = dOut . w that col2im
   * gathers into dx. 'kernel': PyTorch's (ci, ky, kx), one float per tap in col2im. 'channels':
   * (ky, kx, ci) with the input channels padded to a multiple of 4, so that col2im_channels reads
   * one vec4 (4 channels) per tap: a quarter of the loads. Texture operands only (its weight rows
   * are packed by pack_weight_rows_channels_tex).
   */
  gradInputColumns: 'kernel' | 'channels';
  /** gemm grad weight: parallel split-K slabs over m = (b, oy, ox), and rows m per successive dispatch (a multiple of 4). */
  gradWeightSlabs: number;
  gradWeightChunk: number;
}

/** Below this many multiply-adds the direct kernels win: the gemm path's packing dispatches cost more than the work. */
export const GEMM_MIN_MACS = 1 << 20;
/** Target reduction length per split-K dispatch: ~1,300-2,600 keeps llvmpipe's throughput (SOFTWARE_GPU.md). */
const SPLIT_K_TARGET = 2048;
/** Upper bound on the column-gradient buffer of the grad-input GEMM (one group of images). */
const DCOLS_BUDGET_BYTES = 64 << 20;
/** Grad-weight GEMM: split into parallel slabs until there are about this many workgroups. */
const TARGET_WORKGROUPS = 128;

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);
const roundUp = (a: number, b: number) => ceilDiv(a, b) * b;

/** Sizes derived from a geometry and a plan for the gemm kernels (element counts are f32s). */
export interface GemmLayout {
  /** Packing mode as the kernels see it: 1 channels, 4 kx, 0 taps. */
  kxs: 0 | 1 | 4; CG: number; KQ: number; KP: number; Hp: number; Wp: number;
  /** Strides of the GEMM's row walk over the packed input (1 for taps: one packed pixel per output). */
  ay: number; ax: number;
  M: number; P: number;
  xqFloats: number;
  // forward
  N4: number; wtFloats: number; forwardRowTiles: number;
  // grad input
  CO4: number; KK: number; CI4: number; NR4: number; wrDirect: boolean; wrFloats: number; dpRows: number; dpFloats: number;
  groupRowTiles: number; dcolsFloats: number;
  // grad weight
  rowsPad: number; MT4: number; slab4: number; chunk4: number; NK4: number; NW4: number; dptFloats: number; dwpFloats: number;
}

export function gemmLayout(g: Conv2dGeometry, plan: Conv2dPlan): GemmLayout {
  const taps = plan.pack === 'taps';
  const kxs = taps ? 0 : plan.pack === 'channels' ? 1 : 4;
  const KK = g.Cin * g.KH * g.KW;
  // taps: the packed input is an image of OH x OW pixels of ceil(KK / 4) vec4s, seen as a 1x1 convolution.
  const CG = taps ? ceilDiv(KK, 4) : kxs === 1 ? ceilDiv(g.Cin, 4) : g.Cin;
  const KQ = taps ? 1 : kxs === 1 ? g.KW : ceilDiv(g.KW, 4);
  const KP = taps ? 1 : g.KH * KQ;
  const Hp = taps ? g.OH : g.H + 2 * g.py;
  const Wp = taps ? g.OW : g.W + 2 * g.px;
  const [ay, ax] = taps ? [1, 1] : [g.sy, g.sx];
  const P = g.OH * g.OW;
  const M = g.B * P;
  const ft = plan.forwardTiles.wg * plan.forwardTiles.rows;
  const it = plan.gradInputTiles.wg * plan.gradInputTiles.rows;
  const wt = plan.gradWeightTiles.wg * plan.gradWeightTiles.rows;
  const N4 = roundUp(g.Cout, 16) / 4;
  const CO4 = ceilDiv(g.Cout, 4);
  const channelColumns = plan.gradInputColumns === 'channels';
  // Grad input: the columns of dcols (KK taps, or KH KW taps of CI4 channels padded to 4) in vec4s, padded to 16 columns.
  const CI4 = ceilDiv(g.Cin, 4);
  const wrDirect = !channelColumns && g.Cout % 4 === 0 && KK % 16 === 0;
  const NR4 = roundUp(channelColumns ? g.KH * g.KW * CI4 * 4 : KK, 16) / 4;
  const dpRows = roundUp(M, it) + it;
  const groupRowTiles = ceilDiv(plan.gradInputGroup * P, it);
  const rowsPad = roundUp(g.Cout, wt);
  const slabs = plan.gradWeightSlabs;
  const slab4 = ceilDiv(ceilDiv(M, 4), slabs);
  const NK4 = KP * CG;
  const NW4 = roundUp(NK4, 4);
  return {
    kxs, CG, KQ, KP, Hp, Wp, ay, ax, M, P,
    xqFloats: g.B * Hp * Wp * CG * 4,
    N4, wtFloats: KP * CG * 4 * N4 * 4, forwardRowTiles: ceilDiv(M, ft),
    CO4, KK, CI4, NR4, wrDirect, wrFloats: wrDirect ? 0 : CO4 * 4 * NR4 * 4, dpRows, dpFloats: dpRows * CO4 * 4,
    groupRowTiles, dcolsFloats: groupRowTiles * it * NR4 * 4,
    rowsPad, MT4: slab4 * slabs, slab4, chunk4: Math.max(1, Math.floor(plan.gradWeightChunk / 4)), NK4, NW4,
    dptFloats: rowsPad * slab4 * slabs * 4, dwpFloats: slabs * rowsPad * NW4 * 4,
  };
}

/**
 * Sizes of the textures of the gemm passes with texture operands (plan.operands = 'texture'), folded
 * under plan.textureLimit texels per side (layouts in kernels/conv2d_pack_tex.wgsl):
 *   x   packed input, RW = Wp CG texels per row, images stacked down in blocks of ipb, blocks side by side
 *   w   forward weights, 4 N4 texels wide, CG texel rows per kernel position, kpb positions per block, blocks side by side
 *   dp  grad-input output gradient, CO4 texels wide, rpb rows per block, blocks side by side
 *   wr  grad-input weight rows, 4 texels per column of vec4, cpb columns per block, blocks stacked down
 *   dpt grad-weight output gradient (transposed), qpb texels wide, rowsPad rows per block, blocks stacked down
 */
export interface TextureLayout {
  xRW: number; xIpb: number; xW: number; xH: number;
  wKpb: number; wW: number; wH: number;
  dpRpb: number; dpW: number; dpH: number;
  wrCpb: number; wrW: number; wrH: number;
  dptQpb: number; dptW: number; dptH: number;
}

export function textureLayout(g: Conv2dGeometry, plan: Conv2dPlan, L: GemmLayout = gemmLayout(g, plan)): TextureLayout {
  const F = plan.textureLimit;
  const xRW = L.Wp * L.CG;
  const xIpb = Math.max(1, Math.floor(F / L.Hp));
  const wKpb = Math.max(1, Math.floor(F / L.CG));
  const dpRpb = Math.min(L.dpRows, F);
  // A workgroup's 4 columns must share a block: blocks of a multiple of 4 columns (16 texels).
  const wrCpb = Math.min(L.NR4, Math.max(4, Math.floor(F / 16) * 4));
  const dptQpb = Math.min(L.MT4, F);
  return {
    xRW, xIpb, xW: ceilDiv(g.B, xIpb) * xRW, xH: Math.min(g.B, xIpb) * L.Hp,
    wKpb, wW: ceilDiv(L.KP, wKpb) * 4 * L.N4, wH: Math.min(L.KP, wKpb) * L.CG,
    dpRpb, dpW: ceilDiv(L.dpRows, dpRpb) * L.CO4, dpH: dpRpb,
    wrCpb, wrW: 4 * wrCpb, wrH: ceilDiv(L.NR4, wrCpb) * L.CO4,
    dptQpb, dptW: dptQpb, dptH: ceilDiv(L.MT4, dptQpb) * L.rowsPad,
  };
}

/** The textures of the plan's gemm passes that do not fit plan.textureLimit even folded; empty when all fit (or the plan uses buffers). */
function oversizedTextures(g: Conv2dGeometry, plan: Conv2dPlan): string[] {
  if (plan.operands !== 'texture') return [];
  const T = textureLayout(g, plan);
  const bad: string[] = [];
  const check = (name: string, w: number, h: number) => {
    if (w > plan.textureLimit || h > plan.textureLimit) bad.push(`${name} texture (${w} x ${h} texels)`);
  };
  if (plan.forward === 'gemm' || plan.gradWeight === 'gemm') check('packed input', T.xW, T.xH);
  if (plan.forward === 'gemm') check('packed weights', T.wW, T.wH);
  if (plan.gradInput === 'gemm') {
    check('packed output gradient', T.dpW, T.dpH);
    check('packed weight rows', T.wrW, T.wrH);
  }
  if (plan.gradWeight === 'gemm') check('transposed output gradient', T.dptW, T.dptH);
  return bad;
}

/**
 * The smallest textureLimit under which every texture of the plan's gemm passes fits once folded
 * (tests use it to make the kernels fold as much as they can). Fitting is monotone in the limit.
 */
export function smallestTextureLimit(g: Conv2dGeometry, plan: Conv2dPlan): number {
  const fits = (limit: number) => oversizedTextures(g, { ...plan, operands: 'texture', textureLimit: limit }).length === 0;
  let lo = 16;
  let hi = 1 << 16;
  if (!fits(hi)) throw new ShapeError('conv2d: the gemm textures do not fit even at 65,536 texels per side');
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The buffers of the gemm passes that would not fit in one binding, with their sizes; empty when all fit. */
function oversizedBuffers(g: Conv2dGeometry, plan: Conv2dPlan, limit: number, maxGroups: number): string[] {
  const L = gemmLayout(g, plan);
  const bad: string[] = [];
  // With texture operands the packed operands are textures (checked by oversizedTextures): only
  // the outputs (and the column gradient and slabs) are storage buffers.
  const packed = plan.operands === 'buffer';
  const check = (name: string, floats: number, isPacked = true) => {
    if ((packed || !isPacked) && floats * 4 > limit) bad.push(`${name} (${floats * 4} bytes)`);
  };
  if (plan.forward === 'gemm') {
    check('packed input', L.xqFloats);
    check('packed weights', L.wtFloats);
    if (L.forwardRowTiles > maxGroups) bad.push(`forward grid (${L.forwardRowTiles} row tiles)`);
  }
  if (plan.gradInput === 'gemm') {
    check('packed output gradient', L.dpFloats);
    check('packed weight rows', L.wrFloats);
    check('column gradient', L.dcolsFloats, false);
    if (L.NR4 / 4 > maxGroups || L.groupRowTiles > maxGroups) bad.push('grad-input grid');
  }
  if (plan.gradWeight === 'gemm') {
    check('packed input', L.xqFloats);
    check('transposed output gradient', L.dptFloats);
    check('weight gradient slabs', L.dwpFloats, false);
    if (L.NW4 / 4 > maxGroups || L.rowsPad / (plan.gradWeightTiles.wg * plan.gradWeightTiles.rows) > maxGroups || plan.gradWeightSlabs > maxGroups) bad.push('grad-weight grid');
  }
  return bad;
}

/**
 * Picks the kernel variant of each pass and the gemm variant's parameters for a shape on a device.
 * - 'direct' below GEMM_MIN_MACS multiply-adds, or when a gemm buffer would not fit in one binding;
 *   'gemm' otherwise (a forced variant is used as is, and checked by conv2d()).
 * - Packing: with Cin < 4 (Conv1), an explicit im2col of the taps ('taps': 84 reduction slots for
 *   81 taps, instead of 108 along kx or 324 along channels) if it fits in one binding; otherwise
 *   vec4s along input channels unless padding Cin to 4 wastes more than padding KW to 4 ('kx').
 * - Tiles: on software adapters (llvmpipe, SwiftShader: one invocation per SIMD lane) 8 invocations
 *   x 8 rows, the best measured shape there; on GPUs 64 invocations x 4 rows.
 * - Operands: on software adapters with read-only storage textures (llvmpipe on OpenGL and Vulkan,
 *   SwiftShader) textures, folded under maxTextureDimension2D (tools/bench-conv.ts, PrimaryCaps at
 *   batch 32: ~3x the buffer kernels' GFLOP/s on OpenGL, ~1.3x the subgroup buffer kernels' per
 *   CPU-second on Vulkan; equal on SwiftShader); buffers on GPUs, or where the textures cannot fit.
 *   (Textures + subgroupBroadcast were tried on Vulkan: +2-3% on a training step, within noise: not kept.)
 * - Subgroups (buffer operands): where every subgroup is 8 invocations wide, the _sg kernels with
 *   8 invocations (one workgroup = one subgroup): about 1.8x on the measured buffer matmul there.
 * - Split-K: forward chunks of ~2,048 of the reduction (PrimaryCaps: 8 of 81 kernel positions);
 *   grad weight: parallel slabs while there are fewer than ~128 workgroups, chunks of 2,048 rows m.
 * - Grad input: groups of images whose column gradient fits in 64 MiB (and the binding limit).
 *   With texture operands, columns in the order 'channels' where padding Cin to 4 wastes at most
 *   1/8 (PrimaryCaps): col2im gathers vec4s of 4 channels (tools/bench-conv.ts --parts, PrimaryCaps
 *   on OpenGL llvmpipe: col2im 118 -> 51 ms at batch 32, 501 -> 194 ms at 128; the whole pass
 *   75% -> 85-88% of the ceiling matmul, measured side by side).
 */
export function chooseConv2dPlan(g: Conv2dGeometry, device: Conv2dDeviceInfo, force?: Conv2dVariant): Conv2dPlan {
  const channelsWaste = (4 * ceilDiv(g.Cin, 4)) / g.Cin;
  const kxWaste = (4 * ceilDiv(g.KW, 4)) / g.KW;
  const implicit = kxWaste < channelsWaste ? 'kx' : 'channels';
  const limit = device.maxStorageBufferBindingSize;
  const maxGroups = device.maxComputeWorkgroupsPerDimension;
  let plan = gemmPlan(g, device, g.Cin < 4 ? 'taps' : implicit);
  // The taps' im2col is KH KW / (sy sx) times the input: when it does not fit, pack implicitly.
  if (plan.pack === 'taps' && oversizedBuffers(g, plan, limit, maxGroups).length > 0) plan = gemmPlan(g, device, implicit);
  // Textures that do not fit even folded: the buffer kernels (a choice of the plan, visible in it).
  if (oversizedTextures(g, plan).length > 0) plan = gemmPlan(g, device, plan.pack, 'buffer');
  if (force) return { ...plan, forward: force, gradInput: force, gradWeight: force };
  const macs = g.B * g.Cout * g.OH * g.OW * g.Cin * g.KH * g.KW;
  if (macs < GEMM_MIN_MACS) return { ...plan, forward: 'direct', gradInput: 'direct', gradWeight: 'direct' };
  for (const pass of ['forward', 'gradInput', 'gradWeight'] as const) {
    const only = { ...plan, forward: 'direct', gradInput: 'direct', gradWeight: 'direct', [pass]: 'gemm' } as Conv2dPlan;
    if (oversizedBuffers(g, only, limit, maxGroups).length > 0) plan[pass] = 'direct';
  }
  return plan;
}

/** The texture side the adapter allows (WebGPU's guaranteed minimum when it does not say). */
const textureLimitOf = (device: Conv2dDeviceInfo) => device.maxTextureDimension2D ?? 8192;

/** Textures on CPU-like adapters (measured faster than buffers and than subgroups there); buffers on GPUs. */
function defaultOperands(device: Conv2dDeviceInfo): Conv2dPlan['operands'] {
  return device.isSoftware && device.readOnlyStorageTextures === true ? 'texture' : 'buffer';
}

/**
 * The all-gemm plan for a packing: tiles, split-K chunks, groups and slabs as described above.
 * `operands`: forced (buffers, when textures do not fit), else the adapter's choice.
 */
function gemmPlan(g: Conv2dGeometry, device: Conv2dDeviceInfo, pack: Conv2dPlan['pack'], operands = defaultOperands(device)): Conv2dPlan {
  const subgroups = operands === 'buffer' && device.subgroups8 === true;
  const tiles: GemmTiles = device.isSoftware || subgroups ? { wg: 8, rows: 8 } : { wg: 64, rows: 4 };
  const KK = g.Cin * g.KH * g.KW;
  const CG = pack === 'taps' ? ceilDiv(KK, 4) : pack === 'channels' ? ceilDiv(g.Cin, 4) : g.Cin;
  const KP = pack === 'taps' ? 1 : g.KH * (pack === 'channels' ? g.KW : ceilDiv(g.KW, 4));
  const M = g.B * g.OH * g.OW;
  // Channel-ordered columns where they pay: texture operands, and padding Cin to 4 wastes at most 1/8 of the GEMM.
  const gradInputColumns = operands === 'texture' && 4 * ceilDiv(g.Cin, 4) * 8 <= g.Cin * 9 ? 'channels' : 'kernel';
  const columns = gradInputColumns === 'channels' ? g.KH * g.KW * 4 * ceilDiv(g.Cin, 4) : KK;
  const rowBytes = g.OH * g.OW * roundUp(columns, 16) * 4;
  const budget = Math.min(DCOLS_BUDGET_BYTES, device.maxStorageBufferBindingSize);
  const groups = ceilDiv(g.B, Math.max(1, Math.floor(budget / rowBytes)));
  const weightWorkgroups = ceilDiv(g.Cout, tiles.wg * tiles.rows) * ceilDiv(KP * CG, 4);
  return {
    forward: 'gemm', gradInput: 'gemm', gradWeight: 'gemm',
    pack,
    subgroups,
    operands,
    textureLimit: textureLimitOf(device),
    forwardTiles: tiles, gradInputTiles: tiles, gradWeightTiles: tiles,
    forwardChunk: Math.max(1, Math.min(KP, Math.round(SPLIT_K_TARGET / (4 * CG)))),
    gradInputGroup: ceilDiv(g.B, groups),
    gradInputColumns,
    gradWeightSlabs: Math.max(1, Math.min(ceilDiv(TARGET_WORKGROUPS, weightWorkgroups), Math.floor(M / 256))),
    gradWeightChunk: SPLIT_K_TARGET,
  };
}

function validatePlan(plan: Conv2dPlan, device: Conv2dDeviceInfo): void {
  for (const t of [plan.forwardTiles, plan.gradInputTiles, plan.gradWeightTiles]) {
    if (!(Number.isInteger(t.wg) && t.wg >= 1 && t.wg <= 256) || (t.rows !== 4 && t.rows !== 8)) {
      throw new ShapeError(`conv2d: bad gemm tiles ${JSON.stringify(t)} (wg 1..256, rows 4 or 8)`);
    }
    if (plan.subgroups && t.wg !== 8) throw new ShapeError(`conv2d: the subgroup kernels need tiles of wg 8 (one subgroup), got ${JSON.stringify(t)}`);
  }
  if (plan.operands !== 'buffer' && plan.operands !== 'texture') throw new ShapeError(`conv2d: plan.operands must be 'buffer' or 'texture', got ${JSON.stringify(plan.operands)}`);
  if (plan.gradInputColumns !== 'kernel' && plan.gradInputColumns !== 'channels') throw new ShapeError(`conv2d: plan.gradInputColumns must be 'kernel' or 'channels', got ${JSON.stringify(plan.gradInputColumns)}`);
  if (plan.gradInputColumns === 'channels' && plan.operands !== 'texture') throw new ShapeError('conv2d: plan.gradInputColumns = \'channels\' is implemented for texture operands only (plan.operands = \'texture\')');
  if (plan.operands === 'texture' && plan.subgroups) throw new ShapeError('conv2d: the subgroup kernels read buffers: plan.subgroups needs plan.operands = \'buffer\'');
  if (plan.subgroups && !device.subgroups8) {
    throw new ShapeError('conv2d: plan.subgroups needs the subgroups feature with subgroups of exactly 8 invocations, which this device does not have');
  }
  if (plan.operands === 'texture') {
    if (!device.readOnlyStorageTextures) throw new ShapeError('conv2d: plan.operands = \'texture\' needs read-only storage textures (WGSL readonly_and_readwrite_storage_textures), which this device does not have');
    const max = textureLimitOf(device);
    if (!Number.isInteger(plan.textureLimit) || plan.textureLimit < 16 || plan.textureLimit > max) {
      throw new ShapeError(`conv2d: plan.textureLimit must be an integer in 16 .. ${max} (maxTextureDimension2D), got ${plan.textureLimit}`);
    }
  }
  for (const [name, v] of [['forwardChunk', plan.forwardChunk], ['gradInputGroup', plan.gradInputGroup], ['gradWeightSlabs', plan.gradWeightSlabs], ['gradWeightChunk', plan.gradWeightChunk]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ShapeError(`conv2d: plan.${name} must be a positive integer, got ${v}`);
  }
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

// ---- gemm kernels ----

/** A pooled scratch tensor of `floats` f32s (given back by the caller once its dispatches are recorded). */
function scratch(ctx: GpuContext, floats: number, name: string): Tensor {
  return empty(ctx, [Math.max(4, floats)], name);
}

function packInput(g: Conv2dGeometry, L: GemmLayout, x: Tensor): Tensor {
  const xq = scratch(x.ctx, L.xqFloats, 'conv2d.xq');
  const total = L.xqFloats / 4;
  if (L.kxs === 0) {
    x.ctx.dispatch(KERNELS.packTaps, [x.buffer, xq.buffer],
      [g.B, g.Cin, g.H, g.W, g.KH, g.KW, g.sy, g.sx, g.py, g.px, g.OH, g.OW, L.CG, total], ceilDiv(total, PACK_WG));
  } else {
    x.ctx.dispatch(KERNELS.packInput, [x.buffer, xq.buffer], [g.B, g.Cin, g.H, g.W, L.Hp, L.Wp, L.CG, L.kxs, g.py, g.px, total], ceilDiv(total, PACK_WG));
  }
  return xq;
}

/** d loss / d pre-activation, packed [rows, cols4] (transposed: [Cout rows, m]); relu-masked with `out`. */
function packGradOut(g: Conv2dGeometry, L: GemmLayout, dOut: Tensor, mask: Tensor, transposed: boolean): Tensor {
  const [rows, cols4] = transposed ? [L.rowsPad, L.MT4] : [L.dpRows, L.CO4];
  const dp = scratch(dOut.ctx, rows * cols4 * 4, transposed ? 'conv2d.dpt' : 'conv2d.dp');
  const total = rows * cols4;
  dOut.ctx.dispatch(transposed ? KERNELS.packGradOutT : KERNELS.packGradOut, [dOut.buffer, mask.buffer, dp.buffer],
    [L.M, L.P, g.Cout, g.relu ? 1 : 0, rows, cols4, total], ceilDiv(total, PACK_WG));
  return dp;
}

/** dw [Cout, Cin, KH, KW] = the sum over slabs of the packed dwp (one invocation per kernel row). */
function finalizeGradWeight(g: Conv2dGeometry, plan: Conv2dPlan, L: GemmLayout, dwp: Tensor, dw: Tensor): void {
  const rows = g.Cout * g.Cin * g.KH;
  dw.ctx.dispatch(KERNELS.finalizeGradWeight, [dwp.buffer, dw.buffer],
    [g.Cout, g.Cin, g.KH, g.KW, L.KQ, L.CG, L.kxs, L.NW4 * 4, L.rowsPad * L.NW4 * 4, plan.gradWeightSlabs, rows], ceilDiv(rows, PACK_WG));
}

// ---- gemm kernels with texture operands (layouts: kernels/conv2d_pack_tex.wgsl, textureLayout) ----

function packInputTex(g: Conv2dGeometry, L: GemmLayout, T: TextureLayout, x: Tensor): PooledTexture {
  const ctx = x.ctx;
  const xq = ctx.acquireTexture(T.xW, T.xH, 'conv2d.xq');
  const total = L.xqFloats / 4;
  if (L.kxs === 0) {
    ctx.dispatch(KERNELS.packTapsTex, [x.buffer, xq],
      [g.B, g.Cin, g.H, g.W, g.KH, g.KW, g.sy, g.sx, g.py, g.px, g.OH, g.OW, L.CG, total, T.xRW, T.xIpb], ceilDiv(total, PACK_WG));
  } else {
    ctx.dispatch(KERNELS.packInputTex, [x.buffer, xq],
      [g.B, g.Cin, g.H, g.W, L.Hp, L.Wp, L.CG, L.kxs, g.py, g.px, total, T.xRW, T.xIpb], ceilDiv(total, PACK_WG));
  }
  return xq;
}

/** The output gradient packed as a texture (dp for grad input, transposed dpt for grad weight); relu-masked with `mask`. */
function packGradOutTex(g: Conv2dGeometry, L: GemmLayout, T: TextureLayout, dOut: Tensor, mask: Tensor, transposed: boolean): PooledTexture {
  const ctx = dOut.ctx;
  const [rows, cols4, fold] = transposed ? [L.rowsPad, L.MT4, T.dptQpb] : [L.dpRows, L.CO4, T.dpRpb];
  const tex = transposed ? ctx.acquireTexture(T.dptW, T.dptH, 'conv2d.dpt') : ctx.acquireTexture(T.dpW, T.dpH, 'conv2d.dp');
  const total = rows * cols4;
  ctx.dispatch(transposed ? KERNELS.packGradOutTTex : KERNELS.packGradOutTex, [dOut.buffer, mask.buffer, tex],
    [L.M, L.P, g.Cout, g.relu ? 1 : 0, rows, cols4, total, fold], ceilDiv(total, PACK_WG));
  return tex;
}

function forwardGemmTex(g: Conv2dGeometry, plan: Conv2dPlan, x: Tensor, w: Tensor, bias: Tensor | null, out: Tensor): void {
  const ctx = x.ctx;
  const L = gemmLayout(g, plan);
  const T = textureLayout(g, plan, L);
  const xq = packInputTex(g, L, T, x);
  const wt = ctx.acquireTexture(T.wW, T.wH, 'conv2d.wt');
  const wtTotal = L.wtFloats / 4;
  ctx.dispatch(KERNELS.packWeightTex, [w.buffer, wt], [g.Cout, g.Cin, g.KH, g.KW, L.KQ, L.CG, L.kxs, L.N4, wtTotal, T.wKpb], ceilDiv(wtTotal, PACK_WG));
  const kernel = gemmKernel('conv2d_gemm_tex', gemmTexWgsl, plan.forwardTiles);
  for (let kp0 = 0; kp0 < L.KP; kp0 += plan.forwardChunk) {
    const kp1 = Math.min(L.KP, kp0 + plan.forwardChunk);
    const flags = (kp0 === 0 ? 1 : 0) | (kp1 === L.KP ? 2 : 0) | (g.relu ? 4 : 0) | (bias ? 8 : 0);
    ctx.dispatch(kernel, [xq, wt, (bias ?? w).buffer, out.buffer],
      [L.M, L.P, g.OW, L.ay, L.ax, L.Hp, L.CG, L.kxs, L.KQ, kp0, kp1, L.N4, g.Cout, flags, T.xRW, T.xIpb, T.wKpb],
      [L.N4 / 4, L.forwardRowTiles]);
  }
  ctx.releaseTexture(xq);
  ctx.releaseTexture(wt);
}

function gradInputGemmTex(g: Conv2dGeometry, plan: Conv2dPlan, dOut: Tensor, mask: Tensor, w: Tensor, dx: Tensor): void {
  const ctx = dOut.ctx;
  const L = gemmLayout(g, plan);
  const T = textureLayout(g, plan, L);
  const dp = packGradOutTex(g, L, T, dOut, mask, false);
  const wr = ctx.acquireTexture(T.wrW, T.wrH, 'conv2d.wr');
  const wrTotal = L.CO4 * 4 * L.NR4;
  const channelColumns = plan.gradInputColumns === 'channels';
  if (channelColumns) {
    // One invocation per column of each block of 4 rows.
    const blocks = L.CO4 * L.NR4;
    ctx.dispatch(KERNELS.packWeightRowsChannelsTex, [w.buffer, wr], [g.Cout, g.Cin, g.KH * g.KW, L.CI4, L.NR4, blocks, L.CO4, T.wrCpb], ceilDiv(blocks, PACK_WG));
  } else {
    ctx.dispatch(KERNELS.packWeightRowsTex, [w.buffer, wr], [g.Cout, L.KK, L.NR4, wrTotal, L.CO4, T.wrCpb], ceilDiv(wrTotal, PACK_WG));
  }
  const dcols = scratch(ctx, L.dcolsFloats, 'conv2d.dcols');
  const kernel = gemmKernel('conv2d_gemm_grad_input_tex', gemmGradInputTexWgsl, plan.gradInputTiles);
  const tile = plan.gradInputTiles.wg * plan.gradInputTiles.rows;
  const imageSize = g.Cin * g.H * g.W;
  for (let b0 = 0; b0 < g.B; b0 += plan.gradInputGroup) {
    const bc = Math.min(plan.gradInputGroup, g.B - b0);
    ctx.dispatch(kernel, [dp, wr, dcols.buffer], [L.CO4, L.NR4, b0 * L.P, T.dpRpb, T.wrCpb], [L.NR4 / 4, ceilDiv(bc * L.P, tile)]);
    if (channelColumns) {
      const total = bc * L.CI4 * g.H * g.W;
      ctx.dispatch(KERNELS.col2imChannels, [dcols.buffer, dx.buffer],
        [g.Cin, g.H, g.W, g.KH, g.KW, g.sy, g.sx, g.py, g.px, g.OH, g.OW, L.NR4, L.CI4, b0 * imageSize, total], ceilDiv(total, PACK_WG));
    } else {
      const total = bc * imageSize;
      ctx.dispatch(KERNELS.col2im, [dcols.buffer, dx.buffer],
        [g.Cin, g.H, g.W, g.KH, g.KW, g.sy, g.sx, g.py, g.px, g.OH, g.OW, L.NR4 * 4, b0 * imageSize, total], ceilDiv(total, PACK_WG));
    }
  }
  ctx.releaseTexture(dp);
  ctx.releaseTexture(wr);
  dcols.dispose();
}

function gradWeightGemmTex(g: Conv2dGeometry, plan: Conv2dPlan, x: Tensor, dOut: Tensor, mask: Tensor, dw: Tensor): void {
  const ctx = x.ctx;
  const L = gemmLayout(g, plan);
  const T = textureLayout(g, plan, L);
  const xq = packInputTex(g, L, T, x);
  const dpt = packGradOutTex(g, L, T, dOut, mask, true);
  const dwp = scratch(ctx, L.dwpFloats, 'conv2d.dwp');
  const kernel = gemmKernel('conv2d_gemm_grad_weight_tex', gemmGradWeightTexWgsl, plan.gradWeightTiles);
  const tile = plan.gradWeightTiles.wg * plan.gradWeightTiles.rows;
  for (let chunk0 = 0; chunk0 < L.slab4; chunk0 += L.chunk4) {
    ctx.dispatch(kernel, [dpt, xq, dwp.buffer],
      [L.M, L.P, g.OW, L.ay, L.ax, L.Hp, L.CG, L.kxs, L.KQ, L.NK4, L.NW4, L.MT4, L.rowsPad, L.slab4, chunk0, L.chunk4, chunk0 > 0 ? 1 : 0, g.OH, T.xRW, T.xIpb, T.dptQpb],
      [L.NW4 / 4, L.rowsPad / tile, plan.gradWeightSlabs]);
  }
  finalizeGradWeight(g, plan, L, dwp, dw);
  ctx.releaseTexture(xq);
  ctx.releaseTexture(dpt);
  dwp.dispose();
}

// ---- gemm kernels with buffer operands ----

function forwardGemm(g: Conv2dGeometry, plan: Conv2dPlan, x: Tensor, w: Tensor, bias: Tensor | null, out: Tensor): void {
  if (plan.operands === 'texture') return forwardGemmTex(g, plan, x, w, bias, out);
  const ctx = x.ctx;
  const L = gemmLayout(g, plan);
  const xq = packInput(g, L, x);
  const wt = scratch(ctx, L.wtFloats, 'conv2d.wt');
  const wtTotal = L.wtFloats / 4;
  ctx.dispatch(KERNELS.packWeight, [w.buffer, wt.buffer], [g.Cout, g.Cin, g.KH, g.KW, L.KQ, L.CG, L.kxs, L.N4, wtTotal], ceilDiv(wtTotal, PACK_WG));
  const kernel = plan.subgroups ? gemmKernel('conv2d_gemm_sg', gemmSgWgsl, plan.forwardTiles) : gemmKernel('conv2d_gemm', gemmWgsl, plan.forwardTiles);
  for (let kp0 = 0; kp0 < L.KP; kp0 += plan.forwardChunk) {
    const kp1 = Math.min(L.KP, kp0 + plan.forwardChunk);
    const flags = (kp0 === 0 ? 1 : 0) | (kp1 === L.KP ? 2 : 0) | (g.relu ? 4 : 0) | (bias ? 8 : 0);
    ctx.dispatch(kernel, [xq.buffer, wt.buffer, (bias ?? w).buffer, out.buffer],
      [L.M, L.P, g.OW, L.ay, L.ax, L.Wp, L.Hp * L.Wp, L.CG, L.kxs, L.KQ, kp0, kp1, L.N4, g.Cout, flags],
      [L.N4 / 4, L.forwardRowTiles]);
  }
  xq.dispose();
  wt.dispose();
}

function gradInputGemm(g: Conv2dGeometry, plan: Conv2dPlan, dOut: Tensor, mask: Tensor, w: Tensor, dx: Tensor): void {
  if (plan.operands === 'texture') return gradInputGemmTex(g, plan, dOut, mask, w, dx);
  const ctx = dOut.ctx;
  const L = gemmLayout(g, plan);
  const dp = packGradOut(g, L, dOut, mask, false);
  let wr: Tensor | null = null;
  if (!L.wrDirect) {
    wr = scratch(ctx, L.wrFloats, 'conv2d.wr');
    const total = L.wrFloats / 4;
    ctx.dispatch(KERNELS.packWeightRows, [w.buffer, wr.buffer], [g.Cout, L.KK, L.NR4, total], ceilDiv(total, PACK_WG));
  }
  const dcols = scratch(ctx, L.dcolsFloats, 'conv2d.dcols');
  const kernel = plan.subgroups
    ? gemmKernel('conv2d_gemm_grad_input_sg', gemmGradInputSgWgsl, plan.gradInputTiles)
    : gemmKernel('conv2d_gemm_grad_input', gemmGradInputWgsl, plan.gradInputTiles);
  const tile = plan.gradInputTiles.wg * plan.gradInputTiles.rows;
  const imageSize = g.Cin * g.H * g.W;
  for (let b0 = 0; b0 < g.B; b0 += plan.gradInputGroup) {
    const bc = Math.min(plan.gradInputGroup, g.B - b0);
    ctx.dispatch(kernel, [dp.buffer, (wr ?? w).buffer, dcols.buffer], [L.CO4, L.NR4, b0 * L.P], [L.NR4 / 4, ceilDiv(bc * L.P, tile)]);
    const total = bc * imageSize;
    ctx.dispatch(KERNELS.col2im, [dcols.buffer, dx.buffer],
      [g.Cin, g.H, g.W, g.KH, g.KW, g.sy, g.sx, g.py, g.px, g.OH, g.OW, L.NR4 * 4, b0 * imageSize, total], ceilDiv(total, PACK_WG));
  }
  dp.dispose();
  wr?.dispose();
  dcols.dispose();
}

function gradWeightGemm(g: Conv2dGeometry, plan: Conv2dPlan, x: Tensor, dOut: Tensor, mask: Tensor, dw: Tensor): void {
  if (plan.operands === 'texture') return gradWeightGemmTex(g, plan, x, dOut, mask, dw);
  const ctx = x.ctx;
  const L = gemmLayout(g, plan);
  const xq = packInput(g, L, x);
  const dpt = packGradOut(g, L, dOut, mask, true);
  const dwp = scratch(ctx, L.dwpFloats, 'conv2d.dwp');
  const kernel = plan.subgroups
    ? gemmKernel('conv2d_gemm_grad_weight_sg', gemmGradWeightSgWgsl, plan.gradWeightTiles)
    : gemmKernel('conv2d_gemm_grad_weight', gemmGradWeightWgsl, plan.gradWeightTiles);
  const tile = plan.gradWeightTiles.wg * plan.gradWeightTiles.rows;
  for (let chunk0 = 0; chunk0 < L.slab4; chunk0 += L.chunk4) {
    ctx.dispatch(kernel, [dpt.buffer, xq.buffer, dwp.buffer],
      [L.M, L.P, g.OW, L.ay, L.ax, L.Wp, L.Hp * L.Wp, L.CG, L.kxs, L.KQ, L.NK4, L.NW4, L.MT4, L.rowsPad, L.slab4, chunk0, L.chunk4, chunk0 > 0 ? 1 : 0, g.OH],
      [L.NW4 / 4, L.rowsPad / tile, plan.gradWeightSlabs]);
  }
  finalizeGradWeight(g, plan, L, dwp, dw);
  xq.dispose();
  dpt.dispose();
  dwp.dispose();
}

// ---- the passes, without the tape (conv2d() below records them; tools/bench-conv.ts times them) ----

/** out = conv(x, w) + bias (ReLU if g.relu), with the plan's forward variant. `out` [B, Cout, OH, OW] is overwritten. */
export function conv2dForwardInto(g: Conv2dGeometry, plan: Conv2dPlan, x: Tensor, w: Tensor, bias: Tensor | null, out: Tensor): void {
  if (plan.forward === 'gemm') forwardGemm(g, plan, x, w, bias, out);
  else forwardDirect(g, x, w, bias, out);
}

/** dx from dOut (masked where `mask` <= 0 if g.relu; pass dOut as mask otherwise). `dx` [B, Cin, H, W] is overwritten. */
export function conv2dGradInputInto(g: Conv2dGeometry, plan: Conv2dPlan, dOut: Tensor, mask: Tensor, w: Tensor, dx: Tensor): void {
  if (plan.gradInput === 'gemm') gradInputGemm(g, plan, dOut, mask, w, dx);
  else gradInputDirect(g, dOut, mask, w, dx);
}

/** dw from x and dOut (masked as above). `dw` [Cout, Cin, KH, KW] is overwritten. */
export function conv2dGradWeightInto(g: Conv2dGeometry, plan: Conv2dPlan, x: Tensor, dOut: Tensor, mask: Tensor, dw: Tensor): void {
  if (plan.gradWeight === 'gemm') gradWeightGemm(g, plan, x, dOut, mask, dw);
  else gradWeightDirect(g, x, dOut, mask, dw);
}

/** db from dOut (masked as above). `db` [Cout] is overwritten. */
export function conv2dGradBiasInto(g: Conv2dGeometry, dOut: Tensor, mask: Tensor, db: Tensor): void {
  biasGrad(g, dOut, mask, db);
}

/** The plan conv2d() uses for these shapes and options on this context (after any forced variant or override). */
export function conv2dPlan(ctx: GpuContext, g: Conv2dGeometry, options: Conv2dOptions = {}): Conv2dPlan {
  const device = deviceInfo(ctx);
  const plan = { ...chooseConv2dPlan(g, device, options.variant), ...options.plan };
  validatePlan(plan, device);
  const bad = oversizedBuffers(g, plan, ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxComputeWorkgroupsPerDimension);
  bad.push(...oversizedTextures(g, plan));
  if (bad.length > 0) {
    throw new ShapeError(`conv2d: the gemm variant's ${bad.join(', ')} exceed this adapter's limits for x [${g.B}, ${g.Cin}, ${g.H}, ${g.W}]; use a smaller batch or the direct variant`);
  }
  return plan;
}

/**
 * conv2d(x, w, bias, {stride, padding, relu}): out [B, Cout, OH, OW]. Records its backward on the
 * tape: dx, dw and db are computed only for the inputs that require a gradient. Every buffer comes
 * from the context's pool (scratch buffers go back to it as soon as their dispatches are recorded).
 */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, options: Conv2dOptions = {}): Tensor {
  const ctx = sameContext('conv2d', [x, w, bias]);
  const g = conv2dGeometry(x.shape, w.shape, bias ? bias.shape : null, options);
  checkSizes(ctx, g);
  const plan = conv2dPlan(ctx, g, options);
  const out = empty(ctx, [g.B, g.Cout, g.OH, g.OW], 'conv2d');
  conv2dForwardInto(g, plan, x, w, bias, out);
  const inputs = bias ? [x, w, bias] : [x, w];
  return record(out, 'conv2d', inputs, (dOut) => {
    // Without relu the kernels never read `out`: bind dOut in its place.
    const mask = g.relu ? out : dOut;
    mask.assertAlive('conv2d backward (relu needs the forward output)');
    if (x.requiresGrad) {
      const dx = empty(ctx, x.shape, 'conv2d.dx');
      conv2dGradInputInto(g, plan, dOut, mask, w, dx);
      accumulateGrad(x, dx);
    }
    if (w.requiresGrad) {
      const dw = empty(ctx, w.shape, 'conv2d.dw');
      conv2dGradWeightInto(g, plan, x, dOut, mask, dw);
      accumulateGrad(w, dw);
    }
    if (bias?.requiresGrad) {
      const db = empty(ctx, bias.shape, 'conv2d.db');
      conv2dGradBiasInto(g, dOut, mask, db);
      accumulateGrad(bias, db);
    }
  });
}

export const CONV2D_KERNELS = KERNELS;
export { DIRECT_WG, BIAS_WG };
