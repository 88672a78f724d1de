// `npm run bench` (tools/bench.ts): its pure pieces on made-up numbers (rows and rates, the ceiling,
// the table, the report's metrics and --compare), and one tiny real run as a child process
// (batch 1, one round, a 64^3 matmul: ~10-15 s on llvmpipe) whose JSON must have every section with
// finite positive numbers. Nothing about speed is asserted.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Row, ceilingOf, formatRows, makeRow, median, randomData } from '../tools/bench/lib.ts';
import { type BenchReport, compareReports, formatComparison, formatReport, parseReport, reportMetrics, targetLines } from '../tools/bench/report.ts';

const bench = suite('bench');

const row = (what: string, batch: number | null, ms: number, flops: number, bytes: number, note = '', cpuMs: number | null = null): Row =>
  makeRow({ what, batch, flops, bytes, note }, ms, ms + 1, cpuMs);

function madeUpReport(scale = 1): BenchReport {
  const ceilingRows = [row('matmul 512x512x512', null, 20 * scale, 2 * 512 ** 3, 3 * 4 * 512 ** 2, 'ceiling', 40), row('matmul PrimaryCaps GEMM', 32, 100 * scale, 2 * 1152 * 256 * 20736, 0, 'ceiling', 150)];
  const ceiling = ceilingOf(ceilingRows);
  return {
    version: 1, date: '2026-01-01T00:00:00Z',
    adapter: { name: 'made-up GPU', description: 'test', backend: 'vulkan', featureLevel: 'core' },
    method: 'timestamp', quick: true, runs: 3, warmup: 1,
    ceiling: { ...ceiling, rows: ceilingRows },
    layers: [row('PrimaryCaps forward', 32, 200 * scale, 2 * 32 * 191e6, 1e8), row('margin loss forward', 32, 0.5 * scale, 0, 2560)],
    training: [{ batch: 32, stepMs: 4000 * scale, trainImagesPerSecond: 8 / scale, inferMs: 1000 * scale, inferImagesPerSecond: 32 / scale, napkinTrainImagesPerSecond: 10, steadyBuffersCreated: 0, peakBytes: 300 * 2 ** 20 }],
    startup: { batch: 1, firstStepMs: 3000, steadyStepMs: 1000, compileMs: 2000 * scale, pipelines: 37, note: 'warm cache' },
    memory: { peakBytes: 300 * 2 ** 20 },
    profile: { batch: 32, totalMs: 100, capsuleShare: 0.1, kernels: [{ name: 'primary/conv2d_gemm_sg', ms: 60 * scale, count: 11, share: 0.6 }] },
  };
}

bench('makeRow: GFLOP/s and GB/s from flops, bytes and ms; per-CPU-second rate only with a CPU time', () => {
  const r = makeRow({ what: 'x', batch: 2, flops: 4e9, bytes: 2e9, note: '' }, 200, 250, 400);
  assert.is(r.gflops, 20); // 4 GFLOP in 0.2 s
  assert.is(r.gbps, 10);
  assert.is(r.cpuGflops, 10); // 4 GFLOP per 0.4 CPU-s
  assert.is(r.wallMs, 250);
  assert.is(makeRow({ what: 'x', batch: 2, flops: 4e9, note: '' }, 200, 200, null).cpuGflops, null);
  assert.is(makeRow({ what: 'x', batch: 2, flops: 4e9, note: '' }, 200, 200, null).gbps, 0);
});

bench('median and randomData', () => {
  assert.is(median([5, 1, 3]), 3);
  assert.is(median([4, 1, 3, 2]), 2.5);
  const a = randomData(1000, 7, 2);
  assert.equal(a, randomData(1000, 7, 2));
  assert.ok(a.every((v) => v >= -2 && v < 2));
  assert.not.equal(a, randomData(1000, 8, 2));
});

