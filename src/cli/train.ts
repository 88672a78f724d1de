// `capsnet train`: the paper's recipe on MNIST (or any IDX folder), for CapsNet or the paper's
// baseline CNN (--model baseline), with a progress bar, a JSON-lines metrics log, checkpoints every
// N steps and at the end, and exact resume (also after Ctrl-C or a kill).
// What can go wrong, and what the user then has:
// - NaN or infinity in a step (--on-nonfinite stop|skip): stop with the step and the layer, or skip
//   the step (its update is never applied) and log it; the last good checkpoint is kept either way.
// - A batch too large for the adapter: refused before anything runs, with the largest that fits.
// - A lost GPU device or a WebGPU validation error mid-run: a message saying what happened and the
//   exact command that continues; nothing is written from the GPU after the failure, so the last
//   checkpoint on disk (written atomically, after its steps were checked) stays the last good state.

import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { acquireGpu } from '../gpu/node.ts';
import type { GpuContext } from '../gpu/context.ts';
import { GpuDeviceLostError, GpuOutOfMemoryError, GpuValidationError } from '../gpu/errors.ts';
import { makeConfig, parameterCount, presetConfig, type CapsNetConfig } from '../model/config.ts';
import { baselineParameterCount, makeBaselineConfig, type BaselineConfig } from '../model/baseline-config.ts';
import { Adam } from '../optim/adam.ts';
import { ParameterEma, type EmaState } from '../optim/ema.ts';
import { staircaseDecay } from '../optim/schedule.ts';
import { Trainer, NonFiniteError, type StepRecord, type NonFinitePolicy, type StartupReport } from '../train/trainer.ts';
import { faultHooks, parseFaults, type Fault } from '../train/faults.ts';
import { formatBytes, type ModelSpec } from '../train/memory.ts';
import { type Dataset, splitValidation, subset } from '../data/dataset.ts';
import { type ExperimentName, buildModel, checkBatchFits, experimentLrMult, inputMismatch, specOf, defaultShift, experimentBatches, experimentAugment, experimentCanvas, maxShiftLimit, experimentEvalSets, loadExperimentData, parseExperiment } from './experiments.ts';
import { MAX_CHECKPOINT_FILE_BYTES, saveCheckpoint, loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import { MODEL_KINDS, modelParameterShapes, type AnyCheckpoint, type ModelKind } from '../io/checkpoint.ts';
import { appendMetrics, readMetrics, truncateMetricsAfterStep } from '../io/metrics.ts';
import { FolderLockedError, acquireFolderLock, removeStaleTempFiles, removeStaleTempFilesIn, writeFileAtomic } from '../io/files.ts';
import { readRegularFile } from '../io/idx-file.ts';
import { ProgressBar, formatDuration } from './progress.ts';
import { UsageError, backendFlag, choiceFlag, intFlag, numberFlag, parseFlags, outputDirFlag, pathFlag, quoteFlag } from './args.ts';
import { clip } from '../io/safetensors.ts';
import { type RunOptions, checkLrMultNames, checkStoredOptions, formatLrMult, parseLrMult, ruleFlag, VALIDATION_SPLITS } from './run-options.ts';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const METRICS_FILE = 'metrics.jsonl';
/** --ema: the moving average of the parameters as a model of its own (eval, figures, --init-from, export take it). */
export const EMA_FILE = 'ema.safetensors';
/** The run folder's lock (acquireFolderLock in src/io/files.ts): one training of a run at a time. */
export const RUN_LOCK_FILE = '.capsnet-train.lock';

export type { RunOptions } from './run-options.ts';

export const TRAIN_FLAGS = {
  out: { type: 'string' },
  model: { type: 'string' },
  experiment: { type: 'string' },
  'test-seed': { type: 'string' },
  data: { type: 'string' },
  epochs: { type: 'string' },
  steps: { type: 'string' },
  limit: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  'lr-mult': { type: 'string' },
  'decay-rate': { type: 'string' },
  'decay-steps': { type: 'string' },
  routings: { type: 'string' },
  'grad-mode': { type: 'string' },
  'no-recon': { type: 'boolean' },
  'recon-weight': { type: 'string' },
  shift: { type: 'string' },
  seed: { type: 'string' },
  validation: { type: 'string' },
  'validation-split': { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'keep-every': { type: 'string' },
  'log-every': { type: 'string' },
  'eval-batch-size': { type: 'string' },
  'eval-limit': { type: 'string' },
  config: { type: 'string' },
  'no-eval': { type: 'boolean' },
  'stop-at-accuracy': { type: 'string' },
  ema: { type: 'string' },
  resume: { type: 'boolean' },
  'init-from': { type: 'string' },
  'start-step': { type: 'string' },
  'moment-steps': { type: 'string' },
  'on-nonfinite': { type: 'string' },
  'max-skips': { type: 'string' },
  'inject-fault': { type: 'string' },
  backend: { type: 'string' },
} as const;

export interface TrainResult {
  outDir: string;
  model: ModelKind;
  stepsDone: number;
  totalSteps: number;
  stopped: boolean;
  seconds: number;
  testAccuracy: number | null;
  /** --ema: the moving average's test accuracy (null when not evaluated). */
  emaTestAccuracy: number | null;
  adapter: string;
  config: CapsNetConfig | BaselineConfig;
}

/**
 * A run that stopped on a failure the user can act on (a NaN, a lost device, a WebGPU error): the
 * message says what happened and what to do; main prints it without a stack trace (exit code 1).
 */
export class TrainingStoppedError extends Error {
  override name = 'TrainingStoppedError';
}

/** Part of the machine's memory a software adapter (whose GPU memory is the machine's RAM) may plan to use. */
const SOFTWARE_MEMORY_FRACTION = 0.75;

export async function trainCommand(argv: string[]): Promise<number> {
  const result = await train(argv);
  return result.stopped ? 130 : 0;
}

export async function train(argv: string[], defaults: Partial<Record<keyof typeof TRAIN_FLAGS, string>> = {}): Promise<TrainResult> {
  const { values: given } = parseFlags('train', argv, TRAIN_FLAGS);
  const flags: Record<string, string | boolean | undefined> = { ...defaults, ...given };
  // (Checked as a folder once every other flag has been, below, before the GPU is acquired.)
  const outDir = pathFlag(flags.out as string | undefined, '--out');
  if (!outDir) throw new UsageError('capsnet train: --out DIR is required (the folder for checkpoints, metrics and figures)');
  if (flags.epochs !== undefined && flags.steps !== undefined && given.epochs !== undefined && given.steps !== undefined) {
    throw new UsageError('capsnet train: give --epochs or --steps, not both');
  }
  const backend = backendFlag(flags.backend as string | undefined);
  const checkpointPath = join(outDir, CHECKPOINT_FILE);
  const metricsPath = join(outDir, METRICS_FILE);
  const resume = given.resume ?? false;
  if (resume && !existsSync(checkpointPath)) throw new UsageError(`capsnet train --resume: no ${CHECKPOINT_FILE} in ${outDir}`);
  if (!resume && existsSync(checkpointPath)) {
    throw new UsageError(`capsnet train: ${outDir} already holds a run (${CHECKPOINT_FILE}); add --resume to continue it, or choose another --out`);
  }

  // Validate every flag before touching the GPU or the disk.
  let previous: AnyCheckpoint | null = null;
  if (resume) {
    try {
      previous = await loadAnyCheckpoint(checkpointPath);
    } catch (error) {
      throw new UsageError(`capsnet train --resume: ${(error as Error).message}`);
    }
  }
  // --init-from: a new run from another checkpoint's parameters (any layout, F16 too), for a run
  // whose optimizer state is lost (a shipped model) or to fine-tune: see Trainer.estimateAdamMoments.
  const initFromPath = pathFlag(flags['init-from'] as string | undefined, '--init-from') ?? null;
  let init: AnyCheckpoint | null = null;
  if (initFromPath !== null) {
    if (resume) throw new UsageError("capsnet train: --init-from starts a new run from a checkpoint's parameters and --resume continues this folder's run; give one of them");
    try {
      init = await loadAnyCheckpoint(initFromPath);
    } catch (error) {
      throw new UsageError(`capsnet train --init-from: ${(error as Error).message}`);
    }
  }
  for (const flag of ['start-step', 'moment-steps'] as const) {
    if (given[flag] !== undefined && !init) throw new UsageError(`capsnet train: --${flag} goes with --init-from`);
  }
  const initStep = init ? intFlag(given['start-step'], '--start-step', init.step, 0) : 0;
  // The file's own Adam state, when it is for the step the run starts at (a `capsnet train`
  // checkpoint): the new run then continues exactly, as --resume would, in another folder.
  const initOptimizer = init?.optimizer && init.optimizer.step === initStep ? init.optimizer : null;
  const estimateMoments = init !== null && initStep > 0 && !initOptimizer;
  if (init && given['moment-steps'] !== undefined && !estimateMoments) {
    throw new UsageError(
      `capsnet train --moment-steps: nothing to estimate: ${initOptimizer ? `${initFromPath} holds Adam's state for step ${initStep}, which the run uses` : "the run starts at step 0, where Adam's moments are zero"}`,
    );
  }
  const momentSteps = intFlag(flags['moment-steps'] as string | undefined, '--moment-steps', 50);
  if (previous && previous.training?.options === undefined) throw new UsageError(`capsnet train --resume: ${checkpointPath} has no training state (not written by capsnet train)`);
  // Checked like the flags: a hand-edited checkpoint must not reach the trainer with batchSize "abc".
  const stored = previous ? (checkStoredOptions(previous.training?.options, checkpointPath, 'capsnet train --resume') as RunOptions) : null;
  if (previous && !previous.optimizer) {
    throw new UsageError(`capsnet train --resume: ${checkpointPath} has no Adam state (a model-only file, e.g. from capsnet average or an export), so the run cannot continue exactly; start a new run from it with --init-from ${checkpointPath}`);
  }
  // --init-from a checkpoint of `capsnet train`: its recipe (seed, batch, data, schedule...) is the
  // default, so that the run goes on as the one that made it; flags given change it.
  const inherited = init?.training?.options !== undefined ? (checkStoredOptions(init.training.options, initFromPath!, 'capsnet train --init-from') as Partial<RunOptions>) : null;
  const source = stored ?? inherited;
  const pick = <T>(flag: string, parse: (v: string | undefined) => T, storedValue: T | undefined): T => {
    const explicit = given[flag as keyof typeof given];
    if (stored && explicit !== undefined && parse(explicit as string) !== storedValue) {
      throw new UsageError(`capsnet train --resume: --${flag} ${clip(String(explicit))} differs from the run's ${clip(String(storedValue))}; start a new run to change it`);
    }
    if (!stored && explicit !== undefined) return parse(explicit as string);
    return source && storedValue !== undefined ? storedValue : parse(flags[flag] as string | undefined);
  };
  // A setting that is not the recipe (how the run scores, stops, averages): a resumed run keeps its
  // own unless the flag is given again (a new value replaces it, `off` drops it); --init-from does
  // not inherit it.
  const keptSetting = (name: 'evalLimit' | 'stopAtAccuracy' | 'ema', value: string | undefined): number | null =>
    value === 'off' ? null : value !== undefined ? ruleFlag(name, value, 0) : stored?.[name] ?? null;
  let modelKind = pick('model', parseModelFlag, previous ? (previous.model ?? 'capsnet') : undefined);
  if (init) {
    const initKind = init.model ?? 'capsnet';
    if (given.model !== undefined && modelKind !== initKind) throw new UsageError(`capsnet train --init-from: ${initFromPath} holds a ${initKind} model, not --model ${modelKind}`);
    modelKind = initKind;
  }
  const experiment = pick('experiment', parseExperiment, source ? (source.experiment ?? 'mnist') : undefined);
  if (experiment === 'multimnist' && modelKind === 'baseline') {
    throw new UsageError('capsnet train --experiment multimnist: trains CapsNet only (two-hot margin targets); --model baseline is not supported there');
  }
  const testSeed = pick('test-seed', (v) => ruleFlag('testSeed', v, 1), source ? (source.testSeed ?? 1) : undefined);
  const seed = pick('seed', (v) => ruleFlag('seed', v, 1), source?.seed);
  const batchSize = pick('batch-size', (v) => ruleFlag('batchSize', v, 128), source?.batchSize);
  const lr = pick('lr', (v) => ruleFlag('lr', v, 1e-3), source?.lr);
  const decayRate = pick('decay-rate', (v) => ruleFlag('decayRate', v, 0.96), source?.decayRate);
  const decaySteps = pick('decay-steps', (v) => ruleFlag('decaySteps', v, 2000), source?.decaySteps);
  // Per-parameter learning-rate multipliers (Adam's lrMult), part of the recipe like --lr: compared
  // and kept by --resume in their canonical flag text ('off': none); a new run without the flag
  // gets the experiment's (affnist: experimentLrMult), a resumed one keeps what it stored.
  // null: the experiment's, once the model (its primaryTypes) is known.
  const lrMultText = pick('lr-mult', (v) => (v === undefined ? null : formatLrMult(parseLrMult(v))), source ? formatLrMult(source.lrMult) : undefined);
  // An inherited shift is for the inherited experiment only.
  const maxShift = pick('shift', (v) => ruleFlag('maxShift', v, defaultShift(experiment)), stored || (source?.experiment ?? 'mnist') === experiment ? source?.maxShift : undefined);
  // A resumed run keeps the distortions it started with (none if it stored none), so its batches
  // stay the same even if the experiment's default changed since; so does a run from one of the same experiment.
  const augment = (stored ? stored.dataOptions?.augment
    : inherited && (inherited.experiment ?? 'mnist') === experiment ? inherited.dataOptions?.augment
    : experimentAugment(experiment)) ?? null;
  const limit = pick('limit', (v) => (v === undefined ? null : ruleFlag('limit', v, 0)), source?.limit ?? null);
  const validation = pick('validation', (v) => ruleFlag('validation', v, 0), source?.validation);
  // Which images --validation holds out: the last N (the default, so that runs before the flag
  // resume on the same split) or N drawn at random (the last ones need not look like the test set:
  // on MNIST they score several points above it), the same N for every run whatever its --seed, so
  // that runs compared on it (CapsNet and the baseline, seeds of an ensemble) share it.
  const splitAsked = pick('validation-split', (v) => choiceFlag(v, '--validation-split', VALIDATION_SPLITS, 'last'), source ? (source.validationSplit ?? 'last') : undefined);
  if (splitAsked === 'random' && validation === 0 && given['validation-split'] !== undefined) {
    throw new UsageError('capsnet train --validation-split random: holds out nothing without --validation N');
  }
  // A split inherited by a run that holds out nothing (--init-from with --validation 0) is dropped.
  const validationSplit = validation > 0 ? splitAsked : 'last';
  // Stored absolute: a run resumed, evaluated or drawn from another folder finds the same data.
  const dataDir = pick('data', (v) => absolutePath(pathFlag(v, '--data')), absolutePath(source?.data ?? undefined));
  // How the run saves (not its recipe): kept by --resume unless given again, like --ema.
  const checkpointEvery = given['checkpoint-every'] !== undefined ? ruleFlag('checkpointEvery', given['checkpoint-every'] as string, 500) : stored?.checkpointEvery ?? 500;
  // Copies of the checkpoint kept at these steps (checkpoint-stepN.safetensors): material for
  // `capsnet average` and for going back. 'epoch': every epoch's end (resolved once the data is
  // read); 'off' (on a resume): no more copies.
  const keepFlag = given['keep-every'] as string | undefined;
  const keepEveryFlag = keepFlag === undefined ? stored?.keepEvery ?? null : keepFlag === 'off' ? null : keepFlag === 'epoch' ? 'epoch' : keepStepsFlag(keepFlag);
  const logEvery = intFlag(flags['log-every'] as string | undefined, '--log-every', 10);
  const evalBatch = intFlag(flags['eval-batch-size'] as string | undefined, '--eval-batch-size', 100);
  // How the run scores (not its recipe): kept by --resume like --stop-at-accuracy, whose set it
  // caps (a resumed run must not stop on other images); a new value replaces it, `off` scores all.
  const evalLimit = keptSetting('evalLimit', flags['eval-limit'] as string | undefined);
  // Train to a given accuracy rather than for a budget (the paper compares CapsNet and the baseline
  // CNN on affNIST at equal MNIST accuracy): the first eval set is scored at every checkpoint.
  // Like --steps, a stopping rule rather than the recipe: --resume keeps the run's own unless given
  // again (a new value replaces it, `off` drops it); --init-from does not inherit it.
  const stopFlag = flags['stop-at-accuracy'] as string | undefined;
  const stopAtAccuracy = keptSetting('stopAtAccuracy', stopFlag);
  if (stopAtAccuracy !== null && flags['no-eval']) {
    throw new UsageError(`capsnet train: ${stopFlag !== undefined ? '--stop-at-accuracy' : `the run's --stop-at-accuracy ${stopAtAccuracy} (kept by --resume; --stop-at-accuracy off drops it)`} evaluates at every checkpoint; it cannot go with --no-eval`);
  }
  if (previous && stopAtAccuracy !== null) {
    // A run that stopped on reaching its target is finished at that target (the equal-accuracy
    // comparison depends on where it stopped): going on needs a higher target, or none.
    const records = existsSync(metricsPath) ? (await readMetrics(metricsPath)).records : [];
    const reached = records.find((r) => r.type === 'eval' && r.during === true && r.step === previous!.step
      && typeof r.accuracy === 'number' && typeof r.count === 'number' && reachesAccuracy(Math.round(r.accuracy * r.count), r.count, stopAtAccuracy));
    if (reached) {
      throw new UsageError(
        `capsnet train --resume: ${outDir} stopped at step ${previous.step}, where its ${String(reached.split)} accuracy ${(100 * (reached.accuracy as number)).toFixed(2)}% ` +
          `reached --stop-at-accuracy ${stopAtAccuracy}; to train on, give a higher --stop-at-accuracy, or --stop-at-accuracy off for the whole budget ` +
          `(to score it: capsnet eval --checkpoint ${checkpointPath})`,
      );
    }
  }
  // A moving average of the parameters (src/optim/ema.ts), kept in the checkpoint (ema.<name>) and
  // written as DIR/ema.safetensors at every checkpoint; evaluated after the run beside the weights.
  // Kept by --resume like --stop-at-accuracy (a new decay replaces the run's from then on, `off`
  // drops the average); --init-from does not inherit it.
  const emaDecay = keptSetting('ema', flags.ema as string | undefined);
  const onNonFinite: NonFinitePolicy = choiceFlag(flags['on-nonfinite'] as string | undefined, '--on-nonfinite', ['stop', 'skip'], 'stop');
  if (given['max-skips'] !== undefined && onNonFinite !== 'skip') throw new UsageError('capsnet train: --max-skips N applies with --on-nonfinite skip (the default, stop, stops at the first non-finite step)');
  const maxSkips = intFlag(flags['max-skips'] as string | undefined, '--max-skips', 10);
  let faults: Fault[] = [];
  if (flags['inject-fault'] !== undefined) {
    try {
      const spec = flags['inject-fault'] as string;
      // parseFaults quotes the part it refuses whole: a part longer than 80 characters is refused here, quoted clipped.
      const long = spec.split(',').find((part) => part.length > 80);
      if (long !== undefined) throw new Error(`--inject-fault: expected KIND@STEP or nan-param:NAME@STEP, got ${quoteFlag(long)}`);
      faults = parseFaults(spec);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const modelOverrides = parseConfigFlag(flags.config as string | undefined, modelKind);
  const routings = flags.routings === undefined ? undefined : intFlag(flags.routings as string, '--routings', 3);
  const gradMode = flags['grad-mode'] === undefined ? undefined : choiceFlag(flags['grad-mode'] as string, '--grad-mode', ['all', 'last'], 'all');
  if (given['no-recon'] !== undefined && given['recon-weight'] !== undefined) throw new UsageError('capsnet train: give --no-recon or --recon-weight X, not both');
  const reconWeight = flags['no-recon'] ? 0 : numberFlag(flags['recon-weight'] as string | undefined, '--recon-weight', 0.0005, (n) => n >= 0, 'a weight >= 0');
  const capsuleFlags = ['routings', 'grad-mode', 'no-recon', 'recon-weight'].filter((f) => given[f as keyof typeof given] !== undefined);
  if (modelKind === 'baseline' && capsuleFlags.length > 0) {
    throw new UsageError(`capsnet train --model baseline: ${capsuleFlags.map((f) => `--${f}`).join(', ')} only apply to CapsNet (the baseline CNN's fields go in --config)`);
  }
  if ((resume || init) && (capsuleFlags.length > 0 || given.config !== undefined)) {
    throw new UsageError(`capsnet train ${resume ? '--resume' : '--init-from'}: the model config comes from the checkpoint; --config, --routings, --grad-mode, --no-recon and --recon-weight cannot change it`);
  }

  let { train: trainSet, test: testSet } = loadExperimentData(experiment, dataDir, 'capsnet train');
  const imageSide = trainSet.height;
  const canvas = experimentCanvas(experiment, imageSide);
  // New runs only: a resumed run keeps the shift it started with.
  if (!stored && given.shift !== undefined && maxShift > maxShiftLimit(experiment, imageSide)) {
    throw new UsageError(
      `--shift: ${maxShift} pixels is more than ${experiment}'s ${maxShiftLimit(experiment, imageSide)} ` +
        (experiment === 'cifar10'
          ? `(the ${canvas}x${canvas} crops must stay inside the ${imageSide}x${imageSide} images)`
          : `(further shifts push the ${imageSide}x${imageSide} images' content off the ${canvas}x${canvas} canvas)`),
    );
  }
  if (limit !== null) {
    if (limit > trainSet.count) throw new UsageError(`--limit: ${limit} is more than the ${trainSet.count} training images`);
    trainSet = subset(trainSet, limit);
  }
  let validationSet: Dataset | null = null;
  if (validation > 0) {
    if (validation >= trainSet.count) throw new UsageError(`--validation: ${validation} leaves no training images out of ${trainSet.count}`);
    const split = splitValidation(trainSet, validation, validationSplit === 'random' ? VALIDATION_SPLIT_SEED : undefined);
    trainSet = split.train;
    validationSet = split.validation;
  }
  if (batchSize > trainSet.count) throw new UsageError(`--batch-size: ${batchSize} is more than the ${trainSet.count} training images`);
  const stepsPerEpoch = Math.floor(trainSet.count / batchSize);
  const keepEvery = keepEveryFlag === 'epoch' ? stepsPerEpoch : keepEveryFlag;
  let totalSteps: number;
  if (given.steps !== undefined || (flags.steps !== undefined && given.epochs === undefined)) totalSteps = ruleFlag('totalSteps', flags.steps as string, 1);
  else if (flags.epochs !== undefined) totalSteps = Math.round(numberFlag(flags.epochs as string, '--epochs', 1, (n) => n > 0, 'a number of epochs > 0') * stepsPerEpoch);
  else totalSteps = stored?.totalSteps ?? (init ? initStep + stepsPerEpoch : stepsPerEpoch); // --init-from: one epoch more
  totalSteps = Math.max(1, totalSteps);
  if (previous && previous.step > totalSteps) throw new UsageError(`capsnet train --resume: the run already did ${previous.step} steps, more than the ${totalSteps} asked`);
  if (init && initStep >= totalSteps) {
    throw new UsageError(`capsnet train --init-from: the run would start at step ${initStep + 1} (${given['start-step'] !== undefined ? '--start-step' : `the step of ${initFromPath}`}), past the ${totalSteps} steps asked; give more --steps or --epochs, or --start-step 0`);
  }

  // Whom a refused model config blames: --config when given, else the config the flags and data made.
  const configBlame = given.config !== undefined ? ' --config: ' : ': the model config: ';
  const spec: ModelSpec = previous
    ? specOf(previous)
    : init ? specOf(init)
    : modelKind === 'baseline'
      ? { kind: 'baseline', config: validated(() => makeBaselineConfig({ inputChannels: trainSet.channels, inputSize: canvas, ...(modelOverrides as Partial<BaselineConfig>) }, given.config !== undefined ? '--config' : 'the baseline config'), configBlame) }
      : {
        kind: 'capsnet',
        // The experiment's preset (src/model/config.ts), sized to the data; the decoder as the
        // preset has it (cifar10: none) unless --no-recon or --recon-weight say otherwise.
        config: validated(() => presetConfig(experiment, {
          inputChannels: trainSet.channels,
          inputSize: canvas,
          ...(modelOverrides as Partial<CapsNetConfig>),
          ...(routings !== undefined ? { routings } : {}),
          ...(gradMode !== undefined ? { gradMode: gradMode as 'all' | 'last' } : {}),
          ...(given['no-recon'] !== undefined || given['recon-weight'] !== undefined || experiment !== 'cifar10'
            ? { decoder: reconWeight > 0, reconWeight: reconWeight > 0 ? reconWeight : 0.0005 }
            : {}),
        }), configBlame),
      };
  const config = spec.config;
  const lrMult = lrMultText === null ? experimentLrMult(experiment, spec) : parseLrMult(lrMultText);
  checkLrMultNames(lrMult, Object.keys(modelParameterShapes(spec.kind, spec.config)), `capsnet train --lr-mult${given['lr-mult'] === undefined && source?.lrMult ? ` (the run's ${formatLrMult(source.lrMult)})` : ''}`);
  if (trainSet.height !== trainSet.width || canvas !== config.inputSize || trainSet.channels !== config.inputChannels) {
    throw new UsageError(inputMismatch('capsnet train', experiment, trainSet, canvas, config));
  }
  const options: RunOptions = {
    model: spec.kind, seed, batchSize, lr, decayRate, decaySteps, maxShift, limit, validation, data: dataDir, totalSteps,
    ...(validationSplit === 'random' ? { validationSplit } : {}),
    experiment, dataOptions: { canvas, maxShift, ...(augment ? { augment } : {}) }, testSeed,
    ...(stopAtAccuracy !== null ? { stopAtAccuracy } : {}),
    ...(emaDecay !== null ? { ema: emaDecay } : {}),
    ...(lrMult ? { lrMult } : {}),
    checkpointEvery,
    ...(keepEveryFlag !== null ? { keepEvery: keepEveryFlag } : {}),
    ...(evalLimit !== null ? { evalLimit } : {}),
  };
  // None with --no-eval (which --stop-at-accuracy refuses): nothing to build or check.
  const evalSets = flags['no-eval'] ? [] : experimentEvalSets(experiment, validationSet ? [['validation', validationSet], ['test', testSet]] : [['test', testSet]], testSeed, maxShift, evalLimit, imageSide);

  outputDirFlag(outDir, '--out');
  const ctx = await acquireGpu({ backend });
  const started = performance.now();
  let stopRequested = false;
  let evaluating = false; // the final evaluation, after the last checkpoint
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopRequested) {
      process.stderr.write(`\ncapsnet train: ${signal} again: exiting now (the last checkpoint is intact)\n`);
      process.exit(130);
    }
    stopRequested = true;
    process.stderr.write(evaluating
      ? `\ncapsnet train: ${signal}: training is done and saved; the final evaluation finishes first (press again to quit at once)\n`
      : `\ncapsnet train: ${signal}: finishing this step and saving a checkpoint (press again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let runLock: { release(): void } | null = null;
  try {
    // The batch sizes against the adapter's limits, before anything is allocated or dispatched.
    const adapter = ctx.adapter.name;
    const parameters = spec.kind === 'baseline' ? baselineParameterCount(spec.config) : parameterCount(spec.config);
    // --ema: one more parameter-sized buffer for the whole run, beside the step's buffers that the
    // estimate lists (each within the binding limit, as the parameter it mirrors): it comes out of the budget.
    const emaBytes = emaDecay === null ? 0 : 4 * parameters;
    const budget = ctx.adapter.isSoftware
      ? {
        budgetBytes: SOFTWARE_MEMORY_FRACTION * totalmem() - emaBytes,
        budgetWhat: `${100 * SOFTWARE_MEMORY_FRACTION}% of this machine's memory (a software adapter's GPU memory is the machine's RAM)${emaBytes > 0 ? ` less the moving average's ${formatBytes(emaBytes)}` : ''}`,
      }
      : {};
    const estimate = checkBatchFits(ctx, spec, batchSize, 'train', '--batch-size', 'capsnet train', budget);
    // Each set is evaluated in batches of min(--eval-batch-size, its size): the batch the trainer
    // warms up (compiles) evaluation at, and the one the memory check tests.
    const largestEvalBatch = Math.max(1, ...evalSets.map((set) => Math.min(evalBatch, set.count)));
    if (!flags['no-eval']) {
      checkBatchFits(ctx, spec, largestEvalBatch, 'eval', '--eval-batch-size', 'capsnet train', budget);
    }
    // The batches refuse bad options (a usage error) before anything is written.
    let batches;
    try {
      batches = experimentBatches(experiment, trainSet, batchSize, seed, maxShift, augment);
    } catch (error) {
      throw new UsageError(`capsnet train --experiment ${experiment}: ${(error as Error).message}`);
    }
    mkdirSync(outDir, { recursive: true });
    // Two trainings of one run (a second terminal, npm start twice) would interleave their logs and
    // overwrite each other's checkpoints: the second is refused before it writes anything.
    try {
      runLock = acquireFolderLock(outDir, RUN_LOCK_FILE);
    } catch (error) {
      if (!(error instanceof FolderLockedError)) throw error;
      throw new UsageError(`capsnet train --out ${outDir}: in use by process ${error.owner}, another training of this run; wait for it to end or stop it (Ctrl-C there, or kill ${error.owner}), then run this again (if process ${error.owner} is not a capsnet train, delete ${error.lockPath})`);
    }
    // A process killed while writing a checkpoint (or rewriting the log) leaves its temporary file
    // behind: as large as a checkpoint, never read. Remove those of processes that are gone.
    // Kept copies (--keep-every) too, whether or not this run keeps any.
    const stale = [
      ...await removeStaleTempFiles(checkpointPath),
      ...await removeStaleTempFiles(metricsPath),
      ...await removeStaleTempFiles(join(outDir, EMA_FILE)),
      ...await removeStaleTempFilesIn(outDir, /checkpoint-step\d+\.safetensors/),
    ];
    for (const name of stale) process.stderr.write(`capsnet train: removed ${name}, left by a run killed while writing it\n`);
    if (!previous && existsSync(metricsPath)) {
      // A log without a checkpoint: an earlier attempt killed before its first checkpoint. Its steps
      // are done again from step 1, so its records would be logged twice: start the log anew.
      process.stderr.write(`capsnet train: ${metricsPath} is from an earlier attempt that saved no checkpoint; starting it anew\n`);
      await writeFileAtomic(metricsPath, new Uint8Array(0));
    }

    const model = buildModel(ctx, spec, previous ? { params: previous.params } : init ? { params: init.params } : { seed });
    const adam = new Adam(ctx, { lr: staircaseDecay({ lr0: lr, decayRate, decaySteps }), ...(lrMult ? { lrMult } : {}) });
    if (previous?.optimizer) adam.importState(previous.optimizer, model.parameterList());
    else if (initOptimizer) adam.importState(initOptimizer, model.parameterList());
    const startStep = previous?.step ?? initStep;
    // Where the parameters came from, kept in every checkpoint of the run (a resume carries it on).
    const initFrom = init
      ? { file: resolve(initFromPath!), step: init.step, startStep, adam: initOptimizer ? 'from the file' : estimateMoments ? `estimated from ${momentSteps} batches` : 'fresh (step 0)' }
      : (previous?.training as { initFrom?: unknown } | undefined)?.initFrom;
    if (previous) {
      if (adam.stepCount !== startStep) throw new Error(`${checkpointPath}: Adam's step ${adam.stepCount} differs from the run's step ${startStep}`);
      // A finished run resumed is evaluated again at its last step: that evaluation replaces the
      // previous one there (not a second point at the same step in the curves).
      const reevaluated = startStep === totalSteps && !flags['no-eval'];
      await truncateMetricsAfterStep(metricsPath, startStep, (r) => reevaluated && r.type === 'eval' && r.step === startStep && r.during !== true);
    }
    // The average goes on from the checkpoint's (a resume, or --init-from a run's checkpoint with its
    // Adam state: an exact continuation), or starts as a copy of the parameters at this run's first step.
    const ema = emaDecay === null ? null : new ParameterEma(ctx, emaDecay);
    const carriedEma = previous?.ema ?? (initOptimizer ? init?.ema : undefined);
    if (ema && carriedEma) ema.importState(carriedEma, model.parameterList());
    else ema?.start(model.parameterList(), startStep);
    const emaPath = join(outDir, EMA_FILE);
    if (previous?.ema && !ema) process.stderr.write(`capsnet train: --ema off: the run's moving average (since step ${previous.ema.since}) is not kept from here on; ${emaPath} keeps it as of step ${previous.step}\n`);
    if (init?.ema && (!ema || carriedEma === undefined)) process.stderr.write(`capsnet train: ${initFromPath}'s moving average is not carried over (${ema ? `it is for step ${init.step}; a new one starts at step ${startStep}` : 'no --ema'})\n`);
    // An ema.safetensors that this run's average does not continue (a new run in a folder whose
    // checkpoint is gone, or a new average after --ema off) would pass for the current one until the first checkpoint.
    if (existsSync(emaPath) && (!previous || (ema !== null && !previous.ema))) {
      process.stderr.write(`capsnet train: removing ${emaPath}: an average this run does not continue${ema ? ' (a new one is written at the first checkpoint)' : ''}\n`);
      rmSync(emaPath);
    }
    const previousSkips = Number((previous?.training as { consecutiveSkips?: unknown } | undefined)?.consecutiveSkips ?? 0);
    const trainer = new Trainer(ctx, model, adam, batches, logEvery, {
      onNonFinite,
      maxConsecutiveSkips: maxSkips,
      consecutiveSkips: Number.isInteger(previousSkips) && previousSkips >= 0 ? previousSkips : 0,
      // --no-eval: nothing to warm for evaluation but the Trainer's default (the training batch).
      ...(evalSets.length > 0 ? { evalBatchSize: largestEvalBatch } : {}),
      ...(ema ? { ema } : {}),
    });
    const injected = faults.length > 0 ? faultHooks(ctx, faults, model.params) : null;
    process.stderr.write(
      `capsnet train: ${experiment !== 'mnist' ? `${experiment}, ` : ''}${spec.kind === 'baseline' ? 'baseline CNN, ' : ''}${parameters.toLocaleString('en-US')} parameters on ${adapter}; ${trainSet.count} training images, ` +
        `batch ${batchSize} (about ${formatBytes(estimate.totalBytes + emaBytes)} of GPU memory${emaBytes > 0 ? ', with the moving average' : ''}), ${stepsPerEpoch} steps per epoch, steps ${startStep + 1}..${totalSteps}${previous ? ' (resumed)' : ''}\n`,
    );
    if (lrMult) process.stderr.write(`capsnet train: learning-rate multipliers ${formatLrMult(lrMult)}\n`);
    if (faults.length > 0) process.stderr.write(`capsnet train: injecting faults (a test): ${flags['inject-fault']}\n`);
    await appendMetrics(metricsPath, { type: 'start', step: startStep, time: new Date().toISOString(), adapter, model: spec.kind, options, config, ...(initFrom ? { initFrom } : {}) });

    let lastSaved: number | null = previous?.step ?? null;
    const modelOf = spec.kind === 'baseline' ? { model: 'baseline' as const, config: spec.config } : { config: spec.config };
    // The average as a model-only file (no Adam state: --resume refuses it, --init-from takes it),
    // written after the checkpoint that holds it: a stop between the two leaves an older one, which
    // the resume rewrites.
    const saveEmaModel = (step: number, average: EmaState) => saveCheckpoint(emaPath, {
      ...modelOf, params: average.params, step,
      training: { options, movingAverage: { decay: average.decay, since: average.since, of: resolve(checkpointPath) }, ...(initFrom ? { initFrom } : {}) },
    });
    const save = async (stepsDone: number) => {
      const params = await model.exportParams();
      const optimizer = await adam.exportState();
      const average = ema ? await ema.exportState() : undefined;
      // A lost device or a GPU error since those reads surfaces here, before anything is written.
      await ctx.sync();
      checkFinite(params, stepsDone, lastSaved, checkpointPath);
      if (average) checkFinite(average.params, stepsDone, lastSaved, checkpointPath, 'the moving average of parameter');
      await saveCheckpoint(checkpointPath, {
        ...modelOf,
        params, optimizer, ...(average ? { ema: average } : {}), step: stepsDone, training: { options, consecutiveSkips: trainer.consecutiveSkips, ...(initFrom ? { initFrom } : {}) },
      });
      lastSaved = stepsDone;
      if (average) await saveEmaModel(stepsDone, average);
    };
    // A stop between the checkpoint and this file leaves an older file: brought up to the checkpoint's
    // average (also when --ema off drops it from here on).
    if (previous?.ema) await saveEmaModel(previous.step, previous.ema);
    // --keep-every: the bytes just saved (and checked finite), under the step's own name, atomically.
    const keptPath = (step: number) => join(outDir, `checkpoint-step${step}.safetensors`);
    const keepCopy = async (step: number) => {
      await writeFileAtomic(keptPath(step), readRegularFile(checkpointPath, MAX_CHECKPOINT_FILE_BYTES, 'checkpoint'));
      bar.note(`capsnet train: step ${step}: kept a copy of the checkpoint as ${keptPath(step)}`);
    };
    // --stop-at-accuracy: the set it watches (validation when held out, else test), scored after each checkpoint.
    let reachedTarget = false;
    const watch = async (stepsDone: number) => {
      const set = evalSets[0];
      const result = await set.run(model, Math.min(evalBatch, set.count));
      await appendMetrics(metricsPath, { type: 'eval', step: stepsDone, split: set.split, accuracy: result.accuracy, error: 1 - result.accuracy, count: result.count, during: true });
      reachedTarget = reachesAccuracy(result.correct, result.count, stopAtAccuracy!);
      bar.note(
        `capsnet train: step ${stepsDone}: ${set.split} accuracy ${(100 * result.accuracy).toFixed(2)}% (${result.count} images)` +
          (reachedTarget ? `, at least --stop-at-accuracy ${stopAtAccuracy}: stopping` : ''),
      );
    };
    const newBar = () => new ProgressBar({ total: (totalSteps - startStep) * batchSize, label: 'train', unit: 'img' });
    let bar = newBar();
    let last: StepRecord | null = null;
    let window: StepRecord[] = [];
    let stepsDone = startStep;
    let trainingStarted = !estimateMoments; // a stop during the moment estimate trains nothing: no 'train done' line
    const onStartup = async (startup: StartupReport) => {
      // Compiling every kernel before the first step (llvmpipe compiles at first dispatch): the
      // first step then runs at steady speed, and the bar's images per second mean something.
      bar.note(`capsnet train: ${startup.pipelines} pipelines created and compiled in ${startup.seconds.toFixed(1)} s`);
      bar = newBar(); // images per second and time left count training, not the compile (25-30 s cold)
      // `step` keeps the record when a resume truncates the log after its checkpoint's step.
      await appendMetrics(metricsPath, { type: 'startup', step: startStep, kernels: startup.kernels, pipelines: startup.pipelines, seconds: startup.seconds });
    };
    // A run stopped between a kept step's checkpoint and its copy (or given --keep-every on resume at
    // such a step) would never make that copy: the checkpoint it resumes from is it.
    if (previous && keepEvery !== null && previous.step % keepEvery === 0 && !existsSync(keptPath(previous.step))) await keepCopy(previous.step);
    try {
      if (estimateMoments) {
        const estimating = new ProgressBar({ total: momentSteps, label: 'adam moments', unit: 'batch' });
        const finished = await trainer.estimateAdamMoments(startStep, momentSteps, { onStartup, onProgress: (n) => estimating.update(n), shouldStop: () => stopRequested });
        estimating.finish();
        // A stop during the last batch lets the estimate finish, but nothing is trained or saved either.
        if (finished && !stopRequested) {
          trainingStarted = true;
          bar = newBar(); // its rate and time left count training steps only
          bar.note(`capsnet train: Adam's moments estimated from ${momentSteps} batches at learning rate 0 (${initFromPath} has no optimizer state for step ${startStep})`);
          await appendMetrics(metricsPath, { type: 'moments', step: startStep, batches: momentSteps, seconds: (performance.now() - started) / 1000 });
        } else {
          process.stderr.write('capsnet train: stopped while estimating Adam\'s moments: nothing trained, nothing saved; run the same command again to start over\n');
        }
      }
      if (!stopRequested) stepsDone = await trainer.run(startStep, totalSteps, {
        ...(injected ?? {}),
        onStartup,
        onStep: (done) => bar.update((done - startStep) * batchSize, fieldsOf(last, window)),
        onRecords: async (records) => {
          const elapsed = (performance.now() - started) / 1000;
          for (const r of records) {
            await appendMetrics(metricsPath, { type: 'train', ...r, epoch: r.step / stepsPerEpoch, seconds: elapsed });
          }
          last = records.at(-1) ?? last;
          window = [...window, ...records].slice(-50);
        },
        onSkipped: async (skipped) => {
          for (const s of skipped) {
            const first = s.where[0];
            await appendMetrics(metricsPath, { type: 'skip', step: s.step, layer: first?.name ?? 'loss', count: first?.count ?? 0, loss: s.loss, where: s.where });
            bar.note(`capsnet train: step ${s.step} skipped (not applied): non-finite values first in '${first?.name ?? 'loss'}'${first ? ` (${first.count} values)` : ''}`);
          }
        },
        checkpointDue: (done) => done % checkpointEvery === 0 || done === totalSteps || (keepEvery !== null && done % keepEvery === 0),
        onCheckpoint: async (done) => {
          await save(done);
          if (keepEvery !== null && done % keepEvery === 0) await keepCopy(done);
          // The last step is evaluated below, with every set; kept copies' steps are not --checkpoint-every's.
          if (stopAtAccuracy !== null && done < totalSteps && !stopRequested && done % checkpointEvery === 0) await watch(done);
        },
        shouldStop: () => stopRequested || reachedTarget,
      });
    } catch (error) {
      // A NaN is found after its step ran (and was counted): the bar ends at the last good step.
      // (A failure while estimating Adam's moments trained nothing: no training bar to end.)
      if (trainingStarted) bar.stop(error instanceof NonFiniteError ? (error.step - startStep) * batchSize : undefined);
      const nextMultiple = (every: number) => (Math.floor(startStep / every) + 1) * every;
      const firstCheckpoint = Math.min(totalSteps, nextMultiple(checkpointEvery), keepEvery !== null ? nextMultiple(keepEvery) : Infinity);
      throw await explainFailure(error, { ctx, trainer, metricsPath, checkpointPath, outDir, lastSaved, firstCheckpoint });
    } finally {
      injected?.dispose();
    }
    if (trainingStarted) bar.finish(fieldsOf(last, window));
    trainer.dispose();
    // The training step's released buffers (up to 1 GiB kept for reuse) are not what evaluation
    // needs: given back before it, so a GPU with little memory holds one set, not both.
    ctx.pool.trim();

    let testAccuracy: number | null = null;
    let emaTestAccuracy: number | null = null;
    if (!stopRequested && !flags['no-eval']) {
      evaluating = true;
      // The weights, then (--ema) the moving average loaded into the same model: nothing is saved after this.
      const averageParams = ema ? (await ema.exportState()).params : null;
      for (const weights of averageParams ? ['weights', 'ema'] as const : ['weights'] as const) {
        if (weights === 'ema') model.importParams(averageParams!);
        for (const set of evalSets) {
          const split = set.split;
          let result;
          try {
            result = await set.run(model, Math.min(evalBatch, set.count));
          } catch (error) {
            if (!(error instanceof GpuDeviceLostError || error instanceof GpuValidationError || error instanceof GpuOutOfMemoryError)) throw error;
            // Training is done and saved; only the evaluation is lost.
            throw new TrainingStoppedError(
              `capsnet train: the ${split} evaluation${weights === 'ema' ? ' of the moving average' : ''} failed: ${error.message}\nTraining finished and its checkpoint (${checkpointPath}, step ${stepsDone}) is complete; ` +
                `evaluate it with:\n  capsnet eval --checkpoint ${weights === 'ema' ? emaPath : checkpointPath}`,
            );
          }
          if (split === 'test') {
            if (weights === 'ema') emaTestAccuracy = result.accuracy;
            else testAccuracy = result.accuracy;
          }
          const almost = result.almost !== undefined ? { almost: result.almost / Math.max(1, result.count) } : {};
          await appendMetrics(metricsPath, { type: 'eval', step: stepsDone, split, accuracy: result.accuracy, error: 1 - result.accuracy, count: result.count, ...almost, ...(weights === 'ema' ? { weights } : {}) });
          process.stderr.write(
            `capsnet train: ${split} accuracy ${weights === 'ema' ? `of the moving average (${emaPath}) ` : ''}${(100 * result.accuracy).toFixed(2)}% (${result.count - result.correct} errors of ${result.count}` +
              `${result.almost !== undefined ? `; at least one digit right: ${(100 * result.almost / Math.max(1, result.count)).toFixed(2)}%` : ''})\n`,
          );
        }
      }
    }
    const seconds = (performance.now() - started) / 1000;
    if (trainingStarted) process.stderr.write(`capsnet train: ${stepsDone} of ${totalSteps} steps${reachedTarget ? ` (stopped at --stop-at-accuracy ${stopAtAccuracy})` : ''} in ${formatDuration(seconds)}; checkpoint ${checkpointPath}, metrics ${metricsPath}\n`);
    if (trainingStarted && stopRequested && stepsDone < totalSteps && lastSaved !== null) process.stderr.write(`capsnet train: stopped; continue with: capsnet train --out ${outDir} --resume\n`);
    adam.dispose();
    ema?.dispose();
    model.dispose();
    // A Ctrl-C that came after the last step (during the final evaluation, which runs to its end)
    // stopped nothing: the run is complete.
    return { outDir, model: spec.kind, stepsDone, totalSteps, stopped: stopRequested && stepsDone < totalSteps, seconds, testAccuracy, emaTestAccuracy, adapter, config };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    runLock?.release();
    ctx.destroy();
  }
}

/**
 * Refuses to write a checkpoint whose parameters hold NaN or infinity (an update that overflowed
 * after its step was checked): the last good checkpoint stays.
 */
function checkFinite(params: Record<string, Float32Array>, stepsDone: number, lastSaved: number | null, path: string, what = 'parameter'): void {
  for (const [name, values] of Object.entries(params)) {
    let bad = 0;
    for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) bad++;
    if (bad > 0) {
      throw new NonFiniteError(stepsDone - 1, [{ name: `${what} ${name}`, count: bad }], NaN,
        `training stopped: after step ${stepsDone}, ${what} '${name}' holds ${bad} NaN or infinite values (an update that overflowed, or a corrupted value), so no checkpoint was written. ` +
          `Try a lower --lr; ${lastSaved !== null ? `the last good checkpoint (${path}, step ${lastSaved}) is kept` : 'no checkpoint had been written yet'}.`);
    }
  }
}

/** Turns a failure of the training loop into a TrainingStoppedError that says what happened and what to do. */
async function explainFailure(
  error: unknown,
  run: { ctx: GpuContext; trainer: Trainer; metricsPath: string; checkpointPath: string; outDir: string; lastSaved: number | null; firstCheckpoint: number },
): Promise<unknown> {
  const step = run.trainer.currentStep >= 0 ? run.trainer.currentStep + 1 : null;
  const kept = run.lastSaved !== null
    ? `The checkpoint in ${run.checkpointPath} is from step ${run.lastSaved} and intact; continue from it with:\n  capsnet train --out ${run.outDir} --resume`
    : `No checkpoint had been written yet (the first is due at step ${run.firstCheckpoint}); run the same command again to start over.`;
  const log = async (record: Record<string, unknown>) => {
    // The log is on disk, not on the GPU: always worth writing; a failure to do so must not hide the cause.
    await appendMetrics(run.metricsPath, { type: 'error', ...record }).catch(() => {});
  };
  if (error instanceof NonFiniteError) {
    await log({ step: error.step + 1, kind: error.name, layer: error.where[0]?.name ?? 'loss', message: error.message });
    return new TrainingStoppedError(`${error.message}\n${kept}`);
  }
  const at = step !== null ? ` at step ${step}` : '';
  if (error instanceof GpuDeviceLostError || run.ctx.isLost) {
    await log({ step, kind: 'GpuDeviceLostError', message: (error as Error).message });
    return new TrainingStoppedError(
      `capsnet train: the GPU device was lost${at} (${(error as Error).message.replace(/^The GPU device was lost \(([^)]*)\).*$/s, '$1')}). ` +
        'A driver reset, a GPU removed or put to sleep, or the system reclaiming its memory does this; everything on the GPU is gone, ' +
        `so nothing more was saved.\n${kept}`,
    );
  }
  if (error instanceof GpuValidationError) {
    await log({ step, kind: error.name, message: error.message });
    return new TrainingStoppedError(
      `capsnet train: WebGPU rejected the commands${at}:\n${shortenKernelList(error.message)}\n` +
        `The parameters on the GPU after that step cannot be trusted, so nothing more was saved.\n${kept}`,
    );
  }
  if (error instanceof GpuOutOfMemoryError) {
    await log({ step, kind: error.name, message: error.message });
    return new TrainingStoppedError(`capsnet train: the GPU ran out of memory${at}:\n${error.message}\nNothing more was saved. ${kept}\nTo continue with a smaller batch, start a new run (--batch-size is part of the recipe).`);
  }
  return error;
}

/**
 * The context names every kernel of a failed submit ('running kernels [a, b x3, ...]: what WebGPU
 * said'): a training step has about a hundred. On the terminal, the first and last few are enough
 * (the metrics log keeps the whole message).
 */
function shortenKernelList(message: string): string {
  const m = /^running kernels \[(.*?)\]: /s.exec(message);
  if (!m) return message;
  const kernels = m[1].split(', ');
  if (kernels.length <= 10) return message;
  const shown = [...kernels.slice(0, 3), `... ${kernels.length - 8} more ...`, ...kernels.slice(-5)];
  return `running kernels [${shown.join(', ')}]: ${message.slice(m[0].length)}`;
}

/**
 * The model config from the flags; a refusal names the command and `blame` (--config when it was
 * given: the fields it sets are the usual culprit) where the message does not name --config itself.
 */
function validated<T>(make: () => T, blame: string): T {
  try {
    return make();
  } catch (error) {
    // makeConfig quotes the value it refuses (after the field and what it expects): clipped.
    const message = (error as Error).message;
    throw new UsageError(`capsnet train${message.startsWith('--config') ? ' ' : blame}${clip(message, 400)}`);
  }
}

/** The seed of --validation-split random: part of every such run's recipe (a new value would change the split of runs to be resumed). */
export const VALIDATION_SPLIT_SEED = 0x5a117;

function parseModelFlag(value: string | undefined): ModelKind {
  return choiceFlag(value, '--model', MODEL_KINDS, 'capsnet');
}

/**
 * Whether `correct` of `count` is at least `percent`%, in whole examples: 57 of 100 reaches 57,
 * though 100 * 0.57 is 56.99999999999999.
 */
export function reachesAccuracy(correct: number, count: number, percent: number): boolean {
  return 100 * correct >= percent * count - 1e-9 * count;
}

/** Largest --config file read: a model config is a few hundred bytes; this refuses a wrong path at once. */
export const MAX_CONFIG_FILE_BYTES = 1 << 20;

/** --config: model config fields as JSON, inline or in a file (e.g. '{"routings": 1, "primaryTypes": 16}'). */
function parseConfigFlag(value: string | undefined, model: ModelKind): Partial<CapsNetConfig> | Partial<BaselineConfig> {
  if (value === undefined) return {};
  let text = value;
  let source = 'inline JSON';
  if (!value.trimStart().startsWith('{')) {
    source = pathFlag(value, '--config');
    try {
      // A regular file of bounded size: readFileSync would wait forever on a FIFO and read /dev/zero until memory runs out.
      text = new TextDecoder().decode(readRegularFile(value, MAX_CONFIG_FILE_BYTES, 'model config JSON'));
    } catch (error) {
      throw new UsageError(`--config: ${(error as Error).message}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--config: ${source}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('--config: expected a JSON object of model config fields');
  const known = new Set(Object.keys(model === 'baseline' ? makeBaselineConfig() : makeConfig()));
  // The decoder has its flags, which would override these fields (each experiment's preset decides
  // the default): refused here rather than ignored.
  const byFlags = model === 'baseline' ? [] : ['decoder', 'reconWeight'];
  known.forEach((key) => byFlags.includes(key) && known.delete(key));
  for (const key of Object.keys(parsed)) {
    if (byFlags.includes(key)) throw new UsageError(`--config: ${quoteFlag(key)} is set by --no-recon (no decoder) or --recon-weight X, not by --config`);
    if (!known.has(key)) throw new UsageError(`--config: unknown field ${quoteFlag(key)} for --model ${model} (known: ${[...known].join(', ')})`);
  }
  return parsed as Partial<CapsNetConfig> | Partial<BaselineConfig>;
}

function fieldsOf(last: StepRecord | null, window: StepRecord[]): Record<string, string | number> {
  if (!last) return {};
  const acc = window.reduce((s, r) => s + r.accuracy, 0) / Math.max(1, window.length);
  return { loss: last.loss.toFixed(4), acc: `${(100 * acc).toFixed(1)}%` };
}

/** A path flag made absolute against the current folder (null when not given). */
function absolutePath(path: string | undefined): string | null {
  return path === undefined ? null : resolve(path);
}

/** --keep-every N: an integer >= 1 (or 'epoch', handled by the caller), named so in the error. */
function keepStepsFlag(value: string): number {
  try {
    return intFlag(value, '--keep-every', 0, 1);
  } catch {
    throw new UsageError(`--keep-every: expected an integer >= 1, 'epoch' or 'off', got ${quoteFlag(value)}`);
  }
}
