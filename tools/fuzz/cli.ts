// Fuzz targets for command-line flags: the pure helpers of src/cli/args.ts (intFlag, numberFlag,
// parseFlags) against the syntax they promise, and the flag handling of `capsnet train / eval /
// figures / start` called in-process up to a sentinel, so nothing is trained or written:
// - train and start: the environment variable CAPSNET_BACKEND names no backend, so once every flag,
//   the data and the model config are accepted, acquiring the GPU fails at once (before any device
//   is created); valid --backend values are not generated for them (they would skip the variable).
//   --out is inside a regular file as well, so nothing could be written even past that point;
// - eval and figures: --checkpoint names a missing file, reached once their flags are accepted.
// Errors before the sentinel must be UsageErrors (exit code 2) that name a flag or the command.
// `capsnet doctor` is not covered: past its two flags it only acquires the GPU.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Rng } from '../../src/data/rng.ts';
import { UsageError, intFlag, numberFlag, parseFlags } from '../../src/cli/args.ts';
import { TRAIN_FLAGS, train } from '../../src/cli/train.ts';
import { evalCommand } from '../../src/cli/eval.ts';
import { figuresCommand } from '../../src/cli/figures.ts';
import { startCommand } from '../../src/cli/start.ts';
import { GpuUnavailableError } from '../../src/gpu/errors.ts';
import { ACCEPTED, type PreparedCase, type Target } from './harness.ts';
import { big, chance, deepJsonText, pick } from './mutate.ts';
import { idxFile } from './formats.ts';

/** The syntax intFlag promises: plain decimal digits, exact (<= 2^53 - 1). */
const isIntText = (v: string) => /^[0-9]+$/.test(v) && Number.isSafeInteger(Number(v));
/** The syntax numberFlag promises: a decimal number (sign, fraction, exponent), finite. */
const isNumberText = (v: string) => /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(v) && Number.isFinite(Number(v));

const VALUES = [
  '5', '0', '1', '2', '8', '16', '-1', '', ' ', ' 5', '5 ', '1e3', '1e-3', '0x10', '0b11', '0o7', '1.5', '1.', '.5', '+5', '-0',
  'NaN', 'Infinity', '-Infinity', '9007199254740991', '9007199254740993', '1e21', '1e309', '१२', '１２', '5\n', '1_000', 'abc',
  '5abc', '--5', '007', '0.001', '1e30', '4294967296', '-1e-9',
];

export function randomValue(rng: Rng): string {
  const r = rng.int(10);
  if (r === 0) return '9'.repeat(1 + rng.int(400));
  if (r === 1) return String(rng.int(100));
  if (r === 2) return 'x'.repeat(pick(rng, [100, big(100_000)]));
  return pick(rng, VALUES);
}

export const cliArgsTarget: Target = {
  name: 'cli-args',
  description: 'flag helpers, src/cli/args.ts: intFlag, numberFlag, parseFlags',
  prepare(rng: Rng): PreparedCase {
    const mode = rng.int(3);
    if (mode === 0) {
      const value = chance(rng, 0.05) ? undefined : randomValue(rng);
      const min = pick(rng, [0, 1, 3]);
      const ok = value === undefined || (isIntText(value) && Number(value) >= min);
      return {
        mutation: `intFlag(${JSON.stringify(value?.slice(0, 40))}, min ${min})`,
        source: '--count',
        inputBytes: value?.length ?? 0,
        run: () => intFlag(value, '--count', 7, min),
        judgeError: (e) => (e instanceof UsageError && e.message.startsWith('--count: ') && e.message.length < 500 ? null : `not a short UsageError naming --count: ${e.message.slice(0, 100)}`),
        expect: ok
          ? { verdict: 'valid', check: (r) => (r === (value === undefined ? 7 : Number(value)) ? null : `returned ${r}`) }
          : { verdict: 'invalid', why: 'not plain decimal digits of a safe integer >= min' },
      };
    }
    if (mode === 1) {
      const value = chance(rng, 0.05) ? undefined : randomValue(rng);
      const ok = value === undefined || (isNumberText(value) && Number(value) > 0);
      return {
        mutation: `numberFlag(${JSON.stringify(value?.slice(0, 40))}, > 0)`,
        source: '--rate',
        inputBytes: value?.length ?? 0,
        run: () => numberFlag(value, '--rate', 0.5, (n) => n > 0, 'a number > 0'),
        judgeError: (e) => (e instanceof UsageError && e.message.startsWith('--rate: ') && e.message.length < 500 ? null : `not a short UsageError naming --rate: ${e.message.slice(0, 100)}`),
        expect: ok
          ? { verdict: 'valid', check: (r) => (r === (value === undefined ? 0.5 : Number(value)) ? null : `returned ${r}`) }
          : { verdict: 'invalid', why: 'not a finite decimal number > 0' },
      };
    }
    const argv = randomArgv(rng, Object.keys(TRAIN_FLAGS), true);
    return {
      mutation: `parseFlags('train', ${preview(argv)})`,
      source: 'capsnet train: ',
      inputBytes: argv.reduce((s, a) => s + a.length, 0),
      run: () => parseFlags('train', argv, TRAIN_FLAGS),
      judgeError: (e) => (e instanceof UsageError && e.message.startsWith('capsnet train: ') && e.message.length < 1000 ? null : `not a short UsageError naming the command: ${e.message.slice(0, 100)}`),
      expect: {
        verdict: 'either',
        check: (r) => {
          const keys = Object.keys((r as { values: object }).values);
          const unknown = keys.filter((k) => !Object.hasOwn(TRAIN_FLAGS, k));
          return unknown.length > 0 ? `values has unknown keys ${unknown.join(', ')}` : null;
        },
      },
    };
  },
};

