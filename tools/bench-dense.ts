// Standalone timing of the CapsNet decoder (160 -> 512 ReLU -> 1024 ReLU -> 784 sigmoid), forward and
// forward+backward (dx of every layer, dW, db), at batch 32 and 128 by default. Prints the adapter,
// the median (and the minimum: on a shared 2-core machine it is the steadier figure) wall time of
// one submit after a warm-up, and GFLOP/s from the median (2 flops per multiply-add; the backward
// counts dx and dW, i.e. 3x the forward's flops in total).
//   node --import ./tools/register-ts.mjs tools/bench-dense.ts [--backend vulkan|opengl] [--batch 32,128]
//        [--runs 7] [--variants] [--json out.json]
// --variants also times each GEMM alone with every tile shape in the list below (for tuning).
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { type Tensor, parameter, fromArray, tidy } from '../src/tensor.ts';
import { type DenseTiles, chooseDenseTiles, dense, setDenseTiles } from '../src/ops/dense.ts';
import { backward, noGrad } from '../src/autograd/tape.ts';
import { median, randomData as rand } from './bench/lib.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string' },
    batch: { type: 'string', default: '32,128' },
    runs: { type: 'string', default: '7' },
    variants: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

const LAYERS = [
  { In: 160, Out: 512, act: 'relu' },
  { In: 512, Out: 1024, act: 'relu' },
  { In: 1024, Out: 784, act: 'sigmoid' },
] as const;
const MACS_PER_EXAMPLE = LAYERS.reduce((s, l) => s + l.In * l.Out, 0);

let lastMin = 0;

async function time(ctx: GpuContext, runs: number, body: () => void): Promise<number> {
  body(); // warm-up: compiles the pipelines
  await ctx.sync();
  body();
  await ctx.sync();
  const ms: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    body();
    await ctx.sync();
    ms.push(performance.now() - t0);
  }
  lastMin = Math.min(...ms);
  return median(ms);
}

const ctx = await acquireGpu({ backend: resolveBackend(args.backend) });
const runs = Number(args.runs);
const batches = args.batch!.split(',').map(Number);
console.log(`adapter: ${ctx.adapter.name} - ${ctx.adapter.description} (${ctx.adapter.featureLevel})`);
const params = LAYERS.map((l, k) => ({
  w: parameter(ctx, [l.Out, l.In], rand(l.Out * l.In, 10 + k, 1 / Math.sqrt(l.In)), `fc${k + 1}.weight`),
  b: parameter(ctx, [l.Out], rand(l.Out, 20 + k, 0.1), `fc${k + 1}.bias`),
}));
const results: Record<string, unknown>[] = [];

