// `npm run bench`: how fast this engine is on the adapter in use, in one run. Names the adapter,
// the backend and the timing method, then measures (warm-up rounds, then medians of interleaved rounds):
//   1. the ceiling: a reference matmul (kernels/conv2d_ceiling_matmul*.wgsl) at 512, 1024 and the
//      PrimaryCaps GEMM shape (M = batch x 36, N = 256, K = 20,736, split-K 2048), plain and subgroups;
//   2. every layer of the model forward and backward at batch 32 and 128: time, GFLOP/s or GB/s,
//      share of the ceiling;
//   3. training-step and inference images per second of the whole paper model at batch 1, 32, 128;
//   4. pipeline compile time at start-up, then the same start-up with the pipelines warmed first
//      (GpuContext.collectKernels + warmPipelines, on a fresh device), and the pool's peak GPU memory;
//   5. where the adapter has timestamp queries, the top kernels of a training step.
// Layer and ceiling times are GPU time from timestamp queries where the adapter has them, else
// CPU-side wall-clock (record + submit + wait for queue completion); the whole-model figures are
// always wall-clock (that is what a user waits for).
//
//   npm run bench -- [--backend auto|default|vulkan|opengl] [--quick] [--json FILE] [--compare FILE]
//                    [--runs N] [--warmup N] [--layer-batch 32,128] [--train-batch 1,32,128] [--matmul 512,1024]
//   npm run bench -- --show FILE [--compare FILE]     (prints a saved report; no GPU)
//
// Not a test: nothing is asserted about speed. The machine may be shared: compare figures of one run.

import { parseArgs } from 'node:util';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { GpuContext } from '../src/gpu/context.ts';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { type Tensor, fromArray, parameter, tidy, zeros } from '../src/tensor.ts';
import { noGrad } from '../src/autograd/tape.ts';
import { capsPredict, capsuleLengths, maskCapsules, primaryCaps, routing } from '../src/ops/capsules.ts';
import { dense } from '../src/ops/dense.ts';
import { marginLoss, reconstructionLoss } from '../src/ops/losses.ts';
import { CapsNet, oneHotTargets } from '../src/model/capsnet.ts';
import { Adam } from '../src/optim/adam.ts';
import { type Case, type Row, type TimingMethod, OPERANDS_LABEL, convLayerCases, matmulCase, matmulOperands, measure, median, randomData } from './bench/lib.ts';
import { syntheticBatch, trainingSetup } from './bench/model.ts';
import { type BenchReport, type ProfileRow, type TrainingRow, ceilingOf, compareReports, formatComparison, formatReport, parseReport } from './bench/report.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    compare: { type: 'string' },
    runs: { type: 'string' },
    warmup: { type: 'string' },
    'layer-batch': { type: 'string' },
    'train-batch': { type: 'string' },
    matmul: { type: 'string' },
    show: { type: 'string' },
  },
});

function printComparison(report: BenchReport, file: string): void {
  const before = parseReport(readFileSync(file, 'utf8'), file);
  if (before.method !== report.method || before.adapter.name !== report.adapter.name) {
    console.log(`note: ${file} is from ${before.adapter.name} timed by '${before.method}', this run ${report.adapter.name} by '${report.method}': ` +
      'small kernels compare launch overheads, not kernels');
  }
  for (const line of formatComparison(compareReports(report, before), file)) console.log(line);
}

/** formatReport's lines, with the warmed start-up (reports from before it have none) after the cold one. */
function printReport(report: BenchReport): void {
  const warmUp = (report.startup as BenchReport['startup'] & { warmUp?: WarmStartup }).warmUp;
  for (const line of formatReport(report)) {
    console.log(line);
    if (warmUp && line.startsWith('start-up: ')) {
      console.log(
        `start-up with the pipelines warmed first (fresh device): ${(warmUp.collectMs + warmUp.warmMs + (warmUp.emptyDispatchMs ?? 0)).toFixed(0)} ms for ${warmUp.pipelines} pipelines ` +
          `(collect ${warmUp.collectMs.toFixed(0)}, warmPipelines ${warmUp.warmMs.toFixed(0)}, empty dispatches ${(warmUp.emptyDispatchMs ?? 0).toFixed(0)}), ` +
          `then first step ${warmUp.firstStepMs.toFixed(0)} ms, steady ${warmUp.steadyStepMs.toFixed(0)} ms. ${warmUp.note}.`,
      );
    }
  }
}

