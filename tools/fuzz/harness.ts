// The fuzzer's harness: runs a target's cases one by one and classifies each outcome.
//
// A case is a mutated input plus what an independent oracle (tools/fuzz/formats.ts) says about it:
// 'valid' (the reader must return, and the result must match the oracle's reading), 'invalid' (the
// reader must throw a clear error) or 'either' (a clear error, or a result that passes the check).
// Whatever the oracle says, these are bugs:
// - a crash: a TypeError, RangeError, SyntaxError... escaping from our code, or a non-Error thrown;
// - an unclear error: its message does not name the file (or flag), or is longer than 16 KiB;
// - an allocation larger than the case's bound (one typed array / ArrayBuffer / Buffer at a time,
//   counted by wrapping their constructors while the case runs; the allocation is refused);
// - a slow case (over `slowMs`; the tool's worker also catches real hangs with a watchdog);
// - a change to Object.prototype or Array.prototype (prototype pollution from a parsed header).

import { Rng } from '../../src/data/rng.ts';

export type Verdict = 'valid' | 'invalid' | 'either';

export interface Expectation {
  verdict: Verdict;
  /** For 'invalid': why the oracle refuses the input (shown when the reader accepts it). */
  why?: string;
  /** For a returned result: null when it is right, else what is wrong. */
  check?(result: unknown): string | null;
}

export interface PreparedCase {
  /** What was done to the valid input, for the report and to reproduce by hand. */
  mutation: string;
  /** A clear error names this (the file name, the flag, the command). */
  source: string | RegExp;
  /** Size of the input, for the allocation bound. */
  inputBytes: number;
  run(): unknown;
  expect: Expectation;
  /** Replaces the "names the source" test of a clear error (crashes are still bugs): null when the error is right. */
  judgeError?(error: Error): string | null;
  /** Errors that mean "everything before this point was accepted" (the CLI's sentinels): counted as reads. */
  isAcceptance?(error: unknown): boolean;
  cleanup?(): void;
}

export interface Target {
  name: string;
  description: string;
  setup?(): void | Promise<void>;
  teardown?(): void;
  prepare(rng: Rng, index: number): PreparedCase | Promise<PreparedCase>;
}

export interface Finding {
  target: string;
  seed: number;
  index: number;
  mutation: string;
  problem: string;
}

export interface TargetReport {
  target: string;
  cases: number;
  /** Returned a result (checked against the oracle). */
  reads: number;
  /** Ended in a clear error. */
  errors: number;
  bugs: Finding[];
  ms: number;
  slowestMs: number;
  slowestMutation: string;
  /** Largest single allocation seen during a case, in bytes. */
  largestAllocation: number;
}

export interface RunOptions {
  seed: number;
  cases: number;
  /** First case index (the tool's worker restarts after a hang from the next index). */
  start?: number;
  slowMs?: number;
  /** Called before each case (the worker reports progress, so a hang is pinned to its case). */
  onCase?(index: number): void;
}

export const MAX_ERROR_MESSAGE = 16_384;
/** What check() receives when the case ended at its sentinel (isAcceptance) rather than by returning. */
export const ACCEPTED = Symbol('accepted: the sentinel was reached');
/** The allocation bound of a case: readers may copy their input a few times, never more. */
export const allocationLimit = (inputBytes: number) => 64 * 2 ** 20 + 8 * inputBytes;

const CRASH_TYPES: Array<new (...args: never[]) => Error> = [TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError];

/** The seed of case `index` of `target`: each case can be replayed alone. */
export function caseSeed(seed: number, target: string, index: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < target.length; i++) h = Math.imul(h ^ target.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (seed >>> 0), 0x85ebca6b) ^ Math.imul(index + 0x9e3779b9, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

const short = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s);

/** Why `error` is not a clear error naming `source`, or null when it is one. */
export function unclearError(error: unknown, source: string | RegExp, maxLength = MAX_ERROR_MESSAGE): string | null {
  if (error instanceof AllocationRefused) return `allocation of ${error.bytes} bytes (limit ${error.limit}) by new ${error.what}`;
  if (!(error instanceof Error)) return `threw a non-Error: ${short(String(error))}`;
  const crash = CRASH_TYPES.find((type) => error instanceof type);
  if (crash) return `crash: ${error.name}: ${short(error.message)}${stackTop(error)}`;
  if (error.message.length > maxLength) return `error message of ${error.message.length} characters: ${short(error.message, 120)}`;
  const named = typeof source === 'string' ? error.message.includes(source) : source.test(error.message);
  if (!named) return `error does not name ${String(source)}: ${short(error.message)}`;
  return null;
}

