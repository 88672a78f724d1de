// Fuzz target for checkpoint decoding (src/io/checkpoint.ts: decodeCheckpoint, decodeAnyCheckpoint):
// the metadata JSON (format, model, config, step, adam.step, training) and the tensor set, on small
// CapsNet and baseline CNN checkpoints, plus the safetensors-level mutations underneath.
//
// There is no full oracle for "is this a valid checkpoint" (the config rules belong to the models);
// instead a returned checkpoint must be consistent with the file: every parameter the returned
// config needs is there with the file's values and shape, nothing else is in the file, the Adam
// moments are there exactly when the file has any, and step / adam.step are the metadata's integers.

import type { Rng } from '../../src/data/rng.ts';
import { decodeAnyCheckpoint, decodeCheckpoint, encodeCheckpoint, type AnyCheckpoint } from '../../src/io/checkpoint.ts';
import { makeConfig, parameterShapes, type CapsNetConfig } from '../../src/model/config.ts';
import { baselineParameterShapes, makeBaselineConfig, type BaselineConfig } from '../../src/model/baseline-config.ts';
import type { PreparedCase, Target } from './harness.ts';
import { INTERESTING_NUMBERS, big, chance, deepJsonText, hostileJsonValue, pick, randomBytes } from './mutate.ts';
import { safetensorsOracle, safetensorsParts, sameValues, valuesOf, type StReading, type StTensor } from './formats.ts';
import { hostileSafetensors, mutateHeader } from './safetensors.ts';

const CAPSNET_SMALL: Partial<CapsNetConfig> = {
  inputSize: 12, conv1Channels: 3, conv1Kernel: 3, primaryTypes: 2, primaryDim: 2, primaryKernel: 3, primaryStride: 2,
  digitCaps: 3, digitDim: 2, decoderHidden: [4], routings: 1,
};
const BASELINE_SMALL: Partial<BaselineConfig> = { inputSize: 8, convChannels: [2, 3], convKernel: 3, fcHidden: [4], classes: 3 };

function randomFloats(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng.next() - 0.5) * 4;
  return out;
}

/** A valid checkpoint file of a small model, written by the project's own encoder. */
function validCheckpoint(rng: Rng): { bytes: Uint8Array; what: string } {
  const baseline = chance(rng, 0.3);
  const withAdam = chance(rng, 0.6);
  const half = !withAdam && chance(rng, 0.3);
  let ckpt: AnyCheckpoint;
  let shapes: Record<string, number[]>;
  if (baseline) {
    const config = makeBaselineConfig({ ...BASELINE_SMALL, convPadding: pick(rng, ['same', 'valid'] as const), pool: pick(rng, [1, 2] as const) });
    shapes = baselineParameterShapes(config);
    ckpt = { model: 'baseline', config, params: {}, step: rng.int(1000) };
  } else {
    const config = makeConfig({ ...CAPSNET_SMALL, routingBias: chance(rng, 0.3), decoder: chance(rng, 0.7) });
    shapes = parameterShapes(config);
    ckpt = { config, params: {}, step: rng.int(1000) };
  }
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  for (const [name, shape] of Object.entries(shapes)) ckpt.params[name] = randomFloats(rng, size(shape));
  if (withAdam) {
    const m: Record<string, Float32Array> = {};
    const v: Record<string, Float32Array> = {};
    for (const [name, shape] of Object.entries(shapes)) {
      m[name] = randomFloats(rng, size(shape));
      v[name] = randomFloats(rng, size(shape)).map(Math.abs);
    }
    ckpt.optimizer = { step: ckpt.step, m, v };
  }
  if (chance(rng, 0.5)) ckpt.training = { options: { seed: 1, batchSize: 8 } };
  const bytes = encodeCheckpoint(ckpt, { half });
  return { bytes, what: `${baseline ? 'baseline' : 'capsnet'} checkpoint${withAdam ? ' + Adam' : ''}${half ? ' (F16)' : ''}` };
}

type Meta = Record<string, unknown>;

const CONFIG_TEXT = ['{', '[]', 'null', '5', '"x"', '{"inputSize": 12,}', '{}'];
const COUNT_TEXT = ['-1', '1e3', '', ' 1', '99999999999999999999', '007', '1.5', 'NaN', '0x10', '9007199254740993', '١٢', '+3'];

