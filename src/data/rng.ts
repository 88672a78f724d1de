// A small seeded random number generator (mulberry32). Its whole state is one u32, so a training
// run can store it in a checkpoint and resume with exactly the same shuffles and shifts.

export class Rng {
  private state: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new Error(`Rng: seed ${seed}, expected an integer`);
    this.state = seed >>> 0;
  }

  /** A uniform u32. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /**
   * A uniform integer in [0, n). floor(next() * n) is biased by at most n / 2^32, which is
   * negligible for the sizes used here (n <= a data set's size), and it keeps one draw per call.
   */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) throw new Error(`Rng.int: n = ${n}, expected an integer in [1, 2^32]`);
    return Math.floor(this.next() * n);
  }

  /** The state, a u32: `new Rng(0).setState(s)` continues exactly where this generator is. */
  getState(): number {
    return this.state;
  }

  setState(state: number): this {
    if (!Number.isInteger(state) || state < 0 || state > 0xffffffff) {
      throw new Error(`Rng.setState: state ${state}, expected a u32 integer`);
    }
    this.state = state;
    return this;
  }
}
