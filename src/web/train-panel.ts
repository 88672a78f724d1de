// The Train tab: trains the current model (or a new one) on the page's MNIST images with the
// library's Trainer (on-GPU step statistics, the same seeded batches as `capsnet train`), one step
// per GPU job so that the explorer and the page stay responsive; live loss and accuracy curves,
// images per second, pause and resume, periodic tests, and checkpoints with Adam's state and the
// run's options, so that `capsnet train --resume` continues them in Node.
// If the GPU device is lost, the run stops; the page keeps a snapshot of the run (checkpoint bytes
// with Adam's state, taken every SNAPSHOT_INTERVAL_MS of training and at each pause) from which
// the model is restored on a new device, and training continues exactly from there.

import type { App } from './app-state.ts';
import { ModelEntry, PRESETS, type PresetName, checkExplorable } from './models.ts';
import { byId, breathe, downloadBytes, drawGray, el, errorText, formatCount, stepsLost } from './dom.ts';
import { exampleImage, trainSet, testSet } from './mnist.ts';
import { CapsNet } from '../model/capsnet.ts';
import { makeConfig, parameterCount } from '../model/config.ts';
import { Adam } from '../optim/adam.ts';
import { staircaseDecay } from '../optim/schedule.ts';
import { TrainingBatches } from '../train/batches.ts';
import { NonFiniteError, Trainer, evaluate, type StepRecord } from '../train/trainer.ts';
import { type Dataset, fillBatch } from '../data/dataset.ts';
import { legendHtml, liveChartSvg, type LiveSeries } from './chart.ts';
// Type only (erased by esbuild): the page does not load the CLI's Node code.
import type { RunOptions } from '../cli/run-options.ts';

/**
 * The options `capsnet train` stores in a checkpoint (src/cli/run-options.ts), so Node can resume
 * a run started here: the MNIST ones (no model, experiment or data recipe fields: their absence
 * means CapsNet on MNIST). `limit`: the page's data file holds the first images of MNIST's training set.
 */
export type WebRunOptions = Pick<RunOptions, 'seed' | 'batchSize' | 'lr' | 'decayRate' | 'decaySteps' | 'maxShift' | 'limit' | 'validation' | 'data' | 'totalSteps'>;

interface Run {
  entry: ModelEntry;
  adam: Adam;
  trainer: Trainer;
  batches: TrainingBatches;
  options: WebRunOptions;
  records: StepRecord[];
  tests: Array<[number, number]>;
  /** Time spent in steps (pauses excluded). */
  trainMs: number;
  /** Images per second, smoothed. */
  ips: number;
  running: boolean;
  loop: Promise<void> | null;
  error: string | null;
  /** run.trainMs at the last snapshot. */
  snapshotAtMs: number;
}

/** A stopped run's curves, continued by the next run of the same (restored) model. */
interface Carry {
  entry: ModelEntry;
  records: StepRecord[];
  tests: Array<[number, number]>;
}

/** Test digits shown with their predictions in the progress card. */
const SAMPLES = 16;
const DECAY_RATE = 0.96;
const DECAY_STEPS = 2000;
/** Steps between refreshes of the explorer's view while training runs. */
const EXPLORER_REFRESH_STEPS = 25;
/**
 * Training time between snapshots of the run into page memory (parameters and Adam's state, read
 * back: 13 MB for the small model, 98 MB for the paper's), so that a snapshot costs a small share
 * of the training time even for the paper's model.
 */
const SNAPSHOT_INTERVAL_MS = 60_000;

export class TrainPanel {
  run: Run | null = null;
  /** Training time between snapshots (tests shorten or lengthen it). */
  snapshotIntervalMs = SNAPSHOT_INTERVAL_MS;
  private train: Dataset | null = null;
  private lastChart = 0;
  private carry: Carry | null = null;
  /** Set while a click's run is being built (data loading, model creation): a second click waits its turn. */
  private starting = false;

