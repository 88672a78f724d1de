// The paper's experiments as `capsnet train/eval --experiment NAME`: for each, where the data comes
// from, how training batches are made (a pure function of (seed, step), so --resume stays exact),
// the model preset (src/model/config.ts CONFIG_PRESETS) and which sets the evaluation reports.
// - mnist: today's recipe (28x28, shifts up to --shift 2); fashion-mnist: the same on Fashion-MNIST.
// - affnist: MNIST placed at random in a 40x40 canvas (shifts up to 6); evaluated on the MNIST test
//   set centred in 40x40 ('test') and on an affNIST-style set generated from it ('affnist').
// - multimnist: two digits of different classes, each shifted up to 4 (--shift 6: the official
//   variant) on 36x36; evaluated on a generated set of pairs where both digits must be the two
//   longest capsules ('test'; 'almost': at least one of them).
// - cifar10: random 24x24 crops of the 32x32 images (--data DIR required) with the official random
//   flips, brightness and contrast changes (src/data/cifar.ts CIFAR10_AUGMENT); evaluated on centre
//   crops.
// Generated test sets have one example per test image (capped by --eval-limit); example n is a
// function of (test seed, n) only. `capsnet eval --affnist FILE` replaces affnist's generated set by
// the real affNIST files (src/io/affnist-file.ts).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Dataset, fillBatch } from '../data/dataset.ts';
import { CanvasBatches, AFFNIST_TRAIN, CIFAR10_CROPS, CIFAR10_TRAIN, fillCentred, fillAffineTest } from '../data/affine.ts';
import type { ColourAugmentRanges } from '../data/cifar.ts';
import { MultiMnistBatches, MultiMnistTestSet, type MultiMnistOptions } from '../data/multimnist.ts';
import { loadMnist } from '../io/idx-file.ts';
import { CIFAR10_TEST_FILE, cifar10Folder, loadCifar10, readCifarBatch } from '../io/cifar-file.ts';
import { CapsNet, evaluateTwoDigits } from '../model/capsnet.ts';
import { BaselineCNN } from '../model/baseline.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { AnyCheckpoint } from '../io/checkpoint.ts';
import { BatchTooLargeError, checkBatchSize, memoryDevice, type MemoryEstimate, type MemoryMode, type ModelSpec } from '../train/memory.ts';
import { TrainingBatches } from '../train/batches.ts';
import { evaluate, type BatchSource, type TrainableModel } from '../train/trainer.ts';
import { ProgressBar } from './progress.ts';
import { UsageError, choiceFlag } from './args.ts';

export const EXPERIMENTS = ['mnist', 'fashion-mnist', 'affnist', 'multimnist', 'cifar10'] as const;
export type ExperimentName = (typeof EXPERIMENTS)[number];

/** Debian's dataset-fashion-mnist package installs the official split here. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export function parseExperiment(value: string | undefined): ExperimentName {
  return choiceFlag(value, '--experiment', EXPERIMENTS, 'mnist');
}

/** The data recipe of an experiment: the canvas side the model sees and the training shift default. */
export function experimentCanvas(experiment: ExperimentName, imageSide: number): number {
  switch (experiment) {
    case 'affnist': return AFFNIST_TRAIN.canvas;
    case 'cifar10': return CIFAR10_CROPS.canvas;
    case 'multimnist': return 36;
    default: return imageSide;
  }
}

/**
 * The largest --shift that keeps the data meaningful: cifar10's 24x24 window stays inside the
 * image (a crop, not padding); a 28x28 image moves at most 4 pixels past the canvas's edge, the
 * width of MNIST's blank border around its 20x20 digit box (mnist and fashion-mnist 4, affnist 10,
 * multimnist 8, which keeps the official 6), so a label never goes with a mostly blank image.
 */
export function maxShiftLimit(experiment: ExperimentName, imageSide: number): number {
  const canvas = experimentCanvas(experiment, imageSide);
  if (experiment === 'cifar10') return Math.floor((imageSide - canvas) / 2);
  return Math.floor((canvas - imageSide) / 2) + 4;
}

export function defaultShift(experiment: ExperimentName): number {
  switch (experiment) {
    case 'affnist': return AFFNIST_TRAIN.maxShift;
    case 'cifar10': return CIFAR10_CROPS.maxShift;
    case 'multimnist': return 4;
    default: return 2;
  }
}

export type Split = 'train' | 'test';

