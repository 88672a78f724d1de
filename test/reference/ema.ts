// Exponential moving average of parameters, f64 reference: TensorFlow's ExponentialMovingAverage
// with num_updates (the decay is capped early in a run so that the average forgets the random start).

import { checkLength } from './util.ts';

/** The decay used by the update after `t` optimizer steps (t >= 1): min(decay, (1 + t) / (10 + t)). */
export function emaDecayAt(decay: number, t: number): number {
  if (!Number.isInteger(t) || t < 1) throw new Error(`emaDecayAt: t must be an integer >= 1, got ${t}`);
  return Math.min(decay, (1 + t) / (10 + t));
}

/** average = d * average + (1 - d) * param, in place. */
export function emaUpdate(average: Float64Array, param: ArrayLike<number>, d: number): void {
  checkLength(param, average.length, 'emaUpdate param');
  for (let i = 0; i < average.length; i++) average[i] = d * average[i] + (1 - d) * param[i];
}
