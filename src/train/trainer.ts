// The training loop, the same in Node and in the browser, for CapsNet and the baseline CNN. Each
// step uploads its batch, records the forward pass, backward pass and Adam update into the open
// command encoder, and lets the StepMonitor write the step's statistics on the GPU; the statistics
// are read back once every `logEvery` steps (and before every checkpoint, so a checkpoint is only
// written after its steps were seen to be finite).
//
// Non-finite values (NaN, infinity) in a step's parameters, loss, activations or gradients: the
// monitor counts them per monitored tensor on the GPU and raises a "bad step" flag there, which every Adam update
// kernel of the same step reads: a bad step's update is never applied, in either policy, with no
// readback. What happens next is the policy (TrainerOptions.onNonFinite):
// - 'stop' (default): at the next read, NonFiniteError names the first bad step and the first layer
//   that produced non-finite values; the caller keeps its last good checkpoint.
// - 'skip': the bad steps are reported (hooks.onSkipped: step, layer, count) and training goes on;
//   after maxConsecutiveSkips bad steps in a row (default 10: the parameters themselves may be
//   broken, or the learning rate too high), TooManySkipsError stops the run.
// A skipped step still counts as a step: the data order, the dropout masks and the learning-rate
// schedule are functions of the step index, so a resumed run makes exactly the same decisions.

import type { GpuContext } from '../gpu/context.ts';
import { type Tensor, fromArray, tidy } from '../tensor.ts';
import { backward, noGrad } from '../autograd/tape.ts';
import { CapsNet, oneHotTargets, twoDigitLoss } from '../model/capsnet.ts';
import { BaselineCNN } from '../model/baseline.ts';
import { dropoutSeed } from '../ops/dropout.ts';
import { Adam } from '../optim/adam.ts';
import type { ParameterEma } from '../optim/ema.ts';
import { StepMonitor, type StepStats } from './monitor.ts';
import type { TrainingBatches } from './batches.ts';
import { MultiMnistBatches, type MultiMnistBatch } from '../data/multimnist.ts';

/**
 * Where the training batches come from: single-label images (TrainingBatches, and CanvasBatches
 * for the 40x40 affine and CIFAR-10 crop recipes), or MultiMNIST's two-digit examples, trained with
 * two-hot targets and a reconstruction of each digit (CapsNet only).
 */
export type BatchSource = TrainingBatches | MultiMnistBatches;

/** The models the trainer knows how to train and evaluate. */
export type TrainableModel = CapsNet | BaselineCNN;

export interface StepRecord {
  step: number;
  loss: number;
  /** CapsNet only: the margin part of the loss and the reconstruction part. */
  marginLoss?: number;
  reconLoss?: number;
  /** Fraction of the step's batch whose highest class score (capsule length, or logit) is the label. */
  accuracy: number;
  lr: number;
}

/** A step whose update was not applied ('skip' policy). */
export interface SkippedStep {
  /** 1-based, as reported to users. */
  step: number;
  loss: number;
  /** Monitored tensors holding NaN or infinity, in the order they were computed, with counts. */
  where: Array<{ name: string; count: number }>;
}

function describeBadStep(step: number, where: Array<{ name: string; count: number }>, loss: number): string {
  const first = where[0];
  return (
    `step ${step + 1} produced ${Number.isNaN(loss) ? 'a NaN loss' : !Number.isFinite(loss) ? 'an infinite loss' : 'non-finite values'}` +
    (first ? `; non-finite values first appear in '${first.name}' (${first.count} values)` : '') +
    (where.length > 1 ? `, then in ${where.slice(1, 6).map((w) => `'${w.name}'`).join(', ')}${where.length > 6 ? ', ...' : ''}` : '')
  );
}

/**
 * What to try: a non-finite input batch is no learning-rate problem (the data files hold bytes, so
 * the batch was made wrong on its way to the GPU, or a fault was injected); anything after it may be.
 */
const inputIsBad = (where: Array<{ name: string; count: number }>) => where[0]?.name === 'images';
function adviceFor(where: Array<{ name: string; count: number }>): string {
  if (inputIsBad(where)) return 'The input batch itself holds them: the data pipeline made them, not the model or its learning rate (--inject-fault nan-input does this on purpose); the last good checkpoint is kept.';
  return "Try a lower learning rate (the CLI's --lr); the last good checkpoint is kept.";
}

