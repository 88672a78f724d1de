// The Explore tab: the drawing pad and test digits, the capsule lengths, the reconstruction with
// the pose sliders, and the routing view. GPU work goes through the app's queue and is coalesced:
// while one forward pass runs, newer inputs replace each other and only the latest is computed.

import type { App } from './app-state.ts';
import { DrawPad } from './draw-pad.ts';
import { type Analysis, analyse, reconstruct } from './inference.ts';
import { byId, drawGray, el, errorText, formatMs } from './dom.ts';
import { type RoutingMaps, type RoutingTrace, routeOne, routingMaps, vectorLengths } from './routing.ts';
import { renderRouting } from './routing-view.ts';
import { argmax } from './preprocess.ts';
import { exampleImage, testSet } from './mnist.ts';
import type { Dataset } from '../data/dataset.ts';
import type { ModelEntry } from './models.ts';
import { geometry } from '../model/config.ts';

const SLIDER_RANGE = 0.35;
const GALLERY_SIZE = 12;

/** Runs the latest requested job, one at a time; requests made meanwhile replace each other. */
class Latest<T> {
  private wanted: T | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly work: (request: T) => Promise<void>) {}

  request(value: T): void {
    this.wanted = value;
    if (!this.running) this.running = this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.wanted !== null) {
        const next = this.wanted;
        this.wanted = null;
        await this.work(next);
      }
    } finally {
      this.running = null;
    }
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }
}

export interface ExplorerState {
  analysis: Analysis | null;
  /** The capsule the reconstruction uses. */
  selected: number;
  /** Added to the selected capsule's dimensions. */
  offsets: Float32Array;
  reconstruction: Float32Array | null;
  routing: { trace: RoutingTrace; maps: RoutingMaps } | null;
  /** Where the input came from: 'drawing', or 'test #k'. */
  source: string;
  /** The label when the input is an unmodified test digit. */
  label: number | null;
  error: string | null;
}

export class Explorer {
  readonly state: ExplorerState = {
    analysis: null, selected: 0, offsets: new Float32Array(16), reconstruction: null, routing: null, source: '', label: null, error: null,
  };
  private readonly pad: DrawPad;
  private readonly classify: Latest<{ input: Float32Array | null; keepPose?: boolean }>;
  private readonly decode: Latest<{ v: Float32Array; selected: number }>;
  private sliders: HTMLInputElement[] = [];
  private bars: HTMLButtonElement[] = [];
  private test: Dataset | null = null;
  private lastDrawClassify = 0;
  /** The model the explorer last set itself up for. */
  private described: ModelEntry | null = null;

  constructor(private readonly app: App) {
    this.pad = new DrawPad(byId<HTMLCanvasElement>('pad'), byId<HTMLCanvasElement>('pad-cursor'), byId('pad-empty'), (final) => this.padChanged(final));
    this.classify = new Latest((r) => this.runClassify(r.input, r.keepPose ?? false));
    this.decode = new Latest((r) => this.runDecode(r.v, r.selected));
    byId('clear-pad').addEventListener('click', () => this.pad.clear());
    const pen = byId<HTMLInputElement>('pen-size');
    pen.addEventListener('input', () => {
      this.pad.penSize = Number(pen.value);
      byId('pen-size-out').textContent = pen.value;
    });
    byId('reset-pose').addEventListener('click', () => this.resetPose());
    byId('more-digits').addEventListener('click', () => this.fillGallery(true));
    byId('load-test').addEventListener('click', () => this.showTest(Number(byId<HTMLInputElement>('test-index').value)));
    byId('test-index').addEventListener('keydown', (e) => {
      if ((e as KeyboardEvent).key === 'Enter') this.showTest(Number(byId<HTMLInputElement>('test-index').value));
    });
    app.onModel(() => this.modelChanged());
  }

  /** Loads the test set and fills the gallery; shows the first digit when `showFirst`. */
  async start(showFirst: boolean): Promise<void> {
    try {
      this.test = await testSet();
    } catch (error) {
      byId('gallery').replaceChildren(el('p', { className: 'status-error', text: `Could not load the MNIST test set: ${errorText(error)}` }));
      return;
    }
    byId<HTMLInputElement>('test-index').max = String(this.test.count - 1);
    this.fillGallery(false);
    if (showFirst) this.showTest(0);
  }

  /** Resolves when no explorer work is queued or running. */
  async idle(): Promise<void> {
    await this.classify.idle();
    await this.decode.idle();
    await this.classify.idle();
  }

