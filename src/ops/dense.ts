// The dense (fully connected) layer on the tape: y = act(x W^T + b), x [B, In], W [Out, In] (PyTorch's
// layout, the checkpoint's), b [Out] or null, act 'none' | 'relu' | 'sigmoid' fused into the GEMM.
// Forward: x is transposed (B*In values) and y^T = W x^T runs as a register-blocked GEMM.
// Backward: one small kernel makes dpre = dy * act'(y) (padded to a multiple of 4 columns) and db,
// then two register-blocked GEMMs give dx = dpre W and dW = dpre^T x (summed over the batch).
// Kernels: kernels/dense.wgsl, dense_grad_input.wgsl, dense_grad_weight.wgsl.
// Reference: test/reference/dense.ts. Tests: test/dense.test.ts. Bench: tools/bench-dense.ts.

import denseWgsl from '../../kernels/dense.wgsl';
import gradInputWgsl from '../../kernels/dense_grad_input.wgsl';
import gradWeightWgsl from '../../kernels/dense_grad_weight.wgsl';
import type { GpuContext, KernelSpec } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { type Tensor, empty } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';

export type Activation = 'none' | 'relu' | 'sigmoid';
const ACT_CODE: Record<Activation, number> = { none: 0, relu: 1, sigmoid: 2 };

/** Register-block shapes of the three GEMMs (override constants); every one is tested. */
export interface DenseTiles {
  /** forward (y^T = W x^T): output features (1..8) x vec4 batch columns (1..4) per invocation */
  forward: { TM: number; TN4: number };
  /** dx: batch rows (1..8) x vec4 columns (1..4) per invocation */
  gradInput: { TM: number; TN4: number };
  /** dW: vec4 groups of output rows (1..2) x vec4 input columns (1..4) per invocation */
  gradWeight: { TM4: number; TN4: number };
  /** invocations per workgroup */
  WG: number;
}

/**
 * Tile choice: 8 x 4 vec4 blocks, the shape measured fastest on llvmpipe (tools/bench-dense.ts
 * --variants), narrowed to the batch when it is small (forward: 1 vec4 column covers B <= 4; dx:
 * one row per invocation at B <= 2). Workgroups of 16 on software adapters (one invocation per
 * SIMD lane, SOFTWARE_GPU.md), 64 on hardware.
 */
export function chooseDenseTiles(ctx: GpuContext, B: number): DenseTiles {
  const WG = ctx.adapter.isSoftware ? 16 : 64;
  return {
    forward: { TM: 8, TN4: B <= 4 ? 1 : B <= 8 ? 2 : 4 },
    gradInput: B <= 2 ? { TM: 1, TN4: 4 } : { TM: 8, TN4: 4 },
    gradWeight: { TM4: 2, TN4: 4 },
    WG,
  };
}

let tileOverride: ((ctx: GpuContext, B: number) => DenseTiles) | null = null;

/** For tests and benchmarks: force the tiles (null restores the heuristic). */
export function setDenseTiles(choose: ((ctx: GpuContext, B: number) => DenseTiles) | null): void {
  tileOverride = choose;
}

const kernel = (name: string, code: string, entryPoint: string, constants: Record<string, number>): KernelSpec => ({
  name,
  code,
  entryPoint,
  constants,
});

function checkTiles(t: DenseTiles): void {
  const ok = (v: number, max: number) => Number.isInteger(v) && v >= 1 && v <= max;
  if (!ok(t.forward.TM, 8) || !ok(t.forward.TN4, 4) || !ok(t.gradInput.TM, 8) || !ok(t.gradInput.TN4, 4) || !ok(t.gradWeight.TM4, 2) || !ok(t.gradWeight.TN4, 4) || !ok(t.WG, 256)) {
    throw new Error(`dense: tile sizes out of range: ${JSON.stringify(t)}`);
  }
}

/** A [rows, cols] tensor copied into [rows, cols4*4] with zero columns (no gradient recorded). */
function padCols(t: Tensor, rows: number, cols: number, cols4: number): Tensor {
  const out = empty(t.ctx, [rows, cols4 * 4], `${t.name || 'dense'}.padded`);
  out.ctx.dispatch(kernel('dense.pad_cols', denseWgsl, 'pad_cols', {}), [t.buffer, out.buffer], [rows, cols, cols4], Math.ceil(out.size / 64));
  return out;
}

function checkDense(x: Tensor, w: Tensor, b: Tensor | null, activation: Activation): { B: number; In: number; Out: number } {
  for (const t of [x, w, b]) t?.assertAlive('dense');
  if (!(activation in ACT_CODE)) throw new ShapeError(`dense: activation '${activation}' is not one of none, relu, sigmoid`);
  if (x.shape.length !== 2) throw new ShapeError(`dense: input ${x.describe()} must have shape [batch, in]`);
  if (w.shape.length !== 2) throw new ShapeError(`dense: weight ${w.describe()} must have shape [out, in]`);
  const [B, In] = x.shape;
  const [Out, WIn] = w.shape;
  if (WIn !== In) throw new ShapeError(`dense: input ${x.describe()} has ${In} features but weight ${w.describe()} expects ${WIn} ([out, in], PyTorch's layout)`);
  if (b && !(b.shape.length === 1 && b.shape[0] === Out)) throw new ShapeError(`dense: bias ${b.describe()} must have shape [${Out}] to match weight ${w.describe()}`);
  if (B < 1 || In < 1 || Out < 1) throw new ShapeError(`dense: empty shapes are not supported (input ${x.describe()}, weight ${w.describe()})`);
  for (const t of [w, b]) if (t && t.ctx !== x.ctx) throw new ShapeError(`dense: ${t.describe()} and input ${x.describe()} live on different GPU contexts`);
  return { B, In, Out };
}

