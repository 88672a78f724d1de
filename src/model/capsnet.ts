// CapsNet (Sabour, Frosst & Hinton 2017) built from the ops:
//   images [B, C, H, W] -> Conv1 + ReLU -> PrimaryCaps conv (stride 2) -> regroup + squash
//   -> u_hat = W u (1152 x 10 pairs of 16x8) -> dynamic routing -> v [B, 10, 16] -> lengths [B, 10]
//   decoder: v masked to one capsule [B, 160] -> FC 512 ReLU -> FC 1024 ReLU -> FC 784 sigmoid
// Both convolutions take config.convPadding ('same' for CIFAR-10; geometry() gives the padding).
// MultiMNIST (two digits per image): lossWithTargets() takes multi-hot margin targets and one
// reconstruction target per digit; the decoder runs once per target, each time masked by that
// target's class, and the squared errors against each digit's own image are summed.
// Parameters live on the GPU in the checkpoint's names and PyTorch layouts (the ops take those
// layouts directly), so saving and loading is a plain copy.
// Reference: test/reference/capsnet.ts. Tests: test/capsnet.test.ts.

import type { GpuContext } from '../gpu/context.ts';
import { Tensor, fromArray, tidy } from '../tensor.ts';
import { ParameterSet } from './parameters.ts';
import { add, reshape } from '../ops/elementwise.ts';
import { conv2d } from '../ops/conv2d.ts';
import { capsPredict, capsuleLengths, maskCapsules, primaryCaps, routing } from '../ops/capsules.ts';
import { dense } from '../ops/dense.ts';
import { marginLoss, reconstructionLoss, topKCorrect, topKHits } from '../ops/losses.ts';
import { noGrad } from '../autograd/tape.ts';
import { type MultiMnistBatch, createMultiMnistBatch } from '../data/multimnist.ts';
import { ShapeError } from '../gpu/errors.ts';
import { Rng } from '../data/rng.ts';
import { type CapsNetConfig, geometry, makeConfig, parameterShapes } from './config.ts';

/** Called with each layer's output as it is computed (training uses it to find where a NaN starts). */
export type LayerTap = (name: string, t: Tensor) => void;

/** What CapsNet.predict reads back, per image in the order given. */
export interface CapsNetPrediction {
  /** The longest capsule's class. */
  classes: Int32Array;
  /** Capsule lengths [N, J]. */
  lengths: Float32Array;
  /** Digit capsules (the pose vectors) [N, J, D]. */
  poses: Float32Array;
  /** With `reconstruct`: the decoder's image from the predicted capsule [N, C * H * W]. */
  reconstructions?: Float32Array;
}

export interface CapsNetOutput {
  /** Digit capsules [B, J, D]. */
  v: Tensor;
  /** Their lengths [B, J]: the class scores. */
  lengths: Tensor;
}

export interface CapsNetLoss extends CapsNetOutput {
  /** mean over the batch of (margin + reconstruction), [1]. */
  loss: Tensor;
  margin: Tensor;
  /** Present when the config has a decoder. */
  reconstructionLoss: Tensor | null;
  reconstruction: Tensor | null;
}

/** One image the decoder learns to reproduce: which capsule it sees, and the image. */
export interface ReconstructionTarget {
  /** The capsule of each example the decoder sees: [B] class indices as f32 on the GPU, or an Int32Array (-1: none). */
  classes: Tensor | Int32Array;
  /** What it must reproduce: [B, pixels] or [B, C, H, W], pixel / 255. */
  images: Tensor;
}

export interface CapsNetMultiLoss extends CapsNetOutput {
  /** mean over the batch of (margin + the sum of the reconstruction losses), [1]. */
  loss: Tensor;
  margin: Tensor;
  /** The sum over the targets of their (weighted, batch-mean) reconstruction losses, [1]; null without a decoder or targets. */
  reconstructionLoss: Tensor | null;
  /** One [1] loss per reconstruction target, in the order given. */
  reconstructionLosses: Tensor[];
  /** One reconstruction [B, pixels] per target, in the order given. */
  reconstructions: Tensor[];
}

