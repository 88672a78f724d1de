// Recovery from a lost GPU device (a driver reset, a GPU process crash, or anything that destroys
// the device): the page shows a notice at the top saying what happened and from which step the
// model can be restored, with a button that acquires a new device, rebuilds the model that was open
// from what the page keeps on the CPU (its checkpoint bytes, a training run's last snapshot, or the
// seed of a fresh model: ModelEntry.restorePoint), and makes it current again, so that every panel
// works without reloading the page. While the device is gone, GPU jobs fail at once with a message
// (App's queue refuses them) instead of waiting on a device that will never answer.

import { acquireGpu } from '../gpu/browser.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { App, DeviceLoss } from './app-state.ts';
import { type ModelEntry, freshModel, restoreModel } from './models.ts';
import type { TrainPanel } from './train-panel.ts';
import { byId, errorText, stepsLost } from './dom.ts';

export class Recovery {
  /** Resolves when the running restore ends (for tests); null when none runs. */
  restoring: Promise<void> | null = null;
  /** What the last restore did, for tests: the step the model came back at. */
  lastRestore: { name: string; step: number; lostStep: number } | null = null;
  private readonly banner = byId('gpu-lost');
  private readonly title = byId('gpu-lost-title');
  private readonly message = byId('gpu-lost-message');
  private readonly restoreButton = byId<HTMLButtonElement>('gpu-restore');
  private readonly dismissButton = byId<HTMLButtonElement>('gpu-dismiss');
  private readonly reloadButton = byId<HTMLButtonElement>('gpu-reload');
  /** The loss being recovered from (kept until a restore succeeds, so that a failed one can be retried). */
  private loss: DeviceLoss | null = null;
  /** Whether a training run was going (or paused) when the device was lost. */
  private wasTraining = false;

  constructor(
    private readonly app: App,
    private readonly trainPanel: TrainPanel,
    /** Shows the adapter of a new context (or the loss) in the page's header. */
    private readonly showGpu: (ctx: GpuContext | null) => void,
  ) {
    app.onLost((loss) => this.lost(loss));
    this.restoreButton.addEventListener('click', () => void this.restore());
    this.reloadButton.addEventListener('click', () => location.reload());
    this.dismissButton.addEventListener('click', () => {
      this.banner.hidden = true;
    });
  }

  private lost(loss: DeviceLoss): void {
    this.loss = loss;
    this.wasTraining = this.trainPanel.run !== null;
    // For developers; the page says it in words.
    console.warn(`capsnet: the GPU device was lost (${loss.reason}: ${loss.message})`);
    this.showGpu(null);
    this.banner.classList.remove('restored');
    this.banner.setAttribute('role', 'alert');
    this.title.textContent = 'The GPU device was lost';
    this.message.textContent = `The browser took the graphics device away (${loss.reason}: ${loss.message}), and with it everything on the GPU. ` +
      this.plan(loss.entry, loss.step);
    this.restoreButton.hidden = false;
    this.reloadButton.hidden = false;
    this.restoreButton.disabled = false;
    this.restoreButton.textContent = 'Restore the model';
    this.dismissButton.hidden = true;
    this.banner.hidden = false;
    this.restoreButton.focus();
  }

  /** What restoring will bring back, in words. */
  private plan(entry: ModelEntry | null, step: number): string {
    if (!entry) return 'Restoring acquires a new device.';
    const point = entry.restorePoint;
    const training = this.wasTraining ? 'Training stopped. ' : '';
    if (!point) return `${training}The page kept nothing to rebuild ${entry.name} from: restoring acquires a new device with a fresh, untrained paper model.`;
    if (point.step === step) {
      return `${training}Restoring acquires a new device and rebuilds ${entry.name} from ${point.what}` +
        `${entry.step > 0 || point.kind === 'bytes' ? `, at step ${step}` : ''}: nothing is lost.`;
    }
    return `${training}Restoring acquires a new device and rebuilds ${entry.name} from ${point.what}: ` +
      `it comes back at step ${point.step}, and ${stepsLost(point.step, step)}.`;
  }

  /** Acquires a new device and brings back the model that was open. */
  restore(): Promise<void> {
    this.restoring ??= this.restoreOnce().finally(() => {
      this.restoring = null;
    });
    return this.restoring;
  }

  private async restoreOnce(): Promise<void> {
    const loss = this.loss;
    if (!loss) return;
    this.restoreButton.disabled = true;
    this.restoreButton.textContent = 'Restoring…';
    try {
      await this.trainPanel.dropRun();
      this.message.textContent = 'Acquiring a new GPU device…';
      // A retry after a failure further down keeps the device already acquired.
      if (this.app.lost) this.app.replaceContext(await acquireGpu());
      const ctx = this.app.ctx;
      this.showGpu(ctx);
      const entry = loss.entry;
      this.message.textContent = entry ? `Rebuilding ${entry.name} on the new device…` : 'Creating a model on the new device…';
      const restored = await this.app.queue.run(async () =>
        entry?.restorePoint ? restoreModel(ctx, entry) : freshModel(ctx, 'paper', 1));
      await this.app.setModel(restored);
      this.trainPanel.restored(restored, this.wasTraining ? loss.step : null);
      this.loss = null;
      this.lastRestore = { name: restored.name, step: restored.step, lostStep: loss.step };
      this.banner.classList.add('restored');
      this.banner.setAttribute('role', 'status');
      this.title.textContent = 'The model is back';
      this.message.textContent = this.done(entry, restored, loss.step);
      this.restoreButton.hidden = true;
      this.reloadButton.hidden = true;
      this.dismissButton.hidden = false;
      this.dismissButton.focus();
    } catch (error) {
      this.message.textContent = `Could not restore: ${errorText(error)}. Try again, or reload the page.`;
      this.restoreButton.textContent = 'Try again';
      this.restoreButton.disabled = false;
      this.restoreButton.focus();
    }
  }

  private done(before: ModelEntry | null, after: ModelEntry, lostStep: number): string {
    const device = `on a new GPU device: ${this.app.ctx.adapter.name}`;
    if (!before || !before.restorePoint) return `A fresh, untrained paper model runs ${device}.`;
    const point = before.restorePoint;
    const at = after.step > 0 || point.kind === 'bytes' ? ` at step ${after.step}` : '';
    const dropped = stepsLost(after.step, lostStep);
    const lost = after.step < lostStep ? ` ${dropped[0].toUpperCase()}${dropped.slice(1)}.` : '';
    const training = this.wasTraining ? ' Training can continue from there in the Train tab.' : '';
    return `${after.name} was restored${at} from ${point.what}, ${device}.${lost}${training}`;
  }
}
