// Capsule operations, f64 reference, forward and hand-written backward:
// squash, the PrimaryCaps reshape, the prediction vectors u_hat = W u, dynamic routing,
// capsule lengths and the decoder mask. All arrays are row-major Float64Array.
// The routing backward pass is derived line by line in kernels/routing_backward.md.

import { checkDim, checkIndices, checkLength } from './util.ts';

/** The epsilon inside squash's square root: v = (n2 / (1 + n2)) * s / sqrt(n2 + SQUASH_EPS). */
export const SQUASH_EPS = 1e-7;
/** The epsilon inside the capsule length: |v| = sqrt(sum v^2 + LENGTH_EPS). */
export const LENGTH_EPS = 1e-9;

// ---------------------------------------------------------------------------------------------
// squash over the last axis

/**
 * squash over the last axis of s [rows, dim] (rows = s.length / dim):
 * n2 = |s|^2, v = f(n2) s with f(n2) = n2 / ((1 + n2) sqrt(n2 + eps)).
 * (Valid while n2 is finite in f64, i.e. |s| < ~1e154.)
 */
export function squash(s: Float64Array, dim: number, eps = SQUASH_EPS): Float64Array {
  checkDim(dim, 'squash dim');
  if (s.length % dim !== 0) throw new Error(`squash: length ${s.length} is not a multiple of dim ${dim}`);
  const v = new Float64Array(s.length);
  for (let r = 0; r < s.length / dim; r++) {
    let n2 = 0;
    for (let d = 0; d < dim; d++) n2 += s[r * dim + d] * s[r * dim + d];
    const f = n2 / ((1 + n2) * Math.sqrt(n2 + eps));
    for (let d = 0; d < dim; d++) v[r * dim + d] = f * s[r * dim + d];
  }
  return v;
}

/**
 * Backward of squash (vector-Jacobian product): given s and dv = dL/dv, returns ds = dL/ds.
 * With v = f(n2) s:  ds = f dv + 2 f'(n2) (s . dv) s, where
 *   f'(n2) = (1 / ((1 + n2) sqrt(n2 + eps))) * (1 / (1 + n2) - n2 / (2 (n2 + eps)))
 * (finite at n2 = 0, where ds = 0 since f(0) = 0).
 */
export function squashBackward(s: Float64Array, dv: Float64Array, dim: number, eps = SQUASH_EPS): Float64Array {
  checkDim(dim, 'squash dim');
  checkLength(dv, s.length, 'squashBackward dv');
  if (s.length % dim !== 0) throw new Error(`squashBackward: length ${s.length} is not a multiple of dim ${dim}`);
  const ds = new Float64Array(s.length);
  for (let r = 0; r < s.length / dim; r++) {
    let n2 = 0;
    let sdv = 0;
    for (let d = 0; d < dim; d++) {
      n2 += s[r * dim + d] * s[r * dim + d];
      sdv += s[r * dim + d] * dv[r * dim + d];
    }
    const root = Math.sqrt(n2 + eps);
    const f = n2 / ((1 + n2) * root);
    const fPrime = (1 / ((1 + n2) * root)) * (1 / (1 + n2) - n2 / (2 * (n2 + eps)));
    for (let d = 0; d < dim; d++) ds[r * dim + d] = f * dv[r * dim + d] + 2 * fPrime * sdv * s[r * dim + d];
  }
  return ds;
}

// ---------------------------------------------------------------------------------------------
// PrimaryCaps reshape

export interface PrimaryCapsDims {
  B: number;
  /** capsule types (32 in the paper) */
  types: number;
  /** capsule dimension (8 in the paper) */
  dim: number;
  /** grid side (6 in the paper) */
  G: number;
}

/**
 * conv [B, types*dim, G, G] -> u [B, types*G*G, dim]:
 * u[b, type*G*G + y*G + x, d] = conv[b, type*dim + d, y, x]. (No squash here.)
 */
export function primaryCapsReshape(conv: Float64Array, dims: PrimaryCapsDims): Float64Array {
  const { B, types, dim, G } = dims;
  for (const [k, n] of Object.entries(dims)) checkDim(n, `primaryCapsReshape ${k}`);
  checkLength(conv, B * types * dim * G * G, 'primaryCapsReshape conv [B, types*dim, G, G]');
  const I = types * G * G;
  const u = new Float64Array(conv.length);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < types; t++)
      for (let d = 0; d < dim; d++)
        for (let y = 0; y < G; y++)
          for (let x = 0; x < G; x++)
            u[(b * I + t * G * G + y * G + x) * dim + d] = conv[((b * types * dim + t * dim + d) * G + y) * G + x];
  return u;
}