if (args.show) {
  // Prints a report written earlier (and its comparison with --compare), without touching the GPU.
  const report = parseReport(readFileSync(args.show, 'utf8'), args.show);
  printReport(report);
  if (args.compare) printComparison(report, args.compare);
  process.exit(0);
}

const quick = args.quick!;
const list = (s: string | undefined, fallback: number[]) => (s === undefined ? fallback : s.split(',').filter(Boolean).map(Number));
const runs = Number(args.runs ?? (quick ? 2 : 5));
const warmup = Number(args.warmup ?? 1);
const layerBatches = list(args['layer-batch'], quick ? [8] : [32, 128]);
const trainBatches = list(args['train-batch'], quick ? [1, 8] : [1, 32, 128]);
const matmulSizes = list(args.matmul, quick ? [512] : [512, 1024]);
for (const n of matmulSizes) if (n % 64 !== 0) throw new Error(`--matmul ${n}: sizes must be multiples of 64`);

// The paper's sizes (src/model/config.ts).
const [I, J, D, Din] = [1152, 10, 16, 8];
const PIXELS = 784;
const DECODER = [[160, 512], [512, 1024], [1024, 784]] as const;
const MACS = {
  conv1: 256 * 20 * 20 * 81, // per image: Cout OH OW Cin KH KW = 8.3 M
  primary: 256 * 6 * 6 * 256 * 81, // 191 M: the bulk of the model
  predict: I * J * D * Din, // 1.5 M
  decoder: DECODER.reduce((s, [a, b]) => s + a * b, 0), // 1.4 M
};
/**
 * Napkin training FLOPs per image: Conv1 forward + grad weight (no grad input: the images need
 * none), PrimaryCaps forward + grad input + grad weight, prediction and decoder forward + 2 grads;
 * routing, squash, losses and Adam are O(activations) and left out. ~1.2 GFLOP per image.
 */
const TRAIN_FLOPS_PER_IMAGE = 2 * (2 * MACS.conv1 + 3 * MACS.primary + 3 * MACS.predict + 3 * MACS.decoder);

const ctx = await acquireGpu({ backend: resolveBackend(args.backend) });
const method: TimingMethod = ctx.canProfile ? 'timestamp' : 'cpu';
const jsonFile = args.json ?? `runs/bench-${ctx.adapter.backend}.json`;
console.log(`adapter: ${ctx.adapter.name} - ${ctx.adapter.description} (backend ${ctx.adapter.backend}, ${ctx.adapter.featureLevel})`);
console.log(`timing: ${method === 'timestamp' ? 'timestamp queries (GPU time) for kernels and layers' : 'CPU-side wall-clock with queue completion (no timestamp queries)'}; whole-model figures wall-clock\n`);

const rand = (shape: readonly number[], seed: number, scale = 1) => randomData(shape.reduce((a, b) => a * b, 1), seed, scale);

// ---- 3 + 4: the whole model first, so that its first step compiles every pipeline ----------------

const labelsOf = (B: number) => syntheticBatch(B).labels;

async function wallMs(fn: () => void): Promise<number> {
  await ctx.sync();
  const t0 = performance.now();
  fn();
  await ctx.sync();
  return performance.now() - t0;
}

async function wholeModel(ctx: GpuContext): Promise<{ training: TrainingRow[]; startup: BenchReport['startup'] }> {
  const training: TrainingRow[] = [];
  let startup: BenchReport['startup'] | null = null;
  for (const B of trainBatches) {
    // A fresh model per batch (Adam's first steps are no slower than later ones); pipelines are
    // cached by the context, so only the first batch compiles them.
    const { model, step, batch: { images }, dispose } = trainingSetup(ctx, B);
    const infer = () => noGrad(() => tidy(() => void model.forward(fromArray(ctx, [B, 1, 28, 28], images))));
    const pipelines0 = ctx.counters.pipelinesCreated;
    const first = await wallMs(step);
    const pipelines = ctx.counters.pipelinesCreated - pipelines0;
    for (let k = 0; k < warmup; k++) await wallMs(step);
    const created0 = ctx.poolStats().created;
    const steps: number[] = [];
    for (let k = 0; k < runs; k++) steps.push(await wallMs(step));
    const steadyBuffersCreated = ctx.poolStats().created - created0;
    await wallMs(infer);
    const inferTimes: number[] = [];
    for (let k = 0; k < runs; k++) inferTimes.push(await wallMs(infer));
    const stepMs = median(steps);
    const inferMs = median(inferTimes);
    startup ??= {
      batch: B, firstStepMs: first, steadyStepMs: stepMs, compileMs: first - stepMs, pipelines,
      note: "Mesa's on-disk shader cache makes reruns warm: the first run after a kernel changes (or with MESA_SHADER_CACHE_DISABLE=true) shows the cold figure.",
    };
    training.push({
      batch: B, stepMs, trainImagesPerSecond: (1000 * B) / stepMs, inferMs, inferImagesPerSecond: (1000 * B) / inferMs,
      napkinTrainImagesPerSecond: 0, steadyBuffersCreated, peakBytes: ctx.poolStats().peakBytes,
    });
    dispose();
    console.log(`whole model, batch ${B}: step ${stepMs.toFixed(1)} ms, inference ${inferMs.toFixed(1)} ms${startup.batch === B ? ` (first step ${first.toFixed(0)} ms, ${pipelines} pipelines)` : ''}`);
  }
  return { training, startup: startup! };
}

