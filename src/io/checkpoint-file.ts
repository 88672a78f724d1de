// Checkpoint files: written atomically (temp file, fsync, rename), so a crash or a kill during a
// save leaves the previous checkpoint intact; read with every check of decodeCheckpoint.
import { basename } from 'node:path';
import { writeFileAtomic } from './files.ts';
import { readRegularFile } from './idx-file.ts';
import { decodeAnyCheckpoint, decodeCheckpoint, encodeCheckpoint, type AnyCheckpoint, type Checkpoint, type EncodeOptions } from './checkpoint.ts';

/**
 * Larger than any checkpoint of our models (the paper's CapsNet with Adam's state is 99 MB, the
 * affNIST and CIFAR-10 presets under 300 MB): a wrong path (/dev/zero, a FIFO, a dataset) fails at
 * once instead of filling memory or waiting for ever.
 */
export const MAX_CHECKPOINT_FILE_BYTES = 1 << 30;

export async function saveCheckpoint(path: string, ckpt: AnyCheckpoint, options: EncodeOptions = {}): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(ckpt, options));
}

/** A CapsNet checkpoint (a baseline CNN file is refused, saying what it is). */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const bytes = readRegularFile(path, MAX_CHECKPOINT_FILE_BYTES, 'checkpoint');
  return decodeCheckpoint(bytes, path.includes('/') ? path : basename(path));
}

/** A checkpoint of either model: `model` says which ('baseline', or absent for CapsNet). */
export async function loadAnyCheckpoint(path: string): Promise<AnyCheckpoint> {
  const bytes = readRegularFile(path, MAX_CHECKPOINT_FILE_BYTES, 'checkpoint');
  return decodeAnyCheckpoint(bytes, path.includes('/') ? path : basename(path));
}
