// Capsule layers as ops on the autograd tape: squash, PrimaryCaps (regroup + squash), the
// prediction vectors u_hat = W u, dynamic routing (all iterations in one kernel per example, with a
// hand-derived backward), capsule lengths, the longest capsule and the decoder mask.
// Kernels: kernels/squash.wgsl, primary_caps.wgsl, caps_predict.wgsl, caps_predict_grad_w.wgsl,
// caps_predict_grad_u.wgsl, routing.wgsl, routing_grad.wgsl (derivation: routing_backward.md),
// capsule_lengths.wgsl, mask.wgsl.
// Reference: test/reference/capsules.ts. Tests: test/capsules.test.ts. Timing: tools/bench-capsules.ts.
//
// Layouts (DESIGN.md section 2): conv [B, types*dim, G, G] with channel c = type*dim + d;
// u [B, I, Din] with capsule i = type*G*G + y*G + x; W [I, J, Dout, Din] (digit.W [1152, 10, 16, 8]);
// uhat [B, I, J, Dout]; v [B, J, D]; lengths [B, J]; decoder input [B, J*D] at j*D + d.
//
// Large batches: uhat and its gradient take B*I*J*Dout*4 bytes (94 MB at batch 128, 737 KB per
// example), close to maxStorageBufferBindingSize (128 MiB here). They are allocated as one buffer
// (up to maxBufferSize) and every kernel that touches them binds a slice of whole examples and runs
// once per slice, so batches beyond the binding limit work without a second copy.

import squashWgsl from '../../kernels/squash.wgsl';
import primaryCapsWgsl from '../../kernels/primary_caps.wgsl';
import capsPredictWgsl from '../../kernels/caps_predict.wgsl';
import capsPredictGradWWgsl from '../../kernels/caps_predict_grad_w.wgsl';
import capsPredictGradUWgsl from '../../kernels/caps_predict_grad_u.wgsl';
import routingWgsl from '../../kernels/routing.wgsl';
import routingGradWgsl from '../../kernels/routing_grad.wgsl';
import capsuleLengthsWgsl from '../../kernels/capsule_lengths.wgsl';
import maskWgsl from '../../kernels/mask.wgsl';
import { type BufferBinding, type GpuContext, type KernelSpec, STORAGE_USAGE } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { sizeClass } from '../gpu/pool.ts';
import { Tensor, empty, fromArray, shapeSize } from '../tensor.ts';
import { accumulateGrad, noGrad, record } from '../autograd/tape.ts';

/** The kernels of this module (name, code, entry point; constants are added per call). */
export const CAPS_KERNELS = {
  squash: { name: 'squash', code: squashWgsl, entryPoint: 'squash' },
  squashGrad: { name: 'squash.grad', code: squashWgsl, entryPoint: 'squash_grad' },
  primaryCaps: { name: 'primary_caps', code: primaryCapsWgsl, entryPoint: 'forward' },
  primaryCapsGrad: { name: 'primary_caps.grad', code: primaryCapsWgsl, entryPoint: 'backward' },
  capsPredict: { name: 'caps_predict', code: capsPredictWgsl, entryPoint: 'main' },
  capsPredictGeneric: { name: 'caps_predict.generic', code: capsPredictWgsl, entryPoint: 'generic' },
  capsPredictGradW: { name: 'caps_predict_grad_w', code: capsPredictGradWWgsl, entryPoint: 'main' },
  capsPredictGradWGeneric: { name: 'caps_predict_grad_w.generic', code: capsPredictGradWWgsl, entryPoint: 'generic' },
  capsPredictGradU: { name: 'caps_predict_grad_u', code: capsPredictGradUWgsl, entryPoint: 'main' },
  capsPredictGradUGeneric: { name: 'caps_predict_grad_u.generic', code: capsPredictGradUWgsl, entryPoint: 'generic' },
  routing: { name: 'routing', code: routingWgsl },
  routingGrad: { name: 'routing_grad', code: routingGradWgsl, entryPoint: 'main' },
  routingGradWrite: { name: 'routing_grad.write', code: routingGradWgsl, entryPoint: 'write' },
  routingBiasGrad: { name: 'routing_grad.bias', code: routingGradWgsl, entryPoint: 'bias_grad' },
  lengths: { name: 'capsule_lengths', code: capsuleLengthsWgsl, entryPoint: 'lengths' },
  lengthsGrad: { name: 'capsule_lengths.grad', code: capsuleLengthsWgsl, entryPoint: 'lengths_grad' },
  longest: { name: 'capsule_lengths.longest', code: capsuleLengthsWgsl, entryPoint: 'longest' },
  mask: { name: 'mask', code: maskWgsl },
} satisfies Record<string, KernelSpec>;

