// Command-line parsing helpers: every bad flag becomes a UsageError (exit code 2) naming the flag
// and what was expected.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true });
  } catch (error) {
    throw new UsageError(`capsnet ${command}: ${(error as Error).message.replace(/^.*?: /, '')}`);
  }
}

/** A positive (or non-negative) integer flag, with the flag named in the error. */
export function intFlag(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag}: expected an integer >= ${min}, got '${value}'`);
  return n;
}

/** A finite number flag. */
export function numberFlag(value: string | undefined, flag: string, fallback: number, check?: (n: number) => boolean, expected = 'a number'): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || (check && !check(n))) throw new UsageError(`${flag}: expected ${expected}, got '${value}'`);
  return n;
}
