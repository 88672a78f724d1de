// `capsnet start` (what `npm start` runs): the budget it trains to when run again (the one asked
// for, or the run's own), and the ways it refuses or copes before training: a checkpoint it cannot
// continue, --full with --steps, a finished run copied in without its metrics log.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { FULL_STEPS, START_STEPS, startBudget } from '../src/cli/start.ts';

const test = suite('capsnet start');
let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-start-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

test('startBudget: a new run takes --steps, --full or 100; run again, the budget asked for or the run\'s own', () => {
  assert.equal(startBudget({ full: false }, null), { target: START_STEPS, done: false });
  assert.equal(startBudget({ full: false, steps: 300 }, null), { target: 300, done: false });
  assert.equal(startBudget({ full: true }, null), { target: FULL_STEPS, done: false });
  assert.is(FULL_STEPS, 50 * 468);
  // A finished 100-step run: `npm start` again redraws it; --steps 300 goes on to 300.
  assert.equal(startBudget({ full: false }, { step: 100, totalSteps: 100 }), { target: 100, done: true });
  assert.equal(startBudget({ full: false, steps: 300 }, { step: 100, totalSteps: 100 }), { target: 300, done: false });
  // A 300-step run stopped at 150: a plain run again continues it to its own 300, not to 100...
  assert.equal(startBudget({ full: false }, { step: 150, totalSteps: 300 }), { target: 300, done: false });
  // ...and a budget below what is done only redraws (train --resume would refuse it).
  assert.equal(startBudget({ full: false, steps: 100 }, { step: 150, totalSteps: 300 }), { target: 100, done: true });
  assert.equal(startBudget({ full: true }, { step: 150, totalSteps: 300 }), { target: FULL_STEPS, done: false });
  // A checkpoint without stored options (another tool's): the default budget.
  assert.equal(startBudget({ full: false }, { step: 40 }), { target: START_STEPS, done: false });
});

test('a checkpoint that cannot be continued, and --full with --steps: exit 2, the file named, nothing written', async () => {
  const out = join(root, 'corrupt');
  mkdirSync(out);
  const bad = join(out, 'checkpoint.safetensors');
  writeFileSync(bad, 'not a checkpoint at all');
  const r = await runCli(['start', '--out', out, '--steps', '2']);
  assert.is(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(`capsnet start: ${out} holds a checkpoint that cannot be continued: ${bad}`), r.stderr);
  assert.match(r.stderr, /Choose another --out/);
  assert.equal(readdirSync(out), ['checkpoint.safetensors']);
  assert.is(readFileSync(bad, 'utf8'), 'not a checkpoint at all');
  const both = await runCli(['start', '--out', join(root, 'never'), '--full', '--steps', '5']);
  assert.is(both.code, 2, both.stderr);
  assert.match(both.stderr, /give --full \(the whole schedule\) or --steps N, not both/);
  assert.not.ok(existsSync(join(root, 'never')));
  // The default folder (runs/mnist) is checked as a given one: here runs is a file.
  const cwd = join(root, 'cwd');
  mkdirSync(cwd);
  writeFileSync(join(cwd, 'runs'), 'a file');
  const blocked = await runCli(['start'], { cwd });
  assert.is(blocked.code, 2, blocked.stderr);
  assert.match(blocked.stderr, /--out runs\/mnist: .*runs is a file, not a folder/);
  assert.equal(readdirSync(cwd), ['runs']);
});

test('a finished run copied in without its metrics log: drawn again (curves skipped, with a note), its accuracy "not measured"', async () => {
  const out = join(root, 'copied');
  const config = JSON.stringify({ conv1Channels: 8, primaryTypes: 2, primaryDim: 4, digitDim: 4, decoderHidden: [16, 16] });
  const t = await runCli(['train', '--out', out, '--steps', '2', '--limit', '32', '--batch-size', '8', '--no-eval', '--config', config]);
  assert.is(t.code, 0, t.stderr);
  rmSync(join(out, 'metrics.jsonl'));
  const r = await runCli(['start', '--out', out], { timeoutMs: 120_000 });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /holds a run already at step 2 \(2 asked\); drawing its figures again/);
  assert.not.match(r.stderr, /the paper's recipe for/, 'no banner of a recipe it does not run');
  assert.match(r.stderr, /training curves skipped: no metrics\.jsonl beside .*checkpoint\.safetensors \(capsnet figures --metrics FILE draws them from a log kept elsewhere\)/);
  assert.match(r.stdout, /test accuracy {2}not measured/);
  assert.ok(existsSync(join(out, 'figures', 'reconstructions.png')), r.stdout);
});

test.run();
