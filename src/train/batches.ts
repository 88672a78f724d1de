// Training batches as a pure function of (seed, step): the data order of each epoch is a seeded
// permutation, and each step's random shifts come from a generator seeded by (seed, step). So a
// run resumed at step s sees exactly the batches an uninterrupted run sees, with no state to save.

import { type Dataset, fillBatch, permutation } from '../data/dataset.ts';
import { Rng } from '../data/rng.ts';

/** A well-mixed u32 from two integers (murmur3's finaliser over a simple combination). */
export function mixSeed(a: number, b: number): number {
  let h = (Math.imul(a >>> 0, 0x9e3779b1) ^ Math.imul((b >>> 0) + 0x7f4a7c15, 0x85ebca77)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class TrainingBatches {
  /** Full batches per epoch: a last partial batch is dropped, so every step sees batchSize examples. */
  readonly stepsPerEpoch: number;
  private epochOrder: Uint32Array | null = null;
  private orderEpoch = -1;

  constructor(
    readonly data: Dataset,
    readonly batchSize: number,
    readonly seed: number,
    readonly maxShift: number,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size ${batchSize}: expected a positive integer`);
    if (batchSize > data.count) throw new Error(`batch size ${batchSize} is larger than the ${data.count} training examples`);
    this.stepsPerEpoch = Math.floor(data.count / batchSize);
  }

  /** The examples' order in an epoch (cached: one permutation per epoch). */
  order(epoch: number): Uint32Array {
    if (this.orderEpoch !== epoch || !this.epochOrder) {
      this.epochOrder = permutation(this.data.count, new Rng(mixSeed(this.seed, 0x5eed0000 + epoch)));
      this.orderEpoch = epoch;
    }
    return this.epochOrder;
  }

  /**
   * Where global step `step` (0-based) reads: its epoch's order, the offset of its first example
   * there, and the generator of its random choices. Every batch source built on this class draws
   * through it, so a resumed run sees the same examples and choices.
   */
  locate(step: number): { order: Uint32Array; offset: number; rng: Rng } {
    const epoch = Math.floor(step / this.stepsPerEpoch);
    const k = step - epoch * this.stepsPerEpoch;
    return { order: this.order(epoch), offset: k * this.batchSize, rng: new Rng(mixSeed(this.seed, step)) };
  }

  /** Writes the batch of global step `step` (0-based) into images [B, C, H, W] and labels [B]. */
  fill(step: number, images: Float32Array, labels: Int32Array): void {
    const { order, offset, rng } = this.locate(step);
    fillBatch(this.data, order, offset, images, labels, { maxShift: this.maxShift, rng });
  }
}
