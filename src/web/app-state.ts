// What the panels share: the GPU context, one queue that runs GPU jobs one at a time (the explorer's
// forward passes go between training steps), and the current model, with listeners. When the GPU
// device is lost, the queue fails every waiting job at once and refuses new ones (nothing waits on a
// dead device), and the context can be replaced by a new one (src/web/recovery.ts).

import type { GpuContext } from '../gpu/context.ts';
import { GpuDeviceLostError } from '../gpu/errors.ts';
import type { ModelEntry } from './models.ts';

interface Ticket {
  reject(error: Error): void;
}

export class GpuQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  /** Bumped by fail(): jobs of an earlier generation neither run nor count as pending. */
  private generation = 0;
  /** Jobs queued or running, so that fail() can reject them all. */
  private readonly open = new Set<Ticket>();
  /** Set while the device is lost: every job is refused with it. */
  private refusal: Error | null = null;
  onBusy: (busy: boolean) => void = () => {};

  /** Runs `job` after every job queued before it; rejects with its error (later jobs still run). */
  run<T>(job: () => Promise<T>): Promise<T> {
    if (this.refusal) return Promise.reject(this.refusal);
    const generation = this.generation;
    this.pending++;
    if (this.pending === 1) this.onBusy(true);
    return new Promise<T>((resolve, reject) => {
      const ticket: Ticket = { reject };
      this.open.add(ticket);
      const result = this.tail.then(() => {
        // A job queued before a device loss must not start on a device that is gone.
        if (this.refusal) throw this.refusal;
        return job();
      });
      this.tail = result.then(
        () => this.done(generation),
        () => this.done(generation),
      );
      result.then(resolve, reject).finally(() => this.open.delete(ticket));
    });
  }

  private done(generation: number): void {
    if (generation !== this.generation) return;
    this.pending--;
    if (this.pending === 0) this.onBusy(false);
  }

  /**
   * The device is gone: every queued or running job rejects now with `error` (a running one may
   * never settle on a lost device; its result is ignored), and new jobs are refused until accept().
   */
  fail(error: Error): void {
    this.refusal = error;
    this.generation++;
    const open = [...this.open];
    this.open.clear();
    this.tail = Promise.resolve();
    if (this.pending > 0) this.onBusy(false);
    this.pending = 0;
    for (const ticket of open) ticket.reject(error);
  }

  /** Takes jobs again (after a new device was acquired). */
  accept(): void {
    this.refusal = null;
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

/** What the page knows about a lost device. */
export interface DeviceLoss {
  /** The browser's reason ('destroyed' or 'unknown') and message. */
  reason: string;
  message: string;
  /** The model that was open, and its training step, when the device was lost. */
  entry: ModelEntry | null;
  step: number;
}

export class App {
  readonly queue = new GpuQueue();
  private context: GpuContext;
  private current: ModelEntry | null = null;
  private readonly listeners: Array<(entry: ModelEntry) => void> = [];
  private readonly infoListeners: Array<(entry: ModelEntry) => void> = [];
  private readonly lostListeners: Array<(loss: DeviceLoss) => void> = [];
  /** Called before the model is replaced (a training run stops and lets go of it). */
  private readonly releasers: Array<() => Promise<void>> = [];
  /** Contexts the page destroyed itself (on leaving the page, or the old one after a recovery): not a loss. */
  private readonly deliberate = new WeakSet<GpuContext>();
  /** Set from the moment the device is lost until a new one replaces it. */
  lost: DeviceLoss | null = null;

  constructor(ctx: GpuContext) {
    this.context = ctx;
    this.watch(ctx);
  }

  get ctx(): GpuContext {
    return this.context;
  }

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

  /** Called once per loss of the device (whatever the browser's reason), unless the page destroyed it. */
  onLost(listener: (loss: DeviceLoss) => void): void {
    this.lostListeners.push(listener);
  }

  /**
   * Tracks the device's loss by a flag on the contexts the page destroys itself, not by the
   * browser's reason: a device destroyed by anyone else ('destroyed' too) is a loss to recover from.
   */
  private watch(ctx: GpuContext): void {
    ctx.device.lost.then((info) => {
      if (this.deliberate.has(ctx) || ctx !== this.context || this.lost) return;
      const message = info.message.trim() || 'no message';
      this.lost = { reason: info.reason, message, entry: this.current, step: this.current?.step ?? 0 };
      this.queue.fail(new GpuDeviceLostError(`The GPU device was lost (${info.reason}: ${message}); restore the model with the button at the top of the page.`));
      for (const listener of this.lostListeners) listener(this.lost);
    });
  }

  /** Makes a new context current after a loss; the lost one is destroyed (deliberately). */
  replaceContext(ctx: GpuContext): void {
    const old = this.context;
    this.context = ctx;
    this.watch(ctx);
    this.lost = null;
    this.queue.accept();
    this.destroyContext(old);
  }

  /** Destroys a context on purpose (leaving the page): its device's loss is not reported. */
  destroyContext(ctx: GpuContext = this.context): void {
    this.deliberate.add(ctx);
    try {
      ctx.destroy();
    } catch {
      // A context whose device is already gone has nothing more to free.
    }
  }

  /** Makes `entry` the current model; the previous one is freed once no queued job can use it. */
  async setModel(entry: ModelEntry, options: { keepTraining?: boolean } = {}): Promise<void> {
    if (!options.keepTraining) for (const release of this.releasers) await release();
    const old = this.current;
    this.current = entry;
    // A model on a lost device has nothing left to free (and the GPU calls would fail).
    if (old && old !== entry && old.model.ctx === this.context && !this.lost) {
      this.queue.run(async () => old.dispose()).catch(() => {});
    }
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
