// `capsnet eval`: test accuracy, error and confusion matrix of a checkpoint (ours, or any file with
// the model tensors in the layout of DESIGN.md; CapsNet or the baseline CNN, as its metadata says),
// and optionally every image's class scores (capsule lengths, or the baseline's logits).
// Several --checkpoint flags evaluate an ensemble (src/cli/ensemble.ts): every member on the same
// test set (the first checkpoint's experiment, test seed and data), each member's accuracy and the
// ensemble's, whose scores are the mean of the members' capsule lengths (CapsNet) or softmax
// probabilities (baseline CNN).
// --experiment affnist --affnist FILE (repeatable: e.g. the 32 test batches, concatenated) evaluates
// the real affNIST MAT files as the 'affnist' set instead of the generated affNIST-style one.

import { writeFileAtomic } from '../io/files.ts';
import { loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import { acquireGpu } from '../gpu/node.ts';
import type { AnyCheckpoint } from '../io/checkpoint.ts';
import type { Dataset } from '../data/dataset.ts';
import { affnistOrientationWarning, loadAffnistFiles } from '../io/affnist-file.ts';
import { ensembleSet, twoLongest } from './ensemble.ts';
import { buildModel, checkBatchFits, inputMismatch, specOf, defaultShift, experimentCanvas, experimentEvalSets, loadExperimentData, parseExperiment, storedDataDir, type SetResult } from './experiments.ts';
import { checkStoredOptions, ruleFlag } from './run-options.ts';
import { UsageError, backendFlag, intFlag, outputFileFlag, parseFlags, pathFlag } from './args.ts';

export interface EvalReport {
  /** The checkpoint evaluated; for an ensemble, the first member's (all of them: `members`). */
  checkpoint: string;
  /** 'capsnet' or 'baseline'. */
  model: string;
  /** The checkpoint's training steps; for an ensemble, the first member's. */
  step: number;
  adapter: string;
  /** The experiment's test set in its form ('test'): mnist, fashion-mnist, affnist (MNIST centred in 40x40), multimnist (pairs, both right), cifar10 (centre crops). */
  experiment: string;
  count: number;
  accuracy: number;
  error: number;
  /** confusion[label][prediction] (not for multimnist) */
  confusion?: number[][];
  /** Every set evaluated: 'test', and for affnist also 'affnist' (the affNIST-style transformed set, or the --affnist files); multimnist adds `almost`. */
  sets: SetReport[];
  /** The real affNIST files (--affnist) evaluated as the 'affnist' set, in order; `affnistTranspose`: read with --affnist-transpose. */
  affnistFiles?: string[];
  affnistTranspose?: boolean;
  /**
   * An ensemble (several --checkpoint): each member's own results on the same sets. The fields
   * above are then the ensemble's: the mean of the members' capsule lengths (CapsNet) or softmax
   * probabilities (baseline CNN), scored like one model's.
   */
  members?: Array<{ checkpoint: string; step: number; accuracy: number; error: number; sets: SetReport[] }>;
  /**
   * Per example: the label (multimnist: both `labels`), the prediction (multimnist: the two
   * longest, longest first) and the class scores: CapsNet's capsule `lengths`, the baseline's
   * `logits`; an ensemble's mean `lengths` (CapsNet) or mean softmax `probabilities` (baseline).
   */
  images?: Array<{
    label?: number; labels?: [number, number]; prediction?: number; predictions?: [number, number];
    lengths?: number[]; logits?: number[]; probabilities?: number[];
  }>;
}

export interface SetReport { split: string; count: number; accuracy: number; error: number; almost?: number }

/** One --checkpoint of the command: the file, its contents and its checked stored run options. */
export interface Member {
  path: string;
  ckpt: AnyCheckpoint;
  stored: ReturnType<typeof checkStoredOptions> | null;
}

/**
 * The --checkpoint files of an ensemble (eval) or an average, parameters only (Adam's moments are
 * twice their size and neither command uses them, nor a --ema run's moving average), with the stored run options that say their task.
 * Errors are UsageErrors naming `command` and the file.
 */
export async function loadMembers(paths: readonly string[], command: string): Promise<Member[]> {
  const members: Member[] = [];
  for (const path of paths) {
    let ckpt: AnyCheckpoint;
    try {
      ckpt = await loadAnyCheckpoint(path);
    } catch (error) {
      throw new UsageError(`${command}: ${(error as Error).message}`);
    }
    delete ckpt.optimizer;
    delete ckpt.ema; // a run's moving average (--ema): its own file, ema.safetensors, is the model to give
    const stored = ckpt.training?.options === undefined ? null : checkStoredOptions(ckpt.training.options, path, command, ['experiment', 'testSeed', 'maxShift', 'data']);
    members.push({ path, ckpt, stored });
  }
  return members;
}

/** Number of classes a checkpoint's network scores. */
const classesOf = (ckpt: AnyCheckpoint): number => (ckpt.model === 'baseline' ? ckpt.config.classes : ckpt.config.digitCaps);

/**
 * An ensemble's checkpoints must describe the same task: the same experiment (as trained; mnist for
 * runs from before experiments), training data (--data: an mnist run on Fashion-MNIST's files is
 * another task), network kind (lengths and softmax probabilities do not average), number of
 * classes and input shape, and for multimnist the same shift (its test pairs are drawn with it).
 * The first one that differs from the first member is named.
 */
export function checkEnsembleMembers(members: ReadonlyArray<Pick<Member, 'path' | 'ckpt' | 'stored'>>, dataGiven = false, command = 'capsnet eval', group = 'an ensemble'): void {
  const describe = (m: Pick<Member, 'ckpt' | 'stored'>) => {
    const experiment = m.stored?.experiment ?? 'mnist';
    return {
      experiment,
      // An explicit --data names the test data for all: the same files may sit in different folders.
      data: dataGiven ? 'any' : typeof m.stored?.data === 'string' ? `--data ${m.stored.data}` : 'the default data',
      model: m.ckpt.model ?? 'capsnet',
      classes: classesOf(m.ckpt),
      'input shape': `${m.ckpt.config.inputChannels}x${m.ckpt.config.inputSize}x${m.ckpt.config.inputSize}`,
      shift: experiment === 'multimnist' ? m.stored?.maxShift ?? defaultShift(experiment) : 'any',
    };
  };
  const reference = describe(members[0]);
  for (const m of members.slice(1)) {
    const own = describe(m);
    for (const key of Object.keys(reference) as Array<keyof typeof reference>) {
      if (own[key] !== reference[key]) {
        throw new UsageError(
          `${command}: ${m.path}: ${key} ${own[key]} differs from ${members[0].path}'s ${reference[key]}; ` +
            `the checkpoints of ${group} must have the same experiment, data, model, classes and input shape (multimnist: and shift)` +
            (key === 'data' && command === 'capsnet eval' ? '; --data DIR scores them all on the same files' : ''),
        );
      }
    }
  }
}

export async function evalCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('eval', argv, {
    // Repeated for an ensemble: --checkpoint A --checkpoint B ...
    checkpoint: { type: 'string', multiple: true },
    data: { type: 'string' },
    experiment: { type: 'string' },
    'test-seed': { type: 'string' },
    limit: { type: 'string' },
    output: { type: 'string' },
    'batch-size': { type: 'string' },
    backend: { type: 'string' },
    // Real affNIST files, repeated for several (concatenated in order).
    affnist: { type: 'string', multiple: true },
    'affnist-transpose': { type: 'boolean' },
  });
  const paths = values.checkpoint ?? [];
  if (paths.length === 0) throw new UsageError('capsnet eval: --checkpoint FILE is required (repeat it for an ensemble)');
  for (const path of paths) pathFlag(path, '--checkpoint');
  pathFlag(values.data, '--data');
  outputFileFlag(values.output, '--output');
  const affnistPaths = values.affnist ?? [];
  for (const path of affnistPaths) pathFlag(path, '--affnist');
  const affnistTranspose = values['affnist-transpose'] ?? false;
  if (affnistTranspose && affnistPaths.length === 0) throw new UsageError('capsnet eval: --affnist-transpose applies to --affnist FILE, which is not given');
  const limit = values.limit === undefined ? null : intFlag(values.limit, '--limit', 1);
  const batchSize = intFlag(values['batch-size'], '--batch-size', 100);
  const backend = backendFlag(values.backend);
  const members = await loadMembers(paths, 'capsnet eval');
  checkEnsembleMembers(members, values.data !== undefined);
  if (values.data !== undefined) {
    // Not refused (the same files may sit in other folders), but not silent either.
    const trainedOn = (m: Member) => (typeof m.stored?.data === 'string' ? m.stored.data : 'the default data');
    const others = members.filter((m) => trainedOn(m) !== trainedOn(members[0]));
    if (others.length > 0) {
      console.error(`capsnet eval: warning: ${others.map((m) => `${m.path} was trained on ${trainedOn(m)}`).join('; ')}, ${members[0].path} on ${trainedOn(members[0])}; all are scored on --data ${values.data}`);
    }
  }
  // Default: the (first) checkpoint's experiment, test seed and data (runs from before experiments:
  // mnist). Every member is evaluated on that one test set.
  const { ckpt, stored } = members[0];
  const experiment = parseExperiment(values.experiment ?? stored?.experiment);
  const sameExperiment = (stored?.experiment ?? 'mnist') === experiment;
  const testSeed = values['test-seed'] !== undefined ? ruleFlag('testSeed', values['test-seed'], 1) : (sameExperiment ? stored?.testSeed : undefined) ?? 1;
  const maxShift = sameExperiment && typeof stored?.maxShift === 'number' ? stored.maxShift : defaultShift(experiment);
  // The run's own --data (an mnist run on Fashion-MNIST's IDX files is scored on Fashion-MNIST).
  const dataDir = values.data ?? (sameExperiment ? storedDataDir(stored?.data, members[0].path, 'capsnet eval') : null);
  let realAffnist: Dataset | undefined;
  if (affnistPaths.length > 0) {
    if (experiment !== 'affnist') {
      throw new UsageError(`capsnet eval: --affnist FILE evaluates real affNIST files in --experiment affnist; this evaluation's experiment is ${experiment}`);
    }
    try {
      realAffnist = loadAffnistFiles(affnistPaths, { transpose: affnistTranspose });
    } catch (error) {
      throw new UsageError(`capsnet eval: --affnist: ${(error as Error).message}`);
    }
    // A transposed file would still be evaluated, with a poor accuracy: say why it may be.
    const warning = affnistOrientationWarning(realAffnist, affnistPaths.length === 1 ? affnistPaths[0] : `--affnist (${affnistPaths.length} files)`, affnistTranspose);
    if (warning) console.error(`capsnet eval: warning: ${warning}`);
  }
  const { test } = loadExperimentData(experiment, dataDir, 'capsnet eval', ['test']);
  const canvas = experimentCanvas(experiment, test.height);
  if (test.channels !== ckpt.config.inputChannels || canvas !== ckpt.config.inputSize) {
    throw new UsageError(inputMismatch('capsnet eval', experiment, test, canvas, ckpt.config));
  }
  if (experiment === 'multimnist' && ckpt.model === 'baseline') throw new UsageError('capsnet eval --experiment multimnist: evaluates CapsNet only');
  const sets = experimentEvalSets(experiment, [['test', test]], testSeed, maxShift, limit, test.height, realAffnist);
  const kind = ckpt.model ?? 'capsnet';
  const J = classesOf(ckpt);
  const ctx = await acquireGpu({ backend });
  try {
    const batch = Math.min(batchSize, Math.max(...sets.map((set) => set.count)));
    for (const m of members) checkBatchFits(ctx, specOf(m.ckpt), batch, 'eval', '--batch-size', 'capsnet eval');
    const memberResults: SetResult[][] = [];
    for (const m of members) {
      const model = buildModel(ctx, specOf(m.ckpt), { params: m.ckpt.params });
      const results: SetResult[] = [];
      try {
        for (const set of sets) results.push(await set.run(model, Math.min(batch, set.count)));
      } finally {
        model.dispose();
      }
      memberResults.push(results);
    }
    const ensemble = members.length > 1;
    const results = ensemble ? sets.map((_, k) => ensembleSet(kind, memberResults.map((r) => r[k]), J)) : memberResults[0];
    const setReports = (rs: SetResult[]): SetReport[] => rs.map((r) => ({
      split: r.split, count: r.count, accuracy: r.accuracy, error: 1 - r.accuracy,
      ...(r.almost !== undefined ? { almost: r.almost / Math.max(1, r.count) } : {}),
    }));
    const result = results[0];
    const report: EvalReport = {
      checkpoint: members[0].path,
      model: kind,
      step: ckpt.step,
      adapter: ctx.adapter.name,
      experiment,
      count: result.count,
      accuracy: result.accuracy,
      error: 1 - result.accuracy,
      ...(result.confusion ? { confusion: result.confusion } : {}),
      sets: setReports(results),
      ...(realAffnist ? { affnistFiles: affnistPaths, affnistTranspose } : {}),
      ...(ensemble
        ? {
          members: members.map((m, i) => ({
            checkpoint: m.path, step: m.ckpt.step, accuracy: memberResults[i][0].accuracy, error: 1 - memberResults[i][0].accuracy, sets: setReports(memberResults[i]),
          })),
        }
        : {}),
    };
    // affnist reports two sets: name the first so that it is not read as the affNIST-style one.
    const what = experiment === 'mnist' ? 'test images' : experiment === 'affnist' ? `MNIST test images centred in ${canvas}x${canvas}` : `${experiment} test examples`;
    const percent = (x: number) => `${(100 * x).toFixed(2)}%`;
    if (ensemble) {
      members.forEach((m, i) => {
        const own = memberResults[i];
        console.log(`member ${i + 1}: accuracy ${percent(own[0].accuracy)}${own.slice(1).map((r) => `, ${r.split} ${percent(r.accuracy)}`).join('')}  (${m.path}, step ${m.ckpt.step})`);
      });
      const averaged = kind === 'baseline' ? 'softmax probabilities' : 'capsule lengths';
      console.log(`ensemble of ${members.length} checkpoints (mean ${averaged}): accuracy ${percent(result.accuracy)}  error ${percent(1 - result.accuracy)}  (${kind === 'baseline' ? 'baseline CNN, ' : ''}${result.count} ${what})`);
    } else {
      // A `capsnet average` file's step is its latest member's: say that it is a mean.
      // capsnet train --ema's ema.safetensors: a moving average since some step.
      const { averaged, movingAverage } = (ckpt.training ?? {}) as { averaged?: unknown; movingAverage?: { decay?: unknown; since?: unknown } };
      const mean = Array.isArray(averaged) ? `, the mean of ${averaged.length} checkpoints`
        : typeof movingAverage === 'object' && movingAverage !== null ? `, the moving average of the parameters since step ${String(movingAverage.since)} (decay ${String(movingAverage.decay)})`
        : '';
      console.log(`accuracy ${percent(result.accuracy)}  error ${percent(1 - result.accuracy)}  (${kind === 'baseline' ? 'baseline CNN, ' : ''}${result.count} ${what}, step ${ckpt.step}${mean})`);
    }
    if (result.almost !== undefined) console.log(`at least one of the two digits right: ${(100 * result.almost / Math.max(1, result.count)).toFixed(2)}%`);
    for (const r of results.slice(1)) {
      const about = r.split !== 'affnist' ? ''
        : realAffnist ? `: affNIST, ${affnistPaths.length === 1 ? affnistPaths[0] : `${affnistPaths.length} files`}`
        : ': the MNIST test set under random affine transforms';
      console.log(`${r.split} accuracy ${(100 * r.accuracy).toFixed(2)}%  error ${(100 * (1 - r.accuracy)).toFixed(2)}%  (${r.count} examples${about})`);
    }
    if (result.confusion) console.log(formatConfusion(result.confusion));
    if (values.output) {
      const scoreName = kind === 'baseline' ? (ensemble ? 'probabilities' : 'logits') : 'lengths';
      const { scores, predictions, labels, secondLabels } = result;
      if (scores && labels) {
        report.images = Array.from({ length: result.count }, (_, i) => {
          const row = scores.subarray(i * J, (i + 1) * J);
          const classes = secondLabels
            ? { labels: [labels[i], secondLabels[i]] as [number, number], predictions: twoLongest(row) }
            : { label: labels[i], prediction: predictions![i] };
          return { ...classes, [scoreName]: Array.from(row) };
        });
      }
      await writeFileAtomic(values.output, new TextEncoder().encode(JSON.stringify(report) + '\n'));
      console.log(`wrote ${values.output}`);
    }
    return 0;
  } finally {
    ctx.destroy();
  }
}

export function formatConfusion(confusion: number[][]): string {
  const J = confusion.length;
  const width = Math.max(4, ...confusion.flat().map((n) => String(n).length + 1));
  const pad = (s: string | number) => String(s).padStart(width);
  const lines = [`confusion (rows: label, columns: prediction)`, `   ${Array.from({ length: J }, (_, j) => pad(j)).join('')}`];
  confusion.forEach((row, i) => lines.push(`${String(i).padStart(2)} ${row.map(pad).join('')}`));
  return lines.join('\n');
}
