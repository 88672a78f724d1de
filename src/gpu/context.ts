// The GPU context: one device and everything the engine needs to drive it. Kernels are recorded
// into one command encoder (one compute pass while possible) and submitted together at flush(),
// so a training step is a handful of submits, not one per kernel. Errors from WebGPU are caught
// with error scopes around each submit and reported at the next sync point (read, sync).

import { BufferPool, type PoolStats, type PooledTexture } from './pool.ts';
import { GpuDeviceLostError, fromGpuError } from './errors.ts';

/** What a user (and `capsnet doctor`) wants to know about the adapter in use. */
export interface AdapterSummary {
  /** e.g. "llvmpipe (Vulkan)" or "SwiftShader". */
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  /** How the device was obtained: 'default', 'vulkan', 'opengl' (Node) or 'browser'. */
  backend: string;
  featureLevel: 'core' | 'compatibility';
  isSoftware: boolean;
}

/** A WGSL kernel: the source, its entry point and the values of its `override` constants. */
export interface KernelSpec {
  /** Names the kernel in error messages and in the pipeline cache. */
  name: string;
  code: string;
  entryPoint?: string;
  constants?: Record<string, number>;
}

/** A uniform parameter: a plain number is a u32; wrap floats with f32() and signed ints with i32(). */
export type Param = number | { f32: number } | { i32: number };
export const f32 = (value: number): Param => ({ f32: value });
export const i32 = (value: number): Param => ({ i32: value });

/** A storage binding: a whole buffer or a byte range of one. */
export type BufferBinding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

export type { PooledTexture } from './pool.ts';

/**
 * A binding of a dispatch: a storage buffer (or a range of one), or a pooled texture (its view is
 * bound: a storage texture or a sampled texture, as the kernel declares it).
 */
export type Binding = BufferBinding | PooledTexture;

/** The texture format of every pooled texture: one vec4 of f32 per texel. */
export const TEXTURE_FORMAT: GPUTextureFormat = 'rgba32float';
// STORAGE_BINDING | TEXTURE_BINDING | COPY_SRC | COPY_DST
const TEXTURE_USAGE = 0x08 | 0x04 | 0x01 | 0x02;

export const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM_USAGE = 0x40 | 0x08; // UNIFORM | COPY_DST
const READBACK_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST
const INDIRECT_USAGE = 0x100 | 0x08; // INDIRECT | COPY_DST
/** Room for about 1,000 launches per submit; an encoder that needs more is submitted early. */
const UNIFORM_CAPACITY = 256 * 1024;

export class GpuContext {
  readonly pool: BufferPool;
  private readonly shaderModules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  /** Kernel names recorded into the open encoder, for error messages. */
  private encoded: string[] = [];
  /**
   * Uniform parameters of the open encoder, packed at aligned offsets and written with one
   * writeBuffer at flush. One buffer serves every submit: writeBuffer is ordered after the work
   * already submitted, so the next encoder's parameters never overwrite ones still to be read.
   */
  private readonly uniformData = new ArrayBuffer(UNIFORM_CAPACITY);
  private uniformUsed = 0;
  private uniformBuffer: GPUBuffer | null = null;
  private readonly uniformAlign: number;
  /** Buffers and textures released while the open encoder may still use them: destroyed right after its submit. */
  private destroyAfterSubmit: { destroy(): void }[] = [];
  /** Errors reported by error scopes, awaited at the next sync point. */
  private pendingChecks: Promise<Error | null>[] = [];
  private lostError: GpuDeviceLostError | null = null;
  private destroyed = false;
  /** Counters for tests and benchmarks. */
  readonly counters = { submits: 0, dispatches: 0, readbacks: 0, pipelinesCreated: 0 };

  /** What a user can do after a lost device, ending its message (Node's CLI; the browser sets its own). */
  lostAdvice = 'rebuild the model on a new device from a checkpoint or a copy of its parameters kept on the host.';

  constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterSummary,
    /** Keeps alive whatever owns the device (dawn.node's GPU object crashes the process if collected). */
    private readonly owner: unknown = null,
    /** The WGSL language features of the implementation (navigator.gpu.wgslLanguageFeatures). */
    readonly wgslFeatures: ReadonlySet<string> = new Set(),
  ) {
    this.uniformAlign = device.limits.minUniformBufferOffsetAlignment;
    const later = (resource: { destroy(): void }) => (this.encoder ? this.destroyAfterSubmit.push(resource) : resource.destroy());
    this.pool = new BufferPool(
      (size, usage, label) => this.createBuffer(size, usage, label),
      later,
      undefined,
      { create: (width, height, label) => this.createTexture(width, height, label), destroy: (t) => later(t.texture) },
      device.limits.maxStorageBufferBindingSize,
    );
    device.lost.then((info) => {
      if (this.destroyed) return;
      this.lostError = new GpuDeviceLostError(
        `The GPU device was lost (${info.reason}: ${info.message.trim() || 'no message'}). ` +
          `Everything on the GPU is gone; ${this.lostAdvice}`,
      );
    });
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  get features(): GPUSupportedFeatures {
    return this.device.features;
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  private checkAlive(): void {
    if (this.lostError) throw this.lostError;
    if (this.destroyed) throw new GpuDeviceLostError('The GPU context was destroyed; create a new one.');
  }

  /** A buffer outside the pool (the pool itself uses this), with out-of-memory reported at the next sync. */
  createBuffer(size: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    this.checkAlive();
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    const buffer = this.device.createBuffer({ size, usage, label });
    const what = `creating buffer '${label}' of ${size} bytes`;
    this.watch(this.device.popErrorScope(), what);
    this.watch(this.device.popErrorScope(), what);
    return buffer;
  }

  /**
   * Kernels can read textures through `texture_storage_2d<rgba32float, read>` (the WGSL language
   * feature readonly_and_readwrite_storage_textures); without it they can still textureLoad from a
   * `texture_2d<f32>` and write through write-only storage textures.
   */
  get hasReadOnlyStorageTextures(): boolean {
    return this.wgslFeatures.has('readonly_and_readwrite_storage_textures');
  }

  /** The largest width or height of a 2-D texture on this device. */
  get maxTextureSize(): number {
    return this.device.limits.maxTextureDimension2D;
  }

  /**
   * A width x height rgba32float texture outside the pool (the pool itself uses this): usable as a
   * storage texture (read or write), a sampled texture and a copy source or destination. Sizes past
   * maxTextureDimension2D are refused here with the limit named (callers fold their shapes below it).
   */
  createTexture(width: number, height: number, label: string): PooledTexture {
    this.checkAlive();
    const max = this.maxTextureSize;
    if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 1 && height >= 1 && width <= max && height <= max)) {
      throw new Error(`texture '${label}': ${width} x ${height} texels is not within 1 .. ${max} (maxTextureDimension2D) on each axis`);
    }
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    const texture = this.device.createTexture({ size: [width, height], format: TEXTURE_FORMAT, usage: TEXTURE_USAGE, label });
    const view = texture.createView({ label });
    const what = `creating texture '${label}' of ${width} x ${height} texels`;
    this.watch(this.device.popErrorScope(), what);
    this.watch(this.device.popErrorScope(), what);
    return { texture, view, width, height };
  }

  /** A pooled width x height rgba32float texture; give it back with releaseTexture once its dispatches are recorded. */
  acquireTexture(width: number, height: number, label = 'texture'): PooledTexture {
    return this.pool.acquireTexture(width, height, label);
  }

  releaseTexture(texture: PooledTexture): void {
    this.pool.releaseTexture(texture);
  }

  /** Writes rows of texels (`data` holds height x width x 4 floats) into a texture, after everything recorded so far. */
  writeTexture(texture: PooledTexture, data: Float32Array, width = texture.width, height = texture.height): void {
    this.checkAlive();
    if (data.length !== width * height * 4) throw new Error(`writeTexture: ${data.length} floats for ${width} x ${height} texels (expected ${width * height * 4})`);
    if (this.encoder) this.flush();
    this.device.queue.writeTexture({ texture: texture.texture }, data.buffer, { offset: data.byteOffset, bytesPerRow: width * 16, rowsPerImage: height }, [width, height]);
  }

  /** Copies a whole texture back to the host: height x width x 4 floats, row by row (after everything recorded so far). */
  async readTexture(texture: PooledTexture): Promise<Float32Array> {
    this.refuseWhileCollecting('readTexture');
    const { width, height } = texture;
    const rowBytes = Math.ceil((width * 16) / 256) * 256; // copies need rows aligned to 256 bytes
    const staging = this.pool.acquire(rowBytes * height, STORAGE_USAGE, 'texture readback');
    try {
      const encoder = this.ensureEncoder();
      this.endPass();
      encoder.copyTextureToBuffer({ texture: texture.texture }, { buffer: staging, bytesPerRow: rowBytes, rowsPerImage: height }, [width, height]);
      this.encoded.push('copy texture');
      const raw = new Float32Array(await this.readBuffer(staging, rowBytes * height));
      const out = new Float32Array(width * height * 4);
      for (let y = 0; y < height; y++) out.set(raw.subarray((y * rowBytes) / 4, (y * rowBytes) / 4 + width * 4), y * width * 4);
      return out;
    } finally {
      this.pool.release(staging);
    }
  }

  private watch(scope: Promise<GPUError | null>, doing: string): void {
    this.pendingChecks.push(scope.then((e) => (e ? fromGpuError(e, doing) : null), (e) => e as Error));
  }

  /** The compute pipeline of a kernel, created once per (source, entry point, constants). */
  pipeline(kernel: KernelSpec): GPUComputePipeline {
    const key = pipelineKey(kernel);
    let pipeline = this.pipelines.get(key);
    if (pipeline) return pipeline;
    this.checkAlive();
    const { entryPoint, constants } = pipelineStage(kernel);
    this.device.pushErrorScope('validation');
    const module = this.shaderModule(kernel);
    pipeline = this.device.createComputePipeline({ label: `${kernel.name}:${entryPoint}`, layout: 'auto', compute: { module, entryPoint, constants } });
    this.watch(this.device.popErrorScope(), compilingWhat(kernel));
    this.pipelines.set(key, pipeline);
    this.counters.pipelinesCreated++;
    return pipeline;
  }

  private shaderModule(kernel: KernelSpec): GPUShaderModule {
    let module = this.shaderModules.get(kernel.code);
    if (!module) {
      module = this.device.createShaderModule({ code: kernel.code, label: kernel.name });
      this.shaderModules.set(kernel.code, module);
    }
    return module;
  }

  /** Kernels met by dispatch() inside collectKernels, by pipeline key; null outside it. */
  private collected: Map<string, KernelSpec> | null = null;
  /** collectKernels({ emptyDispatches: true }): launches are recorded with zero workgroups instead of dropped. */
  private emptyDispatches = false;
  /** Indirect dispatch arguments (0, 0, 0): WebGPU zero-fills new buffers and this one is never written. */
  private zeroWorkgroups: GPUBuffer | null = null;

  /** True inside collectKernels: dispatches are noted, not run. */
  get isCollecting(): boolean {
    return this.collected !== null;
  }

  /**
   * Runs `fn` (synchronous: a training step, a forward pass) without running it on the GPU, and
   * returns the kernels it dispatches whose pipelines are not created yet: pass them to
   * warmPipelines before the real work, so that the first real step compiles nothing.
   * Inside, kernel launches are noted and dropped: what kernels would have written is left as it
   * was. Uploads, clears and copies still happen (submitted when collectKernels returns), so
   * tensors made on the host (fromArray, zeros: an optimizer's fresh moments) hold what they
   * should. Buffers and textures come from the pool and go back to it as usual; reads (readBuffer,
   * readTexture, sync) throw. Host-side state that `fn` changes (an optimizer's step count, a
   * monitor's slot) changes for real: give it throwaway objects where that matters (Trainer.warmUp
   * does).
   *
   * `emptyDispatches`: every launch is recorded instead, with its real bindings and parameters, as
   * an indirect dispatch of zero workgroups, which runs nothing (no buffer changes) but makes
   * drivers that compile a kernel at its first dispatch compile it now: Mesa's llvmpipe (OpenGL and
   * Vulkan) does, at the submit (on GL) or on its queue thread (Vulkan); wait for it with sync().
   * Pipelines still missing are created one by one, as dispatch() would: call warmPipelines with
   * the kernels of a plain collectKernels first, so that drivers that compile at creation do it in
   * parallel. Measured by tools/profile-step.ts --startup.
   */
  collectKernels(fn: () => void, options: { emptyDispatches?: boolean } = {}): KernelSpec[] {
    this.checkAlive();
    if (this.collected) throw new Error('collectKernels: already collecting (calls do not nest)');
    // Work recorded before goes to the GPU now, so that the collecting mode only ever sees its own.
    this.flush();
    const collected = new Map<string, KernelSpec>();
    this.collected = collected;
    this.emptyDispatches = options.emptyDispatches ?? false;
    try {
      const result: unknown = fn();
      if (result && typeof (result as { then?: unknown }).then === 'function') {
        throw new Error('collectKernels: the function returned a promise; it must record its work synchronously (no awaits, no reads)');
      }
    } finally {
      this.collected = null;
      this.emptyDispatches = false;
      this.flush(); // the uploads, clears, copies (and empty dispatches) recorded inside
    }
    return [...collected.values()];
  }

  private refuseWhileCollecting(doing: string): void {
    if (this.collected) {
      throw new Error(`${doing} inside collectKernels: nothing runs on the GPU while kernels are being collected, so there is nothing to read or wait for; read after collectKernels returns`);
    }
  }

  /**
   * Creates the pipelines of `kernels` that are not created yet, all at once with
   * createComputePipelineAsync (implementations that compile at creation can do it concurrently,
   * off the calling thread), into the cache pipeline() reads: dispatches of these kernels then
   * create nothing. Mesa's llvmpipe does not compile here (38 pipelines of a CapsNet step take
   * under 1.5 s, measured): it compiles at a kernel's first dispatch; see collectKernels'
   * emptyDispatches. Rejects with the first failure (GpuValidationError naming the kernel, entry
   * point and constants, as pipeline() would report it); the pipelines that did compile stay
   * cached. Returns how many pipelines were created.
   */
  async warmPipelines(kernels: readonly KernelSpec[]): Promise<number> {
    this.checkAlive();
    this.refuseWhileCollecting('warmPipelines');
    const todo = new Map<string, KernelSpec>();
    for (const k of kernels) {
      const key = pipelineKey(k);
      if (!this.pipelines.has(key)) todo.set(key, k);
    }
    const results = await Promise.all(
      [...todo].map(async ([key, kernel]): Promise<Error | null> => {
        const { entryPoint, constants } = pipelineStage(kernel);
        const what = compilingWhat(kernel);
        this.device.pushErrorScope('validation');
        const module = this.shaderModule(kernel);
        const moduleError = this.device.popErrorScope();
        let pipeline: GPUComputePipeline;
        try {
          pipeline = await this.device.createComputePipelineAsync({ label: `${kernel.name}:${entryPoint}`, layout: 'auto', compute: { module, entryPoint, constants } });
        } catch (error) {
          // A GPUPipelineError (reason 'validation' or 'internal'); the module's own error, when
          // there is one, says more (the WGSL line).
          const scoped = await moduleError;
          if (scoped) return fromGpuError(scoped, what);
          if (this.lostError) return this.lostError;
          return fromGpuError({ message: error instanceof Error ? error.message : String(error) } as GPUError, what);
        }
        const scoped = await moduleError;
        if (scoped) return fromGpuError(scoped, what);
        if (!this.pipelines.has(key)) {
          this.pipelines.set(key, pipeline);
          this.counters.pipelinesCreated++;
        }
        return null;
      }),
    );
    const failed = results.filter((e): e is Error => e !== null);
    if (failed.length > 0) {
      if (failed.length > 1) failed[0].message += `
(${failed.length - 1} more kernels failed to compile)`;
      throw failed[0];
    }
    return todo.size;
  }

  private ensureEncoder(): GPUCommandEncoder {
    this.checkAlive();
    if (!this.encoder) {
      // Scopes stay open while commands are recorded and close right after the submit.
      this.device.pushErrorScope('out-of-memory');
      this.device.pushErrorScope('validation');
      this.encoder = this.device.createCommandEncoder();
    }
    return this.encoder;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private packParams(params: readonly Param[]): { offset: number; size: number } {
    const size = Math.max(16, Math.ceil((params.length * 4) / 16) * 16);
    let offset = Math.ceil(this.uniformUsed / this.uniformAlign) * this.uniformAlign;
    if (offset + size > UNIFORM_CAPACITY) {
      this.flush();
      this.ensureEncoder();
      offset = 0;
    }
    const view = new DataView(this.uniformData, offset, size);
    params.forEach((p, k) => {
      if (typeof p === 'number') {
        if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) throw new Error(`uniform parameter ${k} = ${p} is not a u32; wrap floats with f32()`);
        view.setUint32(4 * k, p, true);
      } else if ('f32' in p) view.setFloat32(4 * k, p.f32, true);
      else view.setInt32(4 * k, p.i32, true);
    });
    this.uniformUsed = offset + size;
    return { offset, size };
  }

  /**
   * Records one kernel launch. Bindings: the uniform parameters (if any) at binding 0, then the
   * storage buffers and textures at bindings 1, 2, ... in order. `workgroups` may be a count above the 65,535
   * per-dimension limit: it is folded into x and y, and the kernel must compute its linear
   * workgroup index as wid.x + wid.y * num_workgroups.x and skip indices past the end.
   */
  dispatch(kernel: KernelSpec, buffers: readonly Binding[], params: readonly Param[] | null, workgroups: number | readonly [number, number?, number?]): void {
    const [x, y, z] = typeof workgroups === 'number' ? this.fold(workgroups) : [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new Error(`kernel '${kernel.name}': grid ${x}x${y}x${z} exceeds ${max} workgroups per dimension`);
    if (this.collected) {
      const key = pipelineKey(kernel);
      if (!this.pipelines.has(key)) this.collected.set(key, kernel);
      if (!this.emptyDispatches) return;
    }
    const pipeline = this.pipeline(kernel);
    if (x * y * z === 0) return;
    this.ensureEncoder();
    const entries: GPUBindGroupEntry[] = [];
    if (params && params.length > 0) {
      const { offset, size } = this.packParams(params);
      this.uniformBuffer ??= this.createBuffer(UNIFORM_CAPACITY, UNIFORM_USAGE, 'uniform parameters');
      entries.push({ binding: 0, resource: { buffer: this.uniformBuffer, offset, size } });
    }
    buffers.forEach((b, k) => {
      entries.push({ binding: k + 1, resource: bindingResource(b) });
    });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const label = this.scope ? `${this.scope}/${kernel.name}` : kernel.name;
    const timed = this.profiler?.next(label);
    if (timed) this.endPass();
    if (!this.pass) this.pass = this.encoder!.beginComputePass(timed ? { timestampWrites: timed } : undefined);
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    if (this.collected) {
      // collectKernels({ emptyDispatches }): a launch of zero workgroups that the driver cannot
      // see is empty until it runs, so it compiles the kernel (llvmpipe does so at the first
      // dispatch) and runs nothing. Not counted as a dispatch.
      this.zeroWorkgroups ??= this.createBuffer(12, INDIRECT_USAGE, 'zero workgroups (indirect dispatch arguments)');
      this.pass.dispatchWorkgroupsIndirect(this.zeroWorkgroups, 0);
      this.encoded.push(`${label} (empty)`);
      if (timed) this.endPass();
      return;
    }
    this.pass.dispatchWorkgroups(x, y, z);
    if (timed) this.endPass();
    this.encoded.push(label);
    this.counters.dispatches++;
  }

  /** Splits a 1-D workgroup count into an x*y grid under the per-dimension limit. */
  fold(count: number): [number, number, number] {
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (count <= max) return [count, 1, 1];
    const y = Math.ceil(count / max);
    return [Math.ceil(count / y), y, 1];
  }

  copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    const encoder = this.ensureEncoder();
    this.endPass();
    encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.encoded.push('copy');
  }

  clearBuffer(buffer: GPUBuffer, offset = 0, bytes?: number): void {
    const encoder = this.ensureEncoder();
    this.endPass();
    encoder.clearBuffer(buffer, offset, bytes);
    this.encoded.push('clear');
  }

  /** Writes host data into a buffer, after everything recorded so far (pooled buffers are reused). */
  upload(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.checkAlive();
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformUsed > 0) this.device.queue.writeBuffer(this.uniformBuffer!, 0, this.uniformData, 0, this.uniformUsed);
    this.profiler?.resolve(this.encoder);
    const commands = this.encoder.finish();
    this.device.queue.submit([commands]);
    // Destroying after the submit is valid: WebGPU keeps a buffer alive for work already submitted.
    for (const b of this.destroyAfterSubmit) b.destroy();
    this.destroyAfterSubmit = [];
    const what = `running kernels [${summarize(this.encoded)}]`;
    this.watch(this.device.popErrorScope(), what);
    this.watch(this.device.popErrorScope(), what);
    this.encoder = null;
    this.encoded = [];
    this.uniformUsed = 0;
    this.counters.submits++;
  }

  /** Throws the first WebGPU error reported since the last check. */
  async checkErrors(): Promise<void> {
    const checks = this.pendingChecks;
    this.pendingChecks = [];
    const errors = (await Promise.all(checks)).filter((e): e is Error => e !== null);
    if (this.lostError) throw this.lostError;
    if (errors.length > 0) throw errors[0];
  }

  /** Submits, waits for the GPU to finish, and reports any error. */
  async sync(): Promise<void> {
    this.refuseWhileCollecting('sync');
    this.flush();
    this.checkAlive();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  /** Copies `bytes` bytes of a buffer back to the host (after everything recorded so far). */
  readBuffer(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
    // Thrown here, not as a rejected promise: a read nobody awaits inside collectKernels still fails it.
    this.refuseWhileCollecting(`reading buffer '${buffer.label}'`);
    return this.readBufferAfterCheck(buffer, bytes, offset);
  }

  private async readBufferAfterCheck(buffer: GPUBuffer, bytes: number, offset: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.pool.acquire(size, READBACK_USAGE, 'readback');
    try {
      this.ensureEncoder();
      this.copyBuffer(buffer, offset, staging, 0, size);
      this.flush();
      this.checkAlive();
      await staging.mapAsync(0x0001 /* GPUMapMode.READ */, 0, size);
      const result = staging.getMappedRange(0, size).slice(0, bytes);
      staging.unmap();
      this.counters.readbacks++;
      await this.checkErrors();
      return result;
    } catch (error) {
      if (this.lostError) throw this.lostError;
      throw error;
    } finally {
      if (staging.mapState === 'mapped') staging.unmap();
      this.pool.release(staging);
    }
  }

  /** The layer being recorded ('primary', 'routing', ...): prefixes kernel names in errors and profiles. */
  scope = '';

  /** Runs fn with kernel names prefixed by `name` (nested scopes join with '/'). */
  scoped<T>(name: string, fn: () => T): T {
    const saved = this.scope;
    this.scope = saved ? `${saved}/${name}` : name;
    try {
      return fn();
    } finally {
      this.scope = saved;
    }
  }

  /** Per-kernel GPU time, from timestamp queries around every dispatch; null without 'timestamp-query'. */
  private profiler: Profiler | null = null;

  get canProfile(): boolean {
    return this.device.features.has('timestamp-query');
  }

  /**
   * Starts timing every dispatch with timestamp queries (each dispatch gets its own compute pass,
   * so use this to measure, not in production). Throws where the adapter has no timestamp queries.
   */
  beginProfile(): void {
    this.refuseWhileCollecting('beginProfile');
    if (!this.canProfile) throw new Error(`profiling needs the 'timestamp-query' feature, which ${this.adapter.name} does not offer`);
    this.flush();
    this.profiler = new Profiler(this);
  }

  /** Stops profiling; returns the GPU time of each kernel name (summed over its dispatches), in ms. */
  async endProfile(): Promise<Map<string, { ms: number; count: number }>> {
    const profiler = this.profiler;
    if (!profiler) throw new Error('endProfile without beginProfile');
    this.flush();
    this.profiler = null;
    return profiler.collect();
  }

  poolStats(): PoolStats {
    return this.pool.getStats();
  }

  /** Frees the device. Node does not exit while a device is alive. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.encoder = null;
    this.pass = null;
    this.device.destroy();
    void this.owner;
  }
}

/** Timestamp queries around each dispatch, resolved at every flush into buffers read at the end. */
class Profiler {
  private readonly capacity = 2048;
  private readonly querySet: GPUQuerySet;
  private names: string[] = [];
  private readonly pending: Array<{ buffer: GPUBuffer; resolved: GPUBuffer; names: string[] }> = [];

  constructor(private readonly ctx: GpuContext) {
    this.querySet = ctx.device.createQuerySet({ type: 'timestamp', count: this.capacity });
  }

  next(name: string): GPUComputePassTimestampWrites | null {
    if (this.names.length * 2 >= this.capacity) return null; // full until the next flush
    const k = this.names.length;
    this.names.push(name);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 };
  }

  resolve(encoder: GPUCommandEncoder): void {
    if (this.names.length === 0) return;
    const bytes = this.names.length * 16;
    const resolved = this.ctx.createBuffer(bytes, 0x200 | 0x04, 'profile resolve'); // QUERY_RESOLVE | COPY_SRC
    const readback = this.ctx.createBuffer(bytes, 0x01 | 0x08, 'profile readback'); // MAP_READ | COPY_DST
    encoder.resolveQuerySet(this.querySet, 0, this.names.length * 2, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
    this.pending.push({ buffer: readback, resolved, names: this.names });
    this.names = [];
  }

  async collect(): Promise<Map<string, { ms: number; count: number }>> {
    const out = new Map<string, { ms: number; count: number }>();
    for (const { buffer, resolved, names } of this.pending) {
      await buffer.mapAsync(0x0001);
      const t = new BigUint64Array(buffer.getMappedRange());
      names.forEach((name, k) => {
        const ms = Number(t[2 * k + 1] - t[2 * k]) / 1e6;
        const entry = out.get(name) ?? { ms: 0, count: 0 };
        entry.ms += ms;
        entry.count++;
        out.set(name, entry);
      });
      buffer.unmap();
      buffer.destroy();
      resolved.destroy();
    }
    this.querySet.destroy();
    return out;
  }
}

/** The pipeline cache's key: the code itself (not the name), so two kernels never share a pipeline by accident. */
function pipelineKey(kernel: KernelSpec): string {
  const { entryPoint, constants } = pipelineStage(kernel);
  return `${entryPoint}|${JSON.stringify(Object.entries(constants).sort())}|${kernel.code}`;
}

function pipelineStage(kernel: KernelSpec): { entryPoint: string; constants: Record<string, number> } {
  return { entryPoint: kernel.entryPoint ?? 'main', constants: kernel.constants ?? {} };
}

function compilingWhat(kernel: KernelSpec): string {
  const { entryPoint, constants } = pipelineStage(kernel);
  return `compiling kernel '${kernel.name}' (entry point '${entryPoint}', constants ${JSON.stringify(constants)})`;
}

function bindingResource(b: Binding): GPUBindingResource {
  if ('view' in b) return b.view; // a pooled texture
  if ('buffer' in b) return b; // a buffer range
  return { buffer: b };
}

function summarize(names: string[]): string {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts].map(([n, c]) => (c > 1 ? `${n} x${c}` : n)).join(', ');
}
