// One GPU context shared by all tests in the process (acquiring a device and compiling kernels is
// the slow part); test/run.ts destroys it at the end so that node exits.
import type { GpuContext } from '../../src/gpu/context.ts';
import { acquireGpu } from '../../src/gpu/node.ts';

let shared: Promise<GpuContext> | null = null;

export function gpu(): Promise<GpuContext> {
  shared ??= acquireGpu().then((ctx) => {
    process.stdout.write(`  [gpu] ${ctx.adapter.name}: ${ctx.adapter.description}, ${ctx.adapter.featureLevel}\n`);
    return ctx;
  });
  return shared;
}

export async function releaseGpu(): Promise<void> {
  if (!shared) return;
  const ctx = await shared;
  shared = null;
  ctx.destroy();
}
