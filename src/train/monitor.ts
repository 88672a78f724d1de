// What a training step reports without a readback: per-step loss, margin loss and correct count,
// and the number of non-finite values in every monitored tensor (each layer's output, the loss,
// each parameter's gradient), all written by kernels into one GPU buffer that is read back once
// every few steps. A NaN is then pinned to its step and to the first layer that produced it. The
// statistics kernel also writes a per-step "bad step" flag, which the step's Adam update reads
// (skipFlag()), so a step with any non-finite value is never applied, with no readback.

import stepStatsWgsl from '../../kernels/step_stats.wgsl';
import countNonFiniteWgsl from '../../kernels/count_nonfinite.wgsl';
import type { GpuContext, KernelSpec } from '../gpu/context.ts';
import { type Tensor, zeros, untrack } from '../tensor.ts';

const STATS: KernelSpec = { name: 'step_stats', code: stepStatsWgsl };
const NONFINITE: KernelSpec = { name: 'count_nonfinite', code: countNonFiniteWgsl };
const FIXED = 4; // loss, margin, correct, bad-step flag

export interface StepStats {
  step: number;
  loss: number;
  margin: number;
  correct: number;
  /** The GPU's bad-step flag (the update of this step was not applied). */
  flagged: boolean;
  /** Monitored tensors holding NaN or infinity, in the order they were computed, with counts. */
  nonFinite: Array<{ name: string; count: number }>;
}

export class StepMonitor {
  private readonly buffer: Tensor;
  private readonly names: string[] = [];
  private slot = -1;
  private firstStep = 0;
  private tapIndex = 0;

  constructor(
    readonly ctx: GpuContext,
    /** Steps held before a read is needed. */
    readonly capacity: number,
    /** Most tensors monitored per step. */
    readonly maxTaps = 64,
  ) {
    this.buffer = untrack(zeros(ctx, [capacity * this.stride], 'step stats'));
  }

  private get stride(): number {
    return FIXED + this.maxTaps;
  }

  /** Steps recorded since the last read. */
  get pending(): number {
    return this.slot + 1;
  }

  /** Starts the record of `step` (must follow the previous one, or come after a read). */
  beginStep(step: number): void {
    if (this.slot + 1 >= this.capacity) throw new Error(`StepMonitor: ${this.capacity} steps recorded without a read`);
    if (this.slot < 0) this.firstStep = step;
    else if (step !== this.firstStep + this.slot + 1) throw new Error(`StepMonitor: step ${step} does not follow ${this.firstStep + this.slot}`);
    this.slot++;
    this.tapIndex = 0;
  }

  /** Counts the non-finite values of `t`, under `name` (the same names in the same order every step). */
  tap(name: string, t: Tensor): void {
    const k = this.tapIndex++;
    if (k >= this.maxTaps) throw new Error(`StepMonitor: more than ${this.maxTaps} tensors monitored`);
    if (this.names.length === k) this.names.push(name);
    else if (this.names[k] !== name) throw new Error(`StepMonitor: tensor ${k} is '${name}', it was '${this.names[k]}' in earlier steps`);
    const at = this.slot * this.stride + FIXED + k;
    const { maxStorageBufferBindingSize: limit, minStorageBufferOffsetAlignment: align } = this.ctx.limits;
    if (t.bytes <= limit) {
      this.ctx.dispatch(NONFINITE, [t.buffer, this.buffer.buffer], [t.size, at, 0], 1);
      return;
    }
    // Larger than one binding (u_hat at batch > 182 under a 128 MiB limit): counted in slices
    // whose offsets keep the storage alignment, each adding to the count.
    const perSlice = Math.floor(limit / align) * (align / 4);
    for (let start = 0; start < t.size; start += perSlice) {
      const n = Math.min(perSlice, t.size - start);
      this.ctx.dispatch(NONFINITE, [{ buffer: t.buffer, offset: start * 4, size: n * 4 }, this.buffer.buffer], [n, at, start > 0 ? 1 : 0], 1);
    }
  }

  /**
   * Records the step's loss, margin loss (the loss again for models without one), how many examples
   * were right, and the bad-step flag over every tensor tapped so far in this step: call it after
   * the last tap. Right: the highest score (capsule lengths or logits, [B, classes]) is the label
   * ([B]); or, when `correct` ([B] of 0/1, e.g. MultiMNIST's two-of-two) is given, its sum (then
   * `labels` is not read).
   */
  stats(loss: Tensor, margin: Tensor, scores: Tensor, labels: Tensor, correct?: Tensor): void {
    const [B, J] = scores.shape;
    if (correct && (correct.shape.length !== 1 || correct.shape[0] !== B)) {
      throw new Error(`StepMonitor.stats: correct must be [${B}], got [${correct.shape.join(', ')}]`);
    }
    // Without per-example values the binding still needs a buffer: the labels (never read then).
    const perExample = correct ?? labels;
    this.ctx.dispatch(STATS, [loss.buffer, margin.buffer, scores.buffer, labels.buffer, perExample.buffer, this.buffer.buffer], [B, J, this.slot * this.stride, this.tapIndex, correct ? 1 : 0], 1);
  }

  /** Where stats() writes this step's bad-step flag (1: the step saw a NaN or infinity): for Adam.step. */
  skipFlag(): { buffer: GPUBuffer; index: number } {
    if (this.slot < 0) throw new Error('StepMonitor.skipFlag: no step begun');
    return { buffer: this.buffer.buffer, index: this.slot * this.stride + 3 };
  }

  /** Reads every step recorded since the last read, and starts over. */
  async read(): Promise<StepStats[]> {
    const n = this.slot + 1;
    if (n === 0) return [];
    const data = new Float32Array(await this.ctx.readBuffer(this.buffer.buffer, n * this.stride * 4));
    const out: StepStats[] = [];
    for (let s = 0; s < n; s++) {
      const row = data.subarray(s * this.stride, (s + 1) * this.stride);
      const nonFinite: StepStats['nonFinite'] = [];
      this.names.forEach((name, k) => {
        if (row[FIXED + k] > 0) nonFinite.push({ name, count: row[FIXED + k] });
      });
      out.push({ step: this.firstStep + s, loss: row[0], margin: row[1], correct: row[2], flagged: row[3] !== 0, nonFinite });
    }
    this.slot = -1;
    return out;
  }

  dispose(): void {
    this.buffer.dispose();
  }
}
