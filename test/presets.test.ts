// The model presets of the paper's experiments (src/model/config.ts CONFIG_PRESETS): geometry and
// parameter counts, each preset built at full size with a forward pass at batch 1, and each at a
// small size (its input shape, padding and routing options kept, fewer channels) against the f64
// reference, forward and every gradient. Also convPadding in configs and checkpoints, and
// Fashion-MNIST from Debian's dataset-fashion-mnist when it is installed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { gpu } from './helpers/gpu.ts';
import { assertClose, type Tolerance } from './helpers/assert.ts';
import { makeRng } from './helpers/random.ts';
import { skipWithReason } from './helpers/skip.ts';
import { capsNetConfig, capsNetForward } from './reference/capsnet.ts';
import { conv2dForward } from './reference/conv2d.ts';
import * as ref from './reference/multimnist.ts';
import {
  CONFIG_PRESETS, PAPER_CONFIG, geometry, isPresetName, makeConfig, parameterCount, parameterShapes, presetConfig,
  type CapsNetConfig, type PresetName,
} from '../src/model/config.ts';
import { CapsNet, initialParameters, oneHotTargets } from '../src/model/capsnet.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../src/io/checkpoint.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { backward, noGrad } from '../src/autograd/tape.ts';

const NAMES = Object.keys(CONFIG_PRESETS) as PresetName[];
/** The presets with distinct configs (fashion-mnist is the mnist model: a test checks that). */
const DISTINCT = NAMES.filter((name, k) => NAMES.findIndex((other) => JSON.stringify(presetConfig(other)) === JSON.stringify(presetConfig(name))) === k);

const geo = suite('presets: geometry and parameters');

geo('the table: every preset builds a valid config; the geometry of each follows its input size and padding', () => {
  assert.equal(NAMES, ['mnist', 'fashion-mnist', 'multimnist', 'affnist', 'cifar10']);
  const expected: Record<PresetName, [number, number, number, number, number]> = {
    // conv1 padding, conv1 side, primary padding, grid, primary capsules
    mnist: [0, 20, 0, 6, 1152],
    'fashion-mnist': [0, 20, 0, 6, 1152],
    multimnist: [0, 28, 0, 10, 3200],
    affnist: [0, 32, 0, 12, 4608],
    cifar10: [4, 24, 4, 12, 9216],
  };
  for (const name of NAMES) {
    const cfg = presetConfig(name);
    const g = geometry(cfg);
    assert.equal([g.conv1Padding, g.conv1Size, g.primaryPadding, g.grid, g.primaryCaps], expected[name], name);
    assert.is(g.pixels, cfg.inputChannels * cfg.inputSize ** 2);
    // The independent reference geometry and parameter list agree.
    const rg = ref.generalGeometry(cfg);
    assert.equal([rg.pad1, rg.conv1Size, rg.pad2, rg.grid, rg.I], expected[name], `${name} (reference)`);
    assert.equal(parameterShapes(cfg), ref.generalParamShapes(cfg), `${name} parameter shapes`);
    assert.ok(isPresetName(name) && CONFIG_PRESETS[name].description.length > 20);
  }
  assert.equal(presetConfig('mnist'), makeConfig(), 'mnist is the paper config');
  assert.equal(presetConfig('fashion-mnist'), presetConfig('mnist'), 'fashion-mnist is the mnist model');
  assert.equal(DISTINCT, ['mnist', 'multimnist', 'affnist', 'cifar10']);
  assert.is(parameterCount(presetConfig('mnist')), 8_215_568);
  const cifar = presetConfig('cifar10');
  assert.equal([cifar.inputChannels, cifar.inputSize, cifar.primaryTypes, cifar.convPadding, cifar.leaky, cifar.routingBias, cifar.decoder], [3, 24, 64, 'same', true, true, false]);
  assert.equal(parameterShapes(cifar)['digit.W'], [9216, 10, 16, 8]);
  assert.equal(parameterShapes(cifar)['conv1.weight'], [256, 3, 9, 9]);
  assert.equal(parameterShapes(cifar)['primary.weight'], [512, 256, 9, 9]);
  assert.equal(parameterShapes(presetConfig('affnist'))['decoder.fc3.weight'], [1600, 1024]);
  assert.equal(parameterShapes(presetConfig('multimnist'))['decoder.fc3.weight'], [1296, 1024]);
});

