// The whole CapsNet (Sabour, Frosst & Hinton 2017), f64 reference, composed from the reference ops:
//   conv1 + ReLU -> primary conv -> reshape -> squash -> capsPredict -> routing -> lengths -> margin loss
//   decoder (optional): mask (true class) -> FC ReLU ... -> FC sigmoid -> reconstruction loss
//   total = mean over the batch of (margin + reconstruction)
// Parameters use the checkpoint names and PyTorch layouts of DESIGN.md.

import { conv2dBackward, conv2dForward } from './conv2d.ts';
import {
  capsPredict, capsPredictBackward, capsuleLengths, capsuleLengthsBackward, longestCapsule, maskCapsules,
  maskCapsulesBackward, primaryCapsReshape, primaryCapsReshapeBackward, routingBackward, routingForward, squash,
  squashBackward, type RoutingGradMode, type RoutingOptions, type RoutingSaved,
} from './capsules.ts';
import { denseBackward, denseForward, type Activation } from './dense.ts';
import { marginLoss, marginLossBackward, oneHot, reconstructionLoss, reconstructionLossBackward } from './losses.ts';
import { checkDim, checkLength, numel } from './util.ts';
import { randomUniform } from '../helpers/random.ts';

export interface CapsNetConfig {
  inputChannels: number;
  inputSize: number;
  conv1Channels: number;
  conv1Kernel: number;
  primaryTypes: number;
  primaryDim: number;
  primaryKernel: number;
  primaryStride: number;
  digitCaps: number;
  digitDim: number;
  routings: number;
  gradMode: RoutingGradMode;
  leaky: boolean;
  /** A trainable bias [digitCaps, digitDim] on s before the squash, named 'digit.bias'. */
  routingBias: boolean;
  decoder: boolean;
  decoderHidden: number[];
  reconWeight: number;
}

/** The paper's configuration (MNIST). */
export const PAPER_CONFIG: Readonly<CapsNetConfig> = Object.freeze({
  inputChannels: 1,
  inputSize: 28,
  conv1Channels: 256,
  conv1Kernel: 9,
  primaryTypes: 32,
  primaryDim: 8,
  primaryKernel: 9,
  primaryStride: 2,
  digitCaps: 10,
  digitDim: 16,
  routings: 3,
  gradMode: 'all',
  leaky: false,
  routingBias: false,
  decoder: true,
  decoderHidden: [512, 1024],
  reconWeight: 0.0005,
});

/** The paper's configuration with any fields overridden. */
export function capsNetConfig(overrides: Partial<CapsNetConfig> = {}): CapsNetConfig {
  const cfg: CapsNetConfig = { ...PAPER_CONFIG, decoderHidden: [...PAPER_CONFIG.decoderHidden], ...overrides };
  return cfg;
}

export interface CapsNetGeometry {
  /** conv1 output side: inputSize - conv1Kernel + 1 (valid, stride 1); 20 in the paper */
  conv1Size: number;
  /** primary capsule grid side: floor((conv1Size - primaryKernel) / primaryStride) + 1; 6 in the paper */
  grid: number;
  /** number of primary capsules: primaryTypes * grid^2; 1152 in the paper */
  I: number;
  /** decoder input: digitCaps * digitDim; 160 in the paper */
  decoderIn: number;
  /** decoder output = pixels per image: inputChannels * inputSize^2; 784 in the paper */
  pixels: number;
}

export function capsNetGeometry(cfg: CapsNetConfig): CapsNetGeometry {
  for (const k of ['inputChannels', 'inputSize', 'conv1Channels', 'conv1Kernel', 'primaryTypes', 'primaryDim',
    'primaryKernel', 'primaryStride', 'digitCaps', 'digitDim', 'routings'] as const) checkDim(cfg[k], `CapsNet config ${k}`);
  cfg.decoderHidden.forEach((n, k) => checkDim(n, `CapsNet config decoderHidden[${k}]`));
  const conv1Size = cfg.inputSize - cfg.conv1Kernel + 1;
  if (conv1Size < cfg.primaryKernel) throw new Error(`CapsNet config: conv1 output ${conv1Size} is smaller than the primary kernel ${cfg.primaryKernel}`);
  const grid = Math.floor((conv1Size - cfg.primaryKernel) / cfg.primaryStride) + 1;
  return {
    conv1Size,
    grid,
    I: cfg.primaryTypes * grid * grid,
    decoderIn: cfg.digitCaps * cfg.digitDim,
    pixels: cfg.inputChannels * cfg.inputSize * cfg.inputSize,
  };
}

