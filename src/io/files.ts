// Whole-file reads and atomic writes (Node only). Checkpoints are written with writeFileAtomic so a
// crash or a full disk mid-write never leaves a truncated checkpoint where a good one was.

import { open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';

/** The whole file as bytes; errors name the path. */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  try {
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as Error).message}`);
  }
}

/**
 * Replace `path` with `data` atomically: write a temporary file in the same folder (rename is only
 * atomic within one file system), fsync it, then rename it over the target. Readers see either the
 * old file or the complete new one. On failure the temporary file is removed and the target is
 * untouched. `data` may be one buffer or a sequence of chunks (to avoid assembling a large file
 * in memory); if the sequence throws, the write is abandoned the same way.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | Iterable<Uint8Array>): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let created = false;
  try {
    const file = await open(tmp, 'wx'); // wx: never reuse someone else's file
    created = true;
    try {
      for (const chunk of data instanceof Uint8Array ? [data] : data) {
        let done = 0;
        while (done < chunk.length) done += (await file.write(chunk, done, chunk.length - done)).bytesWritten;
      }
      await file.sync(); // the data is on disk before the rename makes it visible
    } finally {
      await file.close();
    }
    await rename(tmp, path);
    created = false;
  } catch (e) {
    if (created) await unlink(tmp).catch(() => {});
    throw new Error(`${path}: atomic write failed: ${(e as Error).message}`);
  }
  await syncDir(dir);
}

/**
 * The temporary file names writeFileAtomic uses for targets whose names match `target` (a regular
 * expression's source, matched whole): `.<name>.<pid>.<8 hex>.tmp` in the same folder.
 */
function tempPattern(target: string): RegExp {
  return new RegExp(`^\\.(?:${target})\\.(\\d+)\\.[0-9a-f]{8}\\.tmp$`);
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only asks whether the process exists
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** Another live process holds the folder's lock (acquireFolderLock). */
export class FolderLockedError extends Error {
  constructor(readonly lockPath: string, readonly owner: number) {
    super(`${lockPath}: held by process ${owner}`);
  }
}

/**
 * One writer per folder: creates `dir/name` holding this process's id, exclusively, or throws
 * FolderLockedError naming the live process that holds it. A lock left by a process that is gone
 * (killed, so it never released it) is taken over, as is one naming this very process: a container
 * restarted after a kill runs us under the same PID again. release() removes the file if it is still ours.
 */
export function acquireFolderLock(dir: string, name: string): { release(): void } {
  const path = join(dir, name);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return {
        release: () => {
          try {
            if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
          } catch {
            // already gone: nothing to release
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`${path}: cannot create the lock file: ${(e as Error).message}`);
    }
    let owner = NaN;
    try {
      owner = Number.parseInt(readFileSync(path, 'utf8'), 10);
    } catch {
      continue; // released between our attempt and this read: try again
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) throw new FolderLockedError(path, owner);
    try {
      unlinkSync(path); // its process is gone (or the file is unreadable garbage): take it over
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${path}: cannot remove a stale lock file: ${(e as Error).message}`);
    }
  }
  throw new Error(`${path}: cannot take the lock (it keeps reappearing)`);
}

/**
 * Removes the temporary files that writeFileAtomic left for `path` when its process was killed
 * mid-write (each as large as the file; never renamed, so never read). Files of processes still
 * alive are left alone: they may be writing right now. Returns the names removed.
 */
export async function removeStaleTempFiles(path: string): Promise<string[]> {
  return removeStaleTempFilesIn(dirname(path), new RegExp(escapeRegExp(basename(path))));
}

/** removeStaleTempFiles for every file of `dir` whose name matches `targets` whole (e.g. /checkpoint-step\d+\.safetensors/). */
export async function removeStaleTempFilesIn(dir: string, targets: RegExp): Promise<string[]> {
  const pattern = tempPattern(targets.source);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return []; // no folder, nothing left behind
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    try {
      await unlink(join(dir, name));
      removed.push(name);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${join(dir, name)}: cannot remove a stale temporary file: ${(e as Error).message}`);
    }
  }
  return removed;
}

/** fsync the folder so the rename itself survives a crash. Not possible on every platform (Windows): best effort. */
async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // The file is already complete and renamed; only its durability across a power loss is weaker.
  }
}
