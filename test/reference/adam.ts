// Adam (PyTorch semantics, bias-corrected, no weight decay) and the staircase learning-rate decay,
// f64 reference.

import { checkLength } from './util.ts';

export interface AdamOptions {
  /** default 1e-3 */
  lr?: number;
  /** default 0.9 */
  beta1?: number;
  /** default 0.999 */
  beta2?: number;
  /** default 1e-8 */
  eps?: number;
}

/**
 * One Adam step, in place on param, m and v. `step` is the 1-based count of updates including this
 * one (t = 1 on the first update), as in PyTorch:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 */
export function adamStep(
  param: Float64Array, grad: Float64Array, m: Float64Array, v: Float64Array, step: number, options: AdamOptions = {},
): void {
  const { lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = options;
  if (!Number.isInteger(step) || step < 1) throw new Error(`adamStep: step must be an integer >= 1 (1 on the first update), got ${step}`);
  checkLength(grad, param.length, 'adamStep grad');
  checkLength(m, param.length, 'adamStep m');
  checkLength(v, param.length, 'adamStep v');
  const c1 = 1 - Math.pow(beta1, step);
  const c2 = 1 - Math.pow(beta2, step);
  for (let k = 0; k < param.length; k++) {
    const g = grad[k];
    m[k] = beta1 * m[k] + (1 - beta1) * g;
    v[k] = beta2 * v[k] + (1 - beta2) * g * g;
    param[k] -= (lr * (m[k] / c1)) / (Math.sqrt(v[k] / c2) + eps);
  }
}

export interface LrScheduleOptions {
  /** default 1e-3 */
  lr0?: number;
  /** default 0.96 */
  decayRate?: number;
  /** default 2000 */
  decaySteps?: number;
}

/**
 * Staircase exponential decay (the official CapsNet schedule): lr0 * decayRate^floor(step / decaySteps),
 * where `step` is the 0-based global step (the number of updates already done; 0 for the first update).
 */
export function learningRate(step: number, options: LrScheduleOptions = {}): number {
  const { lr0 = 1e-3, decayRate = 0.96, decaySteps = 2000 } = options;
  if (!Number.isInteger(step) || step < 0) throw new Error(`learningRate: step must be an integer >= 0, got ${step}`);
  if (!Number.isInteger(decaySteps) || decaySteps < 1) throw new Error(`learningRate: decaySteps must be an integer >= 1, got ${decaySteps}`);
  return lr0 * Math.pow(decayRate, Math.floor(step / decaySteps));
}
