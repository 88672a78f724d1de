// CapsNet's configuration: every number of the architecture is a field, the paper's values are
// the defaults. The checkpoint stores it, so a model can be rebuilt from its file alone.

export type RoutingGradMode = 'all' | 'last';

/**
 * Zero padding of Conv1 and the PrimaryCaps convolution (the official code's `padding` hparam
 * applies to both). 'valid': none (the paper's MNIST model). 'same': the output side is
 * ceil(input / stride), as TensorFlow's 'SAME'; the padding is symmetric, ceil((needed) / 2) on
 * each side, because conv2d takes symmetric padding only. For stride 1 and odd kernels that is
 * exactly TensorFlow's; for PrimaryCaps (stride 2) on the 24x24 CIFAR-10 crops TensorFlow pads
 * 3 before and 4 after, we pad 4 and 4: the same 12x12 grid, sampled one input pixel earlier.
 */
export type ConvPadding = 'valid' | 'same';

export interface CapsNetConfig {
  inputChannels: number;
  inputSize: number;
  conv1Channels: number;
  conv1Kernel: number;
  /** Padding of Conv1 and the PrimaryCaps convolution ('valid' in the paper's MNIST model). */
  convPadding: ConvPadding;
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
  convPadding: 'valid',
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
  /** Zero padding on each side of Conv1's input (0 for 'valid'). */
  conv1Padding: number;
  /** Conv1 output side (20 in the paper). */
  conv1Size: number;
  /** Zero padding on each side of the PrimaryCaps convolution's input. */
  primaryPadding: number;
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
  if (cfg.convPadding !== 'valid' && cfg.convPadding !== 'same') {
    throw new Error(`${source}: convPadding must be 'valid' or 'same', got ${JSON.stringify(cfg.convPadding)}`);
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

/**
 * Output side and symmetric zero padding of a convolution over a square input. 'valid': no padding,
 * floor((input - kernel) / stride) + 1. 'same': output ceil(input / stride), TensorFlow's rule,
 * with the total padding TensorFlow would add, (output - 1) stride + kernel - input, split evenly
 * (rounded up, or down when rounding up would give one more output). Null when no symmetric
 * padding gives that output side (an even kernel at stride 1).
 */
export function convOutput(input: number, kernel: number, stride: number, padding: ConvPadding): { size: number; pad: number } | null {
  if (padding === 'valid') return input < kernel ? null : { size: Math.floor((input - kernel) / stride) + 1, pad: 0 };
  const size = Math.ceil(input / stride);
  const total = Math.max(0, (size - 1) * stride + kernel - input);
  for (const pad of [Math.ceil(total / 2), Math.floor(total / 2)]) {
    if (Math.floor((input + 2 * pad - kernel) / stride) + 1 === size) return { size, pad };
  }
  return null;
}

export function geometry(cfg: CapsNetConfig, source = 'config'): CapsNetGeometry {
  const padding = cfg.convPadding ?? 'valid';
  const conv1 = convOutput(cfg.inputSize, cfg.conv1Kernel, 1, padding);
  if (!conv1) {
    throw new Error(padding === 'valid'
      ? `${source}: the input ${cfg.inputSize}x${cfg.inputSize} is smaller than the conv1 kernel ${cfg.conv1Kernel}`
      : `${source}: convPadding 'same' needs an odd conv1Kernel (symmetric padding), got ${cfg.conv1Kernel}`);
  }
  if (padding === 'valid' && conv1.size < cfg.primaryKernel) {
    throw new Error(`${source}: conv1 output ${conv1.size}x${conv1.size} is smaller than the primary kernel ${cfg.primaryKernel}`);
  }
  const primary = convOutput(conv1.size, cfg.primaryKernel, cfg.primaryStride, padding);
  if (!primary) {
    throw new Error(`${source}: convPadding 'same' cannot keep the PrimaryCaps grid at ceil(${conv1.size} / ${cfg.primaryStride}) with symmetric padding and kernel ${cfg.primaryKernel}`);
  }
  const grid = primary.size;
  return {
    conv1Padding: conv1.pad,
    conv1Size: conv1.size,
    primaryPadding: primary.pad,
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

export type PresetName = 'mnist' | 'fashion-mnist' | 'multimnist' | 'affnist' | 'cifar10';

export interface ConfigPreset {
  /** The fields that differ from the paper's MNIST model (PAPER_CONFIG). */
  config: Partial<CapsNetConfig>;
  /** What the model is for, the data recipe it expects and where the values come from. */
  description: string;
}

/**
 * The model configurations of the paper's experiments (Sabour et al. 2017, sections 5-7, and the
 * official TensorFlow code, github.com/Sarasra/models/tree/master/research/capsules). Only model
 * fields live here; the data recipe each one expects is in its description (generators:
 * src/data/multimnist.ts, src/data/affine.ts). `makeConfig(CONFIG_PRESETS[name].config)` builds it.
 */
export const CONFIG_PRESETS: Readonly<Record<PresetName, Readonly<ConfigPreset>>> = Object.freeze({
  mnist: {
    config: {},
    description: 'the paper\'s MNIST model: 28x28 inputs, random shifts of up to 2 pixels (8,215,568 parameters)',
  },
  'fashion-mnist': {
    config: {},
    description: 'the MNIST model unchanged on Fashion-MNIST (28x28 grey, 10 classes; not in the paper)',
  },
  multimnist: {
    config: { inputSize: 36 },
    description:
      'MultiMNIST (paper section 6): two digits of different classes, each shifted up to 4 pixels, on a 36x36 canvas; ' +
      'two-hot margin targets, the decoder reconstructs each digit from its own capsule (10x10 grid, 3,200 primary capsules)',
  },
  affnist: {
    config: { inputSize: 40 },
    description:
      'affine robustness (paper section 5.2): trained on MNIST placed at random in a 40x40 canvas (shifts up to 6), ' +
      'tested on affNIST-style transformed digits (12x12 grid, 4,608 primary capsules)',
  },
  cifar10: {
    config: {
      inputChannels: 3, inputSize: 24, primaryTypes: 64, convPadding: 'same', leaky: true, routingBias: true, decoder: false,
    },
    description:
      'CIFAR-10 (paper section 7): 24x24 crops of the 32x32 colour images, 64 primary capsule types, leaky routing; ' +
      "as the official code's CIFAR-10 command: 'SAME' padding (12x12 grid, 9,216 primary capsules), the routing bias " +
      '(the official capsule layer always has it), no reconstruction (remake=false)',
  },
});

export function isPresetName(name: string): name is PresetName {
  return Object.prototype.hasOwnProperty.call(CONFIG_PRESETS, name);
}

/** The complete config of a preset, with optional overrides on top (errors name the preset). */
export function presetConfig(name: string, overrides: Partial<CapsNetConfig> = {}): CapsNetConfig {
  if (!isPresetName(name)) {
    throw new Error(`unknown model preset '${name}', expected one of ${Object.keys(CONFIG_PRESETS).join(', ')}`);
  }
  const preset = CONFIG_PRESETS[name];
  return makeConfig({ ...preset.config, ...overrides }, `preset '${name}'`);
}
for (const preset of Object.values(CONFIG_PRESETS)) {
  Object.freeze(preset);
  Object.freeze(preset.config);
}
