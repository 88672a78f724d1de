// `capsnet predict` on the user's own PNG images: the image-to-input steps on hand-made images, and
// end to end with the shipped paper model on MNIST test digits written as PNG files: as they are
// (--as-is), the capsule lengths are eval's for the same images; enlarged, inverted to dark ink on
// white and in RGB, the MNIST-like normalisation gives the same classes. Bad files and flags: exit
// code 2, the file named, nothing written.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from './helpers/cli.ts';
import { decodePng, encodePng } from '../src/io/png.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { brightInk, greyOf, modelInput, type PredictReport } from '../src/cli/predict.ts';
import type { EvalReport } from '../src/cli/eval.ts';

const MODEL = fileURLToPath(new URL('../src/web/models/capsnet-mnist.safetensors', import.meta.url));
const COUNT = 8;

const predict = suite('capsnet predict');
let root = '';
predict.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-predict-'));
});
predict.after(() => rmSync(root, { recursive: true, force: true }));

predict('grey: RGB luminance, transparent pixels white; light backgrounds inverted to bright ink', () => {
  const rgba = { width: 2, height: 1, channels: 4 as const, pixels: Uint8Array.of(255, 0, 0, 255, 0, 0, 0, 0) };
  const grey = greyOf(rgba);
  assert.ok(Math.abs(grey[0] - 0.299) < 1e-6, `red: ${grey[0]}`);
  assert.is(grey[1], 1, 'transparent black is white');
  // A 4x4 page: white border, one dark pixel inside -> inverted; a dark page stays.
  const page = Float32Array.from({ length: 16 }, (_, i) => (i === 5 ? 0 : 1));
  assert.equal(Array.from(brightInk(page, 4, 4)), Array.from(page, (v) => 1 - v));
  const dark = page.map((v) => 1 - v);
  assert.equal(Array.from(brightInk(dark, 4, 4)), Array.from(dark));
  // Grey paper (200/255) with black ink: the paper goes to 0, the ink to 1.
  const paper = Float32Array.from({ length: 16 }, (_, i) => (i === 5 ? 0 : 200 / 255));
  const ink = brightInk(paper, 4, 4);
  assert.ok(Math.abs(ink[5] - 1) < 1e-6 && ink.every((v, i) => i === 5 || Math.abs(v) < 1e-6), Array.from(ink).join(' '));
});

predict('modelInput: MNIST-like digits centred in a larger canvas; --as-is needs the input size; no ink is refused', () => {
  // A 10x30 bar of ink on a 60x60 black image: scaled to 20 high, centred by mass.
  const pixels = new Uint8Array(60 * 60);
  for (let y = 5; y < 35; y++) for (let x = 40; x < 50; x++) pixels[y * 60 + x] = 255;
  const image = { width: 60, height: 60, channels: 1 as const, pixels };
  const input28 = modelInput(image, 28, false, 'bar.png');
  const input40 = modelInput(image, 40, false, 'bar.png');
  let ink28 = 0;
  let ink40 = 0;
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      assert.is(input40[(y + 6) * 40 + x + 6], input28[y * 28 + x], 'the 28x28 digit sits at the centre of the 40x40 canvas');
      ink28 += input28[y * 28 + x];
    }
  }
  for (const v of input40) ink40 += v;
  assert.ok(Math.abs(ink28 - ink40) < 1e-6 && Math.abs(ink28 - 20 * 7) < 1, `ink ${ink28}, ${ink40}`);
  assert.throws(() => modelInput(image, 28, true, 'bar.png'), /bar\.png: --as-is needs 28x28 images .* this one is 60x60/);
  assert.throws(() => modelInput({ ...image, pixels: new Uint8Array(3600) }, 28, false, 'blank.png'), /blank\.png: no ink found/);
});

predict('end to end with the shipped model: --as-is matches eval; enlarged dark-on-grey-paper RGB copies get the same classes', async () => {
  const { test } = loadMnist(undefined, ['test']);
  const raw: string[] = [];
  const drawn: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const digit = test.images.subarray(i * 784, (i + 1) * 784);
    raw.push(join(root, `raw-${i}.png`));
    writeFileSync(raw[i], encodePng(28, 28, 1, digit));
    // 3x larger, black ink on grey paper (200), RGB.
    const big = new Uint8Array(84 * 84 * 3);
    for (let y = 0; y < 84; y++) {
      for (let x = 0; x < 84; x++) big.fill(Math.round(200 * (1 - digit[Math.floor(y / 3) * 28 + Math.floor(x / 3)] / 255)), (y * 84 + x) * 3, (y * 84 + x) * 3 + 3);
    }
    drawn.push(join(root, `drawn-${i}.png`));
    writeFileSync(drawn[i], encodePng(84, 84, 3, big));
  }
  const evalJson = join(root, 'eval.json');
  const e = await runCli(['eval', '--checkpoint', MODEL, '--limit', String(COUNT), '--output', evalJson], { timeoutMs: 180_000 });
  assert.is(e.code, 0, e.stderr);
  const expected = (JSON.parse(readFileSync(evalJson, 'utf8')) as EvalReport).images!;

  const asIsJson = join(root, 'as-is.json');
  const inputs = join(root, 'inputs');
  const r = await runCli(['predict', '--checkpoint', MODEL, ...raw.flatMap((f) => ['--image', f]), '--as-is', '--output', asIsJson, '--inputs', inputs], { timeoutMs: 180_000 });
  assert.is(r.code, 0, r.stderr);
  const got = (JSON.parse(readFileSync(asIsJson, 'utf8')) as PredictReport).images;
  assert.is(got.length, COUNT);
  got.forEach((g, i) => {
    assert.is(g.file, raw[i]);
    assert.is(g.prediction, expected[i].prediction, `image ${i}`);
    g.lengths!.forEach((v, j) => assert.ok(Math.abs(v - expected[i].lengths![j]) <= 1e-5, `image ${i} capsule ${j}: ${v} vs eval's ${expected[i].lengths![j]}`));
    assert.match(r.stdout, new RegExp(`raw-${i}\\.png: ${g.prediction} `));
  });
  // What the model saw, as PNG: the digit itself.
  const seen = decodePng(readFileSync(join(inputs, 'input-0.png')));
  assert.is(seen.width, 28);
  assert.equal(Array.from(seen.pixels), Array.from(test.images.subarray(0, 784)));

  const drawnJson = join(root, 'drawn.json');
  const d = await runCli(['predict', '--checkpoint', MODEL, ...drawn.flatMap((f) => ['--image', f]), '--output', drawnJson], { timeoutMs: 180_000 });
  assert.is(d.code, 0, d.stderr);
  const drawnPredictions = (JSON.parse(readFileSync(drawnJson, 'utf8')) as PredictReport).images.map((g) => g.prediction);
  assert.equal(drawnPredictions, Array.from(test.labels.subarray(0, COUNT)), 'the labels of the first test digits');
});

