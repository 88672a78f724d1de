// What the library offers on every platform (Node and the browser); the entry points add the
// platform's acquireGpu. Keep this list small and stable: it is the public API.
export { GpuContext, f32, i32 } from './gpu/context.ts';
export type { AdapterSummary, KernelSpec, Param } from './gpu/context.ts';
export {
  GpuUnavailableError,
  GpuValidationError,
  GpuOutOfMemoryError,
  GpuDeviceLostError,
  ShapeError,
} from './gpu/errors.ts';
export { Tensor, empty, zeros, fromArray, parameter, tidy, untrack } from './tensor.ts';
export { backward, noGrad } from './autograd/tape.ts';
export * as ops from './ops/index.ts';