/**
 * Initial parameters, seeded. Convolutions and dense layers: PyTorch's defaults (weights and biases
 * uniform in +-1/sqrt(fan-in)), what most CapsNet ports train with. digit.W: normal with standard
 * deviation `digitWStd` (default 0.1, the official TensorFlow code's). Measured on the paper recipe
 * (batch 128, 100 steps, test accuracy on the 10,000 test images, tools/learning-ab.ts): 0.1 gives
 * 96.50% against 0.01's 96.02%: with 0.01 every capsule starts near length 0, where squash's
 * gradient vanishes, and the first ~25 steps stay at chance. At batch 32, 0.5 saturates every
 * capsule at the first step (lengths near 1, squash's gradient vanishing again). The head start
 * does not last: after one epoch (468 steps) 0.1 gave 98.62% and 0.01 98.70% (README, issue 6).
 */
export function initialParameters(config: CapsNetConfig, seed: number, digitWStd = 0.1): Record<string, Float32Array> {
  const rng = new Rng(seed >>> 0);
  const shapes = parameterShapes(config);
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name === 'digit.W') {
      for (let i = 0; i < n; i += 2) {
        const r = Math.sqrt(-2 * Math.log(1 - rng.next())) * digitWStd;
        const t = 2 * Math.PI * rng.next();
        data[i] = r * Math.cos(t);
        if (i + 1 < n) data[i + 1] = r * Math.sin(t);
      }
    } else if (name === 'digit.bias') {
      data.fill(0);
    } else {
      const weightShape = shapes[name.replace(/\.bias$/, '.weight')];
      const fanIn = weightShape.slice(1).reduce((a, b) => a * b, 1);
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < n; i++) data[i] = (2 * rng.next() - 1) * bound;
    }
    out[name] = data;
  }
  return out;
}

export class CapsNet extends ParameterSet {
  readonly config: CapsNetConfig;

  constructor(ctx: GpuContext, config: Partial<CapsNetConfig>, values: Record<string, Float32Array>) {
    const full = makeConfig(config);
    super(ctx, 'CapsNet', parameterShapes(full), values);
    this.config = full;
  }

  static create(ctx: GpuContext, config: Partial<CapsNetConfig> = {}, seed = 1): CapsNet {
    const full = makeConfig(config);
    return new CapsNet(ctx, full, initialParameters(full, seed));
  }

  /** Images [B, C, H, W] -> digit capsules and their lengths. */
  forward(images: Tensor, tap: LayerTap = () => {}): CapsNetOutput {
    const c = this.config;
    const p = this.params;
    const expected = [c.inputChannels, c.inputSize, c.inputSize];
    if (images.shape.length !== 4 || images.shape.slice(1).some((d, k) => d !== expected[k])) {
      throw new ShapeError(`CapsNet: images must be [B, ${expected.join(', ')}], got ${images.describe()}`);
    }
    const ctx = this.ctx;
    tap('images', images);
    const g = geometry(c);
    const conv1 = ctx.scoped('conv1', () => conv2d(images, p['conv1.weight'], p['conv1.bias'], { relu: true, padding: g.conv1Padding }));
    tap('conv1', conv1);
    const primary = ctx.scoped('primary', () =>
      conv2d(conv1, p['primary.weight'], p['primary.bias'], { stride: c.primaryStride, padding: g.primaryPadding }));
    tap('primary conv', primary);
    const u = ctx.scoped('primary', () => primaryCaps(primary, { types: c.primaryTypes, dim: c.primaryDim }));
    tap('primary capsules', u);
    const uhat = ctx.scoped('predict', () => capsPredict(p['digit.W'], u));
    tap('predictions u_hat', uhat);
    const v = ctx.scoped('routing', () => routing(uhat, { iterations: c.routings, gradMode: c.gradMode, leaky: c.leaky, bias: p['digit.bias'] ?? null }));
    tap('digit capsules', v);
    const lengths = ctx.scoped('lengths', () => capsuleLengths(v));
    tap('capsule lengths', lengths);
    return { v, lengths };
  }

