// The seeded fuzzer of every reader of outside bytes (issue 10): IDX (plain and gzipped), safetensors,
// checkpoint metadata, the CIFAR-10 binary reader, and the CLI's flags. Each case mutates a valid
// input and must end in a correct read or a clear error: never a crash, a hang, a huge allocation
// or a wrong result (see tools/fuzz/harness.ts for the rules, tools/fuzz/formats.ts for the oracles).
//
//   node --import ./tools/register-ts.mjs tools/fuzz.ts [--cases N] [--seed S] [--only a,b]
//        [--json FILE] [--slow-ms MS] [--hang-ms MS]
//   node --import ./tools/register-ts.mjs tools/fuzz.ts --only TARGET --replay INDEX [--seed S]
//
// Each target runs in a worker thread watched by this one: a case that does not finish within
// --hang-ms (default 30 s) is reported as a hang, the worker is terminated and the target goes on
// from the next case; a worker that dies (out of memory) is reported the same way. Exit code 1
// when any bug was found. `npm test` runs a quick slice of the same cases (test/fuzz.test.ts).

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Rng } from '../src/data/rng.ts';
import { caseSeed, formatReports, runCase, runTarget, type Finding, type TargetReport } from './fuzz/harness.ts';
import { TARGETS } from './fuzz/targets.ts';

interface Job {
  target: string;
  seed: number;
  cases: number;
  start: number;
  slowMs: number;
}

type FromWorker = { type: 'case'; index: number } | { type: 'done'; report: TargetReport };

if (!isMainThread) {
  const job = workerData as Job;
  const target = TARGETS.find((t) => t.name === job.target)!;
  const report = await runTarget(target, {
    seed: job.seed,
    cases: job.cases,
    start: job.start,
    slowMs: job.slowMs,
    onCase: (index) => parentPort!.postMessage({ type: 'case', index } satisfies FromWorker),
  });
  parentPort!.postMessage({ type: 'done', report } satisfies FromWorker);
} else {
  await main();
}

/** Runs cases [start, cases) of a target in a worker; resolves with its report, or with how it stopped. */
function runWorker(job: Job, hangMs: number): Promise<{ report?: TargetReport; stoppedAt?: number; why?: string }> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: job, resourceLimits: { maxOldGenerationSizeMb: 1536 } });
    let current = job.start;
    let settled = false;
    let timer: NodeJS.Timeout;
    const finish = (value: { report?: TargetReport; stoppedAt?: number; why?: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void worker.terminate();
        finish({ stoppedAt: current, why: `no result within ${hangMs} ms: a hang` });
      }, hangMs);
    };
    arm();
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'case') {
        current = m.index;
        arm();
      } else {
        finish({ report: m.report });
        void worker.terminate();
      }
    });
    worker.on('error', (e) => finish({ stoppedAt: current, why: `the worker died: ${e.message}` }));
    worker.on('exit', (code) => finish({ stoppedAt: current, why: `the worker exited with code ${code}` }));
  });
}

async function fuzzTarget(name: string, seed: number, cases: number, slowMs: number, hangMs: number): Promise<TargetReport> {
  const merged: TargetReport = { target: name, cases: 0, reads: 0, errors: 0, bugs: [], ms: 0, slowestMs: 0, slowestMutation: '', largestAllocation: 0 };
  const started = performance.now();
  let start = 0;
  while (start < cases) {
    const { report, stoppedAt, why } = await runWorker({ target: name, seed, cases, start, slowMs }, hangMs);
    if (report) {
      merged.cases += report.cases;
      merged.reads += report.reads;
      merged.errors += report.errors;
      merged.bugs.push(...report.bugs);
      if (report.slowestMs > merged.slowestMs) {
        merged.slowestMs = report.slowestMs;
        merged.slowestMutation = report.slowestMutation;
      }
      merged.largestAllocation = Math.max(merged.largestAllocation, report.largestAllocation);
      break;
    }
    // The worker stopped inside case `stoppedAt`: that case is a bug; go on after it. Cases done
    // before it by that worker are not counted (their report died with it).
    const finding: Finding = { target: name, seed, index: stoppedAt!, mutation: `(replay with --only ${name} --replay ${stoppedAt} --seed ${seed})`, problem: why! };
    merged.bugs.push(finding);
    merged.cases += stoppedAt! - start + 1;
    process.stderr.write(`fuzz: ${name} case ${stoppedAt}: ${why}\n`);
    start = stoppedAt! + 1;
  }
  merged.ms = performance.now() - started;
  return merged;
}

