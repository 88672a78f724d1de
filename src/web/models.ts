// The page's models: presets for fresh models, loading checkpoints (bytes from a URL or a file;
// the same safetensors format as `capsnet train` writes, F32 or F16, through the pure codec in
// src/io/checkpoint.ts) and writing them back.

import type { GpuContext } from '../gpu/context.ts';
import { CapsNet } from '../model/capsnet.ts';
import { type CapsNetConfig, geometry, makeConfig, parameterCount } from '../model/config.ts';
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from '../io/checkpoint.ts';
import type { AdamState } from '../optim/adam.ts';
import { formatCount } from './dom.ts';

export type PresetName = 'paper' | 'small';

/**
 * 'paper': the paper's CapsNet (8.2M parameters), the explorer's default. 'small': 32 Conv1 channels,
 * 8 primary capsule types (288 primary capsules), a 256-512 decoder: 1.1M parameters, about 10x
 * cheaper to train, so that training in the page is usable on a software GPU.
 */
export const PRESETS: Record<PresetName, Partial<CapsNetConfig>> = {
  paper: {},
  small: { conv1Channels: 32, primaryTypes: 8, decoderHidden: [256, 512] },
};

export type Origin = 'fresh' | 'shipped' | 'url' | 'file' | 'trained';

/**
 * How to rebuild a model on a new GPU device after a loss, from what the page keeps on the CPU:
 * the checkpoint bytes it was loaded from (or a training run's last snapshot), or the preset and
 * seed of a fresh model (its initial weights are a function of the seed).
 */
export type RestorePoint =
  | { kind: 'bytes'; bytes: Uint8Array; step: number; what: string }
  | { kind: 'fresh'; preset: PresetName; seed: number; step: 0; what: string };

/** What the page can do with a checkpoint's training state while a run is live. */
export interface LiveTraining {
  optimizer(): Promise<AdamState>;
  training(): Record<string, unknown>;
}

export class ModelEntry {
  /** Set while a training run in the page owns this model: its Adam state and run options. */
  live: LiveTraining | null = null;
  /** The last test of this model in the page (or the shipped figure), at the step it was measured. */
  testAccuracy: { accuracy: number; count: number; step: number } | null = null;
  /** The step `note` was written for (a shipped model's description); training moves past it. */
  noteStep = 0;
  /** What rebuilds this model if the device is lost (see RestorePoint); null when nothing does. */
  restorePoint: RestorePoint | null = null;

  constructor(
    readonly model: CapsNet,
    public name: string,
    public origin: Origin,
    /** Training steps done. */
    public step: number,
    /** Adam's state from the checkpoint it came from (to continue training), if any. */
    public optimizer: AdamState | null = null,
    public training: Record<string, unknown> | null = null,
    public note = '',
  ) {}

  get config(): CapsNetConfig {
    return this.model.config;
  }

  get trained(): boolean {
    return this.step > 0 || this.origin === 'shipped';
  }

  /**
   * A checkpoint of the model; with `half`, F16 parameters and no optimizer state (for shipping).
   * `withOptimizer` says whether Adam's state went in: only when it counted every step of the model
   * (a run continued from a model without one, such as the shipped model, began a fresh Adam).
   */
  async checkpoint(half: boolean): Promise<{ bytes: Uint8Array; withOptimizer: boolean }> {
    const params = await this.model.exportParams();
    const ckpt: Checkpoint = { config: this.config, params, step: this.step };
    if (!half) {
      const optimizer = this.live ? await this.live.optimizer() : this.optimizer;
      if (optimizer && optimizer.step === this.step) ckpt.optimizer = optimizer;
      const training = this.live ? this.live.training() : this.training;
      if (training && ckpt.optimizer) ckpt.training = training;
    }
    return { bytes: encodeCheckpoint(ckpt, { half }), withOptimizer: ckpt.optimizer !== undefined };
  }

  dispose(): void {
    this.model.dispose();
  }
}

export function freshModel(ctx: GpuContext, preset: PresetName, seed: number): ModelEntry {
  const model = CapsNet.create(ctx, PRESETS[preset], seed);
  const entry = new ModelEntry(model, `fresh ${preset} model (seed ${seed})`, 'fresh', 0);
  entry.restorePoint = { kind: 'fresh', preset, seed, step: 0, what: `its initial weights (${preset} model, seed ${seed})` };
  return entry;
}

