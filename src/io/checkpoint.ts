// Checkpoints: safetensors files (so PyTorch and other tools read them) holding the model's
// parameters in PyTorch layouts under the names of DESIGN.md, Adam's moments as adam.m.<name> and
// adam.v.<name>, a run's moving average of the parameters (train --ema) as ema.<name> with its
// decay and start step in __metadata__.ema, and in __metadata__ the model kind ('capsnet' when absent, or 'baseline': the
// paper's baseline CNN), the model config, the step and the training state as JSON.
// Pure (bytes in, bytes out): the browser uses it too. Files: src/io/checkpoint-file.ts.

import { clip, decodeSafetensors, encodeSafetensors, type TensorToEncode } from './safetensors.ts';
import { makeConfig, parameterShapes, type CapsNetConfig } from '../model/config.ts';
import { makeBaselineConfig, baselineParameterShapes, type BaselineConfig } from '../model/baseline-config.ts';

export const CHECKPOINT_FORMAT = 'capsnet-webgpu/1';

/**
 * A checkpoint's bytes that are not a usable checkpoint (corrupt safetensors, metadata, a config
 * out of range, tensors that do not match it, the other model kind): one class to catch, whatever
 * check failed. The message names the file, the field and what was expected; `cause` holds the
 * check's own error where there was one.
 */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export interface OptimizerState {
  /** Adam's step count t (bias correction uses it). */
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

/** The moving average of the parameters (src/optim/ema.ts's EmaState): ema.<name> tensors, F32. */
export interface EmaCheckpointState {
  decay: number;
  /** The step at which the average started as a copy of the parameters. */
  since: number;
  params: Record<string, Float32Array>;
}

/** Which network a checkpoint holds (__metadata__.model). */
export type ModelKind = 'capsnet' | 'baseline';
export const MODEL_KINDS: readonly ModelKind[] = ['capsnet', 'baseline'];

/** The parameters of either model by checkpoint name, with their shapes (PyTorch layouts). */
export function modelParameterShapes(model: ModelKind, config: CapsNetConfig | BaselineConfig): Record<string, number[]> {
  return model === 'baseline' ? baselineParameterShapes(config as BaselineConfig) : parameterShapes(config as CapsNetConfig);
}

export interface Checkpoint {
  /** Absent or 'capsnet': a CapsNet. */
  model?: 'capsnet';
  config: CapsNetConfig;
  /** By checkpoint name, in PyTorch layouts (parameterShapes gives each shape). */
  params: Record<string, Float32Array>;
  optimizer?: OptimizerState;
  /** A training run's moving average of the parameters (capsnet train --ema). */
  ema?: EmaCheckpointState;
  /** Training steps done. */
  step: number;
  /** Whatever the trainer needs to resume exactly (options, data order, RNG state); JSON. */
  training?: Record<string, unknown>;
}

/** A checkpoint of the paper's baseline CNN (src/model/baseline.ts); the same layout otherwise. */
export interface BaselineCheckpoint extends Omit<Checkpoint, 'model' | 'config'> {
  model: 'baseline';
  config: BaselineConfig;
}

export type AnyCheckpoint = Checkpoint | BaselineCheckpoint;

export interface EncodeOptions {
  /** Store parameters as F16 (half the size; for shipping models, not for resuming training). */
  half?: boolean;
}

export function encodeCheckpoint(ckpt: AnyCheckpoint, options: EncodeOptions = {}): Uint8Array {
  const shapes = modelParameterShapes(ckpt.model ?? 'capsnet', ckpt.config);
  const tensors: Record<string, TensorToEncode> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const data = ckpt.params[name];
    checkSize(data, shape, `parameter '${name}'`);
    tensors[name] = { shape, data, dtype: options.half ? 'F16' : 'F32' };
  }
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    model: ckpt.model ?? 'capsnet',
    config: JSON.stringify(ckpt.config),
    step: String(ckpt.step),
  };
  if (ckpt.optimizer) {
    for (const [name, shape] of Object.entries(shapes)) {
      checkSize(ckpt.optimizer.m[name], shape, `adam.m.${name}`);
      checkSize(ckpt.optimizer.v[name], shape, `adam.v.${name}`);
      tensors[`adam.m.${name}`] = { shape, data: ckpt.optimizer.m[name] };
      tensors[`adam.v.${name}`] = { shape, data: ckpt.optimizer.v[name] };
    }
    metadata['adam.step'] = String(ckpt.optimizer.step);
  }
  if (ckpt.ema) {
    checkEma(ckpt.ema.decay, ckpt.ema.since, ckpt.step, (problem) => {
      throw new Error(`checkpoint: ema: ${problem}`);
    });
    for (const [name, shape] of Object.entries(shapes)) {
      checkSize(ckpt.ema.params[name], shape, `ema.${name}`);
      tensors[`ema.${name}`] = { shape, data: ckpt.ema.params[name] };
    }
    metadata.ema = JSON.stringify({ decay: ckpt.ema.decay, since: ckpt.ema.since });
  }
  if (ckpt.training) metadata.training = JSON.stringify(ckpt.training);
  return encodeSafetensors(tensors, metadata);
}

