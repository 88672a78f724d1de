// Starting a run from another checkpoint's parameters without their optimizer state
// (`capsnet train --init-from`, Trainer.estimateAdamMoments): the moments are estimated from a few
// batches at learning rate 0 and rescaled to what an Adam running since step 0 would hold. Checked
// here against moments computed on the host from each batch's gradients, and the CLI end to end:
// the run starts at the checkpoint's step (or --start-step), the parameters it starts from are the
// file's, it resumes like any run, and bad combinations of flags are refused with nothing written.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './helpers/gpu.ts';
import { makeRng } from './helpers/random.ts';
import { runCli, runCliInterrupted } from './helpers/cli.ts';
import type { Dataset } from '../src/data/dataset.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { backward } from '../src/autograd/tape.ts';
import { CapsNet, oneHotTargets } from '../src/model/capsnet.ts';
import { Adam } from '../src/optim/adam.ts';
import { TrainingBatches } from '../src/train/batches.ts';
import { Trainer } from '../src/train/trainer.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint-file.ts';
import { readMetrics } from '../src/io/metrics.ts';

const test = suite('init-from');

async function rejects(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const error = await promise.then(() => null, (e: unknown) => e);
  assert.ok(error instanceof Error, 'expected a rejection');
  assert.match((error as Error).message, message);
}

const TINY_CAPSNET = { conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] };

function randomData(): Dataset {
  const rng = makeRng(23);
  const count = 40;
  return {
    images: Uint8Array.from({ length: count * 784 }, () => Math.floor(rng() * 256)),
    labels: Uint8Array.from({ length: count }, (_, i) => (i * 7) % 10),
    count, height: 28, width: 28, channels: 1,
  };
}

let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-init-from-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

test('estimateAdamMoments: the moments of the batches of steps S-K..S-1, rescaled to step S; parameters unchanged', async () => {
  const ctx = await gpu();
  const pool0 = ctx.poolStats().inUse;
  const [S, K, B] = [37, 3, 8];
  const model = CapsNet.create(ctx, TINY_CAPSNET, 5);
  const batches = new TrainingBatches(randomData(), B, 9, 2);
  const before = await model.exportParams();

  // The host's reference: each batch's gradient, then m = (1 - b1^S) / (1 - b1^K) * EMA_b1(g), v likewise with g^2.
  const grads: Array<Record<string, Float32Array>> = [];
  const images = new Float32Array(B * 784);
  const labels = new Int32Array(B);
  for (let k = 0; k < K; k++) {
    batches.fill(S - K + k, images, labels);
    const g: Record<string, Float32Array> = {};
    const pending: Array<[string, Promise<Float32Array>]> = [];
    tidy(() => {
      const x = fromArray(ctx, [B, 1, 28, 28], images, 'images');
      const y = fromArray(ctx, [B], Float32Array.from(labels), 'labels');
      const out = model.loss(x, y, oneHotTargets(ctx, labels, 10));
      backward(out.loss);
      for (const p of model.parameterList()) pending.push([p.name, p.grad!.read()]);
    });
    for (const [name, read] of pending) g[name] = await read;
    for (const p of model.parameterList()) {
      p.grad?.dispose();
      p.grad = null;
    }
    grads.push(g);
  }

  const adam = new Adam(ctx);
  const trainer = new Trainer(ctx, model, adam, batches, 2, { evalBatchSize: 4 });
  let progress = 0;
  await trainer.estimateAdamMoments(S, K, { onProgress: (n) => (progress = n) });
  assert.is(progress, K);
  assert.is(adam.stepCount, S);
  const state = await adam.exportState();
  const after = await model.exportParams();
  for (const name of Object.keys(before)) {
    assert.ok(Buffer.from(before[name].buffer).equals(Buffer.from(after[name].buffer)), `${name} changed at learning rate 0`);
  }
  const { beta1: b1, beta2: b2 } = adam;
  let checked = 0;
  for (const name of Object.keys(before)) {
    const n = before[name].length;
    for (let i = 0; i < n; i++) {
      let m = 0;
      let v = 0;
      for (let k = 0; k < K; k++) {
        const g = grads[k][name][i];
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
      }
      const mRef = ((1 - b1 ** S) / (1 - b1 ** K)) * m;
      const vRef = ((1 - b2 ** S) / (1 - b2 ** K)) * v;
      const [mGpu, vGpu] = [state.m[name][i], state.v[name][i]];
      if (!(Math.abs(mGpu - mRef) <= 1e-9 + 1e-4 * Math.abs(mRef))) assert.unreachable(`adam.m.${name}[${i}]: ${mGpu} vs ${mRef}`);
      if (!(Math.abs(vGpu - vRef) <= 1e-14 + 1e-4 * Math.abs(vRef))) assert.unreachable(`adam.v.${name}[${i}]: ${vGpu} vs ${vRef}`);
      checked++;
    }
  }
  assert.ok(checked > 1000);
  // Not vacuous: the gradients (and so the moments) are not all zero.
  assert.ok(Object.values(state.v).some((a) => a.some((x) => x > 0)));

  await rejects(trainer.estimateAdamMoments(S, K), /already done 37 updates/);
  trainer.dispose();
  adam.dispose();
  model.dispose();
  assert.is(ctx.poolStats().inUse, pool0, 'pool buffers leaked');
});