// ---- 4b: start-up with the pipelines created and compiled first, as Trainer.warmUp does, on a
// fresh device (nothing created yet) -----------------------------------------------------------

interface WarmStartup {
  batch: number;
  /** Distinct kernels of a training step (collectKernels). */
  kernels: number;
  /** Pipelines created by warmPipelines, and the wall-clock of collecting and of creating them. */
  pipelines: number;
  collectMs: number;
  warmMs: number;
  /** The step recorded again with empty dispatches (collectKernels emptyDispatches) and waited for: where llvmpipe compiles. */
  emptyDispatchMs: number;
  /** The first training step after the warm-up, and the next one. */
  firstStepMs: number;
  steadyStepMs: number;
  pipelinesCreatedInFirstStep: number;
  note: string;
}

async function warmStartup(B: number): Promise<WarmStartup> {
  const fresh = await acquireGpu({ backend: resolveBackend(args.backend) });
  try {
    const { step, dispose } = trainingSetup(fresh, B);
    // (Collecting runs the step's host side for real: its Adam counts one more update, which
    // changes no timing.)
    let t0 = performance.now();
    const kernels = fresh.collectKernels(step);
    const collectMs = performance.now() - t0;
    t0 = performance.now();
    const pipelines = await fresh.warmPipelines(kernels);
    const warmMs = performance.now() - t0;
    t0 = performance.now();
    fresh.collectKernels(step, { emptyDispatches: true });
    await fresh.sync();
    const emptyDispatchMs = performance.now() - t0;
    const created0 = fresh.counters.pipelinesCreated;
    const timeStep = async () => {
      await fresh.sync();
      const start = performance.now();
      step();
      await fresh.sync();
      return performance.now() - start;
    };
    const firstStepMs = await timeStep();
    const pipelinesCreatedInFirstStep = fresh.counters.pipelinesCreated - created0;
    const steadyStepMs = await timeStep();
    dispose();
    return {
      batch: B, kernels: kernels.length, pipelines, collectMs, warmMs, emptyDispatchMs, firstStepMs, steadyStepMs, pipelinesCreatedInFirstStep,
      note: 'As Trainer.warmUp does it. llvmpipe (GL and Vulkan) does not compile at pipeline creation but at a kernel\'s first dispatch: there the empty dispatches take the ' +
        'compile time (one kernel after the other) and the first step runs at steady speed; drivers that compile at creation do it in warmPipelines (concurrently where the implementation creates pipelines asynchronously; not measured here)',
    };
  } finally {
    fresh.destroy();
  }
}

// ---- 5: top kernels of a training step -----------------------------------------------------------

async function profileStep(ctx: GpuContext, B: number): Promise<BenchReport['profile']> {
  if (!ctx.canProfile) return null;
  const { step, dispose } = trainingSetup(ctx, B);
  step();
  await ctx.sync();
  const steps = quick ? 1 : 2;
  ctx.beginProfile();
  for (let k = 0; k < steps; k++) step();
  const profile = await ctx.endProfile();
  dispose();
  const rows = [...profile].map(([name, p]) => ({ name, ms: p.ms / steps, count: p.count / steps })).sort((a, b) => b.ms - a.ms);
  const totalMs = rows.reduce((s, r) => s + r.ms, 0);
  const caps = rows.filter((r) => /^(predict|routing)[/:]/.test(r.name)).reduce((s, r) => s + r.ms, 0);
  const kernels: ProfileRow[] = rows.slice(0, 15).map((r) => ({ ...r, share: r.ms / totalMs }));
  return { batch: B, totalMs, capsuleShare: caps / totalMs, kernels };
}

