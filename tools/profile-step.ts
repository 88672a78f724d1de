// Where the time of one CapsNet training step goes: every kernel timed with timestamp queries
// (adapters that have them: Vulkan, Chromium). `npm run bench` prints the top of the same list. Usage:
//   node --import ./tools/register-ts.mjs tools/profile-step.ts [--batch 32] [--backend vulkan] [--steps 3]
import { parseArgs } from 'node:util';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { trainingSetup } from './bench/model.ts';

const { values } = parseArgs({ options: { batch: { type: 'string' }, backend: { type: 'string' }, steps: { type: 'string' } } });
const B = Number(values.batch ?? 32);
const steps = Number(values.steps ?? 3);
const ctx = await acquireGpu({ backend: values.backend === undefined ? undefined : resolveBackend(values.backend) });
try {
  const { step } = trainingSetup(ctx, B);
  step(); // warm-up: compiles every pipeline
  await ctx.sync();
  const wall = performance.now();
  ctx.beginProfile();
  for (let k = 0; k < steps; k++) step();
  const profile = await ctx.endProfile();
  const wallMs = (performance.now() - wall) / steps;
  const rows = [...profile].map(([name, p]) => ({ name, ms: p.ms / steps, count: p.count / steps })).sort((a, b) => b.ms - a.ms);
  const total = rows.reduce((s, r) => s + r.ms, 0);
  console.log(`${ctx.adapter.name}, batch ${B}: ${total.toFixed(0)} ms of kernels per step (wall ${wallMs.toFixed(0)} ms with one pass per kernel)`);
  for (const r of rows) console.log(`${r.ms.toFixed(1).padStart(9)} ms ${(100 * r.ms / total).toFixed(1).padStart(5)}%  x${r.count}  ${r.name}`);
} finally {
  ctx.destroy();
}