test('estimateAdamMoments with the same gradient every step holds what an Adam at learning rate 0 holds after S steps', async () => {
  // Batch = the whole (8-image) set and no shifts: every step's gradient is the same (up to the
  // order of summation), so a real Adam run from step 0 holds m = (1 - b1^S) g, v = (1 - b2^S) g^2:
  // an independent check of the rescaling.
  const ctx = await gpu();
  const data = { ...randomData(), count: 8 };
  data.images = data.images.subarray(0, 8 * 784);
  data.labels = data.labels.subarray(0, 8);
  const S = 12;
  const run = async (estimate: boolean) => {
    const model = CapsNet.create(ctx, TINY_CAPSNET, 5);
    const adam = new Adam(ctx, { lr: 0 });
    const trainer = new Trainer(ctx, model, adam, new TrainingBatches(data, 8, 9, 0), S, { warmUp: false });
    if (estimate) assert.ok(await trainer.estimateAdamMoments(S, 3));
    else await trainer.run(0, S);
    const state = await adam.exportState();
    trainer.dispose();
    adam.dispose();
    model.dispose();
    return state;
  };
  const [real, estimated] = [await run(false), await run(true)];
  assert.is(real.step, S);
  assert.is(estimated.step, S);
  for (const name of Object.keys(real.m)) {
    for (const which of ['m', 'v'] as const) {
      const [a, b] = [estimated[which][name], real[which][name]];
      for (let i = 0; i < a.length; i++) {
        if (!(Math.abs(a[i] - b[i]) <= (which === 'm' ? 1e-9 : 1e-15) + 1e-3 * Math.abs(b[i]))) assert.unreachable(`adam.${which}.${name}[${i}]: estimated ${a[i]}, Adam's ${b[i]}`);
      }
    }
  }
});

test('estimateAdamMoments stops between batches when asked, importing nothing', async () => {
  const ctx = await gpu();
  const model = CapsNet.create(ctx, TINY_CAPSNET, 5);
  const adam = new Adam(ctx);
  const trainer = new Trainer(ctx, model, adam, new TrainingBatches(randomData(), 8, 9, 2), 2, { warmUp: false });
  let done = 0;
  assert.is(await trainer.estimateAdamMoments(10, 5, { onProgress: (n) => (done = n), shouldStop: () => done >= 2 }), false);
  assert.is(done, 2);
  assert.is(adam.stepCount, 0);
  trainer.dispose();
  adam.dispose();
  model.dispose();
});

test('estimateAdamMoments refuses step 0 (the moments are zero there) and a count below 1', async () => {
  const ctx = await gpu();
  const model = CapsNet.create(ctx, TINY_CAPSNET, 5);
  const adam = new Adam(ctx);
  const trainer = new Trainer(ctx, model, adam, new TrainingBatches(randomData(), 8, 9, 2), 2, { warmUp: false });
  await rejects(trainer.estimateAdamMoments(0, 3), /fromStep must be an integer >= 1/);
  await rejects(trainer.estimateAdamMoments(5, 0), /count must be an integer >= 1/);
  assert.is(adam.stepCount, 0);
  trainer.dispose();
  adam.dispose();
  model.dispose();
});

const TINY = JSON.stringify(TINY_CAPSNET);
const BASE = ['--limit', '64', '--batch-size', '8', '--log-every', '2', '--no-eval'];

/** A model-only F16 checkpoint of a tiny CapsNet at `step` (as tools/export-web-model.ts writes for the web app). */
async function modelOnlyCheckpoint(name: string, step: number): Promise<{ path: string; params: Record<string, Float32Array> }> {
  const trained = join(root, `${name}-trained`);
  const r = await runCli(['train', '--out', trained, '--steps', '2', ...BASE, '--config', TINY]);
  assert.is(r.code, 0, r.stderr);
  const ckpt = await loadCheckpoint(join(trained, 'checkpoint.safetensors'));
  const path = join(root, `${name}.safetensors`);
  await saveCheckpoint(path, { config: ckpt.config, params: ckpt.params, step }, { half: true });
  return { path, params: (await loadCheckpoint(path)).params };
}