/** Invocations per workgroup of the per-row kernels (squash, primary caps, lengths, mask). */
const ROW_WG = 64;
/** Kernel limits baked into the WGSL private arrays (MAX_* constants there). */
export const CAPS_LIMITS = { maxPredictDim: 32, maxGradUChunk: 16, maxVec4Matrix: 256 };

/** Tuning knobs, exposed so that tests can run every variant; the defaults are what the ops use. */
export interface PredictTuning {
  /** Invocations per workgroup. */
  wg?: number;
  /** Examples per invocation in caps_predict (default 32). */
  batchChunk?: number;
  /** Examples per invocation in caps_predict_grad_u (default 16, or 4 / 1 for batches under 16 / 4; at most 16). */
  batchChunkGradU?: number;
  /** The vec4 kernels (default when Dout and Din are multiples of 4); false: the generic ones. */
  vec4?: boolean;
  /** Bytes of uhat bound per dispatch (default maxStorageBufferBindingSize): forces batch slices in tests. */
  maxBindingBytes?: number;
}

export interface RoutingTuning {
  /** Invocations (examples) per workgroup. */
  wg?: number;
  /** Whole-vec4 loads of uhat (default when D % 4 == 0); false: component by component. */
  vec4?: boolean;
  maxBindingBytes?: number;
}

// ---------------------------------------------------------------------------------------------
// helpers

function kernel(base: KernelSpec, constants: Record<string, number>): KernelSpec {
  return { ...base, constants };
}

function checkAlive(op: string, ...tensors: Tensor[]): void {
  for (const t of tensors) t.assertAlive(op);
  const ctx = tensors[0].ctx;
  for (const t of tensors) {
    if (t.ctx !== ctx) throw new ShapeError(`${op}: tensors ${tensors[0].describe()} and ${t.describe()} live on different GPU contexts`);
  }
}

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * A tensor that may exceed maxStorageBufferBindingSize (but not maxBufferSize): the kernels bind it
 * in slices of whole examples (see batchSlices).
 */
function largeEmpty(ctx: GpuContext, shape: readonly number[], name: string): Tensor {
  const bytes = shapeSize(shape) * 4;
  if (bytes <= ctx.limits.maxStorageBufferBindingSize) return empty(ctx, shape, name);
  if (sizeClass(bytes) > ctx.limits.maxBufferSize) {
    throw new ShapeError(
      `${name} ${shapeStr(shape)} needs ${bytes} bytes (a pooled buffer of ${sizeClass(bytes)}), above this adapter's maxBufferSize (${ctx.limits.maxBufferSize}); use a smaller batch`,
    );
  }
  return new Tensor(ctx, shape, ctx.pool.acquire(bytes, STORAGE_USAGE, name), name);
}

/**
 * Splits a batch into slices [b0, nb] whose bytes fit one storage binding and whose byte offsets
 * are multiples of minStorageBufferOffsetAlignment.
 */
export function batchSlices(ctx: GpuContext, B: number, bytesPerExample: number, what: string, maxBytes?: number): Array<[number, number]> {
  const limit = Math.min(maxBytes ?? Infinity, ctx.limits.maxStorageBufferBindingSize);
  if (B * bytesPerExample <= limit) return [[0, B]];
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const g = align / gcd(bytesPerExample % align || align, align); // examples per aligned step
  const per = Math.floor(limit / bytesPerExample / g) * g;
  if (per < 1) {
    throw new ShapeError(
      `${what}: one binding can hold ${Math.floor(limit / bytesPerExample)} examples of ${bytesPerExample} bytes, ` +
        `fewer than the ${g} needed to keep slice offsets ${align}-byte aligned`,
    );
  }
  const slices: Array<[number, number]> = [];
  for (let b0 = 0; b0 < B; b0 += per) slices.push([b0, Math.min(per, B - b0)]);
  return slices;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Examples b0 .. b0+nb-1 of a batch-major tensor bound as array<vec4f>: the size is rounded up to
 * 16 bytes so that the last elements are reachable. The rounding stays inside the pooled buffer
 * (size classes are multiples of 16) and only ever reaches past the tensor's end (slice offsets
 * other than the last are whole multiples of 256 bytes); the kernels write 0 there.
 */
