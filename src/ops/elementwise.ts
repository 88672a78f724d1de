// Elementwise ops and whole-tensor sums, forward and backward: the first ops on the tape, and the
// helpers (fill, addInto, copy) that the tape and the other ops use.
// Kernels: kernels/binary.wgsl, unary.wgsl, axpy.wgsl, fill.wgsl, broadcast_scalar.wgsl, sum.wgsl.
// Reference: test/reference/elementwise.ts. Tests: test/elementwise.test.ts.

import binaryWgsl from '../../kernels/binary.wgsl';
import unaryWgsl from '../../kernels/unary.wgsl';
import axpyWgsl from '../../kernels/axpy.wgsl';
import fillWgsl from '../../kernels/fill.wgsl';
import broadcastWgsl from '../../kernels/broadcast_scalar.wgsl';
import sumWgsl from '../../kernels/sum.wgsl';
import { type GpuContext, type KernelSpec, f32 } from '../gpu/context.ts';
import { ShapeError } from '../gpu/errors.ts';
import { Tensor, empty, sameShape, shapeSize } from '../tensor.ts';
import { accumulateGrad, record } from '../autograd/tape.ts';

/** Invocations per workgroup of the elementwise kernels (their `override WG`). */
export const ELEMENTWISE_WG = 64;

const binary = (entryPoint: string): KernelSpec => ({ name: `binary.${entryPoint}`, code: binaryWgsl, entryPoint });
const unary = (entryPoint: string): KernelSpec => ({ name: `unary.${entryPoint}`, code: unaryWgsl, entryPoint });
export const KERNELS = {
  add: binary('add'),
  mul: binary('mul'),
  reluGrad: binary('relu_grad'),
  sigmoidGrad: binary('sigmoid_grad'),
  relu: unary('relu'),
  sigmoid: unary('sigmoid'),
  axpy: { name: 'axpy', code: axpyWgsl } as KernelSpec,
  fill: { name: 'fill', code: fillWgsl } as KernelSpec,
  broadcastScalar: { name: 'broadcast_scalar', code: broadcastWgsl } as KernelSpec,
  sum: { name: 'sum', code: sumWgsl } as KernelSpec,
};

/** Sum chunk per workgroup: long enough to amortise the tree, short enough to keep many workgroups. */
const SUM_CHUNK = 4096;

