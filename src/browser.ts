// The browser entry point of the library (dist/browser/capsnet.js): the same API, with the device
// from navigator.gpu.
export * from './library.ts';
export { acquireGpu } from './gpu/browser.ts';
// The same names around acquireGpu as the Node entry point's (which adds only Node's file helpers:
// loadCheckpoint, saveCheckpoint, loadAnyCheckpoint, loadMnist, loadIdxDataset, pretrainedModelPath).
export { NODE_BACKENDS, BROWSER_HINT } from './gpu/acquire.ts';
export type { AcquireOptions, NodeBackend } from './gpu/acquire.ts';