/** Every parameter's name and PyTorch shape, in checkpoint order. */
export function capsNetParamShapes(cfg: CapsNetConfig): Record<string, number[]> {
  const g = capsNetGeometry(cfg);
  const P = cfg.primaryTypes * cfg.primaryDim;
  const shapes: Record<string, number[]> = {
    'conv1.weight': [cfg.conv1Channels, cfg.inputChannels, cfg.conv1Kernel, cfg.conv1Kernel],
    'conv1.bias': [cfg.conv1Channels],
    'primary.weight': [P, cfg.conv1Channels, cfg.primaryKernel, cfg.primaryKernel],
    'primary.bias': [P],
    'digit.W': [g.I, cfg.digitCaps, cfg.digitDim, cfg.primaryDim],
  };
  if (cfg.routingBias) shapes['digit.bias'] = [cfg.digitCaps, cfg.digitDim];
  if (cfg.decoder) {
    const sizes = [g.decoderIn, ...cfg.decoderHidden, g.pixels];
    for (let l = 1; l < sizes.length; l++) {
      shapes[`decoder.fc${l}.weight`] = [sizes[l], sizes[l - 1]];
      shapes[`decoder.fc${l}.bias`] = [sizes[l]];
    }
  }
  return shapes;
}

/** The number of trainable parameters (8,215,568 for the paper config, 6,804,224 without the decoder). */
export function countCapsNetParams(cfg: CapsNetConfig): number {
  let n = 0;
  for (const shape of Object.values(capsNetParamShapes(cfg))) n += numel(shape);
  return n;
}

/**
 * Seeded test parameters: every tensor uniform in +-1/sqrt(fan-in) (fan-in = Cin*K*K for the convs
 * and their biases, In for the dense layers and their biases, primaryDim for digit.W and digit.bias).
 * For tests, not a training recipe.
 */
export function randomCapsNetParams(cfg: CapsNetConfig, seed: number): Record<string, Float64Array> {
  const shapes = capsNetParamShapes(cfg);
  const params: Record<string, Float64Array> = {};
  let k = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    const fanIn = name.startsWith('digit.') ? cfg.primaryDim : numel(shapes[name.replace(/\.bias$/, '.weight')].slice(1));
    const bound = 1 / Math.sqrt(fanIn);
    params[name] = randomUniform(numel(shape), seed * 1000 + k++, -bound, bound);
  }
  return params;
}

export interface CapsNetBatch {
  /** [B, inputChannels, inputSize, inputSize], pixel / 255 */
  images: Float64Array;
  /** class per example: gives one-hot targets and the decoder's mask when those are not given */
  labels?: ArrayLike<number>;
  /** multi-hot targets [B, digitCaps] for the margin loss (two-hot for MultiMNIST) */
  targets?: Float64Array;
  /** the capsule each example's decoder sees; default labels, else the longest capsule (test time) */
  maskClasses?: ArrayLike<number>;
  /** what the decoder must reproduce, [B, pixels]; default the images */
  reconTargets?: Float64Array;
}

export interface CapsNetActivations {
  conv1: Float64Array;      // [B, conv1Channels, conv1Size, conv1Size], after ReLU
  primary: Float64Array;    // [B, types*dim, grid, grid]
  uPre: Float64Array;       // [B, I, primaryDim], before squash
  u: Float64Array;          // [B, I, primaryDim]
  uhat: Float64Array;       // [B, I, digitCaps, digitDim]
  routing: RoutingSaved;
  masked: Float64Array | null;   // [B, digitCaps*digitDim]
  decoder: Float64Array[];  // each decoder layer's output; the last is the reconstruction
}

