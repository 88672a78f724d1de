// The paper's baseline CNN (Sabour, Frosst & Hinton 2017, section 5), the comparison model, built
// from the ops:
//   images [B, C, S, S] -> conv 256 5x5 + ReLU -> conv 256 5x5 + ReLU -> conv 128 5x5 + ReLU
//   -> flatten (c, y, x) -> FC 328 + ReLU -> FC 192 + ReLU -> dropout -> FC 10 -> logits [B, 10]
//   loss: softmax cross-entropy, averaged over the batch.
// "a standard CNN with three convolutional layers of 256, 256, 128 channels. Each has 5x5 kernels
// and stride of 1. The last convolutional layers are followed by two fully connected layers of size
// 328, 192. The last fully connected layer is connected with dropout to a 10 class softmax layer
// with cross entropy loss." The paper gives the model 35.4M parameters.
//
// Choices (every one a config field):
// - Padding 'same' (2 pixels for 5x5): the feature maps stay 28x28, fc1 sees 128 x 28 x 28 = 100,352
//   inputs, and the model has 35,445,522 parameters: the paper's 35.4M. With 'valid' padding
//   (28 -> 24 -> 20 -> 16) it would have 13,277,970, and the official code's ConvModel (tensorflow/
//   models research/capsules/models/conv_model.py) is another network altogether (two convs 512,
//   256, each followed by 2x2 max pooling, one FC 1024, no dropout), far below 35.4M; so no pooling.
// - ReLU after every convolution and hidden FC layer (not stated; the usual reading, and the
//   official ConvModel's); the last FC layer is linear (logits).
// - Dropout p = 0.5 (not stated in the paper; Srivastava et al.'s default for FC layers), inverted
//   (identity in inference), on the input of the last FC layer only, mask seeded per step.
// - Initialisation: PyTorch's defaults (weights and biases uniform in +-1/sqrt(fan-in)), seeded.
// Parameters live on the GPU in their checkpoint names and PyTorch layouts: conv<l>.weight
// [Cout, Cin, 5, 5], conv<l>.bias, fc<l>.weight [Out, In] (fc1's input index = c * S * S + y * S +
// x, PyTorch's nn.Flatten order), fc<l>.bias.
// Reference: test/reference/baseline.ts. Tests: test/baseline.test.ts.

import type { GpuContext } from '../gpu/context.ts';
import type { Tensor } from '../tensor.ts';
import { ParameterSet } from './parameters.ts';
import { reshape } from '../ops/elementwise.ts';
import { conv2d } from '../ops/conv2d.ts';
import { dense } from '../ops/dense.ts';
import { dropout } from '../ops/dropout.ts';
import { softmaxCrossEntropy } from '../ops/losses.ts';
import { Rng } from '../data/rng.ts';
import type { LayerTap } from './capsnet.ts';

export type BaselinePadding = 'same' | 'valid';

export interface BaselineConfig {
  inputChannels: number;
  /** Input side (28 for MNIST, 36 for MultiMNIST). */
  inputSize: number;
  /** Output channels of each convolution, in order (paper: 256, 256, 128). */
  convChannels: number[];
  /** Square kernel side of every convolution (5). */
  convKernel: number;
  convStride: number;
  /** 'same' (zero padding (K - 1) / 2: stride 1 and an odd kernel) or 'valid' (none). */
  convPadding: BaselinePadding;
  /** Hidden fully connected layers, each with a ReLU (paper: 328, 192). */
  fcHidden: number[];
  /** Drop probability before the last FC layer, in [0, 1) (0.5; 0 disables dropout). */
  dropout: number;
  /** Number of classes: the logits' width (10). */
  classes: number;
}

export const BASELINE_PAPER_CONFIG: Readonly<BaselineConfig> = Object.freeze({
  inputChannels: 1,
  inputSize: 28,
  convChannels: [256, 256, 128],
  convKernel: 5,
  convStride: 1,
  convPadding: 'same',
  fcHidden: [328, 192],
  dropout: 0.5,
  classes: 10,
});

/** The parameter count of the paper's configuration, which the paper rounds to 35.4M. */
export const BASELINE_PAPER_PARAMETERS = 35_445_522;

