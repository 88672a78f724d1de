// `capsnet figures`: what a trained CapsNet learned, as files: the training curves (SVG, from the
// run's metrics log), test digits next to their reconstructions (PNG), and the paper's
// dimension-perturbation grid: each of the 16 dimensions of the winning capsule moved from -0.25 to
// 0.25 in steps of 0.05 and decoded (a 16 x 11 image per digit, figure 4 of the paper).
// A MultiMNIST CapsNet gets, instead of those two, the paper's figure 5: test pairs next to the two
// reconstructions overlaid in red and green (multimnist-reconstructions.png, with a JSON sidecar
// of labels and reconstructed classes).
// A baseline CNN checkpoint (or a CapsNet without a decoder) gets the curves only: the images need
// capsules and a decoder, and a note on stderr says which figures were skipped and why.

import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../io/files.ts';
import { loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import type { AnyCheckpoint } from '../io/checkpoint.ts';
import type { CapsNetConfig } from '../model/config.ts';
import { defaultShift, loadExperimentData, multiMnistOptions, parseExperiment, storedDataDir } from './experiments.ts';
import { twoLongest } from './ensemble.ts';
import { MultiMnistTestSet } from '../data/multimnist.ts';
import { topKHits } from '../ops/losses.ts';
import { checkStoredOptions } from './run-options.ts';
import { fillBatch, type Dataset } from '../data/dataset.ts';
import { readMetrics } from '../io/metrics.ts';
import { lineChartSvg } from '../io/plot.ts';
import { encodePng } from '../io/png.ts';
import { type RasterImage, imageGrid, rgbGrid, upscaleNearest } from '../io/images.ts';
import { acquireGpu, resolveBackend } from '../gpu/node.ts';
import { CapsNet } from '../model/capsnet.ts';
import { type Tensor, fromArray, tidy } from '../tensor.ts';
import { noGrad } from '../autograd/tape.ts';
import { UsageError, backendFlag, outputDirFlag, parseFlags, pathFlag } from './args.ts';
import { METRICS_FILE } from './train.ts';

export const PERTURBATION_STEPS = Array.from({ length: 11 }, (_, k) => Math.round((-0.25 + 0.05 * k) * 100) / 100);

export async function figuresCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('figures', argv, {
    checkpoint: { type: 'string' },
    out: { type: 'string' },
    metrics: { type: 'string' },
    data: { type: 'string' },
    backend: { type: 'string' },
  });
  if (!values.checkpoint) throw new UsageError('capsnet figures: --checkpoint FILE is required');
  if (!values.out) throw new UsageError('capsnet figures: --out DIR is required');
  for (const flag of ['checkpoint', 'metrics', 'data'] as const) pathFlag(values[flag], `--${flag}`);
  outputDirFlag(values.out, '--out');
  const files = await figures(values.checkpoint, values.out, {
    metrics: values.metrics,
    data: values.data,
    backend: backendFlag(values.backend),
  });
  for (const f of files) console.log(`wrote ${f}`);
  return 0;
}