  constructor(private readonly app: App) {
    byId('train-start').addEventListener('click', () => {
      this.startOrResume().catch((error) => this.setMessage(`Could not start training: ${errorText(error)}`, true));
    });
    byId('train-pause').addEventListener('click', () => void this.pause());
    byId('train-reset').addEventListener('click', () => void this.endRun());
    byId('train-eval').addEventListener('click', () => void this.test());
    byId('train-download').addEventListener('click', () => void this.download());
    byId('train-model').addEventListener('change', () => {
      this.fillFromCheckpoint();
      this.describe();
    });
    byId('train-batch').addEventListener('change', () => this.describe());
    app.onRelease(() => this.endRun());
    app.onInfo(() => this.describe());
    app.onLost((loss) => this.deviceLost(loss.step));
    this.renderCharts();
  }

  /** Loads the training data (once); called when the tab opens. */
  async prepare(): Promise<Dataset | null> {
    if (this.train) return this.train;
    const status = byId('data-status');
    status.textContent = 'Loading the MNIST training images…';
    try {
      this.train = await trainSet();
      status.textContent = `${formatCount(this.train.count)} MNIST training images loaded (the first ${formatCount(this.train.count)} of the 60,000), shifted by up to the chosen number of pixels, as in the paper.`;
      this.describe();
      if (!this.run) void testSet().then((test) => this.renderSamples(test, null, null), () => {});
      return this.train;
    } catch (error) {
      status.textContent = `Could not load the training images: ${errorText(error)}`;
      status.classList.add('status-error');
      return null;
    }
  }

  private form() {
    const num = (id: string) => Number(byId<HTMLInputElement>(id).value);
    return {
      model: byId<HTMLSelectElement>('train-model').value as PresetName | 'current',
      batchSize: num('train-batch'),
      lr: num('train-lr'),
      shift: num('train-shift'),
      seed: num('train-seed'),
      evalEvery: num('train-eval-every'),
      evalCount: num('train-eval-count'),
    };
  }

  private describe(): void {
    const f = this.form();
    const entry = this.app.entry;
    const config = f.model === 'current' ? entry?.config : makeConfig(PRESETS[f.model]);
    if (!config) return;
    const steps = this.train ? Math.floor(this.train.count / f.batchSize) : null;
    byId('train-config').textContent =
      `${f.model === 'current' ? `current model (${entry?.name})` : `${f.model} model`}: ${formatCount(parameterCount(config))} parameters` +
      (steps ? ` · ${formatCount(steps)} steps per epoch at batch ${f.batchSize}` : '');
    const current = byId<HTMLSelectElement>('train-model').querySelector('option[value="current"]') as HTMLOptionElement;
    current.textContent = entry ? `continue the current model (${entry.name}, step ${entry.step})` : 'continue the current model';
  }

  /** Continuing a checkpoint of `capsnet train` (or of this page): start from its run's settings. */
  private fillFromCheckpoint(): void {
    if (byId<HTMLSelectElement>('train-model').value !== 'current') return;
    const options = (this.app.entry?.training as { options?: Partial<WebRunOptions> } | null)?.options;
    if (!options) return;
    const set = (id: string, v: unknown) => {
      if (typeof v === 'number' && Number.isFinite(v)) byId<HTMLInputElement>(id).value = String(v);
    };
    const batch = byId<HTMLSelectElement>('train-batch');
    if (typeof options.batchSize === 'number' && !Array.from(batch.options).some((o) => o.value === String(options.batchSize))) {
      batch.append(new Option(String(options.batchSize)));
    }
    set('train-batch', options.batchSize);
    set('train-lr', options.lr);
    set('train-shift', options.maxShift);
    set('train-seed', options.seed);
    this.setMessage('Settings taken from the checkpoint\'s run.');
  }

  private setMessage(text: string, error = false): void {
    const m = byId('train-message');
    m.textContent = text;
    m.classList.toggle('error', error);
  }

