// `capsnet predict`: classifies the user's own digit images (PNG) with a checkpoint, CapsNet or the
// baseline CNN. Each image becomes what the model was trained on the way MNIST's digits were made
// (src/web/preprocess.ts, the web app's drawing pad does the same): grey, ink bright on a black
// background (a light background is inverted, an off-black one taken away), the ink scaled to a
// 20x20 box and centred by mass in 28x28, then centred in the model's canvas (affnist: 40x40,
// multimnist: 36x36). --as-is skips all that for images already in the model's input form.
// --inputs DIR writes what the model saw, to check it.

import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { acquireGpu } from '../gpu/node.ts';
import { loadAnyCheckpoint } from '../io/checkpoint-file.ts';
import { readRegularFile } from '../io/idx-file.ts';
import { decodePng, encodePng, type PngImage } from '../io/png.ts';
import { writeFileAtomic } from '../io/files.ts';
import { normalizeDrawing } from '../web/preprocess.ts';
import { softmaxRows } from './ensemble.ts';
import { evaluate } from '../train/trainer.ts';
import { buildModel, checkBatchFits, specOf } from './experiments.ts';
import { UsageError, backendFlag, outputDirFlag, outputFileFlag, parseFlags, pathFlag } from './args.ts';
import type { AnyCheckpoint } from '../io/checkpoint.ts';

/** Largest image file read: a photo of a digit is a few MB; this refuses a wrong path at once. */
export const MAX_IMAGE_FILE_BYTES = 64 << 20;
/** Images scored per forward pass. */
const BATCH = 16;

export interface PredictReport {
  checkpoint: string;
  model: string;
  step: number;
  adapter: string;
  /** In --image order: the class, and the scores (CapsNet: capsule lengths; baseline: softmax probabilities). */
  images: Array<{ file: string; prediction: number; lengths?: number[]; probabilities?: number[] }>;
}

/** Grey intensities in [0, 1] of a PNG: luminance of RGB; transparent pixels count as white (as on a page). */
export function greyOf(image: PngImage): Float32Array {
  const { width, height, channels, pixels } = image;
  const out = new Float32Array(width * height);
  for (let i = 0; i < out.length; i++) {
    const p = pixels.subarray(i * channels, (i + 1) * channels);
    const lum = channels === 1 ? p[0] : 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    const alpha = channels === 4 ? p[3] / 255 : 1;
    out[i] = (alpha * lum + (1 - alpha) * 255) / 255;
  }
  return out;
}

/**
 * Ink bright on a black background, as MNIST: inverted when the image's border is mostly light
 * (dark ink on paper), then the border's mean level (grey paper, a scan's or photo's background)
 * mapped to 0 and white kept at 1.
 */
export function brightInk(grey: Float32Array, width: number, height: number): Float32Array {
  let sum = 0;
  let n = 0;
  for (let x = 0; x < width; x++) {
    sum += grey[x] + grey[(height - 1) * width + x];
    n += 2;
  }
  for (let y = 1; y < height - 1; y++) {
    sum += grey[y * width] + grey[y * width + width - 1];
    n += 2;
  }
  const inverted = sum / n > 0.5;
  const background = inverted ? 1 - sum / n : sum / n;
  const scale = background < 1 ? 1 / (1 - background) : 0;
  return grey.map((v) => Math.max(0, ((inverted ? 1 - v : v) - background) * scale));
}

/**
 * The model's input (inputSize x inputSize, one channel) for one decoded image: MNIST-like
 * normalisation centred in the canvas, or (asIs) the grey image itself, which must have the input's size.
 */
export function modelInput(image: PngImage, inputSize: number, asIs: boolean, file: string): Float32Array {
  if (asIs) {
    if (image.width !== inputSize || image.height !== inputSize) {
      throw new UsageError(`capsnet predict: ${file}: --as-is needs ${inputSize}x${inputSize} images (the model's input), this one is ${image.width}x${image.height}`);
    }
    return greyOf(image);
  }
  const digit = normalizeDrawing(brightInk(greyOf(image), image.width, image.height), image.width, image.height);
  if (!digit) throw new UsageError(`capsnet predict: ${file}: no ink found (nothing more than 5% brighter than the background)`);
  if (inputSize < 28) throw new UsageError(`capsnet predict: the model's input is ${inputSize}x${inputSize}, smaller than a 28x28 digit; give --as-is images of that size`);
  const out = new Float32Array(inputSize * inputSize);
  const o = Math.floor((inputSize - 28) / 2);
  for (let y = 0; y < 28; y++) out.set(digit.subarray(y * 28, (y + 1) * 28), (y + o) * inputSize + o);
  return out;
}

