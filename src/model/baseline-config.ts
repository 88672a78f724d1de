// The baseline CNN's configuration, geometry and parameter shapes: pure functions, no GPU, so the
// checkpoint reader (src/io/checkpoint.ts) can check a baseline file without loading the ops.
// The model itself, and why each default is what it is: src/model/baseline.ts.

export type BaselinePadding = 'same' | 'valid';

export interface BaselineConfig {
  inputChannels: number;
  /** Input side (28 for MNIST, 36 for MultiMNIST). */
  inputSize: number;
  /** Output channels of each convolution, in order (paper: 256, 256, 128). */
  convChannels: number[];
  /** Square kernel side of every convolution (5). */
  convKernel: number;
  convStride: number;
  /** 'same' (zero padding (K - 1) / 2: stride 1 and an odd kernel) or 'valid' (none). */
  convPadding: BaselinePadding;
  /**
   * Max pooling after each convolution's ReLU: k x k windows, stride k, TensorFlow's 'SAME' padding
   * (side -> ceil(side / k)). 1: none (the paper's baseline); 2: the official code's ConvModel.
   */
  pool: number;
  /** Hidden fully connected layers, each with a ReLU (paper: 328, 192). */
  fcHidden: number[];
  /** Drop probability before the last FC layer, in [0, 1) (0.5; 0 disables dropout). */
  dropout: number;
  /** Number of classes: the logits' width (10). */
  classes: number;
}

export const BASELINE_PAPER_CONFIG: Readonly<BaselineConfig> = Object.freeze({
  inputChannels: 1,
  inputSize: 28,
  convChannels: [256, 256, 128],
  convKernel: 5,
  convStride: 1,
  convPadding: 'same',
  pool: 1,
  fcHidden: [328, 192],
  dropout: 0.5,
  classes: 10,
});

/**
 * The official code's baseline (tensorflow/models research/capsules/models/conv_model.py, with its
 * default hparams' 'VALID' padding): conv 512 5x5 + ReLU + 2x2 max pool, conv 256 5x5 + ReLU + 2x2
 * max pool, FC 1024 + ReLU, FC 10; no dropout. 16.1M parameters at affNIST's 40x40 (the CapsNet
 * there: 13.5M), where the paper's baseline grows to 69.7M: the paper compares on affNIST with "a
 * traditional convolutional model with a similar number of parameters". Overrides of the paper's.
 */
export const BASELINE_OFFICIAL_OVERRIDES: Readonly<Partial<BaselineConfig>> = Object.freeze({
  convChannels: Object.freeze([512, 256]) as number[],
  convPadding: 'valid',
  pool: 2,
  fcHidden: Object.freeze([1024]) as number[],
  dropout: 0,
});

/** The parameter count of the paper's configuration, which the paper rounds to 35.4M. */
export const BASELINE_PAPER_PARAMETERS = 35_445_522;

export interface BaselineGeometry {
  /** Side of each convolution's output, in order (paper: 28, 28, 28). */
  convSizes: number[];
  /** Side of each layer's output after its pooling (the same as convSizes without pooling). */
  pooledSizes: number[];
  /** Padding of every convolution, in pixels. */
  padding: number;
  /** fc1's input width: last channels x side^2 (100,352). */
  flat: number;
  /** Pixels per image: channels x side^2. */
  pixels: number;
}

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1 << 20;

/**
 * A complete, validated config from a partial one (missing fields take the paper's values).
 * `source` names where the values came from (a checkpoint, a flag) in errors.
 */
export function makeBaselineConfig(overrides: Partial<BaselineConfig> = {}, source = 'baseline config'): BaselineConfig {
  const cfg: BaselineConfig = { ...BASELINE_PAPER_CONFIG, ...overrides };
  // Own arrays, whether defaults or given: a model built from a shared (e.g. frozen) config must not alias its lists.
  if (Array.isArray(cfg.convChannels)) cfg.convChannels = [...cfg.convChannels];
  if (Array.isArray(cfg.fcHidden)) cfg.fcHidden = [...cfg.fcHidden];
  const known = new Set(Object.keys(BASELINE_PAPER_CONFIG));
  for (const key of Object.keys(cfg)) if (!known.has(key)) throw new Error(`${source}: unknown field '${key}' (fields: ${[...known].join(', ')})`);
  for (const field of ['inputChannels', 'inputSize', 'convKernel', 'convStride', 'pool', 'classes'] as const) {
    if (!isPositiveInt(cfg[field])) throw new Error(`${source}: ${field} must be a positive integer, got ${JSON.stringify(cfg[field])}`);
  }
  for (const field of ['convChannels', 'fcHidden'] as const) {
    const list = cfg[field];
    if (!Array.isArray(list) || !list.every(isPositiveInt)) throw new Error(`${source}: ${field} must be a list of positive integers, got ${JSON.stringify(list)}`);
  }
  if (cfg.convChannels.length === 0) throw new Error(`${source}: convChannels must hold at least one convolution`);
  if (cfg.convPadding !== 'same' && cfg.convPadding !== 'valid') throw new Error(`${source}: convPadding must be 'same' or 'valid', got ${JSON.stringify(cfg.convPadding)}`);
  if (!(typeof cfg.dropout === 'number' && cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`${source}: dropout must be a number in [0, 1), got ${JSON.stringify(cfg.dropout)}`);
  baselineGeometry(cfg, source);
  return cfg;
}

export function baselineGeometry(cfg: BaselineConfig, source = 'baseline config'): BaselineGeometry {
  const K = cfg.convKernel;
  let padding = 0;
  if (cfg.convPadding === 'same') {
    if (cfg.convStride !== 1 || K % 2 === 0) throw new Error(`${source}: convPadding 'same' needs stride 1 and an odd kernel, got stride ${cfg.convStride}, kernel ${K}`);
    padding = (K - 1) / 2;
  }
  const convSizes: number[] = [];
  const pooledSizes: number[] = [];
  let side = cfg.inputSize;
  for (let l = 0; l < cfg.convChannels.length; l++) {
    if (side + 2 * padding < K) throw new Error(`${source}: conv${l + 1} gets a ${side}x${side} input, smaller than its ${K}x${K} kernel`);
    side = Math.floor((side + 2 * padding - K) / cfg.convStride) + 1;
    convSizes.push(side);
    side = Math.ceil(side / cfg.pool);
    pooledSizes.push(side);
  }
  return {
    convSizes,
    pooledSizes,
    padding,
    flat: cfg.convChannels[cfg.convChannels.length - 1] * side * side,
    pixels: cfg.inputChannels * cfg.inputSize * cfg.inputSize,
  };
}

/** Every parameter's checkpoint name and PyTorch-layout shape, in a fixed order (the checkpoint's). */
export function baselineParameterShapes(cfg: BaselineConfig): Record<string, number[]> {
  const g = baselineGeometry(cfg);
  const shapes: Record<string, number[]> = {};
  let cin = cfg.inputChannels;
  cfg.convChannels.forEach((cout, k) => {
    shapes[`conv${k + 1}.weight`] = [cout, cin, cfg.convKernel, cfg.convKernel];
    shapes[`conv${k + 1}.bias`] = [cout];
    cin = cout;
  });
  const sizes = [g.flat, ...cfg.fcHidden, cfg.classes];
  for (let l = 1; l < sizes.length; l++) {
    shapes[`fc${l}.weight`] = [sizes[l], sizes[l - 1]];
    shapes[`fc${l}.bias`] = [sizes[l]];
  }
  return shapes;
}

export function baselineParameterCount(cfg: BaselineConfig): number {
  return Object.values(baselineParameterShapes(cfg)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
}