export interface CapsNetResult {
  B: number;
  /** mean over the batch of (margin + reconstruction) */
  loss: number;
  /** mean margin loss */
  marginLoss: number;
  /** mean (weighted) reconstruction loss; 0 without the decoder */
  reconLoss: number;
  marginPerExample: Float64Array;
  reconPerExample: Float64Array;
  /** [B, digitCaps, digitDim] */
  v: Float64Array;
  /** [B, digitCaps] */
  lengths: Float64Array;
  /** the longest capsule per example */
  predictions: Int32Array;
  /** the capsule the decoder saw per example (null without the decoder) */
  maskClasses: Int32Array | null;
  /** [B, pixels], null without the decoder */
  reconstruction: Float64Array | null;
  acts: CapsNetActivations;
  /**
   * Gradients of `loss` (times dLoss) for every parameter (same names and layouts, checkpoint order)
   * and for the images as the network's input (not through reconTargets, which default to the images).
   */
  backward(dLoss?: number): { grads: Record<string, Float64Array>; dImages: Float64Array };
}

export interface CapsNetForwardOptions {
  /**
   * For finite differences of gradMode 'last' only: the routing logits [B, I, digitCaps] of the last
   * iteration at the base point (result.acts.routing.logits[routings - 1]), held constant.
   */
  frozenRoutingLogits?: Float64Array;
}