/** One checkpoint-aware mutation of the tensors list and metadata (in place). Returns what it did and whether the result must still be valid. */
function mutateCheckpoint(rng: Rng, tensors: Array<[string, StTensor]>, meta: Meta): { what: string; stillValid: boolean } {
  const set = (key: string, value: unknown) => Object.defineProperty(meta, key, { value, enumerable: true, configurable: true, writable: true });
  const pickTensor = () => (tensors.length > 0 ? rng.int(tensors.length) : -1);
  switch (rng.int(17)) {
    case 0: {
      const v = pick(rng, ['capsnet-webgpu/2', '', 'pt', 'capsnet-webgpu/1 ']);
      set('format', v);
      return { what: `format := ${JSON.stringify(v)}`, stillValid: false };
    }
    case 1: {
      const v = pick(rng, ['baseline', 'capsnet', 'cnn', '', '__proto__', 'Capsnet', 'toString']);
      set('model', v);
      return { what: `model := ${JSON.stringify(v)}`, stillValid: false };
    }
    case 2: {
      // 70,000 characters: just past the 64 KiB bound on __metadata__.config.
      const which = rng.int(CONFIG_TEXT.length + 3);
      const v = which < CONFIG_TEXT.length ? CONFIG_TEXT[which]
        : which === CONFIG_TEXT.length ? deepJsonText(33, true) : which === CONFIG_TEXT.length + 1 ? deepJsonText(big(100_000), false) : `{"inputSize": 12${' '.repeat(70_000)}}`;
      set('config', v);
      return { what: `config := ${v.length > 60 ? `${v.slice(0, 30)}... (${v.length} chars)` : JSON.stringify(v)}`, stillValid: false };
    }
    case 3:
    case 4: {
      const config = parsedConfig(meta);
      const fields = [...Object.keys(config), 'colour', '__proto__', 'decoderHidden', 'fcHidden', 'convChannels'];
      const field = pick(rng, fields);
      const m = chance(rng, 0.5) ? hostileJsonValue(rng) : { value: pick(rng, INTERESTING_NUMBERS), what: 'an interesting number' };
      Object.defineProperty(config, field, { value: m.value, enumerable: true, configurable: true, writable: true });
      const text = stringifyOrNull(config);
      if (text === null) break;
      set('config', text);
      return { what: `config.${field} := ${m.what}`, stillValid: false };
    }
    case 5: {
      const list = pick(rng, [[], [0], new Array(10_000).fill(1), [[4]], [4.5], [2 ** 20 + 1]]);
      const config = parsedConfig(meta);
      const field = pick(rng, ['decoderHidden', 'fcHidden', 'convChannels']);
      config[field] = list;
      const text = stringifyOrNull(config);
      if (text === null) break;
      set('config', text);
      return { what: `config.${field} := a list of ${list.length}`, stillValid: false };
    }
    case 6: {
      const key = pick(rng, ['step', 'adam.step']);
      const v = pick(rng, COUNT_TEXT);
      set(key, v);
      return { what: `${key} := ${JSON.stringify(v)}`, stillValid: false };
    }
    case 7: {
      const texts = ['{', '[]', '5', 'null', '"s"', '{"options":{}}', '{"options":{"seed":"x"}}', 'deep33', 'deep'];
      const which = pick(rng, texts);
      const v = which === 'deep33' ? deepJsonText(33, true) : which === 'deep' ? deepJsonText(big(100_000), false) : which;
      set('training', v);
      return { what: `training := ${v.length > 60 ? `${v.slice(0, 30)}... (${v.length} chars)` : JSON.stringify(v)}`, stillValid: false };
    }
    case 8: {
      const key = pick(rng, ['format', 'model', 'config', 'step', 'adam.step', 'training']);
      delete meta[key];
      return { what: `metadata ${key} deleted`, stillValid: key === 'training' || key === 'format' || (key === 'adam.step' && !tensors.some(([n]) => n.startsWith('adam.'))) };
    }
    case 9: {
      const k = pickTensor();
      if (k < 0) break;
      const [name] = tensors.splice(k, 1)[0];
      return { what: `tensor ${name} removed`, stillValid: false };
    }
    case 10: {
      const k = pickTensor();
      if (k < 0) break;
      const to = pick(rng, ['extra.weight', `${tensors[k][0]}_`, tensors[k][0].replace('adam.m.', 'adam.'), tensors[k][0].toUpperCase(), 'n'.repeat(big(1_000_000))]);
      const from = tensors[k][0];
      if (to === from || tensors.some(([n]) => n === to)) break;
      tensors[k] = [to, tensors[k][1]];
      return { what: `tensor ${from} renamed ${to.length > 40 ? `to a ${to.length}-character name` : to}`, stillValid: false };
    }
    case 11: {
      const k = pickTensor();
      if (k < 0) break;
      const t = tensors[k][1];
      const n = t.shape.reduce((a, b) => a * b, 1);
      tensors[k][1] = { dtype: 'F16', shape: t.shape, data: randomBytes(rng, 2 * n) };
      return { what: `tensor ${tensors[k][0]} stored as F16 (random halves: valid)`, stillValid: true };
    }
    case 12: {
      const k = pickTensor();
      if (k < 0) break;
      const t = tensors[k][1];
      const n = t.shape.reduce((a, b) => a * b, 1);
      const dtype = pick(rng, ['I32', 'U8']);
      tensors[k][1] = dtype === 'I32' ? { dtype, shape: t.shape, data: randomBytes(rng, 4 * n) } : { dtype, shape: t.shape, data: randomBytes(rng, n) };
      return { what: `tensor ${tensors[k][0]} stored as ${dtype}`, stillValid: false };
    }
    case 13: {
      const k = pickTensor();
      if (k < 0) break;
      const t = tensors[k][1];
      const n = t.shape.reduce((a, b) => a * b, 1);
      const shape = t.shape.length === 1 ? [1, n] : [n];
      tensors[k][1] = { ...t, shape };
      return { what: `tensor ${tensors[k][0]} reshaped to [${shape.join(', ')}]`, stillValid: false };
    }
    case 14: {
      const count = pick(rng, [1, big(5000)]);
      for (let i = 0; i < count; i++) tensors.push([`extra.${i}`, { dtype: 'F32', shape: [1], data: new Uint8Array(4) }]);
      return { what: `${count} unexpected tensor(s) added`, stillValid: false };
    }
    case 15: {
      const before = tensors.length;
      for (let k = tensors.length - 1; k >= 0; k--) if (tensors[k][0].startsWith('adam.')) tensors.splice(k, 1);
      return { what: `every adam.* tensor removed (${before - tensors.length})`, stillValid: true };
    }
    default: {
      for (let k = tensors.length - 1; k >= 0; k--) if (!tensors[k][0].startsWith('adam.')) tensors.splice(k, 1);
      return { what: 'every parameter removed (Adam moments kept)', stillValid: false };
    }
  }
  return { what: 'no change', stillValid: true };
}

