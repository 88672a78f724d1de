// Losses on the tape. Each kernel makes a per-example value [B]; the op returns the batch mean as a
// [1] tensor (reduced with the sum op of src/ops/elementwise.ts) and records one backward that
// reads d loss / d mean from the GPU (no readback) and writes the gradient with one gather kernel.
// Targets live on the GPU: multi-hot [B, J] f32 for the margin loss, class indices [B] stored as
// f32 for the cross-entropy. Targets and images never receive a gradient; they are listed as inputs
// on the tape so that backward() refuses to run if they were disposed in between.
// Kernels: kernels/margin_loss.wgsl (+ the top-K correctness of MultiMNIST), recon_loss.wgsl,
// softmax_xent.wgsl.
// Reference: test/reference/losses.ts. Tests: test/losses.test.ts.

import marginWgsl from '../../kernels/margin_loss.wgsl';
import reconWgsl from '../../kernels/recon_loss.wgsl';
import xentWgsl from '../../kernels/softmax_xent.wgsl';
import { type KernelSpec, f32 } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { type Tensor, empty, sameShape } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';
import { sum } from './elementwise.ts';

export interface MarginLossOptions {
  /** m+, default 0.9 */
  mPlus?: number;
  /** m-, default 0.1 */
  mMinus?: number;
  /** lambda, the down-weighting of absent classes, default 0.5 */
  lambda?: number;
}

/** The reconstruction loss weight of the paper. */
export const RECON_WEIGHT = 0.0005;

const k = (name: string, code: string, entryPoint: string): KernelSpec => ({ name: `${name}.${entryPoint}`, code, entryPoint });
export const LOSS_KERNELS = {
  marginForward: k('margin_loss', marginWgsl, 'forward'),
  marginBackward: k('margin_loss', marginWgsl, 'backward'),
  topKCorrect: k('margin_loss', marginWgsl, 'correct'),
  reconForward: k('recon_loss', reconWgsl, 'forward'),
  reconBackward: k('recon_loss', reconWgsl, 'backward'),
  xentForward: k('softmax_xent', xentWgsl, 'forward'),
  xentBackward: k('softmax_xent', xentWgsl, 'backward'),
};

function checkPair(op: string, a: Tensor, aName: string, b: Tensor, bName: string): [number, number] {
  a.assertAlive(op);
  b.assertAlive(op);
  if (a.ctx !== b.ctx) throw new ShapeError(`${op}: ${aName} ${a.describe()} and ${bName} ${b.describe()} live on different GPU contexts`);
  if (a.shape.length !== 2) throw new ShapeError(`${op}: ${aName} ${a.describe()} must have shape [batch, n]`);
  if (!sameShape(a.shape, b.shape)) throw new ShapeError(`${op}: ${aName} ${a.describe()} and ${bName} ${b.describe()} must have the same shape`);
  const [B, n] = a.shape;
  if (B < 1 || n < 1) throw new ShapeError(`${op}: ${aName} ${a.describe()} is empty`);
  return [B, n];
}

function checkFinite(op: string, name: string, value: number): void {
  if (!Number.isFinite(value)) throw new ShapeError(`${op}: ${name} must be a finite number, got ${value}`);
}

/** The batch mean of per-example values, as a [1] tensor; the per-example buffer is freed. */
function batchMean(perExample: Tensor, B: number): Tensor {
  const mean = sum(perExample, 1 / B);
  perExample.dispose();
  return mean;
}

/**
 * Margin loss, averaged over the batch: lengths [B, J] (capsule lengths), targets [B, J] multi-hot.
 * Per example: sum_k T_k max(0, m+ - L_k)^2 + lambda (1 - T_k) max(0, L_k - m-)^2. Returns [1].
 */
export function marginLoss(lengths: Tensor, targets: Tensor, options: MarginLossOptions = {}): Tensor {
  const { mPlus = 0.9, mMinus = 0.1, lambda = 0.5 } = options;
  const [B, J] = checkPair('marginLoss', lengths, 'lengths', targets, 'targets');
  checkFinite('marginLoss', 'mPlus', mPlus);
  checkFinite('marginLoss', 'mMinus', mMinus);
  checkFinite('marginLoss', 'lambda', lambda);
  const ctx = lengths.ctx;
  const params = [B, J, f32(mPlus), f32(mMinus), f32(lambda)];
  const perExample = empty(ctx, [B], 'marginLoss.perExample');
  ctx.dispatch(LOSS_KERNELS.marginForward, [lengths.buffer, targets.buffer, perExample.buffer], params, Math.ceil(B / 64));
  const loss = batchMean(perExample, B);
  return record(loss, 'marginLoss', [lengths, targets], (g) => {
    const d = empty(ctx, [B, J], 'marginLoss.grad');
    ctx.dispatch(LOSS_KERNELS.marginBackward, [lengths.buffer, targets.buffer, g.buffer, d.buffer], params, Math.ceil((B * J) / 64));
    accumulateGrad(lengths, d);
  });
}

/**
 * Which predictions are right, for one or several targets per example: lengths, targets [B, J]
 * (multi-hot) -> [B], 1 where the K longest capsules are exactly the K target classes (K = that
 * example's number of targets), else 0. For MultiMNIST (two-hot) that is the paper's measure: both
 * of the two longest capsules are the two labels; for one-hot targets it is "the longest capsule is
 * the label". Ranking by length, the lower index first on ties (as tf.nn.top_k and longestCapsule).
 * A row without targets (a padding example) counts as wrong. No gradient. `sum()` of it gives the
 * batch's count without a readback.
 */