export class NonFiniteError extends Error {
  override name = 'NonFiniteError';
  constructor(
    /** 0-based index of the first bad step. */
    readonly step: number,
    readonly where: Array<{ name: string; count: number }>,
    readonly loss: number,
    message?: string,
  ) {
    super(message ?? `training stopped: ${describeBadStep(step, where, loss)}. ${adviceFor(where)}`);
  }
}

/** 'skip' policy: too many bad steps in a row. `step` is the last of them (0-based). */
export class TooManySkipsError extends NonFiniteError {
  override name = 'TooManySkipsError';
  constructor(step: number, where: Array<{ name: string; count: number }>, loss: number, readonly consecutive: number) {
    super(
      step,
      where,
      loss,
      `training stopped: ${consecutive} steps in a row (${step + 2 - consecutive}..${step + 1}) were skipped for non-finite values; the last: ` +
        `${describeBadStep(step, where, loss)}. The parameters are those before step ${step + 2 - consecutive} ` +
        `(a skipped step changes nothing), but every new batch fails${inputIsBad(where) ? '' : ': a parameter may hold a NaN, or the learning rate is too high'}. ` +
        adviceFor(where),
    );
  }
}

export type NonFinitePolicy = 'stop' | 'skip';

export interface TrainerOptions {
  /** What a step with NaN or infinite values does to the run (see the header). Default 'stop'. */
  onNonFinite?: NonFinitePolicy;
  /** 'skip': this many bad steps in a row stop the run (TooManySkipsError). Default 10. */
  maxConsecutiveSkips?: number;
  /** Bad steps in a row just before the first step of this run (a resumed run's count). Default 0. */
  consecutiveSkips?: number;
  /**
   * Create every pipeline of a training step and of the evaluation forward pass before the first
   * step (Trainer.warmUp, at the first run()). Default true.
   */
  warmUp?: boolean;
  /** The batch size evaluate() will use, for the warm-up (kernel choices depend on shapes). Default: the training batch size. */
  evalBatchSize?: number;
  /**
   * A moving average of the parameters, folded in after every applied update (a skipped step
   * leaves it as it is); started or imported by the caller. The trainer neither starts nor frees it.
   */
  ema?: ParameterEma;
}

/** What the warm-up did (hooks.onStartup; metrics logs write it as a 'startup' record). */
export interface StartupReport {
  /** Distinct kernels met in a training step and an evaluation forward pass. */
  kernels: number;
  /** Pipelines created by the warm-up (kernels whose pipelines existed already are not counted). */
  pipelines: number;
  /**
   * Wall-clock seconds of the warm-up: collecting the kernels, creating their pipelines, and
   * waiting for the driver to compile them (the empty dispatches).
   */
  seconds: number;
}

export interface TrainHooks {
  /** After each read of the statistics: the good steps since the last read. */
  onRecords?(records: StepRecord[]): void | Promise<void>;
  /** 'skip' policy, after each read: the steps whose update was not applied. */
  onSkipped?(skipped: SkippedStep[]): void | Promise<void>;
  /** Steps after which to save (the statistics up to that step have been checked first). */
  checkpointDue?(stepsDone: number): boolean;
  onCheckpoint?(stepsDone: number): Promise<void>;
  /** Polled after every step: stop cleanly (after a statistics read and a checkpoint). */
  shouldStop?(): boolean;
  /** Once, before the first step of the first run(), after the pipelines were created (see TrainerOptions.warmUp). */
  onStartup?(startup: StartupReport): void | Promise<void>;
  /** After every step has run on the GPU (for progress bars). */
  onStep?(stepsDone: number): void;
  /**
   * Fault injection for tests (src/train/faults.ts): called with the step's batch on the host,
   * before it is uploaded (0-based step). Whatever it changes is what the step trains on.
   */
  beforeStep?(step: number, batch: { images: Float32Array; labels: Int32Array }): void;
  /** Fault injection for tests: called after the step's work is recorded, before it is submitted. */
  afterStepRecorded?(step: number): void;
}

export class Trainer {
  readonly monitor: StepMonitor;
  readonly onNonFinite: NonFinitePolicy;
  readonly maxConsecutiveSkips: number;
  private consecutive: number;
  private readonly images: Float32Array;
  private readonly labels: Int32Array;
  /** 0-based index of the step being recorded or run; for error reports. */
  currentStep = -1;
  readonly evalBatchSize: number;
  readonly ema: ParameterEma | null;
  /** Whether run() still has to warm the pipelines up before its first step. */
  private warmUpPending: boolean;