bench('ceilingOf takes the best matmul; formatRows gives shares of it and dashes where a rate is not defined', () => {
  const rows = [row('matmul a', null, 10, 1e8, 0, 'ceiling', 20), row('matmul b', null, 10, 2e8, 0, 'ceiling', 10), row('layer', 8, 10, 1e8, 0), row('copy', 8, 1, 0, 1e6)];
  const c = ceilingOf(rows);
  assert.is(c.gflops, 20);
  assert.is(c.cpuGflops, 20);
  const lines = formatRows(rows, c);
  assert.is(lines.length, 5);
  assert.match(lines[3], /^layer\s+8\s+10\.00\s+10\.0\s+-\s+50%/);
  assert.match(lines[4], /^copy\s+8\s+1\.00\s+-\s+1\.0\s+-/);
});

bench('formatReport names the adapter and the timing method and prints every section', () => {
  const r = madeUpReport();
  const text = formatReport(r).join('\n');
  for (const s of ['made-up GPU', 'timestamp queries', 'ceiling', 'PrimaryCaps forward', 'napkin', 'start-up', 'peak GPU memory', 'primary/conv2d_gemm_sg']) assert.ok(text.includes(s), s);
  const cpu = formatReport({ ...r, method: 'cpu', profile: null }).join('\n');
  assert.ok(cpu.includes('queue completion'));
  assert.ok(cpu.includes('no timestamp queries'));
});

bench("targetLines checks issue 7's targets", () => {
  const r = madeUpReport();
  r.layers.push(row('caps predict forward', 32, 300, 1e9, 0), row('routing (r = 3) backward', 32, 500, 1e9, 0));
  const lines = targetLines(r);
  // PrimaryCaps forward: 2 x 32 x 191e6 flops in 200 ms = 61 GFLOP/s against the GEMM ceiling of 122 GFLOP/s: 50%.
  assert.match(lines.find((l) => l.includes('PrimaryCaps forward'))!, /^MISSED .*50% of the ceiling/);
  assert.match(lines.find((l) => l.includes('predict + routing @32'))!, /^MISSED .*20\.0% of the training step/); // 800 of 4000 ms
  assert.match(lines.find((l) => l.includes('kernel profile'))!, /^ok .*10\.0%/);
  assert.match(lines.find((l) => l.includes('training @32'))!, /^ok .*80% of the napkin/); // 8 of 10 images/s
  assert.match(lines.find((l) => l.includes('steady-state'))!, /^ok .*created 0 GPU buffers/);
  r.training[0].steadyBuffersCreated = 3;
  assert.match(targetLines(r).find((l) => l.includes('steady-state'))!, /^MISSED .*created 3/);
});

bench('reportMetrics names every figure; compareReports matches by name and knows which way is better', () => {
  const m = reportMetrics(madeUpReport());
  for (const name of ['ceiling GFLOP/s', 'layer: PrimaryCaps forward @32 ms', 'train @32 images/s', 'infer @32 images/s', 'start-up compile ms', 'peak pool MiB', 'kernel: primary/conv2d_gemm_sg ms']) assert.ok(m.has(name), name);
  const slower = madeUpReport(2); // every time doubled, every rate halved
  const rows = compareReports(slower, madeUpReport());
  const by = new Map(rows.map((r) => [r.name, r]));
  assert.is(by.get('layer: PrimaryCaps forward @32 ms')!.ratio, 2);
  assert.is(by.get('layer: PrimaryCaps forward @32 ms')!.verdict, 'worse');
  assert.is(by.get('train @32 images/s')!.ratio, 0.5);
  assert.is(by.get('train @32 images/s')!.verdict, 'worse');
  assert.is(by.get('peak pool MiB')!.verdict, 'same');
  assert.is(compareReports(madeUpReport(), slower).find((r) => r.name === 'train @32 images/s')!.verdict, 'better');
  // A metric missing from the earlier report is left out, not compared with zero.
  const before = madeUpReport();
  before.layers = [];
  assert.not.ok(compareReports(madeUpReport(), before).some((r) => r.name.startsWith('layer:')));
  assert.match(formatComparison(rows, 'old.json')[0], /old\.json/);
  assert.match(formatComparison([], 'old.json')[0], /no metric in common/);
});

