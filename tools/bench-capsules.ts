// Timing of the capsule layers (DigitCaps): the prediction vectors u_hat = W u and dynamic routing,
// forward and backward, in microseconds per example, at the paper's sizes (1152 x 10 capsules,
// 16x8 matrices), next to the two convolutions of a training step on the same adapter in the same
// run (Conv1 forward + grad weight; PrimaryCaps forward + grad input + grad weight), so that the
// capsule layers' share of a step can be read off. Medians of several runs after a warm-up; each
// phase is recorded, submitted and waited for alone, so every figure includes one submit + wait
// (~0.1-0.3 ms on llvmpipe, i.e. 1-10 us per example).
//
//   node --import ./tools/register-ts.mjs tools/bench-capsules.ts [--backend default|vulkan|opengl]
//        [--batch 32,128] [--reps 5] [--warmup 2] [--iterations 3] [--grad-mode all|last] [--no-conv]
//        [--json out.json]
//
// The machine is shared and noisy: next to wall-clock microseconds, each figure has the CPU time of
// the process's threads other than the main one (llvmpipe's workers; Linux /proc only) per example,
// which other load disturbs less. Compare figures from the same run. Nothing here is a test.

import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { type Tensor, empty, fromArray, parameter } from '../src/tensor.ts';
import { capsPredict, routing, type RoutingGradMode } from '../src/ops/capsules.ts';
import { conv2dForwardInto, conv2dGeometry, conv2dGradInputInto, conv2dGradWeightInto, conv2dPlan } from '../src/ops/conv2d.ts';
import { makeRng } from '../test/helpers/random.ts';
import { median, workerCpuMs } from './bench/lib.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'default' },
    batch: { type: 'string', default: '32,128' },
    reps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    iterations: { type: 'string', default: '3' },
    'grad-mode': { type: 'string', default: 'all' },
    'no-conv': { type: 'boolean', default: false },
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
console.log(`adapter: ${ctx.adapter.name} - ${ctx.adapter.description} (${ctx.adapter.featureLevel})`);
console.log(`DigitCaps ${I} x ${J}, W ${Dout}x${Din}, r = ${iterations}, gradMode '${gradMode}'; median of ${reps} runs after ${warmup} warm-up runs`);

function random(n: number, seed: number, scale: number): Float32Array {
  const rng = makeRng(seed);
  return Float32Array.from({ length: n }, () => (2 * rng() - 1) * scale);
}

interface Sample { ms: number; cpuMs: number | null }
class Phases {
  readonly samples = new Map<string, Sample[]>();
  /** Runs `fn` (which records GPU work), waits for it, and keeps the sample if `keep`. */
  async time(name: string, keep: boolean, fn: () => void): Promise<void> {
    await ctx.sync();
    const cpu0 = workerCpuMs();
    const t0 = performance.now();
    fn();
    await ctx.sync();
    const ms = performance.now() - t0;
    const cpu1 = workerCpuMs();
    if (!keep) return;
    if (!this.samples.has(name)) this.samples.set(name, []);
    this.samples.get(name)!.push({ ms, cpuMs: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0 });
  }
  /** Median wall-clock and mean worker-CPU microseconds per example. */
  summary(name: string, B: number): { us: number; cpuUs: number | null } {
    const s = this.samples.get(name)!;
    const cpu = s.every((x) => x.cpuMs !== null) ? s.reduce((a, x) => a + x.cpuMs!, 0) / s.length : null;
    return { us: (median(s.map((x) => x.ms)) * 1000) / B, cpuUs: cpu === null ? null : (cpu * 1000) / B };
  }
}

const CAPS = ['predict forward', 'routing forward', 'routing backward', 'predict backward'];
const CONV = ['conv1 forward', 'conv1 grad weight', 'primary forward', 'primary grad input', 'primary grad weight'];
const results: Array<{ batch: number; phases: Record<string, { us: number; cpuUs: number | null }> }> = [];