/** Backward of primaryCapsReshape (the inverse permutation): du [B, types*G*G, dim] -> dconv [B, types*dim, G, G]. */
export function primaryCapsReshapeBackward(du: Float64Array, dims: PrimaryCapsDims): Float64Array {
  const { B, types, dim, G } = dims;
  for (const [k, n] of Object.entries(dims)) checkDim(n, `primaryCapsReshapeBackward ${k}`);
  checkLength(du, B * types * dim * G * G, 'primaryCapsReshapeBackward du [B, types*G*G, dim]');
  const I = types * G * G;
  const dconv = new Float64Array(du.length);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < types; t++)
      for (let d = 0; d < dim; d++)
        for (let y = 0; y < G; y++)
          for (let x = 0; x < G; x++)
            dconv[((b * types * dim + t * dim + d) * G + y) * G + x] = du[(b * I + t * G * G + y * G + x) * dim + d];
  return dconv;
}

// ---------------------------------------------------------------------------------------------
// Prediction vectors

export interface CapsPredictDims {
  B: number;
  /** child capsules (1152) */
  I: number;
  /** parent capsules (10) */
  J: number;
  /** parent dimension (16) */
  Dout: number;
  /** child dimension (8) */
  Din: number;
}

function checkPredictDims(dims: CapsPredictDims, what: string): void {
  for (const [k, n] of Object.entries(dims)) checkDim(n, `${what} ${k}`);
}

/** W [I, J, Dout, Din], u [B, I, Din] -> uhat [B, I, J, Dout], uhat[b,i,j,:] = W[i,j] @ u[b,i]. */
export function capsPredict(W: Float64Array, u: Float64Array, dims: CapsPredictDims): Float64Array {
  const { B, I, J, Dout, Din } = dims;
  checkPredictDims(dims, 'capsPredict');
  checkLength(W, I * J * Dout * Din, 'capsPredict W [I, J, Dout, Din]');
  checkLength(u, B * I * Din, 'capsPredict u [B, I, Din]');
  const uhat = new Float64Array(B * I * J * Dout);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < I; i++)
      for (let j = 0; j < J; j++)
        for (let o = 0; o < Dout; o++) {
          let acc = 0;
          for (let k = 0; k < Din; k++) acc += W[((i * J + j) * Dout + o) * Din + k] * u[(b * I + i) * Din + k];
          uhat[((b * I + i) * J + j) * Dout + o] = acc;
        }
  return uhat;
}

/**
 * Backward of capsPredict given duhat [B, I, J, Dout]:
 * dW[i,j,o,k] = sum_b duhat[b,i,j,o] u[b,i,k];  du[b,i,k] = sum_j sum_o W[i,j,o,k] duhat[b,i,j,o].
 */
export function capsPredictBackward(
  W: Float64Array, u: Float64Array, duhat: Float64Array, dims: CapsPredictDims,
): { dW: Float64Array; du: Float64Array } {
  const { B, I, J, Dout, Din } = dims;
  checkPredictDims(dims, 'capsPredictBackward');
  checkLength(W, I * J * Dout * Din, 'capsPredictBackward W [I, J, Dout, Din]');
  checkLength(u, B * I * Din, 'capsPredictBackward u [B, I, Din]');
  checkLength(duhat, B * I * J * Dout, 'capsPredictBackward duhat [B, I, J, Dout]');
  const dW = new Float64Array(W.length);
  const du = new Float64Array(u.length);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < I; i++)
      for (let j = 0; j < J; j++)
        for (let o = 0; o < Dout; o++) {
          const g = duhat[((b * I + i) * J + j) * Dout + o];
          for (let k = 0; k < Din; k++) {
            dW[((i * J + j) * Dout + o) * Din + k] += g * u[(b * I + i) * Din + k];
            du[(b * I + i) * Din + k] += g * W[((i * J + j) * Dout + o) * Din + k];
          }
        }
  return { dW, du };
}

// ---------------------------------------------------------------------------------------------
// Dynamic routing by agreement

export interface RoutingDims {
  B: number;
  /** child capsules */
  I: number;
  /** parent capsules */
  J: number;
  /** parent dimension */
  D: number;
}

export type RoutingGradMode = 'all' | 'last';