  constructor(
    readonly ctx: GpuContext,
    readonly model: TrainableModel,
    readonly adam: Adam,
    readonly batches: BatchSource,
    readonly logEvery = 10,
    options: TrainerOptions = {},
  ) {
    this.onNonFinite = options.onNonFinite ?? 'stop';
    if (this.onNonFinite !== 'stop' && this.onNonFinite !== 'skip') throw new Error(`Trainer: onNonFinite must be 'stop' or 'skip', got ${String(this.onNonFinite)}`);
    this.maxConsecutiveSkips = options.maxConsecutiveSkips ?? 10;
    if (!Number.isInteger(this.maxConsecutiveSkips) || this.maxConsecutiveSkips < 1) throw new Error(`Trainer: maxConsecutiveSkips must be an integer >= 1, got ${this.maxConsecutiveSkips}`);
    this.consecutive = options.consecutiveSkips ?? 0;
    this.warmUpPending = options.warmUp ?? true;
    this.evalBatchSize = options.evalBatchSize ?? batches.batchSize;
    this.ema = options.ema ?? null;
    if (this.ema && this.ema.ctx !== ctx) throw new Error('Trainer: the moving average lives on another GPU context');
    if (this.ema) this.ema.check(model.parameterList(), 'Trainer');
    if (!Number.isInteger(this.evalBatchSize) || this.evalBatchSize < 1) throw new Error(`Trainer: evalBatchSize must be an integer >= 1, got ${this.evalBatchSize}`);
    this.monitor = new StepMonitor(ctx, logEvery);
    const c = model.config;
    this.images = new Float32Array(batches.batchSize * c.inputChannels * c.inputSize * c.inputSize);
    this.labels = new Int32Array(batches.batchSize);
    if (batches instanceof MultiMnistBatches) {
      if (!(model instanceof CapsNet)) throw new Error('Trainer: MultiMNIST batches train CapsNet only (two-hot margin targets)');
      this.pairs = batches.createBatch(model.config.digitCaps);
    }
  }

  /** MultiMNIST: the step's two-digit batch (host arrays, filled each step). */
  private readonly pairs: MultiMnistBatch | null = null;

  /** Bad steps in a row at the last statistics read ('skip' policy); checkpoints store it. */
  get consecutiveSkips(): number {
    return this.consecutive;
  }

  /**
   * Records one training step (global 0-based index `step`) into the encoder. The warm-up passes
   * a throwaway optimizer and monitor: collecting the step's kernels must not advance the real
   * ones' step counts (the average has no host state: the warm-up records the real one, which
   * changes nothing while kernels are collected); the moment estimate passes no average (its
   * steps change nothing).
   */
  private step(step: number, hooks: TrainHooks, adam: Adam = this.adam, monitor: StepMonitor = this.monitor, ema: ParameterEma | null = this.ema): void {
    const { ctx, model } = this;
    const c = model.config;
    const B = this.batches.batchSize;
    const pairs = this.pairs;
    if (pairs) {
      (this.batches as MultiMnistBatches).fill(step, pairs);
      hooks.beforeStep?.(step, { images: pairs.images, labels: pairs.firstLabels });
    } else {
      (this.batches as TrainingBatches).fill(step, this.images, this.labels);
      hooks.beforeStep?.(step, { images: this.images, labels: this.labels });
    }
    monitor.beginStep(step);
    tidy(() => {
      const tap = (name: string, tensor: Tensor) => monitor.tap(name, tensor);
      // The parameters themselves first: a NaN in a weight is named where it is, and is found even
      // where a kernel does not pass NaN on (measured: the dense layer's fused ReLU turns NaN into 0
      // on OpenGL llvmpipe), or where an update overflowed after the previous step was checked.
      for (const p of model.parameterList()) tap(`parameter ${p.name}`, p);
      let loss: Tensor;
      let margin: Tensor;
      let scores: Tensor;
      let y: Tensor;
      let correct: Tensor | undefined;
      if (pairs) {
        const out = twoDigitLoss(model as CapsNet, pairs, B, tap);
        [loss, margin, scores, correct] = [out.loss, out.margin, out.lengths, out.correct];
        // Not read by the statistics when `correct` is given (one label cannot say two-of-two).
        y = out.correct;
      } else {
        const x = fromArray(ctx, [B, c.inputChannels, c.inputSize, c.inputSize], this.images, 'images');
        y = fromArray(ctx, [B], Float32Array.from(this.labels), 'labels');
        if (model instanceof CapsNet) {
          const t = oneHotTargets(ctx, this.labels, model.config.digitCaps);
          const out = model.loss(x, y, t, tap);
          [loss, margin, scores] = [out.loss, out.margin, out.lengths];
        } else {
          // The dropout mask is a function of (run seed, step): a resumed run drops the same units.
          const out = model.loss(x, y, { dropoutSeed: dropoutSeed(this.batches.seed, step), tap });
          [loss, margin, scores] = [out.loss, out.loss, out.logits];
        }
      }
      monitor.tap('loss', loss);
      backward(loss);
      const params = model.parameterList();
      for (const p of params) monitor.tap(`gradient of ${p.name}`, p.grad!);
      monitor.stats(loss, margin, scores, y, correct);
      // The update reads the monitor's flag: a step with any non-finite value changes nothing.
      ema?.check(params); // before Adam's update: a refusal leaves the optimizer as it was
      adam.step(params, { skipFlag: monitor.skipFlag() });
      ema?.update(params, adam.stepCount, { skipFlag: monitor.skipFlag() });
      adam.zeroGrad(params);
    });
    hooks.afterStepRecorded?.(step);
  }

