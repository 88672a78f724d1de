// A pool of GPU buffers reused by size class, so a training loop allocates nothing in its steady
// state. Size classes are 2^k, 1.25*2^k, 1.5*2^k and 1.75*2^k bytes: at most 25% waste, few classes.
// Buffers come back through release(); the pool destroys what it cannot keep within maxFreeBytes.

export interface PoolStats {
  /** Bytes of GPU memory held by the pool right now (in use + free). */
  allocatedBytes: number;
  /** The most that was ever held at once. */
  peakBytes: number;
  inUseBytes: number;
  freeBytes: number;
  /** Buffers created since the start: constant in a steady state. */
  created: number;
  inUse: number;
  reused: number;
}

export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes));
  const p = 2 ** Math.floor(Math.log2(b));
  for (const f of [1, 1.25, 1.5, 1.75]) if (p * f >= b) return p * f;
  return 2 * p;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly inUse = new Map<GPUBuffer, string>();
  private stats: PoolStats = { allocatedBytes: 0, peakBytes: 0, inUseBytes: 0, freeBytes: 0, created: 0, inUse: 0, reused: 0 };

  constructor(
    private readonly create: (size: number, usage: GPUBufferUsageFlags, label: string) => GPUBuffer,
    /**
     * Frees a buffer the pool gives up. Commands recorded but not yet submitted may still use it,
     * so the context destroys it only after its next submit (destroying earlier is a validation error).
     */
    private readonly destroy: (buffer: GPUBuffer) => void = (b) => b.destroy(),
    /** Free buffers kept for reuse at most; beyond it, released buffers are destroyed. */
    public maxFreeBytes = 1 << 30,
  ) {}

  acquire(bytes: number, usage: GPUBufferUsageFlags, label = 'tensor'): GPUBuffer {
    const size = sizeClass(bytes);
    const key = `${usage}:${size}`;
    let buffer = this.free.get(key)?.pop();
    if (buffer) {
      this.stats.freeBytes -= size;
      this.stats.reused++;
    } else {
      buffer = this.create(size, usage, label);
      this.stats.created++;
      this.stats.allocatedBytes += size;
      this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.allocatedBytes);
    }
    this.inUse.set(buffer, key);
    this.stats.inUse++;
    this.stats.inUseBytes += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const key = this.inUse.get(buffer);
    if (key === undefined) throw new Error(`BufferPool.release: buffer '${buffer.label}' is not in use (released twice?)`);
    this.inUse.delete(buffer);
    this.stats.inUse--;
    this.stats.inUseBytes -= buffer.size;
    if (this.stats.freeBytes + buffer.size > this.maxFreeBytes) {
      this.destroy(buffer);
      this.stats.allocatedBytes -= buffer.size;
      return;
    }
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buffer);
    this.stats.freeBytes += buffer.size;
  }

  /** Destroys every free buffer (in-use ones stay valid). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.stats.allocatedBytes -= b.size;
        this.destroy(b);
      }
    }
    this.free.clear();
    this.stats.freeBytes = 0;
  }

  getStats(): PoolStats {
    return { ...this.stats };
  }
}