function vec4Slice(t: Tensor, b0: number, nb: number, bytesPerExample: number): BufferBinding {
  const offset = b0 * bytesPerExample;
  const size = Math.min(Math.ceil((nb * bytesPerExample) / 16) * 16, t.buffer.size - offset);
  return { buffer: t.buffer, offset, size };
}

/** A whole tensor bound as array<vec4f> (size rounded up to 16 bytes, inside the pooled buffer). */
function vec4Whole(t: Tensor): BufferBinding {
  return { buffer: t.buffer, offset: 0, size: Math.min(Math.max(16, Math.ceil(t.bytes / 16) * 16), t.buffer.size) };
}

/** Elements of a tensor as a binding of exactly its bytes (pooled buffers may be larger). */
function whole(t: Tensor): BufferBinding {
  return { buffer: t.buffer, offset: 0, size: Math.max(4, t.bytes) };
}

// ---------------------------------------------------------------------------------------------
// squash

/** squash over the last axis: v = |s|^2 / (1 + |s|^2) * s / sqrt(|s|^2 + 1e-7). Same shape as s. */
export function squash(s: Tensor): Tensor {
  checkAlive('squash', s);
  if (s.shape.length < 1) throw new ShapeError(`squash: expected a tensor with a last axis, got ${s.describe()}`);
  const dim = s.shape[s.shape.length - 1];
  if (dim < 1) throw new ShapeError(`squash: last axis of ${s.describe()} is empty`);
  const rows = s.size / dim;
  const ctx = s.ctx;
  const out = empty(ctx, s.shape, 'squash');
  if (rows > 0) ctx.dispatch(CAPS_KERNELS.squash, [s.buffer, out.buffer], [rows, dim], Math.ceil(rows / ROW_WG));
  return record(out, 'squash', [s], (g) => {
    const ds = empty(ctx, s.shape, 'squash.grad');
    if (rows > 0) ctx.dispatch(CAPS_KERNELS.squashGrad, [s.buffer, ds.buffer, g.buffer], [rows, dim], Math.ceil(rows / ROW_WG));
    accumulateGrad(s, ds);
  });
}

// ---------------------------------------------------------------------------------------------
// PrimaryCaps

export interface PrimaryCapsOptions {
  /** Capsule types (32 in the paper). */
  types: number;
  /** Capsule dimension (8 in the paper). */
  dim: number;
  /** Apply squash (default true); false gives the plain regrouping. */
  squash?: boolean;
}

/**
 * PrimaryCaps regrouping fused with squash: conv [B, types*dim, G, G] -> u [B, types*G*G, dim],
 * u[b, type*G*G + y*G + x, d] = squash(conv[b, type*dim + :, y, x])_d.
 */
export function primaryCaps(conv: Tensor, options: PrimaryCapsOptions): Tensor {
  checkAlive('primaryCaps', conv);
  const { types, dim } = options;
  const withSquash = options.squash ?? true;
  for (const [k, n] of Object.entries({ types, dim })) {
    if (!Number.isInteger(n) || n < 1) throw new ShapeError(`primaryCaps: ${k} must be a positive integer, got ${n}`);
  }
  const [B, C, G, G2] = conv.shape;
  if (conv.shape.length !== 4 || C !== types * dim || G !== G2) {
    throw new ShapeError(`primaryCaps: conv must be [B, types*dim = ${types * dim}, G, G], got ${conv.describe()}`);
  }
  const I = types * G * G;
  const capsules = B * I;
  const ctx = conv.ctx;
  const constants = { WG: ROW_WG, SQUASH: withSquash ? 1 : 0 };
  const params = [capsules, I, types, dim, G * G];
  const out = empty(ctx, [B, I, dim], 'primary_caps');
  if (capsules > 0) ctx.dispatch(kernel(CAPS_KERNELS.primaryCaps, constants), [conv.buffer, out.buffer], params, Math.ceil(capsules / ROW_WG));
  return record(out, 'primaryCaps', [conv], (g) => {
    const dconv = empty(ctx, conv.shape, 'primary_caps.grad');
    if (capsules > 0) {
      ctx.dispatch(kernel(CAPS_KERNELS.primaryCapsGrad, constants), [conv.buffer, dconv.buffer, g.buffer], params, Math.ceil(capsules / ROW_WG));
    }
    accumulateGrad(conv, dconv);
  });
}

