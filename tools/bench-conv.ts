// Times the convolution passes on the paper's shapes (PrimaryCaps: 256 -> 256, 9x9, stride 2 on
// 20x20; Conv1: 1 -> 256, 9x9, stride 1 on 28x28, ReLU) and a plain tiled f32 matmul on the same
// adapter, the ceiling there. Cases run in interleaved rounds (warm-up rounds first); each figure is
// the median over the rounds of one pass recorded, submitted and waited for. GFLOP/s counts 2 x the multiply-adds of the
// convolution itself (2 B Cout OH OW Cin KH KW per pass), not the padding of the packed operands.
//
//   node --import ./tools/register-ts.mjs tools/bench-conv.ts [--backend default|vulkan|opengl]
//        [--batch 32,128] [--runs 5] [--warmup 2] [--layers primary,conv1] [--variant gemm|direct] [--json out.json]
//
// The machine is shared and noisy: besides wall-clock GFLOP/s, each row shows GFLOP per CPU-second
// of the process's threads other than the main one (llvmpipe's workers; Linux /proc only), a
// figure of the kernels' efficiency that other load disturbs less. Multiply by the number of cores
// llvmpipe uses for the wall-clock rate of an idle machine.
//
// Not a test: nothing is asserted about speed. It will be folded into `npm run bench`.

import { parseArgs } from 'node:util';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import ceilingWgsl from '../kernels/conv2d_ceiling_matmul.wgsl';
import ceilingSgWgsl from '../kernels/conv2d_ceiling_matmul_sg.wgsl';
import type { GpuContext, KernelSpec } from '../src/gpu/context.ts';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { type Tensor, empty, fromArray } from '../src/tensor.ts';
import {
  type Conv2dGeometry, type Conv2dOptions, type Conv2dVariant, conv2dForwardInto, conv2dGeometry, conv2dGradInputInto,
  conv2dGradWeightInto, conv2dPlan, deviceInfo,
} from '../src/ops/conv2d.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'default' },
    batch: { type: 'string', default: '32,128' },
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    layers: { type: 'string', default: 'primary,conv1' },
    variant: { type: 'string' },
    json: { type: 'string' },
  },
});

const runs = Number(args.runs);
const warmup = Number(args.warmup);
const batches = args.batch!.split(',').map(Number);
const variant = args.variant as Conv2dVariant | undefined;

const LAYERS: Record<string, { name: string; x: (B: number) => number[]; w: number[]; options: Conv2dOptions; note?: string }> = {
  primary: { name: 'PrimaryCaps', x: (B) => [B, 256, 20, 20], w: [256, 256, 9, 9], options: { stride: 2 } },
  conv1: { name: 'Conv1', x: (B) => [B, 1, 28, 28], w: [256, 1, 9, 9], options: { stride: 1, relu: true } },
};

function randomData(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** CPU milliseconds used so far by this process's threads other than the main one (null off Linux). */
function workerCpuMs(): number | null {
  if (!existsSync('/proc/self/task')) return null;
  let ticks = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    if (tid === String(process.pid)) continue;
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime + stime
    } catch {
      // the thread ended
    }
  }
  return ticks * 10; // USER_HZ = 100
}

interface Row { what: string; batch: number | null; ms: number; gflops: number; cpuGflops: number | null; note: string }

/** One thing to time: `run` records its dispatches; `check` (optional) validates the result afterwards. */
interface Case { what: string; batch: number | null; flops: number; note: string; run: () => void; check?: () => Promise<void>; dispose: () => void }

/**
 * Times the cases in interleaved rounds (every case once per round, `warmup` rounds first, then
 * `runs` rounds): drifts in the machine's load hit every case alike, so ratios stay meaningful.
 * Each figure is the median over the measured rounds of one case recorded, submitted and waited for.
 */
