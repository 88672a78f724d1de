// Long-run memory check (issue 10): N training steps of a small CapsNet on MNIST, as `capsnet train`
// runs them (Trainer with the step monitor, metrics appended, a checkpoint saved every so often),
// sampling the buffer pool's statistics, the context's counters and the process's memory every K
// steps. Prints a table and a verdict (does anything grow after the warm-up?) and writes JSON.
//
//   node --expose-gc --import ./tools/register-ts.mjs tools/longrun.ts [--steps 10000] [--every 250]
//        [--warmup N] [--batch-size 16] [--checkpoint-every 1000] [--backend B] [--json FILE] [--config JSON]
//
// With --expose-gc the heap is collected before each sample, so heapUsed is what is live, not what
// the collector has not reached yet. The verdict: after the warm-up (default: the first 10% of the
// steps, at least 200, and past the first checkpoint), the pool must create no buffer and hold no
// more bytes, no pipeline may be compiled, the counters must grow by the same amount per step
// (over windows holding the same number of checkpoints), and the straight-line fit of heap
// and RSS over the remaining samples must not rise by more than max(8 MiB, 10%) (heap) and
// max(32 MiB, 10%) (RSS) across the run.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { CapsNet } from '../src/model/capsnet.ts';
import { makeConfig, parameterCount, type CapsNetConfig } from '../src/model/config.ts';
import { Adam } from '../src/optim/adam.ts';
import { staircaseDecay } from '../src/optim/schedule.ts';
import { TrainingBatches } from '../src/train/batches.ts';
import { Trainer } from '../src/train/trainer.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { subset } from '../src/data/dataset.ts';
import { appendMetrics } from '../src/io/metrics.ts';
import { saveCheckpoint } from '../src/io/checkpoint-file.ts';

const SMALL: Partial<CapsNetConfig> = { conv1Channels: 16, primaryTypes: 4, primaryDim: 8, digitDim: 16, decoderHidden: [64, 128] };
const MIB = 2 ** 20;

