// Where the time of one CapsNet training step goes: every kernel timed with timestamp queries
// (adapters that have them: Vulkan, Chromium). `npm run bench` prints the top of the same list.
// Adapters without timestamp queries (OpenGL) get the whole step only: wall-clock and the CPU time
// of llvmpipe's worker threads and of the main thread (dawn.node's polling) per step. Usage:
//   node --import ./tools/register-ts.mjs tools/profile-step.ts [--batch 32] [--backend vulkan] [--steps 3]
import { parseArgs } from 'node:util';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { trainingSetup } from './bench/model.ts';
import { median, workerCpuMs } from './bench/lib.ts';

const { values } = parseArgs({ options: { batch: { type: 'string' }, backend: { type: 'string' }, steps: { type: 'string' } } });
const B = Number(values.batch ?? 32);
const steps = Number(values.steps ?? 3);
const ctx = await acquireGpu({ backend: values.backend === undefined ? undefined : resolveBackend(values.backend) });
try {
  const { step } = trainingSetup(ctx, B);
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