export async function figures(
  checkpointPath: string,
  outDir: string,
  options: { metrics?: string; data?: string; backend?: ReturnType<typeof resolveBackend> } = {},
): Promise<string[]> {
  let ckpt;
  try {
    ckpt = await loadAnyCheckpoint(checkpointPath);
  } catch (error) {
    throw new UsageError(`capsnet figures: ${(error as Error).message}`);
  }
  // Everything is checked (the metrics log, the stored options, the data) before anything is written.
  const metricsPath = options.metrics ?? join(dirname(checkpointPath), METRICS_FILE);
  if (options.metrics && !existsSync(metricsPath)) throw new UsageError(`capsnet figures: --metrics ${options.metrics} does not exist`);
  const curveSvgs = existsSync(metricsPath) ? await curves(metricsPath) : [];
  if (curveSvgs.length === 0 && !existsSync(metricsPath)) process.stderr.write(`capsnet figures: training curves skipped: no ${METRICS_FILE} beside ${checkpointPath} (capsnet figures --metrics FILE draws them from a log kept elsewhere)\n`);
  const plan = figurePlan(ckpt, checkpointPath, options.data);

  const written: string[] = [];
  // A CAPSNET_BACKEND typo is refused (exit 2) now, after every other check and before the curves
  // are written, not at acquireGpu after them. (Not in backendFlag: the fuzzer's sentinel backend
  // must be reached only once every flag has been checked.)
  resolveBackend(options.backend);
  mkdirSync(outDir, { recursive: true });
  const write = async (name: string, data: Uint8Array | string) => {
    const path = join(outDir, name);
    await writeFileAtomic(path, typeof data === 'string' ? new TextEncoder().encode(data) : data);
    written.push(path);
  };
  for (const [name, svg] of curveSvgs) await write(name, svg);

  const skipped = (why: string) => process.stderr.write(`capsnet figures: reconstructions and perturbation grids skipped: ${why}\n`);
  if (plan.kind === 'skip') {
    skipped(plan.why);
    return written;
  }
  const { config, test } = plan;
  if (plan.kind === 'multimnist') {
    const ctx = await acquireGpu({ backend: options.backend });
    try {
      const model = new CapsNet(ctx, config, plan.params);
      const figure = await multiMnistFigure(model, test, plan.testSeed, plan.maxShift);
      model.dispose();
      await write(MULTIMNIST_FIGURE, encodePng(figure.image.width, figure.image.height, 3, figure.image.pixels));
      await write(MULTIMNIST_FIGURE.replace(/\.png$/, '.json'), JSON.stringify({ checkpoint: checkpointPath, ...figure.sidecar }, null, 1) + '\n');
    } finally {
      ctx.destroy();
    }
    skipped('the single-digit reconstructions and perturbation grids draw 28x28 test digits; a MultiMNIST model gets the two-colour figure of its test pairs');
    return written;
  }
  const ctx = await acquireGpu({ backend: options.backend });
  try {
    const model = new CapsNet(ctx, config, plan.params);
    const S = config.inputSize;
    const pixels = config.inputChannels * S * S;
    // Test digits and their reconstructions from the longest capsule: rows of originals, then reconstructions.
    const N = 32;
    const images = new Float32Array(N * pixels);
    const labels = new Int32Array(N);
    const order = Uint32Array.from({ length: test.count }, (_, i) => i);
    fillBatch(test, order, 0, images, labels);
    const recon = await readAndDispose(noGrad(() => tidy(() => {
      const x = fromArray(ctx, [N, 1, S, S], images, 'images');
      const { v } = model.forward(x);
      return model.decode(v, 'longest');
    })));
    const pairs = new Float32Array(2 * N * pixels);
    for (let row = 0; row < N / 8; row++) {
      pairs.set(images.subarray(row * 8 * pixels, (row + 1) * 8 * pixels), 2 * row * 8 * pixels);
      pairs.set(recon.subarray(row * 8 * pixels, (row + 1) * 8 * pixels), (2 * row + 1) * 8 * pixels);
    }
    const grid = upscaleNearest(imageGrid(pairs, 2 * N, S, S, { columns: 8 }), 3);
    await write('reconstructions.png', encodePng(grid.width, grid.height, 1, grid.pixels));

    // The perturbation grids, one per class, from the first test image of that class.
    for (let digit = 0; digit < config.digitCaps; digit++) {
      const index = firstOfClass(test, digit);
      if (index < 0) continue;
      const tiles = await perturbationGrid(model, test, index);
      const img = upscaleNearest(imageGrid(tiles, config.digitDim * PERTURBATION_STEPS.length, S, S, { columns: PERTURBATION_STEPS.length, padding: 1 }), 2);
      await write(`perturbation-${digit}.png`, encodePng(img.width, img.height, 1, img.pixels));
    }
    model.dispose();
  } finally {
    ctx.destroy();
  }
  return written;
}

export const MULTIMNIST_FIGURE = 'multimnist-reconstructions.png';

/** The MultiMNIST figure's layout: pairs, cells per row (input, overlay, input, ...), padding and magnification. */
export const MULTIMNIST_LAYOUT = Object.freeze({ pairs: 16, columns: 8, padding: 2, scale: 3 });

export interface MultiMnistFigurePair {
  /** The test example's number in the generated set (MultiMnistTestSet, the run's test seed and shift). */
  example: number;
  /** The true classes: the first digit, the second. */
  labels: [number, number];
  /** The capsules reconstructed: in red, in green (the two longest). */
  reconstructed: [number, number];
  /** Both digits are the two longest capsules. */
  correct: boolean;
  lengths: number[];
}

/**
 * The paper's figure 5 for a MultiMNIST model: for the first MULTIMNIST_LAYOUT.pairs test pairs,
 * the input canvas (grey) next to the decoder's reconstructions from the two longest capsules,
 * overlaid, one in the red channel and one in the green (yellow where both draw). The colours
 * follow the digits: a capsule of the first digit's class is red, one of the second's green; a
 * wrong capsule takes the colour left (the longer one red when neither is right). Cell 2k is pair
 * k's input, cell 2k + 1 its reconstructions; `sidecar` lists the labels and capsules per pair.
 */
