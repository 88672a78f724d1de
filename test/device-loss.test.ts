// A GPU lost mid-run (ctx.device.destroy(), as a driver reset does) and a WebGPU validation error
// injected into a step (issue 10): `capsnet train` says what happened and the exact command that
// continues, writes nothing from the GPU after the failure (the last checkpoint stays intact and
// finite), logs the failure, and `--resume` then ends with bitwise the same parameters as an
// uninterrupted run. Child processes (the shared test device must never be destroyed), via the
// test-only --inject-fault hook (src/train/faults.ts). Then in process: a validation error reaches
// Trainer.run as a GpuValidationError and leaves the device usable.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { gpu } from './helpers/gpu.ts';
import { readMetrics } from '../src/io/metrics.ts';
import { loadCheckpoint } from '../src/io/checkpoint-file.ts';
import { GpuValidationError } from '../src/gpu/errors.ts';
import { fromArray } from '../src/tensor.ts';
import { CapsNet } from '../src/model/capsnet.ts';
import { Adam } from '../src/optim/adam.ts';
import { TrainingBatches } from '../src/train/batches.ts';
import { Trainer } from '../src/train/trainer.ts';
import { faultHooks, parseFaults } from '../src/train/faults.ts';

const TINY = JSON.stringify({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] });
const FLAGS = ['--limit', '64', '--batch-size', '8', '--log-every', '2', '--checkpoint-every', '2', '--no-eval'];

let root = '';
const lost = suite('lost device and validation errors in training', {});
lost.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-device-loss-'));
});
lost.after(() => rmSync(root, { recursive: true, force: true }));

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function assertSameRun(a: string, b: string): Promise<void> {
  const [x, y] = [await loadCheckpoint(join(a, 'checkpoint.safetensors')), await loadCheckpoint(join(b, 'checkpoint.safetensors'))];
  assert.is(x.step, y.step);
  for (const name of Object.keys(x.params)) {
    assert.ok(bytes(x.params[name]).equals(bytes(y.params[name])), `${name} differs`);
    assert.ok(bytes(x.optimizer!.v[name]).equals(bytes(y.optimizer!.v[name])), `adam.v.${name} differs`);
  }
}

/** The fault at `step` stops the run with `pattern`; the step-2 checkpoint stays; --resume then matches `straight`. */
async function faultThenResume(name: string, fault: string, kind: string, pattern: RegExp, straight: string): Promise<void> {
  const out = join(root, name);
  const r = await runCli(['train', '--out', out, '--steps', '6', ...FLAGS, '--config', TINY, '--inject-fault', fault]);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.match(r.stderr, new RegExp(`The checkpoint in \\S+ is from step 2 and intact; continue from it with:\\n  capsnet train --out ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} --resume`));
  assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  const kept = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(kept.step, 2, 'the last checkpoint is the one before the failure');
  for (const [p, values] of Object.entries(kept.params)) assert.ok(values.every(Number.isFinite), `${p} is finite`);
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  const error = records.find((m) => m.type === 'error');
  assert.ok(error, 'the failure is in the metrics log');
  assert.is(error!.step, 3);
  assert.is(error!.kind, kind);
  // The resumed run rewrites the log from its checkpoint's step on (the failure's record goes too).
  const resumed = await runCli(['train', '--out', out, '--steps', '6', '--resume', ...FLAGS]);
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /steps 3\.\.6 \(resumed\)/);
  await assertSameRun(straight, out);
  const after = await readMetrics(join(out, 'metrics.jsonl'));
  assert.equal(after.records.filter((m) => m.type === 'train').map((m) => m.step), [1, 2, 3, 4, 5, 6], 'steps logged once each');
}

lost('a device lost at step 3: a clear message, the step-2 checkpoint kept, --resume ends bitwise like an uninterrupted run', async () => {
  const straight = join(root, 'straight');
  const r = await runCli(['train', '--out', straight, '--steps', '6', ...FLAGS, '--config', TINY]);
  assert.is(r.code, 0, r.stderr);
  await faultThenResume('lost', 'device-loss@3', 'GpuDeviceLostError', /capsnet train: the GPU device was lost at step 3 \(destroyed: [^)]*\)\. A driver reset/, straight);
});

lost('a validation error in step 3: the WebGPU message, the step-2 checkpoint kept, --resume ends bitwise like an uninterrupted run', async () => {
  await faultThenResume('invalid', 'validation-error@3', 'GpuValidationError',
    /capsnet train: WebGPU rejected the commands at step 3:\nrunning kernels \[.*injected fault: aliasing writable bindings\]: [^\n]*aliasing[\s\S]*cannot be trusted, so nothing more was saved/,
    join(root, 'straight'));
});

lost('in process: a validation error reaches Trainer.run as a GpuValidationError naming the step\'s kernels; the device stays usable', async () => {
  const ctx = await gpu();
  const model = CapsNet.create(ctx, JSON.parse(TINY), 2);
  const adam = new Adam(ctx);
  const data = {
    images: new Uint8Array(16 * 784).fill(100), labels: Uint8Array.from({ length: 16 }, (_, i) => i % 10), count: 16, height: 28, width: 28, channels: 1,
  };
  const trainer = new Trainer(ctx, model, adam, new TrainingBatches(data, 8, 1, 0), 2);
  const injected = faultHooks(ctx, parseFaults('validation-error@2'), model.params);
  try {
    const error = await trainer.run(0, 3, injected).then(() => null, (e: Error) => e);
    assert.ok(error instanceof GpuValidationError, `expected a GpuValidationError, got ${error}`);
    assert.match(error!.message, /adam x\d+, injected fault: aliasing writable bindings\]/);
    assert.is(trainer.currentStep, 1, 'it failed in step 2 (0-based 1)');
    const t = fromArray(ctx, [3], [1, 2, 3]);
    assert.equal(Array.from(await t.read()), [1, 2, 3], 'the device still works');
    t.dispose();
  } finally {
    injected.dispose();
    trainer.dispose();
    adam.dispose();
    model.dispose();
  }
});

lost.run();
