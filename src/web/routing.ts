// Dynamic routing of ONE example on the CPU, for the routing view: the routing kernel
// (kernels/routing.wgsl) keeps the coupling coefficients to itself, so the page reads u_hat back
// and repeats the routing here in f64, keeping c of every iteration (DESIGN.md section 2):
//   b = 0 [I, J]; for t = 1..r: c[i,:] = softmax_j(b[i,:]) (leaky: with an extra 0 logit, dropped)
//   s[j] = sum_i c[i,j] uhat[i,j] (+ bias[j]); v[j] = squash(s[j]); if t < r: b[i,j] += uhat[i,j] . v[j]
// Pure (no DOM, no GPU). Its v is checked against the GPU's in the page test, and the whole
// function against the f64 reference (test/reference/capsules.ts routingForward) in test/web.test.ts.

export interface RoutingTrace {
  /** Iterations r. */
  iterations: number;
  I: number;
  J: number;
  D: number;
  /** c of iteration t (0-based) as [I, J]. */
  c: Float64Array[];
  /** v of iteration t as [J, D]; v[r - 1] is the layer's output. */
  v: Float64Array[];
}

const SQUASH_EPS = 1e-7;

export function routeOne(
  uhat: ArrayLike<number>,
  dims: { I: number; J: number; D: number },
  options: { iterations: number; leaky?: boolean; bias?: ArrayLike<number> | null },
): RoutingTrace {
  const { I, J, D } = dims;
  const r = options.iterations;
  const leaky = options.leaky ?? false;
  const bias = options.bias ?? null;
  if (uhat.length !== I * J * D) throw new Error(`routeOne: uhat holds ${uhat.length} values, expected I * J * D = ${I * J * D}`);
  if (!Number.isInteger(r) || r < 1) throw new Error(`routeOne: iterations must be an integer >= 1, got ${r}`);
  if (bias && bias.length !== J * D) throw new Error(`routeOne: bias holds ${bias.length} values, expected J * D = ${J * D}`);
  const logits = new Float64Array(I * J);
  const trace: RoutingTrace = { iterations: r, I, J, D, c: [], v: [] };
  for (let t = 0; t < r; t++) {
    const c = new Float64Array(I * J);
    for (let i = 0; i < I; i++) {
      let m = leaky ? 0 : -Infinity;
      for (let j = 0; j < J; j++) m = Math.max(m, logits[i * J + j]);
      let z = leaky ? Math.exp(-m) : 0;
      for (let j = 0; j < J; j++) z += Math.exp(logits[i * J + j] - m);
      for (let j = 0; j < J; j++) c[i * J + j] = Math.exp(logits[i * J + j] - m) / z;
    }
    const v = new Float64Array(J * D);
    for (let j = 0; j < J; j++) {
      let n2 = 0;
      for (let d = 0; d < D; d++) {
        let acc = bias ? bias[j * D + d] : 0;
        for (let i = 0; i < I; i++) acc += c[i * J + j] * uhat[(i * J + j) * D + d];
        v[j * D + d] = acc;
        n2 += acc * acc;
      }
      const f = n2 / ((1 + n2) * Math.sqrt(n2 + SQUASH_EPS));
      for (let d = 0; d < D; d++) v[j * D + d] *= f;
    }
    trace.c.push(c);
    trace.v.push(v);
    if (t < r - 1) {
      for (let i = 0; i < I; i++) {
        for (let j = 0; j < J; j++) {
          let agree = 0;
          for (let d = 0; d < D; d++) agree += uhat[(i * J + j) * D + d] * v[j * D + d];
          logits[i * J + j] += agree;
        }
      }
    }
  }
  return trace;
}

export interface RoutingMaps {
  grid: number;
  /** [iteration][digit] -> grid*grid values: the coupling coefficient to that digit, averaged over
   *  the capsule types at each grid cell, weighted by the primary capsules' lengths. */
  coupling: Float64Array[][];
  /** [iteration][digit]: the share of all primary capsules' length routed to that digit (sums to 1
   *  without leaky routing). */
  share: number[][];
}

/**
 * Summarises a trace over the PrimaryCaps grid: capsule i = type * G * G + y * G + x, so the
 * `types` capsules at one cell (y, x) are averaged, each weighted by its length |u_i| (an inactive
 * capsule's coupling says nothing). `lengths` are the primary capsules' lengths [I].
 */
export function routingMaps(trace: RoutingTrace, lengths: ArrayLike<number>, grid: number): RoutingMaps {
  const { I, J } = trace;
  const cells = grid * grid;
  if (I % cells !== 0) throw new Error(`routingMaps: ${I} capsules do not fill a ${grid}x${grid} grid`);
  if (lengths.length !== I) throw new Error(`routingMaps: ${lengths.length} lengths for ${I} capsules`);
  const types = I / cells;
  let total = 0;
  for (let i = 0; i < I; i++) total += lengths[i];
  const coupling: Float64Array[][] = [];
  const share: number[][] = [];
  for (const c of trace.c) {
    const maps: Float64Array[] = [];
    const shares: number[] = [];
    for (let j = 0; j < J; j++) {
      const map = new Float64Array(cells);
      let routed = 0;
      for (let cell = 0; cell < cells; cell++) {
        let num = 0;
        let den = 0;
        for (let k = 0; k < types; k++) {
          const i = k * cells + cell;
          num += lengths[i] * c[i * J + j];
          den += lengths[i];
        }
        map[cell] = den > 0 ? num / den : 0;
        routed += num;
      }
      maps.push(map);
      shares.push(total > 0 ? routed / total : 0);
    }
    coupling.push(maps);
    share.push(shares);
  }
  return { grid, coupling, share };
}

/** Lengths of capsules [N, D] -> [N]. */
export function vectorLengths(u: ArrayLike<number>, D: number): Float64Array {
  const n = u.length / D;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += u[i * D + d] * u[i * D + d];
    out[i] = Math.sqrt(s);
  }
  return out;
}
