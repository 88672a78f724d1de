// The report of `npm run bench` (tools/bench.ts): its JSON shape, the printed tables, the flat
// list of named metrics and the comparison with an earlier report. Pure functions (tested in
// test/bench.test.ts on made-up numbers).

import { type Row, ceilingOf, formatRows } from './lib.ts';

export interface TrainingRow {
  batch: number;
  /** Median wall-clock time of one training step (forward, backward, Adam; record + submit + wait). */
  stepMs: number;
  trainImagesPerSecond: number;
  /** Median wall-clock time of one inference pass (forward to the capsule lengths). */
  inferMs: number;
  inferImagesPerSecond: number;
  /** Training images per second that the conv, capsule and dense FLOPs alone allow at the ceiling's GFLOP/s. */
  napkinTrainImagesPerSecond: number;
  /** Buffers the pool created during the measured steady steps (0 = no allocation in the steady state). */
  steadyBuffersCreated: number;
  /** The pool's peak bytes once this batch has run (cumulative: the largest batch sets it). */
  peakBytes: number;
}

export interface ProfileRow { name: string; ms: number; count: number; share: number }

export interface BenchReport {
  version: 1;
  date: string;
  adapter: { name: string; description: string; backend: string; featureLevel: string };
  /** 'timestamp': layer and ceiling times are GPU time from timestamp queries; 'cpu': wall-clock record + submit + wait. */
  method: 'timestamp' | 'cpu';
  quick: boolean;
  runs: number;
  warmup: number;
  ceiling: { gflops: number; cpuGflops: number; rows: Row[] };
  layers: Row[];
  training: TrainingRow[];
  startup: { batch: number; firstStepMs: number; steadyStepMs: number; compileMs: number; pipelines: number; note: string };
  memory: { peakBytes: number };
  /** Top kernels of a training step by GPU time (adapters with timestamp queries only). */
  profile: { batch: number; totalMs: number; capsuleShare: number; kernels: ProfileRow[] } | null;
}

const MB = 1024 * 1024;

/** The whole report as lines of text. */
export function formatReport(r: BenchReport): string[] {
  const out: string[] = [];
  const how = r.method === 'timestamp'
    ? 'GPU time from timestamp queries (sum over each case\'s dispatches, one compute pass each)'
    : 'CPU-side wall-clock time of record + submit + wait for queue completion (no timestamp queries on this adapter)';
  out.push(`adapter: ${r.adapter.name} - ${r.adapter.description} (backend ${r.adapter.backend}, ${r.adapter.featureLevel})`);
  out.push(`timing: ${how}; median of ${r.runs} interleaved rounds after ${r.warmup} warm-up rounds${r.quick ? ' (--quick)' : ''}`);
  out.push('', '== ceiling: reference matmul ==');
  out.push(...formatRows(r.ceiling.rows, r.ceiling));
  out.push(`ceiling = ${r.ceiling.gflops.toFixed(1)} GFLOP/s (${r.ceiling.cpuGflops.toFixed(1)} GFLOP per worker CPU-second)`);
  out.push('', '== layers, forward and backward ==');
  out.push(...formatRows(r.layers, r.ceiling));
  out.push('', '== whole model (paper CapsNet + Adam), wall-clock ==');
  out.push(`${'batch'.padStart(6)}${'step ms'.padStart(10)}${'train img/s'.padStart(13)}${'napkin img/s'.padStart(14)}${'% napkin'.padStart(10)}${'infer ms'.padStart(10)}${'infer img/s'.padStart(13)}${'new bufs'.padStart(10)}${'peak MiB'.padStart(10)}`);
  for (const t of r.training) {
    out.push(
      `${String(t.batch).padStart(6)}${t.stepMs.toFixed(1).padStart(10)}${t.trainImagesPerSecond.toFixed(2).padStart(13)}${t.napkinTrainImagesPerSecond.toFixed(2).padStart(14)}` +
        `${`${((100 * t.trainImagesPerSecond) / t.napkinTrainImagesPerSecond).toFixed(0)}%`.padStart(10)}${t.inferMs.toFixed(1).padStart(10)}${t.inferImagesPerSecond.toFixed(2).padStart(13)}` +
        `${String(t.steadyBuffersCreated).padStart(10)}${(t.peakBytes / MB).toFixed(0).padStart(10)}`,
    );
  }
  out.push('napkin img/s = ceiling GFLOP/s / (training GFLOP per image: conv1 fwd + grad weight, PrimaryCaps fwd + 2 grads, predict and decoder fwd + 2 grads)');
  const s = r.startup;
  out.push('', `start-up: first training step at batch ${s.batch} ${s.firstStepMs.toFixed(0)} ms, steady ${s.steadyStepMs.toFixed(0)} ms: ` +
    `~${s.compileMs.toFixed(0)} ms of pipeline compilation (${s.pipelines} pipelines). ${s.note}`);
  out.push(`peak GPU memory held by the pool: ${(r.memory.peakBytes / MB).toFixed(1)} MiB`);
  out.push('', "== issue 7's targets ==", ...targetLines(r));
  if (r.profile) {
    const p = r.profile;
    out.push('', `== top kernels of a training step at batch ${p.batch} (timestamp queries; ${p.totalMs.toFixed(1)} ms of kernels; predict + routing ${(100 * p.capsuleShare).toFixed(1)}%) ==`);
    for (const k of p.kernels) out.push(`${k.ms.toFixed(2).padStart(10)} ms ${`${(100 * k.share).toFixed(1)}%`.padStart(6)}  x${k.count}  ${k.name}`);
  } else {
    out.push('', 'no kernel profile: this adapter has no timestamp queries');
  }
  return out;
}

