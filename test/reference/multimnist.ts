// f64 reference for the MultiMNIST and preset parts of the model, composed from the reference ops:
//   - topKCorrect: whether the K longest capsules are exactly the K targets (by sorting);
//   - capsNetGeneralForward: the whole CapsNet with Conv1 / PrimaryCaps padding ('valid' or 'same')
//     and any number of reconstruction targets, each decoded from its own capsule:
//       loss = mean_b [ margin(lengths_b, targets_b) + sum_k w * sum_p (decode(v_b, class_kb) - image_kb)^2 ]
//     with every parameter's gradient and the input's. With 'valid' padding and one target equal
//     to the input it is test/reference/capsnet.ts's capsNetForward (a test checks that).
// Independent of src/: the padding rule is restated here from its definition.

import { conv2dBackward, conv2dForward } from './conv2d.ts';
import {
  capsPredict, capsPredictBackward, capsuleLengths, capsuleLengthsBackward, longestCapsule, maskCapsules,
  maskCapsulesBackward, primaryCapsReshape, primaryCapsReshapeBackward, routingBackward, routingForward, squash,
  squashBackward, type RoutingOptions,
} from './capsules.ts';
import { denseBackward, denseForward, type Activation } from './dense.ts';
import { marginLoss, marginLossBackward, reconstructionLoss, reconstructionLossBackward } from './losses.ts';
import { checkLength, numel } from './util.ts';
import type { CapsNetConfig } from './capsnet.ts';

/**
 * 1 per example whose K longest capsules (sorted by length, the lower index first on ties) are
 * exactly its K targets (K = its number of targets > 0.5), else 0; 0 for a row without targets or
 * holding a NaN. lengths, targets [B, J] -> [B].
 */
export function topKCorrect(lengths: ArrayLike<number>, targets: ArrayLike<number>, B: number, J: number): Float64Array {
  checkLength(lengths, B * J, 'topKCorrect lengths [B, J]');
  checkLength(targets, B * J, 'topKCorrect targets [B, J]');
  const out = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    const row = Array.from({ length: J }, (_, j) => lengths[b * J + j]);
    const wanted = new Set<number>();
    for (let j = 0; j < J; j++) if (targets[b * J + j] > 0.5) wanted.add(j);
    if (wanted.size === 0 || row.some(Number.isNaN)) continue;
    const order = row.map((_, j) => j).sort((x, y) => (row[y] - row[x]) || (x - y));
    const top = order.slice(0, wanted.size);
    out[b] = top.every((j) => wanted.has(j)) ? 1 : 0;
  }
  return out;
}

/** How many of `classes` are among the K = classes.length longest capsules of `row` (sorting). */
export function topKHits(row: ArrayLike<number>, classes: ArrayLike<number>): number {
  const values = Array.from(row);
  if (values.some(Number.isNaN)) return 0;
  const order = values.map((_, j) => j).sort((x, y) => (values[y] - values[x]) || (x - y));
  const top = new Set(order.slice(0, classes.length));
  return Array.from(classes).filter((c) => top.has(c)).length;
}

export interface GeneralConfig extends CapsNetConfig {
  convPadding: 'valid' | 'same';
}

/**
 * Padding of a convolution over a square input: 'valid' 0; 'same' the padding that makes the output
 * ceil(input / stride) with the same amount on both sides: TensorFlow's total padding
 * (out - 1) stride + kernel - input, halved, rounded up unless that gives one output too many.
 */
export function samePad(input: number, kernel: number, stride: number): number {
  const out = Math.ceil(input / stride);
  const total = Math.max(0, (out - 1) * stride + kernel - input);
  for (const pad of [Math.ceil(total / 2), Math.floor(total / 2)]) {
    if (Math.floor((input + 2 * pad - kernel) / stride) + 1 === out) return pad;
  }
  throw new Error(`samePad: no symmetric padding keeps ${input} -> ${out} (kernel ${kernel}, stride ${stride})`);
}

export interface GeneralGeometry {
  pad1: number;
  conv1Size: number;
  pad2: number;
  grid: number;
  I: number;
  decoderIn: number;
  pixels: number;
}