/** The explorer draws 28x28 grey digits: refuse anything else with a clear message. */
export function checkExplorable(config: CapsNetConfig, source: string): void {
  if (config.inputChannels !== 1 || config.inputSize !== 28) {
    throw new Error(`${source}: this model takes ${config.inputChannels}x${config.inputSize}x${config.inputSize} images; the page works with 28x28 grey digits (MNIST)`);
  }
}

export function modelFromBytes(ctx: GpuContext, bytes: Uint8Array, name: string, origin: Origin): ModelEntry {
  const ckpt = decodeCheckpoint(bytes, name);
  checkExplorable(ckpt.config, name);
  const model = new CapsNet(ctx, ckpt.config, ckpt.params);
  const entry = new ModelEntry(model, name, origin, ckpt.step, ckpt.optimizer ?? null, ckpt.training ?? null);
  // The bytes are kept (not copied): a lost device rebuilds the model from them.
  entry.restorePoint = { kind: 'bytes', bytes, step: ckpt.step, what: `the checkpoint it was loaded from (step ${ckpt.step})` };
  return entry;
}

/**
 * The model of `entry` rebuilt on `ctx` from its restore point (same name, origin and notes);
 * when the point is older than the entry, the steps since are gone and the result says so.
 */
export function restoreModel(ctx: GpuContext, entry: ModelEntry): ModelEntry {
  const point = entry.restorePoint;
  if (!point) throw new Error(`${entry.name}: the page kept nothing to rebuild this model from`);
  const restored = point.kind === 'bytes' ? modelFromBytes(ctx, point.bytes, entry.name, entry.origin) : freshModel(ctx, point.preset, point.seed);
  restored.name = entry.name;
  restored.origin = entry.origin;
  restored.note = entry.note;
  restored.noteStep = entry.noteStep;
  restored.restorePoint = point;
  restored.testAccuracy = entry.testAccuracy; // says its step: shown as older when the restore went back
  return restored;
}

/** Fetches a URL's bytes, reporting progress (0..1, or NaN when the size is unknown). */
export async function fetchWithProgress(url: string, onProgress?: (fraction: number, bytes: number) => void): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  const total = Number(response.headers.get('content-length') ?? NaN);
  if (!response.body || !onProgress) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    onProgress(total > 0 ? received / total : NaN, received);
  }
  const out = new Uint8Array(received);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** The models shipped with the page, as listed by models/index.json (written by the build). */
export interface ShippedModels {
  /** File name (in models/) of the model to open on first visit, if any. */
  default?: string;
  models: Array<{ file: string; name?: string; description?: string; testAccuracy?: number; testCount?: number }>;
}

export async function shippedModels(base = 'models/'): Promise<ShippedModels> {
  const response = await fetch(`${base}index.json`);
  if (!response.ok) return { models: [] }; // no list: a page served without shipped models
  let list: ShippedModels;
  try {
    list = (await response.json()) as ShippedModels;
  } catch (error) {
    throw new Error(`${base}index.json is not JSON (${(error as Error).message}); is the server answering every path with the page?`);
  }
  return { default: list.default, models: Array.isArray(list.models) ? list.models : [] };
}

export function describeConfig(config: CapsNetConfig): Array<[string, string]> {
  const g = geometry(config);
  return [
    ['parameters', formatCount(parameterCount(config))],
    ['Conv1', `${config.conv1Channels} channels, ${config.conv1Kernel}x${config.conv1Kernel}`],
    ['primary capsules', `${formatCount(g.primaryCaps)} (${config.primaryTypes} types x ${g.grid}x${g.grid}, ${config.primaryDim}-D)`],
    ['digit capsules', `${config.digitCaps} x ${config.digitDim}-D, ${config.routings} routing iteration${config.routings === 1 ? '' : 's'}${config.leaky ? ', leaky' : ''}`],
    ['decoder', config.decoder ? `${g.decoderIn} → ${config.decoderHidden.join(' → ')} → ${g.pixels}` : 'none'],
  ];
}

export function presetOf(config: CapsNetConfig): PresetName | null {
  for (const [name, overrides] of Object.entries(PRESETS) as Array<[PresetName, Partial<CapsNetConfig>]>) {
    if (JSON.stringify(makeConfig(overrides)) === JSON.stringify(config)) return name;
  }
  return null;
}