  /**
   * Inference on images given as plain numbers (pixel / 255, each image C x H x W in row-major
   * order, one after the other), in batches of `batchSize`, all read back: the predicted class of
   * each image (the longest capsule, the lower class on ties), the capsule lengths [N, J], the
   * digit capsules (pose vectors) [N, J, D] and, with `reconstruct` (and a decoder), the decoder's
   * image from each prediction [N, C * H * W].
   */
  async predict(images: Float32Array, options: { batchSize?: number; reconstruct?: boolean } = {}): Promise<CapsNetPrediction> {
    const c = this.config;
    const pixels = c.inputChannels * c.inputSize * c.inputSize;
    const n = images.length / pixels;
    if (!Number.isInteger(n) || n < 1) {
      throw new ShapeError(`CapsNet.predict: images must hold whole ${c.inputChannels}x${c.inputSize}x${c.inputSize} images (${pixels} values each), got ${images.length} values`);
    }
    const batchSize = options.batchSize ?? 32;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ShapeError(`CapsNet.predict: batchSize must be a positive integer, got ${batchSize}`);
    const reconstruct = options.reconstruct ?? false;
    if (reconstruct && !c.decoder) throw new Error('CapsNet.predict: reconstruct needs a decoder, and this model has none (config.decoder is false)');
    const J = c.digitCaps;
    const D = c.digitDim;
    const out: CapsNetPrediction = { classes: new Int32Array(n), lengths: new Float32Array(n * J), poses: new Float32Array(n * J * D) };
    if (reconstruct) out.reconstructions = new Float32Array(n * pixels);
    for (let start = 0; start < n; start += batchSize) {
      const b = Math.min(batchSize, n - start);
      const { v, lengths, recon } = tidy(() => noGrad(() => {
        const x = fromArray(this.ctx, [b, c.inputChannels, c.inputSize, c.inputSize], images.subarray(start * pixels, (start + b) * pixels), 'predict images');
        const o = this.forward(x);
        return { ...o, recon: reconstruct ? this.decode(o.v, 'longest') : null };
      }));
      try {
        const [l, p, r] = await Promise.all([lengths.read(), v.read(), recon?.read()]);
        out.lengths.set(l, start * J);
        out.poses.set(p, start * J * D);
        if (r && out.reconstructions) out.reconstructions.set(r, start * pixels);
      } finally {
        for (const t of [v, lengths, recon]) t?.dispose();
      }
    }
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < J; j++) if (out.lengths[i * J + j] > out.lengths[i * J + best]) best = j;
      out.classes[i] = best;
    }
    return out;
  }

  /**
   * The decoder's reconstruction [B, pixels] from the capsule of `selected` per example: the
   * labels in training (a [B] tensor of class indices as f32, or an Int32Array), 'longest' at test.
   * `tapSuffix` is appended to the names given to `tap` (the second target of MultiMNIST).
   */
  decode(v: Tensor, selected: Tensor | Int32Array | 'longest', tap: LayerTap = () => {}, tapSuffix = ''): Tensor {
    if (!this.config.decoder) throw new Error('CapsNet: this model has no decoder (config.decoder is false)');
    return this.ctx.scoped('decoder', () => {
      let h = maskCapsules(v, selected);
      const layers = this.config.decoderHidden.length + 1;
      for (let l = 1; l <= layers; l++) {
        h = dense(h, this.params[`decoder.fc${l}.weight`], this.params[`decoder.fc${l}.bias`], l < layers ? 'relu' : 'sigmoid');
        tap(`decoder fc${l}${tapSuffix}`, h);
      }
      return h;
    });
  }

  /**
   * The training loss: margin loss on the lengths against `targets` [B, J] (multi-hot), plus the
   * weighted reconstruction loss of the decoder fed with the capsule of `labels` [B] (class indices
   * as f32), both averaged over the batch.
   */
  loss(images: Tensor, labels: Tensor, targets: Tensor, tap: LayerTap = () => {}): CapsNetLoss {
    const out = this.lossWithTargets(images, targets, this.config.decoder ? [{ classes: labels, images }] : [], tap);
    return {
      v: out.v, lengths: out.lengths, loss: out.loss, margin: out.margin,
      reconstructionLoss: out.reconstructionLoss, reconstruction: out.reconstructions[0] ?? null,
    };
  }

  /**
   * The training loss with any number of reconstruction targets (MultiMNIST: one per digit):
   *   mean over the batch of [ margin(lengths, targets)
   *                            + sum_k reconWeight * sum_p (decode(v, classes_k) - images_k)^2 ].
   * targets [B, J] multi-hot (two-hot for MultiMNIST). The decoder runs once per target, masked by
   * that target's classes; its gradients from all targets add up. With one target whose images are
   * the input, this is loss(). An empty `recon` (or a model without a decoder) gives the margin loss.
   */
  lossWithTargets(images: Tensor, targets: Tensor, recon: readonly ReconstructionTarget[], tap: LayerTap = () => {}): CapsNetMultiLoss {
    if (recon.length > 0 && !this.config.decoder) {
      throw new Error(`CapsNet: ${recon.length} reconstruction target(s) given, but this model has no decoder (config.decoder is false)`);
    }
    const g = geometry(this.config);
    const B = images.shape[0];
    recon.forEach((r, k) => {
      if (r.images.shape[0] !== B || r.images.size !== B * g.pixels) {
        throw new ShapeError(`CapsNet: reconstruction target ${k + 1}: images must be [${B}, ${g.pixels}] (or [${B}, C, H, W] of that size), got ${r.images.describe()}`);
      }
    });
    const out = this.forward(images, tap);
    const margin = marginLoss(out.lengths, targets);
    tap('margin loss', margin);
    const reconstructions: Tensor[] = [];
    const reconstructionLosses: Tensor[] = [];
    let reconTotal: Tensor | null = null;
    recon.forEach((r, k) => {
      const suffix = recon.length > 1 ? ` (target ${k + 1})` : '';
      const reconstruction = this.decode(out.v, r.classes, tap, suffix);
      const flat = r.images.shape.length === 2 ? r.images : reshape(r.images, [B, g.pixels]);
      const loss = reconstructionLoss(reconstruction, flat, this.config.reconWeight);
      tap(`reconstruction loss${suffix}`, loss);
      reconstructions.push(reconstruction);
      reconstructionLosses.push(loss);
      reconTotal = reconTotal ? add(reconTotal, loss) : loss;
    });
    const total = reconTotal ? add(margin, reconTotal) : margin;
    return { ...out, loss: total, margin, reconstructionLoss: reconTotal, reconstructionLosses, reconstructions };
  }
}

