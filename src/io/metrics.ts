// The training metrics log (Node only): JSON lines, one record per line. A record counts once its
// newline is on disk: each record is appended with one write, so a killed process leaves at most
// one partial last line, which readers skip and the next append removes.

import { open, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { writeFileAtomic } from './files.ts';

export type MetricsRecord = Record<string, unknown>;

export interface MetricsContents {
  records: MetricsRecord[];
  /** Lines left out: 0, or 1 when the last line was cut short (a kill mid-write). */
  skipped: number;
}

/** The last pending operation on each log in this process: appends and rewrites of one file run one after another. */
const queues = new Map<string, Promise<unknown>>();

function enqueue<T>(path: string, task: () => Promise<T>): Promise<T> {
  const key = resolve(path);
  const next = (queues.get(key) ?? Promise.resolve()).catch(() => {}).then(task);
  queues.set(key, next);
  const forget = () => {
    if (queues.get(key) === next) queues.delete(key);
  };
  next.then(forget, forget);
  return next;
}

/**
 * Appends `record` as one JSON line. NaN and Infinity become null (JSON has no such numbers). The
 * record is serialised at the call, and appends to the same path from this process are queued in
 * call order, so not awaiting each one is safe. If the file ends with a partial line (a process
 * killed mid-write), that fragment is cut off first, so it cannot glue onto this record and corrupt
 * the middle of the log. Other processes must not write the same log at the same time.
 */
export function appendMetrics(path: string, record: object): Promise<void> {
  const json = JSON.stringify(record);
  if (typeof json !== 'string' || !json.startsWith('{')) return Promise.reject(new TypeError(`${path}: a metrics record must be a plain object`));
  return enqueue(path, () => appendLine(path, Buffer.from(json + '\n')));
}

async function appendLine(path: string, line: Buffer): Promise<void> {
  let file;
  try {
    file = await open(path, 'a+'); // O_APPEND: every write lands at the end of the file
  } catch (e) {
    throw new Error(`${path}: cannot open metrics log: ${(e as Error).message}`);
  }
  try {
    await repairLastLine(file);
    // One write call for the whole line; loop only in the unlikely case the kernel takes part of it.
    let done = 0;
    while (done < line.length) done += (await file.write(line, done, line.length - done)).bytesWritten;
  } catch (e) {
    throw new Error(`${path}: cannot append metrics: ${(e as Error).message}`);
  } finally {
    await file.close();
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

/**
 * Makes the file end with a newline again after a kill mid-write: an unterminated last line is cut
 * off, unless it is a complete record (a hand-edited file), which readMetrics keeps too.
 */
async function repairLastLine(file: FileHandle): Promise<void> {
  const { size } = await file.stat();
  if (size === 0) return;
  const last = Buffer.alloc(1);
  await file.read(last, 0, 1, size - 1);
  if (last[0] === 0x0a) return;
  // Scan back in blocks for the previous newline; a partial line is at most one record long.
  const block = Buffer.alloc(64 * 1024);
  let lineStart = 0;
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - block.length);
    const { bytesRead } = await file.read(block, 0, end - start, start);
    const nl = block.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (nl >= 0) {
      lineStart = start + nl + 1;
      break;
    }
    end = start;
  }
  const tail = Buffer.alloc(size - lineStart);
  await file.read(tail, 0, tail.length, lineStart);
  if (typeof parseRecord(tail.toString('utf8')) === 'string') await file.truncate(lineStart);
  else await file.write('\n');
}

/**
 * All records of the log. A last line without its newline is skipped (counted in `skipped`), since
 * it is a record cut short by a kill; a bad line anywhere else throws, naming file and line. Blank
 * lines are ignored.
 */
export async function readMetrics(path: string): Promise<MetricsContents> {
  await queues.get(resolve(path))?.catch(() => {}); // see this process's own appends that are still pending
  const { lines, skipped } = await parseLines(path);
  return { records: lines.map((l) => l.record), skipped };
}

/**
 * Rewrites the log keeping only records whose `step` is a number <= `step`, atomically (temporary
 * file, then rename), so a run resuming from an older checkpoint does not log steps twice. Kept lines
 * are copied byte for byte. A missing log is fine (nothing to cut). Returns how many records were
 * kept and removed; records without a numeric `step` are removed too, and those `alsoDrop` picks.
 */
export function truncateMetricsAfterStep(path: string, step: number, alsoDrop: (record: MetricsRecord) => boolean = () => false): Promise<{ kept: number; removed: number }> {
  if (!Number.isFinite(step)) return Promise.reject(new RangeError(`${path}: truncateMetricsAfterStep needs a finite step, got ${step}`));
  return enqueue(path, () => rewriteUpTo(path, step, alsoDrop));
}

async function rewriteUpTo(path: string, step: number, alsoDrop: (record: MetricsRecord) => boolean): Promise<{ kept: number; removed: number }> {
  let parsed;
  try {
    parsed = await parseLines(path);
  } catch (e) {
    if ((e as { missing?: boolean }).missing) return { kept: 0, removed: 0 };
    throw e;
  }
  const keep = parsed.lines.filter((l) => typeof l.record.step === 'number' && l.record.step <= step && !alsoDrop(l.record));
  await writeFileAtomic(path, Buffer.from(keep.map((l) => l.text + '\n').join('')));
  return { kept: keep.length, removed: parsed.lines.length - keep.length };
}

/** A metrics log that cannot be read or holds a line that is not a record: the message names the file and the line. */
export class MetricsFileError extends Error {
  override name = 'MetricsFileError';
}

async function parseLines(path: string): Promise<{ lines: Array<{ text: string; record: MetricsRecord }>; skipped: number }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = new MetricsFileError(`${path}: cannot read metrics log: ${(e as Error).message}`);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') Object.assign(err, { missing: true });
    throw err;
  }
  const raw = text.split('\n');
  // After split, the last element is '' when the file ends with a newline, else the unterminated tail.
  const tail = raw.pop()!;
  const lines: Array<{ text: string; record: MetricsRecord }> = [];
  raw.forEach((line, i) => {
    if (line.trim() === '') return;
    const record = parseRecord(line);
    if (typeof record === 'string') {
      throw new MetricsFileError(`${path}:${i + 1}: corrupt metrics line (${record}): ${preview(line)}; mend or delete that line (the log feeds the curves; the checkpoint holds the run)`);
    }
    lines.push({ text: line, record });
  });
  let skipped = 0;
  if (tail.trim() !== '') {
    // Unterminated: cut short by a kill, unless it is complete (a hand-edited file without final newline).
    const record = parseRecord(tail);
    if (typeof record === 'string') skipped = 1;
    else lines.push({ text: tail, record });
  }
  return { lines, skipped };
}

/** The record, or a string saying why the line is not one. */
function parseRecord(line: string): MetricsRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return (e as Error).message;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as MetricsRecord) : 'not a JSON object';
}

const preview = (line: string) => (line.length > 80 ? `${line.slice(0, 80)}...` : line);
