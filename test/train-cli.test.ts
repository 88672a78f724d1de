// `capsnet train / eval / figures` end to end, as a user runs them, on small budgets: the files
// they promise, exact resume, bad flags, a NaN stop that keeps the last good checkpoint, and a
// short real run on MNIST that must learn.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { runCli, runCliInterrupted } from './helpers/cli.ts';
import { readMetrics } from '../src/io/metrics.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint-file.ts';
import { decodePng } from '../src/io/png.ts';
import { RUN_LOCK_FILE, reachesAccuracy } from '../src/cli/train.ts';
import { curves } from '../src/cli/figures.ts';

const TINY = JSON.stringify({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] });
const BASE = ['--limit', '64', '--batch-size', '8', '--log-every', '2', '--eval-limit', '40', '--config', TINY];

let root = '';
const cli = suite('capsnet train / eval / figures', {});
cli.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-cli-'));
});
cli.after(() => rmSync(root, { recursive: true, force: true }));

cli('train writes a checkpoint and a metrics log, evaluates, and exits 0', async () => {
  const out = join(root, 'run');
  const r = await runCli(['train', '--out', out, '--steps', '4', ...BASE]);
  assert.is(r.code, 0, r.stderr);
  const ckpt = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(ckpt.step, 4);
  assert.is(ckpt.optimizer?.step, 4);
  assert.is(ckpt.config.conv1Channels, 8);
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  assert.equal(records.filter((m) => m.type === 'train').map((m) => m.step), [1, 2, 3, 4]);
  const evaluation = records.find((m) => m.type === 'eval') as { count: number; accuracy: number };
  assert.is(evaluation.count, 40);
  assert.ok(evaluation.accuracy >= 0 && evaluation.accuracy <= 1);
  assert.match(r.stderr, /test accuracy/);
  // The kernels were compiled before the first step, and the log says how many and how long.
  const startup = records.filter((m) => m.type === 'startup') as Array<{ step: number; pipelines: number; kernels: number; seconds: number }>;
  assert.is(startup.length, 1);
  assert.is(startup[0].step, 0);
  assert.ok(startup[0].pipelines > 10 && startup[0].kernels >= startup[0].pipelines && startup[0].seconds > 0, JSON.stringify(startup[0]));
  assert.match(r.stderr, new RegExp(`${startup[0].pipelines} pipelines created and compiled in`));
});

cli('a run stopped and resumed ends with bitwise the same parameters as an uninterrupted run', async () => {
  const straight = join(root, 'straight');
  const resumed = join(root, 'resumed');
  const flags = [...BASE, '--checkpoint-every', '3', '--no-eval'];
  assert.is((await runCli(['train', '--out', straight, '--steps', '6', ...flags])).code, 0);
  assert.is((await runCli(['train', '--out', resumed, '--steps', '3', ...flags])).code, 0);
  const r = await runCli(['train', '--out', resumed, '--steps', '6', '--resume', ...flags.filter((f) => f !== TINY && f !== '--config')]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /steps 4\.\.6 \(resumed\)/);
  const [a, b] = [await loadCheckpoint(join(straight, 'checkpoint.safetensors')), await loadCheckpoint(join(resumed, 'checkpoint.safetensors'))];
  assert.is(b.step, 6);
  for (const name of Object.keys(a.params)) {
    assert.ok(Buffer.from(a.params[name].buffer).equals(Buffer.from(b.params[name].buffer)), `${name} differs`);
    assert.ok(Buffer.from(a.optimizer!.m[name].buffer).equals(Buffer.from(b.optimizer!.m[name].buffer)), `adam.m.${name} differs`);
  }
  const { records } = await readMetrics(join(resumed, 'metrics.jsonl'));
  assert.equal(records.filter((m) => m.type === 'train').map((m) => m.step), [1, 2, 3, 4, 5, 6]);
});

cli('a finished run resumed is evaluated again: its evaluation replaces the last one (one eval record per set and step)', async () => {
  const out = join(root, 'finished');
  assert.is((await runCli(['train', '--out', out, '--steps', '2', ...BASE])).code, 0);
  const again = await runCli(['train', '--out', out, '--resume', ...BASE.filter((f, i, a) => f !== '--config' && a[i - 1] !== '--config')]);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stderr, /test accuracy/);
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  assert.equal(records.filter((m) => m.type === 'eval').map((m) => [m.step, m.split]), [[2, 'test']]);
  assert.equal(records.filter((m) => m.type === 'train').map((m) => m.step), [1, 2], 'the training records stay as they were');
});

