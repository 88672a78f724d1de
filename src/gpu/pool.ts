// A pool of GPU buffers (and 2-D textures) reused by size class, so a training loop allocates
// nothing in its steady state. Buffer size classes are 2^k, 1.25*2^k, 1.5*2^k and 1.75*2^k bytes:
// at most 25% waste, few classes. Textures are reused by exact width x height (their shapes are
// fixed by the layer that asks for them). Resources come back through release() / releaseTexture();
// the pool destroys what it cannot keep within maxFreeBytes (one budget for both kinds).

export interface PoolStats {
  /** Bytes of GPU memory held by the pool right now (in use + free; buffers and textures). */
  allocatedBytes: number;
  /** The most that was ever held at once. */
  peakBytes: number;
  inUseBytes: number;
  freeBytes: number;
  /** Buffers and textures created since the start: constant in a steady state. */
  created: number;
  inUse: number;
  reused: number;
  /** Of `created` and `allocatedBytes`: the textures. */
  texturesCreated: number;
  textureBytes: number;
}

export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes));
  const p = 2 ** Math.floor(Math.log2(b));
  for (const f of [1, 1.25, 1.5, 1.75]) if (p * f >= b) return p * f;
  return 2 * p;
}

/** A pooled 2-D texture of vec4 texels (rgba32float: 16 bytes each) and the view its kernels bind. */
export interface PooledTexture {
  readonly texture: GPUTexture;
  readonly view: GPUTextureView;
  readonly width: number;
  readonly height: number;
}

/** Bytes of a width x height rgba32float texture. */
export const textureBytes = (width: number, height: number) => width * height * 16;

interface Held {
  key: string;
  bytes: number;
  texture: boolean;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly freeTextures = new Map<string, PooledTexture[]>();
  private readonly inUse = new Map<GPUBuffer | PooledTexture, Held>();
  private stats: PoolStats = {
    allocatedBytes: 0, peakBytes: 0, inUseBytes: 0, freeBytes: 0, created: 0, inUse: 0, reused: 0, texturesCreated: 0, textureBytes: 0,
  };

  constructor(
    private readonly create: (size: number, usage: GPUBufferUsageFlags, label: string) => GPUBuffer,
    /**
     * Frees a buffer the pool gives up. Commands recorded but not yet submitted may still use it,
     * so the context destroys it only after its next submit (destroying earlier is a validation error).
     */
    private readonly destroy: (buffer: GPUBuffer) => void = (b) => b.destroy(),
    /** Free buffers and textures kept for reuse at most; beyond it, released ones are destroyed. */
    public maxFreeBytes = 1 << 30,
    /** Creates and frees textures (the context's; same rule as `destroy` for work not yet submitted). */
    private readonly textures: {
      create: (width: number, height: number, label: string) => PooledTexture;
      destroy: (texture: PooledTexture) => void;
    } | null = null,
    /**
     * maxStorageBufferBindingSize: kernels bind whole pooled buffers, so a request that fits one
     * binding never gets a size class past it (possible when the limit is not a class, e.g. 2^31 - 4).
     */
    private readonly bindingLimit = Infinity,
  ) {}

  private grow(bytes: number, texture: boolean): void {
    this.stats.created++;
    this.stats.allocatedBytes += bytes;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.allocatedBytes);
    if (texture) {
      this.stats.texturesCreated++;
      this.stats.textureBytes += bytes;
    }
  }

  private shrink(bytes: number, texture: boolean): void {
    this.stats.allocatedBytes -= bytes;
    if (texture) this.stats.textureBytes -= bytes;
  }

  private take(held: Held): void {
    this.stats.inUse++;
    this.stats.inUseBytes += held.bytes;
  }

  /** Bookkeeping of a release; true when the resource is kept for reuse, false when it must be destroyed. */
  private giveBack(resource: GPUBuffer | PooledTexture, what: string): Held & { keep: boolean } {
    const held = this.inUse.get(resource);
    if (held === undefined) throw new Error(`BufferPool: ${what} is not in use (released twice?)`);
    this.inUse.delete(resource);
    this.stats.inUse--;
    this.stats.inUseBytes -= held.bytes;
    const keep = this.stats.freeBytes + held.bytes <= this.maxFreeBytes;
    if (keep) this.stats.freeBytes += held.bytes;
    else this.shrink(held.bytes, held.texture);
    return { ...held, keep };
  }

  acquire(bytes: number, usage: GPUBufferUsageFlags, label = 'tensor'): GPUBuffer {
    const pooled = sizeClass(bytes);
    // Whole vec4s where the limit allows (kernels bind buffers as array<vec4f>), never less than asked.
    const fitted = Math.max(Math.ceil(bytes / 4) * 4, Math.min(Math.floor(this.bindingLimit / 16) * 16, Math.ceil(bytes / 16) * 16));
    const size = bytes <= this.bindingLimit && pooled > this.bindingLimit ? fitted : pooled;
    const key = `${usage}:${size}`;
    let buffer = this.free.get(key)?.pop();
    if (buffer) {
      this.stats.freeBytes -= size;
      this.stats.reused++;
    } else {
      buffer = this.create(size, usage, label);
      this.grow(size, false);
    }
    const held = { key, bytes: size, texture: false };
    this.inUse.set(buffer, held);
    this.take(held);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const { key, keep } = this.giveBack(buffer, `buffer '${buffer.label}'`);
    if (!keep) {
      this.destroy(buffer);
      return;
    }
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buffer);
  }

  /** A width x height rgba32float texture (storage and sampled use), reused by exact shape. */
  acquireTexture(width: number, height: number, label = 'texture'): PooledTexture {
    if (!this.textures) throw new Error('BufferPool: this pool was made without texture support');
    const key = `${width}x${height}`;
    const bytes = textureBytes(width, height);
    let texture = this.freeTextures.get(key)?.pop();
    if (texture) {
      this.stats.freeBytes -= bytes;
      this.stats.reused++;
    } else {
      texture = this.textures.create(width, height, label);
      this.grow(bytes, true);
    }
    const held = { key, bytes, texture: true };
    this.inUse.set(texture, held);
    this.take(held);
    return texture;
  }

  releaseTexture(texture: PooledTexture): void {
    const { key, keep } = this.giveBack(texture, `texture '${texture.texture.label}' (${texture.width}x${texture.height})`);
    if (!keep) {
      this.textures!.destroy(texture);
      return;
    }
    let list = this.freeTextures.get(key);
    if (!list) this.freeTextures.set(key, (list = []));
    list.push(texture);
  }

  /** Destroys every free buffer and texture (in-use ones stay valid). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.shrink(b.size, false);
        this.destroy(b);
      }
    }
    for (const list of this.freeTextures.values()) {
      for (const t of list) {
        this.shrink(textureBytes(t.width, t.height), true);
        this.textures!.destroy(t);
      }
    }
    this.free.clear();
    this.freeTextures.clear();
    this.stats.freeBytes = 0;
  }

  getStats(): PoolStats {
    return { ...this.stats };
  }
}
