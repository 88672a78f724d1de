// 2-D max pooling on the tape: k x k windows with stride k and TensorFlow's 'SAME' padding,
// x [B, C, H, W] -> [B, C, ceil(H / k), ceil(W / k)]. The official code's baseline CNN pools 2x2
// after each convolution (src/model/baseline.ts, config field `pool`).
// Forward: one thread per output. Backward: a gather, one thread per input element, which finds its
// window's winner again from x (its first NaN, else its first largest in row-major order) instead of
// reading a saved index.
// Napkin maths at the official baseline's first pool (B 128, 512 x 36 x 36 -> 18 x 18): 85M inputs;
// forward reads x (340 MB) and writes a quarter of that; backward reads x and dout (a quarter) and
// writes dx (340 MB): a few flops per byte, bandwidth-bound.
// Kernel: kernels/max_pool.wgsl (entries forward, backward). Reference: test/reference/pool.ts.
// Tests: test/pool.test.ts.

import maxPoolWgsl from '../../kernels/max_pool.wgsl';
import type { KernelSpec } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { type Tensor, empty } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';

export const MAX_POOL_KERNEL: KernelSpec = { name: 'max_pool.forward', code: maxPoolWgsl, entryPoint: 'forward' };
export const MAX_POOL_GRAD_KERNEL: KernelSpec = { name: 'max_pool.backward', code: maxPoolWgsl, entryPoint: 'backward' };
const WG = 64;

/** Output side of a 'SAME' max pool of size k: ceil(side / k). */
export const pooledSide = (side: number, k: number) => Math.ceil(side / k);

/**
 * Max pooling of x [B, C, H, W] over k x k windows with stride k ('SAME' padding: the last window
 * of a side that k does not divide is partial; padded positions never win; a NaN in a window wins,
 * so it reaches the training monitor). k = 1 returns x itself.
 */
export function maxPool2d(x: Tensor, k: number): Tensor {
  x.assertAlive('maxPool2d');
  if (x.shape.length !== 4) throw new ShapeError(`maxPool2d: x must be [B, C, H, W], got ${x.describe()}`);
  if (!Number.isInteger(k) || k < 1) throw new ShapeError(`maxPool2d: size must be a positive integer, got ${k}`);
  if (k === 1) return x;
  const ctx = x.ctx;
  const [B, C, H, W] = x.shape;
  const [OH, OW] = [pooledSide(H, k), pooledSide(W, k)];
  // TensorFlow's 'SAME': the padding rows are split with the smaller half on top (0 for k = 2).
  const geometry = [H, W, OH, OW, k, Math.floor((OH * k - H) / 2), Math.floor((OW * k - W) / 2)];
  const out = empty(ctx, [B, C, OH, OW], 'maxPool2d');
  if (out.size > 0) ctx.dispatch(MAX_POOL_KERNEL, [x.buffer, out.buffer], [out.size, ...geometry], Math.ceil(out.size / WG));
  return record(out, `maxPool2d(${k})`, [x], (dout) => {
    x.assertAlive('maxPool2d backward (it reads the forward input)');
    const dx = empty(ctx, x.shape, 'maxPool2d.dx');
    if (dx.size > 0) ctx.dispatch(MAX_POOL_GRAD_KERNEL, [x.buffer, dout.buffer, dx.buffer], [dx.size, ...geometry], Math.ceil(dx.size / WG));
    accumulateGrad(x, dx);
  });
}