  /**
   * Creates and compiles the pipelines of a training step (the one of global index `step`) and of
   * an evaluation forward pass at evalBatchSize before the first step, so that the first step runs
   * at the speed of the others and the start-up cost is known. Three passes over the step's
   * recording, none of which runs a kernel or changes the model, the optimizer or the monitor:
   * 1. GpuContext.collectKernels: which kernels (pipelines) the step needs;
   * 2. warmPipelines: all of them created at once with createComputePipelineAsync (drivers that
   *    compile at creation, such as browsers' and native ones, compile them in parallel there);
   * 3. the step recorded again with empty dispatches (zero workgroups) and waited for: Mesa's
   *    llvmpipe creates pipelines without compiling them and compiles each kernel at its first
   *    dispatch, one after the other (measured: tools/profile-step.ts --startup), so this is where
   *    it compiles; elsewhere it costs a few milliseconds.
   * run() calls it once, before its first step.
   */
  async warmUp(step = 0): Promise<StartupReport> {
    const { ctx, model } = this;
    const started = performance.now();
    const record = () => {
      const adam = new Adam(ctx);
      const monitor = new StepMonitor(ctx, this.logEvery);
      try {
        this.step(step, {}, adam, monitor);
      } finally {
        adam.dispose();
        monitor.dispose();
      }
      const c = model.config;
      const B = this.evalBatchSize;
      noGrad(() => tidy(() => {
        const x = fromArray(ctx, [B, c.inputChannels, c.inputSize, c.inputSize], new Float32Array(B * c.inputChannels * c.inputSize * c.inputSize), 'images');
        model.forward(x);
      }));
    };
    const kernels = ctx.collectKernels(record);
    const pipelines = await ctx.warmPipelines(kernels);
    ctx.collectKernels(record, { emptyDispatches: true });
    await ctx.sync();
    this.warmUpPending = false;
    return { kernels: kernels.length, pipelines, seconds: (performance.now() - started) / 1000 };
  }