  showTest(k: number): void {
    if (!this.test) return;
    if (!Number.isInteger(k) || k < 0 || k >= this.test.count) {
      byId('test-label').textContent = `choose 0 to ${this.test.count - 1}`;
      return;
    }
    byId<HTMLInputElement>('test-index').value = String(k);
    this.state.source = `test #${k}`;
    this.state.label = this.test.labels[k];
    byId('test-label').textContent = `label ${this.test.labels[k]}`;
    byId('gallery').querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(Number(b.dataset.index) === k)));
    this.pad.showImage(exampleImage(this.test, k), this.test.width);
  }

  /** Classifies an image given directly (28x28 in [0, 1]); for tests and tools. */
  classifyImage(input: Float32Array, source = 'image'): void {
    this.state.source = source;
    this.state.label = null;
    this.classify.request({ input });
  }

  private fillGallery(shuffle: boolean): void {
    const test = this.test;
    if (!test) return;
    const picks: number[] = [];
    while (picks.length < Math.min(GALLERY_SIZE, test.count)) {
      const k = shuffle ? Math.floor(Math.random() * test.count) : picks.length;
      if (!picks.includes(k)) picks.push(k);
    }
    const gallery = byId('gallery');
    gallery.replaceChildren(
      ...picks.map((k) => {
        const canvas = el('canvas');
        drawGray(canvas, exampleImage(test, k), test.width, test.height);
        return el('button', {
          type: 'button',
          'data-index': k,
          'aria-pressed': 'false',
          'aria-label': `test digit #${k}, a ${test.labels[k]}`,
          title: `test #${k}: ${test.labels[k]}`,
          onclick: () => this.showTest(k),
        }, canvas);
      }),
    );
  }

  private padChanged(final: boolean): void {
    const { input, exact } = this.pad.image();
    if (!exact) {
      this.state.source = 'drawing';
      this.state.label = null;
      byId('test-label').textContent = '';
      byId('gallery').querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', 'false'));
    }
    // While drawing, classify at most a few times a second (the final one always runs).
    const now = performance.now();
    if (!final && now - this.lastDrawClassify < 250) return;
    this.lastDrawClassify = now;
    this.classify.request({ input });
  }

  private modelChanged(): void {
    const entry = this.app.entry;
    if (!entry) return;
    const c = entry.config;
    byId('no-decoder').hidden = c.decoder;
    byId('sliders').hidden = !c.decoder;
    // Nothing of the previous model's reconstruction stays beside "no decoder".
    for (const id of ['recon-pair', 'sliders-head', 'sliders-caption']) byId(id).hidden = !c.decoder;
    // The same model with new weights (a training run refreshing the explorer): the capsule and
    // pose the user chose stay; another model starts from its own winner.
    const sameModel = entry === this.described;
    this.described = entry;
    const g = geometry(c);
    byId('routing-hint').textContent = `${g.primaryCaps.toLocaleString('en-US')} primary capsules → ${c.digitCaps} digit capsules, ${c.routings} iteration${c.routings === 1 ? '' : 's'}`;
    this.buildBars(c.digitCaps);
    this.buildSliders(c.digitDim);
    const { input } = this.pad.image();
    if (input) this.classify.request({ input, keepPose: sameModel });
  }

  private buildBars(J: number): void {
    if (this.bars.length === J) return;
    const root = byId('bars');
    this.bars = Array.from({ length: J }, (_, j) =>
      el('button', { type: 'button', className: 'bar', 'data-digit': j, 'aria-pressed': 'false', onclick: () => this.select(j) },
        el('span', { className: 'digit', text: String(j) }),
        el('span', { className: 'track' }, el('span', { className: 'fill' })),
        el('span', { className: 'val', text: '–' })),
    );
    root.replaceChildren(...this.bars);
  }

  private buildSliders(D: number): void {
    if (this.sliders.length === D) return;
    this.state.offsets = new Float32Array(D);
    const root = byId('sliders');
    this.sliders = [];
    const rows = Array.from({ length: D }, (_, d) => {
      const input = el('input', {
        type: 'range', min: -SLIDER_RANGE, max: SLIDER_RANGE, step: 0.01, value: 0, 'data-dim': d,
        'aria-label': `pose dimension ${d + 1}`,
      });
      const out = el('output', { text: '0.00' });
      input.addEventListener('input', () => {
        const value = Number(input.value);
        this.state.offsets[d] = value;
        out.textContent = `${value > 0 ? '+' : ''}${value.toFixed(2)}`;
        out.classList.toggle('moved', value !== 0);
        this.requestDecode();
      });
      this.sliders.push(input);
      return el('label', { className: 'slider' }, el('span', { text: String(d + 1) }), input, out);
    });
    root.replaceChildren(...rows);
  }

  private resetPose(): void {
    this.state.offsets.fill(0);
    for (const s of this.sliders) {
      s.value = '0';
      const out = s.nextElementSibling as HTMLOutputElement;
      out.textContent = '0.00';
      out.classList.remove('moved');
    }
    this.requestDecode();
  }

  private select(j: number): void {
    this.state.selected = j;
    this.resetPose();
    this.renderBars();
  }

  private async runClassify(input: Float32Array | null, keepPose: boolean): Promise<void> {
    const entry = this.app.entry;
    if (!entry) return;
    if (input) drawGray(byId<HTMLCanvasElement>('input28'), input, 28, 28);
    else byId<HTMLCanvasElement>('input28').getContext('2d')!.clearRect(0, 0, 28, 28);
    if (!input) {
      this.state.analysis = null;
      this.state.reconstruction = null;
      this.state.routing = null;
      this.renderEmpty();
      return;
    }
    try {
      const analysis = await this.app.queue.run(() => analyse(this.app.model.model, input));
      this.state.error = null;
      const keep = keepPose && this.state.analysis !== null && this.state.selected < analysis.lengths.length;
      this.state.analysis = analysis;
      if (keep) {
        this.requestDecode(); // the kept capsule and offsets, decoded with the new weights
      } else {
        this.state.selected = argmax(analysis.lengths);
        this.resetPose();
      }
      this.renderBars();
      await this.runRouting(analysis);
    } catch (error) {
      // Nothing stale stays on screen: the bars and the reconstruction were of an earlier input.
      this.state.error = errorText(error);
      this.state.analysis = null;
      this.state.reconstruction = null;
      this.state.routing = null;
      this.renderEmpty();
      byId('pred-line').textContent = 'Could not classify';
      byId('pred-sub').textContent = this.state.error;
    }
  }

  private renderEmpty(): void {
    byId('pred-digit').textContent = '–';
    byId('pred-line').textContent = 'Draw or pick a digit';
    byId('pred-sub').textContent = 'the longest capsule wins';
    byId('forward-time').textContent = '';
    byId('decode-time').textContent = '';
    for (const bar of this.bars) {
      (bar.querySelector('.fill') as HTMLElement).style.width = '0';
      bar.querySelector('.val')!.textContent = '–';
      bar.classList.remove('win');
      bar.setAttribute('aria-pressed', 'false');
    }
    drawGray(byId<HTMLCanvasElement>('recon'), new Float32Array(784), 28, 28);
    drawGray(byId<HTMLCanvasElement>('recon-input'), new Float32Array(784), 28, 28);
    byId('routing').replaceChildren(el('p', { className: 'muted', text: 'Routing appears here once a digit is classified.' }));
    byId('routing-legend').replaceChildren();
  }

  private renderBars(): void {
    const a = this.state.analysis;
    if (!a) return;
    const winner = argmax(a.lengths);
    const entry = this.app.entry;
    byId('pred-digit').textContent = String(winner);
    byId('pred-line').textContent = `It's a ${winner}` + (entry && !entry.trained ? ' (untrained model: a guess)' : '');
    const label = this.state.label;
    byId('pred-sub').textContent =
      `|v${winner}| = ${a.lengths[winner].toFixed(3)}` +
      (label === null ? ` · ${this.state.source}` : ` · ${this.state.source}, label ${label}${label === winner ? ' ✓' : ' ✗'}`);
    byId('forward-time').textContent = `forward pass ${formatMs(a.ms)}`;
    this.bars.forEach((bar, j) => {
      const len = a.lengths[j];
      (bar.querySelector('.fill') as HTMLElement).style.width = `${Math.min(100, Math.max(0, len * 100))}%`;
      bar.querySelector('.val')!.textContent = len.toFixed(3);
      bar.classList.toggle('win', j === winner);
      bar.setAttribute('aria-pressed', String(j === this.state.selected));
      bar.setAttribute('aria-label', `digit ${j}: length ${len.toFixed(3)}${j === winner ? ', the prediction' : ''}`);
    });
    byId('sliders-title').textContent = `Pose of capsule ${this.state.selected}`;
    byId('recon-caption').textContent = `from capsule ${this.state.selected}`;
    drawGray(byId<HTMLCanvasElement>('recon-input'), a.input, 28, 28);
  }

  private requestDecode(): void {
    const a = this.state.analysis;
    const entry = this.app.entry;
    if (!a || !entry || !entry.config.decoder) return;
    const D = entry.config.digitDim;
    const v = a.v.slice();
    const j = this.state.selected;
    for (let d = 0; d < D; d++) v[j * D + d] += this.state.offsets[d];
    this.decode.request({ v, selected: j });
  }

  private async runDecode(v: Float32Array, selected: number): Promise<void> {
    const started = performance.now();
    try {
      const image = await this.app.queue.run(() => reconstruct(this.app.model.model, v, selected));
      this.state.reconstruction = image;
      drawGray(byId<HTMLCanvasElement>('recon'), image, 28, 28);
      byId('decode-time').textContent = `decoder ${formatMs(performance.now() - started)}`;
    } catch (error) {
      byId('decode-time').textContent = `decoder failed: ${errorText(error)}`;
    }
  }

  private async runRouting(a: Analysis): Promise<void> {
    const entry = this.app.model;
    const c = entry.config;
    const g = geometry(c);
    const bias = entry.model.params['digit.bias'] ? await this.app.queue.run(() => entry.model.params['digit.bias'].read()) : null;
    const trace = routeOne(a.uhat, { I: g.primaryCaps, J: c.digitCaps, D: c.digitDim }, { iterations: c.routings, leaky: c.leaky, bias });
    const maps = routingMaps(trace, vectorLengths(a.u, c.primaryDim), g.grid);
    this.state.routing = { trace, maps };
    renderRouting(byId('routing'), byId('routing-legend'), { maps, winner: argmax(a.lengths), types: c.primaryTypes });
    byId('routing-geometry').textContent = `${c.primaryTypes} types at each cell of a ${g.grid}x${g.grid} grid`;
  }
}