for (const B of batches) {
  const input = fromArray(ctx, [B, 160], rand(B * 160, B, 0.5), 'decoder input');
  input.requiresGrad = true;
  const decoder = () => LAYERS.reduce<Tensor>((h, l, k) => dense(h, params[k].w, params[k].b, l.act), input);
  const fwd = await time(ctx, runs, () => noGrad(() => tidy(() => void decoder())));
  const fwdMin = lastMin;
  const fwdBwd = await time(ctx, runs, () =>
    tidy(() => {
      backward(decoder());
      for (const p of [...params.flatMap((p) => [p.w, p.b]), input]) {
        p.grad?.dispose();
        p.grad = null;
      }
    }),
  );
  const fwdBwdMin = lastMin;
  const flops = 2 * B * MACS_PER_EXAMPLE;
  const tiles = chooseDenseTiles(ctx, B);
  console.log(
    `batch ${B}: forward ${fwd.toFixed(2)} ms (${(flops / fwd / 1e6).toFixed(1)} GFLOP/s; min ${fwdMin.toFixed(2)} ms), ` +
      `forward+backward ${fwdBwd.toFixed(2)} ms (${((3 * flops) / fwdBwd / 1e6).toFixed(1)} GFLOP/s; min ${fwdBwdMin.toFixed(2)} ms), ` +
      `${(B / (fwdBwd / 1000)).toFixed(0)} examples/s, tiles ${JSON.stringify(tiles)}`,
  );
  results.push({ batch: B, forwardMs: fwd, forwardBackwardMs: fwdBwd, forwardMinMs: fwdMin, forwardBackwardMinMs: fwdBwdMin, forwardGflops: flops / fwd / 1e6, forwardBackwardGflops: (3 * flops) / fwdBwd / 1e6, tiles });

  if (args.variants) {
    // Each GEMM alone on the 512 -> 1024 layer, repeated 5 times in one submit.
    const l = LAYERS[1];
    const x = fromArray(ctx, [B, l.In], rand(B * l.In, 5, 1), 'x');
    x.requiresGrad = true;
    const w = params[1].w;
    const reps = 5;
    const base = chooseDenseTiles(ctx, B);
    const variants: Array<[string, Partial<DenseTiles>]> = [
      ['fwd TM8 TN4=1', { forward: { TM: 8, TN4: 1 } }],
      ['fwd TM8 TN4=2', { forward: { TM: 8, TN4: 2 } }],
      ['fwd TM8 TN4=4', { forward: { TM: 8, TN4: 4 } }],
      ['fwd TM4 TN4=4', { forward: { TM: 4, TN4: 4 } }],
      ['fwd TM8 TN4=4 WG8', { forward: { TM: 8, TN4: 4 }, WG: 8 }],
      ['fwd TM8 TN4=4 WG64', { forward: { TM: 8, TN4: 4 }, WG: 64 }],
    ];
    for (const [name, v] of variants) {
      setDenseTiles(() => ({ ...base, ...v }));
      const ms = await time(ctx, runs, () => noGrad(() => tidy(() => { for (let r = 0; r < reps; r++) dense(x, w, null, 'relu'); })));
      console.log(`  ${name}: ${(ms / reps).toFixed(2)} ms/GEMM (min ${(lastMin / reps).toFixed(2)}), ${((2 * B * l.In * l.Out * reps) / ms / 1e6).toFixed(1)} GFLOP/s`);
    }
    const bwdVariants: Array<[string, Partial<DenseTiles>]> = [
      ['bwd dx TM8 TN4=4, dW TM4=2 TN4=4', {}],
      ['bwd dx TM4 TN4=4, dW TM4=2 TN4=2', { gradInput: { TM: 4, TN4: 4 }, gradWeight: { TM4: 2, TN4: 2 } }],
      ['bwd dx TM8 TN4=2, dW TM4=1 TN4=4', { gradInput: { TM: 8, TN4: 2 }, gradWeight: { TM4: 1, TN4: 4 } }],
      ['bwd dx TM1 TN4=4, dW TM4=1 TN4=2', { gradInput: { TM: 1, TN4: 4 }, gradWeight: { TM4: 1, TN4: 2 } }],
    ];
    for (const [name, v] of bwdVariants) {
      setDenseTiles(() => ({ ...base, ...v }));
      // forward + backward minus forward alone: the backward's three kernels.
      const f = await time(ctx, runs, () => noGrad(() => tidy(() => void dense(x, w, null, 'relu'))));
      const fb = await time(ctx, runs, () => tidy(() => {
        backward(dense(x, w, null, 'relu'));
        for (const p of [x, w]) { p.grad?.dispose(); p.grad = null; }
      }));
      const ms = fb - f;
      console.log(`  ${name}: backward ${ms.toFixed(2)} ms, ${((4 * B * l.In * l.Out) / ms / 1e6).toFixed(1)} GFLOP/s`);
    }
    setDenseTiles(null);
    x.dispose();
  }
  input.dispose();
}
if (args.json) writeFileSync(args.json, JSON.stringify({ adapter: ctx.adapter, results }, null, 2));
for (const p of params) { p.w.dispose(); p.b.dispose(); }
ctx.destroy();
