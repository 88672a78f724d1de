// Checkpoint files: written atomically (temp file, fsync, rename), so a crash or a kill during a
// save leaves the previous checkpoint intact; read with every check of decodeCheckpoint.
import { basename } from 'node:path';
import { readFileBytes, writeFileAtomic } from './files.ts';
import { decodeCheckpoint, encodeCheckpoint, type Checkpoint, type EncodeOptions } from './checkpoint.ts';

export async function saveCheckpoint(path: string, ckpt: Checkpoint, options: EncodeOptions = {}): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(ckpt, options));
}

export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const bytes = await readFileBytes(path);
  return decodeCheckpoint(bytes, path.includes('/') ? path : basename(path));
}
