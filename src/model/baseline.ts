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
//   256, each followed by 2x2 max pooling, one FC 1024, no dropout), far below 35.4M; so no pooling
//   by default. That network is BASELINE_OFFICIAL_OVERRIDES (field `pool`: 2x2 max pooling after each
//   ReLU): at affNIST's 40x40 it has 16.1M parameters, near the CapsNet's 13.5M, where ours has 69.7M.
// - ReLU after every convolution and hidden FC layer (not stated; the usual reading, and the
//   official ConvModel's); the last FC layer is linear (logits).
// - Dropout p = 0.5 (not stated in the paper; Srivastava et al.'s default for FC layers), inverted
//   (identity in inference), on the input of the last FC layer only, mask seeded per step.
// - Initialisation: PyTorch's defaults (weights and biases uniform in +-1/sqrt(fan-in)), seeded.
// Parameters live on the GPU in their checkpoint names and PyTorch layouts: conv<l>.weight
// [Cout, Cin, 5, 5], conv<l>.bias, fc<l>.weight [Out, In] (fc1's input index = c * S * S + y * S +
// x, PyTorch's nn.Flatten order), fc<l>.bias.
// Reference: test/reference/baseline.ts. Tests: test/baseline.test.ts.

import { ShapeError } from '../gpu/errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { Tensor } from '../tensor.ts';
import { ParameterSet } from './parameters.ts';
import { reshape } from '../ops/elementwise.ts';
import { conv2d } from '../ops/conv2d.ts';
import { dense } from '../ops/dense.ts';
import { dropout } from '../ops/dropout.ts';
import { maxPool2d } from '../ops/pool.ts';
import { softmaxCrossEntropy } from '../ops/losses.ts';
import { Rng } from '../data/rng.ts';
import type { LayerTap } from './capsnet.ts';

import {
  type BaselineConfig,
  baselineGeometry,
  baselineParameterShapes,
  makeBaselineConfig,
} from './baseline-config.ts';

export {
  type BaselineConfig,
  type BaselineGeometry,
  type BaselinePadding,
  BASELINE_OFFICIAL_OVERRIDES,
  BASELINE_PAPER_CONFIG,
  BASELINE_PAPER_PARAMETERS,
  baselineGeometry,
  baselineParameterCount,
  baselineParameterShapes,
  makeBaselineConfig,
} from './baseline-config.ts';

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
      throw new ShapeError(`BaselineCNN: images must be [B, ${expected.join(', ')}], got ${images.describe()}`);
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
      if (c.pool > 1) {
        const conv = h;
        h = ctx.scoped(`pool${l}`, () => maxPool2d(conv, c.pool));
        tap(`pool${l}`, h);
      }
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
