// `capsnet doctor`: which WebGPU adapter this machine gives us, its limits and features, and a
// quick check that a kernel computes the right numbers on it.
import type { GpuContext } from '../gpu/context.ts';
import { acquireGpu, NODE_BACKENDS, type NodeBackend } from '../gpu/node.ts';
import { fromArray, tidy } from '../tensor.ts';
import { add, sum } from '../ops/elementwise.ts';

const KEY_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxTextureDimension2D',
] as const;

/** Adds two vectors and sums the result on the GPU, compares with the CPU; returns a one-line verdict. */
export async function selfCheck(ctx: GpuContext): Promise<{ ok: boolean; message: string }> {
  const n = 100_003;
  const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const b = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.5));
  const started = performance.now();
  const [c, s] = tidy(() => {
    const c = add(fromArray(ctx, [n], a), fromArray(ctx, [n], b));
    return [c, sum(c)];
  });
  const [cv, sv] = [await c.read(), await s.read()];
  c.dispose();
  s.dispose();
  const ms = performance.now() - started;
  let expected = 0;
  let worst = 0;
  for (let i = 0; i < n; i++) {
    expected += a[i] + b[i];
    worst = Math.max(worst, Math.abs(cv[i] - (a[i] + b[i])));
  }
  const ok = worst <= 1e-6 && Math.abs(sv[0] - expected) <= 1e-3 * Math.max(1, Math.abs(expected));
  return { ok, message: `${ok ? 'ok' : 'WRONG'}: add + sum of ${n} values (max error ${worst.toExponential(1)}, sum ${sv[0].toFixed(3)} vs ${expected.toFixed(3)}) in ${ms.toFixed(0)} ms` };
}

export function describeContext(ctx: GpuContext): string {
  const a = ctx.adapter;
  const lines = [
    `adapter:       ${a.name}`,
    `description:   ${a.description}`,
    `vendor/arch:   ${a.vendor || '-'} / ${a.architecture || '-'}`,
    `backend:       ${a.backend}${a.isSoftware ? ' (software rendering: no GPU, the CPU runs the kernels)' : ''}`,
    `feature level: ${a.featureLevel}`,
    `features:      ${[...ctx.features].sort().join(', ') || '-'}`,
    'limits:',
    ...KEY_LIMITS.map((k) => `  ${k.padEnd(36)} ${(ctx.limits as unknown as Record<string, number>)[k]}`),
  ];
  return lines.join('\n');
}

export async function doctor(backend: NodeBackend | undefined, all: boolean): Promise<number> {
  if (all) {
    let anyOk = false;
    for (const b of NODE_BACKENDS.filter((x) => x !== 'auto')) {
      try {
        const ctx = await acquireGpu({ backend: b });
        try {
          const check = await selfCheck(ctx);
          anyOk ||= check.ok;
          console.log(`${b.padEnd(8)} ${ctx.adapter.name}, ${ctx.adapter.featureLevel}: ${check.message}`);
        } finally {
          ctx.destroy();
        }
      } catch (error) {
        console.log(`${b.padEnd(8)} unavailable: ${(error as Error).message.split('\n')[0]}`);
      }
    }
    return anyOk ? 0 : 1;
  }
  const ctx = await acquireGpu({ backend });
  try {
    console.log(describeContext(ctx));
    const check = await selfCheck(ctx);
    console.log(`self-check:    ${check.message}`);
    return check.ok ? 0 : 1;
  } finally {
    ctx.destroy();
  }
}
