// `capsnet start` (what `npm start` runs): train CapsNet on MNIST with the paper's recipe for a budget
// that finishes in reasonable time without a GPU, evaluate on the test set, draw the figures, and
// say where everything is. Run again, it continues an unfinished run (or just redraws a finished one).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import { readMetrics } from '../io/metrics.ts';
import { CHECKPOINT_FILE, METRICS_FILE, train } from './train.ts';
import { figures } from './figures.ts';
import { formatDuration } from './progress.ts';
import { UsageError, backendFlag, intFlag, outputDirFlag, parseFlags } from './args.ts';

/**
 * The default budget: the paper's recipe (batch 128, Adam 1e-3 decayed x0.96 every 2000 steps,
 * shifts of 2 pixels) cut to 100 steps (12,800 images, about a fifth of an epoch). On a 2-core
 * machine without a GPU a step of batch 128 takes 15-30 s, so this plus the test-set evaluation
 * takes roughly 30-60 minutes; `--full` runs the whole schedule; `--steps N` any other budget.
 */
export const START_STEPS = 100;
/** The full recipe: 50 epochs of 468 steps at batch 128 (resumable: run `capsnet start --full` again). */
export const FULL_EPOCHS = 50;
/** 468 steps per epoch: 60,000 MNIST training images in batches of 128 (the last 96 wait for the next epoch). */
export const FULL_STEPS = FULL_EPOCHS * Math.floor(60000 / 128);

/**
 * How many steps `start` trains to, and whether `out` already holds them. Run again, it goes on to
 * the budget asked for, or (no --full or --steps) to the one the run in `out` was started with; a
 * run already past the budget is only evaluated and drawn again.
 */
export function startBudget(asked: { full: boolean; steps?: number }, previous: { step: number; totalSteps?: number } | null): { target: number; done: boolean } {
  const target = asked.full ? FULL_STEPS : asked.steps ?? previous?.totalSteps ?? START_STEPS;
  return { target, done: previous !== null && previous.step >= target };
}

export async function startCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('start', argv, {
    out: { type: 'string' },
    full: { type: 'boolean' },
    steps: { type: 'string' },
    backend: { type: 'string' },
  });
  backendFlag(values.backend); // checked (and clipped in its error) before anything is printed
  if (values.full && values.steps !== undefined) throw new UsageError('capsnet start: give --full (the whole schedule) or --steps N, not both');
  const stepsAsked = values.steps !== undefined ? intFlag(values.steps, '--steps', START_STEPS) : undefined;
  // After the other flags; the default folder is checked as a given one (a file named runs is refused up front).
  const out = outputDirFlag(values.out ?? join('runs', values.full ? 'mnist-full' : 'mnist'), '--out');
  const checkpoint = join(out, CHECKPOINT_FILE);
  let previous: { step: number; totalSteps?: number } | null = null;
  if (existsSync(checkpoint)) {
    let ckpt;
    try {
      ckpt = await loadAnyCheckpoint(checkpoint);
    } catch (error) {
      throw new UsageError(`capsnet start: ${out} holds a checkpoint that cannot be continued: ${(error as Error).message}\n  Choose another --out, or move that folder away.`);
    }
    const total = (ckpt.training?.options as { totalSteps?: unknown } | undefined)?.totalSteps;
    previous = { step: ckpt.step, ...(Number.isInteger(total) ? { totalSteps: total as number } : {}) };
  }
  const { target, done } = startBudget({ full: values.full === true, steps: stepsAsked }, previous);
  const backend = values.backend ? ['--backend', values.backend] : [];
  const started = performance.now();
  // The banner names the paper's recipe only for a new run: a run already in --out keeps its own.
  if (previous === null) {
    process.stderr.write(
      values.full
        ? `capsnet start --full: the paper's recipe for ${FULL_EPOCHS} epochs into ${out}; stop it any time and run the same command to continue.\n`
        : `capsnet start: the paper's recipe for ${target} steps of batch 128 into ${out}, sized for a machine without a GPU.\n` +
          `  The full recipe: \`npx capsnet start --full\` (${FULL_EPOCHS} epochs; resumable).\n`,
    );
  } else {
    process.stderr.write(done
      ? `capsnet start: ${out} holds a run already at step ${previous.step} (${target} asked); drawing its figures again (the test accuracy below is its last evaluation, from ${METRICS_FILE}).\n`
      : `capsnet start: continuing the run in ${out} (its own recipe) from step ${previous.step} to ${target}${values.full ? '; stop it any time and run the same command to continue' : ''}.\n`);
  }
  let result = null;
  if (!done) {
    result = await train(['--out', out, '--steps', String(target), ...backend, ...(previous !== null ? ['--resume'] : [])]);
    if (result.stopped) return 130;
  }
  const files = await figures(checkpoint, join(out, 'figures'), { backend: values.backend as never });
  // A checkpoint copied in without its metrics log: its accuracy is simply not known here.
  const { records } = existsSync(join(out, METRICS_FILE)) ? await readMetrics(join(out, METRICS_FILE)) : { records: [] };
  const lastEval = [...records].reverse().find((r) => r.type === 'eval' && r.split === 'test' && r.weights === undefined) as { accuracy?: number; step?: number } | undefined;
  const seconds = (performance.now() - started) / 1000;
  const lines = [
    '',
    'capsnet start: done',
    `  adapter        ${result?.adapter ?? 'see metrics.jsonl'}`,
    `  time           ${formatDuration(seconds)}`,
    `  test accuracy  ${lastEval?.accuracy !== undefined ? `${(100 * lastEval.accuracy).toFixed(2)}% after ${lastEval.step} steps` : 'not measured'}`,
    `  checkpoint     ${checkpoint}`,
    `  metrics        ${join(out, METRICS_FILE)}`,
    ...files.map((f) => `  figure         ${f}`),
  ];
  console.log(lines.join('\n'));
  return 0;
}