function checkSize(data: Float32Array | undefined, shape: number[], what: string): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (!(data instanceof Float32Array) || data.length !== n) {
    throw new Error(`checkpoint: ${what} has ${data?.length ?? 'no'} values, expected ${n} for shape [${shape.join(', ')}]`);
  }
}

/** Longest __metadata__.config accepted: a real one is a few hundred bytes; bounds what a hostile one makes us build. */
export const MAX_CONFIG_JSON_BYTES = 65_536;
/** Deepest nesting accepted in a metadata JSON value: deeper values overflow the stack of JSON.stringify (in error messages, logs). */
export const MAX_JSON_DEPTH = 32;

function parseJsonField(text: string | undefined, source: string, field: string, maxLength = Infinity): unknown {
  if (text === undefined) return undefined;
  if (text.length > maxLength) throw new Error(`${source}: __metadata__.${field} is ${text.length} characters long, more than the ${maxLength} accepted`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: __metadata__.${field} is not valid JSON (${(error as Error).message})`);
  }
  if (jsonDepth(value) > MAX_JSON_DEPTH) throw new Error(`${source}: __metadata__.${field} nests deeper than ${MAX_JSON_DEPTH} levels`);
  return value;
}

/** Nesting depth of a parsed JSON value (iterative: JSON.parse accepts any depth, recursion here would not). */
function jsonDepth(root: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (depth + 1 > deepest) deepest = depth + 1;
    if (deepest > MAX_JSON_DEPTH) return deepest;
    for (const child of Object.values(value)) stack.push([child, depth + 1]);
  }
  return deepest;
}

const MAX_PROBLEMS_LISTED = 40;

/** The moving average's decay in (0, 1) and start step in [0, step]; `fail` gets what is wrong. */
function checkEma(decay: unknown, since: unknown, step: number, fail: (problem: string) => void): void {
  if (typeof decay !== 'number' || !(decay > 0 && decay < 1)) fail(`decay ${clip(JSON.stringify(decay) ?? String(decay))} is not a number in (0, 1)`);
  if (typeof since !== 'number' || !Number.isSafeInteger(since) || since < 0 || since > step) fail(`since ${clip(JSON.stringify(since) ?? String(since))} is not a step in [0, ${step}]`);
}

function parseCount(text: string | undefined, source: string, field: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new Error(`${source}: __metadata__.${field} must be a non-negative integer, got '${clip(text)}'`);
  return n;
}

/**
 * Reads a CapsNet checkpoint (see decodeAnyCheckpoint); a baseline CNN checkpoint is refused with a
 * message saying what it is.
 */
export function decodeCheckpoint(bytes: Uint8Array, source: string): Checkpoint {
  const ckpt = decodeAnyCheckpoint(bytes, source);
  if (ckpt.model === 'baseline') throw new CheckpointError(`${source}: __metadata__.model is 'baseline' (the baseline CNN), expected a CapsNet checkpoint`);
  return ckpt;
}

/**
 * Reads a checkpoint of either model (__metadata__.model; CapsNet when absent) and checks it
 * against the config it declares (the paper's config when the metadata has none, as in a file
 * written by another tool with only the model tensors). Every mismatch is listed: missing,
 * unexpected or wrongly shaped tensors, dtypes, metadata fields.
 */
export function decodeAnyCheckpoint(bytes: Uint8Array, source: string): AnyCheckpoint {
  try {
    return decodeChecked(bytes, source);
  } catch (error) {
    // The checks below (and the safetensors and config parsers) throw plain Errors that describe the
    // file; anything else (a TypeError or RangeError: a bug, or memory running out) is not the
    // file's fault and keeps its own type and stack.
    if (!(error instanceof Error) || error.constructor !== Error) throw error;
    throw new CheckpointError(error.message, { cause: error });
  }
}

function decodeChecked(bytes: Uint8Array, source: string): AnyCheckpoint {
  const file = decodeSafetensors(bytes, source);
  const meta = file.metadata;
  if (meta.format !== undefined && meta.format !== CHECKPOINT_FORMAT) {
    throw new Error(`${source}: __metadata__.format is '${clip(meta.format)}', expected '${CHECKPOINT_FORMAT}'`);
  }
  const model = (meta.model ?? 'capsnet') as ModelKind;
  if (!MODEL_KINDS.includes(model)) throw new Error(`${source}: __metadata__.model is '${clip(meta.model ?? '')}', expected one of ${MODEL_KINDS.map((k) => `'${k}'`).join(', ')}`);
  const declared = parseJsonField(meta.config, source, 'config', MAX_CONFIG_JSON_BYTES);
  if (declared !== undefined && (typeof declared !== 'object' || declared === null || Array.isArray(declared))) {
    throw new Error(`${source}: __metadata__.config must be a JSON object`);
  }
  const configSource = `${source}: __metadata__.config`;
  const config = model === 'baseline'
    ? makeBaselineConfig((declared ?? {}) as Partial<BaselineConfig>, configSource)
    : makeConfig((declared ?? {}) as Partial<CapsNetConfig>, configSource);
  const shapes = modelParameterShapes(model, config);
  const problems: string[] = [];
  const params: Record<string, Float32Array> = {};
  const take = (name: string, shape: number[]): Float32Array | null => {
    const t = file.tensors.get(name);
    if (!t) {
      problems.push(`missing tensor '${name}' [${shape.join(', ')}]`);
      return null;
    }
    if (t.dtype !== 'F32' && t.dtype !== 'F16') {
      problems.push(`tensor '${name}' has dtype ${t.dtype}, expected F32 or F16`);
      return null;
    }
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      problems.push(`tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      return null;
    }
    return t.data as Float32Array;
  };
  for (const [name, shape] of Object.entries(shapes)) {
    const data = take(name, shape);
    if (data) params[name] = data;
  }
  const hasAdam = [...file.tensors.keys()].some((n) => n.startsWith('adam.'));
  let optimizer: OptimizerState | undefined;
  if (hasAdam) {
    const m: Record<string, Float32Array> = {};
    const v: Record<string, Float32Array> = {};
    for (const [name, shape] of Object.entries(shapes)) {
      const dm = take(`adam.m.${name}`, shape);
      const dv = take(`adam.v.${name}`, shape);
      if (dm) m[name] = dm;
      if (dv) v[name] = dv;
    }
    const adamStep = parseCount(meta['adam.step'], source, 'adam.step');
    if (adamStep === undefined) problems.push("__metadata__ has Adam moments but no 'adam.step'");
    optimizer = { step: adamStep ?? 0, m, v };
  }
  const step = parseCount(meta.step, source, 'step') ?? 0;
  const hasEma = [...file.tensors.keys()].some((n) => n.startsWith('ema.'));
  let ema: EmaCheckpointState | undefined;
  if (hasEma) {
    const averages: Record<string, Float32Array> = {};
    for (const [name, shape] of Object.entries(shapes)) {
      const a = take(`ema.${name}`, shape);
      if (a) averages[name] = a;
    }
    const info = parseJsonField(meta.ema, source, 'ema') as { decay?: unknown; since?: unknown } | undefined;
    if (info === undefined) problems.push("__metadata__ has ema tensors but no 'ema' (decay and start step)");
    else if (typeof info !== 'object' || info === null || Array.isArray(info)) problems.push('__metadata__.ema must be a JSON object { decay, since }');
    else checkEma(info.decay, info.since, step, (problem) => problems.push(`__metadata__.ema: ${problem}`));
    ema = { decay: Number(info?.decay), since: Number(info?.since), params: averages };
  } else if (meta.ema !== undefined) {
    problems.push("__metadata__.ema describes a moving average but the file has no ema.<name> tensors");
  }
  const known = new Set([
    ...Object.keys(shapes),
    ...(hasAdam ? Object.keys(shapes).flatMap((n) => [`adam.m.${n}`, `adam.v.${n}`]) : []),
    ...(hasEma ? Object.keys(shapes).map((n) => `ema.${n}`) : []),
  ]);
  for (const name of file.tensors.keys()) {
    if (!known.has(name)) problems.push(`unexpected tensor '${clip(name)}' (not part of this model config)`);
  }
  if (problems.length > 0) {
    // At most MAX_PROBLEMS_LISTED lines: a file with thousands of stray tensors still gives a readable message.
    const listed = problems.length > MAX_PROBLEMS_LISTED ? [...problems.slice(0, MAX_PROBLEMS_LISTED), `... and ${problems.length - MAX_PROBLEMS_LISTED} more`] : problems;
    throw new Error(`${source}: not a checkpoint of this model (config ${declared ? 'from the file' : 'assumed: the paper\'s'}):\n  ${listed.join('\n  ')}`);
  }
  const training = parseJsonField(meta.training, source, 'training');
  if (training !== undefined && (typeof training !== 'object' || training === null || Array.isArray(training))) throw new Error(`${source}: __metadata__.training must be a JSON object`);
  return {
    ...(model === 'baseline' ? { model, config: config as BaselineConfig } : { config: config as CapsNetConfig }),
    params,
    optimizer,
    ...(ema ? { ema } : {}),
    step,
    training: training as Record<string, unknown> | undefined,
  };
}
