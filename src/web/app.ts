// The capsule explorer: entry point of the web app (bundled into dist/web/app.js by build.mjs via
// src/web/build-web.mjs). Acquires WebGPU (or says clearly what the browser needs), opens the first
// model (?model=URL, else the model shipped in models/ when there is one, else a fresh paper model,
// clearly marked untrained), and wires the Explore, Train and Model tabs. A lost GPU device brings
// up a notice that restores the model on a new device (src/web/recovery.ts).
// Tests: test/web.test.ts drives this page in Chromium; window.capsnetApp is its handle.

import './styles.css';
import { BROWSER_HINT, acquireGpu } from '../gpu/browser.ts';
import { App } from './app-state.ts';
import { Explorer } from './explorer.ts';
import { TrainPanel } from './train-panel.ts';
import { ModelPanel } from './model-panel.ts';
import { Recovery } from './recovery.ts';
import type { GpuContext } from '../gpu/context.ts';
import { type ModelEntry, type PresetName, PRESETS, fetchWithProgress, freshModel, modelFromBytes, shippedModels } from './models.ts';
import { byId, el, errorText, formatBytes } from './dom.ts';

const TABS = ['explore', 'train', 'model'] as const;
type Tab = (typeof TABS)[number];

function setupTabs(onOpen: (tab: Tab) => void): (tab: Tab) => void {
  const select = (tab: Tab, focus = false) => {
    for (const t of TABS) {
      const button = byId(`tab-${t}`);
      const on = t === tab;
      button.setAttribute('aria-selected', String(on));
      button.tabIndex = on ? 0 : -1;
      byId(`panel-${t}`).hidden = !on;
      if (on && focus) button.focus();
    }
    if (location.hash !== `#${tab}`) history.replaceState(null, '', tab === 'explore' ? location.pathname + location.search : `#${tab}`);
    onOpen(tab);
  };
  TABS.forEach((t, k) => {
    const button = byId(`tab-${t}`);
    button.addEventListener('click', () => select(t));
    button.addEventListener('keydown', (e) => {
      const key = (e as KeyboardEvent).key;
      const next = key === 'ArrowRight' ? (k + 1) % TABS.length : key === 'ArrowLeft' ? (k + TABS.length - 1) % TABS.length : key === 'Home' ? 0 : key === 'End' ? TABS.length - 1 : -1;
      if (next >= 0) {
        e.preventDefault();
        select(TABS[next], true);
      }
    });
  });
  return select;
}

function showNoWebGpu(reason: string): void {
  // The library's message ends with the same advice as the list on the page: keep only the cause.
  byId('no-webgpu-reason').textContent = reason.replace(BROWSER_HINT, '').trim();
  byId('no-webgpu').hidden = false;
  for (const t of TABS) byId(`panel-${t}`).hidden = true;
  byId('notice').hidden = true;
  document.querySelector('.tabs')?.setAttribute('hidden', '');
  const chip = byId('gpu-chip');
  chip.textContent = 'no WebGPU';
  chip.className = 'chip bad';
  byId('model-chip').hidden = true;
}

function showNotice(entry: ModelEntry | null, select: (tab: Tab) => void, error: string | null): void {
  const notice = byId('notice');
  notice.className = error ? 'banner error' : 'banner';
  if (error) {
    notice.replaceChildren(el('p', { text: error }));
    notice.hidden = false;
    return;
  }
  if (!entry || entry.trained) {
    notice.hidden = true;
    return;
  }
  notice.replaceChildren(
    el('p', {},
      el('b', { text: 'This model is untrained. ' }),
      `It was just created with random weights (${entry.name}), so its answers are guesses; the capsules, the routing and the reconstructions still show how the network works. ` +
        'Load a trained checkpoint, or train one right here: a small model gets most digits right after some 3,000 training images, a few minutes even without a GPU.'),
    el('button', { type: 'button', className: 'primary', onclick: () => select('train') }, 'Train in the page'),
    el('button', { type: 'button', onclick: () => select('model') }, 'Load a checkpoint'),
  );
  notice.hidden = false;
}