const preview = (argv: string[]) => {
  const s = JSON.stringify(argv.map((a) => (a.length > 40 ? `${a.slice(0, 20)}...(${a.length})` : a)));
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
};

/** Random flags with values, and now and then a malformed token. */
function randomArgv(rng: Rng, flags: string[], junk: boolean, valueFor: (flag: string) => string = () => randomValue(rng)): string[] {
  const argv: string[] = [];
  const n = rng.int(6);
  for (let k = 0; k < n; k++) {
    const flag = pick(rng, flags);
    const r = rng.int(20);
    if (junk && r === 0) argv.push(pick(rng, ['--', '-', '-x', '--wat', 'positional', '--no-such-flag=1', `--${'y'.repeat(10_000)}`, '--out=']));
    else if (junk && r === 1) argv.push(`--${flag}`); // maybe missing its value
    else if (junk && r === 2) argv.push(`--${flag}=${valueFor(flag)}`);
    else argv.push(`--${flag}`, valueFor(flag));
  }
  return argv;
}

// ---------------------------------------------------------------------------------------------
// In-process commands

const INT_FLAGS: Record<string, number> = {
  'batch-size': 1, 'decay-steps': 1, shift: 0, seed: 0, validation: 0, 'checkpoint-every': 1, 'log-every': 1,
  'eval-batch-size': 1, routings: 1, limit: 0, steps: 1,
};
const BOOLEAN_FLAGS = new Set(['no-recon', 'no-eval', 'resume', 'full']);
const CONFIGS = [
  '{"conv1Channels": 8, "primaryTypes": 2}', '{"routings": 0}', '{', '[]', 'null', '{"colour": 1}', '{"decoderHidden": [4]}',
  '{"inputSize": 1000000000}', '{"inputChannels": 3}', '{"decoderHidden": []}', 'deep', '{"__proto__": {"routings": 0}}',
  '{"gradMode": "some"}', '{"decoderHidden": [1e400]}',
];

function flagValue(rng: Rng, flag: string): string {
  if (chance(rng, 0.5)) return randomValue(rng);
  switch (flag) {
    case 'config': {
      const text = pick(rng, CONFIGS);
      return text === 'deep' ? deepJsonText(big(100_000), true) : text;
    }
    case 'grad-mode':
      return pick(rng, ['all', 'last', 'first', '', 'ALL']);
    case 'validation-split':
      return pick(rng, ['last', 'random', 'first', '', 'RANDOM']);
    case 'eval-limit':
      return pick(rng, ['off', 'OFF', '0', '1', '40', '-1', '2.5']);
    case 'backend':
      return pick(rng, ['metal', '', 'VULKAN', 'd3d12', ' vulkan']);
    case 'lr':
    case 'recon-weight':
    case 'decay-rate':
    case 'epochs':
      return pick(rng, ['0.001', '0.5', '1', '0', '1e-9', '2', '1e300', '-0.5']);
    default:
      return String(rng.int(40));
  }
}

/** The last value given for each string flag, as parseArgs keeps it; booleans as 'true'. Null when argv is not well-formed pairs. */
function effectiveFlags(argv: string[]): Map<string, string> | null {
  const out = new Map<string, string>();
  for (let k = 0; k < argv.length; k++) {
    const token = argv[k];
    if (!token.startsWith('--') || token.includes('=')) return null;
    const flag = token.slice(2);
    if (BOOLEAN_FLAGS.has(flag)) {
      out.set(flag, 'true');
      continue;
    }
    if (k + 1 >= argv.length || argv[k + 1].startsWith('-')) return null;
    out.set(flag, argv[++k]);
  }
  return out;
}

