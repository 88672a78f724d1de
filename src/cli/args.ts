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
    const message = (error as Error).message.replace(/^.*?: /, '');
    // An unknown option is quoted in the message: a pasted megabyte must still give a readable one.
    throw new UsageError(`capsnet ${command}: ${message.length > 400 ? `${message.slice(0, 400)}...` : message}`);
  }
}

/** Plain decimal digits: Number() would also take '', ' 5', '0x10' or '1e3'. */
const INTEGER_TEXT = /^[0-9]+$/;
/** A decimal number with an optional sign, fraction and exponent (no hex, no 'Infinity', no blanks). */
const NUMBER_TEXT = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

/**
 * A non-negative integer flag of at least `min` (and at most 2^53 - 1, so it is exact), written
 * in plain decimal digits, with the flag named in the error.
 */
export function intFlag(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!INTEGER_TEXT.test(value) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag}: expected an integer >= ${min}, got '${preview(value)}'`);
  return n;
}

/** A finite decimal number flag, optionally checked (`expected` says what the check wants). */
export function numberFlag(value: string | undefined, flag: string, fallback: number, check?: (n: number) => boolean, expected = 'a number'): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!NUMBER_TEXT.test(value) || !Number.isFinite(n) || (check && !check(n))) throw new UsageError(`${flag}: expected ${expected}, got '${preview(value)}'`);
  return n;
}

/** A flag's value as quoted in an error: a pasted megabyte stays a readable message. */
const preview = (value: string) => (value.length > 60 ? `${value.slice(0, 60)}... (${value.length} characters)` : value);