async function measure(ctx: GpuContext, cases: Case[]): Promise<Row[]> {
  const wall = cases.map(() => [] as number[]);
  const cpu = cases.map(() => [] as number[]);
  for (let round = 0; round < warmup + runs; round++) {
    for (const [k, c] of cases.entries()) {
      const cpu0 = workerCpuMs();
      const t0 = performance.now();
      c.run();
      await ctx.sync();
      const ms = performance.now() - t0;
      const cpu1 = workerCpuMs();
      if (round >= warmup) {
        wall[k].push(ms);
        if (cpu0 !== null && cpu1 !== null) cpu[k].push(cpu1 - cpu0);
      }
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const rows: Row[] = [];
  for (const [k, c] of cases.entries()) {
    await c.check?.();
    const ms = median(wall[k]);
    const cpuMs = cpu[k].length ? median(cpu[k]) : null;
    rows.push({ what: c.what, batch: c.batch, ms, gflops: c.flops / ms / 1e6, cpuGflops: cpuMs ? c.flops / cpuMs / 1e6 : null, note: c.note });
  }
  return rows;
}

/**
 * C = A B with the ceiling kernel (its subgroup variant if `sg`), split-K in chunks of `chunk` (0:
 * none); checks a few elements after timing.
 */
function matmulCase(ctx: GpuContext, M: number, N: number, K: number, chunk: number, sg = false): Case {
  const kernel: KernelSpec = sg
    ? { name: 'conv2d_ceiling_matmul_sg', code: ceilingSgWgsl, constants: { WG: 8, ROWS: 8 } }
    : { name: 'conv2d_ceiling_matmul', code: ceilingWgsl, constants: { WG: 8, ROWS: 8 } };
  const A = randomData(M * K, 1);
  const B = randomData(K * N, 2);
  const [a, b, c] = [fromArray(ctx, [M * K], A), fromArray(ctx, [K * N], B), empty(ctx, [M * N])];
  const step = chunk || K;
  return {
    what: `matmul ${M}x${N}x${K}${chunk ? ` (split-K ${chunk})` : ''}${sg ? ' subgroups' : ''}`,
    batch: null,
    flops: 2 * M * N * K,
    note: 'ceiling',
    run: () => {
      for (let k0 = 0; k0 < K; k0 += step) {
        ctx.dispatch(kernel, [a.buffer, b.buffer, c.buffer], [M, N / 4, K / 4, k0, Math.min(K, k0 + step), k0 > 0 ? 1 : 0], [N / 16, M / 64]);
      }
    },
    check: async () => {
      const C = await c.read();
      for (const [i, j] of [[0, 0], [M - 1, N - 1], [Math.floor(M / 3), Math.floor(N / 2)]]) {
        let ref = 0;
        for (let k = 0; k < K; k++) ref += A[i * K + k] * B[k * N + j];
        if (Math.abs(C[i * N + j] - ref) > 1e-3 * Math.sqrt(K)) throw new Error(`ceiling matmul wrong at [${i}, ${j}]: ${C[i * N + j]} vs ${ref}`);
      }
    },
    dispose: () => [a, b, c].forEach((t) => t.dispose()),
  };
}

function layerCases(ctx: GpuContext, key: string, B: number): Case[] {
  const layer = LAYERS[key];
  const xShape = layer.x(B);
  const g: Conv2dGeometry = conv2dGeometry(xShape, layer.w, [layer.w[0]], layer.options);
  const plan = conv2dPlan(ctx, g, { ...layer.options, variant });
  const K = g.Cin * g.KH * g.KW;
  const flops = 2 * g.B * g.Cout * g.OH * g.OW * K;
  const x = fromArray(ctx, xShape, randomData(xShape.reduce((a, b) => a * b, 1), 3));
  const w = fromArray(ctx, layer.w, randomData(layer.w.reduce((a, b) => a * b, 1), 4, Math.sqrt(3 / K)));
  const bias = fromArray(ctx, [g.Cout], randomData(g.Cout, 5, 0.1));
  const outShape = [g.B, g.Cout, g.OH, g.OW];
  const dOut = fromArray(ctx, outShape, randomData(outShape.reduce((a, b) => a * b, 1), 6));
  const out = empty(ctx, outShape);
  const dx = empty(ctx, xShape);
  const dw = empty(ctx, layer.w);
  const mask = g.relu ? out : dOut;
  const describe = (v: Conv2dVariant) => (v === 'gemm' ? `gemm${plan.subgroups ? ' subgroups' : ''} ${plan.pack}` : 'direct');
  const tensors: Tensor[] = [x, w, bias, dOut, out, dx, dw];
  const make = (pass: string, v: Conv2dVariant, run: () => void, note = ''): Case => ({
    what: `${layer.name} ${pass}`, batch: B, flops, note: [describe(v), note].filter(Boolean).join(', '), run, dispose: () => {},
  });
  return [
    make('forward', plan.forward, () => conv2dForwardInto(g, plan, x, w, bias, out)),
    make('grad input', plan.gradInput, () => conv2dGradInputInto(g, plan, dOut, mask, w, dx), key === 'conv1' ? 'not needed in CapsNet' : ''),
    { ...make('grad weight', plan.gradWeight, () => conv2dGradWeightInto(g, plan, x, dOut, mask, dw)), dispose: () => tensors.forEach((t) => t.dispose()) },
  ];
}

function printTable(rows: Row[]): void {
  const ceiling = Math.max(...rows.filter((r) => r.note === 'ceiling').map((r) => r.gflops));
  const cpuCeiling = Math.max(...rows.filter((r) => r.note === 'ceiling').map((r) => r.cpuGflops ?? 0));
  const pad = (s: string, n: number) => s.padEnd(n);
  const lpad = (s: string, n: number) => s.padStart(n);
  const pct = (v: number | null, c: number) => (v === null || !c ? '-' : `${((100 * v) / c).toFixed(0)}%`);
  console.log(`${pad('what', 40)}${lpad('batch', 6)}${lpad('ms', 9)}${lpad('GFLOP/s', 9)}${lpad('% ceil', 8)}${lpad('per CPU-s', 11)}${lpad('% ceil', 8)}  notes`);
  for (const r of rows) {
    console.log(
      `${pad(r.what, 40)}${lpad(r.batch === null ? '' : String(r.batch), 6)}${lpad(r.ms.toFixed(1), 9)}${lpad(r.gflops.toFixed(1), 9)}${lpad(pct(r.gflops, ceiling), 8)}` +
        `${lpad(r.cpuGflops === null ? '-' : r.cpuGflops.toFixed(1), 11)}${lpad(pct(r.cpuGflops, cpuCeiling), 8)}  ${r.note}`,
    );
  }
  console.log(`ceiling = the best matmul of this table: ${ceiling.toFixed(1)} GFLOP/s wall-clock, ${cpuCeiling.toFixed(1)} GFLOP per worker CPU-second\n`);
}

const backend = resolveBackend(args.backend);
const ctx = await acquireGpu({ backend });
console.log(`adapter: ${ctx.adapter.name} - ${ctx.adapter.description} (${ctx.adapter.featureLevel})`);
console.log(`median of ${runs} interleaved rounds after ${warmup} warm-up rounds; each run = record + submit + wait\n`);
const all: Row[] = [];
try {
  for (const B of batches) {
    // The ceiling: a square matmul, and one of PrimaryCaps' forward GEMM size at batch 32 (split-K as
    // the conv); with subgroups of 8, the same with the subgroup kernel. The best of them is the ceiling.
    const cases = [matmulCase(ctx, 1024, 1024, 1024, 0), matmulCase(ctx, 32 * 36, 256, 20736, 2048)];
    if (deviceInfo(ctx).subgroups8) cases.push(matmulCase(ctx, 1024, 1024, 1024, 0, true), matmulCase(ctx, 32 * 36, 256, 20736, 2048, true));
    for (const key of args.layers!.split(',')) cases.push(...layerCases(ctx, key, B));
    const rows = await measure(ctx, cases);
    cases.forEach((c) => c.dispose());
    printTable(rows);
    all.push(...rows);
  }
  if (args.json) writeFileSync(args.json, JSON.stringify({ adapter: ctx.adapter, runs, warmup, rows: all }, null, 2));
} finally {
  ctx.destroy();
}