/** Why train must refuse these flags, or null when it may accept them (it may still refuse for reasons of data or config). */
function trainMustRefuse(flags: Map<string, string>): string | null {
  for (const [flag, min] of Object.entries(INT_FLAGS)) {
    const v = flags.get(flag);
    if (v !== undefined && !(isIntText(v) && Number(v) >= min)) return `--${flag} ${JSON.stringify(v.slice(0, 30))}`;
  }
  const numberChecks: Record<string, (n: number) => boolean> = {
    lr: (n) => n > 0, 'decay-rate': (n) => n > 0 && n <= 1, epochs: (n) => n > 0,
  };
  if (!flags.has('no-recon')) numberChecks['recon-weight'] = (n) => n >= 0;
  for (const [flag, check] of Object.entries(numberChecks)) {
    const v = flags.get(flag);
    if (v !== undefined && !(isNumberText(v) && check(Number(v)))) return `--${flag} ${JSON.stringify(v.slice(0, 30))}`;
  }
  if (flags.has('epochs') && flags.has('steps')) return '--epochs and --steps together';
  const mode = flags.get('grad-mode');
  if (mode !== undefined && mode !== 'all' && mode !== 'last') return `--grad-mode ${JSON.stringify(mode)}`;
  const split = flags.get('validation-split');
  if (split !== undefined && split !== 'last' && split !== 'random') return `--validation-split ${JSON.stringify(split)}`;
  // An integer >= 1, or off (none: every image).
  const evalLimit = flags.get('eval-limit');
  if (evalLimit !== undefined && evalLimit !== 'off' && !(isIntText(evalLimit) && Number(evalLimit) >= 1)) return `--eval-limit ${JSON.stringify(evalLimit.slice(0, 30))}`;
  const backend = flags.get('backend');
  if (backend !== undefined && !['auto', 'default', 'vulkan', 'opengl'].includes(backend)) return `--backend ${JSON.stringify(backend)}`;
  const config = flags.get('config');
  if (config !== undefined) {
    try {
      const parsed = JSON.parse(config);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return '--config is not a JSON object';
    } catch {
      if (config.trimStart().startsWith('{')) return '--config is not valid JSON';
    }
  }
  if (flags.has('resume')) return '--resume without a checkpoint';
  return null;
}

let scratch = '';
let blockedOut = '';
let dataDir = '';
let missingCheckpoint = '';

/** The 4 IDX files of a tiny MNIST-like set (28x28, 24 training and 8 test images). */
function writeFakeMnist(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const images = (n: number) => idxFile([n, 28, 28], new Uint8Array(n * 784).map((_, i) => (i * 7) % 256));
  const labels = (n: number) => idxFile([n], Uint8Array.from({ length: n }, (_, i) => i % 10));
  writeFileSync(join(dir, 'train-images-idx3-ubyte'), images(24));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), labels(24));
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), images(8));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), labels(8));
}

const isUsage = (e: Error) => e instanceof UsageError || (e instanceof GpuUnavailableError && e.message.startsWith('--backend'));

/**
 * Errors before the sentinel must be UsageErrors naming a flag or the command. Their length may
 * grow with what the user typed (a message quoting a pasted value), never beyond that.
 */
function judgeUsage(command: string, argv: string[]) {
  const typed = argv.reduce((s, a) => s + a.length, 0);
  return (e: Error): string | null => {
    if (!isUsage(e)) return `a ${e.constructor.name}, not a UsageError (exit code 1 with a stack trace instead of 2): ${e.message.slice(0, 200)}`;
    if (e.message.length > 2000 + 2 * typed) return `a ${e.message.length}-character message for ${typed} characters of flags`;
    if (!/--[a-z]|capsnet/.test(e.message)) return `the message names no flag nor command ${command}: ${e.message.slice(0, 200)}`;
    return null;
  };
}

const SENTINEL_BACKEND = 'fuzz-sentinel-no-gpu';

/**
 * Runs `fn` with stderr and stdout writes swallowed (start prints a banner before the sentinel) and
 * CAPSNET_BACKEND set to the sentinel (acquireGpu without --backend reads it and refuses it).
 */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const [err, out] = [process.stderr.write, process.stdout.write];
  const backend = process.env.CAPSNET_BACKEND;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.env.CAPSNET_BACKEND = SENTINEL_BACKEND;
  try {
    return await fn();
  } finally {
    process.stderr.write = err;
    process.stdout.write = out;
    if (backend === undefined) delete process.env.CAPSNET_BACKEND;
    else process.env.CAPSNET_BACKEND = backend;
  }
}