/** One-hot targets [B, J] for labels (a label of -1, a padding example, gives a zero row). */
export function oneHotTargets(ctx: GpuContext, labels: Int32Array, classes: number): Tensor {
  const data = new Float32Array(labels.length * classes);
  labels.forEach((label, b) => {
    if (label >= 0) data[b * classes + label] = 1;
  });
  return fromArray(ctx, [labels.length, classes], data, 'targets');
}

/** The host arrays of a two-digit batch (src/data/multimnist.ts MultiMnistBatch has them all). */
export type TwoDigitBatch = Pick<MultiMnistBatch, 'images' | 'targets' | 'first' | 'second' | 'firstLabels' | 'secondLabels'>;

export interface TwoDigitLoss extends CapsNetMultiLoss {
  /** The two-hot targets as uploaded, [B, J]. */
  targets: Tensor;
  /** 1 per example whose two longest capsules are its two digits, else 0, [B] (no gradient). */
  correct: Tensor;
}

/**
 * A MultiMNIST training step's loss from the host arrays of a batch of `B` examples: uploads them
 * and records lossWithTargets(images, two-hot targets, [first digit, second digit]) and the
 * two-of-two correctness. Call it inside tidy(); `backward(result.loss)` then trains both digits'
 * reconstructions and the margin loss; `sum(result.correct)` is the batch's count of right answers.
 */