export function generalGeometry(cfg: GeneralConfig): GeneralGeometry {
  const same = cfg.convPadding === 'same';
  const pad1 = same ? samePad(cfg.inputSize, cfg.conv1Kernel, 1) : 0;
  const conv1Size = cfg.inputSize + 2 * pad1 - cfg.conv1Kernel + 1;
  const pad2 = same ? samePad(conv1Size, cfg.primaryKernel, cfg.primaryStride) : 0;
  const grid = Math.floor((conv1Size + 2 * pad2 - cfg.primaryKernel) / cfg.primaryStride) + 1;
  if (conv1Size < 1 || grid < 1) throw new Error(`generalGeometry: empty layer (conv1 ${conv1Size}, grid ${grid})`);
  return {
    pad1, conv1Size, pad2, grid,
    I: cfg.primaryTypes * grid * grid,
    decoderIn: cfg.digitCaps * cfg.digitDim,
    pixels: cfg.inputChannels * cfg.inputSize * cfg.inputSize,
  };
}

/** Every parameter's name and PyTorch shape, in checkpoint order. */
export function generalParamShapes(cfg: GeneralConfig): Record<string, number[]> {
  const g = generalGeometry(cfg);
  const shapes: Record<string, number[]> = {
    'conv1.weight': [cfg.conv1Channels, cfg.inputChannels, cfg.conv1Kernel, cfg.conv1Kernel],
    'conv1.bias': [cfg.conv1Channels],
    'primary.weight': [cfg.primaryTypes * cfg.primaryDim, cfg.conv1Channels, cfg.primaryKernel, cfg.primaryKernel],
    'primary.bias': [cfg.primaryTypes * cfg.primaryDim],
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

export interface ReconTargetRef {
  /** The capsule the decoder sees, per example. */
  classes: ArrayLike<number>;
  /** The image it must reproduce [B, pixels]. */
  images: Float64Array;
}

export interface GeneralBatch {
  /** [B, C, S, S] */
  images: Float64Array;
  /** multi-hot [B, digitCaps] */
  targets: Float64Array;
  /** reconstruction targets (none: margin loss only); needs cfg.decoder when not empty */
  recon: ReconTargetRef[];
}

export interface GeneralResult {
  B: number;
  loss: number;
  marginLoss: number;
  /** per target, the batch-mean weighted reconstruction loss */
  reconLosses: number[];
  v: Float64Array;
  lengths: Float64Array;
  predictions: Int32Array;
  /** per target, [B, pixels] */
  reconstructions: Float64Array[];
  /** Gradients of `loss` (times dLoss) for every parameter and for the images (as the input only). */
  backward(dLoss?: number): { grads: Record<string, Float64Array>; dImages: Float64Array };
}

export function capsNetGeneralForward(params: Record<string, Float64Array>, cfg: GeneralConfig, batch: GeneralBatch): GeneralResult {
  const g = generalGeometry(cfg);
  const shapes = generalParamShapes(cfg);
  for (const [name, shape] of Object.entries(shapes)) {
    if (!params[name]) throw new Error(`capsNetGeneralForward: missing parameter ${name}`);
    checkLength(params[name], numel(shape), `capsNetGeneralForward parameter ${name} [${shape.join(', ')}]`);
  }
  if (batch.recon.length > 0 && !cfg.decoder) throw new Error('capsNetGeneralForward: reconstruction targets need a decoder');
  const S = cfg.inputSize;
  const Cin = cfg.inputChannels;
  const J = cfg.digitCaps;
  const D = cfg.digitDim;
  const Dp = cfg.primaryDim;
  const B = batch.images.length / (Cin * S * S);
  if (!Number.isInteger(B) || B < 1) throw new Error(`capsNetGeneralForward: images length ${batch.images.length} is not a multiple of ${Cin}x${S}x${S}`);
  checkLength(batch.targets, B * J, 'capsNetGeneralForward targets [B, J]');

  const xShape = [B, Cin, S, S];
  const c1Shape = shapes['conv1.weight'];
  const c1Opts = { relu: true, padding: g.pad1 };
  const conv1 = conv2dForward(batch.images, xShape, params['conv1.weight'], c1Shape, params['conv1.bias'], c1Opts).out;
  const conv1Shape = [B, cfg.conv1Channels, g.conv1Size, g.conv1Size];
  const pShape = shapes['primary.weight'];
  const pOpts = { stride: cfg.primaryStride, padding: g.pad2 };
  const primary = conv2dForward(conv1, conv1Shape, params['primary.weight'], pShape, params['primary.bias'], pOpts).out;
  const pDims = { B, types: cfg.primaryTypes, dim: Dp, G: g.grid };
  const uPre = primaryCapsReshape(primary, pDims);
  const u = squash(uPre, Dp);
  const predDims = { B, I: g.I, J, Dout: D, Din: Dp };
  const uhat = capsPredict(params['digit.W'], u, predDims);
  const rDims = { B, I: g.I, J, D };
  const rOpts: RoutingOptions = { iterations: cfg.routings, gradMode: cfg.gradMode, leaky: cfg.leaky, bias: cfg.routingBias ? params['digit.bias'] : null };
  const { v, saved } = routingForward(uhat, rDims, rOpts);
  const lengths = capsuleLengths(v, { B, J, D });
  const margin = marginLoss(lengths, batch.targets, B, J);

  const sizes = [g.decoderIn, ...cfg.decoderHidden, g.pixels];
  const activation = (l: number): Activation => (l === sizes.length - 1 ? 'sigmoid' : 'relu');
  const decoded = batch.recon.map((r) => {
    checkLength(r.images, B * g.pixels, 'capsNetGeneralForward recon images [B, pixels]');
    const masked = maskCapsules(v, { B, J, D }, r.classes);
    const acts: Float64Array[] = [];
    let h = masked;
    for (let l = 1; l < sizes.length; l++) {
      h = denseForward(h, params[`decoder.fc${l}.weight`], params[`decoder.fc${l}.bias`], { B, In: sizes[l - 1], Out: sizes[l] }, activation(l));
      acts.push(h);
    }
    return { masked, acts, loss: reconstructionLoss(h, r.images, B, g.pixels, cfg.reconWeight).loss };
  });
  const reconLosses = decoded.map((d) => d.loss);

  const backward = (dLoss = 1) => {
    const grads: Record<string, Float64Array> = {};
    const dv = capsuleLengthsBackward(v, marginLossBackward(lengths, batch.targets, B, J, {}, dLoss), { B, J, D });
    batch.recon.forEach((r, k) => {
      const { masked, acts } = decoded[k];
      let dh = reconstructionLossBackward(acts[acts.length - 1], r.images, B, g.pixels, cfg.reconWeight, dLoss);
      for (let l = sizes.length - 1; l >= 1; l--) {
        const input = l === 1 ? masked : acts[l - 2];
        const res = denseBackward(input, params[`decoder.fc${l}.weight`], dh, { B, In: sizes[l - 1], Out: sizes[l] }, activation(l), acts[l - 1]);
        for (const [name, d] of [[`decoder.fc${l}.weight`, res.dW], [`decoder.fc${l}.bias`, res.db]] as const) {
          if (grads[name]) for (let i = 0; i < d.length; i++) grads[name][i] += d[i];
          else grads[name] = d;
        }
        dh = res.dx;
      }
      const dvMask = maskCapsulesBackward(dh, { B, J, D }, r.classes);
      for (let i = 0; i < dv.length; i++) dv[i] += dvMask[i];
    });
    if (cfg.decoder && batch.recon.length === 0) {
      for (const name of Object.keys(shapes)) if (name.startsWith('decoder.')) grads[name] = new Float64Array(numel(shapes[name]));
    }
    const { duhat, dbias } = routingBackward(uhat, rDims, saved, dv, rOpts);
    if (cfg.routingBias && dbias) grads['digit.bias'] = dbias;
    const { dW, du } = capsPredictBackward(params['digit.W'], u, duhat, predDims);
    grads['digit.W'] = dW;
    const dPrimary = primaryCapsReshapeBackward(squashBackward(uPre, du, Dp), pDims);
    const pb = conv2dBackward(conv1, conv1Shape, params['primary.weight'], pShape, dPrimary, pOpts);
    grads['primary.weight'] = pb.dw;
    grads['primary.bias'] = pb.db;
    const cb = conv2dBackward(batch.images, xShape, params['conv1.weight'], c1Shape, pb.dx, c1Opts, conv1);
    grads['conv1.weight'] = cb.dw;
    grads['conv1.bias'] = cb.db;
    const ordered: Record<string, Float64Array> = {};
    for (const name of Object.keys(shapes)) ordered[name] = grads[name];
    return { grads: ordered, dImages: cb.dx };
  };

  return {
    B,
    loss: margin.loss + reconLosses.reduce((a, b) => a + b, 0),
    marginLoss: margin.loss,
    reconLosses,
    v,
    lengths,
    predictions: longestCapsule(lengths, B, J),
    reconstructions: decoded.map((d) => d.acts[d.acts.length - 1]),
    backward,
  };
}