geo('presetConfig: overrides on top, unknown names and bad padding refused with the choices', () => {
  assert.is(presetConfig('affnist', { routings: 2 }).routings, 2);
  assert.is(presetConfig('affnist', { routings: 2 }).inputSize, 40);
  assert.throws(() => presetConfig('svhn'), /unknown model preset 'svhn', expected one of mnist, fashion-mnist, multimnist, affnist, cifar10/);
  assert.throws(() => makeConfig({ convPadding: 'full' as never }), /convPadding must be 'valid' or 'same', got "full"/);
  assert.throws(() => makeConfig({ convPadding: 'same', conv1Kernel: 8 }), /'same' needs an odd conv1Kernel/);
  assert.throws(() => presetConfig('affnist', { inputSize: 8 }), /preset 'affnist': the input 8x8 is smaller than the conv1 kernel 9/);
  assert.throws(() => makeConfig({ inputSize: 16 }), /conv1 output 8x8 is smaller than the primary kernel 9/);
  // 'same' keeps small inputs valid: 8 -> 8 -> 4.
  assert.is(geometry(makeConfig({ inputSize: 8, convPadding: 'same' })).grid, 4);
  assert.ok(Object.isFrozen(CONFIG_PRESETS.cifar10.config), 'presets cannot be changed by accident');
});

geo('checkpoints keep convPadding; a checkpoint without it (written before the field existed) reads as valid', () => {
  const cfg = makeConfig({
    inputChannels: 3, inputSize: 10, conv1Channels: 2, conv1Kernel: 3, primaryTypes: 1, primaryDim: 2, primaryKernel: 3,
    digitCaps: 2, digitDim: 2, convPadding: 'same', decoder: false,
  });
  const params = initialParameters(cfg, 1);
  const back = decodeCheckpoint(encodeCheckpoint({ config: cfg, params, step: 3 }), 'same.safetensors');
  assert.is(back.config.convPadding, 'same');
  assert.equal(back.params['digit.W'].length, params['digit.W'].length);
  const { convPadding: _dropped, ...old } = { ...PAPER_CONFIG, decoder: false };
  void _dropped;
  assert.is(makeConfig(old as Partial<CapsNetConfig>).convPadding, 'valid');
});

// ---------------------------------------------------------------------------------------------
const gpuSuite = suite('presets on the GPU');

for (const name of DISTINCT) {
  gpuSuite(`${name}: the full-size model builds and its forward pass runs at batch 1`, async () => {
    const ctx = await gpu();
    const cfg = presetConfig(name);
    const net = CapsNet.create(ctx, cfg, 1);
    const n = net.parameterList().reduce((s, t) => s + t.size, 0);
    assert.is(n, parameterCount(cfg));
    const rng = makeRng(3);
    const image = Float32Array.from({ length: geometry(cfg).pixels }, () => (rng() < 0.2 ? rng() : 0));
    const out = tidy(() => noGrad(() => {
      const layers: Record<string, ReturnType<typeof fromArray>> = {};
      const r = net.forward(fromArray(ctx, [1, cfg.inputChannels, cfg.inputSize, cfg.inputSize], image), (layer, t) => { layers[layer] = t; });
      return { lengths: r.lengths, conv1: layers['conv1'], primary: layers['primary conv'] };
    }));
    assert.equal(out.lengths.shape, [1, cfg.digitCaps]);
    const values = await out.lengths.read();
    assert.ok(values.every((v) => Number.isFinite(v) && v > 0 && v < 1), `capsule lengths in (0, 1): ${values}`);
    if (cfg.convPadding === 'same') {
      // The padded convolutions at the real shapes (the kernels chosen for them) against the reference:
      // Conv1 whole, PrimaryCaps on a few output channels (computed here from the GPU's Conv1 output).
      const g = geometry(cfg);
      const p = await net.exportParams();
      const conv1 = await out.conv1.read();
      const w1 = f64(p['conv1.weight']);
      const refConv1 = conv2dForward(f64(image), [1, 3, 24, 24], w1, [256, 3, 9, 9], f64(p['conv1.bias']), { relu: true, padding: g.conv1Padding }).out;
      assertClose(conv1, refConv1, { atol: 2e-5, rtol: 2e-4 }, 'conv1 (same padding), 24x24x256');
      const primary = await out.primary.read();
      const C = 256;
      const S = g.conv1Size;
      const G = g.grid;
      const pad = g.primaryPadding;
      for (const co of [0, 7, 255, 256, 511]) {
        const expected = new Float64Array(G * G);
        for (let oy = 0; oy < G; oy++) {
          for (let ox = 0; ox < G; ox++) {
            let acc = p['primary.bias'][co];
            for (let ci = 0; ci < C; ci++) {
              for (let ky = 0; ky < 9; ky++) {
                const iy = oy * 2 - pad + ky;
                if (iy < 0 || iy >= S) continue;
                for (let kx = 0; kx < 9; kx++) {
                  const ix = ox * 2 - pad + kx;
                  if (ix >= 0 && ix < S) acc += conv1[(ci * S + iy) * S + ix] * p['primary.weight'][((co * C + ci) * 9 + ky) * 9 + kx];
                }
              }
            }
            expected[oy * G + ox] = acc;
          }
        }
        // A sum of 20,736 f32 products of order 0.01-1.
        assertClose(primary.subarray(co * G * G, (co + 1) * G * G), expected, { atol: 1e-4, rtol: 1e-3 }, `PrimaryCaps conv channel ${co} (same padding, stride 2)`);
      }
    }
    for (const t of Object.values(out)) t.dispose();
    net.dispose();
  });
}