predict('the baseline CNN: softmax probabilities of eval\'s logits, over more images than one batch', async () => {
  const run = join(root, 'baseline');
  const tiny = JSON.stringify({ convChannels: [4], fcHidden: [8], dropout: 0 });
  const t = await runCli(['train', '--out', run, '--model', 'baseline', '--config', tiny, '--limit', '64', '--batch-size', '8', '--steps', '2', '--no-eval']);
  assert.is(t.code, 0, t.stderr);
  const checkpoint = join(run, 'checkpoint.safetensors');
  const n = 21; // one batch of 16 and a partial one
  const { test } = loadMnist(undefined, ['test']);
  const files = Array.from({ length: n }, (_, i) => {
    const file = join(root, `baseline-${i}.png`);
    writeFileSync(file, encodePng(28, 28, 1, test.images.subarray(i * 784, (i + 1) * 784)));
    return file;
  });
  const evalJson = join(root, 'baseline-eval.json');
  assert.is((await runCli(['eval', '--checkpoint', checkpoint, '--limit', String(n), '--output', evalJson])).code, 0);
  const logits = (JSON.parse(readFileSync(evalJson, 'utf8')) as EvalReport).images!.map((im) => im.logits!);
  const out = join(root, 'baseline-predict.json');
  const r = await runCli(['predict', '--checkpoint', checkpoint, '--as-is', ...files.flatMap((f) => ['--image', f]), '--output', out]);
  assert.is(r.code, 0, r.stderr);
  const report = JSON.parse(readFileSync(out, 'utf8')) as PredictReport;
  assert.is(report.model, 'baseline');
  assert.is(report.images.length, n);
  report.images.forEach((im, i) => {
    const top = Math.max(...logits[i]);
    const e = logits[i].map((v) => Math.exp(v - top));
    const sum = e.reduce((a, b) => a + b, 0);
    im.probabilities!.forEach((p, j) => assert.ok(Math.abs(p - e[j] / sum) <= 1e-5, `image ${i} class ${j}: ${p} vs ${e[j] / sum}`));
    assert.is(im.prediction, logits[i].indexOf(top));
  });
});

predict('bad input: exit code 2, the file or flag named, nothing written', async () => {
  const good = join(root, 'good.png');
  writeFileSync(good, encodePng(28, 28, 1, new Uint8Array(784).fill(0).map((_, i) => (i % 28 > 10 && i % 28 < 16 ? 255 : 0))));
  const corrupt = join(root, 'corrupt.png');
  writeFileSync(corrupt, encodePng(28, 28, 1, new Uint8Array(784)).subarray(0, 40));
  const blank = join(root, 'blank.png');
  writeFileSync(blank, encodePng(28, 28, 1, new Uint8Array(784)));
  const big = join(root, 'big.png');
  writeFileSync(big, encodePng(30, 30, 1, new Uint8Array(900)));
  const out = join(root, 'never.json');
  const cases: Array<[string[], RegExp]> = [
    [['--image', good], /--checkpoint FILE is required/],
    [['--checkpoint', MODEL], /at least one --image/],
    [['--checkpoint', join(root, 'missing.safetensors'), '--image', good], /missing\.safetensors/],
    [['--checkpoint', MODEL, '--image', good, '--image', corrupt], /corrupt\.png/],
    [['--checkpoint', MODEL, '--image', join(root, 'nowhere.png')], /nowhere\.png/],
    [['--checkpoint', MODEL, '--image', blank], /blank\.png: no ink found/],
    [['--checkpoint', MODEL, '--image', big, '--as-is'], /big\.png: --as-is needs 28x28/],
  ];
  for (const [flags, message] of cases) {
    const r = await runCli(['predict', ...flags, '--output', out]);
    assert.is(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.not.ok(existsSync(out));
  }
  // --output into a folder that is not there, or naming a folder: refused before any work (eval too).
  for (const command of [['predict', '--checkpoint', MODEL, '--image', good], ['eval', '--checkpoint', MODEL]]) {
    const missing = join(root, 'no-such-folder', 'out.json');
    const r = await runCli([...command, '--output', missing]);
    assert.is(r.code, 2, `${command[0]}: ${r.stderr}`);
    assert.ok(r.stderr.includes(`--output ${missing}: the folder ${join(root, 'no-such-folder')} does not exist`), `${command[0]}: ${r.stderr}`);
    const folder = await runCli([...command, '--output', root]);
    assert.is(folder.code, 2, `${command[0]}: ${folder.stderr}`);
    assert.match(folder.stderr, /is a folder; expected a file name/);
  }
});

predict.run();