  private setButtons(): void {
    const run = this.run;
    const running = run?.running ?? false;
    const start = byId<HTMLButtonElement>('train-start');
    start.textContent = run ? 'Resume' : 'Start training';
    start.disabled = running || (run !== null && run.error !== null);
    byId<HTMLButtonElement>('train-pause').disabled = !running;
    byId<HTMLButtonElement>('train-eval').disabled = !run;
    byId<HTMLButtonElement>('train-download').disabled = !run;
    byId<HTMLButtonElement>('train-reset').disabled = !run;
    for (const id of ['train-model', 'train-batch', 'train-lr', 'train-shift', 'train-seed']) byId<HTMLInputElement>(id).disabled = run !== null;
    const state = byId('train-state');
    state.textContent = !run ? 'idle' : run.error ? 'stopped' : running ? 'training' : 'paused';
    state.classList.toggle('state-running', running);
  }

  private async startOrResume(): Promise<void> {
    if (this.starting) return;
    this.starting = true;
    try {
      await this.startOrResumeOnce();
    } finally {
      this.starting = false;
    }
  }

  private async startOrResumeOnce(): Promise<void> {
    if (this.app.lost) {
      this.setMessage('The GPU device was lost: restore the model with the button at the top of the page first.', true);
      return;
    }
    if (this.run) {
      this.resume();
      return;
    }
    const train = await this.prepare();
    if (!train) return;
    const f = this.form();
    const problems: string[] = [];
    if (!(f.lr > 0 && f.lr < 1)) problems.push('the learning rate must be between 0 and 1');
    if (!Number.isInteger(f.shift) || f.shift < 0 || f.shift > 4) problems.push('shifts must be a whole number of pixels from 0 to 4 (the ink of a digit stays on the 28x28 canvas)');
    if (!Number.isInteger(f.seed) || f.seed < 0) problems.push('the seed must be a whole number >= 0');
    if (f.batchSize > train.count) problems.push(`the batch is larger than the ${train.count} training images`);
    if (problems.length > 0) {
      this.setMessage(`Cannot start: ${problems.join('; ')}.`, true);
      return;
    }
    const ctx = this.app.ctx;
    let entry: ModelEntry;
    if (f.model === 'current') {
      entry = this.app.model;
      checkExplorable(entry.config, entry.name);
    } else {
      const preset = f.model;
      const model = await this.app.queue.run(async () => CapsNet.create(ctx, PRESETS[preset], f.seed));
      entry = new ModelEntry(model, `${f.model} model trained in this page`, 'trained', 0);
      entry.restorePoint = { kind: 'fresh', preset, seed: f.seed, step: 0, what: `its initial weights (${preset} model, seed ${f.seed})` };
      await this.app.setModel(entry);
    }
    const adam = new Adam(ctx, { lr: staircaseDecay({ lr0: f.lr, decayRate: DECAY_RATE, decaySteps: DECAY_STEPS }) });
    let message = '';
    const state = entry.optimizer;
    if (state && state.step === entry.step) {
      await this.app.queue.run(async () => adam.importState(state, entry.model.parameterList()));
      message = `Continuing from step ${entry.step} with the checkpoint's Adam state.`;
    } else if (entry.step > 0) {
      message = `Continuing from step ${entry.step} with a fresh Adam state (the checkpoint has none): downloads of this run cannot be resumed exactly in Node.`;
    }
    const batches = new TrainingBatches(train, f.batchSize, f.seed, f.shift);
    // Evaluation pipelines warmed at test()'s batch (25) along with the step's, before the first step.
    const trainer = new Trainer(ctx, entry.model, adam, batches, 1, { evalBatchSize: 25 });
    const options: WebRunOptions = {
      seed: f.seed, batchSize: f.batchSize, lr: f.lr, decayRate: DECAY_RATE, decaySteps: DECAY_STEPS, maxShift: f.shift,
      limit: train.count, validation: 0, data: null, totalSteps: 0,
    };
    const run: Run = { entry, adam, trainer, batches, options, records: [], tests: [], trainMs: 0, ips: 0, running: false, loop: null, error: null, snapshotAtMs: 0 };
    // The same model restored after a lost device: its curves go on from the restored step.
    const carry = this.carry;
    this.carry = null;
    if (carry && carry.entry === entry) {
      run.records = carry.records.filter((r) => r.step <= entry.step);
      run.tests = carry.tests.filter(([step]) => step <= entry.step);
    }
    this.run = run;
    entry.origin = 'trained';
    entry.live = {
      optimizer: () => adam.exportState(),
      training: () => ({ options: { ...options, totalSteps: Math.max(entry.step, batches.stepsPerEpoch * Math.max(1, Math.ceil(entry.step / batches.stepsPerEpoch))) } }),
    };
    this.setMessage(message);
    this.app.changed();
    this.resume();
  }

