// Where the pretrained MNIST model (the one the web app ships) lies in this package, from Node.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RELATIVE = join('src', 'web', 'models', 'capsnet-mnist.safetensors');

/**
 * The absolute path of the pretrained MNIST CapsNet (F16 parameters, paper config): found by
 * walking up from this module (src/io in a checkout, dist/ or dist/chunks in a build) to the
 * package folder.
 */
export function pretrainedModelPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 5; up++) {
    const candidate = join(dir, RELATIVE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`pretrainedModelPath: ${RELATIVE} not found above ${fileURLToPath(import.meta.url)} (is the package complete?)`);
}