bench('parseReport accepts a report and rejects other JSON', () => {
  assert.is(parseReport(JSON.stringify(madeUpReport()), 'a.json').adapter.name, 'made-up GPU');
  assert.throws(() => parseReport('{"rows": []}', 'b.json'), /b\.json is not a bench report/);
});

function positiveNumbers(value: unknown, path: string, out: string[]): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) out.push(`${path} = ${value}`);
  } else if (Array.isArray(value)) value.forEach((v, k) => positiveNumbers(v, `${path}[${k}]`, out));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) positiveNumbers(v, `${path}.${k}`, out);
}

bench('a tiny real run writes every section with finite positive numbers and compares with an earlier report', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-bench-'));
  try {
    const json = join(dir, 'bench.json');
    const old = join(dir, 'old.json');
    writeFileSync(old, JSON.stringify(madeUpReport()));
    const root = fileURLToPath(new URL('..', import.meta.url));
    const argv = ['--import', './tools/register-ts.mjs', 'tools/bench.ts', '--quick', '--train-batch', '1', '--layer-batch', '1', '--matmul', '64', '--runs', '1', '--warmup', '0', '--json', json, '--compare', old];
    const child = spawn(process.execPath, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.is(code, 0, `bench exited with ${code}:\n${stderr.slice(-2000)}`);
    const r = parseReport(readFileSync(json, 'utf8'), json);
    assert.ok(r.ceiling.rows.length >= 2, 'ceiling rows');
    assert.ok(r.ceiling.gflops > 0);
    // Every layer of the model, forward and backward, plus Adam.
    for (const name of ['Conv1 forward', 'Conv1 grad weight', 'PrimaryCaps forward', 'PrimaryCaps grad input', 'PrimaryCaps grad weight', 'PrimaryCaps regroup+squash backward',
      'caps predict forward', 'caps predict backward', 'routing (r = 3) forward', 'routing (r = 3) backward', 'capsule lengths backward', 'mask capsules forward',
      'decoder (3 dense) forward', 'decoder (3 dense) backward', 'margin loss backward', 'reconstruction loss forward', 'Adam']) {
      assert.ok(r.layers.some((l) => l.what.startsWith(name)), `layer '${name}' missing`);
    }
    for (const l of r.layers) assert.ok(l.ms > 0 && (l.flops > 0 || l.bytes > 0), `${l.what}: ${l.ms} ms, ${l.flops} flops, ${l.bytes} bytes`);
    assert.is(r.training.length, 1);
    const t = r.training[0];
    for (const v of [t.stepMs, t.trainImagesPerSecond, t.inferMs, t.inferImagesPerSecond, t.napkinTrainImagesPerSecond, t.peakBytes]) assert.ok(v > 0);
    assert.ok(r.startup.pipelines > 0 && r.startup.firstStepMs > 0 && r.startup.steadyStepMs > 0 && Number.isFinite(r.startup.compileMs));
    assert.ok(r.memory.peakBytes > 0);
    assert.ok(['timestamp', 'cpu'].includes(r.method));
    if (r.method === 'timestamp') assert.ok(r.profile && r.profile.kernels.length > 0 && r.profile.totalMs > 0);
    else assert.is(r.profile, null);
    // compileMs may be slightly negative on a warm shader cache and a noisy machine; everything else is >= 0.
    const bad: string[] = [];
    positiveNumbers({ ...r, startup: { ...r.startup, compileMs: 0 } }, 'report', bad);
    assert.equal(bad, []);
    assert.ok(stdout.includes(`adapter: ${r.adapter.name}`));
    assert.ok(stdout.includes('compared with'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

bench.run();