export interface RoutingOptions {
  /** r >= 1, default 3. */
  iterations?: number;
  /**
   * 'all' (default): gradients flow through every iteration, including the agreement updates.
   * 'last': only through the last iteration; its coupling coefficients (and everything before them)
   * are constants (stop-gradient on the logits).
   */
  gradMode?: RoutingGradMode;
  /** Softmax over J + 1 logits, the extra one fixed at 0 and its coefficient dropped. Default false. */
  leaky?: boolean;
  /** Optional [J, D] added to s before the squash in every iteration. */
  bias?: Float64Array | null;
  /**
   * Forward only, for finite differences of gradMode 'last': the logits [B, I, J] to use in the last
   * iteration instead of the computed ones (pass saved.logits[r - 1] of the base point). Earlier
   * iterations are still computed (and saved) but then no longer influence the output.
   */
  frozenLogits?: Float64Array;
}

/** What the forward pass keeps for the backward pass; index t = 0 .. r-1 is iteration t + 1. */
export interface RoutingSaved {
  iterations: number;
  /** b^t [B, I, J]: the logits the softmax of iteration t saw (b^1 = 0). */
  logits: Float64Array[];
  /** c^t [B, I, J]: coupling coefficients of iteration t. */
  c: Float64Array[];
  /** s^t [B, J, D]: weighted sums (bias included) of iteration t. */
  s: Float64Array[];
  /** v^t [B, J, D]: squash(s^t); v^r is the output. */
  v: Float64Array[];
}

function resolveRouting(dims: RoutingDims, options: RoutingOptions, what: string) {
  for (const [k, n] of Object.entries(dims)) checkDim(n, `${what} ${k}`);
  const iterations = options.iterations ?? 3;
  if (!Number.isInteger(iterations) || iterations < 1) throw new Error(`${what}: iterations must be an integer >= 1, got ${iterations}`);
  const gradMode = options.gradMode ?? 'all';
  if (gradMode !== 'all' && gradMode !== 'last') throw new Error(`${what}: gradMode must be 'all' or 'last', got ${String(gradMode)}`);
  const bias = options.bias ?? null;
  if (bias) checkLength(bias, dims.J * dims.D, `${what} bias [J, D]`);
  return { iterations, gradMode, leaky: options.leaky ?? false, bias };
}

/**
 * Softmax of one row of logits b[0..J-1] into c[0..J-1]. Leaky: over the J logits plus an extra
 * logit fixed at 0 whose coefficient is dropped (so sum c < 1). Max-subtracted for stability.
 */
export function routingSoftmaxRow(b: Float64Array, bOff: number, c: Float64Array, cOff: number, J: number, leaky: boolean): void {
  let m = leaky ? 0 : -Infinity;
  for (let j = 0; j < J; j++) m = Math.max(m, b[bOff + j]);
  let z = leaky ? Math.exp(0 - m) : 0;
  for (let j = 0; j < J; j++) z += Math.exp(b[bOff + j] - m);
  for (let j = 0; j < J; j++) c[cOff + j] = Math.exp(b[bOff + j] - m) / z;
}

/**
 * Dynamic routing, independently per example. uhat [B, I, J, D] -> v [B, J, D].
 *   b = 0 [I, J]; for t = 1..r:
 *     c[i,:] = softmax_j(b[i,:])               (leaky: with an extra 0 logit, dropped)
 *     s[j]   = sum_i c[i,j] uhat[i,j] (+ bias[j])
 *     v[j]   = squash(s[j])
 *     if t < r: b[i,j] += uhat[i,j] . v[j]
 */
export function routingForward(
  uhat: Float64Array, dims: RoutingDims, options: RoutingOptions = {},
): { v: Float64Array; saved: RoutingSaved } {
  const { B, I, J, D } = dims;
  const { iterations: r, leaky, bias } = resolveRouting(dims, options, 'routingForward');
  checkLength(uhat, B * I * J * D, 'routingForward uhat [B, I, J, D]');
  if (options.frozenLogits) checkLength(options.frozenLogits, B * I * J, 'routingForward frozenLogits [B, I, J]');
  const saved: RoutingSaved = { iterations: r, logits: [], c: [], s: [], v: [] };
  for (let t = 0; t < r; t++) {
    saved.logits.push(new Float64Array(B * I * J));
    saved.c.push(new Float64Array(B * I * J));
    saved.s.push(new Float64Array(B * J * D));
    saved.v.push(new Float64Array(B * J * D));
  }
  for (let b = 0; b < B; b++) {
    const logits = new Float64Array(I * J); // b^1 = 0, one per example
    for (let t = 0; t < r; t++) {
      if (t === r - 1 && options.frozenLogits) logits.set(options.frozenLogits.subarray(b * I * J, (b + 1) * I * J));
      const L = saved.logits[t], c = saved.c[t], s = saved.s[t], v = saved.v[t];
      L.set(logits, b * I * J);
      for (let i = 0; i < I; i++) routingSoftmaxRow(logits, i * J, c, (b * I + i) * J, J, leaky);
      for (let j = 0; j < J; j++)
        for (let d = 0; d < D; d++) {
          let acc = bias ? bias[j * D + d] : 0;
          for (let i = 0; i < I; i++) acc += c[(b * I + i) * J + j] * uhat[((b * I + i) * J + j) * D + d];
          s[(b * J + j) * D + d] = acc;
        }
      v.set(squash(s.subarray(b * J * D, (b + 1) * J * D), D), b * J * D);
      if (t < r - 1) {
        for (let i = 0; i < I; i++)
          for (let j = 0; j < J; j++) {
            let agree = 0;
            for (let d = 0; d < D; d++) agree += uhat[((b * I + i) * J + j) * D + d] * v[(b * J + j) * D + d];
            logits[i * J + j] += agree;
          }
      }
    }
  }
  return { v: new Float64Array(saved.v[r - 1]), saved };
}