  private resume(): void {
    const run = this.run;
    if (!run || run.running || run.error) return;
    run.running = true;
    this.setButtons();
    run.loop = this.loop(run);
  }

  /** Stops after the current step; resolves when it has. */
  async pause(): Promise<void> {
    const run = this.run;
    if (!run) return;
    run.running = false;
    await run.loop;
    this.setButtons();
  }

  private async loop(run: Run): Promise<void> {
    const B = run.batches.batchSize;
    try {
      while (run.running) {
        const f = this.form();
        const started = performance.now();
        const done = run.entry.step;
        let startupMs = 0;
        await this.app.queue.run(() =>
          run.trainer.run(done, done + 1, {
            // The first run() compiles every kernel first (seconds): not part of a step's speed.
            onStartup: (startup) => {
              startupMs = startup.seconds * 1000;
            },
            onRecords: (records) => {
              run.records.push(...records);
            },
          }),
        );
        const ms = performance.now() - started - startupMs;
        run.entry.step = done + 1;
        run.trainMs += ms;
        const ips = (B * 1000) / ms;
        run.ips = run.ips === 0 ? ips : 0.8 * run.ips + 0.2 * ips;
        const steps = run.entry.step;
        if (f.evalEvery > 0 && steps % f.evalEvery === 0) await this.test();
        if (steps % EXPLORER_REFRESH_STEPS === 0) this.app.changed();
        else this.app.described();
        this.renderStats();
        if (run.trainMs - run.snapshotAtMs >= this.snapshotIntervalMs) await this.snapshot(run);
        await breathe();
      }
      // Paused: keep what the run reached.
      await this.snapshot(run);
    } catch (error) {
      run.running = false;
      run.error = errorText(error);
      if (this.app.lost) this.deviceLost(run.entry.step);
      else this.setMessage(error instanceof NonFiniteError ? error.message : `Training stopped: ${run.error}`, true);
    } finally {
      run.running = false;
      // A run dropped after a lost device no longer owns the panel.
      if (this.run === run) {
        this.renderStats(true);
        this.setButtons();
        this.app.changed();
      }
    }
  }

  /**
   * Keeps the run's state in page memory (checkpoint bytes with Adam's state and the run's options):
   * the model's restore point if the device is lost.
   */
  private async snapshot(run: Run): Promise<void> {
    run.snapshotAtMs = run.trainMs;
    const point = run.entry.restorePoint;
    if (point && point.step === run.entry.step) return;
    const step = run.entry.step;
    const { bytes } = await this.app.queue.run(() => run.entry.checkpoint(false));
    run.entry.restorePoint = { kind: 'bytes', bytes, step, what: `the training run's last snapshot (step ${step})` };
  }

  /** The step the model would be restored from, and how that compares with where the run got. */
  private lossMessage(step: number): string {
    const point = this.app.entry?.restorePoint;
    if (!point) return `Training stopped at step ${step}: the GPU device was lost, and the page kept nothing to restore this model from.`;
    return `Training stopped at step ${step}: the GPU device was lost. ` +
      (point.step === step
        ? `Restoring keeps every step (the last snapshot is of step ${step}).`
        : `Restoring goes back to step ${point.step}, ${point.what}; ${stepsLost(point.step, step)}.`);
  }

  private deviceLost(step: number): void {
    const run = this.run;
    if (!run || run.entry !== this.app.entry) return;
    run.running = false;
    run.error ??= 'the GPU device was lost';
    this.setMessage(this.lossMessage(step), true);
    this.setButtons();
  }

