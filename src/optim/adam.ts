// Adam (PyTorch semantics: bias-corrected, no weight decay) over parameter tensors, with one fused
// WGSL kernel (kernels/adam.wgsl, vec4 loads) dispatched once per parameter tensor, all recorded
// into the open command encoder: no readback, ~10 dispatches per step for CapsNet. Why not one dispatch over all
// parameters packed in one buffer: Tensors own whole pooled buffers (no views), gradients arrive
// as separate tensors from the tape, and per-tensor dispatches need only 5 storage bindings (param,
// grad, m, v, skip flag: within WebGPU's default of 8 per stage) while costing ~0.02-0.05 ms each on
// llvmpipe.
// The learning rate (and bias correction) is computed on the host in f64 each step and passed as a
// uniform: a schedule costs nothing on the GPU.
// Skipping an update on the GPU: step(params, {skipFlag}) makes the kernel read one f32 of a GPU
// buffer (the training monitor's "this step saw a NaN or infinity" flag) and leave every parameter,
// m and v untouched when it is not 0: a bad step is dropped without waiting for a readback. The step
// count still advances (it is the index into the learning-rate schedule and the data order, which a
// skipped batch also moves past), so a resumed run makes the same decisions.
// State per parameter name: m and v (GPU tensors), and the step count; export/import as
// Float32Arrays for checkpoints (src/io/checkpoint.ts stores them as adam.m.<name>, adam.v.<name>).
// Reference: test/reference/adam.ts. Test: test/adam.test.ts.

import adamWgsl from '../../kernels/adam.wgsl';
import { type GpuContext, type KernelSpec, f32 } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { type Tensor, fromArray, sameShape, untrack, zeros } from '../tensor.ts';
import { type LrSchedule, constantLr } from './schedule.ts';

/** A learning-rate multiplier Adam accepts (AdamOptions.lrMult; --lr-mult checks the same). */
export const isLrMultiplier = (k: number): boolean => Number.isFinite(k) && k >= 0;

export interface AdamOptions {
  /** A constant (default 1e-3) or a schedule of the 0-based step (e.g. staircaseDecay()). */
  lr?: number | LrSchedule;
  /** default 0.9 */
  beta1?: number;
  /** default 0.999 */
  beta2?: number;
  /** default 1e-8 */
  eps?: number;
  /**
   * Learning-rate multipliers by parameter name (Caffe's lr_mult; absent: 1): that parameter's
   * update uses lr * multiplier. Under Adam, which is invariant to a gradient's scale, multiplier
   * 1/k is what a layer whose output the forward pass divides by k learns like; the official
   * CapsNet code's PrimaryCaps is such a layer (k = 32), hence `--lr-mult primary.weight=0.03125`.
   * Every name must be one of the parameters step() is given.
   */
  lrMult?: Readonly<Record<string, number>>;
}

