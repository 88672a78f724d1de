// `capsnet eval`: test accuracy, error and confusion matrix of a checkpoint (ours, or any file with
// the model tensors in the layout of DESIGN.md; CapsNet or the baseline CNN, as its metadata says),
// and optionally every image's class scores (capsule lengths, or the baseline's logits).

import { writeFileAtomic } from '../io/files.ts';
import { loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import { loadMnist } from '../io/idx-file.ts';
import { subset } from '../data/dataset.ts';
import { acquireGpu, resolveBackend } from '../gpu/node.ts';
import { CapsNet } from '../model/capsnet.ts';
import { BaselineCNN } from '../model/baseline.ts';
import { classCount, type TrainableModel } from '../train/trainer.ts';
import { BatchTooLargeError, checkBatchSize, memoryDevice } from '../train/memory.ts';
import { UsageError, intFlag, parseFlags } from './args.ts';
import { evaluateDataset } from './train.ts';

export interface EvalReport {
  checkpoint: string;
  /** 'capsnet' or 'baseline'. */
  model: string;
  step: number;
  adapter: string;
  count: number;
  accuracy: number;
  error: number;
  /** confusion[label][prediction] */
  confusion: number[][];
  /** Per image: CapsNet's capsule `lengths`, or the baseline's `logits`. */
  images?: Array<{ label: number; prediction: number; lengths?: number[]; logits?: number[] }>;
}

export async function evalCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('eval', argv, {
    checkpoint: { type: 'string' },
    data: { type: 'string' },
    limit: { type: 'string' },
    output: { type: 'string' },
    'batch-size': { type: 'string' },
    backend: { type: 'string' },
  });
  if (!values.checkpoint) throw new UsageError('capsnet eval: --checkpoint FILE is required');
  const limit = values.limit === undefined ? null : intFlag(values.limit, '--limit', 1);
  const batchSize = intFlag(values['batch-size'], '--batch-size', 100);
  const backend = values.backend === undefined ? undefined : resolveBackend(values.backend);
  let ckpt;
  try {
    ckpt = await loadAnyCheckpoint(values.checkpoint);
  } catch (error) {
    throw new UsageError(`capsnet eval: ${(error as Error).message}`);
  }
  let test;
  try {
    test = loadMnist(values.data).test;
  } catch (error) {
    throw new UsageError(`capsnet eval: ${(error as Error).message}`);
  }
  if (limit !== null) test = subset(test, Math.min(limit, test.count));
  if (test.channels !== ckpt.config.inputChannels || test.height !== ckpt.config.inputSize) {
    throw new UsageError(`capsnet eval: the data's images are ${test.channels}x${test.height}x${test.width}, the model expects ${ckpt.config.inputChannels}x${ckpt.config.inputSize}x${ckpt.config.inputSize}`);
  }
  const kind = ckpt.model ?? 'capsnet';
  const ctx = await acquireGpu({ backend });
  try {
    const batch = Math.min(batchSize, test.count);
    try {
      const spec = ckpt.model === 'baseline' ? { kind: 'baseline' as const, config: ckpt.config } : { kind: 'capsnet' as const, config: ckpt.config };
      checkBatchSize(spec, batch, 'eval', memoryDevice(ctx), { flag: '--batch-size', adapter: ctx.adapter.name });
    } catch (error) {
      if (error instanceof BatchTooLargeError) throw new UsageError(`capsnet eval: ${error.message}`);
      throw error;
    }
    const model: TrainableModel = ckpt.model === 'baseline' ? new BaselineCNN(ctx, ckpt.config, ckpt.params) : new CapsNet(ctx, ckpt.config, ckpt.params);
    const result = await evaluateDataset(model, test, batch, 'eval');
    const J = classCount(model);
    model.dispose();
    const report: EvalReport = {
      checkpoint: values.checkpoint,
      model: kind,
      step: ckpt.step,
      adapter: ctx.adapter.name,
      count: result.count,
      accuracy: result.accuracy,
      error: 1 - result.accuracy,
      confusion: result.confusion,
    };
    console.log(`accuracy ${(100 * result.accuracy).toFixed(2)}%  error ${(100 * (1 - result.accuracy)).toFixed(2)}%  (${kind === 'baseline' ? 'baseline CNN, ' : ''}${result.count} test images, step ${ckpt.step})`);
    console.log(formatConfusion(result.confusion));
    if (values.output) {
      const scoreName = kind === 'baseline' ? 'logits' : 'lengths';
      report.images = Array.from({ length: result.count }, (_, i) => ({
        label: test.labels[i],
        prediction: result.predictions[i],
        [scoreName]: Array.from(result.scores.subarray(i * J, (i + 1) * J)),
      }));
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