// ---- 1 + 2: the ceiling and the layers -----------------------------------------------------------

/**
 * A forward case and a backward case of one op. `inputs` are the op's leaves (those that should
 * get a gradient have requiresGrad); the backward case calls the op's own backward closure (the
 * tape's) on a fixed output gradient, from one forward recorded beforehand.
 */
function opCases(
  name: string, B: number, inputs: Tensor[], fn: () => Tensor,
  napkin: { fwdFlops: number; fwdBytes: number; bwdFlops: number; bwdBytes: number }, note = '',
): Case[] {
  const out = fn();
  const g = fromArray(ctx, out.shape, rand(out.shape, 21, 0.1));
  return [
    { what: `${name} forward`, batch: B, flops: napkin.fwdFlops, bytes: napkin.fwdBytes, note, run: () => noGrad(() => tidy(() => void fn())), dispose: () => {} },
    {
      what: `${name} backward`, batch: B, flops: napkin.bwdFlops, bytes: napkin.bwdBytes, note,
      run: () => tidy(() => {
        out.creator!.backward(g);
        for (const t of inputs) {
          t.grad?.dispose();
          t.grad = null;
        }
      }),
      dispose: () => [out, g, ...inputs].forEach((t) => t.dispose()),
    },
  ];
}

const leaf = (shape: number[], seed: number, scale: number, name: string) => parameter(ctx, shape, rand(shape, seed, scale), name);
const constant = (shape: number[], data: ArrayLike<number>) => fromArray(ctx, shape, data);