for (const B of batches) {
  const phases = new Phases();
  const W = parameter(ctx, [I, J, Dout, Din], random(I * J * Dout * Din, 1, 0.05), 'digit.W');
  const u = parameter(ctx, [B, I, Din], random(B * I * Din, 2, 0.3), 'u');
  const g = fromArray(ctx, [B, J, Dout], random(B * J * Dout, 3, 1));
  for (let run = 0; run < warmup + reps; run++) {
    const keep = run >= warmup;
    // No tidy() (the phases are awaited one by one): tensors are disposed by hand; the small
    // [B, r, J, D] and [B, r-1, I, J] tensors that routing saves are left to the collector.
    let uhat: Tensor | null = null;
    let v: Tensor | null = null;
    await phases.time('predict forward', keep, () => { uhat = capsPredict(W, u); });
    await phases.time('routing forward', keep, () => { v = routing(uhat!, { iterations, gradMode }); });
    // The two backward closures, called one at a time so that each can be timed.
    await phases.time('routing backward', keep, () => v!.creator!.backward(g));
    const duhat = uhat!.grad!;
    await phases.time('predict backward', keep, () => uhat!.creator!.backward(duhat));
    for (const t of [uhat!, v!, duhat, W.grad, u.grad]) t?.dispose();
    uhat!.grad = null;
    W.grad = null;
    u.grad = null;
  }
  if (!values['no-conv']) {
    // The convolutions of the same training step, through the conv2d op's own kernels and plans.
    const layers = [
      { name: 'conv1', x: [B, 1, 28, 28], w: [256, 1, 9, 9], options: { stride: 1, relu: true }, gradInput: false },
      { name: 'primary', x: [B, 256, 20, 20], w: [256, 256, 9, 9], options: { stride: 2 }, gradInput: true },
    ];
    for (const layer of layers) {
      const geo = conv2dGeometry(layer.x, layer.w, [layer.w[0]], layer.options);
      const plan = conv2dPlan(ctx, geo, layer.options);
      const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
      const outShape = [geo.B, geo.Cout, geo.OH, geo.OW];
      const x = fromArray(ctx, layer.x, random(size(layer.x), 4, 1));
      const w = fromArray(ctx, layer.w, random(size(layer.w), 5, Math.sqrt(3 / (geo.Cin * 81))));
      const bias = fromArray(ctx, [geo.Cout], random(geo.Cout, 6, 0.1));
      const dOut = fromArray(ctx, outShape, random(size(outShape), 7, 1));
      const out = empty(ctx, outShape);
      const dx = empty(ctx, layer.x);
      const dw = empty(ctx, layer.w);
      const mask = geo.relu ? out : dOut;
      for (let run = 0; run < warmup + reps; run++) {
        const keep = run >= warmup;
        await phases.time(`${layer.name} forward`, keep, () => conv2dForwardInto(geo, plan, x, w, bias, out));
        if (layer.gradInput) await phases.time(`${layer.name} grad input`, keep, () => conv2dGradInputInto(geo, plan, dOut, mask, w, dx));
        await phases.time(`${layer.name} grad weight`, keep, () => conv2dGradWeightInto(geo, plan, x, dOut, mask, dw));
      }
      for (const t of [x, w, bias, dOut, out, dx, dw]) t.dispose();
    }
  }
  const summary: Record<string, { us: number; cpuUs: number | null }> = {};
  for (const name of [...CAPS, ...(values['no-conv'] ? [] : CONV)]) summary[name] = phases.summary(name, B);
  results.push({ batch: B, phases: summary });
  const fmt = (x: { us: number; cpuUs: number | null }) => `${x.us.toFixed(0).padStart(7)} us${x.cpuUs === null ? '' : ` (${x.cpuUs.toFixed(0)} CPU-us)`}`;
  console.log(`\nbatch ${B}, per example:`);
  for (const [name, x] of Object.entries(summary)) console.log(`  ${name.padEnd(22)}${fmt(x)}`);
  const total = (names: string[]) => names.reduce((a, n) => a + summary[n].us, 0);
  const totalCpu = (names: string[]) => (names.every((n) => summary[n].cpuUs !== null) ? names.reduce((a, n) => a + summary[n].cpuUs!, 0) : null);
  const caps = total(CAPS);
  console.log(`  ${'capsule layers'.padEnd(22)}${fmt({ us: caps, cpuUs: totalCpu(CAPS) })}`);
  if (!values['no-conv']) {
    const conv = total(CONV);
    const cc = totalCpu(CAPS);
    const cv = totalCpu(CONV);
    console.log(`  ${'convolutions'.padEnd(22)}${fmt({ us: conv, cpuUs: cv })}`);
    console.log(
      `  capsule layers / (capsule layers + convolutions): ${((100 * caps) / (caps + conv)).toFixed(1)}% wall-clock` +
        (cc !== null && cv !== null ? `, ${((100 * cc) / (cc + cv)).toFixed(1)}% worker CPU` : ''),
    );
  }
  for (const t of [W, u, g]) t.dispose();
}

if (values.json) {
  writeFileSync(values.json, JSON.stringify({ adapter: ctx.adapter, iterations, gradMode, reps, warmup, results }, null, 2));
  console.log(`wrote ${values.json}`);
}
ctx.destroy();
