// Numeric comparison used by every kernel test: |actual - expected| <= atol + rtol * |expected|.

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** f32 kernels against the f64 reference: DESIGN.md section 4. */
export const F32_TOLERANCE: Tolerance = { atol: 1e-5, rtol: 1e-4 };

/**
 * Throws (naming `what`, the first failing index, both values and the count of failures) unless every
 * element is within tolerance. NaN or infinity anywhere fails, unless both sides hold the same value.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  }
  let failures = 0;
  let first = -1;
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Object.is(a, e)) continue;
    const bound = tol.atol + tol.rtol * Math.abs(e);
    const err = Math.abs(a - e);
    if (!(err <= bound)) {
      failures++;
      if (first < 0) first = i;
      const excess = Number.isFinite(err) ? err / bound : Infinity;
      if (worst < 0 || excess > worstExcess) { worst = i; worstExcess = excess; }
    }
  }
  if (failures > 0) {
    throw new Error(
      `${what}: ${failures} of ${actual.length} elements out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); ` +
      `first at [${first}]: got ${actual[first]}, expected ${expected[first]}; ` +
      `worst at [${worst}]: got ${actual[worst]}, expected ${expected[worst]}`,
    );
  }
}

/** The largest |actual - expected|, for messages and for choosing tolerances. */
export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < actual.length; i++) m = Math.max(m, Math.abs(actual[i] - expected[i]));
  return m;
}
