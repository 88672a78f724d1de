// The training loop, the same in Node and in the browser. Each step uploads its batch, records the
// forward pass, backward pass and Adam update into the open command encoder, and lets the
// StepMonitor write the step's statistics on the GPU; the statistics are read back once every
// `logEvery` steps (and before every checkpoint, so a checkpoint is only written after its steps
// were seen to be finite). A non-finite value stops the run with the step and the first layer.

import type { GpuContext } from '../gpu/context.ts';
import { fromArray, tidy } from '../tensor.ts';
import { backward, noGrad } from '../autograd/tape.ts';
import { type CapsNet, oneHotTargets } from '../model/capsnet.ts';
import type { Adam } from '../optim/adam.ts';
import { StepMonitor, type StepStats } from './monitor.ts';
import type { TrainingBatches } from './batches.ts';

export interface StepRecord {
  step: number;
  loss: number;
  marginLoss: number;
  reconLoss: number;
  /** Fraction of the step's batch whose longest capsule is the label. */
  accuracy: number;
  lr: number;
}

export class NonFiniteError extends Error {
  override name = 'NonFiniteError';
  constructor(
    readonly step: number,
    readonly where: Array<{ name: string; count: number }>,
    readonly loss: number,
  ) {
    const first = where[0];
    super(
      `training stopped: step ${step + 1} produced ${Number.isNaN(loss) ? 'a NaN loss' : !Number.isFinite(loss) ? 'an infinite loss' : 'non-finite gradients'}` +
        (first ? `; non-finite values first appear in '${first.name}' (${first.count} values)` : '') +
        (where.length > 1 ? `, then in ${where.slice(1, 6).map((w) => `'${w.name}'`).join(', ')}${where.length > 6 ? ', ...' : ''}` : '') +
        '. Try a lower --lr; the last good checkpoint is kept.',
    );
  }
}

export interface TrainHooks {
  /** After each read of the statistics: the steps since the last read. */
  onRecords?(records: StepRecord[]): void | Promise<void>;
  /** Steps after which to save (the statistics up to that step have been checked first). */
  checkpointDue?(stepsDone: number): boolean;
  onCheckpoint?(stepsDone: number): Promise<void>;
  /** Polled after every step: stop cleanly (after a statistics read and a checkpoint). */
  shouldStop?(): boolean;
  /** After every step has run on the GPU (for progress bars). */
  onStep?(stepsDone: number): void;
}

export class Trainer {
  readonly monitor: StepMonitor;
  private readonly images: Float32Array;
  private readonly labels: Int32Array;

  constructor(
    readonly ctx: GpuContext,
    readonly model: CapsNet,
    readonly adam: Adam,
    readonly batches: TrainingBatches,
    readonly logEvery = 10,
  ) {
    this.monitor = new StepMonitor(ctx, logEvery);
    const c = model.config;
    this.images = new Float32Array(batches.batchSize * c.inputChannels * c.inputSize * c.inputSize);
    this.labels = new Int32Array(batches.batchSize);
  }

  /** Records one training step (global 0-based index `step`) into the encoder. */
  private step(step: number): void {
    const { ctx, model, adam, monitor } = this;
    const c = model.config;
    const B = this.batches.batchSize;
    this.batches.fill(step, this.images, this.labels);
    monitor.beginStep(step);
    tidy(() => {
      const x = fromArray(ctx, [B, c.inputChannels, c.inputSize, c.inputSize], this.images, 'images');
      const y = fromArray(ctx, [B], Float32Array.from(this.labels), 'labels');
      const t = oneHotTargets(ctx, this.labels, c.digitCaps);
      const out = model.loss(x, y, t, (name, tensor) => monitor.tap(name, tensor));
      monitor.tap('loss', out.loss);
      backward(out.loss);
      const params = model.parameterList();
      for (const p of params) monitor.tap(`gradient of ${p.name}`, p.grad!);
      monitor.stats(out.loss, out.margin, out.lengths, y);
      adam.step(params);
      adam.zeroGrad(params);
    });
  }

  private async readRecords(lrOf: (step: number) => number): Promise<StepRecord[]> {
    const stats = await this.monitor.read();
    const bad = stats.find((s) => s.nonFinite.length > 0 || !Number.isFinite(s.loss));
    if (bad) throw new NonFiniteError(bad.step, bad.nonFinite, bad.loss);
    return stats.map((s: StepStats) => ({
      step: s.step + 1,
      loss: s.loss,
      marginLoss: s.margin,
      reconLoss: s.loss - s.margin,
      accuracy: s.correct / this.batches.batchSize,
      lr: lrOf(s.step),
    }));
  }

  /**
   * Runs steps from `stepsDone` (the number already done) until `totalSteps` are done, or until
   * hooks.shouldStop(). Returns the number of steps done.
   */
  async run(stepsDone: number, totalSteps: number, hooks: TrainHooks = {}): Promise<number> {
    const lrOf = (s: number) => this.adam.schedule(s);
    let done = stepsDone;
    while (done < totalSteps) {
      this.step(done);
      done++;
      // Waiting for each step keeps progress and error reports exact; the GPU is busy for the whole
      // step anyway and recording the next one takes about a millisecond.
      await this.ctx.sync();
      hooks.onStep?.(done);
      const stop = hooks.shouldStop?.() ?? false;
      const checkpoint = hooks.checkpointDue?.(done) ?? false;
      if (this.monitor.pending >= this.logEvery || done === totalSteps || stop || checkpoint) {
        const records = await this.readRecords(lrOf);
        await hooks.onRecords?.(records);
        if (checkpoint || stop) await hooks.onCheckpoint?.(done);
      }
      if (stop) break;
    }
    return done;
  }

  dispose(): void {
    this.monitor.dispose();
  }
}

export interface Evaluation {
  count: number;
  correct: number;
  accuracy: number;
  /** [count, classes] capsule lengths. */
  lengths: Float32Array;
  predictions: Int32Array;
  /** confusion[label][prediction] */
  confusion: number[][];
}

/**
 * Evaluates on `count` examples given by `fill(start, images, labels)` (which returns how many it
 * wrote), in batches of `batchSize` (the last one padded), reading back only the lengths.
 */
export async function evaluate(
  model: CapsNet,
  count: number,
  batchSize: number,
  fill: (start: number, images: Float32Array, labels: Int32Array) => number,
  onProgress?: (done: number) => void,
): Promise<Evaluation> {
  const c = model.config;
  const J = c.digitCaps;
  const images = new Float32Array(batchSize * c.inputChannels * c.inputSize * c.inputSize);
  const labels = new Int32Array(batchSize);
  const lengths = new Float32Array(count * J);
  const predictions = new Int32Array(count);
  const confusion = Array.from({ length: J }, () => new Array<number>(J).fill(0));
  let correct = 0;
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start, fill(start, images, labels));
    const out = tidy(() =>
      noGrad(() => model.forward(fromArray(model.ctx, [batchSize, c.inputChannels, c.inputSize, c.inputSize], images, 'images')).lengths),
    );
    const values = await out.read();
    out.dispose();
    for (let b = 0; b < n; b++) {
      const row = values.subarray(b * J, (b + 1) * J);
      lengths.set(row, (start + b) * J);
      let best = 0;
      for (let j = 1; j < J; j++) if (row[j] > row[best]) best = j;
      predictions[start + b] = best;
      const label = labels[b];
      if (label >= 0 && label < J) confusion[label][best]++;
      if (best === label) correct++;
    }
    onProgress?.(start + n);
  }
  return { count, correct, accuracy: count > 0 ? correct / count : 0, lengths, predictions, confusion };
}
