// From an adapter to a GpuContext: the part shared by Node and the browser.

import { GpuContext, type AdapterSummary } from './context.ts';
import { GpuUnavailableError } from './errors.ts';

/** Limits we raise to what the adapter offers (the defaults are too small for PrimaryCaps). */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxStorageTexturesPerShaderStage',
  'maxTextureDimension2D',
] as const;

/**
 * What the kernels need at least: WebGPU's core defaults, which a compatibility-mode adapter (e.g.
 * OpenGL ES or D3D11 in a browser) may not reach. Routing's backward pass and the dense kernels bind
 * 8 storage buffers; the reductions run 256 invocations per workgroup.
 */
export const REQUIRED_LIMITS = {
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
} as const;

/** Features we use where present: each kernel that needs one also has a variant without it. */
const WANTED_FEATURES = ['core-features-and-limits', 'timestamp-query', 'subgroups', 'shader-f16'] as const;

export function describeAdapter(adapter: GPUAdapter, backend: string): AdapterSummary {
  const info = adapter.info;
  const description = info.description || info.device || info.architecture || 'unknown adapter';
  const isSoftware =
    info.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software|warp/i.test(`${info.description} ${info.device} ${info.architecture}`);
  const featureLevel = adapter.features.has('core-features-and-limits') ? 'core' : 'compatibility';
  const everything = `${description} ${info.device} ${info.architecture}`;
  const short = /llvmpipe/i.test(everything) ? 'llvmpipe' : /swiftshader/i.test(everything) ? 'SwiftShader' : description.split(/[:(]/)[0].trim();
  const api = backend === 'vulkan' ? 'Vulkan' : backend === 'opengl' ? 'OpenGL' : backend === 'browser' ? 'browser WebGPU' : 'default backend';
  return {
    name: `${short} (${api})`,
    vendor: info.vendor,
    architecture: info.architecture,
    description,
    backend,
    featureLevel,
    isSoftware,
  };
}

/**
 * A context on the adapter. `owner` is kept alive as long as the context (dawn.node's GPU objects);
 * `wgslFeatures`: the WGSL language features of the GPU object (e.g. read-only storage textures).
 */
export async function createContext(adapter: GPUAdapter, backend: string, owner: unknown, wgslFeatures: Iterable<string> | undefined): Promise<GpuContext> {
  // Refused here with the limit named, rather than as a WGSL validation error at some kernel later.
  const limits = adapter.limits as unknown as Record<string, number | undefined>;
  const short = Object.entries(REQUIRED_LIMITS).filter(([name, need]) => (limits[name] ?? 0) < need);
  if (short.length > 0) {
    const summary = describeAdapter(adapter, backend);
    throw new GpuUnavailableError(
      `${summary.name} (${summary.featureLevel} feature level) is below what the CapsNet kernels need: ` +
        `${short.map(([name, need]) => `${name} ${limits[name] ?? 'not reported'} (need ${need})`).join(', ')}. ` +
        'These are WebGPU\'s core limits; a compatibility-mode adapter (OpenGL ES, D3D11) may not reach them: ' +
        (backend === 'browser' ? 'try another browser or GPU.' : 'try another backend (acquireGpu\'s backend option; the CLI\'s --backend or CAPSNET_BACKEND).'),
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'capsnet' });
  return new GpuContext(device, describeAdapter(adapter, backend), owner, new Set(wgslFeatures ?? []));
}