export async function predictCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('predict', argv, {
    checkpoint: { type: 'string' },
    image: { type: 'string', multiple: true },
    'as-is': { type: 'boolean' },
    output: { type: 'string' },
    inputs: { type: 'string' },
    backend: { type: 'string' },
  });
  const checkpointPath = pathFlag(values.checkpoint, '--checkpoint');
  if (!checkpointPath) throw new UsageError('capsnet predict: --checkpoint FILE is required');
  const files = (values.image ?? []).map((f) => pathFlag(f, '--image'));
  if (files.length === 0) throw new UsageError('capsnet predict: give at least one --image FILE.png');
  const output = outputFileFlag(values.output, '--output');
  const inputsDir = outputDirFlag(values.inputs, '--inputs');
  const backend = backendFlag(values.backend);
  let ckpt: AnyCheckpoint;
  try {
    ckpt = await loadAnyCheckpoint(checkpointPath);
  } catch (error) {
    throw new UsageError(`capsnet predict: ${(error as Error).message}`);
  }
  const { inputChannels, inputSize } = ckpt.config;
  if (inputChannels !== 1) {
    throw new UsageError(`capsnet predict: ${checkpointPath} takes ${inputChannels}-channel ${inputSize}x${inputSize} inputs; predict reads single-channel digit images (use capsnet eval for its test set)`);
  }
  // Every image is read and checked before the GPU is touched: a bad file loses nothing.
  const inputs = files.map((file) => {
    let image: PngImage;
    try {
      image = decodePng(readRegularFile(file, MAX_IMAGE_FILE_BYTES, 'PNG image'), file);
    } catch (error) {
      throw new UsageError(`capsnet predict: ${(error as Error).message}`);
    }
    return modelInput(image, inputSize, values['as-is'] ?? false, file);
  });

  if (inputsDir) {
    mkdirSync(inputsDir, { recursive: true });
    for (let i = 0; i < inputs.length; i++) {
      const grey = Uint8Array.from(inputs[i], (v) => Math.round(255 * Math.min(1, Math.max(0, v))));
      await writeFileAtomic(join(inputsDir, `input-${i}.png`), encodePng(inputSize, inputSize, 1, grey));
    }
    console.log(`wrote what the model sees to ${inputsDir}/input-0..${inputs.length - 1}.png`);
  }

  const ctx = await acquireGpu({ backend });
  try {
    const spec = specOf(ckpt);
    const batch = Math.min(BATCH, inputs.length);
    checkBatchFits(ctx, spec, batch, 'eval', `a batch of ${batch} images`, 'capsnet predict');
    const model = buildModel(ctx, spec, { params: ckpt.params });
    const pixels = inputSize * inputSize;
    let scores: Float32Array;
    try {
      ({ scores } = await evaluate(model, inputs.length, batch, (start, images, labels) => {
        const n = Math.min(batch, inputs.length - start);
        images.fill(0);
        for (let i = 0; i < n; i++) images.set(inputs[start + i], i * pixels);
        labels.fill(0); // unknown: the scores are what is read
        return n;
      }));
    } finally {
      model.dispose();
    }
    const kind = ckpt.model ?? 'capsnet';
    const J = scores.length / inputs.length;
    // The baseline's logits as probabilities (as an ensemble averages them), so that both models print a number in [0, 1].
    const shown = kind === 'baseline' ? softmaxRows(scores, J) : scores;
    const report: PredictReport = { checkpoint: checkpointPath, model: kind, step: ckpt.step, adapter: ctx.adapter.name, images: [] };
    files.forEach((file, i) => {
      const values = Array.from(shown.subarray(i * J, (i + 1) * J));
      // Highest first; a stable sort keeps the lower class first on ties.
      const order = values.map((v, j) => [v, j] as const).sort((a, b) => b[0] - a[0]);
      const prediction = order[0][1];
      report.images.push({ file, prediction, ...(kind === 'baseline' ? { probabilities: values } : { lengths: values }) });
      const what = kind === 'baseline' ? 'probability' : 'length';
      console.log(`${file}: ${prediction}  (${what} ${values[prediction].toFixed(3)}; next ${order[1][1]}: ${order[1][0].toFixed(3)})`);
    });
    if (output) {
      await writeFileAtomic(output, new TextEncoder().encode(JSON.stringify(report) + '\n'));
      console.log(`wrote ${output}`);
    }
    return 0;
  } finally {
    ctx.destroy();
  }
}