function stackTop(error: Error): string {
  const frame = (error.stack ?? '').split('\n').find((l) => /^\s+at /.test(l) && !l.includes('tools/fuzz/'));
  return frame ? ` [${frame.trim()}]` : '';
}

// ---------------------------------------------------------------------------------------------
// Allocation guard

export class AllocationRefused extends Error {
  constructor(readonly what: string, readonly bytes: number, readonly limit: number) {
    super(`fuzz: allocation of ${bytes} bytes by ${what} refused (limit ${limit})`);
  }
}

const TYPED = ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array'] as const;

interface GuardState {
  limit: number;
  largest: number;
}

let guard: GuardState | null = null;

function requestedBytes(bytesPerElement: number, args: unknown[]): number {
  const first = args[0];
  if (typeof first === 'number') return first * bytesPerElement;
  if (first instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && first instanceof SharedArrayBuffer)) return 0; // a view
  if (first !== null && typeof first === 'object' && 'length' in first && typeof first.length === 'number') return first.length * bytesPerElement;
  return 0;
}

function note(what: string, bytes: number): void {
  if (!guard || !Number.isFinite(bytes)) return;
  if (bytes > guard.largest) guard.largest = bytes;
  if (bytes > guard.limit) throw new AllocationRefused(what, bytes, guard.limit);
}

/**
 * Runs `fn` with the global ArrayBuffer, typed array constructors and Buffer.alloc* wrapped so that
 * each allocation is measured and one above `limit` throws AllocationRefused instead of happening.
 * The originals are restored afterwards (also when fn throws or its promise rejects).
 */