async function firstModel(app: App, setChip: (text: string) => void): Promise<{ entry: ModelEntry; error: string | null }> {
  const params = new URLSearchParams(location.search);
  const url = params.get('model');
  const preset = (params.get('preset') ?? 'paper') as PresetName;
  const fresh = async () => app.queue.run(async () => freshModel(app.ctx, preset in PRESETS ? preset : 'paper', 1));
  const load = async (href: string, name: string, origin: 'url' | 'shipped') => {
    const bytes = await fetchWithProgress(href, (fraction, received) =>
      setChip(`loading ${name} ${Number.isFinite(fraction) ? `${Math.round(fraction * 100)}%` : formatBytes(received)}`));
    return app.queue.run(async () => modelFromBytes(app.ctx, bytes, name, origin));
  };
  if (url) {
    try {
      return { entry: await load(url, url.split('/').pop() || url, 'url'), error: null };
    } catch (error) {
      return { entry: await fresh(), error: `Could not load the model ${url}: ${errorText(error)}. Showing a fresh, untrained model instead.` };
    }
  }
  let shipped;
  try {
    shipped = await shippedModels();
  } catch (error) {
    return { entry: await fresh(), error: `Could not read the list of shipped models: ${errorText(error)}. Showing a fresh, untrained model instead.` };
  }
  const info = shipped.models.find((m) => m.file === shipped.default);
  if (shipped.default && params.get('preset') === null) {
    try {
      const entry = await load(`models/${shipped.default}`, info?.name ?? shipped.default, 'shipped');
      if (info?.testAccuracy !== undefined) entry.testAccuracy = { accuracy: info.testAccuracy, count: info.testCount ?? 10000, step: entry.step };
      if (info?.description) [entry.note, entry.noteStep] = [info.description, entry.step];
      return { entry, error: null };
    } catch (error) {
      return { entry: await fresh(), error: `Could not load the shipped model: ${errorText(error)}. Showing a fresh, untrained model instead.` };
    }
  }
  return { entry: await fresh(), error: null };
}

async function main(): Promise<void> {
  let trainPanel: TrainPanel | null = null;
  const select = setupTabs((tab) => {
    if (tab === 'train') void trainPanel?.prepare();
  });
  let app: App;
  try {
    app = new App(await acquireGpu());
  } catch (error) {
    showNoWebGpu(errorText(error));
    return;
  }
  const gpuChip = byId('gpu-chip');
  const showGpu = (ctx: GpuContext | null) => {
    if (!ctx) {
      gpuChip.textContent = 'GPU device lost';
      gpuChip.className = 'chip bad';
      gpuChip.title = 'The WebGPU device was lost: restore the model with the button at the top of the page';
      return;
    }
    const a = ctx.adapter;
    // Some browsers (Firefox) do not name their adapter.
    const named = a.description !== 'unknown adapter';
    gpuChip.textContent = `${named ? a.name : 'WebGPU'}${a.isSoftware ? ' · software GPU' : ''}`;
    gpuChip.className = `chip ${a.isSoftware ? 'warn' : 'ok'}`;
    gpuChip.title = `WebGPU adapter: ${a.description} (${a.vendor || 'unknown vendor'}, ${a.featureLevel})${a.isSoftware ? '. A software adapter: everything works, only slower.' : ''}`;
  };
  showGpu(app.ctx);
  const busy = byId('busy-chip');
  app.queue.onBusy = (on) => {
    busy.hidden = !on;
  };
  const modelChip = byId('model-chip');
  // The first model's load error, shown while that stand-in model is on screen and untrained.
  let loadError: { entry: ModelEntry; text: string } | null = null;

  const explorer = new Explorer(app);
  trainPanel = new TrainPanel(app);
  const modelPanel = new ModelPanel(app);
  const recovery = new Recovery(app, trainPanel, showGpu);
  // Leaving the page frees the device at once; a flag on the context (not the browser's reason,
  // 'destroyed' either way) tells this from a loss. Kept alive for the back-forward cache.
  window.addEventListener('pagehide', (event) => {
    if (!event.persisted) app.destroyContext();
  });
  app.onInfo((entry) => {
    modelChip.textContent = `${entry.name} · ${entry.trained ? `step ${entry.step.toLocaleString('en-US')}` : 'untrained'}`;
    modelChip.className = `chip ${entry.trained ? 'ok' : 'warn'}`;
    if (loadError && (entry !== loadError.entry || entry.step > 0)) loadError = null;
    showNotice(entry, select, loadError?.text ?? null);
  });
  const handle = {
    app, explorer, trainPanel, modelPanel, recovery,
    /** Resolves when the explorer and the GPU queue have nothing left to do. */
    idle: async () => {
      await explorer.idle();
      await app.queue.idle();
      await explorer.idle();
    },
    ready: null as Promise<void> | null,
  };
  (window as unknown as { capsnetApp: typeof handle }).capsnetApp = handle;

  handle.ready = (async () => {
    modelChip.textContent = 'loading the model…';
    try {
      const { entry, error } = await firstModel(app, (text) => {
        modelChip.textContent = text;
      });
      loadError = error === null ? null : { entry, text: error };
      await app.setModel(entry);
    } catch (error) {
      // The device was lost while the first model loaded: the notice's button brings up a model.
      if (!app.lost) throw error;
    }
    await explorer.start(true);
    await handle.idle();
  })();
  const initial = location.hash.slice(1) as Tab;
  if ((TABS as readonly string[]).includes(initial)) select(initial);
  await handle.ready;
}

void main().catch((error) => {
  const notice = byId('notice');
  notice.className = 'banner error';
  notice.replaceChildren(el('p', { text: `The page failed to start: ${errorText(error)}` }));
  notice.hidden = false;
});
