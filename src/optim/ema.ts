// An exponential moving average of the parameters, kept on the GPU during training (Polyak
// averaging): late in a run Adam's iterates wander around a minimum, and their average often sits
// nearer its centre (here, the mean of three epoch-end checkpoints made 7 to 16 fewer MNIST test
// errors than its members). One kernel (kernels/ema.wgsl, vec4) dispatched per parameter tensor after
// each Adam update, recorded into the open encoder: no readback.
// The decay of the update after t optimizer steps is min(decay, (1 + t) / (10 + t)) (TensorFlow's
// ExponentialMovingAverage with num_updates): t counts from the run's first step, so a fresh run's
// average forgets the random initialisation within tens of steps (its weight is 6e-5 by t = 10),
// and averages over about (10 + t) / 9 steps until t reaches (10 decay - 1) / (1 - decay) (8,990
// for 0.999), over about 1 / (1 - decay) steps after; one started late in a run (enabled on a
// resume) averages at `decay` at once. The average starts as an exact copy of the parameters (start()).
// A skipped step (the training monitor's GPU flag, as Adam reads it) leaves the average unchanged.
// State per parameter name; export/import as Float32Arrays for checkpoints (src/io/checkpoint.ts
// stores them as ema.<name>, and the decay and start step in __metadata__.ema).
// Reference: test/reference/ema.ts. Test: test/ema.test.ts.

import emaWgsl from '../../kernels/ema.wgsl';
import { type GpuContext, type KernelSpec, f32 } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { type Tensor, empty, fromArray, sameShape, untrack, zeros } from '../tensor.ts';
import type { EmaCheckpointState } from '../io/checkpoint.ts';
import { type SkipFlag, checkNamedParameters, checkSkipFlag, checkVec4Buffers } from './adam.ts';

export const EMA_KERNEL: KernelSpec = { name: 'ema', code: emaWgsl };
const WG = 64;

/** The average as plain arrays, by parameter name, with its decay and start step: what a checkpoint stores. */
export type EmaState = EmaCheckpointState;

/** The decay of the update after `t` optimizer steps (t >= 1). */
export function emaDecayAt(decay: number, t: number): number {
  return Math.min(decay, (1 + t) / (10 + t));
}

/** Whether `decay` is usable: in (0, 1). */
export const isEmaDecay = (decay: number): boolean => Number.isFinite(decay) && decay > 0 && decay < 1;

export class ParameterEma {
  private readonly averages = new Map<string, { shape: readonly number[]; average: Tensor }>();
  /** A one-element zero buffer bound as the skip flag when the caller gives none. */
  private neverSkip: Tensor | null = null;
  private started: number | null = null;

  constructor(readonly ctx: GpuContext, readonly decay: number) {
    if (!isEmaDecay(decay)) throw new Error(`ParameterEma: decay must be a number in (0, 1), got ${decay}`);
  }

  /** The optimizer step at which the average started (null before start() or importState()). */
  get since(): number | null {
    return this.started;
  }

  private checkTensors(params: readonly Tensor[], doing: string): void {
    checkNamedParameters(this.ctx, params, doing, 'the average is kept');
    for (const p of params) checkVec4Buffers([p.buffer], p.size, doing);
  }

  /** The average becomes an exact copy of the parameters at optimizer step `step` (buffer copies, recorded into the open encoder). */
  start(params: readonly Tensor[], step: number): void {
    this.checkTensors(params, 'ParameterEma.start');
    if (!Number.isInteger(step) || step < 0) throw new Error(`ParameterEma.start: step must be an integer >= 0, got ${step}`);
    this.disposeAverages();
    for (const p of params) {
      const average = untrack(empty(this.ctx, p.shape, `ema.${p.name}`));
      this.averages.set(p.name, { shape: [...p.shape], average });
      if (p.size > 0) this.ctx.copyBuffer(p.buffer, 0, average.buffer, 0, p.size * 4);
    }
    this.started = step;
  }

