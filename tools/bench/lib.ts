// Shared pieces of the timing scripts (tools/bench.ts, tools/bench-conv.ts, tools/bench-capsules.ts,
// tools/bench-dense.ts): seeded data, the worker-CPU clock, the Case/measure harness with
// interleaved rounds and medians, the reference (ceiling) matmul and the convolution layer cases.
// Nothing here asserts anything about speed.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import ceilingWgsl from '../../kernels/conv2d_ceiling_matmul.wgsl';
import ceilingSgWgsl from '../../kernels/conv2d_ceiling_matmul_sg.wgsl';
import ceilingTexWgsl from '../../kernels/conv2d_ceiling_matmul_tex.wgsl';
import type { Binding, GpuContext, KernelSpec } from '../../src/gpu/context.ts';
import { type Tensor, empty, fromArray } from '../../src/tensor.ts';
import {
  type Conv2dGeometry, type Conv2dOptions, type Conv2dPlan, type Conv2dVariant, conv2dForwardInto, conv2dGeometry, conv2dGradInputInto,
  conv2dGradWeightInto, conv2dPlan, deviceInfo,
} from '../../src/ops/conv2d.ts';

/** Seeded uniform values in [-scale, scale) (an LCG: fast enough for 100 MB of operands). */
export function randomData(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** The median (the mean of the two middle values for an even count). */
export function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** CPU milliseconds used so far by this process's threads other than the main one (null off Linux). */
export function workerCpuMs(): number | null {
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

/** How a case's `ms` was measured. */
export type TimingMethod = 'timestamp' | 'cpu';

export interface Row {
  what: string;
  batch: number | null;
  /** Median time of one run: GPU time from timestamp queries ('timestamp'), else wall-clock record + submit + wait. */
  ms: number;
  /** Median wall-clock time of one run (record + submit + wait), whatever the method. */
  wallMs: number;
  flops: number;
  bytes: number;
  gflops: number;
  gbps: number;
  /** GFLOP per CPU-second of llvmpipe's worker threads (null off Linux). */
  cpuGflops: number | null;
  note: string;
}

/**
 * One thing to time: `run` records its dispatches; `check` (optional) validates the result
 * afterwards. `flops` (2 per multiply-add) and `bytes` (the minimum memory traffic) are the
 * napkin figures the rates are computed from; either may be 0.
 */
export interface Case {
  what: string;
  batch: number | null;
  flops: number;
  bytes?: number;
  note: string;
  run: () => void;
  check?: () => Promise<void>;
  dispose: () => void;
}

export interface MeasureOptions {
  runs: number;
  warmup: number;
  /** 'timestamp': GPU time of the case's dispatches from timestamp queries (needs ctx.canProfile). Default 'cpu'. */
  method?: TimingMethod;
}

/** The figures of a row from its medians (a pure function). */
export function makeRow(c: Pick<Case, 'what' | 'batch' | 'flops' | 'bytes' | 'note'>, ms: number, wallMs: number, cpuMs: number | null): Row {
  const bytes = c.bytes ?? 0;
  return {
    what: c.what, batch: c.batch, ms, wallMs, flops: c.flops, bytes,
    gflops: c.flops / ms / 1e6, gbps: bytes / ms / 1e6, cpuGflops: cpuMs ? c.flops / cpuMs / 1e6 : null, note: c.note,
  };
}

/**
 * Times the cases in interleaved rounds (every case once per round, `warmup` rounds first, then
 * `runs` rounds): drifts in the machine's load hit every case alike, so ratios stay meaningful.
 * Each figure is the median over the measured rounds of one case recorded, submitted and waited for.
 */
export async function measure(ctx: GpuContext, cases: Case[], options: MeasureOptions): Promise<Row[]> {
  const { runs, warmup, method = 'cpu' } = options;
  const gpu = cases.map(() => [] as number[]);
  const wall = cases.map(() => [] as number[]);
  const cpu = cases.map(() => [] as number[]);
  for (let round = 0; round < warmup + runs; round++) {
    for (const [k, c] of cases.entries()) {
      await ctx.sync();
      const cpu0 = workerCpuMs();
      const t0 = performance.now();
      let gpuMs = 0;
      if (method === 'timestamp') {
        ctx.beginProfile();
        c.run();
        const profile = await ctx.endProfile();
        for (const p of profile.values()) gpuMs += p.ms;
      } else {
        c.run();
        await ctx.sync();
      }
      const ms = performance.now() - t0;
      const cpu1 = workerCpuMs();
      if (round >= warmup) {
        wall[k].push(ms);
        gpu[k].push(gpuMs);
        if (cpu0 !== null && cpu1 !== null) cpu[k].push(cpu1 - cpu0);
      }
    }
  }
  const rows: Row[] = [];
  for (const [k, c] of cases.entries()) {
    await c.check?.();
    const wallMs = median(wall[k]);
    rows.push(makeRow(c, method === 'timestamp' ? median(gpu[k]) : wallMs, wallMs, cpu[k].length ? median(cpu[k]) : null));
  }
  return rows;
}

/** Which operands and kernel the ceiling matmul uses: storage buffers, buffers + subgroupBroadcast, or read-only storage textures. */
export type MatmulOperands = 'buffer' | 'subgroups' | 'texture';

const CEILING_KERNELS: Record<MatmulOperands, KernelSpec> = {
  buffer: { name: 'conv2d_ceiling_matmul', code: ceilingWgsl, constants: { WG: 8, ROWS: 8 } },
  subgroups: { name: 'conv2d_ceiling_matmul_sg', code: ceilingSgWgsl, constants: { WG: 8, ROWS: 8 } },
  texture: { name: 'conv2d_ceiling_matmul_tex', code: ceilingTexWgsl, constants: { WG: 8, ROWS: 8 } },
};

/** How a matmul case names its operand kind (buffers are the plain case). */
export const OPERANDS_LABEL: Record<MatmulOperands, string> = { buffer: '', subgroups: ' subgroups', texture: ' textures' };

/**
 * C = A B with the ceiling kernel of `operands`, split-K in chunks of `chunk` (0: none); checks a
 * few elements after timing. M must be a multiple of 64, N of 16, K of 4. Texture operands are
 * uploaded in the layout of kernels/conv2d_ceiling_matmul_tex.wgsl (not timed).
 * Napkin: 2 M N K flops; bytes = A + B + C once (4 (M K + K N + M N)), the least any matmul moves.
 */
export function matmulCase(ctx: GpuContext, M: number, N: number, K: number, chunk: number, operands: MatmulOperands = 'buffer', what?: string): Case {
  const kernel = CEILING_KERNELS[operands];
  const A = randomData(M * K, 1);
  const B = randomData(K * N, 2);
  const c = empty(ctx, [M * N]);
  let a: Binding;
  let b: Binding;
  let free: () => void;
  if (operands === 'texture') {
    const [ta, tb] = [ctx.acquireTexture(K / 4, M, 'ceiling A'), ctx.acquireTexture(N, K / 4, 'ceiling B')];
    ctx.writeTexture(ta, A);
    // texel (4 n4 + i, k4) = B[4 k4 + i, 4 n4 .. 4 n4 + 3]
    const Bt = new Float32Array(K * N);
    for (let k4 = 0; k4 < K / 4; k4++) {
      for (let n4 = 0; n4 < N / 4; n4++) {
        for (let i = 0; i < 4; i++) Bt.set(B.subarray((4 * k4 + i) * N + 4 * n4, (4 * k4 + i) * N + 4 * n4 + 4), (k4 * N + 4 * n4 + i) * 4);
      }
    }
    ctx.writeTexture(tb, Bt);
    [a, b] = [ta, tb];
    free = () => [ta, tb].forEach((t) => ctx.releaseTexture(t));
  } else {
    const [ba, bb] = [fromArray(ctx, [M * K], A), fromArray(ctx, [K * N], B)];
    [a, b] = [ba.buffer, bb.buffer];
    free = () => [ba, bb].forEach((t) => t.dispose());
  }
  const step = chunk || K;
  const label = OPERANDS_LABEL[operands];
  return {
    what: what ?? `matmul ${M}x${N}x${K}${chunk ? ` (split-K ${chunk})` : ''}${label}`,
    batch: null,
    flops: 2 * M * N * K,
    bytes: 4 * (M * K + K * N + M * N),
    note: 'ceiling',
    run: () => {
      for (let k0 = 0; k0 < K; k0 += step) {
        ctx.dispatch(kernel, [a, b, c.buffer], [M, N / 4, K / 4, k0, Math.min(K, k0 + step), k0 > 0 ? 1 : 0], [N / 16, M / 64]);
      }
    },
    check: async () => {
      const C = await c.read();
      for (const [i, j] of [[0, 0], [M - 1, N - 1], [Math.floor(M / 3), Math.floor(N / 2)]]) {
        let ref = 0;
        for (let k = 0; k < K; k++) ref += A[i * K + k] * B[k * N + j];
        if (Math.abs(C[i * N + j] - ref) > 1e-3 * Math.sqrt(K)) throw new Error(`ceiling matmul (${operands}) wrong at [${i}, ${j}]: ${C[i * N + j]} vs ${ref}`);
      }
    },
    dispose: () => {
      free();
      c.dispose();
    },
  };
}

export interface ConvLayer { name: string; x: (B: number) => number[]; w: number[]; options: Conv2dOptions }

/** The paper's two convolutions. */
export const CONV_LAYERS: Record<string, ConvLayer> = {
  primary: { name: 'PrimaryCaps', x: (B) => [B, 256, 20, 20], w: [256, 256, 9, 9], options: { stride: 2 } },
  conv1: { name: 'Conv1', x: (B) => [B, 1, 28, 28], w: [256, 1, 9, 9], options: { stride: 1, relu: true } },
};

/**
 * The forward, grad-input and grad-weight passes of one of CONV_LAYERS at batch B, through the
 * conv2d op's own plan and kernels. Napkin per pass: 2 B Cout OH OW Cin KH KW flops (the
 * convolution itself, not the padding of packed operands); bytes = its three operands once.
 */
export function convLayerCases(ctx: GpuContext, key: string, B: number, variant?: Conv2dVariant, prefix = '', override?: Partial<Conv2dPlan>): Case[] {
  const layer = CONV_LAYERS[key];
  const xShape = layer.x(B);
  const g: Conv2dGeometry = conv2dGeometry(xShape, layer.w, [layer.w[0]], layer.options);
  const plan = conv2dPlan(ctx, g, { ...layer.options, variant, plan: override });
  const K = g.Cin * g.KH * g.KW;
  const flops = 2 * g.B * g.Cout * g.OH * g.OW * K;
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const outShape = [g.B, g.Cout, g.OH, g.OW];
  const bytes = 4 * (size(xShape) + size(layer.w) + size(outShape));
  const x = fromArray(ctx, xShape, randomData(size(xShape), 3));
  const w = fromArray(ctx, layer.w, randomData(size(layer.w), 4, Math.sqrt(3 / K)));
  const bias = fromArray(ctx, [g.Cout], randomData(g.Cout, 5, 0.1));
  const dOut = fromArray(ctx, outShape, randomData(size(outShape), 6));
  const out = empty(ctx, outShape);
  const dx = empty(ctx, xShape);
  const dw = empty(ctx, layer.w);
  const mask = g.relu ? out : dOut;
  const describe = (v: Conv2dVariant) => (v === 'gemm' ? `gemm${plan.subgroups ? ' subgroups' : ''}${plan.operands === 'texture' ? ' textures' : ''} ${plan.pack}` : 'direct');
  const tensors: Tensor[] = [x, w, bias, dOut, out, dx, dw];
  const make = (pass: string, v: Conv2dVariant, run: () => void, note = ''): Case => ({
    what: `${prefix}${layer.name} ${pass}`, batch: B, flops, bytes, note: [describe(v), note].filter(Boolean).join(', '), run, dispose: () => {},
  });
  return [
    make('forward', plan.forward, () => conv2dForwardInto(g, plan, x, w, bias, out)),
    make('grad input', plan.gradInput, () => conv2dGradInputInto(g, plan, dOut, mask, w, dx), key === 'conv1' ? 'not needed in CapsNet' : ''),
    { ...make('grad weight', plan.gradWeight, () => conv2dGradWeightInto(g, plan, x, dOut, mask, dw)), dispose: () => tensors.forEach((t) => t.dispose()) },
  ];
}

const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);
const pct = (v: number | null, c: number) => (v === null || !c ? '-' : `${((100 * v) / c).toFixed(0)}%`);

/** The best wall-clock and per-worker-CPU-second GFLOP/s among the rows noted 'ceiling'. */
export function ceilingOf(rows: readonly Row[]): { gflops: number; cpuGflops: number } {
  const c = rows.filter((r) => r.note === 'ceiling');
  return { gflops: Math.max(0, ...c.map((r) => r.gflops)), cpuGflops: Math.max(0, ...c.map((r) => r.cpuGflops ?? 0)) };
}

/** The rows as a table (lines of text), shares taken against `ceiling` (default: the rows' own best matmul). */
export function formatRows(rows: readonly Row[], ceiling = ceilingOf(rows)): string[] {
  const lines = [`${pad('what', 40)}${lpad('batch', 6)}${lpad('ms', 9)}${lpad('GFLOP/s', 9)}${lpad('GB/s', 8)}${lpad('% ceil', 8)}${lpad('per CPU-s', 11)}${lpad('% ceil', 8)}  notes`];
  for (const r of rows) {
    lines.push(
      `${pad(r.what, 40)}${lpad(r.batch === null ? '' : String(r.batch), 6)}${lpad(r.ms.toFixed(2), 9)}${lpad(r.flops ? r.gflops.toFixed(1) : '-', 9)}` +
        `${lpad(r.bytes ? r.gbps.toFixed(1) : '-', 8)}${lpad(r.flops ? pct(r.gflops, ceiling.gflops) : '-', 8)}` +
        `${lpad(r.cpuGflops === null || !r.flops ? '-' : r.cpuGflops.toFixed(1), 11)}${lpad(r.flops ? pct(r.cpuGflops, ceiling.cpuGflops) : '-', 8)}  ${r.note}`,
    );
  }
  return lines;
}

export function printTable(rows: Row[]): void {
  const ceiling = ceilingOf(rows);
  for (const line of formatRows(rows, ceiling)) console.log(line);
  console.log(`ceiling = the best matmul of this table: ${ceiling.gflops.toFixed(1)} GFLOP/s wall-clock, ${ceiling.cpuGflops.toFixed(1)} GFLOP per worker CPU-second\n`);
}

/** The ceiling matmul variants this device can run: buffers, subgroups (subgroups of exactly 8), textures (read-only storage textures). */
export function matmulOperands(ctx: GpuContext): MatmulOperands[] {
  const out: MatmulOperands[] = ['buffer'];
  if (deviceInfo(ctx).subgroups8) out.push('subgroups');
  if (ctx.hasReadOnlyStorageTextures) out.push('texture');
  return out;
}