/** Adam's state as plain arrays, by parameter name (the shape src/io/checkpoint.ts stores). */
export interface AdamState {
  /** Updates done so far (the next update uses t = step + 1 for bias correction). */
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

export const ADAM_KERNEL: KernelSpec = { name: 'adam', code: adamWgsl };

/** A GPU flag that cancels an update: the f32 at `index` of `buffer`; not 0 means skip. */
export interface SkipFlag {
  buffer: GPUBuffer;
  index: number;
}

/** Throws (before any dispatch) unless the flag's f32 lies inside its buffer. */
export function checkSkipFlag(flag: SkipFlag | undefined, doing: string): void {
  if (flag && !(Number.isInteger(flag.index) && flag.index >= 0 && (flag.index + 1) * 4 <= flag.buffer.size)) {
    throw new ShapeError(`${doing}: skip flag index ${flag.index} is outside buffer '${flag.buffer.label}' of ${flag.buffer.size} bytes`);
  }
}

/**
 * Throws unless every parameter is a live tensor of `ctx` with a name of its own: per-parameter
 * state (Adam's moments, a moving average) is kept by name. `keeper` says whose state, for the message.
 */
export function checkNamedParameters(ctx: GpuContext, params: readonly Tensor[], doing: string, keeper: string): void {
  const names = new Set<string>();
  for (const p of params) {
    p.assertAlive(doing);
    if (p.ctx !== ctx) throw new ShapeError(`${doing}: parameter ${p.describe()} lives on another GPU context`);
    if (!p.name) throw new ShapeError(`${doing}: a parameter ${p.describe()} has no name (${keeper} by name)`);
    if (names.has(p.name)) throw new ShapeError(`${doing}: two parameters are named '${p.name}'`);
    names.add(p.name);
  }
}

/**
 * Throws unless each buffer can be read as the ceil(n / 4) vec4 of a tensor of n elements: the
 * update kernels (Adam, the moving average) load and store whole vec4. Pooled buffers are
 * multiples of 16 bytes, so this holds for every tensor; checked before any dispatch.
 */
export function checkVec4Buffers(buffers: readonly (GPUBuffer | undefined)[], n: number, doing: string): void {
  const bytes = Math.ceil(n / 4) * 16;
  for (const b of buffers) {
    if (b && (b.size < bytes || b.size % 16 !== 0)) throw new Error(`${doing}: buffer '${b.label}' of ${b.size} bytes cannot be read as ${Math.ceil(n / 4)} vec4`);
  }
}

export interface AdamStepOptions {
  /** Read on the GPU by every update kernel: when the flag is not 0, nothing is written. */
  skipFlag?: SkipFlag;
}
const WG = 64;

interface Moments {
  shape: readonly number[];
  m: Tensor;
  v: Tensor;
}

export class Adam {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly schedule: LrSchedule;
  /** Learning-rate multipliers by parameter name (AdamOptions.lrMult). */
  readonly lrMult: ReadonlyMap<string, number>;
  private steps = 0;
  private readonly state = new Map<string, Moments>();
  /** A one-element zero buffer bound as the skip flag when the caller gives none. */
  private neverSkip: Tensor | null = null;

  constructor(readonly ctx: GpuContext, options: AdamOptions = {}) {
    const { lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = options;
    for (const [name, value] of [['beta1', beta1], ['beta2', beta2]] as const) {
      if (!(value >= 0 && value < 1)) throw new Error(`Adam: ${name} must be in [0, 1), got ${value}`);
    }
    if (!(Number.isFinite(eps) && eps >= 0)) throw new Error(`Adam: eps must be a finite number >= 0, got ${eps}`);
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.schedule = typeof lr === 'number' ? constantLr(lr) : lr;
    for (const [name, k] of Object.entries(options.lrMult ?? {})) {
      if (!isLrMultiplier(k)) throw new Error(`Adam: the learning-rate multiplier of '${name}' must be a finite number >= 0, got ${k}`);
    }
    this.lrMult = new Map(Object.entries(options.lrMult ?? {}));
  }

  /** Updates done so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** The learning rate the next step() will use. */
  get lr(): number {
    return this.schedule(this.steps);
  }

  private checkParams(params: readonly Tensor[], doing: string, needGrad: boolean): void {
    checkNamedParameters(this.ctx, params, doing, 'Adam keeps its state');
    if (needGrad) {
      const names = new Set(params.map((p) => p.name));
      const unknown = [...this.lrMult.keys()].filter((name) => !names.has(name));
      if (unknown.length > 0) {
        throw new ShapeError(`${doing}: learning-rate multipliers for ${unknown.map((n) => `'${n}'`).join(', ')}, which ${unknown.length === 1 ? 'is' : 'are'} not among the parameters (${params.map((p) => p.name).join(', ')})`);
      }
    }
    for (const p of params) {
      const s = this.state.get(p.name);
      if (s && !sameShape(s.shape, p.shape)) throw new ShapeError(`${doing}: parameter ${p.describe()} has Adam state of shape [${s.shape.join(', ')}]`);
      if (!needGrad) continue;
      if (!p.grad) throw new ShapeError(`${doing}: parameter ${p.describe()} has no gradient (did backward() reach it?)`);
      p.grad.assertAlive(doing);
      if (!sameShape(p.grad.shape, p.shape)) throw new ShapeError(`${doing}: gradient ${p.grad.describe()} does not match parameter ${p.describe()}`);
    }
  }

  private moments(p: Tensor): Moments {
    let s = this.state.get(p.name);
    if (!s) {
      s = { shape: [...p.shape], m: untrack(zeros(this.ctx, p.shape, `adam.m.${p.name}`)), v: untrack(zeros(this.ctx, p.shape, `adam.v.${p.name}`)) };
      this.state.set(p.name, s);
    }
    return s;
  }

  /**
   * One update of every parameter from its .grad (all must have one), in place; records the
   * dispatches into the open encoder (nothing is read back). Gradients are left as they are:
   * call zeroGrad() before the next backward().
   */
  step(params: readonly Tensor[], options: AdamStepOptions = {}): void {
    this.checkParams(params, 'Adam.step', true);
    const flag = options.skipFlag;
    checkSkipFlag(flag, 'Adam.step');
    const lr = this.schedule(this.steps);
    if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`Adam.step: the schedule gave learning rate ${lr} at step ${this.steps}`);
    const t = this.steps + 1;
    const c1 = 1 - Math.pow(this.beta1, t);
    const c2 = 1 - Math.pow(this.beta2, t);
    const uniforms = (p: Tensor) => [f32((lr * (this.lrMult.get(p.name) ?? 1)) / c1), f32(this.beta1), f32(1 - this.beta1), f32(this.beta2), f32(1 - this.beta2), f32(1 / Math.sqrt(c2)), f32(this.eps)];
    for (const p of params) {
      const s = this.state.get(p.name);
      checkVec4Buffers([p.buffer, p.grad!.buffer, s?.m.buffer, s?.v.buffer], p.size, 'Adam.step');
    }
    this.neverSkip ??= untrack(zeros(this.ctx, [1], 'adam.never-skip'));
    const flagBuffer = flag?.buffer ?? this.neverSkip.buffer;
    const flagIndex = flag?.index ?? 0;
    for (const p of params) {
      const { m, v } = this.moments(p);
      if (p.size === 0) continue;
      this.ctx.dispatch(ADAM_KERNEL, [p.buffer, p.grad!.buffer, m.buffer, v.buffer, flagBuffer], [p.size, ...uniforms(p), flagIndex], Math.ceil(p.size / 4 / WG));
    }
    this.steps = t;
  }