/** y = act(x W^T + b). x [B, In], w [Out, In], b [Out] or null. */
export function dense(x: Tensor, w: Tensor, b: Tensor | null, activation: Activation = 'none'): Tensor {
  const { B, In, Out } = checkDense(x, w, b, activation);
  const ctx = x.ctx;
  const tiles = (tileOverride ?? chooseDenseTiles)(ctx, B);
  checkTiles(tiles);
  const In4 = Math.ceil(In / 4);
  const Out4 = Math.ceil(Out / 4);
  const S = Out4 * 4;
  const act = ACT_CODE[activation];
  // Sizes of everything allocated below, checked before any dispatch.
  const limit = ctx.limits.maxStorageBufferBindingSize;
  for (const [what, n] of [['transposed input', In * Math.ceil(B / 4) * 4], ['padded input', B * In4 * 4], ['padded weight', Out * In4 * 4], ['dpre', B * S]] as const) {
    if (n * 4 > limit) throw new ShapeError(`dense: ${what} needs ${n * 4} bytes, above maxStorageBufferBindingSize (${limit}); split the batch`);
  }
  const y = empty(ctx, [B, Out], 'dense');

  const aligned = In % 4 === 0;
  // y^T = W x^T: transpose the input (B*In values, B padded to a multiple of 4), then the GEMM.
  const B4 = Math.ceil(B / 4);
  const xt = empty(ctx, [In, B4 * 4], 'dense.xT');
  ctx.dispatch(kernel('dense.transpose_input', denseWgsl, 'transpose_input', {}), [x.buffer, xt.buffer], [B, In, B4], Math.ceil(xt.size / 64));
  const { TM, TN4 } = tiles.forward;
  const tilesN = Math.ceil(B4 / TN4);
  const count = Math.ceil(Out / TM) * tilesN;
  ctx.dispatch(
    kernel('dense', denseWgsl, 'main', { WG: tiles.WG, TM, TN4, ACT: act, HAS_BIAS: b ? 1 : 0 }),
    [w.buffer, xt.buffer, (b ?? w).buffer, y.buffer],
    [B, In, Out, B4, tilesN, count],
    Math.ceil(count / tiles.WG),
  );
  xt.dispose();

  return record(y, `dense(${activation})`, b ? [x, w, b] : [x, w], (dy) => {
    const needX = x.requiresGrad;
    const needW = w.requiresGrad;
    const needB = b !== null && b.requiresGrad;
    const dpre = empty(ctx, [B, S], 'dense.dpre');
    const db = empty(ctx, [Out], 'dense.db');
    ctx.dispatch(
      kernel('dense_grad_weight.bias_grad', gradWeightWgsl, 'bias_grad', { ACT: act }),
      [dy.buffer, (act === 0 ? dy : y).buffer, dpre.buffer, db.buffer],
      [B, Out, S],
      Math.ceil(S / 64),
    );
    if (needX) {
      const wpad = aligned ? w : padCols(w, Out, In, In4);
      const dx = empty(ctx, [B, In], 'dense.dx');
      const { TM: gm, TN4 } = tiles.gradInput;
      const tn = Math.ceil(In4 / TN4);
      const n = Math.ceil(B / gm) * tn;
      ctx.dispatch(
        kernel('dense_grad_input', gradInputWgsl, 'main', { WG: tiles.WG, TM: gm, TN4 }),
        [dpre.buffer, wpad.buffer, dx.buffer],
        [B, Out, S, In, In4, tn, n],
        Math.ceil(n / tiles.WG),
      );
      if (!aligned) wpad.dispose();
      accumulateGrad(x, dx);
    }
    if (needW) {
      const xpad = aligned ? x : padCols(x, B, In, In4);
      const dw = empty(ctx, [Out, In], 'dense.dW');
      const { TM4, TN4 } = tiles.gradWeight;
      const tn = Math.ceil(In4 / TN4);
      const n = Math.ceil(Out4 / TM4) * tn;
      ctx.dispatch(
        kernel('dense_grad_weight', gradWeightWgsl, 'main', { WG: tiles.WG, TM4, TN4 }),
        [dpre.buffer, xpad.buffer, dw.buffer],
        [B, Out, S / 4, In, In4, tn, n],
        Math.ceil(n / tiles.WG),
      );
      if (!aligned) xpad.dispose();
      accumulateGrad(w, dw);
    }
    dpre.dispose();
    if (needB) accumulateGrad(b!, db);
    else db.dispose();
  });
}
