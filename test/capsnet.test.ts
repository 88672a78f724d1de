// The whole CapsNet on the GPU against the f64 reference (test/reference/capsnet.ts): forward
// outputs, the loss and every parameter's gradient of one training step, on a small config and on
// the paper's full-size model, then an Adam update.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { assertClose, type Tolerance } from './helpers/assert.ts';
import { makeRng } from './helpers/random.ts';
import { capsNetForward, capsNetConfig, countCapsNetParams } from './reference/capsnet.ts';
import { adamStep } from './reference/adam.ts';
import { CapsNet, initialParameters, oneHotTargets } from '../src/model/capsnet.ts';
import { makeConfig, parameterCount, type CapsNetConfig } from '../src/model/config.ts';
import { Adam } from '../src/optim/adam.ts';
import { fromArray, tidy } from '../src/tensor.ts';
import { backward } from '../src/autograd/tape.ts';
import { ShapeError } from '../src/gpu/errors.ts';

const SMALL: Partial<CapsNetConfig> = {
  inputSize: 14, conv1Channels: 8, conv1Kernel: 5, primaryTypes: 3, primaryDim: 5, primaryKernel: 3,
  digitCaps: 4, digitDim: 6, decoderHidden: [12, 10], reconWeight: 0.05,
};

function batchFor(config: CapsNetConfig, B: number, seed: number) {
  const rng = makeRng(seed);
  const pixels = config.inputChannels * config.inputSize * config.inputSize;
  const images = Float32Array.from({ length: B * pixels }, () => (rng() < 0.3 ? rng() : 0));
  const labels = Int32Array.from({ length: B }, (_, b) => (b * 7 + seed) % config.digitCaps);
  return { images, labels };
}

const f64 = (x: Float32Array) => Float64Array.from(x);

/**
 * Gradient tolerance: a gradient is a sum over the batch and the whole network of f32 products, so
 * compare each tensor relative to its own scale (atol = 1e-4 * max |ref|) instead of element by
 * element against 1e-5: small entries are differences of large f32 terms.
 */
function scaled(ref: Float64Array, rel = 1e-4): Tolerance {
  let m = 0;
  for (const v of ref) m = Math.max(m, Math.abs(v));
  return { atol: rel * m + 1e-7, rtol: 1e-3 };
}

async function compareOneStep(config: CapsNetConfig, B: number, seed: number) {
  const ctx = await gpu();
  const values = initialParameters(config, seed);
  const model = new CapsNet(ctx, config, values);
  const { images, labels } = batchFor(config, B, seed);
  const ref = capsNetForward(
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, f64(v)])),
    capsNetConfig({ ...config }),
    { images: f64(images), labels },
  );
  const refGrads = ref.backward().grads;
  const out = tidy(() => {
    const x = fromArray(ctx, [B, config.inputChannels, config.inputSize, config.inputSize], images, 'images');
    const y = fromArray(ctx, [B], Float32Array.from(labels), 'labels');
    const t = oneHotTargets(ctx, labels, config.digitCaps);
    const r = model.loss(x, y, t);
    backward(r.loss);
    return { loss: r.loss, margin: r.margin, lengths: r.lengths, v: r.v, ...(r.reconstruction ? { recon: r.reconstruction } : {}) };
  });
  assertClose(await out.v.read(), ref.v, { atol: 2e-5, rtol: 2e-4 }, 'v');
  assertClose(await out.lengths.read(), ref.lengths, { atol: 2e-5, rtol: 2e-4 }, 'lengths');
  assertClose(await out.margin.read(), [ref.marginLoss], { atol: 1e-5, rtol: 1e-4 }, 'margin loss');
  assertClose(await out.loss.read(), [ref.loss], { atol: 1e-5, rtol: 1e-4 }, 'loss');
  if (out.recon) assertClose(await out.recon.read(), ref.reconstruction!, { atol: 2e-5, rtol: 2e-4 }, 'reconstruction');
  for (const [name, p] of Object.entries(model.params)) {
    assert.ok(p.grad, `${name} has a gradient`);
    assertClose(await p.grad!.read(), refGrads[name], scaled(refGrads[name]), `d loss / d ${name}`);
  }
  for (const t of Object.values(out)) t.dispose();
  return { ctx, model, values, refGrads };
}