  /** Drops the gradients (the next backward() makes fresh ones; nothing to clear on the GPU). */
  zeroGrad(params: readonly Tensor[]): void {
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** m and v of every parameter stepped so far, read back, and the step count. */
  async exportState(): Promise<AdamState> {
    const out: AdamState = { step: this.steps, m: {}, v: {} };
    for (const [name, s] of this.state) {
      out.m[name] = await s.m.read();
      out.v[name] = await s.v.read();
    }
    return out;
  }

  /**
   * Replaces the state with `state` for exactly these parameters: every parameter needs m and v
   * of its size, and the state may hold no other names. Checks everything before changing anything.
   */
  importState(state: AdamState, params: readonly Tensor[]): void {
    this.checkParams(params, 'Adam.importState', false);
    const problems: string[] = [];
    if (!Number.isInteger(state.step) || state.step < 0) problems.push(`step ${state.step} is not an integer >= 0`);
    const names = new Set(params.map((p) => p.name));
    for (const p of params) {
      for (const which of ['m', 'v'] as const) {
        const a = state[which][p.name];
        if (!a) problems.push(`no adam.${which}.${p.name}`);
        else if (a.length !== p.size) problems.push(`adam.${which}.${p.name} holds ${a.length} values, parameter ${p.describe()} has ${p.size}`);
      }
    }
    for (const which of ['m', 'v'] as const) {
      for (const name of Object.keys(state[which])) if (!names.has(name)) problems.push(`adam.${which}.${name} matches no parameter`);
    }
    if (problems.length > 0) throw new ShapeError(`Adam.importState: ${problems.join('; ')}`);
    this.disposeState();
    for (const p of params) {
      this.state.set(p.name, {
        shape: [...p.shape],
        m: untrack(fromArray(this.ctx, p.shape, state.m[p.name], `adam.m.${p.name}`)),
        v: untrack(fromArray(this.ctx, p.shape, state.v[p.name], `adam.v.${p.name}`)),
      });
    }
    this.steps = state.step;
  }

  private disposeState(): void {
    for (const s of this.state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.state.clear();
  }

  /** Frees the moments on the GPU. */
  dispose(): void {
    this.disposeState();
    this.neverSkip?.dispose();
    this.neverSkip = null;
  }
}

/** The state as checkpoint tensor names: adam.m.<name>, adam.v.<name> (the step goes in metadata). */
export function adamStateTensors(state: AdamState): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, a] of Object.entries(state.m)) out[`adam.m.${name}`] = a;
  for (const [name, a] of Object.entries(state.v)) out[`adam.v.${name}`] = a;
  return out;
}