export async function withAllocationGuard<T>(limit: number, fn: () => T | Promise<T>): Promise<{ value?: T; error?: unknown; threw: boolean; largest: number }> {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved: Record<string, unknown> = {};
  const savedBuffer = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
  const state: GuardState = { limit, largest: 0 };
  guard = state;
  for (const name of [...TYPED, 'ArrayBuffer'] as const) {
    const original = g[name] as { BYTES_PER_ELEMENT?: number } & (new (...args: unknown[]) => object);
    saved[name] = original;
    const perElement = name === 'ArrayBuffer' ? 1 : original.BYTES_PER_ELEMENT!;
    g[name] = new Proxy(original, {
      construct(target, args, newTarget) {
        note(name, requestedBytes(perElement, args));
        return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget);
      },
    });
  }
  for (const key of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
    const original = savedBuffer[key] as (size: number, ...rest: unknown[]) => Buffer;
    (Buffer as unknown as Record<string, unknown>)[key] = (size: number, ...rest: unknown[]) => {
      note(`Buffer.${key}`, size);
      return original.call(Buffer, size, ...rest);
    };
  }
  try {
    const value = await fn();
    return { value, threw: false, largest: state.largest };
  } catch (error) {
    return { error, threw: true, largest: state.largest };
  } finally {
    for (const [name, original] of Object.entries(saved)) g[name] = original;
    Object.assign(Buffer, savedBuffer);
    guard = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Running cases

const prototypeKeys = () => [Object.prototype, Array.prototype, Function.prototype].map((p) => Reflect.ownKeys(p).length).join(',');

export interface CaseOutcome {
  kind: 'read' | 'error' | 'bug';
  problem?: string;
  ms: number;
  largest: number;
}

export async function runCase(c: PreparedCase, slowMs: number): Promise<CaseOutcome> {
  const before = prototypeKeys();
  const started = performance.now();
  const result = await withAllocationGuard(allocationLimit(c.inputBytes), () => c.run());
  const ms = performance.now() - started;
  const base = { ms, largest: result.largest };
  const polluted = prototypeKeys() !== before;
  try {
    c.cleanup?.();
  } catch {
    // a scratch file the case removed itself
  }
  if (polluted) return { ...base, kind: 'bug', problem: 'a built-in prototype gained properties (prototype pollution)' };
  if (ms > slowMs) return { ...base, kind: 'bug', problem: `took ${ms.toFixed(0)} ms (limit ${slowMs} ms): a hang in the making` };
  if (result.threw) {
    if (c.isAcceptance?.(result.error)) return settleRead(c, ACCEPTED, base);
    // With judgeError, the target judges the message (names and length) itself.
    let unclear = c.judgeError ? unclearError(result.error, /[^]*/, Infinity) : unclearError(result.error, c.source);
    if (!unclear && c.judgeError) unclear = c.judgeError(result.error as Error);
    if (unclear) return { ...base, kind: 'bug', problem: unclear };
    if (c.expect.verdict === 'valid') return { ...base, kind: 'bug', problem: `refused a valid input: ${short((result.error as Error).message)}` };
    return { ...base, kind: 'error' };
  }
  return settleRead(c, result.value, base);
}

function settleRead(c: PreparedCase, value: unknown, base: { ms: number; largest: number }): CaseOutcome {
  if (c.expect.verdict === 'invalid') return { ...base, kind: 'bug', problem: `accepted an invalid input (${c.expect.why ?? 'the oracle refuses it'})` };
  const wrong = c.expect.check?.(value) ?? null;
  if (wrong) return { ...base, kind: 'bug', problem: `wrong result: ${short(wrong)}` };
  return { ...base, kind: 'read' };
}

export async function runTarget(target: Target, options: RunOptions): Promise<TargetReport> {
  const slowMs = options.slowMs ?? 5000;
  const report: TargetReport = {
    target: target.name, cases: 0, reads: 0, errors: 0, bugs: [], ms: 0, slowestMs: 0, slowestMutation: '', largestAllocation: 0,
  };
  const started = performance.now();
  await target.setup?.();
  try {
    const first = options.start ?? 0;
    for (let index = first; index < options.cases; index++) {
      options.onCase?.(index);
      const rng = new Rng(caseSeed(options.seed, target.name, index));
      let prepared: PreparedCase;
      try {
        prepared = await target.prepare(rng, index);
      } catch (error) {
        // A bug of the fuzzer itself: reported like the others (so it gets fixed), then go on.
        report.cases++;
        report.bugs.push({ target: target.name, seed: options.seed, index, mutation: '(building the case)', problem: `fuzzer error: ${(error as Error).stack?.split('\n').slice(0, 3).join(' | ')}` });
        continue;
      }
      const outcome = await runCase(prepared, slowMs);
      report.cases++;
      if (outcome.kind === 'read') report.reads++;
      else if (outcome.kind === 'error') report.errors++;
      else report.bugs.push({ target: target.name, seed: options.seed, index, mutation: prepared.mutation, problem: outcome.problem! });
      if (outcome.ms > report.slowestMs) {
        report.slowestMs = outcome.ms;
        report.slowestMutation = prepared.mutation;
      }
      report.largestAllocation = Math.max(report.largestAllocation, outcome.largest);
    }
  } finally {
    target.teardown?.();
  }
  report.ms = performance.now() - started;
  return report;
}

export function formatReports(reports: TargetReport[]): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const head = ['target', 'cases', 'reads', 'errors', 'bugs', 'seconds', 'slowest case', 'largest alloc'];
  const rows = reports.map((r) => [r.target, r.cases, r.reads, r.errors, r.bugs.length, (r.ms / 1000).toFixed(1), `${r.slowestMs.toFixed(0)} ms`, mib(r.largestAllocation)].map(String));
  const widths = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, k) => (k === 0 ? c.padEnd(widths[k]) : c.padStart(widths[k]))).join('  ');
  const out = [line(head), ...rows.map(line)];
  const bugs = reports.flatMap((r) => r.bugs);
  if (bugs.length > 0) {
    out.push('', `${bugs.length} bug(s):`);
    for (const b of bugs.slice(0, 50)) out.push(`  ${b.target} case ${b.index} (seed ${b.seed}): ${b.mutation}\n      -> ${b.problem}`);
    if (bugs.length > 50) out.push(`  ... and ${bugs.length - 50} more`);
  }
  return out.join('\n');
}
