// The browser entry point of the library (dist/browser/capsnet.js): the same API, with the device
// from navigator.gpu.
export * from './library.ts';
export { acquireGpu, BROWSER_HINT } from './gpu/browser.ts';