export function topKCorrect(lengths: Tensor, targets: Tensor): Tensor {
  const [B, J] = checkPair('topKCorrect', lengths, 'lengths', targets, 'targets');
  const ctx = lengths.ctx;
  const out = empty(ctx, [B], 'topKCorrect');
  ctx.dispatch(LOSS_KERNELS.topKCorrect, [lengths.buffer, targets.buffer, out.buffer], [B, J, f32(0), f32(0), f32(0)], Math.ceil(B / 64));
  return out;
}

/**
 * The CPU twin of topKCorrect, for lengths already read back (evaluation): how many of `classes`
 * (K distinct class indices) are among the K longest capsules of `row` (the lower index first on
 * ties). K hits: right (MultiMNIST's measure); at least one: "almost right" (the official code's
 * second measure). A row holding a NaN scores 0 hits (topKCorrect also counts it as wrong).
 */
export function topKHits(row: ArrayLike<number>, classes: ArrayLike<number>): number {
  const J = row.length;
  const K = classes.length;
  const isTarget = new Uint8Array(J);
  for (let t = 0; t < K; t++) {
    const c = classes[t];
    if (!Number.isInteger(c) || c < 0 || c >= J) throw new Error(`topKHits: class ${c} is not in [0, ${J})`);
    if (isTarget[c]) throw new Error(`topKHits: class ${c} given twice; the targets must be distinct`);
    isTarget[c] = 1;
  }
  for (let j = 0; j < J; j++) if (Number.isNaN(row[j])) return 0;
  // Capsule a is among the K longest when fewer than K capsules rank above it.
  let hits = 0;
  for (let t = 0; t < K; t++) {
    const a = classes[t];
    let above = 0;
    for (let j = 0; j < J; j++) {
      if (j !== a && (row[j] > row[a] || (row[j] === row[a] && j < a))) above++;
    }
    if (above < K) hits++;
  }
  return hits;
}

/**
 * Reconstruction loss, averaged over the batch: recon, images [B, P] (pixel / 255).
 * Per example: weight * sum_p (recon - image)^2 (weight 0.0005 in the paper). Returns [1].
 */
export function reconstructionLoss(recon: Tensor, images: Tensor, weight = RECON_WEIGHT): Tensor {
  const [B, P] = checkPair('reconstructionLoss', recon, 'reconstruction', images, 'images');
  checkFinite('reconstructionLoss', 'weight', weight);
  const ctx = recon.ctx;
  const params = [B, P, f32(weight)];
  const perExample = empty(ctx, [B], 'reconstructionLoss.perExample');
  ctx.dispatch(LOSS_KERNELS.reconForward, [recon.buffer, images.buffer, perExample.buffer], params, B);
  const loss = batchMean(perExample, B);
  return record(loss, 'reconstructionLoss', [recon, images], (g) => {
    const d = empty(ctx, [B, P], 'reconstructionLoss.grad');
    ctx.dispatch(LOSS_KERNELS.reconBackward, [recon.buffer, images.buffer, g.buffer, d.buffer], params, Math.ceil((B * P) / 64));
    accumulateGrad(recon, d);
  });
}

/**
 * Softmax cross-entropy, averaged over the batch: logits [B, K], labels [B] (class indices as f32).
 * A label outside [0, K) or not an integer makes that example's loss (and its gradient) NaN: the
 * labels live on the GPU and are not read back to be checked. Returns [1].
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
  logits.assertAlive('softmaxCrossEntropy');
  labels.assertAlive('softmaxCrossEntropy');
  if (logits.ctx !== labels.ctx) throw new ShapeError(`softmaxCrossEntropy: logits ${logits.describe()} and labels ${labels.describe()} live on different GPU contexts`);
  if (logits.shape.length !== 2 || logits.shape[0] < 1 || logits.shape[1] < 1) {
    throw new ShapeError(`softmaxCrossEntropy: logits ${logits.describe()} must have shape [batch, classes], both at least 1`);
  }
  const [B, K] = logits.shape;
  if (!(labels.shape.length === 1 && labels.shape[0] === B)) {
    throw new ShapeError(`softmaxCrossEntropy: labels ${labels.describe()} must have shape [${B}] (one class index per row of logits ${logits.describe()})`);
  }
  const ctx = logits.ctx;
  const params = [B, K, 0x7fc00000];
  const perExample = empty(ctx, [B], 'softmaxCrossEntropy.perExample');
  ctx.dispatch(LOSS_KERNELS.xentForward, [logits.buffer, labels.buffer, perExample.buffer], params, Math.ceil(B / 64));
  const loss = batchMean(perExample, B);
  return record(loss, 'softmaxCrossEntropy', [logits, labels], (g) => {
    const d = empty(ctx, [B, K], 'softmaxCrossEntropy.grad');
    ctx.dispatch(LOSS_KERNELS.xentBackward, [logits.buffer, labels.buffer, g.buffer, d.buffer], params, Math.ceil((B * K) / 64));
    accumulateGrad(logits, d);
  });
}