export async function multiMnistFigure(
  model: CapsNet, test: Dataset, testSeed: number, maxShift: number,
): Promise<{ image: RasterImage; sidecar: { caption: string; testSeed: number; maxShift: number; layout: typeof MULTIMNIST_LAYOUT & { cell: number }; pairs: MultiMnistFigurePair[] } }> {
  const { ctx, config } = model;
  const S = config.inputSize;
  const J = config.digitCaps;
  const { pairs: N, columns, padding, scale } = MULTIMNIST_LAYOUT;
  const set = new MultiMnistTestSet(test, N, testSeed, multiMnistOptions(maxShift));
  const batch = set.createBatch(N, J);
  set.fill(0, batch);
  const { v, lengths } = noGrad(() => tidy(() => model.forward(fromArray(ctx, [N, 1, S, S], batch.images, 'pairs'))));
  const lengthValues = await readAndDispose(lengths);
  const red = new Int32Array(N);
  const green = new Int32Array(N);
  const pairs: MultiMnistFigurePair[] = [];
  for (let k = 0; k < N; k++) {
    const row = lengthValues.subarray(k * J, (k + 1) * J);
    const labels: [number, number] = [batch.firstLabels[k], batch.secondLabels[k]];
    [red[k], green[k]] = redGreen(twoLongest(row), labels);
    pairs.push({
      example: k, labels, reconstructed: [red[k], green[k]], correct: topKHits(row, labels) === 2, lengths: Array.from(row),
    });
  }
  const [first, second] = await Promise.all([red, green].map((classes) => noGrad(() => tidy(() => model.decode(v, classes)))).map(readAndDispose));
  v.dispose();
  // Three grey layers: the input (white) in the even cells, the reconstructions (red, green) in the odd ones.
  const plane = S * S;
  const layer = () => new Float32Array(2 * N * plane);
  const [input, redLayer, greenLayer] = [layer(), layer(), layer()];
  for (let k = 0; k < N; k++) {
    input.set(batch.images.subarray(k * plane, (k + 1) * plane), 2 * k * plane);
    redLayer.set(first.subarray(k * plane, (k + 1) * plane), (2 * k + 1) * plane);
    greenLayer.set(second.subarray(k * plane, (k + 1) * plane), (2 * k + 1) * plane);
  }
  const image = rgbGrid([
    { images: input, color: [1, 1, 1] }, { images: redLayer, color: [1, 0, 0] }, { images: greenLayer, color: [0, 1, 0] },
  ], 2 * N, S, S, { columns, padding, scale, background: 0 });
  const caption =
    `MultiMNIST test pairs (test seed ${testSeed}, shifts up to ${maxShift}): each input next to the decoder's reconstructions ` +
    'from the two longest capsules, in red and green (yellow where both); labels and reconstructed classes per pair below';
  return { image, sidecar: { caption, testSeed, maxShift, layout: { ...MULTIMNIST_LAYOUT, cell: S }, pairs } };
}

function firstOfClass(ds: Dataset, label: number): number {
  for (let i = 0; i < ds.count; i++) if (ds.labels[i] === label) return i;
  return -1;
}

/**
 * The decoder's images [digitDim * 11, pixels] for example `index`: row d moves dimension d of the
 * winning capsule through PERTURBATION_STEPS, the other capsules masked out as at test time.
 */
export async function perturbationGrid(model: CapsNet, ds: Dataset, index: number): Promise<Float32Array> {
  const { ctx, config } = model;
  const S = config.inputSize;
  const J = config.digitCaps;
  const D = config.digitDim;
  const image = new Float32Array(config.inputChannels * S * S);
  fillBatch(ds, [index], 0, image, new Int32Array(1));
  const out = noGrad(() => tidy(() => model.forward(fromArray(ctx, [1, config.inputChannels, S, S], image, 'image'))));
  const v = await readAndDispose(out.v);
  const lengths = await readAndDispose(out.lengths);
  let winner = 0;
  for (let j = 1; j < J; j++) if (lengths[j] > lengths[winner]) winner = j;
  const K = PERTURBATION_STEPS.length;
  const batch = new Float32Array(D * K * J * D);
  for (let d = 0; d < D; d++) {
    for (let k = 0; k < K; k++) {
      const row = (d * K + k) * J * D;
      batch.set(v, row);
      batch[row + winner * D + d] += PERTURBATION_STEPS[k];
    }
  }
  const selected = new Int32Array(D * K).fill(winner);
  return readAndDispose(noGrad(() => tidy(() => model.decode(fromArray(ctx, [D * K, J, D], batch, 'perturbed'), selected))));
}

async function readAndDispose(t: Tensor): Promise<Float32Array> {
  try {
    return await t.read();
  } finally {
    t.dispose();
  }
}

type FigurePlan =
  | { kind: 'skip'; why: string }
  | { kind: 'single'; config: CapsNetConfig; params: Record<string, Float32Array>; test: Dataset }
  | { kind: 'multimnist'; config: CapsNetConfig; params: Record<string, Float32Array>; test: Dataset; testSeed: number; maxShift: number };

