// Central finite differences of a scalar function of f64 arrays: the check that every reference
// backward pass (and through it every GPU backward pass) must pass.

export type ScalarFn = (inputs: Float64Array[]) => number;

export interface GradcheckOptions {
  /** Step of the central difference; 1e-6 suits f64 functions of inputs of order 1. */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Check at most this many elements per input (spread evenly, always including the first and last). */
  maxPerInput?: number;
}

/** d f / d inputs[k][i] by central differences, at the indices `indices[k]` (all when omitted). */
export function numericalGrad(f: ScalarFn, inputs: Float64Array[], eps = 1e-6, indices?: number[][]): Float64Array[] {
  return inputs.map((x, k) => {
    const g = new Float64Array(x.length).fill(NaN);
    const which = indices ? indices[k] : Array.from(x.keys());
    for (const i of which) {
      const saved = x[i];
      x[i] = saved + eps;
      const plus = f(inputs);
      x[i] = saved - eps;
      const minus = f(inputs);
      x[i] = saved;
      g[i] = (plus - minus) / (2 * eps);
    }
    return g;
  });
}

function sampleIndices(n: number, max: number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const out = new Set<number>([0, n - 1]);
  for (let k = 0; out.size < max && k < max * 4; k++) out.add(Math.floor((k * (n - 1)) / (max - 1)) % n);
  return [...out].sort((a, b) => a - b);
}

/**
 * Compares `analytic[k]` (the hand-written gradient of f with respect to inputs[k]) with finite
 * differences, and throws naming the input, the index and both values when they disagree.
 */
export function gradcheck(
  f: ScalarFn,
  inputs: Float64Array[],
  analytic: Float64Array[],
  what: string,
  options: GradcheckOptions = {},
): { checked: number; maxAbsErr: number } {
  const { eps = 1e-6, atol = 1e-6, rtol = 1e-5, maxPerInput = 400 } = options;
  if (analytic.length !== inputs.length) throw new Error(`${what}: ${analytic.length} gradients for ${inputs.length} inputs`);
  const indices = inputs.map((x) => sampleIndices(x.length, maxPerInput));
  const numeric = numericalGrad(f, inputs, eps, indices);
  let checked = 0;
  let maxAbsErr = 0;
  for (let k = 0; k < inputs.length; k++) {
    if (analytic[k].length !== inputs[k].length) {
      throw new Error(`${what}: gradient ${k} has length ${analytic[k].length}, input has ${inputs[k].length}`);
    }
    for (const i of indices[k]) {
      const a = analytic[k][i];
      const n = numeric[k][i];
      const err = Math.abs(a - n);
      maxAbsErr = Math.max(maxAbsErr, err);
      if (!(err <= atol + rtol * Math.abs(n))) {
        throw new Error(`${what}: d/d input ${k} [${i}]: analytic ${a}, finite differences ${n} (|diff| ${err.toExponential(2)})`);
      }
      checked++;
    }
  }
  return { checked, maxAbsErr };
}