// ---------------------------------------------------------------------------------------------
// Prediction vectors

function predictDims(W: Tensor, u: Tensor) {
  if (W.shape.length !== 4) throw new ShapeError(`capsPredict: W must be [I, J, Dout, Din], got ${W.describe()}`);
  const [I, J, Dout, Din] = W.shape;
  if (u.shape.length !== 3 || u.shape[1] !== I || u.shape[2] !== Din) {
    throw new ShapeError(`capsPredict: u must be [B, I = ${I}, Din = ${Din}] to match W ${W.describe()}, got ${u.describe()}`);
  }
  if ([I, J, Dout, Din].some((n) => n < 1)) throw new ShapeError(`capsPredict: W ${W.describe()} has an empty dimension`);
  if (u.shape[0] < 1) throw new ShapeError(`capsPredict: u ${u.describe()} holds no example`);
  const L = CAPS_LIMITS;
  if (Dout > L.maxPredictDim || Din > L.maxPredictDim) {
    throw new ShapeError(`capsPredict: W ${W.describe()}: the kernels hold one Dout x Din matrix in registers: need Dout, Din <= ${L.maxPredictDim}`);
  }
  return { B: u.shape[0], I, J, Dout, Din };
}

/**
 * Prediction vectors uhat[b, i, j] = W[i, j] u[b, i]: W [I, J, Dout, Din], u [B, I, Din] ->
 * uhat [B, I, J, Dout]. Backward: dW summed over the batch, du.
 */
