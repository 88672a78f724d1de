// The Node entry point of the library: `import { acquireGpu, ops } from 'capsnet-webgpu'`.
export * from './library.ts';
export { acquireGpu, NODE_BACKENDS } from './gpu/node.ts';
export type { AcquireOptions, NodeBackend } from './gpu/node.ts';
