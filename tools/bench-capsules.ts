// Timing of the capsule layers (DigitCaps): the prediction vectors u_hat = W u and dynamic routing,
// forward and backward, in microseconds per example, at the paper's sizes (1152 x 10 capsules,
// 16x8 matrices). Medians of several runs after a warm-up; each phase is timed alone (submit and
// wait around it), so the figures include one submit + wait (~0.1-0.3 ms on llvmpipe).
//   node --import ./tools/register-ts.mjs tools/bench-capsules.ts [--backend vulkan|opengl|auto]
//        [--batch 32,128] [--reps 5] [--iterations 3] [--grad-mode all|last] [--json out.json]
// The machine is shared: compare figures measured in the same run.

import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { fromArray, parameter, type Tensor } from '../src/tensor.ts';
import { capsPredict, routing, type RoutingGradMode } from '../src/ops/capsules.ts';
import { makeRng } from '../test/helpers/random.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    batch: { type: 'string', default: '32,128' },
    reps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    iterations: { type: 'string', default: '3' },
    'grad-mode': { type: 'string', default: 'all' },
    json: { type: 'string' },
  },
});

const batches = values.batch!.split(',').map(Number);
const reps = Number(values.reps);
const warmup = Number(values.warmup);
const iterations = Number(values.iterations);
const gradMode = values['grad-mode'] as RoutingGradMode;
const [I, J, Dout, Din] = [1152, 10, 16, 8];

const ctx = await acquireGpu({ backend: resolveBackend(values.backend) });
console.log(`adapter: ${ctx.adapter.name} (${ctx.adapter.description}, ${ctx.adapter.featureLevel})`);
console.log(`DigitCaps ${I} x ${J}, W ${Dout}x${Din}, r = ${iterations}, gradMode '${gradMode}'; ${reps} runs after ${warmup} warm-up runs`);

function random(n: number, seed: number, scale: number): Float32Array {
  const rng = makeRng(seed);
  return Float32Array.from({ length: n }, () => (2 * rng() - 1) * scale);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

type Phase = 'predict forward' | 'routing forward' | 'routing backward' | 'predict backward';
const PHASES: Phase[] = ['predict forward', 'routing forward', 'routing backward', 'predict backward'];
const results: Array<{ batch: number; usPerExample: Record<Phase, number>; total: number }> = [];

for (const B of batches) {
  const W = parameter(ctx, [I, J, Dout, Din], random(I * J * Dout * Din, 1, 0.05), 'digit.W');
  const u = parameter(ctx, [B, I, Din], random(B * I * Din, 2, 0.3), 'u');
  const times: Record<Phase, number[]> = { 'predict forward': [], 'routing forward': [], 'routing backward': [], 'predict backward': [] };
  for (let run = 0; run < warmup + reps; run++) {
    const t: Partial<Record<Phase, number>> = {};
    // No tidy() here (the phases are awaited one by one): the tensors are disposed by hand. The
    // small [B, r, J, D] tensors that routing saves for its backward are left to the collector.
    const g = fromArray(ctx, [B, J, Dout], random(B * J * Dout, 3, 1));
    await ctx.sync();
    let t0 = performance.now();
    const uhat = capsPredict(W, u);
    await ctx.sync();
    t['predict forward'] = performance.now() - t0;
    t0 = performance.now();
    const v = routing(uhat, { iterations, gradMode });
    await ctx.sync();
    t['routing forward'] = performance.now() - t0;
    // The two backward closures, called one at a time so that each can be timed.
    t0 = performance.now();
    v.creator!.backward(g);
    await ctx.sync();
    t['routing backward'] = performance.now() - t0;
    t0 = performance.now();
    const duhat = uhat.grad as Tensor;
    uhat.creator!.backward(duhat);
    await ctx.sync();
    t['predict backward'] = performance.now() - t0;
    for (const x of [g, uhat, v, duhat, W.grad, u.grad]) x?.dispose();
    uhat.grad = null;
    W.grad = null;
    u.grad = null;
    if (run >= warmup) for (const p of PHASES) times[p].push(t[p]!);
  }
  const usPerExample = Object.fromEntries(PHASES.map((p) => [p, (median(times[p]) * 1000) / B])) as Record<Phase, number>;
  const total = PHASES.reduce((s, p) => s + usPerExample[p], 0);
  results.push({ batch: B, usPerExample, total });
  console.log(`batch ${B}: ` + PHASES.map((p) => `${p} ${usPerExample[p].toFixed(0)} us`).join(', ') + `; total ${total.toFixed(0)} us per example`);
  W.dispose();
  u.dispose();
}

if (values.json) {
  writeFileSync(values.json, JSON.stringify({ adapter: ctx.adapter, iterations, gradMode, reps, results }, null, 2));
  console.log(`wrote ${values.json}`);
}
ctx.destroy();
