// Errors a user can act on. Every WebGPU failure the engine sees is turned into one of these,
// with what was being done and what to do about it.

export class GpuUnavailableError extends Error {
  override name = 'GpuUnavailableError';
}

export class GpuValidationError extends Error {
  override name = 'GpuValidationError';
}

export class GpuOutOfMemoryError extends Error {
  override name = 'GpuOutOfMemoryError';
}

export class GpuDeviceLostError extends Error {
  override name = 'GpuDeviceLostError';
}

/** Wrong shapes or arguments, found before anything is dispatched. */
export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** The command that installs a software WebGPU adapter on a Debian machine without a GPU. */
export const INSTALL_HINT =
  'On Debian or Ubuntu without a GPU, install Mesa\'s software drivers (Vulkan lavapipe, OpenGL llvmpipe) with:\n' +
  '  sudo bash tools/install-software-gpu.sh --no-browser     (from the capsnet-webgpu folder; `npm run setup-gpu` does the same)\n' +
  'Elsewhere, install your GPU\'s Vulkan driver (or Mesa >= 23 with mesa-vulkan-drivers).';

/** Turns a GPUError from an error scope into our error types, naming what was being done. */
export function fromGpuError(error: GPUError, doing: string): Error {
  const message = `${doing}: ${error.message.trim()}`;
  if (error.constructor.name === 'GPUOutOfMemoryError' || /out of memory|OutOfMemory/i.test(error.message)) {
    return new GpuOutOfMemoryError(
      `${message}\nThe GPU ran out of memory. Use a smaller batch (the CLI's --batch-size), or close other programs using the GPU.`,
    );
  }
  return new GpuValidationError(
    `${message}\nThis is a bug in capsnet-webgpu (a kernel or a buffer was used wrongly); please report it with this message.`,
  );
}
