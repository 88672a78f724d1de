// Weight averaging (src/io/checkpoint-average.ts, `capsnet average`): every parameter of the result
// is the mean of the members' (checked element by element against a plain f64 mean), the result is
// a checkpoint that eval reads and scores, and what must not be averaged is refused (exit 2,
// naming the file and what differs, nothing written): another model kind or config, another task,
// the output path being one of the inputs. Members: tiny networks initialised from different seeds
// (their parameters differ everywhere, so a wrong mean cannot pass).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { loadAnyCheckpoint, saveCheckpoint } from '../src/io/checkpoint-file.ts';
import { averageCheckpoints } from '../src/io/checkpoint-average.ts';
import * as library from '../src/library.ts';
import type { AnyCheckpoint, Checkpoint } from '../src/io/checkpoint.ts';
import { initialParameters } from '../src/model/capsnet.ts';
import { makeConfig } from '../src/model/config.ts';
import { baselineInitialParameters } from '../src/model/baseline.ts';
import { makeBaselineConfig } from '../src/model/baseline-config.ts';

const test = suite('checkpoint averaging', {});
let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-average-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

const TINY = { conv1Channels: 8, primaryTypes: 2, decoderHidden: [16, 16] };
const OPTIONS = { experiment: 'mnist', testSeed: 1, maxShift: 2, seed: 7, batchSize: 8, lr: 1e-3, decayRate: 0.96, decaySteps: 2000, validation: 0, totalSteps: 100 };

function capsnet(seed: number, step: number, overrides: Record<string, unknown> = {}, options: Record<string, unknown> = OPTIONS): Checkpoint {
  const config = makeConfig({ ...TINY, ...overrides });
  return { config, params: initialParameters(config, seed, 0.5), step, training: { options } };
}

async function write(name: string, ckpt: AnyCheckpoint): Promise<string> {
  const path = join(root, name);
  await saveCheckpoint(path, ckpt);
  return path;
}

/** The f64 mean of each parameter, rounded to f32 once. */
function expectedMean(members: AnyCheckpoint[]): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const name of Object.keys(members[0].params)) {
    out[name] = Float32Array.from(members[0].params[name], (_, i) => members.reduce((s, m) => s + m.params[name][i], 0) / members.length);
  }
  return out;
}

test('averageCheckpoints: each parameter is the element-wise mean; step, options and members from the inputs; no Adam state', () => {
  const a = capsnet(1, 300);
  const b = capsnet(2, 500, {}, { ...OPTIONS, totalSteps: 500 });
  const c = capsnet(3, 400);
  a.optimizer = { step: 300, m: a.params, v: a.params };
  const avg = averageCheckpoints([{ source: 'a', ckpt: a }, { source: 'b', ckpt: b }, { source: 'c', ckpt: c }]);
  const want = expectedMean([a, b, c]);
  assert.equal(Object.keys(avg.params).sort(), Object.keys(a.params).sort());
  for (const name of Object.keys(want)) {
    assert.ok(a.params[name].some((x, i) => x !== b.params[name][i]) || a.params[name].every((x) => x === 0), `${name}: members differ`);
    assert.equal(Array.from(avg.params[name]), Array.from(want[name]), name);
  }
  assert.is(avg.optimizer, undefined);
  assert.is(avg.step, 500, 'the latest member\'s step');
  assert.equal(avg.training, { options: b.training!.options, averaged: [{ file: 'a', step: 300 }, { file: 'b', step: 500 }, { file: 'c', step: 400 }] });
  // The latest member with run options and an origin gives them; `file` is what the metadata records.
  const d: Checkpoint = { ...capsnet(4, 600), training: undefined };
  c.training = { options: c.training!.options, initFrom: { file: '/runs/start.safetensors', step: 2 } };
  const mixed = averageCheckpoints([{ source: 'c', ckpt: c }, { source: 'd', file: '/abs/d', ckpt: d }]);
  assert.is(mixed.step, 600);
  assert.equal(mixed.training, { options: OPTIONS, initFrom: { file: '/runs/start.safetensors', step: 2 }, averaged: [{ file: 'c', step: 400 }, { file: '/abs/d', step: 600 }] });
  assert.equal(avg.config, a.config);
  // Inputs untouched.
  assert.equal(Array.from(a.params['digit.W'].subarray(0, 4)), Array.from(initialParameters(a.config, 1, 0.5)['digit.W'].subarray(0, 4)));
});

