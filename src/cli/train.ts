// `capsnet train`: the paper's recipe on MNIST (or any IDX folder), with a progress bar, a JSON-lines
// metrics log, checkpoints every N steps and at the end, exact resume (also after Ctrl-C or a
// kill), and a stop with the step and layer when a NaN appears (keeping the last good checkpoint).

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireGpu } from '../gpu/node.ts';
import { CapsNet } from '../model/capsnet.ts';
import { makeConfig, parameterCount, type CapsNetConfig } from '../model/config.ts';
import { Adam } from '../optim/adam.ts';
import { staircaseDecay } from '../optim/schedule.ts';
import { TrainingBatches } from '../train/batches.ts';
import { Trainer, NonFiniteError, evaluate, type StepRecord } from '../train/trainer.ts';
import { loadMnist } from '../io/idx-file.ts';
import { type Dataset, splitValidation, subset, fillBatch } from '../data/dataset.ts';
import { saveCheckpoint, loadCheckpoint } from '../io/checkpoint-file.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { appendMetrics, truncateMetricsAfterStep } from '../io/metrics.ts';
import { ProgressBar, formatDuration } from './progress.ts';
import { UsageError, intFlag, numberFlag, parseFlags } from './args.ts';
import { resolveBackend } from '../gpu/node.ts';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const METRICS_FILE = 'metrics.jsonl';

/** Everything that defines a run; stored in the checkpoint so that --resume continues exactly. */
export interface RunOptions {
  seed: number;
  batchSize: number;
  lr: number;
  decayRate: number;
  decaySteps: number;
  maxShift: number;
  limit: number | null;
  validation: number;
  data: string | null;
  totalSteps: number;
}

export const TRAIN_FLAGS = {
  out: { type: 'string' },
  data: { type: 'string' },
  epochs: { type: 'string' },
  steps: { type: 'string' },
  limit: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  'decay-rate': { type: 'string' },
  'decay-steps': { type: 'string' },
  routings: { type: 'string' },
  'grad-mode': { type: 'string' },
  'no-recon': { type: 'boolean' },
  'recon-weight': { type: 'string' },
  shift: { type: 'string' },
  seed: { type: 'string' },
  validation: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'log-every': { type: 'string' },
  'eval-batch-size': { type: 'string' },
  'eval-limit': { type: 'string' },
  config: { type: 'string' },
  'no-eval': { type: 'boolean' },
  resume: { type: 'boolean' },
  backend: { type: 'string' },
} as const;

export interface TrainResult {
  outDir: string;
  stepsDone: number;
  totalSteps: number;
  stopped: boolean;
  seconds: number;
  testAccuracy: number | null;
  adapter: string;
  config: CapsNetConfig;
}

function loadData(dataDir: string | null): { train: Dataset; test: Dataset } {
  try {
    return loadMnist(dataDir ?? undefined);
  } catch (error) {
    throw new UsageError(`capsnet train: ${(error as Error).message}`);
  }
}

export async function trainCommand(argv: string[]): Promise<number> {
  const result = await train(argv);
  return result.stopped ? 130 : 0;
}

