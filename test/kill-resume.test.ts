// Killed runs (issue 10): `capsnet train` is killed with SIGKILL at seeded random moments, including
// while a checkpoint is being written (the moment its temporary file appears), then continued with
// --resume (or started again when no checkpoint exists yet) until it finishes. The final parameters
// and Adam moments must be bitwise those of an uninterrupted run with the same seed, and after every
// kill the checkpoint on disk must be a complete file that loads, never going back in steps.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './helpers/cli.ts';
import { loadCheckpoint } from '../src/io/checkpoint-file.ts';
import { readMetrics } from '../src/io/metrics.ts';
import type { Checkpoint } from '../src/io/checkpoint.ts';
import { makeRng } from './helpers/random.ts';

// A decoder wide enough that a checkpoint is a few megabytes: its write (and fsync) takes long
// enough for a kill to land inside it.
const CONFIG = JSON.stringify({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [64, 256] });
const STEPS = 12;
const RECIPE = ['--steps', String(STEPS), '--limit', '64', '--batch-size', '8', '--log-every', '1', '--checkpoint-every', '1', '--no-eval', '--seed', '3'];
const CHECKPOINT = 'checkpoint.safetensors';
const TEMP = /^\.checkpoint\.safetensors\..*\.tmp$/;
const SEED = 1234;

/**
 * When to kill: after a delay from the start (start-up: loading data, acquiring the GPU); a few
 * milliseconds after the metrics log records a given step (around that step's checkpoint); when the
 * temporary file of the process's nth checkpoint is created ('created') or first written to
 * ('writing'); or right after the nth checkpoint is renamed into place.
 */
type KillPlan =
  | { kind: 'delay'; ms: number }
  | { kind: 'logged'; step: number; extraMs: number }
  | { kind: 'temp-file'; nth: number; at: 'created' | 'writing' }
  | { kind: 'after-save'; nth: number }
  | { kind: 'signal'; when: Promise<boolean> }
  | { kind: 'none' };

interface RunOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** The plan's trigger fired (the kill was sent). */
  killed: boolean;
}