test('the library exports averageCheckpoints and CheckpointError (Node and browser share src/library.ts)', () => {
  assert.is(library.averageCheckpoints, averageCheckpoints);
  assert.type(library.CheckpointError, 'function');
});

test('averageCheckpoints: the baseline CNN averages too and stays a baseline checkpoint', () => {
  const config = makeBaselineConfig({ convChannels: [4, 4, 4], fcHidden: [16, 8] });
  const members = [1, 2].map((seed) => ({ model: 'baseline' as const, config, params: baselineInitialParameters(config, seed), step: seed }));
  const avg = averageCheckpoints(members.map((ckpt, i) => ({ source: `m${i}`, ckpt })));
  assert.is(avg.model, 'baseline');
  const want = expectedMean(members);
  for (const name of Object.keys(want)) assert.equal(Array.from(avg.params[name]), Array.from(want[name]), name);
});

test('averageCheckpoints refuses one member, another model kind, another config (naming the field) and non-finite parameters', () => {
  const a = capsnet(1, 10);
  assert.throws(() => averageCheckpoints([{ source: 'a', ckpt: a }]), /1 checkpoint given, at least 2 needed/);
  const config = makeBaselineConfig({ convChannels: [4, 4, 4], fcHidden: [16, 8] });
  const baseline: AnyCheckpoint = { model: 'baseline', config, params: baselineInitialParameters(config, 1), step: 1 };
  assert.throws(() => averageCheckpoints([{ source: 'a', ckpt: a }, { source: 'b', ckpt: baseline }]), /b: holds a baseline model, a a capsnet model/);
  assert.throws(() => averageCheckpoints([{ source: 'a', ckpt: a }, { source: 'b', ckpt: capsnet(2, 10, { primaryTypes: 3 }) }]), /b: config field 'primaryTypes' is 3, a's 2/);
  const nan = capsnet(3, 20);
  nan.params['digit.W'][5] = NaN;
  nan.params['digit.W'][9] = Infinity;
  assert.throws(() => averageCheckpoints([{ source: 'a', ckpt: a }, { source: 'n', ckpt: nan }]), /n: parameter 'digit\.W' holds 2 NaN or infinite values/);
});

test('capsnet average: writes a checkpoint eval reads; its parameters are the mean; --half stores F16', async () => {
  const members = [capsnet(1, 100), capsnet(2, 200), capsnet(3, 300)];
  const paths = await Promise.all(members.map((m, i) => write(`run-${i}.safetensors`, m)));
  const out = join(root, 'avg.safetensors');
  const r = await runCli(['average', ...paths.flatMap((p) => ['--checkpoint', p]), '--out', out]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /mean of 3 checkpoints' parameters \(steps 100, 200, 300\)/);
  assert.not.match(r.stderr, /different seeds/);
  const avg = await loadAnyCheckpoint(out);
  const want = expectedMean(members);
  for (const name of Object.keys(want)) assert.equal(Array.from(avg.params[name]), Array.from(want[name]), name);
  assert.is(avg.step, 300);
  assert.is(avg.optimizer, undefined);
  assert.equal((avg.training as { averaged: unknown }).averaged, paths.map((file, i) => ({ file, step: 100 * (i + 1) })), 'members by absolute path');
  const e = await runCli(['eval', '--checkpoint', out, '--limit', '16', '--batch-size', '8']);
  assert.is(e.code, 0, e.stderr);
  assert.match(e.stdout, /accuracy [0-9.]+%.*16 test images, step 300, the mean of 3 checkpoints\)/);

  const half = join(root, 'avg-half.safetensors');
  const h = await runCli(['average', ...paths.flatMap((p) => ['--checkpoint', p]), '--out', half, '--half']);
  assert.is(h.code, 0, h.stderr);
  assert.ok(statSync(half).size < 0.6 * statSync(out).size, 'F16 is about half the size');
  const halfParams = (await loadAnyCheckpoint(half)).params;
  for (const name of Object.keys(want)) {
    want[name].forEach((x, i) => {
      if (Math.abs(halfParams[name][i] - x) > 1e-3 * Math.abs(x) + 1e-7) assert.unreachable(`${name}[${i}]: F16 ${halfParams[name][i]} vs ${x}`);
    });
  }
  // F16 members (e.g. exported models) average as the values they hold.
  const halfMembers = await Promise.all(members.map(async (m, i) => {
    const path = join(root, `half-${i}.safetensors`);
    await saveCheckpoint(path, m, { half: true });
    return path;
  }));
  const fromHalf = join(root, 'avg-from-half.safetensors');
  const f = await runCli(['average', ...halfMembers.flatMap((p) => ['--checkpoint', p]), '--out', fromHalf]);
  assert.is(f.code, 0, f.stderr);
  const decoded = await Promise.all(halfMembers.map((p) => loadAnyCheckpoint(p)));
  const wantHalf = expectedMean(decoded);
  const gotHalf = (await loadAnyCheckpoint(fromHalf)).params;
  for (const name of Object.keys(wantHalf)) assert.equal(Array.from(gotHalf[name]), Array.from(wantHalf[name]), `${name} from F16 members`);
});

test('capsnet average refuses (exit 2, nothing written) what must not be averaged, and warns about different seeds', async () => {
  const a = await write('ref.safetensors', capsnet(1, 10));
  const cases: Array<[string, string[], RegExp]> = [
    ['one checkpoint', ['--checkpoint', a], /at least two --checkpoint FILE \(got 1\)/],
    ['no --out', ['--checkpoint', a, '--checkpoint', a], /--out FILE is required/],
    ['the same file twice', ['--checkpoint', a, '--checkpoint', join(root, '.', 'ref.safetensors')], /--checkpoint .*ref\.safetensors is given twice/],
    ['config', ['--checkpoint', a, '--checkpoint', await write('types3.safetensors', capsnet(2, 10, { primaryTypes: 3 }))], /types3\.safetensors: config field 'primaryTypes' is 3, .*ref\.safetensors's 2/],
    ['experiment', ['--checkpoint', a, '--checkpoint', await write('fashion.safetensors', capsnet(3, 10, {}, { ...OPTIONS, experiment: 'fashion-mnist' }))], /capsnet average: .*fashion\.safetensors: experiment fashion-mnist differs from .*ref\.safetensors's mnist; the checkpoints of an average must/],
    ['not a checkpoint', ['--checkpoint', a, '--checkpoint', join(root, 'missing.safetensors')], /capsnet average: .*missing\.safetensors/],
  ];
  for (const [what, args, message] of cases) {
    const out = join(root, `refused-${what.replace(/ /g, '-')}.safetensors`);
    const r = await runCli(['average', ...args, ...(what === 'no --out' ? [] : ['--out', out])]);
    assert.is(r.code, 2, `${what}: ${r.stderr}`);
    assert.match(r.stderr, message, what);
    assert.not.ok(existsSync(out), `${what}: nothing written`);
  }
  // The output replacing an input would lose that checkpoint.
  const before = statSync(a).mtimeMs;
  const same = await runCli(['average', '--checkpoint', a, '--checkpoint', await write('other.safetensors', capsnet(4, 20)), '--out', a]);
  assert.is(same.code, 2);
  assert.match(same.stderr, /--out .*ref\.safetensors is also a --checkpoint/);
  assert.is(statSync(a).mtimeMs, before, 'the input is untouched');
  // Nor a run's resumable checkpoint.
  const runDir = join(root, 'a-run');
  mkdirSync(runDir);
  const runCheckpoint = await write('a-run/checkpoint.safetensors', capsnet(6, 30));
  const runBefore = readFileSync(runCheckpoint);
  const overRun = await runCli(['average', '--checkpoint', a, '--checkpoint', await write('other2.safetensors', capsnet(7, 20)), '--out', runCheckpoint]);
  assert.is(overRun.code, 2);
  assert.match(overRun.stderr, /would replace a run's checkpoint/);
  assert.ok(readFileSync(runCheckpoint).equals(runBefore));
  // Different seeds: averaged (a user may know better) with a warning saying why it is unusual.
  const other = await write('seed8.safetensors', capsnet(5, 20, {}, { ...OPTIONS, seed: 8 }));
  const warned = await runCli(['average', '--checkpoint', a, '--checkpoint', other, '--out', join(root, 'seeds.safetensors')]);
  assert.is(warned.code, 0, warned.stderr);
  assert.match(warned.stderr, /warning: the checkpoints come from runs with different seeds \(.*ref\.safetensors: 7, .*seed8\.safetensors: 8\)/);
});

test.run();
