// Small helpers shared by the CPU reference: shape checks with clear messages.

/** Throws unless `n` is a positive integer. */
export function checkDim(n: number, what: string): void {
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${what} must be a positive integer, got ${n}`);
}

/** Throws unless `a.length === n`. */
export function checkLength(a: ArrayLike<number>, n: number, what: string): void {
  if (a.length !== n) throw new Error(`${what}: length ${a.length}, expected ${n}`);
}

/** Throws unless `shape` has `rank` positive integer entries. */
export function checkShape(shape: readonly number[], rank: number, what: string): void {
  if (shape.length !== rank) throw new Error(`${what}: shape [${shape.join(', ')}] must have rank ${rank}`);
  shape.forEach((n, k) => checkDim(n, `${what} dimension ${k}`));
}

/** Product of the entries of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Throws unless every selected index is an integer in [0, n). */
export function checkIndices(idx: ArrayLike<number>, count: number, n: number, what: string): void {
  checkLength(idx, count, what);
  for (let k = 0; k < count; k++) {
    const j = idx[k];
    if (!Number.isInteger(j) || j < 0 || j >= n) throw new Error(`${what}[${k}] = ${j} is not an index in [0, ${n})`);
  }
}