cli('Ctrl-C during training: the step finishes, a checkpoint is saved, exit 130, and the message gives the --resume command', async () => {
  const out = join(root, 'interrupted');
  // SIGINT at the first progress line (10% of the steps), well inside training.
  const r = await runCliInterrupted(['train', '--out', out, '--steps', '5000', ...BASE, '--no-eval'], /\ntrain \d+\/40000 \(/);
  assert.ok(r.signalled, r.stderr);
  assert.is(r.code, 130, r.stderr);
  const ckpt = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.ok(ckpt.step >= 1 && ckpt.step < 5000, `saved at step ${ckpt.step}`);
  assert.match(r.stderr, new RegExp(`${ckpt.step} of 5000 steps in .*\\n.*stopped; continue with: capsnet train --out ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --resume\\n`));
});

cli('Ctrl-C during the final evaluation: the evaluation finishes, the run is complete (exit 0, not 130)', async () => {
  const out = join(root, 'ctrl-c-eval');
  // The whole MNIST test set: a few seconds for the tiny model, time for the signal to land in it.
  const args = ['train', '--out', out, '--steps', '1', ...BASE.filter((f, i, a) => f !== '--eval-limit' && a[i - 1] !== '--eval-limit')];
  const r = await runCliInterrupted(args, /train done:/);
  assert.match(r.stderr, /training is done and saved; the final evaluation finishes first/, 'the signal landed during the evaluation');
  assert.is(r.code, 0, r.stderr);
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  const evaluation = records.find((m) => m.type === 'eval') as { count: number } | undefined;
  assert.is(evaluation?.count, 10000);
});

cli('bad flags and files: exit code 2, a clear message, nothing written', async () => {
  const out = join(root, 'never');
  const aFile = join(root, 'a-file.png');
  writeFileSync(aFile, 'not a folder');
  const brokenLink = join(root, 'broken-link');
  symlinkSync(join(root, 'nowhere'), brokenLink);
  const badMetrics = join(root, 'bad-metrics.jsonl');
  writeFileSync(badMetrics, '{"type":"train","step":1}\ngarbage line\n');
  const runCheckpoint = join(root, 'run', 'checkpoint.safetensors');
  const cases: Array<[string[], RegExp]> = [
    [['train', '--out', aFile, '--steps', '1'], /--out .*a-file\.png: is a file; expected a folder/],
    [['train', '--out', join(aFile, 'run'), '--steps', '1'], /--out .*a-file\.png\/run: .*a-file\.png is a file, not a folder/],
    [['figures', '--checkpoint', runCheckpoint, '--out', aFile], /--out .*a-file\.png: is a file; expected a folder/],
    [['train', '--out', brokenLink, '--steps', '1'], /--out .*broken-link: is a broken symbolic link \(to .*nowhere\); expected a folder/],
    [['eval', '--checkpoint', runCheckpoint, '--output', join(brokenLink, 'x.json')], /--output .*x\.json: .*broken-link is a broken symbolic link \(to .*nowhere\), not a folder/],
    [['predict', '--checkpoint', runCheckpoint, '--image', aFile, '--inputs', aFile], /--inputs .*a-file\.png: is a file; expected a folder/],
    [['average', '--checkpoint', runCheckpoint, '--checkpoint', runCheckpoint, '--out', join(aFile, 'x.safetensors')], /--out .*x\.safetensors: .*a-file\.png is a file, not a folder/],
    [['eval', '--checkpoint', runCheckpoint, '--experiment', 'affnist', '--limit', '10'], /capsnet eval: --experiment affnist feeds the model 1x40x40 inputs \(the data's 1x28x28 images in a 40x40 canvas\); this model takes 1x28x28/],
    [['figures', '--checkpoint', runCheckpoint, '--out', out, '--metrics', badMetrics], /bad-metrics\.jsonl:2: corrupt metrics line \(.*\): garbage line; mend or delete that line/],
    [['train', '--out', out, '--batch-size', 'zero'], /--batch-size: expected an integer >= 1, got 'zero'/],
    [['train', '--out', out, '--steps', '3', '--epochs', '1'], /--epochs or --steps, not both/],
    [['train', '--out', out, '--lr', '0'], /--lr: expected a learning rate > 0, got '0'/],
    [['train', '--out', out, '--config', '{"routings": 0}'], /routings must be a positive integer/],
    [['train', '--out', out, '--config', '{"colour": 1}'], /unknown field 'colour'/],
    [['train', '--out', out, '--routings', '2000000'], /^capsnet train: the model config: preset 'mnist': routings must be a positive integer/m],
    [['eval', '--checkpoint', runCheckpoint, '--output', join(aFile, 'sub', 'x.json')], /--output .*x\.json: .*a-file\.png is a file, not a folder/],
    [['train', '--out', out, '--config', '{"primaryTypes": "many"}'], /^capsnet train --config: preset 'mnist': primaryTypes must be a positive integer, got "many"/m],
    [['train', '--out', out, '--model', 'baseline', '--config', '{"fcHidden": 3}'], /^capsnet train --config: .*fcHidden must be a list of positive integers, got 3/m],
    [['train', '--out', out, '--data', join(root, 'no-such-folder')], /no-such-folder/],
    [['train', '--out', out, '--resume'], /no checkpoint\.safetensors in/],
    [['train', '--out', out, '--wat'], /--wat/],
    [['train', '--out', out, '--stop-at-accuracy', '0'], /--stop-at-accuracy: expected an accuracy in percent, in \(0, 100\], got '0'/],
    [['train', '--out', out, '--stop-at-accuracy', '99', '--no-eval'], /--stop-at-accuracy .* cannot go with --no-eval/],
    [['train', '--out', out, '--max-skips', '3'], /--max-skips N applies with --on-nonfinite skip/],
    [['train', '--out', out, '--no-recon', '--recon-weight', '0.1'], /give --no-recon or --recon-weight X, not both/],
    [['train', '--out', out, '--config', '{"reconWeight": 0.01}'], /--config: 'reconWeight' is set by --no-recon \(no decoder\) or --recon-weight X, not by --config/],
    [['train', '--out', out, '--shift', '5'], /--shift: 5 pixels is more than mnist's 4 \(further shifts push the 28x28 images' content off the 28x28 canvas\)/],
    [['train', '--out', out, '--experiment', 'multimnist', '--limit', '64', '--batch-size', '8', '--validation', '1'], /the validation set: MultiMNIST: the dataset has examples of 1 class\(es\)/],
    [['train', '--out', out, '--lr-mult', 'primary.weight'], /--lr-mult: expected NAME=X\[,NAME=X\.\.\.\] with parameter names and multipliers >= 0 \(e\.g\. primary\.weight=0\.03125\), got 'primary\.weight'/],
    [['train', '--out', out, '--lr-mult', 'primary.weight=-1'], /--lr-mult primary\.weight: expected a multiplier >= 0, got '-1'/],
    [['train', '--out', out, '--lr-mult', 'conv1.bias=1,conv1.bias=2'], /--lr-mult: 'conv1\.bias' is given twice/],
    [['train', '--out', out, '--lr-mult', 'primary.W=0.5'], /--lr-mult: 'primary\.W' is not a parameter of this model; its parameters: conv1\.weight, conv1\.bias, primary\.weight, primary\.bias, digit\.W, /],
    [['train'], /--out DIR is required/],
    [['eval', '--checkpoint', join(root, 'missing.safetensors')], /missing\.safetensors/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(args);
    assert.is(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, pattern, args.join(' '));
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.not.ok(existsSync(out), 'nothing written');
  assert.not.ok(existsSync(join(root, 'nowhere')), 'nothing written through the broken link');
  // A CAPSNET_BACKEND typo: figures refuses it before writing its curves.
  const env = await runCli(['figures', '--checkpoint', runCheckpoint, '--out', out], { env: { CAPSNET_BACKEND: 'metal' } });
  assert.is(env.code, 2, env.stderr);
  assert.match(env.stderr, /CAPSNET_BACKEND: 'metal' is not a backend/);
  assert.not.ok(existsSync(out), 'figures wrote nothing');
});

cli('a run folder another live training holds is refused before anything is written; a killed one\'s lock is taken over and released', async () => {
  const out = join(root, 'locked');
  const lock = join(out, RUN_LOCK_FILE);
  mkdirSync(out);
  writeFileSync(lock, `${process.pid}\n`); // this test process: alive
  const refused = await runCli(['train', '--out', out, '--steps', '2', ...BASE]);
  assert.is(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, new RegExp(`--out .*locked: in use by process ${process.pid}, another training of this run; wait for it to end or stop it`));
  assert.equal(readdirSync(out), [RUN_LOCK_FILE], 'nothing written');
  writeFileSync(lock, `${spawnSync(process.execPath, ['-e', '0']).pid}\n`); // a process that is gone
  const r = await runCli(['train', '--out', out, '--steps', '2', ...BASE, '--no-eval']);
  assert.is(r.code, 0, r.stderr);
  assert.equal(readdirSync(out).sort(), ['checkpoint.safetensors', 'metrics.jsonl'], 'trained; the lock released');
});

cli('--stop-at-accuracy scores the test set at each checkpoint, stops at the first that reaches it, and leaves training untouched', async () => {
  type Eval = { step: number; split: string; accuracy: number; count: number; during?: boolean };
  const flags = [...BASE, '--steps', '6', '--checkpoint-every', '2'];
  const evalsOf = async (dir: string) => (await readMetrics(join(dir, 'metrics.jsonl'))).records.filter((m) => m.type === 'eval') as unknown as Eval[];
  const plain = join(root, 'target-none');
  const watched = join(root, 'target-100');
  assert.is((await runCli(['train', '--out', plain, ...flags])).code, 0);
  const w = await runCli(['train', '--out', watched, ...flags, '--stop-at-accuracy', '100']);
  assert.is(w.code, 0, w.stderr);
  // Scoring at checkpoints 2 and 4 (6 is the end, scored as usual) changes nothing in training.
  const [a, b] = [await loadCheckpoint(join(plain, 'checkpoint.safetensors')), await loadCheckpoint(join(watched, 'checkpoint.safetensors'))];
  assert.is(b.step, 6, 'a tiny model does not score 100% after 4 steps');
  for (const name of Object.keys(a.params)) assert.ok(Buffer.from(a.params[name].buffer).equals(Buffer.from(b.params[name].buffer)), `${name} differs`);
  const evals = await evalsOf(watched);
  assert.equal(evals.map((e) => [e.step, e.split, e.during ?? false]), [[2, 'test', true], [4, 'test', true], [6, 'test', false]]);
  assert.ok(evals.every((e) => e.count === 40));
  assert.equal((await evalsOf(plain)).map((e) => [e.step, e.accuracy]), [[6, evals[2].accuracy]]);
  assert.match(w.stderr, new RegExp(`step 2: test accuracy ${(100 * evals[0].accuracy).toFixed(2)}% \\(40 images\\)`));

  // A target the step-2 score reaches exactly, written as a user would (k of 40 is 2.5k%): the run
  // stops there, with its checkpoint and a final evaluation.
  const stopped = join(root, 'target-reached');
  const target = String(Math.round(evals[0].accuracy * 40) * 2.5);
  const r = await runCli(['train', '--out', stopped, ...flags, '--stop-at-accuracy', target]);
  assert.is(r.code, 0, r.stderr);
  assert.is((await loadCheckpoint(join(stopped, 'checkpoint.safetensors'))).step, 2);
  assert.equal((await evalsOf(stopped)).map((e) => [e.step, e.during ?? false, e.accuracy]), [[2, true, evals[0].accuracy], [2, false, evals[0].accuracy]]);
  assert.match(r.stderr, /stopping/);
  assert.match(r.stderr, new RegExp(`2 of 6 steps \\(stopped at --stop-at-accuracy ${target.replace('.', '\\.')}\\)`));

  // The target is kept in the run options; a run that stopped on reaching it is finished there:
  // --resume asks for a higher target (or off) and writes nothing.
  const storedTarget = async () => ((await loadCheckpoint(join(stopped, 'checkpoint.safetensors'))).training as { options: { stopAtAccuracy?: number } }).options.stopAtAccuracy;
  assert.is(await storedTarget(), Number(target));
  const before = readFileSync(join(stopped, 'checkpoint.safetensors'));
  const again = await runCli(['train', '--out', stopped, '--resume']);
  assert.is(again.code, 2, again.stderr);
  assert.match(again.stderr, new RegExp(`stopped at step 2, where its test accuracy [0-9.]+% reached --stop-at-accuracy ${target.replace('.', '\\.')}; to train on, give a higher --stop-at-accuracy, or --stop-at-accuracy off`));
  assert.ok(readFileSync(join(stopped, 'checkpoint.safetensors')).equals(before), 'nothing written');
  // A higher target: scored again at step 4 (the same score as the watched run's: the run keeps its
  // --eval-limit 40, so it watches the same 40 images), kept in the run.
  const storedOptions = async () => ((await loadCheckpoint(join(stopped, 'checkpoint.safetensors'))).training as { options: { evalLimit?: number } }).options;
  assert.is((await storedOptions()).evalLimit, 40);
  const higher = await runCli(['train', '--out', stopped, '--resume', '--stop-at-accuracy', '100', '--checkpoint-every', '2']);
  assert.is(higher.code, 0, higher.stderr);
  assert.equal((await evalsOf(stopped)).filter((e) => e.during).map((e) => [e.step, e.accuracy, e.count]), [[2, evals[0].accuracy, 40], [4, evals[1].accuracy, 40]]);
  assert.is((await loadCheckpoint(join(stopped, 'checkpoint.safetensors'))).step, 6, 'a tiny model does not reach 100%');
  assert.is(await storedTarget(), 100);
  // A kept target goes with evaluation only: --no-eval names the way out; off drops it.
  const noEval = await runCli(['train', '--out', stopped, '--resume', '--steps', '8', '--no-eval']);
  assert.is(noEval.code, 2);
  assert.match(noEval.stderr, /the run's --stop-at-accuracy 100 \(kept by --resume; --stop-at-accuracy off drops it\)/);
  const off = await runCli(['train', '--out', stopped, '--resume', '--steps', '8', '--no-eval', '--stop-at-accuracy', 'off']);
  assert.is(off.code, 0, off.stderr);
  assert.is(await storedTarget(), undefined);
  // --eval-limit given again on --resume replaces the kept one; off drops it.
  const fewer = await runCli(['train', '--out', stopped, '--resume', '--steps', '9', '--eval-limit', '24']);
  assert.is(fewer.code, 0, fewer.stderr);
  assert.is((await storedOptions()).evalLimit, 24);
  assert.equal((await evalsOf(stopped)).filter((e) => e.step === 9).map((e) => e.count), [24]);
  const all = await runCli(['train', '--out', stopped, '--resume', '--steps', '10', '--no-eval', '--eval-limit', 'off']);
  assert.is(all.code, 0, all.stderr);
  assert.is((await storedOptions()).evalLimit, undefined, '--eval-limit off drops the kept limit');
  // --init-from does not inherit a target (with one, --no-eval would be refused).
  const withTarget = join(root, 'target-source');
  assert.is((await runCli(['train', '--out', withTarget, ...BASE, '--steps', '2', '--stop-at-accuracy', '100'])).code, 0);
  const init = await runCli(['train', '--out', join(root, 'target-init'), '--init-from', join(withTarget, 'checkpoint.safetensors'), '--steps', '4', '--no-eval', ...BASE.filter((f) => f !== TINY && f !== '--config')]);
  assert.is(init.code, 0, init.stderr);
});

cli('reachesAccuracy counts whole examples (57 of 100 reaches 57% though 100 * 0.57 < 57)', () => {
  assert.ok(100 * 0.57 < 57, 'the float product this guards against');
  assert.ok(reachesAccuracy(57, 100, 57));
  assert.not.ok(reachesAccuracy(56, 100, 57));
  assert.ok(reachesAccuracy(992, 1000, 99.2));
  assert.not.ok(reachesAccuracy(991, 1000, 99.2));
  assert.ok(reachesAccuracy(40, 40, 100));
  assert.not.ok(reachesAccuracy(39, 40, 100));
});

cli('an existing run is not overwritten without --resume; --resume refuses to change the recipe', async () => {
  const out = join(root, 'run');
  const before = readFileSync(join(out, 'checkpoint.safetensors'));
  const again = await runCli(['train', '--out', out, '--steps', '4', ...BASE]);
  assert.is(again.code, 2);
  assert.match(again.stderr, /already holds a run.*--resume/);
  const changed = await runCli(['train', '--out', out, '--steps', '8', '--resume', '--batch-size', '16']);
  assert.is(changed.code, 2);
  assert.match(changed.stderr, /--batch-size 16 differs from the run's 8/);
  assert.ok(readFileSync(join(out, 'checkpoint.safetensors')).equals(before));
});

cli('a run with a shift over today\'s cap (made by an older build) resumes with its own shift; a new run with it is refused', async () => {
  const out = join(root, 'old-shift');
  const flags = [...BASE, '--no-eval'];
  assert.is((await runCli(['train', '--out', out, '--steps', '2', '--shift', '4', ...flags])).code, 0);
  // What a build before the cap wrote for --shift 6 on mnist.
  const path = join(out, 'checkpoint.safetensors');
  const old = await loadCheckpoint(path);
  const options = old.training!.options as { maxShift: number; dataOptions: { maxShift: number } };
  options.maxShift = 6;
  options.dataOptions.maxShift = 6;
  await saveCheckpoint(path, old);
  const resumeFlags = ['--resume', '--no-eval', '--log-every', '2'];
  const r = await runCli(['train', '--out', out, '--steps', '3', ...resumeFlags]);
  assert.is(r.code, 0, r.stderr);
  const again = await runCli(['train', '--out', out, '--steps', '4', ...resumeFlags, '--shift', '6']);
  assert.is(again.code, 0, again.stderr);
  const resumed = await loadCheckpoint(path);
  assert.is(resumed.step, 4);
  assert.is((resumed.training!.options as { maxShift: number }).maxShift, 6, 'the run keeps its shift');
  assert.is((resumed.training!.options as { dataOptions: { maxShift: number } }).dataOptions.maxShift, 6, 'and its batches\' shift');
  const changed = await runCli(['train', '--out', out, '--steps', '5', ...resumeFlags, '--shift', '4']);
  assert.is(changed.code, 2);
  assert.match(changed.stderr, /--shift 4 differs from the run's 6/);
  const fresh = await runCli(['train', '--out', join(root, 'new-shift6'), '--steps', '2', '--shift', '6', ...flags]);
  assert.is(fresh.code, 2);
  assert.match(fresh.stderr, /--shift: 6 pixels is more than mnist's 4/);
  assert.not.ok(existsSync(join(root, 'new-shift6', 'checkpoint.safetensors')));
});

cli('--keep-every epoch keeps each epoch end\'s checkpoint, which capsnet average takes; a bad value is refused', async () => {
  const out = join(root, 'kept');
  // 64 images in batches of 8: 8 steps an epoch; checkpoints every 5 steps do not fall on them.
  const r = await runCli(['train', '--out', out, '--steps', '16', '--keep-every', 'epoch', '--checkpoint-every', '5', ...BASE, '--no-eval']);
  assert.is(r.code, 0, r.stderr);
  assert.equal(readdirSync(out).sort(), ['checkpoint-step16.safetensors', 'checkpoint-step8.safetensors', 'checkpoint.safetensors', 'metrics.jsonl']);
  assert.match(r.stderr, /step 8: kept a copy of the checkpoint as .*checkpoint-step8\.safetensors/);
  assert.ok(readFileSync(join(out, 'checkpoint-step16.safetensors')).equals(readFileSync(join(out, 'checkpoint.safetensors'))), 'the last copy is the final checkpoint');
  const kept = await loadCheckpoint(join(out, 'checkpoint-step8.safetensors'));
  assert.is(kept.step, 8);
  assert.is(kept.optimizer?.step, 8, 'a whole checkpoint: --init-from continues from it exactly');
  const averaged = join(root, 'kept-average.safetensors');
  const avg = await runCli(['average', '--checkpoint', join(out, 'checkpoint-step8.safetensors'), '--checkpoint', join(out, 'checkpoint-step16.safetensors'), '--out', averaged]);
  assert.is(avg.code, 0, avg.stderr);
  assert.not.match(avg.stderr, /warning/, 'one run: one seed');
  // A number of steps; given on a resume that starts at a kept step, that step's copy is made first
  // (as after a stop between a checkpoint and its copy).
  const numbered = join(root, 'kept-n');
  assert.is((await runCli(['train', '--out', numbered, '--steps', '3', '--checkpoint-every', '3', ...BASE, '--no-eval'])).code, 0);
  const resumed = await runCli(['train', '--out', numbered, '--steps', '7', '--resume', '--keep-every', '3', '--checkpoint-every', '100', '--no-eval']);
  assert.is(resumed.code, 0, resumed.stderr);
  assert.equal(readdirSync(numbered).filter((n) => n.startsWith('checkpoint-step')).sort(), ['checkpoint-step3.safetensors', 'checkpoint-step6.safetensors']);
  assert.equal([(await loadCheckpoint(join(numbered, 'checkpoint-step3.safetensors'))).step, (await loadCheckpoint(join(numbered, 'checkpoint-step6.safetensors'))).step], [3, 6]);
  // The average is no run to resume (no Adam state): --resume says to start from it with --init-from.
  const avgRun = join(root, 'avg-run');
  mkdirSync(avgRun);
  copyFileSync(averaged, join(avgRun, 'checkpoint.safetensors'));
  const noAdam = await runCli(['train', '--out', avgRun, '--steps', '20', '--resume']);
  assert.is(noAdam.code, 2, noAdam.stderr);
  assert.match(noAdam.stderr, /has no Adam state .* start a new run from it with --init-from/);
  // --resume keeps --keep-every and --checkpoint-every (kept-n now holds 3 and 100); off drops the copies.
  const keptOn = await runCli(['train', '--out', numbered, '--steps', '9', '--resume', '--no-eval']);
  assert.is(keptOn.code, 0, keptOn.stderr);
  assert.ok(existsSync(join(numbered, 'checkpoint-step9.safetensors')), 'the run\'s --keep-every 3, kept');
  const starts = (await readMetrics(join(numbered, 'metrics.jsonl'))).records.filter((rec) => rec.type === 'start').map((rec) => rec.options as { checkpointEvery?: number; keepEvery?: unknown });
  assert.equal(starts.map((o) => [o.checkpointEvery, o.keepEvery]), [[3, undefined], [100, 3], [100, 3]]);
  const dropped = await runCli(['train', '--out', numbered, '--steps', '12', '--resume', '--keep-every', 'off', '--no-eval']);
  assert.is(dropped.code, 0, dropped.stderr);
  assert.not.ok(existsSync(join(numbered, 'checkpoint-step12.safetensors')), '--keep-every off');
  for (const bad of ['0', 'weekly']) {
    const dir = join(root, `kept-${bad}`);
    const refused = await runCli(['train', '--out', dir, '--steps', '2', '--keep-every', bad, ...BASE]);
    assert.is(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`--keep-every: expected an integer >= 1, 'epoch' or 'off', got '${bad}'`));
    assert.not.ok(existsSync(dir), 'nothing written');
  }
});

cli('--validation-split random holds out N images drawn at random, the same for every --seed (last, the default: the last N); --resume keeps it', async () => {
  const run = async (name: string, steps: number, extra: string[]) => {
    const r = await runCli(['train', '--out', join(root, name), '--steps', String(steps), '--validation', '32', ...extra, ...BASE, '--no-eval']);
    assert.is(r.code, 0, r.stderr);
    return loadCheckpoint(join(root, name, 'checkpoint.safetensors'));
  };
  const weights = (c: Awaited<ReturnType<typeof loadCheckpoint>>) => Buffer.from(c.params['conv1.weight'].buffer);
  const split = (c: Awaited<ReturnType<typeof loadCheckpoint>>) => (c.training as { options: { validationSplit?: string } }).options.validationSplit;
  const plain = await run('split-default', 1, []);
  const last = await run('split-last', 1, ['--validation-split', 'last']);
  const random = await run('split-random', 1, ['--validation-split', 'random']);
  assert.ok(weights(plain).equals(weights(last)), 'last is the default: the same training images');
  assert.not.ok(weights(random).equals(weights(last)), 'a random split trains on other images');
  assert.is(split(last), undefined, "'last' is not stored: runs from before the flag read as last");
  assert.is(split(random), 'random');
  // --resume keeps the split: resumed to step 2, bitwise the run that went to step 2 at once.
  const other = await runCli(['train', '--out', join(root, 'split-random'), '--steps', '2', '--resume', '--validation-split', 'last']);
  assert.is(other.code, 2, other.stderr);
  assert.match(other.stderr, /--validation-split last differs from the run's random; start a new run to change it/);
  const resumed = await runCli(['train', '--out', join(root, 'split-random'), '--steps', '2', '--resume', '--no-eval']);
  assert.is(resumed.code, 0, resumed.stderr);
  const straight = await run('split-random-straight', 2, ['--validation-split', 'random']);
  assert.ok(weights(await loadCheckpoint(join(root, 'split-random', 'checkpoint.safetensors'))).equals(weights(straight)), 'resumed on the same split');
  const nothing = await runCli(['train', '--out', join(root, 'split-nothing'), '--steps', '1', '--validation-split', 'random', ...BASE]);
  assert.is(nothing.code, 2);
  assert.match(nothing.stderr, /--validation-split random: holds out nothing without --validation N/);
  assert.not.ok(existsSync(join(root, 'split-nothing')), 'nothing written');
  const bad = await runCli(['train', '--out', join(root, 'split-bad'), '--steps', '1', '--validation', '32', '--validation-split', 'first', ...BASE]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--validation-split: expected 'last' or 'random', got 'first'/);
  // A run that stored no split (as every run before the flag) is a 'last' run.
  const fromLast = await runCli(['train', '--out', join(root, 'split-last'), '--steps', '2', '--resume', '--validation-split', 'random']);
  assert.is(fromLast.code, 2, fromLast.stderr);
  assert.match(fromLast.stderr, /--validation-split random differs from the run's last; start a new run to change it/);
  // Inherited by --init-from, a split goes with a held-out set: none held out, none kept.
  const noneHeld = await runCli(['train', '--out', join(root, 'split-init'), '--init-from', join(root, 'split-random', 'checkpoint.safetensors'), '--steps', '3', '--validation', '0', '--no-eval']);
  assert.is(noneHeld.code, 0, noneHeld.stderr);
  assert.is(split(await loadCheckpoint(join(root, 'split-init', 'checkpoint.safetensors'))), undefined);
});

cli('--lr-mult: a multiplier 0 freezes that parameter, the others train; kept by --resume, which refuses another', async () => {
  const out = join(root, 'lr-mult');
  const r = await runCli(['train', '--out', out, '--steps', '2', '--checkpoint-every', '1', '--keep-every', '1', '--lr-mult', 'primary.weight=0,digit.W=0.5', ...BASE, '--no-eval']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /learning-rate multipliers digit\.W=0\.5,primary\.weight=0\n/, 'said, by name');
  const [one, two] = await Promise.all([1, 2].map((k) => loadCheckpoint(join(out, `checkpoint-step${k}.safetensors`))));
  const same = (name: string) => Buffer.from(one.params[name].buffer).equals(Buffer.from(two.params[name].buffer));
  assert.ok(same('primary.weight'), 'multiplier 0: primary.weight did not move');
  for (const name of ['conv1.weight', 'primary.bias', 'digit.W']) assert.not.ok(same(name), `${name} moved`);
  const options = (two.training as { options: { lrMult?: Record<string, number> } }).options;
  assert.equal(options.lrMult, { 'primary.weight': 0, 'digit.W': 0.5 });
  const other = await runCli(['train', '--out', out, '--steps', '3', '--resume', '--lr-mult', 'primary.weight=1']);
  assert.is(other.code, 2, other.stderr);
  assert.match(other.stderr, /--lr-mult primary\.weight=1 differs from the run's digit\.W=0\.5,primary\.weight=0; start a new run to change it/);
  // The same multipliers in another order are the same recipe.
  const resumed = await runCli(['train', '--out', out, '--steps', '3', '--resume', '--lr-mult', 'digit.W=0.5,primary.weight=0', '--no-eval']);
  assert.is(resumed.code, 0, resumed.stderr);
  const three = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(three.step, 3);
  assert.ok(Buffer.from(three.params['primary.weight'].buffer).equals(Buffer.from(two.params['primary.weight'].buffer)), 'still frozen after --resume');
  const starts = (await readMetrics(join(out, 'metrics.jsonl'))).records.filter((rec) => rec.type === 'start');
  assert.equal(starts.map((rec) => (rec.options as { lrMult?: unknown }).lrMult), [{ 'primary.weight': 0, 'digit.W': 0.5 }, { 'primary.weight': 0, 'digit.W': 0.5 }]);
});

cli('--ema keeps a moving average: in the checkpoint and as ema.safetensors, evaluated after the run, resumed exactly, started on a resume, dropped by off', async () => {
  const straight = join(root, 'ema');
  const r = await runCli(['train', '--out', straight, '--steps', '6', '--ema', '0.5', '--checkpoint-every', '3', ...BASE]);
  assert.is(r.code, 0, r.stderr);
  const ckpt = await loadCheckpoint(join(straight, 'checkpoint.safetensors'));
  assert.equal([ckpt.ema?.decay, ckpt.ema?.since], [0.5, 0]);
  assert.is((ckpt.training as { options: { ema?: number } }).options.ema, 0.5);
  const model = await loadCheckpoint(join(straight, 'ema.safetensors'));
  assert.is(model.step, 6);
  assert.is(model.optimizer, undefined, 'a model-only file');
  const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  for (const name of Object.keys(ckpt.params)) assert.ok(bits(model.params[name]).equals(bits(ckpt.ema!.params[name])), `ema.safetensors ${name} is the checkpoint's average`);
  assert.not.ok(Object.keys(ckpt.params).every((n) => bits(ckpt.params[n]).equals(bits(ckpt.ema!.params[n]))), 'the average is not the weights');
  const { records } = await readMetrics(join(straight, 'metrics.jsonl'));
  assert.equal(records.filter((m) => m.type === 'eval').map((m) => [m.split, m.weights ?? null]), [['test', null], ['test', 'ema']]);
  assert.match(r.stderr, /test accuracy of the moving average \(.*ema\.safetensors\) [\d.]+%/);
  assert.match(r.stderr, /of GPU memory, with the moving average\)/);
  const ev = await runCli(['eval', '--checkpoint', join(straight, 'ema.safetensors'), '--limit', '40']);
  assert.is(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, /step 6, the moving average of the parameters since step 0 \(decay 0\.5\)/);
  const emaEval = records.find((m) => m.type === 'eval' && m.weights === 'ema') as { accuracy: number };
  assert.match(ev.stdout, new RegExp(`accuracy ${(100 * emaEval.accuracy).toFixed(2)}%`), 'eval of ema.safetensors scores what the run logged');
  const [, accuracySvg] = (await curves(join(straight, 'metrics.jsonl'))).find(([name]) => name === 'accuracy.svg')!;
  assert.match(accuracySvg, /test \(moving average\)/);
  // Exported for the web app, it still says what it is (the run file's name, not this machine's path).
  const shipped = join(root, 'ema-web.safetensors');
  const exported = spawnSync(process.execPath, ['--import', './tools/register-ts.mjs', 'tools/export-web-model.ts', join(straight, 'ema.safetensors'), '--out', shipped], { encoding: 'utf8' });
  assert.is(exported.status, 0, exported.stderr);
  const sidecar = JSON.parse(readFileSync(join(root, 'ema-web.json'), 'utf8'));
  assert.equal(sidecar.movingAverage, { decay: 0.5, since: 0, of: 'checkpoint.safetensors' });
  assert.equal((await loadCheckpoint(shipped)).training?.movingAverage, sidecar.movingAverage);

  // Stopped at 3 and resumed (the run keeps --ema): the same average, bit for bit.
  const resumed = join(root, 'ema-resumed');
  assert.is((await runCli(['train', '--out', resumed, '--steps', '3', '--ema', '0.5', ...BASE, '--no-eval'])).code, 0);
  const again = await runCli(['train', '--out', resumed, '--steps', '6', '--resume', '--checkpoint-every', '3', '--no-eval']);
  assert.is(again.code, 0, again.stderr);
  const back = await loadCheckpoint(join(resumed, 'checkpoint.safetensors'));
  for (const name of Object.keys(ckpt.params)) assert.ok(bits(back.ema!.params[name]).equals(bits(ckpt.ema!.params[name])), `resumed average of ${name} differs`);

  // A resume brings ema.safetensors up to the checkpoint's average (lost here as by a stop between the two writes).
  rmSync(join(straight, 'ema.safetensors'));
  assert.is((await runCli(['train', '--out', straight, '--resume', '--no-eval'])).code, 0);
  const rewritten = await loadCheckpoint(join(straight, 'ema.safetensors'));
  assert.is(rewritten.step, 6);
  for (const name of Object.keys(ckpt.params)) assert.ok(bits(rewritten.params[name]).equals(bits(ckpt.ema!.params[name])), `rewritten ${name}`);

  // --init-from a run's checkpoint with its Adam state continues its average (since 0); from a
  // model-only file (moments estimated) a new one starts at the file's step; without --ema, a note.
  const carried = join(root, 'ema-init');
  assert.is((await runCli(['train', '--out', carried, '--init-from', join(straight, 'checkpoint.safetensors'), '--steps', '7', '--ema', '0.5', '--no-eval'])).code, 0);
  assert.equal([(await loadCheckpoint(join(carried, 'checkpoint.safetensors'))).ema?.since], [0]);
  const fresh = join(root, 'ema-init-model');
  const fromModel = await runCli(['train', '--out', fresh, '--init-from', join(straight, 'ema.safetensors'), '--moment-steps', '2', '--steps', '7', '--ema', '0.5', '--no-eval']);
  assert.is(fromModel.code, 0, fromModel.stderr);
  assert.equal([(await loadCheckpoint(join(fresh, 'checkpoint.safetensors'))).ema?.since], [6]);
  const without = join(root, 'ema-init-none');
  const plain = await runCli(['train', '--out', without, '--init-from', join(straight, 'checkpoint.safetensors'), '--steps', '7', '--no-eval']);
  assert.is(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /checkpoint\.safetensors's moving average is not carried over \(no --ema\)/);
  assert.is((await loadCheckpoint(join(without, 'checkpoint.safetensors'))).ema, undefined);

  // Started on a resume (0.15: below the early cap, so the decay given is the one used): since that
  // step; then dropped with off, ema.safetensors kept as of the last checkpoint with the average.
  const late = join(root, 'ema-late');
  assert.is((await runCli(['train', '--out', late, '--steps', '3', ...BASE, '--no-eval'])).code, 0);
  assert.is((await loadCheckpoint(join(late, 'checkpoint.safetensors'))).ema, undefined);
  assert.not.ok(existsSync(join(late, 'ema.safetensors')));
  assert.is((await runCli(['train', '--out', late, '--steps', '5', '--resume', '--ema', '0.15', '--no-eval'])).code, 0);
  const started = await loadCheckpoint(join(late, 'checkpoint.safetensors'));
  assert.equal([started.ema?.decay, started.ema?.since], [0.15, 3]);
  const off = await runCli(['train', '--out', late, '--steps', '6', '--resume', '--ema', 'off', '--no-eval']);
  assert.is(off.code, 0, off.stderr);
  assert.match(off.stderr, /--ema off: the run's moving average \(since step 3\) is not kept from here on; .*ema\.safetensors keeps it as of step 5/);
  const dropped = await loadCheckpoint(join(late, 'checkpoint.safetensors'));
  assert.is(dropped.ema, undefined);
  assert.is((dropped.training as { options: { ema?: number } }).options.ema, undefined);
  assert.is((await loadCheckpoint(join(late, 'ema.safetensors'))).step, 5);
  // A new average after off replaces that file; so does a new run in a folder without a checkpoint.
  const again2 = await runCli(['train', '--out', late, '--steps', '7', '--resume', '--ema', '0.5', '--checkpoint-every', '100', '--no-eval']);
  assert.is(again2.code, 0, again2.stderr);
  assert.match(again2.stderr, /removing .*ema\.safetensors: an average this run does not continue/);
  assert.equal([(await loadCheckpoint(join(late, 'ema.safetensors'))).step, (await loadCheckpoint(join(late, 'checkpoint.safetensors'))).ema?.since], [7, 6]);
  const leftover = join(root, 'ema-leftover');
  mkdirSync(leftover);
  copyFileSync(join(straight, 'ema.safetensors'), join(leftover, 'ema.safetensors'));
  const anew = await runCli(['train', '--out', leftover, '--steps', '2', ...BASE, '--no-eval']);
  assert.is(anew.code, 0, anew.stderr);
  assert.match(anew.stderr, /removing .*ema\.safetensors: an average this run does not continue\n/);
  assert.not.ok(existsSync(join(leftover, 'ema.safetensors')));

  for (const bad of ['1', '0', 'abc', '1e-400']) {
    const dir = join(root, `ema-${bad}`);
    const refused = await runCli(['train', '--out', dir, '--steps', '2', '--ema', bad, ...BASE]);
    assert.is(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /--ema: expected a decay in \(0, 1\) such as 0\.999, or 'off'/);
    assert.not.ok(existsSync(dir), 'nothing written');
  }
});

cli('a NaN stops training with the step and the layer, and keeps the last good checkpoint', async () => {
  const out = join(root, 'nan');
  const r = await runCli(['train', '--out', out, '--steps', '40', '--lr', '1e30', '--checkpoint-every', '1', '--log-every', '1', ...BASE.slice(0, 4), '--config', TINY]);
  assert.is(r.code, 1, r.stderr);
  const m = /step (\d+) produced .*first appear in '([^']+)'/.exec(r.stderr);
  assert.ok(m, r.stderr);
  const badStep = Number(m![1]);
  const ckpt = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
  assert.is(ckpt.step, badStep - 1, 'the checkpoint is from the step before');
  assert.match(r.stderr, new RegExp(`train stopped: ${(badStep - 1) * 8}/320 `), 'the bar counts the good steps only');
  for (const [name, values] of Object.entries(ckpt.params)) assert.ok(values.every(Number.isFinite), `${name} is finite`);
  assert.equal(readdirSync(out).sort(), ['checkpoint.safetensors', 'metrics.jsonl']);
});

cli('eval --output writes accuracy and every image\'s label, prediction and lengths', async () => {
  const file = join(root, 'eval.json');
  const r = await runCli(['eval', '--checkpoint', join(root, 'run', 'checkpoint.safetensors'), '--limit', '30', '--output', file]);
  assert.is(r.code, 0, r.stderr);
  const report = JSON.parse(readFileSync(file, 'utf8'));
  assert.is(report.images.length, 30);
  assert.is(report.images[0].label, 7); // the MNIST test set starts 7, 2, 1, 0, 4
  const correct = report.images.filter((i: { label: number; prediction: number }) => i.label === i.prediction).length;
  assert.is(report.accuracy, correct / 30);
  for (const img of report.images) {
    assert.is(img.lengths.length, 10);
    const best = img.lengths.indexOf(Math.max(...img.lengths));
    assert.is(img.prediction, best);
  }
  assert.match(r.stdout, /confusion/);
});

cli('figures: curves (SVG), reconstructions and perturbation grids (PNG)', async () => {
  const out = join(root, 'figures');
  const r = await runCli(['figures', '--checkpoint', join(root, 'run', 'checkpoint.safetensors'), '--out', out]);
  assert.is(r.code, 0, r.stderr);
  const files = readdirSync(out).sort();
  assert.ok(files.includes('loss.svg') && files.includes('accuracy.svg') && files.includes('reconstructions.png'), files.join(', '));
  assert.is(files.filter((f) => /^perturbation-\d\.png$/.test(f)).length, 10);
  const grid = decodePng(readFileSync(join(out, 'perturbation-3.png')));
  // digitDim 4 rows x 11 columns of 28x28 tiles with 1-pixel padding, upscaled x2.
  assert.is(grid.width, 2 * (11 * 29 + 1));
  assert.is(grid.height, 2 * (4 * 29 + 1));
  assert.match(readFileSync(join(out, 'loss.svg'), 'utf8'), /^<svg[\s\S]*<\/svg>\s*$/);
});

cli('a short run on 300 real MNIST images lowers the loss and beats chance by a wide margin', async () => {
  const out = join(root, 'learn');
  const config = JSON.stringify({ conv1Channels: 32, primaryTypes: 8, primaryDim: 8, decoderHidden: [64, 128] });
  const r = await runCli(['train', '--out', out, '--steps', '60', '--limit', '300', '--batch-size', '16', '--eval-limit', '300', '--config', config], { timeoutMs: 300_000 });
  assert.is(r.code, 0, r.stderr);
  const { records } = await readMetrics(join(out, 'metrics.jsonl'));
  const losses = records.filter((m) => m.type === 'train').map((m) => m.loss as number);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [first, last] = [mean(losses.slice(0, 10)), mean(losses.slice(-10))];
  assert.ok(last < 0.7 * first, `loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  const accuracy = (records.find((m) => m.type === 'eval') as { accuracy: number }).accuracy;
  assert.ok(accuracy > 0.5, `test accuracy ${accuracy} (chance is 0.1)`);
  process.stdout.write(`  [learn] loss ${first.toFixed(3)} -> ${last.toFixed(3)}, test accuracy ${(100 * accuracy).toFixed(1)}% on 300 images\n`);
});

cli.run();