test('capsnet train --init-from: starts at the file\'s step from its parameters, estimates the moments, resumes like any run', async () => {
  const { path, params } = await modelOnlyCheckpoint('shipped', 5);
  const out = join(root, 'continued');
  const r = await runCli(['train', '--out', out, '--init-from', path, '--steps', '8', '--moment-steps', '2', '--checkpoint-every', '1', ...BASE]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /steps 6\.\.8/);
  assert.match(r.stderr, /moments estimated from 2 batches/);
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  assert.equal(records.filter((m) => m.type === 'train').map((m) => m.step), [6, 7, 8]);
  const start = records.find((m) => m.type === 'start') as { initFrom?: Record<string, unknown> };
  assert.equal(start.initFrom, { file: path, step: 5, startStep: 5, adam: 'estimated from 2 batches' });
  assert.ok(records.some((m) => m.type === 'moments' && m.batches === 2));
  const ckpt = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(ckpt.step, 8);
  assert.is(ckpt.optimizer?.step, 8);
  assert.equal((ckpt.training as { initFrom?: unknown }).initFrom, start.initFrom);
  assert.is(ckpt.config.conv1Channels, 8);

  // The first step started from the file's parameters: with a learning rate of 1e-30 (--lr must
  // be > 0) one update moves no weight by more than about 1e-30.
  const frozen = join(root, 'frozen');
  const z = await runCli(['train', '--out', frozen, '--init-from', path, '--steps', '6', '--lr', '1e-30', '--moment-steps', '1', ...BASE]);
  assert.is(z.code, 0, z.stderr);
  const kept = await loadCheckpoint(join(frozen, 'checkpoint.safetensors'));
  for (const name of Object.keys(params)) {
    const [a, b] = [kept.params[name], params[name]];
    for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i] - b[i]) <= 1e-25)) assert.unreachable(`${name}[${i}] = ${a[i]}, the file's ${b[i]}`);
  }

  // Resuming keeps the record of where the run came from, and continues bitwise as an uninterrupted run.
  const resumed = await runCli(['train', '--out', out, '--resume', '--steps', '9', ...BASE]);
  assert.is(resumed.code, 0, resumed.stderr);
  const again = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(again.step, 9);
  assert.equal((again.training as { initFrom?: unknown }).initFrom, start.initFrom);
  const straight = join(root, 'straight');
  assert.is((await runCli(['train', '--out', straight, '--init-from', path, '--steps', '9', '--moment-steps', '2', ...BASE])).code, 0);
  const uninterrupted = await loadCheckpoint(join(straight, 'checkpoint.safetensors'));
  for (const name of Object.keys(params)) {
    assert.ok(Buffer.from(uninterrupted.params[name].buffer).equals(Buffer.from(again.params[name].buffer)), `${name}: resumed differs from uninterrupted`);
    assert.ok(Buffer.from(uninterrupted.optimizer!.v[name].buffer).equals(Buffer.from(again.optimizer!.v[name].buffer)), `adam.v.${name}: resumed differs from uninterrupted`);
  }

  // No --steps or --epochs: one epoch more (64 images of 8: 8 steps).
  const more = await runCli(['train', '--out', join(root, 'one-more'), '--init-from', path, '--moment-steps', '1', ...BASE]);
  assert.is(more.code, 0, more.stderr);
  assert.match(more.stderr, /steps 6\.\.13/);

  // --start-step 0: a fresh start (fine-tuning), nothing to estimate.
  const fresh = join(root, 'fresh');
  const f = await runCli(['train', '--out', fresh, '--init-from', path, '--start-step', '0', '--steps', '2', ...BASE]);
  assert.is(f.code, 0, f.stderr);
  assert.match(f.stderr, /steps 1\.\.2/);
  assert.not.match(f.stderr, /moments estimated/);
});