async function replay(name: string, seed: number, index: number, slowMs: number): Promise<number> {
  const target = TARGETS.find((t) => t.name === name)!;
  await target.setup?.();
  try {
    const prepared = await target.prepare(new Rng(caseSeed(seed, name, index)), index);
    console.log(`case ${index} of ${name} (seed ${seed}): ${prepared.mutation}`);
    console.log(`oracle: ${prepared.expect.verdict}${prepared.expect.why ? ` (${prepared.expect.why})` : ''}`);
    try {
      const value = await prepared.run();
      console.log('returned:', typeof value === 'object' ? Object.keys(value ?? {}) : value);
    } catch (e) {
      console.log('threw:', (e as Error).stack?.split('\n').slice(0, 6).join('\n'));
    }
    const fresh = await target.prepare(new Rng(caseSeed(seed, name, index)), index);
    const outcome = await runCase(fresh, slowMs);
    console.log(`verdict: ${outcome.kind}${outcome.problem ? `: ${outcome.problem}` : ''} (${outcome.ms.toFixed(1)} ms, largest allocation ${outcome.largest} bytes)`);
    return outcome.kind === 'bug' ? 1 : 0;
  } finally {
    target.teardown?.();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '1000' },
      seed: { type: 'string', default: '1' },
      only: { type: 'string' },
      json: { type: 'string' },
      'slow-ms': { type: 'string', default: '10000' },
      'hang-ms': { type: 'string', default: '30000' },
      replay: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(`usage: tools/fuzz.ts [--cases N] [--seed S] [--only ${TARGETS.map((t) => t.name).join(',')}] [--json FILE] [--slow-ms MS] [--hang-ms MS]\n       tools/fuzz.ts --only TARGET --replay INDEX [--seed S]\n\ntargets:\n${TARGETS.map((t) => `  ${t.name.padEnd(13)} ${t.description}`).join('\n')}`);
    return;
  }
  const int = (v: string, flag: string) => {
    if (!/^[0-9]+$/.test(v)) throw new Error(`--${flag}: expected a non-negative integer, got '${v}'`);
    return Number(v);
  };
  const cases = int(values.cases!, 'cases');
  const seed = int(values.seed!, 'seed');
  const slowMs = int(values['slow-ms']!, 'slow-ms');
  const hangMs = int(values['hang-ms']!, 'hang-ms');
  const names = values.only ? values.only.split(',') : TARGETS.map((t) => t.name);
  for (const n of names) if (!TARGETS.some((t) => t.name === n)) throw new Error(`--only: no target '${n}' (targets: ${TARGETS.map((t) => t.name).join(', ')})`);
  if (values.replay !== undefined) {
    if (names.length !== 1) throw new Error('--replay needs exactly one target in --only');
    process.exitCode = await replay(names[0], seed, int(values.replay, 'replay'), slowMs);
    return;
  }
  console.log(`fuzz: ${cases} cases per target, seed ${seed}, targets ${names.join(', ')}`);
  const reports: TargetReport[] = [];
  const started = performance.now();
  for (const name of names) {
    const report = await fuzzTarget(name, seed, cases, slowMs, hangMs);
    reports.push(report);
    console.log(`  ${name}: ${report.cases} cases, ${report.reads} reads, ${report.errors} clear errors, ${report.bugs.length} bugs, ${(report.ms / 1000).toFixed(1)} s`);
  }
  const seconds = (performance.now() - started) / 1000;
  console.log('');
  console.log(formatReports(reports));
  const bugs = reports.reduce((s, r) => s + r.bugs.length, 0);
  console.log(`\nfuzz: ${reports.reduce((s, r) => s + r.cases, 0)} cases in ${seconds.toFixed(1)} s, ${bugs} bug(s)`);
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ seed, casesPerTarget: cases, seconds, node: process.version, reports }, null, 1) + '\n');
    console.log(`wrote ${values.json}`);
  }
  process.exitCode = bugs > 0 ? 1 : 0;
}
