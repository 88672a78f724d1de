// The Model tab: what the current model is, downloading it (F32 with Adam's state when there is
// one, or F16 for shipping), testing it on MNIST test images, and replacing it: a checkpoint from a
// file (picker or drop) or a URL, or a fresh model.

import type { App } from './app-state.ts';
import { type ModelEntry, type PresetName, describeConfig, fetchWithProgress, freshModel, modelFromBytes } from './models.ts';
import { byId, downloadBytes, el, errorText, formatBytes, formatCount } from './dom.ts';
import { testSet } from './mnist.ts';
import { evaluate } from '../train/trainer.ts';
import { fillBatch } from '../data/dataset.ts';

export class ModelPanel {
  /** The model the panel last described (a test result on screen is this model's). */
  private shown: ModelEntry | null = null;

  constructor(private readonly app: App) {
    app.onInfo(() => this.render());
    byId('model-download').addEventListener('click', () => void this.download());
    byId('model-eval').addEventListener('click', () => void this.test());
    const file = byId<HTMLInputElement>('model-file');
    file.addEventListener('change', () => {
      const f = file.files?.[0];
      if (f) void this.loadFile(f);
      file.value = '';
    });
    const drop = byId('drop');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const f = (e as DragEvent).dataTransfer?.files?.[0];
      if (f) void this.loadFile(f);
    });
    byId('url-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const url = byId<HTMLInputElement>('model-url').value.trim();
      if (url) void this.loadUrl(url);
    });
    byId('fresh-create').addEventListener('click', () => {
      const preset = byId<HTMLSelectElement>('fresh-preset').value as PresetName;
      const seed = Number(byId<HTMLInputElement>('fresh-seed').value);
      if (!Number.isInteger(seed) || seed < 0) {
        this.status('The seed must be a whole number >= 0.', true);
        return;
      }
      void this.replace(() => this.app.queue.run(async () => freshModel(this.app.ctx, preset, seed)), `fresh ${preset} model`);
    });
  }

  private status(text: string, error = false): void {
    const s = byId('load-status');
    s.textContent = text;
    s.classList.toggle('status-error', error);
  }

  render(): void {
    const entry = this.app.entry;
    if (!entry) return;
    const rows: Array<[string, string | Node]> = [
      ['name', entry.name],
      ['state', el('span', { className: `badge ${entry.trained ? 'trained' : 'untrained'}`, text: entry.trained ? `trained, ${formatCount(entry.step)} steps` : 'untrained (random weights)' })],
      ...describeConfig(entry.config),
    ];
    // Figures measured or written for an earlier step say so once the model has trained past it.
    const since = (step: number) => (step === entry.step ? '' : ` (at step ${formatCount(step)}; trained since)`);
    const tested = entry.testAccuracy;
    if (tested) rows.push(['test accuracy', `${(tested.accuracy * 100).toFixed(2)}% on ${formatCount(tested.count)} images${since(tested.step)}`]);
    if (entry.note) rows.push(['note', `${entry.note}${since(entry.noteStep)}`]);
    // A test result on screen belongs to the model it was run on.
    if (entry !== this.shown) byId('model-eval-result').textContent = '';
    this.shown = entry;
    const dl = el('dl', { className: 'info' });
    for (const [k, v] of rows) dl.append(el('dt', { text: k }), el('dd', {}, v));
    byId('model-info').replaceChildren(dl);
  }

  async download(): Promise<void> {
    const entry = this.app.entry;
    if (!entry) return;
    const half = byId<HTMLInputElement>('model-half').checked;
    try {
      const { bytes } = await this.app.queue.run(() => entry.checkpoint(half));
      const base = entry.name.replace(/\.safetensors$/, '').replace(/[^\w.-]+/g, '-').replace(/^-|-$/g, '') || 'capsnet';
      downloadBytes(bytes, `${base}${half ? '-f16' : ''}.safetensors`);
      this.status(`Downloaded ${formatBytes(bytes.length)}${half ? ' (F16, parameters only)' : ''}.`);
    } catch (error) {
      this.status(`Download failed: ${errorText(error)}`, true);
    }
  }

  async test(): Promise<void> {
    const entry = this.app.entry;
    if (!entry) return;
    const out = byId('model-eval-result');
    const count = Math.round(Number(byId<HTMLInputElement>('model-eval-count').value));
    try {
      const test = await testSet();
      const n = Math.max(1, Math.min(count, test.count));
      const order = Uint32Array.from({ length: n }, (_, i) => i);
      const started = performance.now();
      out.textContent = `Testing on ${formatCount(n)} images…`;
      const result = await this.app.queue.run(() =>
        evaluate(entry.model, n, Math.min(25, n), (start, images, labels) => fillBatch(test, order, start, images, labels), (done) => {
          out.textContent = `Testing… ${formatCount(done)} / ${formatCount(n)}`;
        }),
      );
      entry.testAccuracy = { accuracy: result.accuracy, count: n, step: entry.step };
      const seconds = (performance.now() - started) / 1000;
      out.textContent = `${(result.accuracy * 100).toFixed(2)}% of the first ${formatCount(n)} test images right (${(n / seconds).toFixed(1)} images/s).`;
      this.render();
    } catch (error) {
      out.textContent = `Test failed: ${errorText(error)}`;
    }
  }

  async loadFile(file: File): Promise<void> {
    await this.replace(async () => {
      const bytes = new Uint8Array(await file.arrayBuffer());
      return this.app.queue.run(async () => modelFromBytes(this.app.ctx, bytes, file.name, 'file'));
    }, file.name);
  }

  async loadUrl(url: string): Promise<void> {
    await this.replace(async () => {
      const bytes = await fetchWithProgress(url, (fraction, received) => {
        this.status(`Downloading ${url}: ${Number.isFinite(fraction) ? `${Math.round(fraction * 100)}%` : formatBytes(received)}`);
      });
      return this.app.queue.run(async () => modelFromBytes(this.app.ctx, bytes, url.split('/').pop() || url, 'url'));
    }, url);
  }

  /** Builds a model and makes it current; on failure the current model stays. */
  private async replace(make: () => Promise<ModelEntry>, what: string): Promise<void> {
    this.status(`Loading ${what}…`);
    try {
      const entry = await make();
      await this.app.setModel(entry);
      this.status(`Loaded ${entry.name}${entry.trained ? '' : ' (untrained)'}.`);
    } catch (error) {
      this.status(`Could not load ${what}: ${errorText(error)}`, true);
    }
  }
}