const COUNT = /^\d+$/;

/** The metadata's config as an object to edit ({} when it is not a JSON object). */
function parsedConfig(meta: Meta): Record<string, unknown> {
  try {
    const value = JSON.parse(String(meta.config ?? '{}'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

/** JSON text of a value, or null when it nests deeper than JSON.stringify can go (a config the mutations made deep). */
function stringifyOrNull(value: unknown): string | null {
  try {
    return JSON.stringify(value);
  } catch {
    return null;
  }
}

/** Null when the decoded checkpoint agrees with the file (the safetensors oracle's reading), else why not. */
function checkCheckpoint(result: unknown, file: StReading, capsnetOnly: boolean): string | null {
  const r = result as AnyCheckpoint;
  const meta = file.metadata;
  if (capsnetOnly && r.model === 'baseline') return 'decodeCheckpoint returned a baseline checkpoint';
  const kind = meta.get('model') ?? 'capsnet';
  if ((r.model ?? 'capsnet') !== kind) return `model ${r.model}, the file says ${kind}`;
  if (meta.has('format') && meta.get('format') !== 'capsnet-webgpu/1') return `accepted format ${JSON.stringify(meta.get('format'))}`;
  let shapes: Record<string, number[]>;
  try {
    shapes = r.model === 'baseline' ? baselineParameterShapes(makeBaselineConfig(r.config as BaselineConfig)) : parameterShapes(makeConfig(r.config as CapsNetConfig));
  } catch (e) {
    return `returned a config that does not validate: ${(e as Error).message}`;
  }
  const expectTensor = (name: string, shape: number[], data: Float32Array | undefined): string | null => {
    const t = file.tensors.get(name);
    if (!t) return `${name} is not in the file`;
    if (!(data instanceof Float32Array)) return `${name} is not a Float32Array`;
    if (t.dtype !== 'F32' && t.dtype !== 'F16') return `${name} accepted with dtype ${t.dtype}`;
    if (JSON.stringify(t.shape) !== JSON.stringify(shape)) return `${name}: file shape [${t.shape}], config needs [${shape}]`;
    return sameValues(data, valuesOf(t.dtype, t.bytes), name);
  };
  for (const [name, shape] of Object.entries(shapes)) {
    const wrong = expectTensor(name, shape, r.params[name]);
    if (wrong) return wrong;
  }
  if (Object.keys(r.params).length !== Object.keys(shapes).length) return `params has ${Object.keys(r.params).length} entries, the config needs ${Object.keys(shapes).length}`;
  const hasAdam = [...file.tensors.keys()].some((n) => n.startsWith('adam.'));
  if (hasAdam !== (r.optimizer !== undefined)) return `optimizer ${r.optimizer ? 'present' : 'absent'}, the file has${hasAdam ? '' : ' no'} adam.* tensors`;
  const known = new Set(Object.keys(shapes));
  if (r.optimizer) {
    for (const [name, shape] of Object.entries(shapes)) {
      const wrong = expectTensor(`adam.m.${name}`, shape, r.optimizer.m[name]) ?? expectTensor(`adam.v.${name}`, shape, r.optimizer.v[name]);
      if (wrong) return wrong;
      known.add(`adam.m.${name}`).add(`adam.v.${name}`);
    }
    const text = meta.get('adam.step');
    if (text === undefined || !COUNT.test(text) || Number(text) !== r.optimizer.step || !Number.isSafeInteger(r.optimizer.step)) return `adam.step ${r.optimizer.step} from ${JSON.stringify(text)}`;
  }
  for (const name of file.tensors.keys()) if (!known.has(name)) return `accepted unexpected tensor ${name}`;
  const stepText = meta.get('step');
  const step = stepText === undefined ? 0 : COUNT.test(stepText) ? Number(stepText) : NaN;
  if (r.step !== step || !Number.isSafeInteger(r.step)) return `step ${r.step} from ${JSON.stringify(stepText)}`;
  if (r.training !== undefined && (typeof r.training !== 'object' || r.training === null)) return `training is ${typeof r.training}`;
  return null;
}

export const checkpointTarget: Target = {
  name: 'checkpoint',
  description: 'checkpoint decoding, src/io/checkpoint.ts: decodeCheckpoint / decodeAnyCheckpoint and the metadata JSON',
  prepare(rng: Rng): PreparedCase {
    const base = validCheckpoint(rng);
    const parsed = safetensorsOracle(base.bytes);
    if (!parsed.ok) throw new Error(`the encoder wrote a file the oracle refuses: ${parsed.why}`);
    const tensors: Array<[string, StTensor]> = [...parsed.value.tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, data: t.bytes }]);
    const meta: Meta = Object.fromEntries(parsed.value.metadata);
    const what = [base.what];
    let stillValid = true;
    const rounds = chance(rng, 0.1) ? 0 : 1 + rng.int(2);
    for (let r = 0; r < rounds; r++) {
      const m = mutateCheckpoint(rng, tensors, meta);
      what.push(m.what);
      stillValid &&= m.stillValid;
    }
    const { header, data } = safetensorsParts(tensors, meta as Record<string, string>);
    if (chance(rng, 0.15)) {
      what.push(mutateHeader(rng, header, data.length));
      stillValid = false;
    }
    const before = what.length;
    const built = hostileSafetensors(rng, header, data, what);
    if (built.what.length > before) stillValid = false;
    const file = safetensorsOracle(built.bytes);
    const capsnetOnly = chance(rng, 0.3);
    const source = 'fuzz-checkpoint.safetensors';
    return {
      mutation: `${capsnetOnly ? 'decodeCheckpoint' : 'decodeAnyCheckpoint'}: ${built.what.join('; ')}`,
      source,
      inputBytes: built.bytes.length,
      run: () => (capsnetOnly ? decodeCheckpoint(built.bytes, source) : decodeAnyCheckpoint(built.bytes, source)),
      expect: !file.ok
        ? { verdict: 'invalid', why: file.why }
        : { verdict: stillValid && !(capsnetOnly && meta.model === 'baseline') ? 'valid' : 'either', check: (r) => checkCheckpoint(r, file.value, capsnetOnly) },
    };
  },
};