  /**
   * Lets go of the run without any GPU work (its device is gone): called before the model is
   * restored on a new device. Its curves are kept for the next run of the restored model.
   */
  async dropRun(): Promise<void> {
    const run = this.run;
    if (!run) return;
    run.running = false;
    run.entry.live = null;
    // The loop ends as soon as its step is refused; do not wait for a device that is gone.
    await Promise.race([run.loop, new Promise((resolve) => setTimeout(resolve, 2000))]);
    this.run = null;
    this.carry = { entry: run.entry, records: run.records, tests: run.tests };
    this.setButtons();
  }

  /** After a restore: the restored model is ready to continue ('continue the current model'). */
  restored(entry: ModelEntry, lostStep: number | null): void {
    if (this.carry) this.carry.entry = entry;
    if (lostStep === null) return;
    byId<HTMLSelectElement>('train-model').value = 'current';
    this.fillFromCheckpoint();
    this.describe();
    this.renderCharts();
    const exact = entry.optimizer && entry.optimizer.step === entry.step;
    this.setMessage(
      `The GPU device was lost at step ${lostStep}; the model was restored at step ${entry.step}` +
        `${entry.step < lostStep ? ` (${stepsLost(entry.step, lostStep)})` : ''}. ` +
        `Press Start training to continue${exact ? ' from there with its Adam state' : ''}.`,
    );
  }

  /** Tests the model on the first N test images; records the accuracy at the current step. */
  async test(): Promise<number | null> {
    const run = this.run;
    if (!run) return null;
    const count = Math.max(1, Math.round(this.form().evalCount));
    try {
      const test = await testSet();
      const n = Math.min(count, test.count);
      const order = Uint32Array.from({ length: n }, (_, i) => i);
      const batch = Math.min(25, n);
      const result = await this.app.queue.run(() =>
        evaluate(run.entry.model, n, batch, (start, images, labels) => fillBatch(test, order, start, images, labels)),
      );
      run.tests.push([run.entry.step, result.accuracy]);
      run.entry.testAccuracy = { accuracy: result.accuracy, count: n, step: run.entry.step };
      this.renderSamples(test, result.predictions, run.entry.step);
      this.renderStats(true);
      return result.accuracy;
    } catch (error) {
      this.setMessage(`Test failed: ${errorText(error)}`, true);
      return null;
    }
  }

  private async download(): Promise<void> {
    const run = this.run;
    if (!run) return;
    try {
      const { bytes, withOptimizer, step } = await this.app.queue.run(async () => ({ step: run.entry.step, ...(await run.entry.checkpoint(false)) }));
      // Also a snapshot: a lost device restores from here.
      run.entry.restorePoint = { kind: 'bytes', bytes, step, what: `the checkpoint downloaded at step ${step}` };
      const preset = run.entry.config.conv1Channels === 256 ? 'paper' : 'small';
      downloadBytes(bytes, `capsnet-${preset}-step${run.entry.step}.safetensors`);
      this.setMessage(`Checkpoint of step ${step} downloaded (${(bytes.length / 1048576).toFixed(1)} MB, ${withOptimizer
        ? 'with Adam\'s state: `capsnet train --out DIR --init-from FILE` continues it exactly in Node'
        : 'without Adam\'s state, which this run began afresh: `capsnet train --out DIR --init-from FILE` continues it in Node, estimating Adam\'s moments'}).`);
    } catch (error) {
      this.setMessage(`Download failed: ${errorText(error)}`, true);
    }
  }

  /** Ends the run: the model stays (with its Adam state kept for a later run); settings unlock. */
  async endRun(): Promise<void> {
    const run = this.run;
    if (!run) return;
    await this.pause();
    try {
      if (!run.error) {
        run.entry.optimizer = await this.app.queue.run(() => run.adam.exportState());
        run.entry.training = run.entry.live?.training() ?? null;
      }
    } catch (error) {
      this.setMessage(`The run ended without keeping Adam's state: ${errorText(error)}`, true);
    } finally {
      run.entry.live = null;
      // Refused when the device is lost: there is nothing left to free then.
      await this.app.queue.run(async () => {
        run.trainer.dispose();
        run.adam.dispose();
        // A paper-model run pools hundreds of MB of activations the page's inference never needs again.
        this.app.ctx.pool.trim();
      }).catch(() => {});
      this.run = null;
      this.setButtons();
      this.describe();
    }
  }

