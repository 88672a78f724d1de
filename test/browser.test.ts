// The built browser bundle (dist/browser/capsnet.js) in a real headless Chromium (Debian's, WebGPU
// on SwiftShader): it acquires a device through navigator.gpu, runs kernels forward and backward,
// and the page compares them with values computed in plain JavaScript.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { serveStatic } from './helpers/server.ts';
import { chromiumMissingReason, launchChromium } from './helpers/browser.ts';
import { skipWithReason } from './helpers/skip.ts';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));

// Runs in the page. Sum of sigmoid(a * b) and its gradient wrt a, on the GPU and in JavaScript.
const SMOKE_PAGE = `<!doctype html><meta charset="utf-8"><title>capsnet smoke</title><link rel="icon" href="data:,">
<script type="module">
import { acquireGpu, parameter, fromArray, tidy, backward, ops } from '/browser/capsnet.js';
window.smoke = (async () => {
  const ctx = await acquireGpu();
  try {
    const n = 5003;
    const a = Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3);
    const b = Array.from({ length: n }, (_, i) => Math.cos(i * 0.11));
    const pa = parameter(ctx, [n], a, 'a');
    const tb = fromArray(ctx, [n], b, 'b');
    const loss = tidy(() => { const l = ops.sum(ops.sigmoid(ops.mul(pa, tb))); backward(l); return l; });
    const [lv, ga] = [await loss.read(), await pa.grad.read()];
    const f = (x) => 1 / (1 + Math.exp(-x));
    let expected = 0, worst = 0;
    for (let i = 0; i < n; i++) {
      const a32 = Math.fround(a[i]), b32 = Math.fround(b[i]);
      const s = f(a32 * b32);
      expected += s;
      const g = s * (1 - s) * b32;
      worst = Math.max(worst, Math.abs(ga[i] - g) / (1e-5 + 1e-4 * Math.abs(g)));
    }
    return { adapter: ctx.adapter, loss: lv[0], expected, worstRatio: worst };
  } finally {
    ctx.destroy();
  }
})().catch((e) => ({ error: String(e && e.stack || e) }));
</script>`;

const browser = suite('browser (Chromium, built bundle)');
const missing = chromiumMissingReason();

if (missing && !process.env.CI) {
  skipWithReason(browser, 'the bundle runs kernels in Chromium', missing);
} else {
  browser('the bundle runs kernels forward and backward in Chromium, matching JavaScript', async () => {
    assert.ok(existsSync(`${dist}browser/capsnet.js`), 'dist/browser/capsnet.js is missing: run `npm run build`');
    const server = await serveStatic(dist, { '/smoke.html': SMOKE_PAGE });
    const { context, close } = await launchChromium();
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
      page.on('pageerror', (e) => problems.push(String(e)));
      await page.goto(`${server.url}/smoke.html`);
      const result = await page.evaluate(() => (window as unknown as { smoke: Promise<Record<string, unknown>> }).smoke);
      assert.not.ok(result.error, `page error: ${result.error}`);
      const adapter = result.adapter as { name: string; backend: string };
      process.stdout.write(`  [chromium] ${adapter.name}\n`);
      assert.is(adapter.backend, 'browser');
      const [loss, expected] = [result.loss as number, result.expected as number];
      assert.ok(Math.abs(loss - expected) <= 1e-3 + 1e-5 * Math.abs(expected), `loss ${loss} vs ${expected}`);
      assert.ok((result.worstRatio as number) <= 1, `gradient off by ${result.worstRatio} x tolerance`);
      assert.equal(problems, [], 'no console errors');
    } finally {
      await close();
      await server.close();
    }
  });
}

browser.run();