export interface BaselineGeometry {
  /** Side of each convolution's output, in order (paper: 28, 28, 28). */
  convSizes: number[];
  /** Padding of every convolution, in pixels. */
  padding: number;
  /** fc1's input width: last channels x side^2 (100,352). */
  flat: number;
  /** Pixels per image: channels x side^2. */
  pixels: number;
}

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1 << 20;

/**
 * A complete, validated config from a partial one (missing fields take the paper's values).
 * `source` names where the values came from (a checkpoint, a flag) in errors.
 */
export function makeBaselineConfig(overrides: Partial<BaselineConfig> = {}, source = 'baseline config'): BaselineConfig {
  const cfg: BaselineConfig = {
    ...BASELINE_PAPER_CONFIG,
    convChannels: [...BASELINE_PAPER_CONFIG.convChannels],
    fcHidden: [...BASELINE_PAPER_CONFIG.fcHidden],
    ...overrides,
  };
  const known = new Set(Object.keys(BASELINE_PAPER_CONFIG));
  for (const key of Object.keys(cfg)) if (!known.has(key)) throw new Error(`${source}: unknown field '${key}' (fields: ${[...known].join(', ')})`);
  for (const field of ['inputChannels', 'inputSize', 'convKernel', 'convStride', 'classes'] as const) {
    if (!isPositiveInt(cfg[field])) throw new Error(`${source}: ${field} must be a positive integer, got ${JSON.stringify(cfg[field])}`);
  }
  for (const field of ['convChannels', 'fcHidden'] as const) {
    const list = cfg[field];
    if (!Array.isArray(list) || !list.every(isPositiveInt)) throw new Error(`${source}: ${field} must be a list of positive integers, got ${JSON.stringify(list)}`);
  }
  if (cfg.convChannels.length === 0) throw new Error(`${source}: convChannels must hold at least one convolution`);
  if (cfg.convPadding !== 'same' && cfg.convPadding !== 'valid') throw new Error(`${source}: convPadding must be 'same' or 'valid', got ${JSON.stringify(cfg.convPadding)}`);
  if (!(typeof cfg.dropout === 'number' && cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`${source}: dropout must be a number in [0, 1), got ${JSON.stringify(cfg.dropout)}`);
  baselineGeometry(cfg, source);
  return cfg;
}

export function baselineGeometry(cfg: BaselineConfig, source = 'baseline config'): BaselineGeometry {
  const K = cfg.convKernel;
  let padding = 0;
  if (cfg.convPadding === 'same') {
    if (cfg.convStride !== 1 || K % 2 === 0) throw new Error(`${source}: convPadding 'same' needs stride 1 and an odd kernel, got stride ${cfg.convStride}, kernel ${K}`);
    padding = (K - 1) / 2;
  }
  const convSizes: number[] = [];
  let side = cfg.inputSize;
  for (let l = 0; l < cfg.convChannels.length; l++) {
    if (side + 2 * padding < K) throw new Error(`${source}: conv${l + 1} gets a ${side}x${side} input, smaller than its ${K}x${K} kernel`);
    side = Math.floor((side + 2 * padding - K) / cfg.convStride) + 1;
    convSizes.push(side);
  }
  return {
    convSizes,
    padding,
    flat: cfg.convChannels[cfg.convChannels.length - 1] * side * side,
    pixels: cfg.inputChannels * cfg.inputSize * cfg.inputSize,
  };
}

/** Every parameter's checkpoint name and PyTorch-layout shape, in a fixed order (the checkpoint's). */
export function baselineParameterShapes(cfg: BaselineConfig): Record<string, number[]> {
  const g = baselineGeometry(cfg);
  const shapes: Record<string, number[]> = {};
  let cin = cfg.inputChannels;
  cfg.convChannels.forEach((cout, k) => {
    shapes[`conv${k + 1}.weight`] = [cout, cin, cfg.convKernel, cfg.convKernel];
    shapes[`conv${k + 1}.bias`] = [cout];
    cin = cout;
  });
  const sizes = [g.flat, ...cfg.fcHidden, cfg.classes];
  for (let l = 1; l < sizes.length; l++) {
    shapes[`fc${l}.weight`] = [sizes[l], sizes[l - 1]];
    shapes[`fc${l}.bias`] = [sizes[l]];
  }
  return shapes;
}

export function baselineParameterCount(cfg: BaselineConfig): number {
  return Object.values(baselineParameterShapes(cfg)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
}

/**
 * Initial parameters, seeded: PyTorch's defaults for nn.Conv2d and nn.Linear (weights and biases
 * uniform in +-1/sqrt(fan-in), fan-in = Cin K K or In), drawn in checkpoint order from one Rng.
 */
export function baselineInitialParameters(cfg: BaselineConfig, seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed >>> 0);
  const shapes = baselineParameterShapes(cfg);
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shapes[name.replace(/\.bias$/, '.weight')].slice(1).reduce((a, b) => a * b, 1);
    const bound = 1 / Math.sqrt(fanIn);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * rng.next() - 1) * bound;
    out[name] = data;
  }
  return out;
}

