// What acquireGpu takes and says, the same on both entry points (Node and the browser), so that code
// type-checked against either (TypeScript applies the Node types unless told the browser condition)
// builds for both.

export type NodeBackend = 'auto' | 'default' | 'vulkan' | 'opengl';
export const NODE_BACKENDS: readonly NodeBackend[] = ['auto', 'default', 'vulkan', 'opengl'];

export interface AcquireOptions {
  /** Node only: which Dawn backend; 'auto' (the default) tries them in order. Env: CAPSNET_BACKEND. */
  backend?: NodeBackend;
  /** Browser only: which adapter to ask navigator.gpu for (default 'high-performance'). */
  powerPreference?: GPUPowerPreference;
}

export const BROWSER_HINT =
  'This page needs WebGPU: a recent Chrome or Edge (113+), Safari 26+, or Firefox 141+ (on Linux: Chrome with ' +
  'chrome://flags/#enable-unsafe-webgpu, or Firefox with dom.webgpu.enabled).';
