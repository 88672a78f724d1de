// IDX files for tests: bytes from a definition, and whole MNIST-layout folders of random digits.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeRng } from './random.ts';

/** An IDX file from its definition: magic 00 00 <type> <ndims>, big-endian u32 sizes, then `data`. */
export function idxBytes(dims: number[], data: ArrayLike<number>, type = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = type;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(Array.from(data), 4 + 4 * dims.length);
  return out;
}

/** The four MNIST files in `dir`: `train` and `test` random 28x28 digits with labels i mod 10, seeded. */
export function writeMnistFolder(dir: string, train: number, test: number, seed: number): void {
  const rng = makeRng(seed);
  for (const [prefix, count] of [['train', train], ['t10k', test]] as const) {
    const pixels = Uint8Array.from({ length: count * 784 }, () => Math.floor(rng() * 256));
    writeFileSync(join(dir, `${prefix}-images-idx3-ubyte`), idxBytes([count, 28, 28], pixels));
    writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte`), idxBytes([count], Array.from({ length: count }, (_, i) => i % 10)));
  }
}