test('capsnet train --init-from a training checkpoint: its recipe and Adam state carry on, bitwise as --resume', async () => {
  const source = join(root, 'source');
  const recipe = ['--limit', '48', '--batch-size', '8', '--seed', '7', '--lr', '0.002', '--log-every', '2', '--no-eval'];
  assert.is((await runCli(['train', '--out', source, '--steps', '2', '--config', TINY, ...recipe])).code, 0);
  const fork = join(root, 'fork');
  const f = await runCli(['train', '--out', fork, '--init-from', join(source, 'checkpoint.safetensors'), '--steps', '4', '--no-eval']);
  assert.is(f.code, 0, f.stderr);
  assert.match(f.stderr, /48 training images, batch 8/);
  assert.not.match(f.stderr, /moments estimated/);
  const forked = await loadCheckpoint(join(fork, 'checkpoint.safetensors'));
  const options = (forked.training as { options: Record<string, unknown> }).options;
  assert.equal([options.seed, options.batchSize, options.lr, options.limit], [7, 8, 0.002, 48]);
  assert.is((forked.training as { initFrom: { adam: string } }).initFrom.adam, 'from the file');
  assert.is((await runCli(['train', '--out', source, '--resume', '--steps', '4', '--no-eval'])).code, 0);
  const resumed = await loadCheckpoint(join(source, 'checkpoint.safetensors'));
  for (const name of Object.keys(resumed.params)) {
    assert.ok(Buffer.from(resumed.params[name].buffer).equals(Buffer.from(forked.params[name].buffer)), `${name}: the fork differs from the resumed run`);
  }
  // A flag given changes the inherited recipe (and the fork is then no longer the same run).
  const other = join(root, 'other-seed');
  const o = await runCli(['train', '--out', other, '--init-from', join(source, 'checkpoint.safetensors'), '--start-step', '2', '--steps', '3', '--seed', '8', '--no-eval']);
  assert.is(o.code, 0, o.stderr);
  assert.is(((await loadCheckpoint(join(other, 'checkpoint.safetensors'))).training as { options: { seed: number } }).options.seed, 8);
  // The file (now at step 4) has Adam's state for the step the run starts at: --moment-steps has nothing to do.
  const refused = join(root, 'refused-moments');
  const r = await runCli(['train', '--out', refused, '--init-from', join(source, 'checkpoint.safetensors'), '--steps', '5', '--moment-steps', '3']);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /--moment-steps: nothing to estimate: .* holds Adam's state for step 4/);
  assert.not.ok(existsSync(refused));
});

test('capsnet train --init-from: bad combinations are refused with exit code 2 and nothing written', async () => {
  const { path } = await modelOnlyCheckpoint('bad', 5);
  const cases: Array<[string[], RegExp]> = [
    [['--init-from', join(root, 'missing.safetensors'), '--steps', '8'], /--init-from: .*missing\.safetensors/],
    [['--init-from', path, '--steps', '5'], /start at step 6 .*past the 5 steps asked/],
    [['--init-from', path, '--steps', '8', '--config', TINY], /--init-from: the model config comes from the checkpoint/],
    [['--init-from', path, '--steps', '8', '--model', 'baseline'], /holds a capsnet model, not --model baseline/],
    [['--init-from', path, '--steps', '8', '--moment-steps', '0'], /--moment-steps/],
    [['--start-step', '3', '--steps', '8'], /--start-step goes with --init-from/],
    [['--init-from', path, '--start-step=-1', '--steps', '8'], /--start-step.*integer/],
    [['--init-from', path, '--start-step', '1.5', '--steps', '8'], /--start-step.*integer/],
    [['--init-from', path, '--start-step', '0', '--moment-steps', '5', '--steps', '8'], /nothing to estimate: the run starts at step 0/],
  ];
  for (const [flags, message] of cases) {
    const out = join(root, 'refused');
    const r = await runCli(['train', '--out', out, ...flags, ...BASE]);
    assert.is(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.not.ok(existsSync(out), `${flags.join(' ')} wrote ${out}`);
  }
  // With --resume: one or the other.
  const run = join(root, 'a-run');
  assert.is((await runCli(['train', '--out', run, '--steps', '2', ...BASE, '--config', TINY])).code, 0);
  const r = await runCli(['train', '--out', run, '--resume', '--init-from', path, '--steps', '8', ...BASE]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /give one of them/);
});

test('capsnet train --init-from, Ctrl-C while estimating the moments: says nothing was trained or saved, and the same command then runs', async () => {
  const { path } = await modelOnlyCheckpoint('interrupted', 600);
  const out = join(root, 'interrupted-run');
  const args = ['train', '--out', out, '--init-from', path, '--steps', '602', '--moment-steps', '600', ...BASE];
  // SIGINT as soon as the kernels are compiled: the estimate (600 batches) has barely begun.
  const stopped = await runCliInterrupted(args, /pipelines created/);
  assert.ok(stopped.signalled, stopped.stderr);
  assert.is(stopped.code, 130, stopped.stderr);
  assert.match(stopped.stderr, /stopped while estimating Adam's moments: nothing trained, nothing saved/);
  assert.not.match(stopped.stderr, /train done/, 'no progress line for a training that never began');
  assert.not.match(stopped.stderr, /steps in .*; checkpoint/, 'no summary naming a checkpoint that was not written');
  assert.not.ok(readdirSync(out).includes('checkpoint.safetensors'));
  // "Run the same command again": a few steps from the same file start over in the same folder.
  const again = await runCli(['train', '--out', out, '--init-from', path, '--steps', '602', '--moment-steps', '2', ...BASE]);
  assert.is(again.code, 0, again.stderr);
  assert.is((await loadCheckpoint(join(out, 'checkpoint.safetensors'))).step, 602);
});

test.run();
