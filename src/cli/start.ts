// `capsnet start` (what `npm start` runs): train CapsNet on MNIST with the paper's recipe for a budget
// that finishes in reasonable time without a GPU, evaluate on the test set, draw the figures, and
// say where everything is. Run again, it continues an unfinished run (or just redraws a finished one).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../io/checkpoint-file.ts';
import { readMetrics } from '../io/metrics.ts';
import { CHECKPOINT_FILE, METRICS_FILE, train } from './train.ts';
import { figures } from './figures.ts';
import { formatDuration } from './progress.ts';
import { backendFlag, intFlag, parseFlags, pathFlag } from './args.ts';

/**
 * The default budget: the paper's recipe (batch 128, Adam 1e-3 decayed x0.96 every 2000 steps,
 * shifts of 2 pixels) cut to 100 steps (12,800 images, about a fifth of an epoch). On a 2-core
 * machine without a GPU a step of batch 128 takes 15-30 s, so this plus the test-set evaluation
 * takes roughly 30-60 minutes; `--full` runs the whole schedule; `--steps N` any other budget.
 */
export const START_STEPS = 100;
/** The full recipe: 50 epochs of 468 steps at batch 128 (resumable: run `capsnet start --full` again). */
export const FULL_EPOCHS = 50;

export async function startCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('start', argv, {
    out: { type: 'string' },
    full: { type: 'boolean' },
    steps: { type: 'string' },
    backend: { type: 'string' },
  });
  const out = pathFlag(values.out, '--out') ?? join('runs', values.full ? 'mnist-full' : 'mnist');
  backendFlag(values.backend); // checked (and clipped in its error) before anything is printed
  const checkpoint = join(out, CHECKPOINT_FILE);
  const budget = values.full ? ['--epochs', String(FULL_EPOCHS)] : ['--steps', String(intFlag(values.steps, '--steps', START_STEPS))];
  const backend = values.backend ? ['--backend', values.backend] : [];
  const started = performance.now();
  process.stderr.write(
    values.full
      ? `capsnet start --full: the paper's recipe for ${FULL_EPOCHS} epochs into ${out}; stop it any time and run the same command to continue.\n`
      : `capsnet start: the paper's recipe for ${budget[1]} steps of batch 128 into ${out}, sized for a machine without a GPU.\n` +
        `  The full recipe: \`npx capsnet start --full\` (${FULL_EPOCHS} epochs; resumable).\n`,
  );
  let result = null;
  let done = false;
  if (existsSync(checkpoint)) {
    const ckpt = await loadCheckpoint(checkpoint);
    const total = (ckpt.training?.options as { totalSteps?: number } | undefined)?.totalSteps;
    done = total !== undefined && ckpt.step >= total;
    process.stderr.write(done ? `capsnet start: ${out} holds a finished run (${ckpt.step} steps); evaluating and drawing it again.\n` : `capsnet start: continuing the run in ${out} from step ${ckpt.step}.\n`);
  }
  if (!done) {
    result = await train(['--out', out, ...budget, ...backend, ...(existsSync(checkpoint) ? ['--resume'] : [])]);
    if (result.stopped) return 130;
  }
  const files = await figures(checkpoint, join(out, 'figures'), { backend: values.backend as never });
  const { records } = await readMetrics(join(out, METRICS_FILE));
  const lastEval = [...records].reverse().find((r) => r.type === 'eval' && r.split === 'test') as { accuracy?: number; step?: number } | undefined;
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
