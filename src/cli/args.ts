// Command-line parsing helpers: every bad flag becomes a UsageError (exit code 2) naming the flag
// and what was expected.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { accessSync, constants, lstatSync, readlinkSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { clip } from '../io/safetensors.ts';
import { NODE_BACKENDS, resolveBackend, type NodeBackend } from '../gpu/node.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true });
  } catch (error) {
    const message = (error as Error).message.replace(/^.*?: /, '');
    // An unknown option is quoted in the message: a pasted megabyte must still give a readable one.
    throw new UsageError(`capsnet ${command}: ${clip(message, 400)}`);
  }
}

/** Plain decimal digits: Number() would also take '', ' 5', '0x10' or '1e3'. */
const INTEGER_TEXT = /^[0-9]+$/;
/** A decimal number with an optional sign, fraction and exponent (no hex, no 'Infinity', no blanks). */
const NUMBER_TEXT = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

/**
 * A non-negative integer flag in [min, max] (max: at most 2^53 - 1, so it is exact), written in
 * plain decimal digits, with the flag and the range named in the error.
 */
export function intFlag(value: string | undefined, flag: string, fallback: number, min = 1, max?: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!INTEGER_TEXT.test(value) || !Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
    throw new UsageError(`${flag}: expected ${integerRange(min, max)}, got ${quoteFlag(value)}`);
  }
  return n;
}

/** 'an integer >= min', or 'an integer in [min, max]': the words of intFlag's errors. */
export const integerRange = (min: number, max?: number): string => (max === undefined ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`);

/** A finite decimal number flag, optionally checked (`expected` says what the check wants). */
export function numberFlag(value: string | undefined, flag: string, fallback: number, check?: (n: number) => boolean, expected = 'a number'): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!NUMBER_TEXT.test(value) || !Number.isFinite(n) || (check && !check(n))) throw new UsageError(`${flag}: expected ${expected}, got ${quoteFlag(value)}`);
  return n;
}

/**
 * A flag's value as quoted in an error: a pasted megabyte stays a readable message (the first 80
 * characters and the length, as safetensors and checkpoint errors quote values).
 */
export const quoteFlag = (value: string): string => `'${clip(value)}'`;

/** A flag that takes one of `choices`; the error lists them and quotes the value clipped. */
export function choiceFlag<T extends string>(value: string | undefined, flag: string, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`${flag}: expected ${choices.length === 2 ? `'${choices[0]}' or '${choices[1]}'` : `one of ${choices.join(', ')}`}, got ${quoteFlag(value)}`);
  return value as T;
}

/** --backend (undefined: CAPSNET_BACKEND or 'auto', as acquireGpu decides), with the value clipped in the error. */
export function backendFlag(value: string | undefined): NodeBackend | undefined {
  if (value === undefined) return undefined;
  if (!(NODE_BACKENDS as readonly string[]).includes(value)) throw new UsageError(`--backend: ${quoteFlag(value)} is not a backend; expected one of ${NODE_BACKENDS.join(', ')}`);
  return resolveBackend(value);
}

/** Longest path Linux resolves (PATH_MAX): a longer flag value is a paste gone wrong, refused before it is echoed by a file error. */
export const MAX_PATH_CHARACTERS = 4096;

/** Longest file or folder name Linux file systems take (NAME_MAX), in bytes: a longer one fails every stat with ENAMETOOLONG. */
export const MAX_NAME_BYTES = 255;

/** A file or folder path flag, refused (clipped in the message) when longer than any path or name in it can be. */
export function pathFlag<T extends string | undefined>(value: T, flag: string): T {
  if (value === undefined) return value;
  if (value.length > MAX_PATH_CHARACTERS) throw new UsageError(`${flag}: expected a path of at most ${MAX_PATH_CHARACTERS} characters, got ${quoteFlag(value)}`);
  const long = value.split('/').find((name) => Buffer.byteLength(name) > MAX_NAME_BYTES);
  if (long !== undefined) throw new UsageError(`${flag}: expected file and folder names of at most ${MAX_NAME_BYTES} bytes, got one of ${Buffer.byteLength(long)} in ${quoteFlag(value)}`);
  return value;
}

/**
 * The nearest of `path` and its parent folders that exists, and whether it is a folder (null when
 * none does). Node's statSync throws ENOTDIR, even with throwIfNoEntry false, for a path through a
 * file: that is "not there", and the file is found further up.
 */
function nearestExisting(path: string): { path: string; isFolder: boolean; brokenLink?: string } | null {
  for (let p = resolve(path); ; p = dirname(p)) {
    let stat;
    try {
      stat = statSync(p, { throwIfNoEntry: false }) ?? lstatSync(p, { throwIfNoEntry: false });
    } catch {
      stat = undefined;
    }
    // A symbolic link to nothing: mkdir and writes through it fail (EEXIST / ENOENT) after the work.
    if (stat?.isSymbolicLink()) return { path: p, isFolder: false, brokenLink: readlinkSync(p) };
    if (stat) return { path: p, isFolder: stat.isDirectory() };
    if (dirname(p) === p) return null;
  }
}

/** Why a path that is not a folder cannot be written into, for the messages below. */
function notAFolder(found: { path: string; brokenLink?: string }, asked: string): string {
  const what = found.brokenLink === undefined ? 'a file' : `a broken symbolic link (to ${found.brokenLink})`;
  return found.path === resolve(asked) ? `is ${what}; expected a folder` : `${found.path} is ${what}, not a folder`;
}

/**
 * A folder the command creates if needed and writes into (--out DIR, --inputs DIR): refused before
 * any work when it, or a folder on its way, exists as a file (mkdir would fail only at the end).
 */
export function outputDirFlag<T extends string | undefined>(value: T, flag: string): T {
  if (pathFlag(value, flag) === undefined) return value;
  const found = nearestExisting(value as string);
  if (found && !found.isFolder) throw new UsageError(`${flag} ${value}: ${notAFolder(found, value as string)}`);
  return value;
}

/**
 * A file to write at the end of a long command (--output): its folder is checked before the work
 * starts, so a typo costs a second, not a whole evaluation's results.
 */
export function outputFileFlag<T extends string | undefined>(value: T, flag: string): T {
  if (pathFlag(value, flag) === undefined) return value;
  const path = value as string;
  const folder = dirname(path);
  const found = nearestExisting(folder);
  if (found?.path !== resolve(folder) || !found.isFolder) {
    throw new UsageError(`${flag} ${path}: ${found && !found.isFolder ? notAFolder(found, path) : `the folder ${folder} does not exist`}`);
  }
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`${flag} ${path}: is a folder; expected a file name`);
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new UsageError(`${flag} ${path}: the folder ${folder} is not writable`);
  }
  return value;
}
