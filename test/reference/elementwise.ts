// f64 reference of the elementwise ops and the sum, forward and backward.

export const add = (a: Float64Array, b: Float64Array): Float64Array => a.map((v, i) => v + b[i]);
export const mul = (a: Float64Array, b: Float64Array): Float64Array => a.map((v, i) => v * b[i]);
export const relu = (x: Float64Array): Float64Array => x.map((v) => Math.max(v, 0));
export const sigmoid = (x: Float64Array): Float64Array => x.map((v) => 1 / (1 + Math.exp(-v)));
export function sum(x: Float64Array): number {
  let s = 0;
  for (const v of x) s += v;
  return s;
}

/** d/dx relu(x) . g (0 at x = 0, as the kernel). */
export const reluBackward = (x: Float64Array, g: Float64Array): Float64Array => x.map((v, i) => (v > 0 ? g[i] : 0));
/** d/dx sigmoid(x) . g, from the output y = sigmoid(x). */
export const sigmoidBackward = (y: Float64Array, g: Float64Array): Float64Array => y.map((v, i) => g[i] * v * (1 - v));
