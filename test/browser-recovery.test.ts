// The web app (dist/web) after a lost GPU device, in Debian's Chromium (WebGPU on SwiftShader)
// driven through playwright-core: the test destroys the page's device behind its back
// (window.capsnetApp.app.ctx.device.destroy(), as a driver reset would take it away), and checks
// that the page says so with a keyboard-reachable button, that GPU work asked for meanwhile fails
// with a message instead of hanging, and that the button brings back the same model on a new
// device: the explorer gives the lengths it gave before, the Model tab tests it, and a training
// run interrupted by the loss continues from its last snapshot exactly (the step after the
// snapshot has bitwise the loss it had before the loss). Screenshots: test-output/web-device-lost*.png.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { chromiumMissingReason, launchChromium } from './helpers/browser.ts';
import { skipWithReason } from './helpers/skip.ts';
import { serveWeb, type WebServer } from './helpers/web-server.ts';
import { PRESETS } from '../src/web/models.ts';
import { initialParameters } from '../src/model/capsnet.ts';
import { makeConfig } from '../src/model/config.ts';
import { encodeCheckpoint } from '../src/io/checkpoint.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const webDir = `${root}dist/web/`;
const outputDir = `${root}test-output/`;

/** The browser's handle on the page (src/web/app.ts). */
type Handle = any;

interface Seen {
  lengths: number[] | null;
  reconstruction: number[] | null;
  error: string | null;
  step: number;
  source: string;
}

/** Waits for the page's GPU work to end, then reads what the explorer shows. */
async function seen(page: Page): Promise<Seen> {
  return page.evaluate(async () => {
    const h = (window as unknown as { capsnetApp: Handle }).capsnetApp;
    await h.idle();
    const s = h.explorer.state;
    return {
      lengths: s.analysis ? Array.from(s.analysis.lengths as Float32Array) : null,
      reconstruction: s.reconstruction ? Array.from(s.reconstruction as Float32Array) : null,
      error: s.error,
      step: h.app.entry.step,
      source: s.source,
    };
  });
}

/** Takes the device away from the page, as a GPU reset would (the page did not destroy it itself). */
async function loseDevice(page: Page): Promise<void> {
  await page.evaluate(() => (window as unknown as { capsnetApp: Handle }).capsnetApp.app.ctx.device.destroy());
  await page.waitForSelector('#gpu-lost', { state: 'visible', timeout: 20_000 });
}

async function waitRestored(page: Page): Promise<void> {
  await page.waitForFunction(() => document.querySelector('#gpu-lost-title')?.textContent === 'The model is back', null, { timeout: 120_000 });
  await page.evaluate(() => (window as unknown as { capsnetApp: Handle }).capsnetApp.recovery.restoring);
}

/** The page's words for the steps after `kept` up to `reached`. */
function lostWords(kept: number, reached: number): string {
  return reached === kept + 1 ? `step ${reached} is lost` : `steps ${kept + 1} to ${reached} are lost`;
}

function screenshotPath(name: string): string {
  mkdirSync(outputDir, { recursive: true });
  return `${outputDir}${name}`;
}

const recovery = suite('web app after a lost GPU device (Chromium, SwiftShader)');
const missing = chromiumMissingReason();

let fx: { server: WebServer; context: BrowserContext; close: () => Promise<void> } | null = null;

async function openPage(path: string) {
  const page = await fx!.context.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  const problems: string[] = [];
  const warnings: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    if (m.type() === 'warning') warnings.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  await page.goto(fx!.server.url + path);
  await page.waitForFunction(() => (window as unknown as { capsnetApp?: { ready: unknown } }).capsnetApp?.ready, null, { timeout: 60_000 });
  await page.evaluate(() => (window as unknown as { capsnetApp: Handle }).capsnetApp.ready);
  return { page, problems, warnings };
}