interface Sample {
  step: number;
  seconds: number;
  poolAllocatedBytes: number;
  poolPeakBytes: number;
  poolInUseBytes: number;
  poolCreated: number;
  poolInUse: number;
  poolReused: number;
  submits: number;
  dispatches: number;
  readbacks: number;
  pipelinesCreated: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;

/** Least-squares line through (x, y): the fitted values at the first and last x. */
function fitEnds(xs: number[], ys: number[]): { first: number; last: number } {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  return { first: my + slope * (xs[0] - mx), last: my + slope * (xs[n - 1] - mx) };
}

export function verdict(samples: Sample[], warmupSteps: number, period: number): { checks: Check[]; growth: boolean } {
  const after = samples.filter((s) => s.step >= warmupSteps);
  if (after.length < 3) throw new Error(`longrun: ${after.length} samples after the warm-up of ${warmupSteps} steps; run more steps or sample more often`);
  const [a, z] = [after[0], after.at(-1)!];
  const steps = z.step - a.step;
  const checks: Check[] = [];
  const same = (what: string, key: keyof Sample, unit = '') => {
    const d = (z[key] as number) - (a[key] as number);
    checks.push({ what, ok: d <= 0, detail: `${a[key]}${unit} at step ${a.step} -> ${z[key]}${unit} at step ${z.step}` });
  };
  same('pool buffers created', 'poolCreated');
  same('pool bytes held', 'poolAllocatedBytes', ' B');
  same('pool peak bytes', 'poolPeakBytes', ' B');
  same('pipelines compiled', 'pipelinesCreated');
  // Work per step must be constant. Statistics reads (every logEvery steps) and checkpoints make
  // some steps do more, so the rates are compared over windows of `period` steps, which all hold
  // the same number of each: then they must be equal.
  const windows = after.filter((s) => s.step % period === 0);
  for (const key of ['submits', 'dispatches', 'readbacks'] as const) {
    if (windows.length < 3) {
      checks.push({ what: `${key} per step`, ok: true, detail: `not checked: fewer than 3 samples at multiples of ${period} steps after the warm-up` });
      continue;
    }
    const rates = windows.slice(1).map((s, i) => (s[key] - windows[i][key]) / (s.step - windows[i].step));
    const lo = Math.min(...rates);
    const hi = Math.max(...rates);
    checks.push({ what: `${key} per step`, ok: hi <= lo * 1.01, detail: `${lo.toFixed(3)} .. ${hi.toFixed(3)} per step in ${rates.length} windows of ${period} steps` });
  }
  const memory = (what: string, key: 'heapUsed' | 'rss' | 'external' | 'arrayBuffers', floor: number) => {
    const fit = fitEnds(after.map((s) => s.step), after.map((s) => s[key]));
    const rise = fit.last - fit.first;
    const allowed = Math.max(floor, 0.1 * fit.first);
    checks.push({
      what,
      ok: rise <= allowed,
      detail: `fit ${(fit.first / MIB).toFixed(1)} -> ${(fit.last / MIB).toFixed(1)} MiB (${rise >= 0 ? '+' : ''}${(rise / MIB).toFixed(2)} MiB over ${steps} steps, ${((rise / MIB) * 1000 / steps).toFixed(3)} MiB per 1000 steps; allowed ${(allowed / MIB).toFixed(1)})`,
    });
  };
  memory('JS heap used', 'heapUsed', 8 * MIB);
  memory('external + array buffers', 'external', 16 * MIB);
  memory('resident set (RSS)', 'rss', 32 * MIB);
  return { checks, growth: checks.some((c) => !c.ok) };
}

function formatTable(samples: Sample[]): string {
  const head = ['step', 's', 'pool MiB', 'peak MiB', 'created', 'in use', 'submits', 'dispatches', 'readbacks', 'pipelines', 'rss MiB', 'heap MiB', 'ext MiB'];
  const rows = samples.map((s) => [
    s.step, s.seconds.toFixed(0), (s.poolAllocatedBytes / MIB).toFixed(1), (s.poolPeakBytes / MIB).toFixed(1), s.poolCreated, s.poolInUse,
    s.submits, s.dispatches, s.readbacks, s.pipelinesCreated, (s.rss / MIB).toFixed(1), (s.heapUsed / MIB).toFixed(1), (s.external / MIB).toFixed(1),
  ].map(String));
  const widths = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  return [head, ...rows].map((r) => r.map((c, k) => c.padStart(widths[k])).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '10000' },
      every: { type: 'string', default: '250' },
      warmup: { type: 'string' },
      'batch-size': { type: 'string', default: '16' },
      limit: { type: 'string', default: '2048' },
      'checkpoint-every': { type: 'string', default: '1000' },
      'log-every': { type: 'string', default: '10' },
      config: { type: 'string' },
      backend: { type: 'string' },
      json: { type: 'string', default: 'runs/longrun.json' },
    },
  });
  const int = (flag: string, min = 1) => {
    const v = values[flag as keyof typeof values] as string;
    if (!/^[0-9]+$/.test(v) || Number(v) < min) throw new Error(`--${flag}: expected an integer >= ${min}, got '${v}'`);
    return Number(v);
  };
  const steps = int('steps');
  const every = int('every');
  const batchSize = int('batch-size');
  const limit = int('limit');
  const checkpointEvery = int('checkpoint-every');
  const logEvery = int('log-every');
  // The first checkpoint allocates its readback buffers, which the pool then keeps for the next
  // ones: the warm-up ends after it.
  const warmup = values.warmup !== undefined ? int('warmup', 0) : Math.max(200, Math.round(steps / 10), checkpointEvery + 1);
  const config = makeConfig({ ...SMALL, ...(values.config ? JSON.parse(values.config) : {}) }, '--config');
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) process.stderr.write('longrun: run node with --expose-gc for heap figures of live objects only (now they include garbage)\n');

  const data = subset(loadMnist().train, limit);
  const ctx = await acquireGpu({ backend: values.backend === undefined ? undefined : resolveBackend(values.backend) });
  const scratch = mkdtempSync(join(tmpdir(), 'capsnet-longrun-'));
  const samples: Sample[] = [];
  const started = performance.now();
  try {
    const model = CapsNet.create(ctx, config, 1);
    const adam = new Adam(ctx, { lr: staircaseDecay({ lr0: 1e-3, decayRate: 0.96, decaySteps: 2000 }) });
    const batches = new TrainingBatches(data, batchSize, 1, 2);
    const trainer = new Trainer(ctx, model, adam, batches, logEvery);
    const metricsPath = join(scratch, 'metrics.jsonl');
    console.log(`longrun: ${steps} steps of batch ${batchSize} on ${ctx.adapter.name}, ${parameterCount(config).toLocaleString('en-US')} parameters, ` +
      `${data.count} MNIST images, sample every ${every} steps, warm-up ${warmup} steps, checkpoint every ${checkpointEvery}`);
    const sample = (step: number) => {
      gc?.();
      const p = ctx.poolStats();
      const m = process.memoryUsage();
      const s: Sample = {
        step, seconds: (performance.now() - started) / 1000,
        poolAllocatedBytes: p.allocatedBytes, poolPeakBytes: p.peakBytes, poolInUseBytes: p.inUseBytes, poolCreated: p.created, poolInUse: p.inUse, poolReused: p.reused,
        submits: ctx.counters.submits, dispatches: ctx.counters.dispatches, readbacks: ctx.counters.readbacks, pipelinesCreated: ctx.counters.pipelinesCreated,
        rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers,
      };
      samples.push(s);
      if (samples.length === 1) console.log(formatTable([s]));
      else console.log(formatTable([samples[0], s]).split('\n').at(-1));
    };
    let lastLoss = NaN;
    await trainer.run(0, steps, {
      onStep: (done) => {
        if (done % every === 0) sample(done);
      },
      onRecords: async (records) => {
        for (const r of records) await appendMetrics(metricsPath, { type: 'train', ...r });
        lastLoss = records.at(-1)?.loss ?? lastLoss;
      },
      checkpointDue: (done) => done % checkpointEvery === 0,
      onCheckpoint: async (done) => {
        await saveCheckpoint(join(scratch, 'checkpoint.safetensors'), { config, params: await model.exportParams(), optimizer: await adam.exportState(), step: done });
      },
    });
    trainer.dispose();
    adam.dispose();
    model.dispose();
    const seconds = (performance.now() - started) / 1000;
    console.log(`\nlongrun: ${steps} steps in ${seconds.toFixed(0)} s (${(steps / seconds).toFixed(1)} steps/s), last loss ${lastLoss.toFixed(4)}`);
    console.log('\n' + formatTable(samples));
    const period = lcm(every, lcm(checkpointEvery, logEvery));
    const { checks, growth } = verdict(samples, warmup, period);
    console.log(`\nafter the warm-up (${warmup} steps):`);
    for (const c of checks) console.log(`  ${c.ok ? 'ok  ' : 'GROW'} ${c.what.padEnd(26)} ${c.detail}`);
    console.log(`\nverdict: ${growth ? 'GROWTH after warm-up (see GROW lines)' : 'no growth after warm-up'}`);
    mkdirSync(dirname(values.json!), { recursive: true });
    writeFileSync(values.json!, JSON.stringify({
      steps, every, warmup, batchSize, limit, checkpointEvery, logEvery, gc: Boolean(gc), adapter: ctx.adapter.name, config, seconds, node: process.version,
      samples, checks, verdict: growth ? 'growth' : 'no growth',
    }, null, 1) + '\n');
    console.log(`wrote ${values.json}`);
    process.exitCode = growth ? 1 : 0;
  } finally {
    ctx.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