  /** The first test digits with the model's predictions (green: right, red: wrong). */
  private renderSamples(test: Dataset, predictions: Int32Array | null, step: number | null): void {
    const n = Math.min(SAMPLES, test.count);
    byId('train-samples').replaceChildren(
      ...Array.from({ length: n }, (_, k) => {
        const canvas = el('canvas');
        drawGray(canvas, exampleImage(test, k), test.width, test.height);
        const p = predictions && k < predictions.length ? predictions[k] : null;
        const verdict = p === null ? 'unknown' : p === test.labels[k] ? 'right' : 'wrong';
        return el('figure', { className: verdict, title: p === null ? `label ${test.labels[k]}` : `label ${test.labels[k]}, predicted ${p}` },
          canvas, el('figcaption', { text: p === null ? '?' : String(p) }));
      }),
    );
    byId('samples-step').textContent = step === null ? 'predictions appear at each test' : `predictions at step ${formatCount(step)}`;
  }

  private renderStats(force = false): void {
    const run = this.run;
    if (!run) return;
    const last = run.records.at(-1);
    const steps = run.entry.step;
    byId('st-step').textContent = formatCount(steps);
    byId('st-epoch').textContent = (steps / run.batches.stepsPerEpoch).toFixed(2);
    byId('st-ips').textContent = run.ips > 0 ? run.ips.toFixed(run.ips < 10 ? 1 : 0) : '–';
    byId('st-loss').textContent = last ? smooth(run.records.map((r) => r.loss), 10).at(-1)!.toFixed(4) : '–';
    byId('st-acc').textContent = last ? `${(smooth(run.records.map((r) => r.accuracy), 20).at(-1)! * 100).toFixed(1)}%` : '–';
    const t = run.tests.at(-1);
    byId('st-test').textContent = t ? `${(t[1] * 100).toFixed(1)}%` : '–';
    byId('st-lr').textContent = run.adam.lr.toPrecision(3);
    byId('st-time').textContent = `${Math.round(run.trainMs / 1000)} s`;
    const now = performance.now();
    if (force || now - this.lastChart > 500) {
      this.lastChart = now;
      this.renderCharts();
    }
  }

  private renderCharts(): void {
    const shown = this.run ?? this.carry;
    const records = shown?.records ?? [];
    const tests = shown?.tests ?? [];
    const losses = records.map((r) => r.loss);
    const avg = smooth(losses, 10);
    const lossSeries: LiveSeries[] = [
      { name: 'each step', points: records.map((r, k) => [r.step, losses[k]]), color: '#c7cbe0', width: 1.5 },
      { name: 'moving average (10 steps)', points: records.map((r, k) => [r.step, avg[k]]), color: '#4f46e5', width: 2.5 },
    ];
    byId('chart-loss').innerHTML = liveChartSvg({ xLabel: 'step', yLabel: 'loss (log scale)', logY: true, series: lossSeries });
    byId('legend-loss').innerHTML = legendHtml(lossSeries);
    const acc = smooth(records.map((r) => r.accuracy), 20);
    const accSeries: LiveSeries[] = [
      { name: 'training batches (moving average)', points: records.map((r, k) => [r.step, acc[k] * 100]), color: '#4f46e5', width: 2.5 },
      { name: 'test images', points: tests.map(([st, a]) => [st, a * 100]), color: '#D55E00', dots: true },
    ];
    byId('chart-acc').innerHTML = liveChartSvg({ xLabel: 'step', yLabel: 'accuracy (%)', yRange: [0, 100], series: accSeries });
    byId('legend-acc').innerHTML = legendHtml(accSeries);
  }
}

/** Trailing moving average over up to `window` values. */
export function smooth(values: number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let k = 0; k < values.length; k++) {
    sum += values[k];
    if (k >= window) sum -= values[k - window];
    out.push(sum / Math.min(k + 1, window));
  }
  return out;
}