/** The cases of every layer at batch B, in the order of a training step. */
function layerCases(B: number): Case[] {
  const f = 4; // bytes per f32
  const cases: Case[] = [];
  // Conv1 (forward + grad weight; the images need no gradient) and PrimaryCaps (forward + both grads):
  // 2 B Cout OH OW Cin KH KW flops per pass; bytes = the three operands once.
  cases.push(...convLayerCases(ctx, 'conv1', B, undefined).filter((c) => !c.what.endsWith('grad input')));
  cases.push(...convLayerCases(ctx, 'primary', B, undefined));
  {
    // PrimaryCaps regroup + squash: [B, 256, 6, 6] -> [B, 1152, 8]; pure data movement: read + write
    // B 9216 floats forward, read 2 (g and the input) + write 1 backward. ~10 flops per element.
    const n = B * 256 * 36;
    const conv = leaf([B, 256, 6, 6], 31, 0.3, 'primary conv');
    cases.push(...opCases('PrimaryCaps regroup+squash', B, [conv], () => primaryCaps(conv, { types: 32, dim: 8 }),
      { fwdFlops: 0, fwdBytes: 2 * n * f, bwdFlops: 0, bwdBytes: 3 * n * f }));
  }
  {
    // Prediction u_hat[b,i,j,:] = W[i,j] u[b,i]: 2 B I J D Din flops (1.5 M MACs per image); bytes:
    // W (5.9 MB) + u + u_hat (B x 737 KB) forward; backward dW and du: twice the flops, reads u_hat's
    // gradient, u and W, writes dW and du.
    const W = leaf([I, J, D, Din], 32, 0.05, 'digit.W');
    const u = leaf([B, I, Din], 33, 0.3, 'u');
    const flops = 2 * B * MACS.predict;
    const wBytes = I * J * D * Din * f;
    const uBytes = B * I * Din * f;
    const uhatBytes = B * I * J * D * f;
    cases.push(...opCases('caps predict', B, [W, u], () => capsPredict(W, u),
      { fwdFlops: flops, fwdBytes: wBytes + uBytes + uhatBytes, bwdFlops: 2 * flops, bwdBytes: uhatBytes + 2 * (wBytes + uBytes) }));
  }
  {
    // Routing, r = 3: per iteration s_j = sum_i c_ij u_hat_ij (2 B I J D) and the agreement
    // u_hat_ij . v_j (2 B I J D), so ~4 r B I J D flops; the least traffic is u_hat once (B x 737 KB).
    // Backward ('all' gradients): about twice the flops, reads u_hat, writes its gradient.
    const uhat = leaf([B, I, J, D], 34, 0.05, 'u_hat');
    const flops = 4 * 3 * B * I * J * D;
    const bytes = B * I * J * D * f;
    cases.push(...opCases('routing (r = 3)', B, [uhat], () => routing(uhat, { iterations: 3, gradMode: 'all' }),
      { fwdFlops: flops, fwdBytes: bytes, bwdFlops: 2 * flops, bwdBytes: 2 * bytes }));
  }
  {
    // Lengths |v_j| of [B, 10, 16] and the decoder's mask: tiny (B x 640 B), launch-bound.
    const v = leaf([B, J, D], 35, 0.3, 'v');
    const v2 = leaf([B, J, D], 36, 0.3, 'v (mask)');
    const labels = constant([B], Float32Array.from(labelsOf(B)));
    cases.push(...opCases('capsule lengths', B, [v], () => capsuleLengths(v), { fwdFlops: 0, fwdBytes: B * (J * D + J) * f, bwdFlops: 0, bwdBytes: B * (2 * J * D + J) * f }));
    cases.push(...opCases('mask capsules', B, [v2], () => maskCapsules(v2, labels), { fwdFlops: 0, fwdBytes: 2 * B * J * D * f, bwdFlops: 0, bwdBytes: 2 * B * J * D * f }));
  }
  {
    // Decoder 160 -> 512 -> 1024 -> 784: 2 B x 1.41 M flops forward, twice that backward (dx, dW);
    // bytes: the weights (5.6 MB) dominate at small batches.
    const h = leaf([B, 160], 37, 0.3, 'masked v');
    const ws = DECODER.map(([a, b], k) => [leaf([b, a], 40 + k, 1 / Math.sqrt(a), `fc${k}.w`), leaf([b], 50 + k, 0.1, `fc${k}.b`)]);
    const acts = ['relu', 'relu', 'sigmoid'] as const;
    const flops = 2 * B * MACS.decoder;
    const wBytes = MACS.decoder * f;
    const actBytes = B * (160 + 512 + 1024 + 784) * f;
    cases.push(...opCases('decoder (3 dense)', B, [h, ...ws.flat()], () => ws.reduce<Tensor>((x, [w, b], k) => dense(x, w, b, acts[k]), h),
      { fwdFlops: flops, fwdBytes: wBytes + actBytes, bwdFlops: 2 * flops, bwdBytes: 2 * wBytes + 2 * actBytes }));
  }
  {
    // Losses: margin on [B, 10] lengths, reconstruction (sum of squared errors) on [B, 784]: reads only.
    const lengths = leaf([B, J], 38, 0.5, 'lengths');
    const targets = oneHotTargets(ctx, labelsOf(B), J);
    const recon = leaf([B, PIXELS], 39, 0.5, 'recon');
    const images = constant([B, PIXELS], rand([B, PIXELS], 40, 0.5));
    cases.push(...opCases('margin loss', B, [lengths, targets], () => marginLoss(lengths, targets), { fwdFlops: 0, fwdBytes: 2 * B * J * f, bwdFlops: 0, bwdBytes: 3 * B * J * f }));
    cases.push(...opCases('reconstruction loss', B, [recon, images], () => reconstructionLoss(recon, images), { fwdFlops: 0, fwdBytes: 2 * B * PIXELS * f, bwdFlops: 0, bwdBytes: 3 * B * PIXELS * f }));
  }
  return cases;
}

/**
 * Adam over every parameter of the paper model (8.2 M): reads p, g, m, v and writes p, m, v:
 * 7 x 4 bytes per parameter, ~230 MB per step, independent of the batch; ~12 flops per parameter.
 */