  /**
   * Reads the statistics: good steps as records, bad ones as skipped; `error` is the NonFiniteError
   * that ends the run (the steps before it are reported, the ones after it are not).
   */
  private async readRecords(lrOf: (step: number) => number): Promise<{ records: StepRecord[]; skipped: SkippedStep[]; error: NonFiniteError | null }> {
    const stats = await this.monitor.read();
    const records: StepRecord[] = [];
    const skipped: SkippedStep[] = [];
    const done = (error: NonFiniteError | null = null) => ({ records, skipped, error });
    const capsnet = this.model instanceof CapsNet;
    for (const s of stats as StepStats[]) {
      const bad = s.nonFinite.length > 0 || !Number.isFinite(s.loss);
      if (bad !== s.flagged) {
        // The GPU's decision (which the update obeyed) and the host's must agree.
        throw new Error(`Trainer: step ${s.step + 1}: the GPU flagged the step as ${s.flagged ? 'bad' : 'good'}, the statistics say ${bad ? 'bad' : 'good'} (a bug in kernels/step_stats.wgsl)`);
      }
      if (bad) {
        if (this.onNonFinite === 'stop') return done(new NonFiniteError(s.step, s.nonFinite, s.loss));
        this.consecutive++;
        skipped.push({ step: s.step + 1, loss: s.loss, where: s.nonFinite });
        if (this.consecutive >= this.maxConsecutiveSkips) return done(new TooManySkipsError(s.step, s.nonFinite, s.loss, this.consecutive));
        continue;
      }
      this.consecutive = 0;
      records.push({
        step: s.step + 1,
        loss: s.loss,
        ...(capsnet ? { marginLoss: s.margin, reconLoss: s.loss - s.margin } : {}),
        accuracy: s.correct / this.batches.batchSize,
        lr: lrOf(s.step),
      });
    }
    return done();
  }

  /**
   * Fills the optimizer's moments for a run that starts at `fromStep` from parameters whose Adam
   * state is lost (capsnet train --init-from): a fresh Adam's first update moves every weight by
   * the full learning rate in the sign of one batch's gradient (m / sqrt(v) = +-1 at t = 1), a jolt
   * to a trained model. Instead, `count` steps run at learning rate 0 on the batches the original
   * run saw last (0-based steps fromStep-count..fromStep-1; the first `count` when fromStep is
   * smaller), and their moments are rescaled to what an Adam that had run since step 0 on
   * gradients like these would hold: m = (1 - beta1^fromStep) E[g] and
   * v = (1 - beta2^fromStep) E[g^2], so that the bias correction of step fromStep + 1 is right.
   * The parameters do not change (lr 0); the optimizer's step count becomes fromStep. A non-finite
   * gradient stops it (NonFiniteError) before anything is imported. Returns false, importing
   * nothing, when hooks.shouldStop() asks to stop between batches.
   */
  async estimateAdamMoments(
    fromStep: number, count: number,
    hooks: Pick<TrainHooks, 'onStartup' | 'shouldStop'> & { onProgress?(batchesDone: number): void } = {},
  ): Promise<boolean> {
    if (!Number.isInteger(fromStep) || fromStep < 1) throw new Error(`Trainer.estimateAdamMoments: fromStep must be an integer >= 1 (at step 0 the moments are zero), got ${fromStep}`);
    if (!Number.isInteger(count) || count < 1) throw new Error(`Trainer.estimateAdamMoments: count must be an integer >= 1, got ${count}`);
    if (this.adam.stepCount !== 0) throw new Error(`Trainer.estimateAdamMoments: the optimizer has already done ${this.adam.stepCount} updates`);
    const first = Math.max(0, fromStep - count);
    if (this.warmUpPending) await hooks.onStartup?.(await this.warmUp(first));
    const { beta1, beta2, eps } = this.adam;
    const probe = new Adam(this.ctx, { lr: 0, beta1, beta2, eps });
    const monitor = new StepMonitor(this.ctx, 1);
    try {
      for (let k = 0; k < count; k++) {
        if (hooks.shouldStop?.()) return false;
        this.currentStep = first + k;
        this.step(first + k, {}, probe, monitor, null);
        const [s] = await monitor.read();
        if (s.nonFinite.length > 0 || !Number.isFinite(s.loss)) throw new NonFiniteError(s.step, s.nonFinite, s.loss);
        hooks.onProgress?.(k + 1);
      }
      const state = await probe.exportState();
      const rescale = (moments: Record<string, Float32Array>, beta: number) => {
        const factor = (1 - Math.pow(beta, fromStep)) / (1 - Math.pow(beta, count));
        for (const a of Object.values(moments)) for (let i = 0; i < a.length; i++) a[i] *= factor;
      };
      rescale(state.m, beta1);
      rescale(state.v, beta2);
      this.adam.importState({ step: fromStep, m: state.m, v: state.v }, this.model.parameterList());
      return true;
    } finally {
      probe.dispose();
      monitor.dispose();
      this.currentStep = -1;
    }
  }