export interface BaselineForwardOptions {
  /** Dropout on (training) or off (inference: the identity). Default false. */
  training?: boolean;
  /**
   * The dropout mask's seed (a non-negative safe integer), required when training with dropout > 0:
   * derive it from (run seed, step), e.g. dropoutSeed(seed, step) from src/ops/dropout.ts, so that a
   * resumed run drops the same units.
   */
  dropoutSeed?: number;
  /** Called with each layer's output (training uses it to find where a NaN starts). */
  tap?: LayerTap;
}

export interface BaselineLoss {
  /** Mean over the batch of the softmax cross-entropy, [1]. */
  loss: Tensor;
  /** [B, classes]; the prediction is the largest. */
  logits: Tensor;
}

export class BaselineCNN extends ParameterSet {
  readonly config: BaselineConfig;

  constructor(ctx: GpuContext, config: Partial<BaselineConfig>, values: Record<string, Float32Array>) {
    const full = makeBaselineConfig(config);
    super(ctx, 'BaselineCNN', baselineParameterShapes(full), values);
    this.config = full;
  }

  static create(ctx: GpuContext, config: Partial<BaselineConfig> = {}, seed = 1): BaselineCNN {
    const full = makeBaselineConfig(config);
    return new BaselineCNN(ctx, full, baselineInitialParameters(full, seed));
  }

  /** Images [B, C, S, S] (pixel / 255) -> logits [B, classes]. */
  forward(images: Tensor, options: BaselineForwardOptions = {}): Tensor {
    const c = this.config;
    const p = this.params;
    const { training = false, dropoutSeed, tap = () => {} } = options;
    const expected = [c.inputChannels, c.inputSize, c.inputSize];
    if (images.shape.length !== 4 || images.shape.slice(1).some((d, k) => d !== expected[k])) {
      throw new Error(`BaselineCNN: images must be [B, ${expected.join(', ')}], got ${images.describe()}`);
    }
    const dropping = training && c.dropout > 0;
    if (dropping && dropoutSeed === undefined) {
      throw new Error('BaselineCNN: training with dropout needs options.dropoutSeed (e.g. dropoutSeed(runSeed, step))');
    }
    const ctx = this.ctx;
    const g = baselineGeometry(c);
    tap('images', images);
    let h = images;
    for (let l = 1; l <= c.convChannels.length; l++) {
      const input = h;
      h = ctx.scoped(`conv${l}`, () => conv2d(input, p[`conv${l}.weight`], p[`conv${l}.bias`], { stride: c.convStride, padding: g.padding, relu: true }));
      tap(`conv${l}`, h);
    }
    h = reshape(h, [images.shape[0], g.flat]);
    const layers = c.fcHidden.length + 1;
    for (let l = 1; l <= layers; l++) {
      const last = l === layers;
      if (last && dropping) {
        const input = h;
        h = ctx.scoped('dropout', () => dropout(input, c.dropout, dropoutSeed!, true));
        tap('dropout', h);
      }
      const input = h;
      h = ctx.scoped(`fc${l}`, () => dense(input, p[`fc${l}.weight`], p[`fc${l}.bias`], last ? 'none' : 'relu'));
      tap(last ? 'logits' : `fc${l}`, h);
    }
    return h;
  }

  /**
   * The training loss: softmax cross-entropy of the logits against `labels` [B] (class indices as
   * f32), averaged over the batch. Dropout is on unless options.training is false (a validation loss).
   */
  loss(images: Tensor, labels: Tensor, options: BaselineForwardOptions = {}): BaselineLoss {
    const logits = this.forward(images, { ...options, training: options.training ?? true });
    const loss = this.ctx.scoped('loss', () => softmaxCrossEntropy(logits, labels));
    return { loss, logits };
  }
}