export async function train(argv: string[], defaults: Partial<Record<keyof typeof TRAIN_FLAGS, string>> = {}): Promise<TrainResult> {
  const { values: given } = parseFlags('train', argv, TRAIN_FLAGS);
  const flags: Record<string, string | boolean | undefined> = { ...defaults, ...given };
  const outDir = flags.out as string | undefined;
  if (!outDir) throw new UsageError('capsnet train: --out DIR is required (the folder for checkpoints, metrics and figures)');
  if (flags.epochs !== undefined && flags.steps !== undefined && given.epochs !== undefined && given.steps !== undefined) {
    throw new UsageError('capsnet train: give --epochs or --steps, not both');
  }
  const backend = flags.backend === undefined ? undefined : resolveBackend(flags.backend as string);
  const checkpointPath = join(outDir, CHECKPOINT_FILE);
  const metricsPath = join(outDir, METRICS_FILE);
  const resume = given.resume ?? false;
  if (resume && !existsSync(checkpointPath)) throw new UsageError(`capsnet train --resume: no ${CHECKPOINT_FILE} in ${outDir}`);
  if (!resume && existsSync(checkpointPath)) {
    throw new UsageError(`capsnet train: ${outDir} already holds a run (${CHECKPOINT_FILE}); add --resume to continue it, or choose another --out`);
  }

  // Validate every flag before touching the GPU or the disk.
  const previous: Checkpoint | null = resume ? await loadCheckpoint(checkpointPath) : null;
  const stored = (previous?.training?.options ?? null) as RunOptions | null;
  if (resume && !stored) throw new UsageError(`capsnet train --resume: ${checkpointPath} has no training state (not written by capsnet train)`);
  const pick = <T>(flag: string, parse: (v: string | undefined) => T, storedValue: T | undefined): T => {
    const explicit = given[flag as keyof typeof given];
    if (stored && explicit !== undefined && parse(explicit as string) !== storedValue) {
      throw new UsageError(`capsnet train --resume: --${flag} ${explicit} differs from the run's ${storedValue}; start a new run to change it`);
    }
    return stored && storedValue !== undefined ? storedValue : parse(flags[flag] as string | undefined);
  };
  const seed = pick('seed', (v) => intFlag(v, '--seed', 1, 0), stored?.seed);
  const batchSize = pick('batch-size', (v) => intFlag(v, '--batch-size', 128), stored?.batchSize);
  const lr = pick('lr', (v) => numberFlag(v, '--lr', 1e-3, (n) => n > 0, 'a learning rate > 0'), stored?.lr);
  const decayRate = pick('decay-rate', (v) => numberFlag(v, '--decay-rate', 0.96, (n) => n > 0 && n <= 1, 'a number in (0, 1]'), stored?.decayRate);
  const decaySteps = pick('decay-steps', (v) => intFlag(v, '--decay-steps', 2000), stored?.decaySteps);
  const maxShift = pick('shift', (v) => intFlag(v, '--shift', 2, 0), stored?.maxShift);
  const limit = pick('limit', (v) => (v === undefined ? null : intFlag(v, '--limit', 0)), stored?.limit ?? null);
  const validation = pick('validation', (v) => intFlag(v, '--validation', 0, 0), stored?.validation);
  const dataDir = pick('data', (v) => v ?? null, stored?.data ?? null);
  const checkpointEvery = intFlag(flags['checkpoint-every'] as string | undefined, '--checkpoint-every', 500);
  const logEvery = intFlag(flags['log-every'] as string | undefined, '--log-every', 10);
  const evalBatch = intFlag(flags['eval-batch-size'] as string | undefined, '--eval-batch-size', 100);
  const evalLimit = flags['eval-limit'] === undefined ? null : intFlag(flags['eval-limit'] as string, '--eval-limit', 1);
  const modelOverrides = parseConfigFlag(flags.config as string | undefined);
  const routings = flags.routings === undefined ? undefined : intFlag(flags.routings as string, '--routings', 3);
  const gradMode = flags['grad-mode'];
  if (gradMode !== undefined && gradMode !== 'all' && gradMode !== 'last') throw new UsageError(`--grad-mode: expected 'all' or 'last', got '${gradMode}'`);
  const reconWeight = flags['no-recon'] ? 0 : numberFlag(flags['recon-weight'] as string | undefined, '--recon-weight', 0.0005, (n) => n >= 0, 'a weight >= 0');
  if (resume && (given.routings !== undefined || given['grad-mode'] !== undefined || given['no-recon'] || given['recon-weight'] !== undefined || given.config !== undefined)) {
    throw new UsageError('capsnet train --resume: the model config comes from the checkpoint; --config, --routings, --grad-mode, --no-recon and --recon-weight cannot change it');
  }

  let { train: trainSet, test: testSet } = loadData(dataDir);
  if (limit !== null) {
    if (limit > trainSet.count) throw new UsageError(`--limit: ${limit} is more than the ${trainSet.count} training images`);
    trainSet = subset(trainSet, limit);
  }
  let validationSet: Dataset | null = null;
  if (validation > 0) {
    if (validation >= trainSet.count) throw new UsageError(`--validation: ${validation} leaves no training images out of ${trainSet.count}`);
    const split = splitValidation(trainSet, validation);
    trainSet = split.train;
    validationSet = split.validation;
  }
  if (batchSize > trainSet.count) throw new UsageError(`--batch-size: ${batchSize} is more than the ${trainSet.count} training images`);
  const stepsPerEpoch = Math.floor(trainSet.count / batchSize);
  let totalSteps: number;
  if (given.steps !== undefined || (flags.steps !== undefined && given.epochs === undefined)) totalSteps = intFlag(flags.steps as string, '--steps', 1);
  else if (flags.epochs !== undefined) totalSteps = Math.round(numberFlag(flags.epochs as string, '--epochs', 1, (n) => n > 0, 'a number of epochs > 0') * stepsPerEpoch);
  else totalSteps = stored?.totalSteps ?? stepsPerEpoch;
  totalSteps = Math.max(1, totalSteps);
  if (previous && previous.step > totalSteps) throw new UsageError(`capsnet train --resume: the run already did ${previous.step} steps, more than the ${totalSteps} asked`);

  const config = previous
    ? previous.config
    : makeModelConfig({
      inputChannels: trainSet.channels,
      inputSize: trainSet.height,
      ...modelOverrides,
      ...(routings !== undefined ? { routings } : {}),
      ...(gradMode !== undefined ? { gradMode: gradMode as 'all' | 'last' } : {}),
      decoder: reconWeight > 0,
      reconWeight: reconWeight > 0 ? reconWeight : 0.0005,
    });
  if (trainSet.height !== trainSet.width || trainSet.height !== config.inputSize || trainSet.channels !== config.inputChannels) {
    throw new UsageError(`capsnet train: the data's images are ${trainSet.channels}x${trainSet.height}x${trainSet.width}, the model expects ${config.inputChannels}x${config.inputSize}x${config.inputSize}`);
  }
  const options: RunOptions = { seed, batchSize, lr, decayRate, decaySteps, maxShift, limit, validation, data: dataDir, totalSteps };

  mkdirSync(outDir, { recursive: true });
  const ctx = await acquireGpu({ backend });
  const started = performance.now();
  let stopRequested = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopRequested) {
      process.stderr.write(`\ncapsnet train: ${signal} again: exiting now (the last checkpoint is intact)\n`);
      process.exit(130);
    }
    stopRequested = true;
    process.stderr.write(`\ncapsnet train: ${signal}: finishing this step and saving a checkpoint (press again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const model = previous ? new CapsNet(ctx, config, previous.params) : CapsNet.create(ctx, config, seed);
    const adam = new Adam(ctx, { lr: staircaseDecay({ lr0: lr, decayRate, decaySteps }) });
    if (previous?.optimizer) adam.importState(previous.optimizer, model.parameterList());
    const startStep = previous?.step ?? 0;
    if (previous) {
      if (adam.stepCount !== startStep) throw new Error(`${checkpointPath}: Adam's step ${adam.stepCount} differs from the run's step ${startStep}`);
      await truncateMetricsAfterStep(metricsPath, startStep);
    }
    const batches = new TrainingBatches(trainSet, batchSize, seed, maxShift);
    const trainer = new Trainer(ctx, model, adam, batches, logEvery);
    const adapter = ctx.adapter.name;
    process.stderr.write(
      `capsnet train: ${parameterCount(config).toLocaleString('en-US')} parameters on ${adapter}; ${trainSet.count} training images, ` +
        `batch ${batchSize}, ${stepsPerEpoch} steps per epoch, steps ${startStep + 1}..${totalSteps}${previous ? ' (resumed)' : ''}\n`,
    );
    await appendMetrics(metricsPath, { type: 'start', step: startStep, time: new Date().toISOString(), adapter, options, config });

    const save = async (stepsDone: number) => {
      const params = await model.exportParams();
      const optimizer = await adam.exportState();
      await saveCheckpoint(checkpointPath, { config, params, optimizer, step: stepsDone, training: { options } });
    };
    const bar = new ProgressBar({ total: (totalSteps - startStep) * batchSize, label: 'train', unit: 'img' });
    let last: StepRecord | null = null;
    let window: StepRecord[] = [];
    let stepsDone = startStep;
    try {
      stepsDone = await trainer.run(startStep, totalSteps, {
        onStep: (done) => bar.update((done - startStep) * batchSize, fieldsOf(last, window)),
        onRecords: async (records) => {
          const elapsed = (performance.now() - started) / 1000;
          for (const r of records) {
            await appendMetrics(metricsPath, { type: 'train', ...r, epoch: r.step / stepsPerEpoch, seconds: elapsed });
          }
          last = records.at(-1) ?? last;
          window = [...window, ...records].slice(-50);
        },
        checkpointDue: (done) => done % checkpointEvery === 0 || done === totalSteps,
        onCheckpoint: save,
        shouldStop: () => stopRequested,
      });
    } catch (error) {
      bar.finish();
      if (error instanceof NonFiniteError) {
        await appendMetrics(metricsPath, { type: 'error', step: error.step + 1, message: error.message });
        throw new Error(`${error.message}\nThe checkpoint in ${checkpointPath} is from before that step.`);
      }
      throw error;
    }
    bar.finish(fieldsOf(last, window));
    trainer.dispose();

    let testAccuracy: number | null = null;
    if (!stopRequested && !flags['no-eval']) {
      const sets: Array<[string, Dataset]> = validationSet ? [['validation', validationSet], ['test', testSet]] : [['test', testSet]];
      for (const [split, full] of sets) {
        const ds = evalLimit !== null && evalLimit < full.count ? subset(full, evalLimit) : full;
        const result = await evaluateDataset(model, ds, Math.min(evalBatch, ds.count), split);
        if (split === 'test') testAccuracy = result.accuracy;
        await appendMetrics(metricsPath, { type: 'eval', step: stepsDone, split, accuracy: result.accuracy, error: 1 - result.accuracy, count: result.count });
        process.stderr.write(`capsnet train: ${split} accuracy ${(100 * result.accuracy).toFixed(2)}% (${result.count - result.correct} errors of ${result.count})\n`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(`capsnet train: ${stepsDone} of ${totalSteps} steps in ${formatDuration(seconds)}; checkpoint ${checkpointPath}, metrics ${metricsPath}\n`);
    adam.dispose();
    model.dispose();
    return { outDir, stepsDone, totalSteps, stopped: stopRequested, seconds, testAccuracy, adapter, config };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    ctx.destroy();
  }
}

/** --config: model config fields as JSON, inline or in a file (e.g. '{"routings": 1, "primaryTypes": 16}'). */
function parseConfigFlag(value: string | undefined): Partial<CapsNetConfig> {
  if (value === undefined) return {};
  let text = value;
  if (!value.trimStart().startsWith('{')) {
    try {
      text = readFileSync(value, 'utf8');
    } catch (error) {
      throw new UsageError(`--config: cannot read ${value}: ${(error as Error).message}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--config: not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('--config: expected a JSON object of model config fields');
  const known = new Set(Object.keys(makeConfig()));
  for (const key of Object.keys(parsed)) if (!known.has(key)) throw new UsageError(`--config: unknown field '${key}' (known: ${[...known].join(', ')})`);
  return parsed as Partial<CapsNetConfig>;
}

function makeModelConfig(fields: Partial<CapsNetConfig>): CapsNetConfig {
  try {
    return makeConfig(fields, '--config');
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function fieldsOf(last: StepRecord | null, window: StepRecord[]): Record<string, string | number> {
  if (!last) return {};
  const acc = window.reduce((s, r) => s + r.accuracy, 0) / Math.max(1, window.length);
  return { loss: last.loss.toFixed(4), acc: `${(100 * acc).toFixed(1)}%` };
}

/** Test accuracy of a model on a data set, with a progress bar. */
export async function evaluateDataset(model: CapsNet, ds: Dataset, batchSize: number, label: string) {
  const bar = new ProgressBar({ total: ds.count, label, unit: 'img' });
  const order = Uint32Array.from({ length: ds.count }, (_, i) => i);
  const result = await evaluate(model, ds.count, batchSize, (start, images, labels) => fillBatch(ds, order, start, images, labels), (done) => bar.update(done));
  bar.finish({ accuracy: `${(100 * result.accuracy).toFixed(2)}%` });
  return result;
}