/**
 * Backward of routingForward, by hand (kernels/routing_backward.md): given dv [B, J, D] = dL/dv^r
 * returns duhat [B, I, J, D] and dbias [J, D] (summed over the batch and the iterations; null
 * without a bias). `options` must be those of the forward pass (iterations, gradMode, leaky, bias).
 *
 * Per example, with dB = dL/db^{t+1} (zero at t = r):
 *   for t = r .. 1:
 *     if t < r:  dv^t[j]       = sum_i dB[i,j] uhat[i,j]        (agreement b^{t+1} = b^t + uhat . v^t)
 *                duhat[i,j]   += dB[i,j] v^t[j]
 *     else:      dv^t          = dv
 *     ds^t       = squashBackward(s^t, dv^t)
 *     dbias     += ds^t
 *     dc[i,j]    = uhat[i,j] . ds^t[j]
 *     duhat[i,j]+= c^t[i,j] ds^t[j]
 *     dB[i,j]   += c^t[i,j] (dc[i,j] - sum_k c^t[i,k] dc[i,k])   (softmax; b^{t+1} -> b^t is the identity)
 * gradMode 'last' runs only the t = r step and never touches dB.
 */
export function routingBackward(
  uhat: Float64Array, dims: RoutingDims, saved: RoutingSaved, dv: Float64Array, options: RoutingOptions = {},
): { duhat: Float64Array; dbias: Float64Array | null } {
  const { B, I, J, D } = dims;
  const { iterations: r, gradMode, bias } = resolveRouting(dims, options, 'routingBackward');
  checkLength(uhat, B * I * J * D, 'routingBackward uhat [B, I, J, D]');
  checkLength(dv, B * J * D, 'routingBackward dv [B, J, D]');
  if (saved.iterations !== r) throw new Error(`routingBackward: saved ${saved.iterations} iterations, options say ${r}`);
  const duhat = new Float64Array(uhat.length);
  const dbias = bias ? new Float64Array(J * D) : null;
  const first = gradMode === 'all' ? 0 : r - 1;
  for (let b = 0; b < B; b++) {
    const dB = new Float64Array(I * J); // dL/db^{t+1}
    for (let t = r - 1; t >= first; t--) {
      const c = saved.c[t], s = saved.s[t], v = saved.v[t];
      // dL/dv^t
      const dvt = new Float64Array(J * D);
      if (t === r - 1) {
        dvt.set(dv.subarray(b * J * D, (b + 1) * J * D));
      } else {
        for (let i = 0; i < I; i++)
          for (let j = 0; j < J; j++) {
            const g = dB[i * J + j];
            for (let d = 0; d < D; d++) {
              dvt[j * D + d] += g * uhat[((b * I + i) * J + j) * D + d];
              duhat[((b * I + i) * J + j) * D + d] += g * v[(b * J + j) * D + d];
            }
          }
      }
      // dL/ds^t
      const dst = squashBackward(s.subarray(b * J * D, (b + 1) * J * D), dvt, D);
      if (dbias) for (let k = 0; k < J * D; k++) dbias[k] += dst[k];
      // dL/dc^t and the direct path into uhat
      const dc = new Float64Array(I * J);
      for (let i = 0; i < I; i++)
        for (let j = 0; j < J; j++) {
          const cij = c[(b * I + i) * J + j];
          let acc = 0;
          for (let d = 0; d < D; d++) {
            const k = ((b * I + i) * J + j) * D + d;
            acc += uhat[k] * dst[j * D + d];
            duhat[k] += cij * dst[j * D + d];
          }
          dc[i * J + j] = acc;
        }
      if (gradMode === 'last') continue;
      // dL/db^t = dL/db^{t+1} (identity path) + softmax Jacobian^T dc (the leaky extra logit is a constant
      // and its coefficient is unused, so the same formula holds with the sum over the J real parents).
      for (let i = 0; i < I; i++) {
        let dot = 0;
        for (let k = 0; k < J; k++) dot += c[(b * I + i) * J + k] * dc[i * J + k];
        for (let j = 0; j < J; j++) dB[i * J + j] += c[(b * I + i) * J + j] * (dc[i * J + j] - dot);
      }
    }
    // dB now holds dL/db^1; b^1 = 0 is a constant, so it goes nowhere.
  }
  return { duhat, dbias };
}

