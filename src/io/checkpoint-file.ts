// Checkpoint files: written atomically (temp file, fsync, rename), so a crash or a kill during a
// save leaves the previous checkpoint intact; read with every check of decodeCheckpoint.
import { basename } from 'node:path';
import { readFileBytes, writeFileAtomic } from './files.ts';
import { decodeAnyCheckpoint, decodeCheckpoint, encodeCheckpoint, type AnyCheckpoint, type Checkpoint, type EncodeOptions } from './checkpoint.ts';

export async function saveCheckpoint(path: string, ckpt: AnyCheckpoint, options: EncodeOptions = {}): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(ckpt, options));
}

/** A CapsNet checkpoint (a baseline CNN file is refused, saying what it is). */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const bytes = await readFileBytes(path);
  return decodeCheckpoint(bytes, path.includes('/') ? path : basename(path));
}

/** A checkpoint of either model: `model` says which ('baseline', or absent for CapsNet). */
export async function loadAnyCheckpoint(path: string): Promise<AnyCheckpoint> {
  const bytes = await readFileBytes(path);
  return decodeAnyCheckpoint(bytes, path.includes('/') ? path : basename(path));
}