/** The GPU acquisition refused the sentinel backend: every flag before it was accepted. */
const reachedGpu = (e: unknown) => e instanceof GpuUnavailableError && e.message.includes(SENTINEL_BACKEND);
/** The --out folder check (outputDirFlag), which train and start make after every other flag. */
const reachedOutCheck = (e: unknown) => isUsage(e as Error) && (e as Error).message.includes(`--out ${blockedOut}: `) && /is a file, not a folder/.test((e as Error).message);

export const cliCommandsTarget: Target = {
  name: 'cli-commands',
  description: 'flag handling of capsnet train / eval / figures / start, in-process up to a sentinel',
  setup() {
    scratch = mkdtempSync(join(tmpdir(), 'capsnet-fuzz-cli-'));
    writeFileSync(join(scratch, 'a-file'), 'not a folder');
    blockedOut = join(scratch, 'a-file', 'out');
    dataDir = join(scratch, 'mnist');
    writeFakeMnist(dataDir);
    missingCheckpoint = join(scratch, 'missing.safetensors');
  },
  teardown() {
    rmSync(scratch, { recursive: true, force: true });
  },
  prepare(rng: Rng): PreparedCase {
    const command = pick(rng, ['train', 'train', 'train', 'train', 'eval', 'figures', ...(rng.int(30) === 0 ? ['start'] : [])] as const);
    if (command === 'train') {
      const flags = Object.keys(TRAIN_FLAGS).filter((f) => f !== 'out' && f !== 'data');
      const argv = randomArgv(rng, flags, chance(rng, 0.2), (f) => flagValue(rng, f));
      const full = [...argv, '--out', blockedOut, '--data', dataDir];
      const effective = effectiveFlags(argv);
      const refuse = effective ? trainMustRefuse(effective) : null;
      return {
        mutation: `train ${preview(argv)}`,
        source: 'capsnet',
        inputBytes: full.reduce((s, a) => s + a.length, 0),
        run: () => quietly(() => train(full)),
        isAcceptance: (e) => reachedGpu(e) || reachedOutCheck(e),
        judgeError: judgeUsage('train', full),
        expect: refuse ? { verdict: 'invalid', why: `must refuse ${refuse}` } : { verdict: 'either', check: (r) => (r === ACCEPTED ? null : 'train returned: the sentinel was not reached') },
      };
    }
    if (command === 'start') {
      const argv = randomArgv(rng, ['full', 'steps', 'backend'], chance(rng, 0.2), (f) => flagValue(rng, f));
      const full = [...argv, '--out', blockedOut];
      return {
        mutation: `start ${preview(argv)}`,
        source: 'capsnet',
        inputBytes: full.reduce((s, a) => s + a.length, 0),
        run: () => quietly(() => startCommand(full)),
        isAcceptance: (e) => reachedGpu(e) || reachedOutCheck(e),
        judgeError: judgeUsage('start', full),
        expect: { verdict: 'either', check: (r) => (r === ACCEPTED ? null : 'start returned: the sentinel was not reached') },
      };
    }
    const own = command === 'eval' ? ['data', 'limit', 'output', 'batch-size', 'backend'] : ['metrics', 'data', 'backend', 'out'];
    // Their sentinel comes before the GPU: valid backends are fine here.
    const value = (f: string) => (f === 'backend' && chance(rng, 0.5) ? pick(rng, ['auto', 'default', 'vulkan', 'opengl']) : flagValue(rng, f));
    const argv = randomArgv(rng, own, chance(rng, 0.2), value);
    const full = [...argv, '--checkpoint', missingCheckpoint, ...(command === 'figures' ? ['--out', join(scratch, 'figures')] : [])];
    const effective = effectiveFlags(argv);
    let refuse: string | null = null;
    if (effective) {
      for (const flag of ['limit', 'batch-size']) {
        const v = effective.get(flag);
        if (command === 'eval' && v !== undefined && !(isIntText(v) && Number(v) >= 1)) refuse = `--${flag} ${JSON.stringify(v.slice(0, 30))}`;
      }
      const backend = effective.get('backend');
      if (backend !== undefined && !['auto', 'default', 'vulkan', 'opengl'].includes(backend)) refuse = `--backend ${JSON.stringify(backend)}`;
    }
    return {
      mutation: `${command} ${preview(argv)}`,
      source: 'capsnet',
      inputBytes: full.reduce((s, a) => s + a.length, 0),
      run: () => quietly(() => (command === 'eval' ? evalCommand(full) : figuresCommand(full))),
      isAcceptance: (e) => e instanceof UsageError && e.message.includes(missingCheckpoint),
      judgeError: judgeUsage(command, full),
      expect: refuse ? { verdict: 'invalid', why: `must refuse ${refuse}` } : { verdict: 'either', check: (r) => (r === ACCEPTED ? null : `${command} returned: the sentinel was not reached`) },
    };
  },
};