function checkSameShape(op: string, a: Tensor, b: Tensor): void {
  a.assertAlive(op);
  b.assertAlive(op);
  if (a.ctx !== b.ctx) throw new ShapeError(`${op}: tensors ${a.describe()} and ${b.describe()} live on different GPU contexts`);
  if (!sameShape(a.shape, b.shape)) throw new ShapeError(`${op}: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
}

function runElementwise(kernel: KernelSpec, inputs: Tensor[], out: Tensor): void {
  const ctx = out.ctx;
  ctx.dispatch(kernel, [...inputs.map((t) => t.buffer), out.buffer], [out.size], Math.ceil(out.size / ELEMENTWISE_WG));
}

function binaryOp(kernel: KernelSpec, a: Tensor, b: Tensor, name: string): Tensor {
  checkSameShape(name, a, b);
  const out = empty(a.ctx, a.shape, name);
  runElementwise(kernel, [a, b], out);
  return out;
}

/** a + b (same shapes). */
export function add(a: Tensor, b: Tensor): Tensor {
  const out = binaryOp(KERNELS.add, a, b, 'add');
  return record(out, 'add', [a, b], (g) => {
    if (a.requiresGrad) accumulateGrad(a, copy(g));
    if (b.requiresGrad) accumulateGrad(b, copy(g));
  });
}

/** a * b elementwise (same shapes). */
export function mul(a: Tensor, b: Tensor): Tensor {
  const out = binaryOp(KERNELS.mul, a, b, 'mul');
  return record(out, 'mul', [a, b], (g) => {
    if (a.requiresGrad) accumulateGrad(a, binaryOp(KERNELS.mul, g, b, 'mul.grad'));
    if (b.requiresGrad) accumulateGrad(b, binaryOp(KERNELS.mul, g, a, 'mul.grad'));
  });
}

export function relu(x: Tensor): Tensor {
  x.assertAlive('relu');
  const out = empty(x.ctx, x.shape, 'relu');
  runElementwise(KERNELS.relu, [x], out);
  return record(out, 'relu', [x], (g) => accumulateGrad(x, binaryOp(KERNELS.reluGrad, x, g, 'relu.grad')));
}

export function sigmoid(x: Tensor): Tensor {
  x.assertAlive('sigmoid');
  const out = empty(x.ctx, x.shape, 'sigmoid');
  runElementwise(KERNELS.sigmoid, [x], out);
  return record(out, 'sigmoid', [x], (g) => accumulateGrad(x, binaryOp(KERNELS.sigmoidGrad, out, g, 'sigmoid.grad')));
}

/** scale * (sum of all elements), as a tensor of shape [1]. */
export function sum(x: Tensor, scale = 1): Tensor {
  x.assertAlive('sum');
  const ctx = x.ctx;
  const out = empty(ctx, [1], 'sum');
  if (x.size === 0) {
    ctx.clearBuffer(out.buffer, 0, 4);
  } else {
    // Reduce in passes of SUM_CHUNK elements per workgroup until one value is left.
    let src = x.buffer;
    let n = x.size;
    const temporaries: Tensor[] = [];
    while (n > SUM_CHUNK) {
      const partials = Math.ceil(n / SUM_CHUNK);
      const dst = empty(ctx, [partials], 'sum.partial');
      temporaries.push(dst);
      ctx.dispatch(KERNELS.sum, [src, dst.buffer], [n, SUM_CHUNK, f32(1)], partials);
      src = dst.buffer;
      n = partials;
    }
    ctx.dispatch(KERNELS.sum, [src, out.buffer], [n, n, f32(scale)], 1);
    for (const t of temporaries) t.dispose();
  }
  return record(out, 'sum', [x], (g) => accumulateGrad(x, broadcastScalar(g, x.shape, scale)));
}

/** mean of all elements, shape [1]. */
export function mean(x: Tensor): Tensor {
  return sum(x, 1 / Math.max(1, x.size));
}

/** A new tensor of `shape` filled with scale * scalar[0] (no gradient recorded). */
export function broadcastScalar(scalar: Tensor, shape: readonly number[], scale = 1): Tensor {
  if (scalar.size !== 1) throw new ShapeError(`broadcastScalar: expected a single value, got ${scalar.describe()}`);
  const out = empty(scalar.ctx, shape, 'broadcast');
  out.ctx.dispatch(KERNELS.broadcastScalar, [scalar.buffer, out.buffer], [out.size, f32(scale)], Math.ceil(out.size / ELEMENTWISE_WG));
  return out;
}

/** A new tensor of `shape` filled with `value` (no gradient recorded). */
export function fill(ctx: GpuContext, shape: readonly number[], value: number): Tensor {
  const out = empty(ctx, shape, 'fill');
  ctx.dispatch(KERNELS.fill, [out.buffer], [out.size, f32(value)], Math.ceil(out.size / ELEMENTWISE_WG));
  return out;
}

/** target += alpha * source, in place (no gradient recorded): gradient accumulation. */
export function addInto(target: Tensor, source: Tensor, alpha = 1): void {
  checkSameShape('addInto', target, source);
  target.ctx.dispatch(KERNELS.axpy, [source.buffer, target.buffer], [target.size, f32(alpha)], Math.ceil(target.size / ELEMENTWISE_WG));
}

/** A copy of x's values (no gradient recorded). */
export function copy(x: Tensor): Tensor {
  x.assertAlive('copy');
  const out = empty(x.ctx, x.shape, x.name);
  if (x.size > 0) x.ctx.copyBuffer(x.buffer, 0, out.buffer, 0, x.bytes);
  return out;
}

/** The same values with another shape of the same size (a copy; the gradient is copied back). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  x.assertAlive('reshape');
  const size = shapeSize(shape);
  if (size !== x.size) throw new ShapeError(`reshape: ${x.describe()} has ${x.size} values, [${shape.join(', ')}] needs ${size}`);
  const out = empty(x.ctx, shape, x.name);
  if (x.size > 0) x.ctx.copyBuffer(x.buffer, 0, out.buffer, 0, x.bytes);
  return record(out, 'reshape', [x], (g) => {
    const dx = empty(x.ctx, x.shape, 'reshape.grad');
    if (x.size > 0) x.ctx.copyBuffer(g.buffer, 0, dx.buffer, 0, x.bytes);
    accumulateGrad(x, dx);
  });
}
