// Learning-rate schedules. The default is DESIGN.md's recipe, "lr * 0.96 every 2000 steps", as a
// staircase: lr0 * decayRate^floor(step / decaySteps) with 1e-3, 0.96 and 2000, where `step` is the
// 0-based number of updates already done (0 for the first update). The official TensorFlow code
// (research/capsules/models/model.py) decays continuously, lr0 * 0.96^(step / 2000) floored at 1e-6;
// the staircase is up to 1/0.96 - 1 = 4.2% above it, just before each stair.
// Reference: test/reference/adam.ts (learningRate). Test: test/adam.test.ts.

/** The learning rate of the update made after `step` updates (0-based). */
export type LrSchedule = (step: number) => number;

export interface StaircaseOptions {
  /** default 1e-3 */
  lr0?: number;
  /** default 0.96 */
  decayRate?: number;
  /** default 2000 */
  decaySteps?: number;
}

function checkOptions(o: Required<StaircaseOptions>): void {
  if (!(Number.isFinite(o.lr0) && o.lr0 >= 0)) throw new Error(`learning rate: lr0 must be a finite number >= 0, got ${o.lr0}`);
  if (!(Number.isFinite(o.decayRate) && o.decayRate > 0)) throw new Error(`learning rate: decayRate must be a finite number > 0, got ${o.decayRate}`);
  if (!Number.isInteger(o.decaySteps) || o.decaySteps < 1) throw new Error(`learning rate: decaySteps must be an integer >= 1, got ${o.decaySteps}`);
}

/** lr0 * decayRate^floor(step / decaySteps). */
export function learningRate(step: number, options: StaircaseOptions = {}): number {
  const o = { lr0: 1e-3, decayRate: 0.96, decaySteps: 2000, ...options };
  checkOptions(o);
  if (!Number.isInteger(step) || step < 0) throw new Error(`learning rate: step must be an integer >= 0, got ${step}`);
  return o.lr0 * Math.pow(o.decayRate, Math.floor(step / o.decaySteps));
}

/** The staircase decay as a schedule (options checked now, not at the first step). */
export function staircaseDecay(options: StaircaseOptions = {}): LrSchedule {
  checkOptions({ lr0: 1e-3, decayRate: 0.96, decaySteps: 2000, ...options });
  return (step) => learningRate(step, options);
}

/** A constant learning rate. */
export function constantLr(lr: number): LrSchedule {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`learning rate must be a finite number >= 0, got ${lr}`);
  return () => lr;
}
