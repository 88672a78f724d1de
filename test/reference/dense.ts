// Fully connected layer, f64 reference, forward and backward.
// x [B, In], W [Out, In] (PyTorch's layout), b [Out] -> y [B, Out], y = act(x W^T + b).

import { checkDim, checkLength } from './util.ts';

export type Activation = 'none' | 'relu' | 'sigmoid';

export interface DenseDims {
  B: number;
  In: number;
  Out: number;
}

function checkDense(dims: DenseDims, x: Float64Array, W: Float64Array, what: string): void {
  for (const [k, n] of Object.entries(dims)) checkDim(n, `${what} ${k}`);
  checkLength(x, dims.B * dims.In, `${what} x [B, In]`);
  checkLength(W, dims.Out * dims.In, `${what} W [Out, In]`);
}

/** y[b,o] = act(bias[o] + sum_k x[b,k] W[o,k]). bias may be omitted. */
export function denseForward(
  x: Float64Array, W: Float64Array, bias: Float64Array | null | undefined, dims: DenseDims, activation: Activation = 'none',
): Float64Array {
  const { B, In, Out } = dims;
  checkDense(dims, x, W, 'denseForward');
  if (bias) checkLength(bias, Out, 'denseForward bias [Out]');
  const y = new Float64Array(B * Out);
  for (let b = 0; b < B; b++)
    for (let o = 0; o < Out; o++) {
      let acc = bias ? bias[o] : 0;
      for (let k = 0; k < In; k++) acc += x[b * In + k] * W[o * In + k];
      y[b * Out + o] = activation === 'relu' ? Math.max(0, acc) : activation === 'sigmoid' ? 1 / (1 + Math.exp(-acc)) : acc;
    }
  return y;
}

/**
 * Backward given dy [B, Out] (the gradient after the activation). `y` is the forward output,
 * required for 'relu' (gradient passes where y > 0) and 'sigmoid' (times y (1 - y)).
 * Returns dx [B, In], dW [Out, In], db [Out].
 */
export function denseBackward(
  x: Float64Array, W: Float64Array, dy: Float64Array, dims: DenseDims, activation: Activation = 'none', y?: Float64Array,
): { dx: Float64Array; dW: Float64Array; db: Float64Array } {
  const { B, In, Out } = dims;
  checkDense(dims, x, W, 'denseBackward');
  checkLength(dy, B * Out, 'denseBackward dy [B, Out]');
  const dPre = new Float64Array(dy);
  if (activation !== 'none') {
    if (!y) throw new Error(`denseBackward: activation '${activation}' needs the forward output y`);
    checkLength(y, B * Out, 'denseBackward y [B, Out]');
    for (let k = 0; k < dPre.length; k++) dPre[k] *= activation === 'relu' ? (y[k] > 0 ? 1 : 0) : y[k] * (1 - y[k]);
  }
  const dx = new Float64Array(B * In);
  const dW = new Float64Array(Out * In);
  const db = new Float64Array(Out);
  for (let b = 0; b < B; b++)
    for (let o = 0; o < Out; o++) {
      const g = dPre[b * Out + o];
      db[o] += g;
      for (let k = 0; k < In; k++) {
        dx[b * In + k] += g * W[o * In + k];
        dW[o * In + k] += g * x[b * In + k];
      }
    }
  return { dx, dW, db };
}
