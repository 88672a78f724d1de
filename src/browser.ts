// The browser entry point of the library (dist/browser/capsnet.js): the same API, with the device
// from navigator.gpu.
export * from './library.ts';
export { acquireGpu } from './gpu/browser.ts';
// The same names as the Node entry point's: code type-checked against either builds for both.
export { NODE_BACKENDS, BROWSER_HINT } from './gpu/acquire.ts';
export type { AcquireOptions, NodeBackend } from './gpu/acquire.ts';
