// Acquiring a WebGPU device in Node through dawn.node (npm `webgpu`). Order ('auto'): the platform's
// default backend when it is a real GPU; on a machine without one, the software backends in
// SOFTWARE_BACKEND_ORDER (below: OpenGL's llvmpipe first, it trains CapsNet faster than Vulkan's
// lavapipe). CAPSNET_BACKEND or the `backend` option picks one explicitly.

import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GpuContext } from './context.ts';
import { createContext, describeAdapter } from './device.ts';
import { GpuUnavailableError, INSTALL_HINT } from './errors.ts';
import { clip } from '../io/safetensors.ts';

import { type AcquireOptions, type NodeBackend, NODE_BACKENDS } from './acquire.ts';

export { type AcquireOptions, type NodeBackend, NODE_BACKENDS };

interface Attempt {
  backend: Exclude<NodeBackend, 'auto'>;
  flags: string[];
  featureLevel: string;
}

// Dawn rounds timestamps down to 65.536 us by default (a browser's defence against timing
// attacks); a profiler of one process needs the real resolution, or short kernels time as 0 ms.
const COMMON_FLAGS = ['disable-dawn-features=timestamp_quantization'];

/**
 * Without a GPU, which software backend 'auto' prefers: OpenGL's llvmpipe trains CapsNet faster
 * than Vulkan's lavapipe (npm run bench, batch 128: 25.5 vs 18.0 img/s; its main thread sleeps
 * while the GPU works, where dawn.node's Vulkan polling keeps one of the two cores busy).
 */
const SOFTWARE_BACKEND_ORDER: readonly Exclude<NodeBackend, 'auto' | 'default'>[] = ['opengl', 'vulkan'];

const ATTEMPTS: Record<Exclude<NodeBackend, 'auto'>, Attempt> = {
  default: { backend: 'default', flags: [...COMMON_FLAGS], featureLevel: 'core' },
  vulkan: { backend: 'vulkan', flags: ['backend=vulkan', ...COMMON_FLAGS], featureLevel: 'core' },
  opengl: { backend: 'opengl', flags: ['backend=opengl', ...COMMON_FLAGS], featureLevel: 'compatibility' },
};

/**
 * llvmpipe's worker threads (Mesa's LP_NUM_THREADS; its default is one per core) for software
 * Vulkan, set only where the user has not set it. On Vulkan dawn.node's polling keeps the main
 * thread busy while the GPU works, so two workers on a 2-core machine share a core with it; more
 * workers win back time (paper CapsNet training step at batch 32, same session, tools/profile-step.ts:
 * 2 threads 5.7 img/s, 3: 5.8-6.7, 4: 6.3-7.0). OpenGL's main thread sleeps instead, and there the
 * default is best (2 threads 12.4-13.5 img/s, 3: 11.3-11.4, 4: 10.6-12.1): it is left alone.
 * Mesa reads the variable when a driver creates its screen, i.e. at requestAdapter.
 */
const VULKAN_LP_THREADS = '4';

/** Runs `fn` (which loads a driver) with LP_NUM_THREADS for `backend`; the environment is restored after (child processes inherit no setting of ours). */
async function withLpThreads<T>(backend: Attempt['backend'], fn: () => Promise<T>): Promise<T> {
  const saved = process.env.LP_NUM_THREADS;
  if (saved === undefined && backend !== 'opengl') process.env.LP_NUM_THREADS = VULKAN_LP_THREADS;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.LP_NUM_THREADS;
  }
}

/** Mesa wants these before its drivers load: a private runtime folder, and EGL without a display. */
function prepareEnvironment(): void {
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `capsnet-runtime-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  process.env.EGL_PLATFORM ??= 'surfaceless';
}

export function resolveBackend(requested?: string): NodeBackend {
  const value = requested ?? process.env.CAPSNET_BACKEND ?? 'auto';
  if (!(NODE_BACKENDS as readonly string[]).includes(value)) {
    const from = requested !== undefined ? '--backend' : 'CAPSNET_BACKEND';
    // Clipped: an environment variable can hold anything, and the message must stay readable.
    throw new GpuUnavailableError(`${from}: '${clip(value)}' is not a backend; expected one of ${NODE_BACKENDS.join(', ')}`);
  }
  return value as NodeBackend;
}

export async function acquireGpu(options: AcquireOptions = {}): Promise<GpuContext> {
  const backend = resolveBackend(options.backend);
  prepareEnvironment();
  let dawn: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    dawn = (await import('webgpu')) as unknown as typeof dawn;
  } catch (error) {
    throw new GpuUnavailableError(
      `Could not load Dawn (npm package 'webgpu'): ${(error as Error).message}\nRun \`npm ci\` in the capsnet-webgpu folder.\n${INSTALL_HINT}`,
    );
  }
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value;
  }
  const order = backend === 'auto' ? [ATTEMPTS.default, ...SOFTWARE_BACKEND_ORDER.map((b) => ATTEMPTS[b])] : [ATTEMPTS[backend]];
  const failures: string[] = [];
  // 'auto': a software default adapter is kept as the last resort while the preferred software backend is tried.
  let softwareDefault: { adapter: GPUAdapter; attempt: Attempt; gpu: GPU } | null = null;
  // Every GPU object created stays referenced by the context (dawn.node crashes if one is collected while in use).
  const owners: GPU[] = [];
  for (const attempt of order) {
    // The software default already is Vulkan (lavapipe): loading it again would start a second llvmpipe.
    if (backend === 'auto' && softwareDefault && attempt.backend === 'vulkan') break;
    const gpu = dawn.create(attempt.flags);
    owners.push(gpu);
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await withLpThreads(attempt.backend, () => gpu.requestAdapter({ featureLevel: attempt.featureLevel }));
    } catch (error) {
      failures.push(`${attempt.backend}: ${(error as Error).message}`);
      continue;
    }
    if (!adapter) {
      failures.push(`${attempt.backend}: no adapter`);
      continue;
    }
    if (backend === 'auto' && attempt.backend === 'default' && describeAdapter(adapter, 'default').isSoftware) {
      softwareDefault = { adapter, attempt, gpu };
      continue;
    }
    try {
      return nodeAdvice(await createContext(adapter, attempt.backend, owners, gpu.wgslLanguageFeatures));
    } catch (error) {
      // 'auto': an adapter below the kernels' limits is one more failed attempt; the next one may do.
      if (backend !== 'auto' || !(error instanceof GpuUnavailableError)) throw error;
      failures.push(`${attempt.backend}: ${error.message}`);
    }
  }
  if (softwareDefault) return nodeAdvice(await createContext(softwareDefault.adapter, softwareDefault.attempt.backend, owners, softwareDefault.gpu.wgslLanguageFeatures));
  throw new GpuUnavailableError(
    `No WebGPU adapter found (tried ${failures.join('; ')}).\n${INSTALL_HINT}`,
  );
}

/** What a lost device's error tells a Node user: the CLI's way back, and a program's. */
function nodeAdvice(ctx: GpuContext): GpuContext {
  ctx.lostAdvice = 'run the command again (capsnet train continues from its last checkpoint with --resume); a program rebuilds the model on a new device from a checkpoint or a copy of its parameters kept on the host.';
  return ctx;
}
