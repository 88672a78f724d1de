// The options that define a training run, their rules, and the check of the copy stored in a
// checkpoint (__metadata__.training.options). One rule per option serves both the flag and the
// stored value: a checkpoint edited by hand or by another tool (batchSize "abc", totalSteps 1e300,
// a negative seed) is refused with the file, the field and what was expected, exactly as the flag
// with that value would be, instead of reaching the trainer.

import { MODEL_KINDS, type ModelKind } from '../io/checkpoint.ts';
import { isEmaDecay } from '../optim/ema.ts';
import { isLrMultiplier } from '../optim/adam.ts';
import { clip } from '../io/safetensors.ts';
import { EXPERIMENTS, type ExperimentName } from './experiments.ts';
import { type ColourAugmentRanges, checkAugmentRanges } from '../data/cifar.ts';
import { MAX_PATH_CHARACTERS, UsageError, intFlag, integerRange, numberFlag, quoteFlag } from './args.ts';

/** Everything that defines a run; stored in the checkpoint so that --resume continues exactly. */
export interface RunOptions {
  /** Absent in runs written before the baseline existed: CapsNet. */
  model?: ModelKind;
  seed: number;
  batchSize: number;
  lr: number;
  decayRate: number;
  decaySteps: number;
  maxShift: number;
  limit: number | null;
  validation: number;
  /** --validation-split: which images are held out, the last N (absent: 'last', as every run before
   * the flag) or 'random': N drawn under a fixed seed (train.ts VALIDATION_SPLIT_SEED), whatever --seed. */
  validationSplit?: ValidationSplit;
  data: string | null;
  totalSteps: number;
  /** Absent in runs written before the experiments existed: mnist. */
  experiment?: ExperimentName;
  /** The data recipe: the canvas the model sees and the training shift (the same as maxShift). */
  dataOptions?: { canvas: number; maxShift: number; augment?: ColourAugmentRanges };
  /** Seed of the generated test sets (affnist, multimnist). */
  testSeed?: number;
  /** --stop-at-accuracy: kept so that --resume keeps stopping there (absent: train the budget). */
  stopAtAccuracy?: number;
  /** --ema: the decay of the moving average of the parameters (absent: none kept). */
  ema?: number;
  /** --lr-mult: learning-rate multipliers by parameter name (absent: none; Adam's lrMult). */
  lrMult?: Record<string, number>;
  /** --checkpoint-every (absent in runs written before it was kept: the default, 500). */
  checkpointEvery?: number;
  /** --keep-every: a number of steps or 'epoch' (absent: no copies kept). */
  keepEvery?: number | 'epoch';
  /** --eval-limit: how many images of each set are scored (absent: all); kept so that --resume
   * keeps --stop-at-accuracy watching the same images. */
  evalLimit?: number;
}

export const VALIDATION_SPLITS = ['last', 'random'] as const;
export type ValidationSplit = (typeof VALIDATION_SPLITS)[number];

const LR_MULT_EXPECTED = 'NAME=X[,NAME=X...] with parameter names and multipliers >= 0 (e.g. primary.weight=0.03125)';

/** --lr-mult NAME=X[,NAME=X...] (absent or 'off': none), each name once. */
export function parseLrMult(value: string | undefined): Record<string, number> | null {
  if (value === undefined || value === 'off') return null;
  const out = new Map<string, number>();
  for (const part of value.split(',')) {
    const [name, number, ...rest] = part.split('=');
    if (!name || number === undefined || rest.length > 0) throw new UsageError(`--lr-mult: expected ${LR_MULT_EXPECTED}, got ${quoteFlag(value)}`);
    if (out.has(name)) throw new UsageError(`--lr-mult: '${clip(name)}' is given twice`);
    out.set(name, numberFlag(number, `--lr-mult ${clip(name)}`, 1, isLrMultiplier, 'a multiplier >= 0'));
  }
  return Object.fromEntries(out);
}