/**
 * The experiment's sets named in `splits` (default: both); `command` names the command in errors.
 * eval and figures ask for 'test' only: the training split is read for nothing otherwise (MNIST's is
 * 47 MB, CIFAR-10's 150 MB), and a --data folder may then hold only the test files.
 */
export function loadExperimentData<S extends Split = Split>(
  experiment: ExperimentName, dataDir: string | null, command: string, splits: readonly S[] = ['train', 'test'] as S[],
): Record<S, Dataset> {
  const wanted = new Set<Split>(splits);
  const both = wanted.has('train') && wanted.has('test');
  try {
    switch (experiment) {
      case 'fashion-mnist': {
        const dir = dataDir ?? FASHION_MNIST_DIR;
        if (dataDir === null && !existsSync(dir)) {
          throw new Error(`Fashion-MNIST is not installed in ${FASHION_MNIST_DIR} (Debian: apt-get install dataset-fashion-mnist); or pass --data DIR with its IDX files`);
        }
        return loadMnist(dir, splits);
      }
      case 'cifar10': {
        if (dataDir === null) throw new Error('--experiment cifar10 needs --data DIR: the folder of the CIFAR-10 binary batches (data_batch_1.bin .. data_batch_5.bin, test_batch.bin)');
        if (both || wanted.has('train')) return loadCifar10(dataDir) as Record<S, Dataset>;
        return { test: readCifarBatch(join(cifar10Folder(dataDir), CIFAR10_TEST_FILE)) } as Record<S, Dataset>;
      }
      default:
        return loadMnist(dataDir ?? undefined, splits);
    }
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`);
  }
}

/**
 * The data folder a run was trained on (its --data, stored in the checkpoint), for eval and figures
 * to score and draw the same data by default; null when the run used the default data. A folder
 * that is gone (another machine, a deleted temporary folder) is refused by name, with the way out.
 */
export function storedDataDir(stored: string | null | undefined, checkpointPath: string, command: string): string | null {
  if (stored === null || stored === undefined) return null;
  if (!existsSync(stored)) {
    throw new UsageError(`${command}: ${checkpointPath} was trained on --data ${stored}, which does not exist here; pass --data DIR with the same data`);
  }
  return stored;
}

/** The network a checkpoint holds (a checkpoint without __metadata__.model holds CapsNet). */
export function specOf(ckpt: AnyCheckpoint): ModelSpec {
  return ckpt.model === 'baseline' ? { kind: 'baseline', config: ckpt.config } : { kind: 'capsnet', config: ckpt.config };
}

/** The network of `spec` on `ctx`, with a checkpoint's parameters or freshly initialised from a seed. */
export function buildModel(ctx: GpuContext, spec: ModelSpec, init: { params: Record<string, Float32Array> } | { seed: number }): TrainableModel {
  if (spec.kind === 'baseline') return 'params' in init ? new BaselineCNN(ctx, spec.config, init.params) : BaselineCNN.create(ctx, spec.config, init.seed);
  return 'params' in init ? new CapsNet(ctx, spec.config, init.params) : CapsNet.create(ctx, spec.config, init.seed);
}

/**
 * checkBatchSize on `ctx`'s adapter, before anything is allocated: a batch too large is a usage
 * error of `command` naming `flag` and the largest batch that fits.
 */
export function checkBatchFits(
  ctx: GpuContext, spec: ModelSpec, batchSize: number, mode: MemoryMode, flag: string, command: string,
  budget: { budgetBytes?: number; budgetWhat?: string } = {},
): MemoryEstimate {
  try {
    return checkBatchSize(spec, batchSize, mode, memoryDevice(ctx), { flag, adapter: ctx.adapter.name, ...budget });
  } catch (error) {
    if (error instanceof BatchTooLargeError) throw new UsageError(`${command}: ${error.message}`);
    throw error;
  }
}

/**
 * The learning-rate multipliers a new CapsNet run of `experiment` trains with unless --lr-mult is
 * given (stored in its run options). affnist and multimnist: PrimaryCaps at 1/primaryTypes (1/32),
 * the official code's dynamics (--lr-mult in the README). Measured with the paper's models: Adam's first step
 * at lr 1e-3 moves each of the 20,736 weights (256 x 9 x 9) feeding each primary capsule value by
 * the full learning rate in one direction, and the many primary capsules then push every class
 * capsule's length to about 1; Adam's second moments, which remember that first gradient for
 * about a thousand steps, keep the steps out of the saturated squash tiny. affnist (4,608 primary
 * capsules): margin loss 0.75 -> 3.57 at step 2, still 3.5 at step 23; with 1/32, 0.51 at step 8.
 * multimnist (3,200): 1.36 -> 3.17 at step 2, 3.06 at step 8; with 1/32, 0.88 at step 8.
 * MNIST's 1,152 capsules saturate too but recover within ten steps, and one epoch with 1/32 scored
 * lower (98.11% against 98.62%): its recipe stays the paper's.
 */
export function experimentLrMult(experiment: ExperimentName, spec: ModelSpec): Record<string, number> | null {
  // 1 / the number of capsule types: the official forward pass divides by it (the one-iteration
  // softmax over the types), 32 in the paper models; a --config with other types gets its own.
  return (experiment === 'affnist' || experiment === 'multimnist') && spec.kind === 'capsnet' ? { 'primary.weight': 1 / spec.config.primaryTypes } : null;
}

/** The colour distortions a new run of `experiment` trains with (stored in its run options' dataOptions). */
export function experimentAugment(experiment: ExperimentName): Readonly<ColourAugmentRanges> | undefined {
  return experiment === 'cifar10' ? CIFAR10_TRAIN.augment : undefined;
}

/**
 * The training batches of `experiment`. `augment`: the run's colour distortions (CanvasBatches
 * experiments only), null for none: a resumed run passes what its checkpoint stored, so it
 * continues with the batches it started with even if the experiment's default changed since. No
 * default on purpose: a run that stored none must not get experimentAugment's.
 */
export function experimentBatches(
  experiment: ExperimentName, train: Dataset, batchSize: number, seed: number, maxShift: number,
  augment: Readonly<ColourAugmentRanges> | null,
): BatchSource {
  switch (experiment) {
    case 'affnist': return new CanvasBatches(train, batchSize, seed, { canvas: AFFNIST_TRAIN.canvas, maxShift, ...(augment ? { augment } : {}) });
    case 'cifar10': return new CanvasBatches(train, batchSize, seed, { ...CIFAR10_CROPS, maxShift, ...(augment ? { augment } : {}) });
    case 'multimnist': return new MultiMnistBatches(train, batchSize, seed, multiMnistOptions(maxShift));
    default: return new TrainingBatches(train, batchSize, seed, maxShift);
  }
}

export function multiMnistOptions(maxShift: number): MultiMnistOptions {
  return { canvas: 36, maxShift };
}

export interface SetResult {
  /** 'validation', 'test', or 'affnist' (affnist's transformed test set). */
  split: string;
  count: number;
  correct: number;
  accuracy: number;
  /** multimnist: examples with at least one of their two digits among the two longest capsules. */
  almost?: number;
  /**
   * Per example class scores [count, classes] (capsule lengths, or the baseline's logits) and labels
   * (multimnist: the first digit's, with `secondLabels`); single-label sets also have the
   * predictions and confusion[label][prediction].
   */
  scores?: Float32Array;
  predictions?: Int32Array;
  labels?: Int32Array;
  secondLabels?: Int32Array;
  confusion?: number[][];
}

export interface EvalSet {
  split: string;
  count: number;
  run(model: TrainableModel, batchSize: number): Promise<SetResult>;
}

/**
 * The sets an experiment reports, each of at most `limit` examples (null: every test image once):
 * `validation` (if any) and the test set in the experiment's form, and for affnist also the
 * affNIST-style set: generated from the test set, or `realAffnist` (the real affNIST files, 40x40,
 * as they are) when given. `maxShift` is the training shift (multimnist's test pairs use the same).
 */
export function experimentEvalSets(
  experiment: ExperimentName, sets: Array<[string, Dataset]>, testSeed: number, maxShift: number, limit: number | null, imageSide: number,
  realAffnist?: Dataset,
): EvalSet[] {
  if (realAffnist !== undefined) {
    if (experiment !== 'affnist') throw new UsageError(`real affNIST data is evaluated with --experiment affnist, not ${experiment}`);
    const side = AFFNIST_TRAIN.canvas;
    if (realAffnist.height !== side || realAffnist.width !== side || realAffnist.channels !== 1) {
      throw new Error(`experimentEvalSets: real affNIST images are ${realAffnist.height}x${realAffnist.width}x${realAffnist.channels}, expected ${side}x${side}x1`);
    }
  }
  const capped = (n: number) => (limit !== null ? Math.min(limit, n) : n);
  const out: EvalSet[] = [];
  for (const [split, ds] of sets) {
    const count = capped(ds.count);
    if (experiment === 'multimnist') {
      // Built now, not at the evaluation: a split that cannot be paired (one class) is refused
      // before training, not after it.
      let set: MultiMnistTestSet;
      try {
        set = new MultiMnistTestSet(ds, count, testSeed, multiMnistOptions(maxShift));
      } catch (error) {
        throw new UsageError(`--experiment multimnist: the ${split} set: ${(error as Error).message}`);
      }
      out.push({
        split, count,
        run: (model, batch) => withBar(split, count, async (progress) => {
          if (!(model instanceof CapsNet)) throw new UsageError('--experiment multimnist: evaluates CapsNet only');
          const labels = new Int32Array(count);
          const secondLabels = new Int32Array(count);
          const r = await evaluateTwoDigits(model, count, batch, (s, b) => {
            const n = set.fill(s, b);
            const kept = Math.max(0, Math.min(n, count - s));
            labels.set(b.firstLabels.subarray(0, kept), s);
            secondLabels.set(b.secondLabels.subarray(0, kept), s);
            return n;
          }, progress);
          return { split, count: r.count, correct: r.correct, accuracy: r.accuracy, almost: r.almost, scores: r.lengths, labels, secondLabels };
        }),
      });
      continue;
    }
    const canvas = experimentCanvas(experiment, imageSide);
    const fill = canvas === ds.height && canvas === ds.width
      ? (() => {
        const order = Uint32Array.from({ length: count }, (_, i) => i);
        return (s: number, x: Float32Array, y: Int32Array) => fillBatch(ds, order, s, x, y);
      })()
      : (s: number, x: Float32Array, y: Int32Array) => fillCentred(ds, canvas, s, x, y);
    out.push(singleLabel(split, count, fill));
    if (experiment === 'affnist' && split === 'test') {
      if (realAffnist !== undefined) {
        const n = capped(realAffnist.count);
        const order = Uint32Array.from({ length: n }, (_, i) => i);
        out.push(singleLabel('affnist', n, (s, x, y) => fillBatch(realAffnist, order, s, x, y)));
      } else {
        const n = capped(ds.count);
        out.push(singleLabel('affnist', n, (s, x, y) => fillAffineTest(ds, testSeed, n, s, x, y)));
      }
    }
  }
  return out;
}

function singleLabel(split: string, count: number, fill: (start: number, images: Float32Array, labels: Int32Array) => number): EvalSet {
  return {
    split, count,
    run: (model, batch) => withBar(split, count, async (progress) => {
      const labels = new Int32Array(count);
      const r = await evaluate(model, count, batch, (s, x, y) => {
        const n = fill(s, x, y);
        labels.set(y.subarray(0, Math.max(0, Math.min(n, count - s))), s);
        return n;
      }, progress);
      return { split, count: r.count, correct: r.correct, accuracy: r.accuracy, scores: r.scores, predictions: r.predictions, labels, confusion: r.confusion };
    }),
  };
}

async function withBar(label: string, total: number, run: (progress: (done: number) => void) => Promise<SetResult>): Promise<SetResult> {
  const bar = new ProgressBar({ total, label, unit: 'img' });
  const r = await run((done) => bar.update(done));
  bar.finish({ accuracy: `${(100 * r.accuracy).toFixed(2)}%` });
  return r;
}

/**
 * The message for data the model cannot take: what the experiment feeds it (the data's images,
 * placed in the experiment's canvas) against the input it was built for.
 */
export function inputMismatch(command: string, experiment: ExperimentName, data: { channels: number; height: number; width: number }, canvas: number, model: { inputChannels: number; inputSize: number }): string {
  const placed = canvas !== data.height;
  const fed = placed ? `${data.channels}x${canvas}x${canvas}` : `${data.channels}x${data.height}x${data.width}`;
  const how = placed ? ` (the data's ${data.channels}x${data.height}x${data.width} images in a ${canvas}x${canvas} canvas)` : '';
  return `${command}: --experiment ${experiment} feeds the model ${fed} inputs${how}; this model takes ${model.inputChannels}x${model.inputSize}x${model.inputSize}`;
}