export function capsPredict(W: Tensor, u: Tensor, tuning: PredictTuning = {}): Tensor {
  checkAlive('capsPredict', W, u);
  const { B, I, J, Dout, Din } = predictDims(W, u);
  const wg = tuning.wg ?? 16;
  const bc = tuning.batchChunk ?? 32;
  // The grad-u chunk loop runs to the constant BC (examples past the end are clamped and
  // recomputed), so a chunk larger than the batch wastes work: 16 from batch 16, else 4 or 1
  // (three pipelines at most; at batch 1, BC = 16 made it ~10x slower).
  const bcU = tuning.batchChunkGradU ?? (B >= 16 ? 16 : B >= 4 ? 4 : 1);
  if (!Number.isInteger(bc) || bc < 1) throw new ShapeError(`capsPredict: batchChunk must be a positive integer, got ${bc}`);
  if (!Number.isInteger(bcU) || bcU < 1 || bcU > CAPS_LIMITS.maxGradUChunk) {
    throw new ShapeError(`capsPredict: batchChunkGradU must be an integer in [1, ${CAPS_LIMITS.maxGradUChunk}], got ${bcU}`);
  }
  const aligned = Dout % 4 === 0 && Din % 4 === 0;
  // The vec4 kernels keep a Dout x Din matrix in a private array of MAX_W4 = 64 vec4s.
  const fits = Dout * Din <= CAPS_LIMITS.maxVec4Matrix;
  const vec4 = tuning.vec4 ?? (aligned && fits);
  if (vec4 && !aligned) throw new ShapeError(`capsPredict: the vec4 kernels need Dout and Din multiples of 4, got W ${W.describe()}`);
  if (vec4 && !fits) throw new ShapeError(`capsPredict: the vec4 kernels hold Dout x Din <= ${CAPS_LIMITS.maxVec4Matrix} values in registers, got W ${W.describe()}; the generic kernels (the default there) take it`);
  const ctx = W.ctx;
  const pairs = I * J;
  const perExample = pairs * Dout * 4;
  const slices = batchSlices(ctx, B, perExample, 'capsPredict uhat', tuning.maxBindingBytes);
  const uhat = largeEmpty(ctx, [B, I, J, Dout], 'uhat');
  const constants = { WG: wg, DOUT4: Math.max(1, Dout >> 2), DIN4: Math.max(1, Din >> 2) };
  const dims = [I, J, Dout, Din];
  const fwd = vec4 ? kernel(CAPS_KERNELS.capsPredict, { ...constants, BC: bc }) : kernel(CAPS_KERNELS.capsPredictGeneric, constants);
  for (const [b0, nb] of slices) {
    const total = vec4 ? pairs * Math.ceil(nb / bc) : Math.ceil((nb * perExample) / 16);
    ctx.dispatch(fwd, [vec4Whole(W), vec4Whole(u), vec4Slice(uhat, b0, nb, perExample)], [nb, b0, ...dims, total], Math.ceil(total / wg));
  }
  return record(uhat, 'capsPredict', [W, u], (g) => {
    if (W.requiresGrad) {
      const dW = empty(ctx, W.shape, 'capsPredict.dW');
      const k = vec4 ? kernel(CAPS_KERNELS.capsPredictGradW, constants) : kernel(CAPS_KERNELS.capsPredictGradWGeneric, constants);
      const total = vec4 ? pairs : Math.ceil(W.size / 4);
      slices.forEach(([b0, nb], n) => {
        ctx.dispatch(k, [vec4Slice(g, b0, nb, perExample), vec4Whole(u), vec4Whole(dW)], [nb, b0, ...dims, total, n > 0 ? 1 : 0], Math.ceil(total / wg));
      });
      accumulateGrad(W, dW);
    }
    if (u.requiresGrad) {
      const du = empty(ctx, u.shape, 'capsPredict.du');
      const k = vec4 ? kernel(CAPS_KERNELS.capsPredictGradU, { ...constants, BC: bcU }) : kernel(CAPS_KERNELS.capsPredictGradUGeneric, constants);
      for (const [b0, nb] of slices) {
        const first = b0 * I * Din;
        const total = vec4 ? I * Math.ceil(nb / bcU) : Math.ceil((first + nb * I * Din) / 4) - Math.floor(first / 4);
        ctx.dispatch(k, [vec4Whole(W), vec4Slice(g, b0, nb, perExample), vec4Whole(du)], [nb, b0, ...dims, total], Math.ceil(total / wg));
      }
      accumulateGrad(u, du);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Dynamic routing

export type RoutingGradMode = 'all' | 'last';

export interface RoutingOptions {
  /** Routing iterations r >= 1 (default 3). */
  iterations?: number;
  /** 'all' (default): gradients through every iteration; 'last': only through the last one. */
  gradMode?: RoutingGradMode;
  /** Leaky routing: an extra "none of the above" logit fixed at 0 in the softmax. */
  leaky?: boolean;
  /** A [J, D] bias added to s before the squash in every iteration (learned when it requires a gradient). */
  bias?: Tensor | null;
  tuning?: RoutingTuning;
}

/** Routing kernel limits (the private arrays in routing.wgsl / routing_grad.wgsl). */
const MAX_ROUTING_D = 32;
const MAX_ROUTING_ITERATIONS = 8;

/**
 * Dynamic routing by agreement, per example: uhat [B, I, J, D] -> v [B, J, D] (DESIGN.md section 2).
 * One kernel runs all the iterations (one invocation per example); it saves s and v of every
 * iteration ([B, r, J, D] each) and the coupling coefficients of iterations 2 .. r ([B, r-1, I, J])
 * for the backward pass. With a bias [J, D] that requires a gradient, dbias is summed over the batch.
 */
export function routing(uhat: Tensor, options: RoutingOptions = {}): Tensor {
  checkAlive('routing', uhat);
  const r = options.iterations ?? 3;
  const gradMode = options.gradMode ?? 'all';
  const leaky = options.leaky ?? false;
  const bias = options.bias ?? null;
  if (!Number.isInteger(r) || r < 1 || r > MAX_ROUTING_ITERATIONS) {
    throw new ShapeError(`routing: iterations must be an integer in [1, ${MAX_ROUTING_ITERATIONS}], got ${r}`);
  }
  if (gradMode !== 'all' && gradMode !== 'last') throw new ShapeError(`routing: gradMode must be 'all' or 'last', got ${String(gradMode)}`);
  if (uhat.shape.length !== 4) throw new ShapeError(`routing: uhat must be [B, I, J, D], got ${uhat.describe()}`);
  const [B, I, J, D] = uhat.shape;
  if ([B, I, J, D].some((n) => n < 1)) throw new ShapeError(`routing: uhat ${uhat.describe()} has an empty dimension`);
  if (D > MAX_ROUTING_D) throw new ShapeError(`routing: uhat ${uhat.describe()}: capsule dimension D = ${D} is above the kernel's ${MAX_ROUTING_D}`);
  if (bias) {
    checkAlive('routing', uhat, bias);
    if (bias.size !== J * D || bias.shape.length < 1) throw new ShapeError(`routing: bias must be [J, D] = [${J}, ${D}], got ${bias.describe()}`);
  }
  const ctx = uhat.ctx;
  const wg = options.tuning?.wg ?? 8;
  const d4 = Math.ceil(D / 4);
  const vec4 = options.tuning?.vec4 ?? D % 4 === 0;
  if (vec4 && D % 4 !== 0) throw new ShapeError(`routing: the vec4 kernel variant needs D % 4 == 0, got D = ${D}`);
  const constants = { WG: wg, D4: d4, VEC4: vec4 ? 1 : 0 };
  const perExample = I * J * D * 4;
  const slices = batchSlices(ctx, B, perExample, 'routing uhat', options.tuning?.maxBindingBytes);
  const maxSlice = Math.max(...slices.map(([, nb]) => nb));
  const v = empty(ctx, [B, J, D], 'routing.v');
  const savedS = empty(ctx, [B, r, J, D], 'routing.s');
  const savedV = empty(ctx, [B, r, J, D], 'routing.vt');
  const savedC = empty(ctx, [B, r - 1, I, J], 'routing.c');
  const fwd = kernel(CAPS_KERNELS.routing, constants);
  for (const [b0, nb] of slices) {
    const uhatSlice = vec4Slice(uhat, b0, nb, perExample);
    const biasBinding = bias ? whole(bias) : uhatSlice; // never read without a bias
    ctx.dispatch(
      fwd,
      [uhatSlice, biasBinding, whole(v), whole(savedS), whole(savedV), whole(savedC)],
      [nb, b0, I, J, D, r, leaky ? 1 : 0, bias ? 1 : 0],
      Math.ceil(nb / wg),
    );
  }
  const inputs = bias ? [uhat, bias] : [uhat];
  return record(v, 'routing', inputs, (g) => {
    for (const t of [savedS, savedV, savedC]) t.assertAlive('routing backward (saved for the backward pass)');
    const duhat = largeEmpty(ctx, uhat.shape, 'routing.duhat');
    const dsAll = empty(ctx, [B, r, J, D], 'routing.ds');
    const scratchB = empty(ctx, [maxSlice, r, I, J], 'routing.scratch');
    const bwd = kernel(CAPS_KERNELS.routingGrad, constants);
    const write = kernel(CAPS_KERNELS.routingGradWrite, { ...constants, WG: 64 });
    for (const [b0, nb] of slices) {
      const params = [nb, b0, I, J, D, r, leaky ? 1 : 0, gradMode === 'all' ? 1 : 0, B];
      const duhatSlice = vec4Slice(duhat, b0, nb, perExample);
      const shared = [whole(dsAll), duhatSlice, whole(scratchB), whole(savedV), whole(savedC)];
      ctx.dispatch(bwd, [...shared, vec4Slice(uhat, b0, nb, perExample), whole(savedS), whole(g)], params, Math.ceil(nb / wg));
      if (!vec4) ctx.dispatch(write, shared, params, Math.ceil(Math.ceil((nb * perExample) / 16) / 64));
    }
    scratchB.dispose();
    if (bias?.requiresGrad) {
      const dbias = empty(ctx, bias.shape, 'routing.dbias');
      const k = kernel(CAPS_KERNELS.routingBiasGrad, { ...constants, WG: 64 });
      ctx.dispatch(k, [whole(dsAll), vec4Whole(dbias)], [0, 0, I, J, D, r, 0, 0, B], Math.ceil(J * D / 4 / 64));
      accumulateGrad(bias, dbias);
    }
    dsAll.dispose();
    accumulateGrad(uhat, duhat);
  });
}

// ---------------------------------------------------------------------------------------------
// Lengths, prediction, mask

/** Capsule lengths over the last axis: v [B, J, D] -> [B, J], |v| = sqrt(sum v^2 + 1e-9). */
export function capsuleLengths(v: Tensor): Tensor {
  checkAlive('capsuleLengths', v);
  if (v.shape.length < 2) throw new ShapeError(`capsuleLengths: expected v [..., D] of rank >= 2 (e.g. [B, J, D]), got ${v.describe()}`);
  const D = v.shape[v.shape.length - 1];
  if (D < 1) throw new ShapeError(`capsuleLengths: last axis of ${v.describe()} is empty`);
  const rows = v.size / D;
  const ctx = v.ctx;
  const out = empty(ctx, v.shape.slice(0, -1), 'capsule_lengths');
  if (rows > 0) ctx.dispatch(CAPS_KERNELS.lengths, [v.buffer, out.buffer], [rows, D], Math.ceil(rows / ROW_WG));
  return record(out, 'capsuleLengths', [v], (g) => {
    const dv = empty(ctx, v.shape, 'capsule_lengths.grad');
    if (rows > 0) ctx.dispatch(CAPS_KERNELS.lengthsGrad, [v.buffer, dv.buffer, g.buffer], [rows, D], Math.ceil(rows / ROW_WG));
    accumulateGrad(v, dv);
  });
}

/** The predicted class of each example, the longest capsule (first on ties): lengths [B, J] -> [B] (class indices as f32). No gradient. */
export function longestCapsule(lengths: Tensor): Tensor {
  checkAlive('longestCapsule', lengths);
  if (lengths.shape.length !== 2 || lengths.shape[1] < 1) throw new ShapeError(`longestCapsule: expected lengths [B, J], got ${lengths.describe()}`);
  const [B, J] = lengths.shape;
  const out = empty(lengths.ctx, [B], 'longest_capsule');
  if (B > 0) lengths.ctx.dispatch(CAPS_KERNELS.longest, [lengths.buffer, out.buffer], [B, J], Math.ceil(B / ROW_WG));
  return out;
}

/**
 * The decoder input: v [B, J, D] -> [B, J*D], zero except the selected capsule of each example
 * (index j*D + d). `selected`: the labels (training) as an Int32Array or a GPU tensor [B] of class
 * indices stored as f32, or 'longest' for the longest capsule of each example (test time, computed
 * on the GPU). A label -1 (a padding example) selects nothing: its row is zero. The gradient flows
 * to the selected capsules only; none flows into `selected`.
 */
export function maskCapsules(v: Tensor, selected: Int32Array | Tensor | 'longest'): Tensor {
  checkAlive('maskCapsules', v);
  if (v.shape.length !== 3) throw new ShapeError(`maskCapsules: v must be [B, J, D], got ${v.describe()}`);
  const [B, J, D] = v.shape;
  const ctx = v.ctx;
  let sel: Tensor;
  if (selected === 'longest') {
    sel = noGrad(() => {
      const len = capsuleLengths(v);
      const idx = longestCapsule(len);
      len.dispose();
      return idx;
    });
  } else if (selected instanceof Tensor) {
    checkAlive('maskCapsules', v, selected);
    if (selected.shape.length !== 1 || selected.shape[0] !== B) {
      throw new ShapeError(`maskCapsules: selected must be [B = ${B}] class indices, got ${selected.describe()}`);
    }
    sel = selected;
  } else {
    if (selected.length !== B) throw new ShapeError(`maskCapsules: ${selected.length} selected classes for a batch of ${B}`);
    for (let b = 0; b < B; b++) {
      const j = selected[b];
      if (j !== -1 && !(j >= 0 && j < J)) throw new ShapeError(`maskCapsules: selected[${b}] = ${j} is not a class in [0, ${J}) (or -1 for none)`);
    }
    sel = fromArray(ctx, [B], Float32Array.from(selected), 'mask.selected');
  }
  const n = B * J * D;
  const out = empty(ctx, [B, J * D], 'mask');
  if (n > 0) ctx.dispatch(CAPS_KERNELS.mask, [v.buffer, sel.buffer, out.buffer], [n, J, D], Math.ceil(n / ROW_WG));
  return record(out, 'maskCapsules', [v], (g) => {
    sel.assertAlive('maskCapsules backward (selected classes)');
    const dv = empty(ctx, v.shape, 'mask.grad');
    if (n > 0) ctx.dispatch(CAPS_KERNELS.mask, [g.buffer, sel.buffer, dv.buffer], [n, J, D], Math.ceil(n / ROW_WG));
    accumulateGrad(v, dv);
  });
}