  /**
   * Throws unless update() would accept these parameters: started, each with an average of its
   * shape. The Trainer calls it before Adam's update, so that a refusal leaves the step unrecorded.
   */
  check(params: readonly Tensor[], doing = 'ParameterEma.update'): void {
    this.checkTensors(params, doing);
    if (this.started === null) throw new Error(`${doing}: the moving average was not started (start() or importState() first)`);
    for (const p of params) {
      const s = this.averages.get(p.name);
      if (!s) throw new ShapeError(`${doing}: parameter ${p.describe()} has no average (it was not there at start())`);
      if (!sameShape(s.shape, p.shape)) throw new ShapeError(`${doing}: parameter ${p.describe()} has an average of shape [${s.shape.join(', ')}]`);
      checkVec4Buffers([s.average.buffer], p.size, doing);
    }
  }

  /**
   * Folds the parameters after optimizer step `t` (1-based: the count of updates done) into the
   * average; with a skip flag that is not 0 on the GPU, nothing changes. No host state changes, so
   * Trainer.warmUp may record it while collecting kernels (nothing runs then).
   */
  update(params: readonly Tensor[], t: number, options: { skipFlag?: SkipFlag } = {}): void {
    this.check(params);
    if (!Number.isInteger(t) || t < 1) throw new Error(`ParameterEma.update: t must be an integer >= 1, got ${t}`);
    const flag = options.skipFlag;
    checkSkipFlag(flag, 'ParameterEma.update');
    this.neverSkip ??= untrack(zeros(this.ctx, [1], 'ema.never-skip'));
    const decay = emaDecayAt(this.decay, t);
    for (const p of params) {
      if (p.size === 0) continue;
      const average = this.averages.get(p.name)!.average;
      this.ctx.dispatch(EMA_KERNEL, [average.buffer, p.buffer, flag?.buffer ?? this.neverSkip.buffer], [p.size, f32(decay), f32(1 - decay), flag?.index ?? 0], Math.ceil(p.size / 4 / WG));
    }
  }

  /** The average read back, with its decay and start step. */
  async exportState(): Promise<EmaState> {
    if (this.started === null) throw new Error('ParameterEma.exportState: nothing to export before start() or importState()');
    const params: Record<string, Float32Array> = {};
    for (const [name, s] of this.averages) params[name] = await s.average.read();
    return { decay: this.decay, since: this.started, params };
  }

  /**
   * Replaces the average with `state`'s for exactly these parameters (its decay is not taken: this
   * object's is, so a resumed run may change it). Checks everything before changing anything.
   */
  importState(state: EmaState, params: readonly Tensor[]): void {
    this.checkTensors(params, 'ParameterEma.importState');
    const problems: string[] = [];
    if (!Number.isInteger(state.since) || state.since < 0) problems.push(`since ${state.since} is not an integer >= 0`);
    const names = new Set(params.map((p) => p.name));
    for (const p of params) {
      const a = state.params[p.name];
      if (!a) problems.push(`no ema.${p.name}`);
      else if (a.length !== p.size) problems.push(`ema.${p.name} holds ${a.length} values, parameter ${p.describe()} has ${p.size}`);
    }
    for (const name of Object.keys(state.params)) if (!names.has(name)) problems.push(`ema.${name} matches no parameter`);
    if (problems.length > 0) throw new ShapeError(`ParameterEma.importState: ${problems.join('; ')}`);
    this.disposeAverages();
    for (const p of params) this.averages.set(p.name, { shape: [...p.shape], average: untrack(fromArray(this.ctx, p.shape, state.params[p.name], `ema.${p.name}`)) });
    this.started = state.since;
  }

  private disposeAverages(): void {
    for (const s of this.averages.values()) s.average.dispose();
    this.averages.clear();
  }

  dispose(): void {
    this.disposeAverages();
    this.neverSkip?.dispose();
    this.neverSkip = null;
    this.started = null;
  }
}