const model = suite('CapsNet vs reference');

model('parameter count of the built paper model: 8,215,568, and 6,804,224 without the decoder', async () => {
  const ctx = await gpu();
  for (const [config, expected] of [[makeConfig(), 8_215_568], [makeConfig({ decoder: false }), 6_804_224]] as const) {
    const net = CapsNet.create(ctx, config, 1);
    const n = net.parameterList().reduce((s, t) => s + t.size, 0);
    assert.is(n, expected);
    assert.is(parameterCount(config), expected);
    assert.is(countCapsNetParams(capsNetConfig({ ...config })), expected);
    net.dispose();
  }
});

model('small config, batch 4: forward, loss, every gradient, then an Adam step, match the reference', async () => {
  const config = makeConfig(SMALL);
  const { ctx, model: net, values, refGrads } = await compareOneStep(config, 4, 3);
  const adam = new Adam(ctx);
  adam.step(net.parameterList());
  for (const [name, p] of Object.entries(net.params)) {
    const param = f64(values[name]);
    const m = new Float64Array(param.length);
    const v = new Float64Array(param.length);
    // The reference step uses the GPU's own gradient, so this checks the update alone.
    adamStep(param, f64(await p.grad!.read()), m, v, 1);
    assertClose(await p.read(), param, { atol: 1e-6, rtol: 1e-5 }, `${name} after one Adam step`);
  }
  void refGrads;
  adam.dispose();
  net.dispose();
});

model('small config with gradMode last, leaky routing, a routing bias and no decoder', async () => {
  const config = makeConfig({ ...SMALL, gradMode: 'last', leaky: true, routingBias: true, decoder: false, routings: 2 });
  const { model: net } = await compareOneStep(config, 3, 5);
  net.dispose();
});

model('the paper model at full size, batch 4: forward, loss and every gradient match the reference', async () => {
  const { model: net } = await compareOneStep(makeConfig(), 4, 7);
  net.dispose();
});

model('predict: classes, lengths, poses and reconstructions of 5 images in batches of 2 match the reference', async () => {
  const ctx = await gpu();
  const config = makeConfig(SMALL);
  const values = initialParameters(config, 9, 0.5); // digit.W std 0.5: lengths differ clearly between classes
  const net = new CapsNet(ctx, config, values);
  const { images } = batchFor(config, 5, 4);
  const got = await net.predict(images, { batchSize: 2, reconstruct: true });
  const params = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, f64(v)]));
  const J = config.digitCaps;
  const classes = Int32Array.from({ length: 5 }, () => 0);
  const first = capsNetForward(params, capsNetConfig({ ...config }), { images: f64(images), labels: classes });
  for (let i = 0; i < 5; i++) {
    const row = Array.from(first.lengths.subarray(i * J, (i + 1) * J));
    classes[i] = row.indexOf(Math.max(...row));
  }
  // The reference's decoder, masked by the predicted classes: the reconstruction predict returns.
  const ref = capsNetForward(params, capsNetConfig({ ...config }), { images: f64(images), labels: classes });
  assert.equal(Array.from(got.classes), Array.from(classes));
  assertClose(got.lengths, ref.lengths, { atol: 2e-5, rtol: 2e-4 }, 'lengths');
  assertClose(got.poses, ref.v, { atol: 2e-5, rtol: 2e-4 }, 'poses (digit capsules)');
  assertClose(got.reconstructions!, ref.reconstruction!, { atol: 2e-5, rtol: 2e-4 }, 'reconstructions');
  const pixels = config.inputSize * config.inputSize;
  assert.is((await net.predict(images.subarray(0, 2 * pixels), { batchSize: 8 })).reconstructions, undefined, 'none unless asked');
  const error = await net.predict(images.subarray(1)).then(() => null, (e: Error) => e);
  assert.ok(error instanceof ShapeError, `a ShapeError, got ${error}`);
  assert.match(error!.message, new RegExp(`CapsNet\\.predict: images must hold whole 1x14x14 images \\(196 values each\\), got ${5 * pixels - 1} values`));
  net.dispose();
});

model.run();