if (missing && !process.env.CI) {
  skipWithReason(recovery, 'the web app after a lost device', missing);
} else {
  recovery.before(async () => {
    assert.ok(existsSync(`${webDir}app.js`), 'dist/web/app.js is missing: run `npm run build`');
    // A small model made on the CPU (no GPU in Node needed); digit.W wider than the default init
    // so that the capsule lengths of this untrained model differ clearly from digit to digit.
    const config = makeConfig(PRESETS.small);
    const bytes = encodeCheckpoint({ config, params: initialParameters(config, 7, 0.5), step: 0 });
    const server = await serveWeb(webDir);
    server.put('/test/small.safetensors', bytes);
    const { context, close } = await launchChromium();
    fx = { server, context, close };
  });

  recovery.after(async () => {
    if (!fx) return;
    await fx.close();
    await fx.server.close();
    fx = null;
  });

  recovery('the explorer: a notice with a focused Restore button; work asked for meanwhile fails with a message; the same model and lengths come back; the Model tab works', async () => {
    const { page, problems, warnings } = await openPage('/?model=/test/small.safetensors');
    try {
      const before = await seen(page);
      assert.is(before.source, 'test #0');
      assert.is(before.error, null);
      assert.ok(before.lengths && before.reconstruction, 'test digit #0 classified and reconstructed');
      const adapter = (await page.textContent('#gpu-chip'))!;

      await loseDevice(page);
      const notice = (await page.textContent('#gpu-lost'))!;
      assert.match(notice, /The GPU device was lost/);
      assert.match(notice, /rebuilds small\.safetensors from the checkpoint it was loaded from \(step 0\), at step 0: nothing is lost/);
      assert.is(await page.getAttribute('#gpu-lost', 'role'), 'alert');
      assert.is(await page.evaluate(() => document.activeElement?.id), 'gpu-restore', 'the Restore button has the keyboard focus');
      assert.is(await page.textContent('#gpu-chip'), 'GPU device lost');
      assert.ok(warnings.some((w) => /the GPU device was lost \(destroyed/.test(w)), `the loss is logged as a warning (${warnings.join(' | ')})`);

      // While the device is gone: a classification and a test fail at once, with a message.
      await page.evaluate(() => (window as unknown as { capsnetApp: Handle }).capsnetApp.explorer.showTest(3));
      const during = await seen(page);
      assert.match(during.error ?? '', /The GPU device was lost/);
      assert.is(during.lengths, null, 'no stale lengths shown for the new input');
      assert.match((await page.textContent('#pred-sub'))!, /restore the model with the button at the top/);
      await page.click('#tab-model');
      await page.fill('#model-eval-count', '20');
      await page.click('#model-eval');
      await page.waitForFunction(() => /Test failed: .*GPU device was lost/.test(document.querySelector('#model-eval-result')?.textContent ?? ''), null, { timeout: 20_000 });
      await page.click('#tab-train');
      await page.click('#train-start');
      assert.match((await page.textContent('#train-message'))!, /^The GPU device was lost: restore the model with the button at the top of the page first\.$/);
      assert.is(await page.textContent('#train-state'), 'idle');
      await page.click('#tab-explore');
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: screenshotPath('web-device-lost.png') });

      // Restore with the keyboard.
      await page.focus('#gpu-restore');
      await page.keyboard.press('Enter');
      await waitRestored(page);
      assert.match((await page.textContent('#gpu-lost-message'))!, /^small\.safetensors was restored at step 0 from the checkpoint it was loaded from \(step 0\), on a new GPU device: \S/);
      assert.is(await page.getAttribute('#gpu-lost', 'role'), 'status');
      assert.is(await page.evaluate(() => document.activeElement?.id), 'gpu-dismiss');
      assert.is(await page.textContent('#gpu-chip'), adapter, 'the header names the new adapter');
      // The explorer redid the input it failed on (test digit #3).
      const redone = await seen(page);
      assert.is(redone.error, null);
      assert.is(redone.source, 'test #3');
      assert.ok(redone.lengths, 'test digit #3 classified after the restore');
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: screenshotPath('web-device-restored.png') });

      await page.evaluate(() => (window as unknown as { capsnetApp: Handle }).capsnetApp.explorer.showTest(0));
      const after = await seen(page);
      assert.is(after.error, null);
      assert.is(after.source, 'test #0');
      // The same model on the same kind of device runs the same kernels: identical values.
      assert.equal(after.lengths, before.lengths, 'lengths of test digit #0 before the loss and after the restore');
      assert.equal(after.reconstruction, before.reconstruction, 'reconstruction before and after');
      // A slider still redraws the reconstruction.
      const slider = page.locator('#sliders input[data-dim="0"]');
      await slider.focus();
      for (let k = 0; k < 10; k++) await page.keyboard.press('ArrowRight');
      const moved = await seen(page);
      assert.not.equal(moved.reconstruction, before.reconstruction, 'a pose slider changes the reconstruction');

      await page.click('#tab-model');
      await page.click('#model-eval');
      await page.waitForFunction(() => /% of the first 20 test images right/.test(document.querySelector('#model-eval-result')?.textContent ?? ''), null, { timeout: 60_000 });
      await page.click('#gpu-dismiss');
      assert.not.ok(await page.isVisible('#gpu-lost'), 'dismissed');

      // The page's own destroy (as on leaving the page) is not a loss: 'destroyed' too, but flagged.
      const deliberate = await page.evaluate(async () => {
        const app = (window as unknown as { capsnetApp: Handle }).capsnetApp.app;
        const ctx = app.ctx;
        app.destroyContext();
        const info = await ctx.device.lost;
        await new Promise((resolve) => setTimeout(resolve, 50));
        return { reason: info.reason, lost: app.lost, hidden: (document.querySelector('#gpu-lost') as HTMLElement).hidden };
      });
      assert.equal(deliberate, { reason: 'destroyed', lost: null, hidden: true }, 'no notice for the page\'s own destroy');
      assert.equal(problems, [], 'no console errors, page errors or unhandled rejections');
    } finally {
      await page.close();
    }
  });

  recovery('training: the run stops cleanly, the model comes back from its last snapshot and training continues exactly from there', async () => {
    const { page, problems } = await openPage('/?model=/test/small.safetensors#train');
    try {
      await page.waitForFunction(() => /training images loaded/.test(document.querySelector('#data-status')?.textContent ?? ''), null, { timeout: 60_000 });
      // Snapshots at pauses only, so that the test knows which step is restored.
      await page.evaluate(() => {
        (window as unknown as { capsnetApp: Handle }).capsnetApp.trainPanel.snapshotIntervalMs = 1e12;
      });
      await page.selectOption('#train-model', 'current');
      await page.selectOption('#train-batch', '8');
      await page.fill('#train-eval-every', '0');
      await page.click('#train-start');
      await page.waitForFunction(() => ((window as any).capsnetApp.trainPanel.run?.records.length ?? 0) >= 2, null, { timeout: 120_000});
      await page.click('#train-pause');
      await page.evaluate(() => (window as any).capsnetApp.trainPanel.run.loop);
      const paused = await page.evaluate(() => {
        const h = (window as any).capsnetApp;
        return { step: h.app.entry.step as number, snapshot: h.app.entry.restorePoint.step as number };
      });
      assert.is(paused.snapshot, paused.step, 'a pause takes a snapshot');
      await page.evaluate(() => (window as any).capsnetApp.explorer.showTest(0));
      const atPause = await seen(page);
      assert.is(atPause.step, paused.step);

      // Resume, and lose the device once at least one more step is done.
      await page.click('#train-start');
      await page.waitForFunction((p) => (window as any).capsnetApp.app.entry.step >= p + 1, paused.step, { timeout: 120_000 });
      await loseDevice(page);
      const lost = await page.evaluate(async () => {
        const h = (window as any).capsnetApp;
        await h.trainPanel.run.loop;
        return { step: h.app.lost.step as number, records: h.trainPanel.run.records.map((r: { step: number; loss: number }) => [r.step, r.loss]) as Array<[number, number]> };
      });
      const P = paused.step;
      assert.ok(lost.step >= P + 1, `lost at step ${lost.step}, after the snapshot of step ${P}`);
      assert.match((await page.textContent('#gpu-lost-message'))!,
        new RegExp(`Training stopped\\. Restoring acquires a new device and rebuilds small\\.safetensors from the training run's last snapshot \\(step ${P}\\): it comes back at step ${P}, and ${lostWords(P, lost.step)}\\.`));
      assert.match((await page.textContent('#train-message'))!,
        new RegExp(`^Training stopped at step ${lost.step}: the GPU device was lost\\. Restoring goes back to step ${P}, the training run's last snapshot \\(step ${P}\\); ${lostWords(P, lost.step)}\\.$`));
      assert.is(await page.textContent('#train-state'), 'stopped');
      assert.ok(await page.isDisabled('#train-start'), 'Start is disabled while the device is gone');
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: screenshotPath('web-device-lost-training.png') });

      await page.click('#gpu-restore');
      await waitRestored(page);
      assert.match((await page.textContent('#gpu-lost-message'))!,
        new RegExp(`^small\\.safetensors was restored at step ${P} from the training run's last snapshot \\(step ${P}\\), on a new GPU device: .*\\. ${lostWords(P, lost.step).replace(/^s/, 'S')}\\. Training can continue from there in the Train tab\\.$`));
      assert.match((await page.textContent('#train-message'))!,
        new RegExp(`^The GPU device was lost at step ${lost.step}; the model was restored at step ${P} \\(${lostWords(P, lost.step)}\\)\\. Press Start training to continue from there with its Adam state\\.$`));
      assert.is(await page.inputValue('#train-model'), 'current');
      assert.is(await page.textContent('#train-state'), 'idle');
      const restored = await seen(page);
      assert.is(restored.step, P);
      assert.is(restored.error, null);
      assert.equal(restored.lengths, atPause.lengths, `lengths of test digit #0: the model at step ${P}, before the loss and restored`);

      // Continue: step P + 1 again, from the snapshot's parameters and Adam state, on the same batch;
      // now with a snapshot after every step (the periodic ones): when step P + 2 is under way, the
      // snapshot of step P + 1 has been taken.
      await page.evaluate(() => {
        (window as unknown as { capsnetApp: Handle }).capsnetApp.trainPanel.snapshotIntervalMs = 0;
      });
      await page.click('#train-start');
      await page.waitForFunction((p) => (window as any).capsnetApp.app.entry.step >= p + 2, P, { timeout: 120_000 });
      const periodic = await page.evaluate(() => (window as any).capsnetApp.app.entry.restorePoint as { step: number; what: string });
      assert.ok(periodic.step >= P + 1, `a periodic snapshot while running (of step ${periodic.step})`);
      assert.is(periodic.what, `the training run's last snapshot (step ${periodic.step})`);
      await page.click('#train-pause');
      const again = await page.evaluate(async () => {
        const h = (window as any).capsnetApp;
        await h.trainPanel.run.loop;
        const run = h.trainPanel.run;
        return { step: run.entry.step as number, adamStep: run.adam.stepCount as number, records: run.records.map((r: { step: number; loss: number }) => [r.step, r.loss]) as Array<[number, number]> };
      });
      assert.match((await page.textContent('#train-message'))!, new RegExp(`Continuing from step ${P} with the checkpoint's Adam state`));
      assert.is(again.adamStep, again.step);
      assert.equal(again.records.map(([s]) => s), Array.from({ length: again.step }, (_, k) => k + 1), 'the curves go on from the restored step, each step once');
      assert.equal(again.records.slice(0, P), lost.records.slice(0, P), 'the curves up to the snapshot are kept');
      const redone = again.records[P][1];
      const first = lost.records.find(([s]) => s === P + 1)![1];
      assert.is(redone, first, `step ${P + 1}'s loss after the restore equals its loss before the loss of the device`);
      assert.equal(problems, [], 'no console errors, page errors or unhandled rejections');
    } finally {
      await page.close();
    }
  });
}

recovery.run();
