// The paper's baseline CNN, f64 reference, forward and backward, composed from the reference ops:
//   conv (+ ReLU, + k x k max pool when pool > 1) x N -> flatten (c, y, x) -> FC + ReLU x M
//   -> dropout (training) -> FC -> logits
//   loss = mean over the batch of the softmax cross-entropy
// Parameters use the checkpoint names and PyTorch layouts of src/model/baseline.ts
// (conv<l>.weight [Cout, Cin, K, K], conv<l>.bias, fc<l>.weight [Out, In], fc<l>.bias); the config
// is declared here again so that the reference does not depend on src/.

import { conv2dBackward, conv2dForward, type Conv2dOptions } from './conv2d.ts';
import { denseBackward, denseForward } from './dense.ts';
import { softmaxCrossEntropy, softmaxCrossEntropyBackward } from './losses.ts';
import { dropoutBackward, dropoutForward } from './dropout.ts';
import { maxPool2dBackward, maxPool2dForward } from './pool.ts';
import { checkDim, checkLength, numel } from './util.ts';

export interface BaselineRefConfig {
  inputChannels: number;
  inputSize: number;
  convChannels: number[];
  convKernel: number;
  convStride: number;
  convPadding: 'same' | 'valid';
  /** Max pool k x k, stride k, 'SAME' (ceil), after each conv's ReLU; 1: none. */
  pool: number;
  fcHidden: number[];
  dropout: number;
  classes: number;
}

/** Every parameter's name and shape, in checkpoint order. */
export function baselineRefShapes(cfg: BaselineRefConfig): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  let cin = cfg.inputChannels;
  let side = cfg.inputSize;
  const pad = cfg.convPadding === 'same' ? (cfg.convKernel - 1) / 2 : 0;
  cfg.convChannels.forEach((cout, k) => {
    shapes[`conv${k + 1}.weight`] = [cout, cin, cfg.convKernel, cfg.convKernel];
    shapes[`conv${k + 1}.bias`] = [cout];
    side = Math.ceil((Math.floor((side + 2 * pad - cfg.convKernel) / cfg.convStride) + 1) / cfg.pool);
    cin = cout;
  });
  const sizes = [cin * side * side, ...cfg.fcHidden, cfg.classes];
  for (let l = 1; l < sizes.length; l++) {
    shapes[`fc${l}.weight`] = [sizes[l], sizes[l - 1]];
    shapes[`fc${l}.bias`] = [sizes[l]];
  }
  return shapes;
}

export function countBaselineRefParams(cfg: BaselineRefConfig): number {
  return Object.values(baselineRefShapes(cfg)).reduce((n, s) => n + numel(s), 0);
}

export interface BaselineRefInputs {
  /** [B, C, S, S] */
  images: Float64Array;
  /** [B] class indices */
  labels: ArrayLike<number>;
  /** Dropout on (with this seed); false or omitted: inference (no dropout). */
  training?: boolean;
  dropoutSeed?: number;
}

export interface BaselineRefResult {
  logits: Float64Array;
  loss: number;
  /** Every layer's output, by name (conv1.., fc1.., dropout), for tests that look inside. */
  activations: Record<string, Float64Array>;
  /**
   * Gradients of the loss by parameter name, and with respect to the images. `reluMasks` (layer
   * outputs by name, e.g. the GPU's own conv1.., fc1..) decide where each ReLU passes the gradient
   * (where the output is > 0), and where each max pool's winner is, instead of the reference's
   * outputs: a pre-activation within rounding of 0 can be positive in f32 and negative in f64 (two
   * near-equal values can swap order), and the mask is not what the test is about.
   */
  backward(reluMasks?: Record<string, ArrayLike<number>>): { grads: Record<string, Float64Array>; dImages: Float64Array };
}

