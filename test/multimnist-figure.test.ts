// `capsnet figures` on a MultiMNIST checkpoint (issue 8): the paper's figure 5, test pairs next to
// the decoder's two reconstructions in red and green. The PNG parses, has the layout's size, its
// red and green channels are the reconstructions computed here directly (the same test pairs, the
// same capsules, through the model's own decoder), its input cells are the pairs, and the sidecar's
// labels and reconstructed capsules are the pairs' labels and two longest capsules.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { redGreen } from '../src/cli/figures.ts';
import { gpu } from './helpers/gpu.ts';
import { saveCheckpoint } from '../src/io/checkpoint-file.ts';
import { decodePng } from '../src/io/png.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { CapsNet, initialParameters } from '../src/model/capsnet.ts';
import { makeConfig } from '../src/model/config.ts';
import { MultiMnistTestSet } from '../src/data/multimnist.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { noGrad } from '../src/autograd/tape.ts';
import { toByte } from '../src/io/images.ts';

const test = suite('capsnet figures: MultiMNIST', {});
let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-mm-figure-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

test('two-colour reconstructions of test pairs: size, red = first capsule\'s decoder output, green = second\'s, sidecar labels', async () => {
  const config = makeConfig({ inputSize: 36, conv1Channels: 8, primaryTypes: 2, decoderHidden: [16, 16] });
  const params = initialParameters(config, 7, 0.5);
  // Larger decoder weights than the initialisation's, so each capsule decodes to a clearly different
  // image (with the initial ones every reconstruction is near 0.5): red and green cannot be swapped.
  for (const name of ['decoder.fc1.weight', 'decoder.fc2.weight', 'decoder.fc3.weight']) params[name] = params[name].map((w) => 8 * w);
  const ckpt = join(root, 'mm.safetensors');
  const testSeed = 9;
  const maxShift = 4;
  await saveCheckpoint(ckpt, { config, params, step: 3, training: { options: { experiment: 'multimnist', testSeed, maxShift } } });
  const out = join(root, 'figures');
  const r = await runCli(['figures', '--checkpoint', ckpt, '--out', out]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /multimnist-reconstructions\.png/);
  assert.match(r.stderr, /a MultiMNIST model gets the two-colour figure/);

  const sidecar = JSON.parse(readFileSync(join(out, 'multimnist-reconstructions.json'), 'utf8'));
  const { pairs: N, columns, padding, scale, cell } = sidecar.layout;
  assert.is(cell, 36);
  assert.is(sidecar.testSeed, testSeed);
  assert.is(sidecar.maxShift, maxShift);
  assert.is(sidecar.pairs.length, N);
  const png = decodePng(readFileSync(join(out, 'multimnist-reconstructions.png')), 'figure');
  assert.is(png.channels, 3);
  const rows = Math.ceil((2 * N) / columns);
  assert.is(png.width, columns * (cell * scale + padding) + padding);
  assert.is(png.height, rows * (cell * scale + padding) + padding);

  // The same pairs and the same model, computed here.
  const ctx = await gpu();
  const { test: mnist } = loadMnist(undefined, ['test']);
  const set = new MultiMnistTestSet(mnist, N, testSeed, { canvas: 36, maxShift });
  const batch = set.createBatch(N, 10);
  set.fill(0, batch);
  const model = new CapsNet(ctx, config, params);
  const { v, lengths } = noGrad(() => tidy(() => model.forward(fromArray(ctx, [N, 1, 36, 36], batch.images))));
  const J = 10;
  const L = await lengths.read();
  const red = Int32Array.from(sidecar.pairs, (p: { reconstructed: number[] }) => p.reconstructed[0]);
  const green = Int32Array.from(sidecar.pairs, (p: { reconstructed: number[] }) => p.reconstructed[1]);
  const [first, second] = [red, green].map((classes) => noGrad(() => tidy(() => model.decode(v, classes))));
  const R = await first.read();
  const G = await second.read();
  for (const t of [v, lengths, first, second]) t.dispose();
  model.dispose();

  for (let k = 0; k < N; k++) {
    const pair = sidecar.pairs[k];
    assert.equal(pair.labels, [batch.firstLabels[k], batch.secondLabels[k]], `pair ${k}: labels`);
    // The reconstructed capsules are the two longest.
    const row = Array.from(L.subarray(k * J, (k + 1) * J));
    const sorted = row.map((x, j) => [x, j]).sort((a, b) => b[0] - a[0]);
    assert.equal([...pair.reconstructed].sort(), [sorted[0][1], sorted[1][1]].sort(), `pair ${k}: two longest`);
    assert.equal(pair.reconstructed, redGreen([sorted[0][1], sorted[1][1]] as [number, number], pair.labels), `pair ${k}: colours by the rule`);
    assert.is(pair.correct, [...pair.reconstructed].sort().join() === [...pair.labels].sort().join());
  }

  // Pixel by pixel (one sample per magnified pixel): input cells grey, overlay cells red/green/0.
  let worst = 0;
  /** Overlay pixels where the two reconstructions differ by more than a few grey levels. */
  let redDiffersFromGreen = 0;
  const at = (cellIndex: number, y: number, x: number) => {
    const top = padding + Math.floor(cellIndex / columns) * (cell * scale + padding) + y * scale;
    const left = padding + (cellIndex % columns) * (cell * scale + padding) + x * scale;
    return png.pixels.subarray((top * png.width + left) * 3, (top * png.width + left) * 3 + 3);
  };
  const plane = 36 * 36;
  for (let k = 0; k < N; k++) {
    for (let p = 0; p < plane; p++) {
      const y = Math.floor(p / 36);
      const x = p % 36;
      const grey = toByte(batch.images[k * plane + p]);
      assert.equal(Array.from(at(2 * k, y, x)), [grey, grey, grey], `pair ${k} input pixel ${p}`);
      const [r, g, b] = at(2 * k + 1, y, x);
      worst = Math.max(worst, Math.abs(r - toByte(R[k * plane + p])), Math.abs(g - toByte(G[k * plane + p])));
      assert.is(b, 0, `pair ${k} overlay pixel ${p}: blue`);
      if (Math.abs(r - g) > 8) redDiffersFromGreen++;
    }
  }
  // Same kernels on the same backend: at most a rounding step of the byte conversion apart.
  assert.ok(worst <= 1, `red/green channels differ from the decoder outputs by up to ${worst}`);
  assert.ok(redDiffersFromGreen > N * plane / 4, `the two reconstructions are distinguishable (${redDiffersFromGreen} pixels differ)`);
});

test('the colour rule: red is the first digit\'s capsule and green the second\'s whenever they are among the two longest', () => {
  // [two longest, longest first], labels [first, second] -> [red, green]
  const cases: Array<[[number, number], [number, number], [number, number]]> = [
    [[3, 5], [3, 5], [3, 5]],
    [[5, 3], [3, 5], [3, 5]], // the second digit's capsule is the longer: still green
    [[5, 7], [3, 5], [7, 5]], // only the second digit found: it stays green
    [[7, 3], [3, 5], [3, 7]], // only the first digit found, as runner-up: it is red
    [[3, 7], [3, 5], [3, 7]],
    [[7, 8], [3, 5], [7, 8]], // neither: longest red
  ];
  for (const [longest, labels, colours] of cases) assert.equal(redGreen(longest, labels), colours, `${longest} with labels ${labels}`);
});

test.run();