/** The canonical flag text of multipliers (how --resume compares a given --lr-mult with the run's). */
export const formatLrMult = (m: Readonly<Record<string, number>> | null | undefined): string => {
  // Sorted by name: the same multipliers given in another order are the same recipe.
  const entries = Object.entries(m ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length > 0 ? entries.map(([name, k]) => `${name}=${k}`).join(',') : 'off';
};

/** Throws a UsageError unless every multiplier names one of the model's parameters. */
export function checkLrMultNames(m: Readonly<Record<string, number>> | null, parameterNames: readonly string[], where: string): void {
  const unknown = Object.keys(m ?? {}).filter((name) => !parameterNames.includes(name));
  if (unknown.length > 0) {
    throw new UsageError(`${where}: ${unknown.map((n) => `'${clip(n)}'`).join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not a parameter of this model; its parameters: ${parameterNames.join(', ')}`);
  }
}

/** Seeds feed 32-bit generators (src/data/rng.ts): a larger one would silently wrap. */
export const SEED_MAX = 0xffffffff;

export type IntRule = { kind: 'int'; flag: string; min: number; max?: number };
export type NumberRule = { kind: 'number'; flag: string; check: (n: number) => boolean; expected: string };
export type OptionRule = IntRule | NumberRule;

/** The numeric options' rules, shared by their flags and by the stored copy. */
export const RUN_OPTION_RULES = {
  seed: { kind: 'int', flag: '--seed', min: 0, max: SEED_MAX },
  testSeed: { kind: 'int', flag: '--test-seed', min: 0, max: SEED_MAX },
  batchSize: { kind: 'int', flag: '--batch-size', min: 1 },
  lr: { kind: 'number', flag: '--lr', check: (n: number) => n > 0, expected: 'a learning rate > 0' },
  decayRate: { kind: 'number', flag: '--decay-rate', check: (n: number) => n > 0 && n <= 1, expected: 'a number in (0, 1]' },
  decaySteps: { kind: 'int', flag: '--decay-steps', min: 1 },
  maxShift: { kind: 'int', flag: '--shift', min: 0 },
  limit: { kind: 'int', flag: '--limit', min: 1 },
  validation: { kind: 'int', flag: '--validation', min: 0 },
  totalSteps: { kind: 'int', flag: '--steps', min: 1 },
  stopAtAccuracy: { kind: 'number', flag: '--stop-at-accuracy', check: (n: number) => n > 0 && n <= 100, expected: 'an accuracy in percent, in (0, 100]' },
  ema: { kind: 'number', flag: '--ema', check: isEmaDecay, expected: "a decay in (0, 1) such as 0.999, or 'off'" },
  checkpointEvery: { kind: 'int', flag: '--checkpoint-every', min: 1 },
  evalLimit: { kind: 'int', flag: '--eval-limit', min: 1 },
} as const satisfies Record<string, OptionRule>;

export type RuleName = keyof typeof RUN_OPTION_RULES;

export function expectedOf(rule: OptionRule): string {
  if (rule.kind === 'number') return rule.expected;
  return integerRange(rule.min, rule.max);
}

/** The option's flag value (`fallback` when absent), by its rule. */
export function ruleFlag(name: RuleName, value: string | undefined, fallback: number): number {
  const rule: OptionRule = RUN_OPTION_RULES[name];
  if (rule.kind === 'number') return numberFlag(value, rule.flag, fallback, rule.check, rule.expected);
  return intFlag(value, rule.flag, fallback, rule.min, rule.max);
}

/** Whether a stored (JSON) value meets the rule. */
function meets(rule: OptionRule, value: unknown): value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return false;
  if (rule.kind === 'number') return rule.check(value);
  return Number.isSafeInteger(value) && value >= rule.min && (rule.max === undefined || value <= rule.max);
}

/** A stored value as quoted in an error: its JSON, clipped. */
const quote = (value: unknown): string => (value === undefined ? 'nothing' : clip(JSON.stringify(value) ?? String(value)));

/** Fields every run written by `capsnet train` stores (they have been there since the first version). */
const REQUIRED: readonly (keyof RunOptions)[] = ['seed', 'batchSize', 'lr', 'decayRate', 'decaySteps', 'maxShift', 'validation', 'totalSteps'];

/**
 * The checkpoint's stored run options, each checked by its flag's rule. `fields` limits the check
 * to the fields the caller uses (all of them, and the required ones present, when omitted: what
 * --resume needs). Errors name `command`, the checkpoint file, the field and what was expected.
 */