export function twoDigitLoss(model: CapsNet, batch: TwoDigitBatch, B: number, tap: LayerTap = () => {}): TwoDigitLoss {
  const c = model.config;
  const pixels = c.inputChannels * c.inputSize * c.inputSize;
  const ctx = model.ctx;
  const sizes: Array<[string, number, number]> = [
    ['images', batch.images.length, B * pixels], ['first', batch.first.length, B * pixels], ['second', batch.second.length, B * pixels],
    ['targets', batch.targets.length, B * c.digitCaps], ['firstLabels', batch.firstLabels.length, B], ['secondLabels', batch.secondLabels.length, B],
  ];
  for (const [name, got, want] of sizes) {
    if (got !== want) throw new ShapeError(`twoDigitLoss: batch.${name} holds ${got} values, expected ${want} for ${B} examples of a ${c.inputChannels}x${c.inputSize}x${c.inputSize} model with ${c.digitCaps} classes`);
  }
  const x = fromArray(ctx, [B, c.inputChannels, c.inputSize, c.inputSize], batch.images, 'images');
  const targets = fromArray(ctx, [B, c.digitCaps], batch.targets, 'targets');
  const recon: ReconstructionTarget[] = c.decoder
    ? [
      { classes: batch.firstLabels, images: fromArray(ctx, [B, pixels], batch.first, 'first digit') },
      { classes: batch.secondLabels, images: fromArray(ctx, [B, pixels], batch.second, 'second digit') },
    ]
    : [];
  const out = model.lossWithTargets(x, targets, recon, tap);
  return { ...out, targets, correct: topKCorrect(out.lengths, targets) };
}

export interface TwoDigitEvaluation {
  count: number;
  /** Examples whose two longest capsules are both of their digits (the paper's measure). */
  correct: number;
  /** Examples with at least one of their digits among the two longest capsules. */
  almost: number;
  accuracy: number;
  /** [count, classes] capsule lengths. */
  lengths: Float32Array;
}

/**
 * Evaluates on `count` two-digit examples given by `fill(start, batch)` (which returns how many it
 * wrote: MultiMnistTestSet.fill), in batches of `batchSize`, reading back only the lengths.
 */
export async function evaluateTwoDigits(
  model: CapsNet,
  count: number,
  batchSize: number,
  fill: (start: number, batch: MultiMnistBatch) => number,
  onProgress?: (done: number) => void,
): Promise<TwoDigitEvaluation> {
  const c = model.config;
  const J = c.digitCaps;
  const batch = createMultiMnistBatch(batchSize, c.inputSize, J, c.inputChannels);
  const lengths = new Float32Array(count * J);
  const firstLabels = new Int32Array(count);
  const secondLabels = new Int32Array(count);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start, fill(start, batch));
    const out = tidy(() =>
      noGrad(() => model.forward(fromArray(model.ctx, [batchSize, c.inputChannels, c.inputSize, c.inputSize], batch.images, 'images')).lengths),
    );
    const values = await out.read();
    out.dispose();
    lengths.set(values.subarray(0, n * J), start * J);
    firstLabels.set(batch.firstLabels.subarray(0, n), start);
    secondLabels.set(batch.secondLabels.subarray(0, n), start);
    onProgress?.(start + n);
  }
  return { ...scoreTwoDigits(lengths, firstLabels, secondLabels, count, J), lengths };
}

/**
 * Scores `count` rows of J capsule lengths against two labels each: right when both digits are the
 * two longest capsules, `almost` when at least one is. Used by evaluateTwoDigits and by ensembles
 * (src/cli/ensemble.ts), which score mean lengths the same way.
 */
export function scoreTwoDigits(
  lengths: Float32Array, firstLabels: ArrayLike<number>, secondLabels: ArrayLike<number>, count: number, J: number,
): Omit<TwoDigitEvaluation, 'lengths'> {
  let correct = 0;
  let almost = 0;
  for (let i = 0; i < count; i++) {
    const hits = topKHits(lengths.subarray(i * J, (i + 1) * J), [firstLabels[i], secondLabels[i]]);
    if (hits === 2) correct++;
    if (hits >= 1) almost++;
  }
  return { count, correct, almost, accuracy: count > 0 ? correct / count : 0 };
}
