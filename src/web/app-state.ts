// What the panels share: the GPU context, one queue that runs GPU jobs one at a time (the explorer's
// forward passes go between training steps), and the current model, with listeners.

import type { GpuContext } from '../gpu/context.ts';
import type { ModelEntry } from './models.ts';

export class GpuQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  onBusy: (busy: boolean) => void = () => {};

  /** Runs `job` after every job queued before it; rejects with its error (later jobs still run). */
  run<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    if (this.pending === 1) this.onBusy(true);
    const result = this.tail.then(job);
    this.tail = result.then(
      () => this.done(),
      () => this.done(),
    );
    return result;
  }

  private done(): void {
    this.pending--;
    if (this.pending === 0) this.onBusy(false);
  }

  /** Resolves when every job queued so far has finished. */
  async idle(): Promise<void> {
    for (;;) {
      const tail = this.tail;
      await tail;
      if (tail === this.tail) return;
    }
  }
}

export class App {
  readonly queue = new GpuQueue();
  private current: ModelEntry | null = null;
  private readonly listeners: Array<(entry: ModelEntry) => void> = [];
  private readonly infoListeners: Array<(entry: ModelEntry) => void> = [];
  /** Called before the model is replaced (a training run stops and lets go of it). */
  private readonly releasers: Array<() => Promise<void>> = [];

  constructor(readonly ctx: GpuContext) {}

  get entry(): ModelEntry | null {
    return this.current;
  }

  /** The current model; throws when none is loaded yet. */
  get model(): ModelEntry {
    if (!this.current) throw new Error('no model is loaded yet');
    return this.current;
  }

  onModel(listener: (entry: ModelEntry) => void): void {
    this.listeners.push(listener);
    if (this.current) listener(this.current);
  }

  /** Listens to changes of the current model's description only (its name, steps): cheap to follow. */
  onInfo(listener: (entry: ModelEntry) => void): void {
    this.infoListeners.push(listener);
    if (this.current) listener(this.current);
  }

  onRelease(release: () => Promise<void>): void {
    this.releasers.push(release);
  }

  /** Makes `entry` the current model; the previous one is freed once no queued job can use it. */
  async setModel(entry: ModelEntry, options: { keepTraining?: boolean } = {}): Promise<void> {
    if (!options.keepTraining) for (const release of this.releasers) await release();
    const old = this.current;
    this.current = entry;
    if (old && old !== entry) void this.queue.run(async () => old.dispose());
    this.changed();
  }

  /** Tells the listeners that the current model changed (its weights or its description). */
  changed(): void {
    const entry = this.current;
    if (entry) for (const listener of [...this.listeners, ...this.infoListeners]) listener(entry);
  }

  /** Tells the info listeners that the description changed (e.g. one more training step). */
  described(): void {
    const entry = this.current;
    if (entry) for (const listener of this.infoListeners) listener(entry);
  }
}