const f64 = (x: Float32Array) => Float64Array.from(x);

function scaled(r: Float64Array): Tolerance {
  let m = 0;
  for (const v of r) m = Math.max(m, Math.abs(v));
  return { atol: 1e-4 * m + 1e-7, rtol: 1e-3 };
}

/** A preset at a small size: its input shape, padding and routing options, fewer channels. */
function small(name: PresetName): CapsNetConfig {
  return presetConfig(name, { conv1Channels: 6, primaryTypes: 3, primaryDim: 4, digitDim: 6, decoderHidden: [12, 10], reconWeight: 0.05 });
}

for (const name of DISTINCT) {
  gpuSuite(`${name} at a small size (input ${presetConfig(name).inputSize}x${presetConfig(name).inputSize}x${presetConfig(name).inputChannels}), batch 2: forward, loss and every gradient match the reference`, async () => {
    const ctx = await gpu();
    const cfg = small(name);
    const B = 2;
    const values = initialParameters(cfg, 5, 0.1);
    const net = new CapsNet(ctx, cfg, values);
    const rng = makeRng(11);
    const P = geometry(cfg).pixels;
    const images = Float32Array.from({ length: B * P }, () => (rng() < 0.3 ? rng() : 0));
    const labels = Int32Array.from([3, 8]);
    const params64 = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, f64(v)]));
    const targets = new Float64Array(B * 10);
    labels.forEach((l, b) => { targets[b * 10 + l] = 1; });
    const r = ref.capsNetGeneralForward(params64, cfg, { images: f64(images), targets, recon: cfg.decoder ? [{ classes: labels, images: f64(images) }] : [] });
    if (cfg.convPadding === 'valid') {
      // And the original whole-model reference, for the presets it covers.
      const orig = capsNetForward(params64, capsNetConfig({ ...cfg }), { images: f64(images), labels });
      assertClose([r.loss], [orig.loss], { atol: 0, rtol: 1e-12 }, `${name}: the two references agree`);
    }
    const grads = r.backward().grads;
    const out = tidy(() => {
      const x = fromArray(ctx, [B, cfg.inputChannels, cfg.inputSize, cfg.inputSize], images);
      const res = net.loss(x, fromArray(ctx, [B], Float32Array.from(labels)), oneHotTargets(ctx, labels, 10));
      backward(res.loss);
      return { loss: res.loss, lengths: res.lengths };
    });
    assertClose(await out.lengths.read(), r.lengths, { atol: 2e-5, rtol: 2e-4 }, `${name}: lengths`);
    assertClose(await out.loss.read(), [r.loss], { atol: 1e-5, rtol: 1e-4 }, `${name}: loss`);
    for (const [pname, p] of Object.entries(net.params)) assertClose(await p.grad!.read(), grads[pname], scaled(grads[pname]), `${name}: d loss / d ${pname}`);
    out.loss.dispose();
    out.lengths.dispose();
    net.dispose();
  });
}

// ---------------------------------------------------------------------------------------------
const fashion = suite('Fashion-MNIST');
const FASHION_DIR = '/usr/share/datasets/fashion-mnist';

if (!existsSync(FASHION_DIR)) {
  skipWithReason(fashion, 'loads the official split from Debian\'s dataset-fashion-mnist',
    `${FASHION_DIR} is absent (apt-get install dataset-fashion-mnist installs it)`);
} else {
  fashion('loads the official split from Debian\'s dataset-fashion-mnist (gzipped IDX): 60,000 + 10,000 images, 6,000 / 1,000 per class', () => {
    const { train, test } = loadMnist(FASHION_DIR);
    assert.equal([train.count, train.height, train.width, train.channels], [60000, 28, 28, 1]);
    assert.equal([test.count, test.height, test.width, test.channels], [10000, 28, 28, 1]);
    for (const [ds, per] of [[train, 6000], [test, 1000]] as const) {
      const counts = new Array<number>(10).fill(0);
      ds.labels.forEach((l) => counts[l]++);
      assert.equal(counts, new Array(10).fill(per));
    }
    // Not MNIST by mistake: clothing fills far more of the frame than digits (mean ink ~0.29 vs ~0.13).
    let ink = 0;
    for (let k = 0; k < 784 * 1000; k++) ink += test.images[k];
    const mean = ink / (784 * 1000 * 255);
    assert.ok(mean > 0.2, `mean pixel of the first 1,000 test images: ${mean.toFixed(3)}`);
  });
}

geo.run();
gpuSuite.run();
fashion.run();
