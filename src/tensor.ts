// A Tensor is a shape and an f32 GPU buffer from the context's pool, nothing clever. Tensors made
// inside tidy() are disposed when it returns, except those it returns: that is how a training
// step gives every intermediate buffer back to the pool.

import type { GpuContext } from './gpu/context.ts';
import { STORAGE_USAGE } from './gpu/context.ts';
import { ShapeError } from './gpu/errors.ts';

/** The op that produced a tensor, as recorded on the autograd tape. */
export interface TapeOp {
  name: string;
  inputs: readonly Tensor[];
  /** Receives d(loss)/d(output) and accumulates into each input that requires a gradient. */
  backward: (gradOutput: Tensor) => void;
}

export class Tensor {
  readonly size: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  creator: TapeOp | null = null;
  private disposed = false;

  constructor(
    readonly ctx: GpuContext,
    readonly shape: readonly number[],
    readonly buffer: GPUBuffer,
    readonly name = '',
  ) {
    this.size = shapeSize(shape);
    scopes.at(-1)?.add(this);
  }

  get bytes(): number {
    return this.size * 4;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Gives the buffer back to the pool. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ctx.pool.release(this.buffer);
    this.grad?.dispose();
    this.grad = null;
    this.creator = null;
  }

  /** The values, after everything recorded so far has run. */
  async read(): Promise<Float32Array> {
    this.assertAlive('read');
    return new Float32Array(await this.ctx.readBuffer(this.buffer, this.bytes));
  }

  assertAlive(doing: string): void {
    if (this.disposed) throw new Error(`${doing}: tensor ${this.describe()} was disposed`);
  }

  describe(): string {
    return `${this.name ? `'${this.name}' ` : ''}[${this.shape.join(', ')}]`;
  }
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`shape [${shape.join(', ')}]: dimension ${d} is not a non-negative integer`);
    n *= d;
  }
  return n;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A tensor with uninitialised contents (pooled buffers hold old data). */
export function empty(ctx: GpuContext, shape: readonly number[], name = ''): Tensor {
  const size = shapeSize(shape);
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (size * 4 > limit) {
    throw new ShapeError(`tensor ${name} [${shape.join(', ')}] needs ${size * 4} bytes, above this adapter's maxStorageBufferBindingSize (${limit})`);
  }
  return new Tensor(ctx, shape, ctx.pool.acquire(size * 4, STORAGE_USAGE, name || 'tensor'), name);
}

export function zeros(ctx: GpuContext, shape: readonly number[], name = ''): Tensor {
  const t = empty(ctx, shape, name);
  ctx.clearBuffer(t.buffer, 0, Math.ceil(t.bytes / 4) * 4 || undefined);
  return t;
}

export function fromArray(ctx: GpuContext, shape: readonly number[], data: ArrayLike<number>, name = ''): Tensor {
  const size = shapeSize(shape);
  if (data.length !== size) throw new ShapeError(`tensor ${name} [${shape.join(', ')}] holds ${size} values, got ${data.length}`);
  const t = empty(ctx, shape, name);
  if (size > 0) ctx.upload(t.buffer, data instanceof Float32Array ? data : Float32Array.from(data));
  return t;
}

/** A trainable tensor: requires a gradient, and lives until disposed explicitly (no scope owns it). */
export function parameter(ctx: GpuContext, shape: readonly number[], data: ArrayLike<number>, name: string): Tensor {
  const t = fromArray(ctx, shape, data, name);
  untrack(t);
  t.requiresGrad = true;
  return t;
}

// ---- scopes ----

const scopes: Set<Tensor>[] = [];

/** Takes a tensor out of the current scope: it will not be disposed when the scope ends. */
export function untrack<T extends Tensor | null | undefined>(t: T): T {
  if (t) for (const s of scopes) s.delete(t);
  return t;
}

function keptTensors(result: unknown): Tensor[] {
  if (result instanceof Tensor) return [result];
  if (Array.isArray(result)) return result.filter((r): r is Tensor => r instanceof Tensor);
  if (result && typeof result === 'object') return Object.values(result).filter((r): r is Tensor => r instanceof Tensor);
  return [];
}

/**
 * Runs fn and disposes every tensor created during it, except the ones it returns (a tensor, an
 * array or an object of tensors), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keep = new Set(keptTensors(result));
  for (const t of scope) {
    if (keep.has(t)) scopes.at(-1)?.add(t);
    else t.dispose();
  }
  return result;
}
