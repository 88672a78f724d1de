// CapsNet's configuration: every number of the architecture is a field, the paper's values are
// the defaults. The checkpoint stores it, so a model can be rebuilt from its file alone.

export type RoutingGradMode = 'all' | 'last';

export interface CapsNetConfig {
  inputChannels: number;
  inputSize: number;
  conv1Channels: number;
  conv1Kernel: number;
  /** Number of primary capsule types (32 in the paper: 32 x 6 x 6 = 1152 capsules). */
  primaryTypes: number;
  primaryDim: number;
  primaryKernel: number;
  primaryStride: number;
  /** Number of digit (class) capsules. */
  digitCaps: number;
  digitDim: number;
  routings: number;
  /** 'all': gradients through every routing iteration (official code); 'last': only the last. */
  gradMode: RoutingGradMode;
  /** Leaky routing: an extra "none of the above" logit fixed at 0 (CIFAR-10 config). */
  leaky: boolean;
  /** A learned bias on s before the squash, 'digit.bias' [digitCaps, digitDim]. */
  routingBias: boolean;
  decoder: boolean;
  decoderHidden: number[];
  /** Weight of the reconstruction loss (sum of squared errors over pixels). */
  reconWeight: number;
}

export const PAPER_CONFIG: Readonly<CapsNetConfig> = Object.freeze({
  inputChannels: 1,
  inputSize: 28,
  conv1Channels: 256,
  conv1Kernel: 9,
  primaryTypes: 32,
  primaryDim: 8,
  primaryKernel: 9,
  primaryStride: 2,
  digitCaps: 10,
  digitDim: 16,
  routings: 3,
  gradMode: 'all',
  leaky: false,
  routingBias: false,
  decoder: true,
  decoderHidden: [512, 1024],
  reconWeight: 0.0005,
});

const INTEGER_FIELDS = [
  'inputChannels', 'inputSize', 'conv1Channels', 'conv1Kernel', 'primaryTypes', 'primaryDim',
  'primaryKernel', 'primaryStride', 'digitCaps', 'digitDim', 'routings',
] as const;

export interface CapsNetGeometry {
  /** Conv1 output side (20 in the paper). */
  conv1Size: number;
  /** PrimaryCaps grid side (6). */
  grid: number;
  /** Number of primary capsules (1152). */
  primaryCaps: number;
  /** Decoder input size: digitCaps * digitDim (160). */
  decoderIn: number;
  /** Pixels per image (784). */
  pixels: number;
}

/**
 * A complete, validated config from a partial one (missing fields take the paper's values).
 * `source` names where the values came from (a checkpoint file, a flag) in errors.
 */
export function makeConfig(overrides: Partial<CapsNetConfig> = {}, source = 'config'): CapsNetConfig {
  const cfg: CapsNetConfig = { ...PAPER_CONFIG, decoderHidden: [...PAPER_CONFIG.decoderHidden], ...overrides };
  for (const field of INTEGER_FIELDS) {
    const v = cfg[field];
    if (!Number.isInteger(v) || v < 1 || v > 1 << 20) throw new Error(`${source}: ${field} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (cfg.gradMode !== 'all' && cfg.gradMode !== 'last') throw new Error(`${source}: gradMode must be 'all' or 'last', got ${JSON.stringify(cfg.gradMode)}`);
  for (const field of ['leaky', 'routingBias', 'decoder'] as const) {
    if (typeof cfg[field] !== 'boolean') throw new Error(`${source}: ${field} must be true or false, got ${JSON.stringify(cfg[field])}`);
  }
  if (!Array.isArray(cfg.decoderHidden) || cfg.decoderHidden.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`${source}: decoderHidden must be a list of positive integers, got ${JSON.stringify(cfg.decoderHidden)}`);
  }
  if (!Number.isFinite(cfg.reconWeight) || cfg.reconWeight < 0) throw new Error(`${source}: reconWeight must be a number >= 0, got ${JSON.stringify(cfg.reconWeight)}`);
  geometry(cfg, source);
  return cfg;
}

export function geometry(cfg: CapsNetConfig, source = 'config'): CapsNetGeometry {
  const conv1Size = cfg.inputSize - cfg.conv1Kernel + 1;
  if (conv1Size < cfg.primaryKernel) {
    throw new Error(`${source}: conv1 output ${conv1Size}x${conv1Size} is smaller than the primary kernel ${cfg.primaryKernel}`);
  }
  const grid = Math.floor((conv1Size - cfg.primaryKernel) / cfg.primaryStride) + 1;
  return {
    conv1Size,
    grid,
    primaryCaps: cfg.primaryTypes * grid * grid,
    decoderIn: cfg.digitCaps * cfg.digitDim,
    pixels: cfg.inputChannels * cfg.inputSize * cfg.inputSize,
  };
}

/** Every parameter's checkpoint name and PyTorch-layout shape, in a fixed order. */
export function parameterShapes(cfg: CapsNetConfig): Record<string, number[]> {
  const g = geometry(cfg);
  const primaryChannels = cfg.primaryTypes * cfg.primaryDim;
  const shapes: Record<string, number[]> = {
    'conv1.weight': [cfg.conv1Channels, cfg.inputChannels, cfg.conv1Kernel, cfg.conv1Kernel],
    'conv1.bias': [cfg.conv1Channels],
    'primary.weight': [primaryChannels, cfg.conv1Channels, cfg.primaryKernel, cfg.primaryKernel],
    'primary.bias': [primaryChannels],
    'digit.W': [g.primaryCaps, cfg.digitCaps, cfg.digitDim, cfg.primaryDim],
  };
  if (cfg.routingBias) shapes['digit.bias'] = [cfg.digitCaps, cfg.digitDim];
  if (cfg.decoder) {
    const sizes = [g.decoderIn, ...cfg.decoderHidden, g.pixels];
    for (let l = 1; l < sizes.length; l++) {
      shapes[`decoder.fc${l}.weight`] = [sizes[l], sizes[l - 1]];
      shapes[`decoder.fc${l}.bias`] = [sizes[l]];
    }
  }
  return shapes;
}

export function parameterCount(cfg: CapsNetConfig): number {
  return Object.values(parameterShapes(cfg)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
}
