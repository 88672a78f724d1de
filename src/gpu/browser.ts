// Acquiring a WebGPU device in the browser through navigator.gpu.

import type { GpuContext } from './context.ts';
import { createContext } from './device.ts';
import { GpuUnavailableError } from './errors.ts';

import { type AcquireOptions, BROWSER_HINT } from './acquire.ts';

export { BROWSER_HINT };

/** A context on navigator.gpu's adapter (options.backend, Node's, is not used here). */
export async function acquireGpu(options: AcquireOptions = {}): Promise<GpuContext> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new GpuUnavailableError(`WebGPU is not available in this browser (navigator.gpu is missing). ${BROWSER_HINT}`);
  const adapter =
    (await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' })) ??
    (await gpu.requestAdapter({ featureLevel: 'compatibility' }));
  if (!adapter) throw new GpuUnavailableError(`WebGPU is present but no adapter was found (the GPU may be blocklisted). ${BROWSER_HINT}`);
  const ctx = await createContext(adapter, 'browser', gpu, gpu.wgslLanguageFeatures);
  // No command to restart in a page: a new context, and models rebuilt from their CPU-side parameters.
  ctx.lostAdvice = 'acquire a new device and rebuild the model from its parameters (the capsule explorer has a button for it), or reload the page.';
  return ctx;
}
