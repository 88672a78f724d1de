// Losses, f64 reference, with their gradients. Every loss is the mean over the batch; every
// backward returns the gradient of that mean (times dLoss, default 1).

import { checkDim, checkIndices, checkLength } from './util.ts';

export interface MarginLossOptions {
  /** m+ (0.9) */
  mPlus?: number;
  /** m- (0.1) */
  mMinus?: number;
  /** lambda, the down-weighting of absent classes (0.5) */
  lambda?: number;
}

/**
 * Margin loss. lengths [B, J], targets T [B, J] multi-hot (one-hot for MNIST, two-hot for MultiMNIST).
 * Per example: sum_k T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2.
 * Returns the batch mean and the per-example values.
 */
export function marginLoss(
  lengths: Float64Array, targets: Float64Array, B: number, J: number, options: MarginLossOptions = {},
): { loss: number; perExample: Float64Array } {
  const { mPlus = 0.9, mMinus = 0.1, lambda = 0.5 } = options;
  checkDim(B, 'marginLoss B');
  checkDim(J, 'marginLoss J');
  checkLength(lengths, B * J, 'marginLoss lengths [B, J]');
  checkLength(targets, B * J, 'marginLoss targets [B, J]');
  const perExample = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let acc = 0;
    for (let k = 0; k < J; k++) {
      const L = lengths[b * J + k];
      const T = targets[b * J + k];
      const present = Math.max(0, mPlus - L);
      const absent = Math.max(0, L - mMinus);
      acc += T * present * present + lambda * (1 - T) * absent * absent;
    }
    perExample[b] = acc;
  }
  let loss = 0;
  for (let b = 0; b < B; b++) loss += perExample[b];
  return { loss: loss / B, perExample };
}

/**
 * Gradient of the mean margin loss with respect to lengths [B, J]:
 * (dLoss / B) (-2 T_k max(0, m+ - |v_k|) + 2 lambda (1 - T_k) max(0, |v_k| - m-)).
 */
export function marginLossBackward(
  lengths: Float64Array, targets: Float64Array, B: number, J: number, options: MarginLossOptions = {}, dLoss = 1,
): Float64Array {
  const { mPlus = 0.9, mMinus = 0.1, lambda = 0.5 } = options;
  checkLength(lengths, B * J, 'marginLossBackward lengths [B, J]');
  checkLength(targets, B * J, 'marginLossBackward targets [B, J]');
  const dLengths = new Float64Array(B * J);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < J; k++) {
      const L = lengths[b * J + k];
      const T = targets[b * J + k];
      const present = Math.max(0, mPlus - L);
      const absent = Math.max(0, L - mMinus);
      dLengths[b * J + k] = (dLoss / B) * (-2 * T * present + 2 * lambda * (1 - T) * absent);
    }
  return dLengths;
}

/** The reconstruction loss weight of the paper. */
export const RECON_WEIGHT = 0.0005;

/**
 * Reconstruction loss. recon, target [B, P] (P pixels, pixel / 255).
 * Per example: weight * sum_p (recon - target)^2. Returns the batch mean and the per-example values.
 */
export function reconstructionLoss(
  recon: Float64Array, target: Float64Array, B: number, P: number, weight = RECON_WEIGHT,
): { loss: number; perExample: Float64Array } {
  checkDim(B, 'reconstructionLoss B');
  checkDim(P, 'reconstructionLoss P');
  checkLength(recon, B * P, 'reconstructionLoss recon [B, P]');
  checkLength(target, B * P, 'reconstructionLoss target [B, P]');
  const perExample = new Float64Array(B);
  let loss = 0;
  for (let b = 0; b < B; b++) {
    let acc = 0;
    for (let p = 0; p < P; p++) {
      const e = recon[b * P + p] - target[b * P + p];
      acc += e * e;
    }
    perExample[b] = weight * acc;
    loss += perExample[b];
  }
  return { loss: loss / B, perExample };
}

/** Gradient of the mean reconstruction loss with respect to recon: dLoss * weight * 2 (recon - target) / B. */
export function reconstructionLossBackward(
  recon: Float64Array, target: Float64Array, B: number, P: number, weight = RECON_WEIGHT, dLoss = 1,
): Float64Array {
  checkLength(recon, B * P, 'reconstructionLossBackward recon [B, P]');
  checkLength(target, B * P, 'reconstructionLossBackward target [B, P]');
  const d = new Float64Array(B * P);
  for (let k = 0; k < B * P; k++) d[k] = (dLoss * weight * 2 * (recon[k] - target[k])) / B;
  return d;
}

/**
 * Softmax cross-entropy (for the baseline CNN). logits [B, K], labels [B] (class indices).
 * loss = mean_b (logsumexp(logits[b]) - logits[b, label_b]). Also returns the softmax probabilities.
 */
export function softmaxCrossEntropy(
  logits: Float64Array, labels: ArrayLike<number>, B: number, K: number,
): { loss: number; perExample: Float64Array; probs: Float64Array } {
  checkDim(B, 'softmaxCrossEntropy B');
  checkDim(K, 'softmaxCrossEntropy K');
  checkLength(logits, B * K, 'softmaxCrossEntropy logits [B, K]');
  checkIndices(labels, B, K, 'softmaxCrossEntropy labels');
  const perExample = new Float64Array(B);
  const probs = new Float64Array(B * K);
  let loss = 0;
  for (let b = 0; b < B; b++) {
    let m = -Infinity;
    for (let k = 0; k < K; k++) m = Math.max(m, logits[b * K + k]);
    let z = 0;
    for (let k = 0; k < K; k++) z += Math.exp(logits[b * K + k] - m);
    for (let k = 0; k < K; k++) probs[b * K + k] = Math.exp(logits[b * K + k] - m) / z;
    perExample[b] = m + Math.log(z) - logits[b * K + labels[b]];
    loss += perExample[b];
  }
  return { loss: loss / B, perExample, probs };
}

/** Gradient of the mean softmax cross-entropy with respect to the logits: dLoss (softmax - onehot) / B. */
export function softmaxCrossEntropyBackward(
  logits: Float64Array, labels: ArrayLike<number>, B: number, K: number, dLoss = 1,
): Float64Array {
  const { probs } = softmaxCrossEntropy(logits, labels, B, K);
  const d = new Float64Array(B * K);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < K; k++) d[b * K + k] = (dLoss * (probs[b * K + k] - (k === labels[b] ? 1 : 0))) / B;
  return d;
}

/** One-hot targets [B, J] from class indices. */
export function oneHot(labels: ArrayLike<number>, B: number, J: number): Float64Array {
  checkIndices(labels, B, J, 'oneHot labels');
  const t = new Float64Array(B * J);
  for (let b = 0; b < B; b++) t[b * J + labels[b]] = 1;
  return t;
}