/** Runs `capsnet train` in `out`, killing it (SIGKILL) as the plan says. */
function runTrain(out: string, args: string[], plan: KillPlan, timeoutMs = 60_000): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'train', '--out', out, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (d) => (stderr += d));
    const kill = () => {
      if (!killed && child.exitCode === null) {
        killed = true;
        child.kill('SIGKILL');
      }
    };
    let timer: NodeJS.Timeout | undefined;
    let watcher: ReturnType<typeof watch> | undefined;
    if (plan.kind === 'delay') timer = setTimeout(kill, plan.ms);
    if (plan.kind === 'signal') void plan.when.then((fire) => fire && kill());
    let polling: NodeJS.Timeout | undefined;
    if (plan.kind === 'logged') {
      const record = new RegExp(`"type":"train","step":${plan.step}[,}]`);
      const metrics = join(out, 'metrics.jsonl');
      polling = setInterval(() => {
        if (existsSync(metrics) && record.test(readFileSync(metrics, 'utf8'))) {
          clearInterval(polling);
          timer = setTimeout(kill, plan.extraMs);
        }
      }, 2);
    }
    if (plan.kind === 'temp-file' || plan.kind === 'after-save') {
      // inotify events: 'rename' when a file appears or is renamed (under both names), 'change' when
      // it is written. Temporary files have unique names: the nth new name is the nth checkpoint.
      const temps: string[] = [];
      let saves = 0;
      watcher = watch(out, (event, name) => {
        if (name === null) return;
        if (plan.kind === 'after-save') {
          if (name === CHECKPOINT && event === 'rename' && ++saves === plan.nth) kill();
          return;
        }
        if (!TEMP.test(name)) return;
        const fresh = !temps.includes(name);
        if (fresh) temps.push(name);
        if (temps.length !== plan.nth || name !== temps[plan.nth - 1]) return;
        if (plan.at === 'created' ? fresh : event === 'change') kill();
      });
    }
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`capsnet train did not finish within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (timer) clearTimeout(timer);
      if (polling) clearInterval(polling);
      watcher?.close();
      resolve({ code, signal, stderr, killed });
    });
  });
}

const bitsEqual = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function assertSameState(actual: Checkpoint, expected: Checkpoint) {
  assert.is(actual.step, expected.step, 'step');
  assert.is(actual.optimizer?.step, expected.optimizer?.step, 'Adam step');
  for (const name of Object.keys(expected.params)) {
    assert.ok(bitsEqual(actual.params[name], expected.params[name]), `${name} differs from the uninterrupted run`);
    assert.ok(bitsEqual(actual.optimizer!.m[name], expected.optimizer!.m[name]), `adam.m.${name} differs`);
    assert.ok(bitsEqual(actual.optimizer!.v[name], expected.optimizer!.v[name]), `adam.v.${name} differs`);
  }
}

const test = suite('killed runs');
let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-kill-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

test('SIGKILL at random moments and mid-checkpoint, then --resume: bitwise the uninterrupted run; the checkpoint always loads', async () => {
  const started = performance.now();
  const straight = join(root, 'straight');
  const reference = await runTrain(straight, [...RECIPE, '--config', CONFIG], { kind: 'none' });
  assert.is(reference.code, 0, reference.stderr);
  const expected = await loadCheckpoint(join(straight, CHECKPOINT));
  assert.is(expected.step, STEPS);
  const referenceMs = performance.now() - started;

  // The kill plan, from the seed, in terms of the run's progress (not of time, so it is the same on
  // a fast or a slow machine): the temporary file of the 1st or 2nd checkpoint a process writes; 0-60
  // ms after step (checkpoint + 1 or 2) is logged; right after the 1st or 2nd checkpoint is renamed
  // into place; during start-up. Each kill costs at most two steps, and the plan stops two steps
  // before the end, so every kind of kill lands.
  const rng = makeRng(SEED);
  const planFor = (k: number, done: number): KillPlan => {
    switch (k % 4) {
      case 0:
        return { kind: 'temp-file', nth: 1 + Math.floor(rng() * 2), at: rng() < 0.5 ? 'created' : 'writing' };
      case 1:
        return { kind: 'logged', step: done + 1 + Math.floor(rng() * 2), extraMs: Math.floor(rng() * 60) };
      case 2:
        return { kind: 'after-save', nth: 1 + Math.floor(rng() * 2) };
      default:
        return { kind: 'delay', ms: Math.floor(rng() * Math.min(400, referenceMs / 4)) };
    }
  };
  const MAX_KILLS = 8;

  const out = join(root, 'killed');
  mkdirSync(out);
  const log: string[] = [];
  let lastStep = -1;
  let midWrite = 0;
  let finished = false;
  let knownTemps = new Set<string>();
  let kills = 0;
  for (let attempt = 0; attempt < 2 * MAX_KILLS + 2 && !finished; attempt++) {
    const done = Math.max(0, lastStep);
    const plan: KillPlan = kills < MAX_KILLS && done <= STEPS - 3 ? planFor(kills, done) : { kind: 'none' };
    const resume = existsSync(join(out, CHECKPOINT));
    const args = resume ? [...RECIPE, '--resume'] : [...RECIPE, '--config', CONFIG];
    const r = await runTrain(out, args, plan);
    const temps = readdirSync(out).filter((n) => TEMP.test(n));
    const newTemps = temps.filter((n) => !knownTemps.has(n));
    knownTemps = new Set(temps);
    if (r.killed) kills++;
    if (r.killed && newTemps.length > 0) midWrite++;
    let onDisk = 'no checkpoint';
    if (existsSync(join(out, CHECKPOINT))) {
      // Complete and loadable after every kill (loadCheckpoint checks every tensor and the metadata).
      const ckpt = await loadCheckpoint(join(out, CHECKPOINT)).catch((e: Error) => assert.unreachable(`after ${plan.kind} kill: ${e.message}`) as never);
      assert.ok(ckpt.step >= lastStep, `the checkpoint went back from step ${lastStep} to ${ckpt.step}`);
      assert.ok(ckpt.step <= STEPS);
      lastStep = ckpt.step;
      onDisk = `checkpoint at step ${ckpt.step}`;
    }
    log.push(`${resume ? 'resume' : 'start '} kill ${JSON.stringify(plan)}: ${r.killed ? 'killed' : `exit ${r.code}`}${newTemps.length ? ' during a checkpoint write' : ''}; ${onDisk}`);
    if (!r.killed) {
      assert.is(r.code, 0, `a run that was not killed must finish: ${r.stderr}`);
      finished = true;
    }
  }
  process.stdout.write(`  [kill-resume] ${log.length} runs, ${midWrite} killed during a checkpoint write, ${((performance.now() - started) / 1000).toFixed(1)} s:\n${log.map((l) => `    ${l}`).join('\n')}\n`);
  assert.ok(finished, `the run did not finish after ${log.length} attempts`);
  assert.ok(kills >= 6, `at least six kills landed (${kills})`);
  assert.ok(midWrite >= 1, 'at least one kill landed while a checkpoint was being written');
  assertSameState(await loadCheckpoint(join(out, CHECKPOINT)), expected);

  // The metrics log of the killed run holds each step once, as the uninterrupted one does.
  const steps = async (dir: string) => (await readMetrics(join(dir, 'metrics.jsonl'))).records.filter((m) => m.type === 'train').map((m) => m.step);
  assert.equal(await steps(out), await steps(straight), 'train records of the killed run vs the uninterrupted one');
});

// What a kill leaves besides the checkpoint: the metrics log of an attempt that saved no
// checkpoint, and the temporary file of an interrupted write. Both were bugs found here (in
// src/cli/train.ts and src/io/files.ts); these tests keep them fixed.

test('a run killed before its first checkpoint and started again logs each step once', async () => {
  // The user's only way on: run the same command again (--resume needs a checkpoint).
  const out = join(root, 'early');
  mkdirSync(out);
  const args = [...RECIPE.map((a, k) => (RECIPE[k - 1] === '--checkpoint-every' ? '100' : a)), '--config', CONFIG];
  let killedEarly = false;
  for (let attempt = 0; attempt < 3 && !killedEarly; attempt++) {
    const r = await runTrainUntil(out, args, (text) => /"type":"train","step":2\b/.test(text));
    killedEarly = r.killed && !existsSync(join(out, CHECKPOINT));
  }
  assert.ok(killedEarly, 'killed after step 2 was logged, before any checkpoint');
  const again = await runTrain(out, args, { kind: 'none' });
  assert.is(again.code, 0, again.stderr);
  const steps = (await readMetrics(join(out, 'metrics.jsonl'))).records.filter((m) => m.type === 'train').map((m) => m.step);
  assert.equal(steps, Array.from({ length: STEPS }, (_, k) => k + 1), 'train records: each step once (src/cli/train.ts keeps the killed run\'s records)');
});

test('a run killed during a checkpoint write and resumed leaves no temporary file behind', async () => {
  const out = join(root, 'litter');
  mkdirSync(out);
  let litter: string[] = [];
  for (let attempt = 0; attempt < 4 && litter.length === 0; attempt++) {
    const resume = existsSync(join(out, CHECKPOINT));
    await runTrain(out, resume ? [...RECIPE, '--resume'] : [...RECIPE, '--config', CONFIG], { kind: 'temp-file', nth: 1, at: 'writing' });
    litter = readdirSync(out).filter((n) => TEMP.test(n));
  }
  assert.ok(litter.length > 0, 'a kill landed during a checkpoint write');
  const resume = existsSync(join(out, CHECKPOINT));
  const done = await runTrain(out, resume ? [...RECIPE, '--resume'] : [...RECIPE, '--config', CONFIG], { kind: 'none' });
  assert.is(done.code, 0, done.stderr);
  assert.equal(readdirSync(out).filter((n) => TEMP.test(n)), [], 'temporary files of the killed write (each as large as a checkpoint) are removed');
});

/** Runs `capsnet train`, killing it once the metrics log's text satisfies `until` (polled every 5 ms). */
async function runTrainUntil(out: string, args: string[], until: (metrics: string) => boolean): Promise<RunOutcome> {
  const metrics = join(out, 'metrics.jsonl');
  let stop = false;
  const poll = (async () => {
    while (!stop) {
      if (existsSync(metrics) && until(readFileSync(metrics, 'utf8'))) return true;
      await new Promise((r) => setTimeout(r, 5));
    }
    return false;
  })();
  const run = runTrain(out, args, { kind: 'signal', when: poll });
  const r = await run;
  stop = true;
  return r;
}

test.run();