// ---------------------------------------------------------------------------------------------
// Lengths, mask, prediction

export interface CapsDims {
  B: number;
  J: number;
  D: number;
}

/** v [B, J, D] -> lengths [B, J], |v| = sqrt(sum_d v^2 + LENGTH_EPS). */
export function capsuleLengths(v: Float64Array, dims: CapsDims, eps = LENGTH_EPS): Float64Array {
  const { B, J, D } = dims;
  for (const [k, n] of Object.entries(dims)) checkDim(n, `capsuleLengths ${k}`);
  checkLength(v, B * J * D, 'capsuleLengths v [B, J, D]');
  const len = new Float64Array(B * J);
  for (let r = 0; r < B * J; r++) {
    let n2 = 0;
    for (let d = 0; d < D; d++) n2 += v[r * D + d] * v[r * D + d];
    len[r] = Math.sqrt(n2 + eps);
  }
  return len;
}

/** Backward of capsuleLengths: dv[b,j,d] = dLengths[b,j] v[b,j,d] / |v[b,j]|. */
export function capsuleLengthsBackward(v: Float64Array, dLengths: Float64Array, dims: CapsDims, eps = LENGTH_EPS): Float64Array {
  const { B, J, D } = dims;
  checkLength(dLengths, B * J, 'capsuleLengthsBackward dLengths [B, J]');
  const len = capsuleLengths(v, dims, eps);
  const dv = new Float64Array(v.length);
  for (let r = 0; r < B * J; r++)
    for (let d = 0; d < D; d++) dv[r * D + d] = (dLengths[r] * v[r * D + d]) / len[r];
  return dv;
}

/**
 * The decoder input: v [B, J, D] and one selected class per example -> [B, J*D], zero except
 * out[b, sel[b]*D + d] = v[b, sel[b], d].
 */
export function maskCapsules(v: Float64Array, dims: CapsDims, selected: ArrayLike<number>): Float64Array {
  const { B, J, D } = dims;
  for (const [k, n] of Object.entries(dims)) checkDim(n, `maskCapsules ${k}`);
  checkLength(v, B * J * D, 'maskCapsules v [B, J, D]');
  checkIndices(selected, B, J, 'maskCapsules selected');
  const out = new Float64Array(B * J * D);
  for (let b = 0; b < B; b++) {
    const j = selected[b];
    for (let d = 0; d < D; d++) out[(b * J + j) * D + d] = v[(b * J + j) * D + d];
  }
  return out;
}

/** Backward of maskCapsules: dMasked [B, J*D] -> dv [B, J, D], nonzero only on the selected capsules. */
export function maskCapsulesBackward(dMasked: Float64Array, dims: CapsDims, selected: ArrayLike<number>): Float64Array {
  const { B, J, D } = dims;
  checkLength(dMasked, B * J * D, 'maskCapsulesBackward dMasked [B, J*D]');
  checkIndices(selected, B, J, 'maskCapsulesBackward selected');
  const dv = new Float64Array(B * J * D);
  for (let b = 0; b < B; b++) {
    const j = selected[b];
    for (let d = 0; d < D; d++) dv[(b * J + j) * D + d] = dMasked[(b * J + j) * D + d];
  }
  return dv;
}

/** The predicted class per example: the longest capsule (the first one on ties). lengths [B, J] -> [B]. */
export function longestCapsule(lengths: Float64Array, B: number, J: number): Int32Array {
  checkLength(lengths, B * J, 'longestCapsule lengths [B, J]');
  const out = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    let best = 0;
    for (let j = 1; j < J; j++) if (lengths[b * J + j] > lengths[b * J + best]) best = j;
    out[b] = best;
  }
  return out;
}