/**
 * Issue 7's targets checked on a report: PrimaryCaps' three passes at >= 70% of the ceiling,
 * prediction + routing (forward and backward) under 15% of the training step, training at the
 * largest batch >= 60% of the napkin rate, no buffer created in the steady state.
 */
export function targetLines(r: BenchReport): string[] {
  const out: string[] = [];
  const mark = (ok: boolean) => (ok ? 'ok    ' : 'MISSED');
  for (const row of r.layers.filter((l) => /^PrimaryCaps (forward|grad input|grad weight)$/.test(l.what))) {
    const share = row.gflops / r.ceiling.gflops;
    out.push(`${mark(share >= 0.7)} ${row.what} @${row.batch}: ${(100 * share).toFixed(0)}% of the ceiling (target >= 70%)`);
  }
  for (const t of r.training) {
    const caps = r.layers.filter((l) => l.batch === t.batch && /^(caps predict|routing)/.test(l.what));
    if (caps.length === 0) continue;
    const share = caps.reduce((s, l) => s + l.ms, 0) / t.stepMs;
    out.push(`${mark(share < 0.15)} predict + routing @${t.batch}: ${(100 * share).toFixed(1)}% of the training step (layer times / step wall time; target < 15%)`);
  }
  if (r.profile) out.push(`${mark(r.profile.capsuleShare < 0.15)} predict + routing in the kernel profile @${r.profile.batch}: ${(100 * r.profile.capsuleShare).toFixed(1)}% (target < 15%)`);
  const largest = r.training.reduce<TrainingRow | null>((a, t) => (a && a.batch >= t.batch ? a : t), null);
  if (largest) {
    const share = largest.trainImagesPerSecond / largest.napkinTrainImagesPerSecond;
    out.push(`${mark(share >= 0.6)} training @${largest.batch}: ${largest.trainImagesPerSecond.toFixed(2)} images/s, ${(100 * share).toFixed(0)}% of the napkin ${largest.napkinTrainImagesPerSecond.toFixed(2)} (target >= 60%)`);
  }
  const allocs = r.training.reduce((s, t) => s + t.steadyBuffersCreated, 0);
  out.push(`${mark(allocs === 0)} steady-state training created ${allocs} GPU buffers (target 0)`);
  return out;
}

export interface Metric { value: number; higherIsBetter: boolean }

const rowKey = (r: Row) => `${r.what}${r.batch === null ? '' : ` @${r.batch}`}`;

/** Every figure of a report under a stable name, for --compare. */
export function reportMetrics(r: BenchReport): Map<string, Metric> {
  const m = new Map<string, Metric>();
  const put = (name: string, value: number, higherIsBetter: boolean) => {
    if (Number.isFinite(value)) m.set(name, { value, higherIsBetter });
  };
  for (const row of r.ceiling.rows) put(`ceiling: ${rowKey(row)} GFLOP/s`, row.gflops, true);
  put('ceiling GFLOP/s', r.ceiling.gflops, true);
  for (const row of r.layers) put(`layer: ${rowKey(row)} ms`, row.ms, false);
  for (const t of r.training) {
    put(`train @${t.batch} images/s`, t.trainImagesPerSecond, true);
    put(`infer @${t.batch} images/s`, t.inferImagesPerSecond, true);
  }
  put('start-up compile ms', r.startup.compileMs, false);
  put('peak pool MiB', r.memory.peakBytes / MB, false);
  for (const k of r.profile?.kernels ?? []) put(`kernel: ${k.name} ms`, k.ms, false);
  return m;
}

/**
 * now / before for every metric present in both (matched by name), with a verdict: 'better' or
 * 'worse' past `threshold` (a relative change, default 5%), else 'same'.
 */
export function compareReports(now: BenchReport, before: BenchReport, threshold = 0.05): Array<{ name: string; now: number; before: number; ratio: number; verdict: 'better' | 'worse' | 'same' }> {
  const a = reportMetrics(now);
  const b = reportMetrics(before);
  const out = [];
  for (const [name, x] of a) {
    const y = b.get(name);
    if (!y || y.value === 0) continue;
    const ratio = x.value / y.value;
    const gain = x.higherIsBetter ? ratio : 1 / ratio;
    out.push({ name, now: x.value, before: y.value, ratio, verdict: (gain > 1 + threshold ? 'better' : gain < 1 - threshold ? 'worse' : 'same') as 'better' | 'worse' | 'same' });
  }
  return out;
}

export function formatComparison(rows: ReturnType<typeof compareReports>, beforeName: string): string[] {
  if (rows.length === 0) return [`--compare ${beforeName}: no metric in common`];
  const out = [`== compared with ${beforeName}: ratio now / before ==`];
  for (const r of rows) out.push(`${r.ratio.toFixed(2).padStart(7)}x  ${r.verdict.padEnd(7)} ${r.name} (${r.before.toPrecision(4)} -> ${r.now.toPrecision(4)})`);
  return out;
}

/** Parses a report written by an earlier run, with a clear error when it is not one. */
export function parseReport(text: string, file: string): BenchReport {
  const r = JSON.parse(text) as BenchReport;
  if (r?.version !== 1 || !Array.isArray(r.layers) || !Array.isArray(r.training)) throw new Error(`${file} is not a bench report (version 1)`);
  return r;
}

export { ceilingOf };