  /**
   * Runs steps from `stepsDone` (the number already done) until `totalSteps` are done, or until
   * hooks.shouldStop(). Returns the number of steps done.
   */
  async run(stepsDone: number, totalSteps: number, hooks: TrainHooks = {}): Promise<number> {
    const lrOf = (s: number) => this.adam.schedule(s);
    let done = stepsDone;
    if (this.warmUpPending && done < totalSteps) {
      const startup = await this.warmUp(done);
      await hooks.onStartup?.(startup);
    }
    while (done < totalSteps) {
      this.currentStep = done;
      this.step(done, hooks);
      done++;
      // Waiting for each step keeps progress and error reports exact; the GPU is busy for the whole
      // step anyway and recording the next one takes about a millisecond.
      await this.ctx.sync();
      hooks.onStep?.(done);
      const stop = hooks.shouldStop?.() ?? false;
      const checkpoint = hooks.checkpointDue?.(done) ?? false;
      if (this.monitor.pending >= this.logEvery || done === totalSteps || stop || checkpoint) {
        const read = await this.readRecords(lrOf);
        if (read.skipped.length > 0) await hooks.onSkipped?.(read.skipped);
        await hooks.onRecords?.(read.records);
        if (read.error) throw read.error;
        if (checkpoint || stop) await hooks.onCheckpoint?.(done);
      }
      // A checkpoint hook may ask to stop (e.g. an evaluation reached its target): the step is saved.
      if (stop || (checkpoint && (hooks.shouldStop?.() ?? false))) break;
    }
    this.currentStep = -1;
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
  /** [count, classes] class scores: capsule lengths (CapsNet) or logits (baseline CNN). */
  scores: Float32Array;
  /** The same array as `scores` (CapsNet's name for them). */
  lengths: Float32Array;
  predictions: Int32Array;
  /** confusion[label][prediction] */
  confusion: number[][];
}

/** Number of classes a model scores. */
export function classCount(model: TrainableModel): number {
  return model instanceof CapsNet ? model.config.digitCaps : model.config.classes;
}

/**
 * Evaluates on `count` examples given by `fill(start, images, labels)` (which returns how many it
 * wrote), in batches of `batchSize` (the last one padded), reading back only the class scores. The
 * prediction is the highest score: CapsNet's longest capsule, the baseline's largest logit (no
 * dropout in inference).
 */
export async function evaluate(
  model: TrainableModel,
  count: number,
  batchSize: number,
  fill: (start: number, images: Float32Array, labels: Int32Array) => number,
  onProgress?: (done: number) => void,
): Promise<Evaluation> {
  const c = model.config;
  const J = classCount(model);
  const images = new Float32Array(batchSize * c.inputChannels * c.inputSize * c.inputSize);
  const labels = new Int32Array(batchSize);
  const scores = new Float32Array(count * J);
  const allLabels = new Int32Array(count);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start, fill(start, images, labels));
    const out = tidy(() =>
      noGrad(() => {
        const x = fromArray(model.ctx, [batchSize, c.inputChannels, c.inputSize, c.inputSize], images, 'images');
        return model instanceof CapsNet ? model.forward(x).lengths : model.forward(x);
      }),
    );
    const values = await out.read();
    out.dispose();
    scores.set(values.subarray(0, n * J), start * J);
    allLabels.set(labels.subarray(0, n), start);
    onProgress?.(start + n);
  }
  return { ...scoreClasses(scores, allLabels, count, J), scores, lengths: scores };
}

/**
 * Scores `count` rows of J class scores against their labels: the prediction is the highest score
 * (the first on ties), confusion[label][prediction] counts labels in [0, J). Used by evaluate() and
 * by ensembles (src/cli/ensemble.ts), which score mean probabilities the same way.
 */
export function scoreClasses(scores: ArrayLike<number>, labels: ArrayLike<number>, count: number, J: number): Pick<Evaluation, 'count' | 'correct' | 'accuracy' | 'predictions' | 'confusion'> {
  const predictions = new Int32Array(count);
  const confusion = Array.from({ length: J }, () => new Array<number>(J).fill(0));
  let correct = 0;
  for (let i = 0; i < count; i++) {
    let best = 0;
    for (let j = 1; j < J; j++) if (scores[i * J + j] > scores[i * J + best]) best = j;
    predictions[i] = best;
    const label = labels[i];
    if (label >= 0 && label < J) confusion[label][best]++;
    if (best === label) correct++;
  }
  return { count, correct, accuracy: count > 0 ? correct / count : 0, predictions, confusion };
}
