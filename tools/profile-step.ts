// Where the time of one CapsNet training step goes: every kernel timed with timestamp queries
// (adapters that have them: Vulkan, Chromium). `npm run bench` prints the top of the same list.
// Adapters without timestamp queries (OpenGL) get the whole step only: wall-clock and the CPU time
// of llvmpipe's worker threads and of the main thread (dawn.node's polling) per step. Usage:
//   node --import ./tools/register-ts.mjs tools/profile-step.ts [--batch 32] [--backend vulkan] [--steps 3]
// Start-up instead (one process per way, so that nothing is compiled before; set
// MESA_SHADER_CACHE_DISABLE=true to see the cold figures Mesa's disk cache otherwise hides):
//   ... tools/profile-step.ts --startup cold    first step compiles every pipeline as it dispatches
//   ... tools/profile-step.ts --startup warm    collectKernels + warmPipelines (async, concurrent), then the first step
//   ... tools/profile-step.ts --startup sync    the same pipelines created one by one with createComputePipeline, then the first step
//   ... tools/profile-step.ts --startup compile warm, then the step recorded with empty dispatches (collectKernels
//                                               emptyDispatches: llvmpipe compiles at a kernel's first dispatch), then the first step
import { parseArgs } from 'node:util';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { trainingSetup } from './bench/model.ts';
import { median, workerCpuMs } from './bench/lib.ts';

const { values } = parseArgs({ options: { batch: { type: 'string' }, backend: { type: 'string' }, steps: { type: 'string' }, startup: { type: 'string' } } });
const B = Number(values.batch ?? 32);
const steps = Number(values.steps ?? 3);
const ctx = await acquireGpu({ backend: values.backend === undefined ? undefined : resolveBackend(values.backend) });
try {
  const { step } = trainingSetup(ctx, B);
  if (values.startup !== undefined) {
    await startup(values.startup, step);
    ctx.destroy();
    process.exit(0);
  }
  step(); // warm-up: compiles every pipeline
  await ctx.sync();
  const threads = process.env.LP_NUM_THREADS ? `, LP_NUM_THREADS=${process.env.LP_NUM_THREADS}` : '';
  if (!ctx.canProfile) {
    const wall: number[] = [];
    const workers: number[] = [];
    const process_: number[] = [];
    for (let k = 0; k < steps; k++) {
      const [t0, w0, c0] = [performance.now(), workerCpuMs(), process.cpuUsage()];
      step();
      await ctx.sync();
      const c = process.cpuUsage(c0);
      wall.push(performance.now() - t0);
      workers.push((workerCpuMs() ?? 0) - (w0 ?? 0));
      process_.push((c.user + c.system) / 1000);
    }
    const [w, cw, cp] = [median(wall), median(workers), median(process_)];
    console.log(`${ctx.adapter.name}, batch ${B}${threads}: no timestamp queries on this adapter, whole steps only (median of ${steps})`);
    console.log(`  wall ${w.toFixed(0)} ms per step (${((1000 * B) / w).toFixed(2)} images/s); CPU per step: llvmpipe workers ${cw.toFixed(0)} ms, main thread ${(cp - cw).toFixed(0)} ms`);
  } else {
    const wall = performance.now();
    ctx.beginProfile();
    for (let k = 0; k < steps; k++) step();
    const profile = await ctx.endProfile();
    const wallMs = (performance.now() - wall) / steps;
    const rows = [...profile].map(([name, p]) => ({ name, ms: p.ms / steps, count: p.count / steps })).sort((a, b) => b.ms - a.ms);
    const total = rows.reduce((s, r) => s + r.ms, 0);
    console.log(`${ctx.adapter.name}, batch ${B}${threads}: ${total.toFixed(0)} ms of kernels per step (wall ${wallMs.toFixed(0)} ms with one pass per kernel)`);
    for (const r of rows) console.log(`${r.ms.toFixed(1).padStart(9)} ms ${(100 * r.ms / total).toFixed(1).padStart(5)}%  x${r.count}  ${r.name}`);
  }
} finally {
  ctx.destroy();
}

/** Wall-clock and CPU time (this process, all threads) of fn, in ms. */
async function timed<T>(fn: () => T | Promise<T>): Promise<{ value: T; wallMs: number; cpuMs: number }> {
  const [t0, c0] = [performance.now(), process.cpuUsage()];
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { value, wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 };
}

async function startup(way: string, step: () => void): Promise<void> {
  if (!['cold', 'warm', 'sync', 'compile'].includes(way)) throw new Error(`--startup: expected cold, warm, sync or compile, got '${way}'`);
  const cache = process.env.MESA_SHADER_CACHE_DISABLE === 'true' ? "Mesa's shader cache disabled" : "Mesa's shader cache on (set MESA_SHADER_CACHE_DISABLE=true for cold figures)";
  const runStep = () => timed(async () => { step(); await ctx.sync(); });
  const fmt = (t: { wallMs: number; cpuMs: number }) => `${(t.wallMs / 1000).toFixed(2)} s (CPU ${(t.cpuMs / 1000).toFixed(2)} s)`;
  const lines: string[] = [];
  let before = { wallMs: 0, cpuMs: 0 };
  if (way !== 'cold') {
    const collect = await timed(() => ctx.collectKernels(step));
    const specs = collect.value;
    const create = way !== 'sync'
      ? await timed(() => ctx.warmPipelines(specs))
      : await timed(async () => { for (const k of specs) ctx.pipeline(k); await ctx.sync(); return specs.length; });
    lines.push(`collect ${specs.length} kernels ${fmt(collect)}; ${way !== 'sync' ? 'warmPipelines (async)' : 'createComputePipeline one by one'}: ${create.value} pipelines in ${fmt(create)}`);
    before = { wallMs: collect.wallMs + create.wallMs, cpuMs: collect.cpuMs + create.cpuMs };
    if (way === 'compile') {
      // (The step's host side runs again: its Adam counts one more update, which changes no timing.)
      const empty = await timed(async () => { ctx.collectKernels(step, { emptyDispatches: true }); await ctx.sync(); });
      lines.push(`the step's kernels dispatched empty (zero workgroups) and waited for: ${fmt(empty)}`);
      before = { wallMs: before.wallMs + empty.wallMs, cpuMs: before.cpuMs + empty.cpuMs };
    }
  }
  const p0 = ctx.counters.pipelinesCreated;
  const first = await runStep();
  const createdInStep = ctx.counters.pipelinesCreated - p0;
  const second = await runStep();
  lines.push(`first step ${fmt(first)} (${createdInStep} pipelines created in it); second step ${fmt(second)}`);
  lines.push(`start-up to the end of the first step: ${fmt({ wallMs: before.wallMs + first.wallMs, cpuMs: before.cpuMs + first.cpuMs })}`);
  console.log(`${ctx.adapter.name}, batch ${B}, --startup ${way}, ${cache}:`);
  for (const l of lines) console.log(`  ${l}`);
}