/** What `figures` can draw beside the curves, and the test data it draws from (the run's own). */
function figurePlan(ckpt: AnyCheckpoint, checkpointPath: string, dataFlag: string | undefined): FigurePlan {
  if (ckpt.model === 'baseline') return { kind: 'skip', why: 'the checkpoint holds the baseline CNN, which has no capsules and no decoder (only the training curves apply)' };
  const { config, params } = ckpt;
  if (!config.decoder) return { kind: 'skip', why: 'this CapsNet was trained without a decoder (--no-recon)' };
  if (config.inputChannels !== 1) return { kind: 'skip', why: `the images have ${config.inputChannels} channels; these figures are grey-level grids` };
  const run = ckpt.training?.options === undefined ? null : checkStoredOptions(ckpt.training.options, checkpointPath, 'capsnet figures', ['experiment', 'data']);
  const experiment = parseExperiment(run?.experiment);
  const dataDir = dataFlag ?? storedDataDir(run?.data, checkpointPath, 'capsnet figures');
  if (experiment === 'multimnist') {
    // The run's test pairs: its test seed and shift (checked here: only MultiMNIST needs them).
    const pairsOf = checkStoredOptions(ckpt.training!.options, checkpointPath, 'capsnet figures', ['testSeed', 'maxShift']);
    const { test } = loadExperimentData('multimnist', dataDir, 'capsnet figures', ['test']);
    return { kind: 'multimnist', config, params, test, testSeed: pairsOf.testSeed ?? 1, maxShift: pairsOf.maxShift ?? defaultShift('multimnist') };
  }
  // Fashion-MNIST for a fashion-mnist run, MNIST (or the run's --data) otherwise.
  const { test } = loadExperimentData(experiment === 'fashion-mnist' ? experiment : 'mnist', dataDir, 'capsnet figures', ['test']);
  if (test.height !== config.inputSize || test.width !== config.inputSize) {
    return { kind: 'skip', why: `the model's inputs are ${config.inputSize}x${config.inputSize} (--experiment ${experiment}), these figures draw the ${test.height}x${test.width} test images as they are` };
  }
  return { kind: 'single', config, params, test };
}

/** loss.svg and accuracy.svg from a metrics log. */
export async function curves(metricsPath: string): Promise<Array<[string, string]>> {
  const { records } = await readMetrics(metricsPath);
  const trainRecords = records.filter((r) => r.type === 'train') as Array<Record<string, number>>;
  const evals = records.filter((r) => r.type === 'eval') as Array<Record<string, number | string>>;
  const smooth = (key: string) => {
    const out: Array<[number, number]> = [];
    const window: number[] = [];
    for (const r of trainRecords) {
      window.push(r[key]);
      if (window.length > 20) window.shift();
      out.push([r.step, window.reduce((a, b) => a + b, 0) / window.length]);
    }
    return out;
  };
  // The baseline CNN's records have only the total (cross-entropy) loss.
  const has = (key: string) => trainRecords.length > 0 && trainRecords.every((r) => typeof r[key] === 'number');
  const loss = lineChartSvg({
    title: 'Training loss (mean of the last 20 steps)',
    xLabel: 'step',
    yLabel: 'loss',
    logY: true,
    series: [
      { name: 'total', points: smooth('loss') },
      ...(has('marginLoss') ? [{ name: 'margin', points: smooth('marginLoss') }] : []),
      ...(has('reconLoss') ? [{ name: 'reconstruction', points: smooth('reconLoss') }] : []),
    ],
  });
  const accuracy = lineChartSvg({
    title: 'Accuracy',
    xLabel: 'step',
    yLabel: 'accuracy (%)',
    series: [
      { name: 'training batches (mean of 20)', points: smooth('accuracy').map(([x, y]) => [x, 100 * y] as [number, number]) },
      // --ema runs: the moving average's scores are their own series (absent otherwise).
      ...[['validation', 'weights'], ['test', 'weights'], ['validation', 'ema'], ['test', 'ema']].map(([split, weights]) => ({
        name: weights === 'ema' ? `${split} (moving average)` : split,
        points: evals.filter((e) => e.split === split && (e.weights ?? 'weights') === weights).map((e) => [Number(e.step), 100 * Number(e.accuracy)] as [number, number]),
      })).filter((series, k) => k < 2 || series.points.length > 0),
    ],
  });
  return [['loss.svg', loss], ['accuracy.svg', accuracy]];
}

/**
 * The colours of a MultiMNIST pair's two reconstructions, from its two longest capsules (longest
 * first): red shows the first digit's capsule and green the second's when either is among them
 * (whichever is longer), the other capsule takes the other colour.
 */
export function redGreen([p, q]: readonly [number, number], labels: readonly [number, number]): [number, number] {
  return q === labels[0] || p === labels[1] ? [q, p] : [p, q];
}