export function baselineRefForward(params: Record<string, Float64Array>, cfg: BaselineRefConfig, inputs: BaselineRefInputs): BaselineRefResult {
  const shapes = baselineRefShapes(cfg);
  for (const [name, shape] of Object.entries(shapes)) {
    if (!params[name]) throw new Error(`baselineRefForward: missing parameter ${name}`);
    checkLength(params[name], numel(shape), `baselineRefForward ${name}`);
  }
  const S = cfg.inputSize;
  const B = inputs.images.length / (cfg.inputChannels * S * S);
  checkDim(B, 'baselineRefForward batch');
  checkLength(inputs.labels, B, 'baselineRefForward labels');
  const convOptions: Conv2dOptions = { stride: cfg.convStride, padding: cfg.convPadding, relu: true };
  const activations: Record<string, Float64Array> = {};

  // Convolutions: keep each input and output for the backward pass.
  const convIn: Array<{ x: Float64Array; shape: number[] }> = [];
  const convOut: Float64Array[] = [];
  const convOutShape: number[][] = [];
  let x = inputs.images;
  let xShape = [B, cfg.inputChannels, S, S];
  for (let l = 1; l <= cfg.convChannels.length; l++) {
    const wShape = shapes[`conv${l}.weight`];
    const { out, outShape } = conv2dForward(x, xShape, params[`conv${l}.weight`], wShape, params[`conv${l}.bias`], convOptions);
    convIn.push({ x, shape: xShape });
    convOut.push(out);
    convOutShape.push([...outShape]);
    activations[`conv${l}`] = out;
    x = out;
    xShape = [...outShape];
    if (cfg.pool > 1) {
      const pooled = maxPool2dForward(out, outShape, cfg.pool);
      activations[`pool${l}`] = pooled.out;
      x = pooled.out;
      xShape = pooled.outShape;
    }
  }
  // Flatten: [B, C, H, W] row-major is already [B, C*H*W].
  const flat = xShape[1] * xShape[2] * xShape[3];
  const layers = cfg.fcHidden.length + 1;
  const fcIn: Float64Array[] = [];
  const fcOut: Float64Array[] = [];
  let h = x;
  let width = flat;
  const dropping = inputs.training === true && cfg.dropout > 0;
  if (dropping && inputs.dropoutSeed === undefined) throw new Error('baselineRefForward: training needs dropoutSeed');
  for (let l = 1; l <= layers; l++) {
    const last = l === layers;
    if (last && dropping) {
      h = dropoutForward(h, cfg.dropout, inputs.dropoutSeed!);
      activations.dropout = h;
    }
    const [Out, In] = shapes[`fc${l}.weight`];
    if (In !== width) throw new Error(`baselineRefForward: fc${l} expects ${In} inputs, got ${width}`);
    const y = denseForward(h, params[`fc${l}.weight`], params[`fc${l}.bias`], { B, In, Out }, last ? 'none' : 'relu');
    fcIn.push(h);
    fcOut.push(y);
    activations[`fc${l}`] = y;
    h = y;
    width = Out;
  }
  const logits = h;
  const K = cfg.classes;
  const { loss } = softmaxCrossEntropy(logits, inputs.labels, B, K);

  const backward = (reluMasks: Record<string, ArrayLike<number>> = {}) => {
    const maskOf = (name: string, own: Float64Array): Float64Array => {
      const given = reluMasks[name];
      if (!given) return own;
      checkLength(given, own.length, `baselineRefForward backward mask ${name}`);
      return Float64Array.from(given);
    };
    const grads: Record<string, Float64Array> = {};
    let d = softmaxCrossEntropyBackward(logits, inputs.labels, B, K);
    for (let l = layers; l >= 1; l--) {
      const last = l === layers;
      const [Out, In] = shapes[`fc${l}.weight`];
      const r = denseBackward(fcIn[l - 1], params[`fc${l}.weight`], d, { B, In, Out }, last ? 'none' : 'relu', last ? fcOut[l - 1] : maskOf(`fc${l}`, fcOut[l - 1]));
      grads[`fc${l}.weight`] = r.dW;
      grads[`fc${l}.bias`] = r.db;
      d = r.dx;
      if (last && dropping) d = dropoutBackward(d, cfg.dropout, inputs.dropoutSeed!);
    }
    for (let l = cfg.convChannels.length; l >= 1; l--) {
      // The pool's winners, like the ReLU's mask, from the given outputs: a near-tie can order differently in f32.
      if (cfg.pool > 1) d = maxPool2dBackward(maskOf(`conv${l}`, convOut[l - 1]), convOutShape[l - 1], cfg.pool, d);
      const { x: xin, shape } = convIn[l - 1];
      const r = conv2dBackward(xin, shape, params[`conv${l}.weight`], shapes[`conv${l}.weight`], d, convOptions, maskOf(`conv${l}`, convOut[l - 1]));
      grads[`conv${l}.weight`] = r.dw;
      grads[`conv${l}.bias`] = r.db;
      d = r.dx;
    }
    return { grads, dImages: d };
  };
  return { logits, loss, activations, backward };
}