export function checkStoredOptions(raw: unknown, checkpointPath: string, command: string, fields?: readonly (keyof RunOptions)[]): Partial<RunOptions> {
  const fail = (field: string, expected: string, value: unknown): never => {
    throw new UsageError(`${command}: ${checkpointPath}: __metadata__.training.options.${field}: expected ${expected}, got ${quote(value)}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UsageError(`${command}: ${checkpointPath}: __metadata__.training.options: expected a JSON object of run options, got ${Array.isArray(raw) ? 'an array' : quote(raw)}`);
  }
  const options = raw as Record<string, unknown>;
  const checked = (field: keyof RunOptions) => (fields === undefined || fields.includes(field)) && (fields !== undefined || options[field] !== undefined || REQUIRED.includes(field));
  const out: Partial<RunOptions> = {};
  for (const [field, rule] of Object.entries(RUN_OPTION_RULES) as Array<[RuleName, OptionRule]>) {
    if (!checked(field)) continue;
    const value = options[field];
    if (value === undefined && !REQUIRED.includes(field)) continue;
    if (field === 'limit' && value === null) {
      out.limit = null;
      continue;
    }
    if (!meets(rule, value)) fail(field, `${expectedOf(rule)} (as ${rule.flag})${field === 'limit' ? ' or null' : ''}`, value);
    (out as Record<string, unknown>)[field] = value;
  }
  if (checked('model') && options.model !== undefined) {
    if (!(MODEL_KINDS as readonly unknown[]).includes(options.model)) fail('model', `one of ${MODEL_KINDS.join(', ')} (as --model)`, options.model);
    out.model = options.model as ModelKind;
  }
  if (checked('experiment') && options.experiment !== undefined) {
    if (!(EXPERIMENTS as readonly unknown[]).includes(options.experiment)) fail('experiment', `one of ${EXPERIMENTS.join(', ')} (as --experiment)`, options.experiment);
    out.experiment = options.experiment as ExperimentName;
  }
  if (checked('validationSplit') && options.validationSplit !== undefined) {
    if (!(VALIDATION_SPLITS as readonly unknown[]).includes(options.validationSplit)) fail('validationSplit', `one of ${VALIDATION_SPLITS.join(', ')} (as --validation-split)`, options.validationSplit);
    out.validationSplit = options.validationSplit as ValidationSplit;
  }
  if (checked('data') && options.data !== undefined) {
    // At most a path's length, as the flag: file errors quote it whole.
    const path = options.data === null || (typeof options.data === 'string' && options.data.length <= MAX_PATH_CHARACTERS);
    if (!path) fail('data', `a folder path of at most ${MAX_PATH_CHARACTERS} characters or null (as --data)`, options.data);
    out.data = options.data as string | null;
  }
  if (checked('keepEvery') && options.keepEvery !== undefined) {
    if (options.keepEvery !== 'epoch' && !meets({ kind: 'int', flag: '', min: 1 }, options.keepEvery)) fail('keepEvery', "an integer >= 1 or 'epoch' (as --keep-every)", options.keepEvery);
    out.keepEvery = options.keepEvery as number | 'epoch';
  }
  if (checked('lrMult') && options.lrMult !== undefined) {
    const m = options.lrMult as Record<string, unknown> | null;
    const entries = typeof m === 'object' && m !== null && !Array.isArray(m) ? Object.entries(m) : null;
    if (!entries || entries.some(([name, k]) => name === '' || /[=,]/.test(name) || typeof k !== 'number' || !isLrMultiplier(k))) {
      fail('lrMult', 'an object of parameter names and learning-rate multipliers >= 0 (as --lr-mult)', m);
    }
    out.lrMult = Object.fromEntries(entries!) as Record<string, number>;
  }
  if (checked('dataOptions') && options.dataOptions !== undefined) {
    const d = options.dataOptions as Record<string, unknown> | null;
    if (typeof d !== 'object' || d === null || Array.isArray(d)) fail('dataOptions', 'an object { canvas, maxShift }', d);
    if (!meets({ kind: 'int', flag: '', min: 1 }, d!.canvas)) fail('dataOptions.canvas', 'an integer >= 1', d!.canvas);
    if (!meets(RUN_OPTION_RULES.maxShift, d!.maxShift)) fail('dataOptions.maxShift', expectedOf(RUN_OPTION_RULES.maxShift), d!.maxShift);
    let augment: ColourAugmentRanges | undefined;
    if (d!.augment !== undefined) {
      const a = d!.augment as Record<string, unknown> | null;
      if (typeof a !== 'object' || a === null || Array.isArray(a)) fail('dataOptions.augment', 'an object { flip, maxBrightnessDelta, minContrast, maxContrast }', a);
      augment = { flip: a!.flip as boolean, maxBrightnessDelta: a!.maxBrightnessDelta as number, minContrast: a!.minContrast as number, maxContrast: a!.maxContrast as number };
      try {
        checkAugmentRanges(augment, 'dataOptions.augment');
      } catch (error) {
        fail('dataOptions.augment', `valid distortion ranges (${(error as Error).message.replace(/^dataOptions\.augment: /, '')})`, a);
      }
    }
    out.dataOptions = { canvas: d!.canvas as number, maxShift: d!.maxShift as number, ...(augment ? { augment } : {}) };
  }
  return out;
}
