// Inverted dropout on the tape: in training, each element is zeroed with probability p and the kept
// ones are scaled by 1 / (1 - p), so inference is the identity. The mask is a counter-based hash of
// (seed, element index) computed in the kernel: the same seed gives the same mask (a resumed run
// drops exactly the same units), no mask buffer exists, and the backward pass recomputes the mask
// by running the same kernel on the gradient (dx = dy * mask * scale).
// Kernel: kernels/dropout.wgsl (the hash is written out there). Reference: test/reference/dropout.ts.
// Tests: test/dropout.test.ts.

import dropoutWgsl from '../../kernels/dropout.wgsl';
import { type KernelSpec, f32 } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { type Tensor, empty } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';

export const DROPOUT_KERNEL: KernelSpec = { name: 'dropout', code: dropoutWgsl };
const WG = 64;
const TWO_32 = 4294967296;

/** The kernel's drop threshold: an element is dropped when its u32 hash is below it. */
export function dropoutThreshold(p: number): number {
  return Math.min(TWO_32 - 1, Math.round(p * TWO_32));
}

function checkDropout(x: Tensor, p: number, seed: number): void {
  x.assertAlive('dropout');
  if (!(typeof p === 'number' && p >= 0 && p < 1)) throw new ShapeError(`dropout: p must be a number in [0, 1), got ${p}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ShapeError(`dropout: seed must be a non-negative safe integer, got ${seed}`);
}

/** out = src * mask(seed) * scale into a new tensor (no gradient recorded). */
function applyMask(src: Tensor, p: number, seed: number, name: string): Tensor {
  const ctx = src.ctx;
  const out = empty(ctx, src.shape, name);
  if (src.size > 0) {
    const params = [src.size, dropoutThreshold(p), seed >>> 0, Math.floor(seed / TWO_32), f32(1 / (1 - p))];
    ctx.dispatch(DROPOUT_KERNEL, [src.buffer, out.buffer], params, Math.ceil(src.size / WG));
  }
  return out;
}

/**
 * Inverted dropout of x (any shape) with drop probability p in [0, 1), mask given by `seed` (a
 * non-negative safe integer; derive it from (run seed, step), e.g. dropoutSeed(seed, step), so that a
 * resumed run is exact). When `training` is false or p is 0 it returns x itself (no copy, nothing
 * recorded). Arguments are checked (ShapeError) before anything is dispatched.
 */
export function dropout(x: Tensor, p: number, seed: number, training = true): Tensor {
  checkDropout(x, p, seed);
  if (!training || p === 0) return x;
  const out = applyMask(x, p, seed, 'dropout');
  return record(out, 'dropout', [x], (g) => accumulateGrad(x, applyMask(g, p, seed, 'dropout.grad')));
}

/**
 * A dropout seed for training step `step` of a run seeded with `runSeed` (both non-negative
 * integers below 2^32): a well-mixed u32 (murmur3's finaliser), so neighbouring steps and runs get
 * unrelated masks, and a resumed run recomputes the same ones.
 */
export function dropoutSeed(runSeed: number, step: number): number {
  for (const [what, v] of [['runSeed', runSeed], ['step', step]] as const) {
    if (!Number.isInteger(v) || v < 0 || v >= TWO_32) throw new Error(`dropoutSeed: ${what} must be an integer in [0, 2^32), got ${v}`);
  }
  let h = (Math.imul(runSeed, 0xcc9e2d51) ^ Math.imul(step + 0x3c6ef372, 0x1b873593)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