function adamCase(): Case {
  const model = CapsNet.create(ctx, {}, 1);
  const params = model.parameterList();
  for (const p of params) p.grad = zeros(ctx, p.shape);
  const n = params.reduce((s, p) => s + p.size, 0);
  const adam = new Adam(ctx, { lr: 0 });
  return {
    what: `Adam (${(n / 1e6).toFixed(2)} M parameters)`, batch: null, flops: 12 * n, bytes: 7 * 4 * n, note: `${params.length} tensors`,
    run: () => adam.step(params),
    dispose: () => {
      for (const p of params) p.grad?.dispose();
      model.dispose();
      adam.dispose();
    },
  };
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

async function ceilingAndLayers(ctx: GpuContext): Promise<{ ceilingRows: Row[]; layers: Row[] }> {
  const ceilingRows: Row[] = [];
  const layers: Row[] = [];
  for (const [k, B] of layerBatches.entries()) {
    // The ceiling cases, interleaved with the layers of the same batch: square matmuls (first batch
    // only; 2 n^3 flops) and PrimaryCaps' forward GEMM shape (M = B x 36 rounded up to the kernel's
    // 64 rows, N = 256, K = 20,736, split-K 2048 as the conv does), with each operand kind the
    // device has (buffers; subgroups; read-only storage textures).
    // Buffer operands: A of B x 36 rows x 20,736 must fit one storage binding (128 MiB here: 1,600
    // rows, batch 44); past that the ceiling GEMM keeps one binding's worth of rows, as the conv
    // splits its batch. Texture operands: A is 5,184 texels wide and M high (up to maxTextureDimension2D).
    const ceiling: Case[] = [];
    const maxRows = Math.floor(ctx.limits.maxStorageBufferBindingSize / (4 * 20736) / 64) * 64;
    for (const operands of matmulOperands(ctx)) {
      const limit = operands === 'texture' ? Math.floor(ctx.maxTextureSize / 64) * 64 : maxRows;
      const M = Math.min(roundUp(B * 36, 64), limit);
      const label = OPERANDS_LABEL[operands];
      if (k === 0) for (const n of matmulSizes) ceiling.push(matmulCase(ctx, n, n, n, 0, operands));
      ceiling.push(matmulCase(ctx, M, 256, 20736, 2048, operands, `matmul PrimaryCaps GEMM ${M}x256x20736${label}`));
    }
    for (const c of ceiling) c.batch = c.what.includes('PrimaryCaps') ? B : null;
    const cases = [...ceiling, ...layerCases(B)];
    if (k === 0) cases.push(adamCase());
    const rows = await measure(ctx, cases, { runs, warmup, method });
    cases.forEach((c) => c.dispose());
    ceilingRows.push(...rows.filter((r) => r.note === 'ceiling'));
    layers.push(...rows.filter((r) => r.note !== 'ceiling'));
    console.log(`layers at batch ${B} measured`);
  }
  return { ceilingRows, layers };
}

// ---- the run ------------------------------------------------------------------------------------

try {
  const { training, startup: coldStartup } = await wholeModel(ctx);
  const warmUp = await warmStartup(coldStartup.batch);
  console.log(
    `start-up with warm-up (fresh device), batch ${warmUp.batch}: collect ${warmUp.kernels} kernels ${warmUp.collectMs.toFixed(0)} ms, ` +
      `warmPipelines ${warmUp.pipelines} pipelines ${warmUp.warmMs.toFixed(0)} ms, empty dispatches ${warmUp.emptyDispatchMs.toFixed(0)} ms, then first step ${warmUp.firstStepMs.toFixed(0)} ms ` +
      `(${warmUp.pipelinesCreatedInFirstStep} pipelines created in it), steady ${warmUp.steadyStepMs.toFixed(0)} ms`,
  );
  // The warmed figures ride along in the report's start-up record (printReport prints them after formatReport's cold line).
  const startup: BenchReport['startup'] & { warmUp: WarmStartup } = { ...coldStartup, warmUp };
  const peakBytes = ctx.poolStats().peakBytes;
  const profile = await profileStep(ctx, quick ? Math.max(...trainBatches) : 32);
  const { ceilingRows, layers } = await ceilingAndLayers(ctx);
  const ceiling = ceilingOf(ceilingRows);
  for (const t of training) t.napkinTrainImagesPerSecond = (ceiling.gflops * 1e9) / TRAIN_FLOPS_PER_IMAGE;
  const report: BenchReport = {
    version: 1,
    date: new Date().toISOString(),
    adapter: { name: ctx.adapter.name, description: ctx.adapter.description, backend: ctx.adapter.backend, featureLevel: ctx.adapter.featureLevel },
    method, quick, runs, warmup,
    ceiling: { ...ceiling, rows: ceilingRows },
    layers, training, startup, memory: { peakBytes }, profile,
  };
  console.log('');
  printReport(report);
  mkdirSync(dirname(jsonFile), { recursive: true });
  writeFileSync(jsonFile, JSON.stringify(report, null, 2));
  console.log(`\nwrote ${jsonFile}`);
  if (args.compare) {
    console.log('');
    printComparison(report, args.compare);
  }
} finally {
  ctx.destroy();
}