export function capsNetForward(
  params: Record<string, Float64Array>, cfg: CapsNetConfig, batch: CapsNetBatch, options: CapsNetForwardOptions = {},
): CapsNetResult {
  const g = capsNetGeometry(cfg);
  const shapes = capsNetParamShapes(cfg);
  for (const [name, shape] of Object.entries(shapes)) {
    if (!params[name]) throw new Error(`capsNetForward: missing parameter ${name}`);
    checkLength(params[name], numel(shape), `capsNetForward parameter ${name} [${shape.join(', ')}]`);
  }
  const S = cfg.inputSize;
  const Cin = cfg.inputChannels;
  const J = cfg.digitCaps;
  const D = cfg.digitDim;
  const Dp = cfg.primaryDim;
  if (batch.images.length === 0 || batch.images.length % (Cin * S * S) !== 0) {
    throw new Error(`capsNetForward: images length ${batch.images.length} is not a positive multiple of ${Cin}x${S}x${S}`);
  }
  const B = batch.images.length / (Cin * S * S);
  const targets = batch.targets ?? (batch.labels ? oneHot(batch.labels, B, J) : null);
  if (!targets) throw new Error('capsNetForward: give labels or targets');
  checkLength(targets, B * J, 'capsNetForward targets [B, digitCaps]');

  // Encoder.
  const xShape = [B, Cin, S, S];
  const c1Shape = shapes['conv1.weight'];
  const conv1 = conv2dForward(batch.images, xShape, params['conv1.weight'], c1Shape, params['conv1.bias'], { relu: true }).out;
  const conv1Shape = [B, cfg.conv1Channels, g.conv1Size, g.conv1Size];
  const pShape = shapes['primary.weight'];
  const pOpts = { stride: cfg.primaryStride };
  const primary = conv2dForward(conv1, conv1Shape, params['primary.weight'], pShape, params['primary.bias'], pOpts).out;
  const pDims = { B, types: cfg.primaryTypes, dim: Dp, G: g.grid };
  const uPre = primaryCapsReshape(primary, pDims);
  const u = squash(uPre, Dp);
  const predDims = { B, I: g.I, J, Dout: D, Din: Dp };
  const uhat = capsPredict(params['digit.W'], u, predDims);
  const rDims = { B, I: g.I, J, D };
  const rOpts: RoutingOptions = {
    iterations: cfg.routings, gradMode: cfg.gradMode, leaky: cfg.leaky, bias: cfg.routingBias ? params['digit.bias'] : null,
  };
  const { v, saved } = routingForward(uhat, rDims, { ...rOpts, frozenLogits: options.frozenRoutingLogits });
  const lengths = capsuleLengths(v, { B, J, D });
  const predictions = longestCapsule(lengths, B, J);
  const margin = marginLoss(lengths, targets, B, J);

  // Decoder.
  let masked: Float64Array | null = null;
  let maskClasses: Int32Array | null = null;
  const decoderActs: Float64Array[] = [];
  const sizes = [g.decoderIn, ...cfg.decoderHidden, g.pixels];
  const activation = (l: number): Activation => (l === sizes.length - 1 ? 'sigmoid' : 'relu');
  let recon: { loss: number; perExample: Float64Array } = { loss: 0, perExample: new Float64Array(B) };
  const reconTargets = batch.reconTargets ?? batch.images;
  if (cfg.decoder) {
    checkLength(reconTargets, B * g.pixels, 'capsNetForward reconTargets [B, pixels]');
    maskClasses = Int32Array.from(batch.maskClasses ?? batch.labels ?? predictions);
    masked = maskCapsules(v, { B, J, D }, maskClasses);
    let h = masked;
    for (let l = 1; l < sizes.length; l++) {
      h = denseForward(h, params[`decoder.fc${l}.weight`], params[`decoder.fc${l}.bias`], { B, In: sizes[l - 1], Out: sizes[l] }, activation(l));
      decoderActs.push(h);
    }
    recon = reconstructionLoss(h, reconTargets, B, g.pixels, cfg.reconWeight);
  }
  const reconstruction = cfg.decoder ? decoderActs[decoderActs.length - 1] : null;

  const backward = (dLoss = 1): { grads: Record<string, Float64Array>; dImages: Float64Array } => {
    const grads: Record<string, Float64Array> = {};
    // total = mean(margin) + mean(recon): each loss's backward already divides by B.
    const dLengths = marginLossBackward(lengths, targets, B, J, {}, dLoss);
    const dv = capsuleLengthsBackward(v, dLengths, { B, J, D });
    if (cfg.decoder && masked && maskClasses && reconstruction) {
      let dh = reconstructionLossBackward(reconstruction, reconTargets, B, g.pixels, cfg.reconWeight, dLoss);
      for (let l = sizes.length - 1; l >= 1; l--) {
        const input = l === 1 ? masked : decoderActs[l - 2];
        const r = denseBackward(input, params[`decoder.fc${l}.weight`], dh, { B, In: sizes[l - 1], Out: sizes[l] }, activation(l), decoderActs[l - 1]);
        grads[`decoder.fc${l}.weight`] = r.dW;
        grads[`decoder.fc${l}.bias`] = r.db;
        dh = r.dx;
      }
      const dvMask = maskCapsulesBackward(dh, { B, J, D }, maskClasses);
      for (let k = 0; k < dv.length; k++) dv[k] += dvMask[k];
    }
    const { duhat, dbias } = routingBackward(uhat, rDims, saved, dv, rOpts);
    if (cfg.routingBias && dbias) grads['digit.bias'] = dbias;
    const { dW, du } = capsPredictBackward(params['digit.W'], u, duhat, predDims);
    grads['digit.W'] = dW;
    const duPre = squashBackward(uPre, du, Dp);
    const dPrimary = primaryCapsReshapeBackward(duPre, pDims);
    const pb = conv2dBackward(conv1, conv1Shape, params['primary.weight'], pShape, dPrimary, pOpts);
    grads['primary.weight'] = pb.dw;
    grads['primary.bias'] = pb.db;
    const cb = conv2dBackward(batch.images, xShape, params['conv1.weight'], c1Shape, pb.dx, { relu: true }, conv1);
    grads['conv1.weight'] = cb.dw;
    grads['conv1.bias'] = cb.db;
    // Checkpoint order.
    const ordered: Record<string, Float64Array> = {};
    for (const name of Object.keys(shapes)) ordered[name] = grads[name];
    return { grads: ordered, dImages: cb.dx };
  };

  return {
    B,
    loss: margin.loss + recon.loss,
    marginLoss: margin.loss,
    reconLoss: recon.loss,
    marginPerExample: margin.perExample,
    reconPerExample: recon.perExample,
    v,
    lengths,
    predictions,
    maskClasses,
    reconstruction,
    acts: { conv1, primary, uPre, u, uhat, routing: saved, masked, decoder: decoderActs },
    backward,
  };
}
