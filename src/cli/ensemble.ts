// Ensembles for `capsnet eval --checkpoint A --checkpoint B ...`: several checkpoints evaluated on
// the same test set, their per-example class scores averaged, and the ensemble scored like a single
// model. What is averaged is each member's class probabilities in its own terms:
// - CapsNet: the capsule lengths (a length is the probability that the entity is present; the
//   official implementation's ensembles average the capsule outputs' lengths too);
// - the baseline CNN: the softmax of the logits (the logits of two networks are not on one scale).
// The prediction is the class with the highest mean (the first on ties, as evaluate() picks);
// MultiMNIST's is the two highest, both of which must be the example's two digits.
// Pure functions (no GPU, no files), scoring with the single-model scorers (scoreClasses,
// scoreTwoDigits); test/ensemble.test.ts checks them through the CLI.

import { scoreTwoDigits } from '../model/capsnet.ts';
import { scoreClasses } from '../train/trainer.ts';
import type { SetResult } from './experiments.ts';

export type EnsembleModelKind = 'capsnet' | 'baseline';

/** Row-wise softmax of [rows, J] logits, in f64 with the row's maximum subtracted (no overflow). */
export function softmaxRows(logits: Float32Array, J: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / J; r++) {
    let max = -Infinity;
    for (let j = 0; j < J; j++) max = Math.max(max, logits[r * J + j]);
    let sum = 0;
    for (let j = 0; j < J; j++) sum += Math.exp(logits[r * J + j] - max);
    for (let j = 0; j < J; j++) out[r * J + j] = Math.exp(logits[r * J + j] - max) / sum;
  }
  return out;
}

/** A member's scores as the probabilities that are averaged: lengths as they are, logits through softmax. */
export function memberProbabilities(kind: EnsembleModelKind, scores: Float32Array, J: number): Float32Array {
  return kind === 'baseline' ? softmaxRows(scores, J) : scores;
}

/** The element-wise mean (summed in f64) of equally long arrays. */
export function meanOf(arrays: readonly Float32Array[]): Float32Array {
  if (arrays.length === 0) throw new Error('meanOf: no arrays');
  const n = arrays[0].length;
  for (const a of arrays) if (a.length !== n) throw new Error(`meanOf: arrays of ${n} and ${a.length} values`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const a of arrays) sum += a[i];
    out[i] = sum / arrays.length;
  }
  return out;
}

/**
 * The ensemble's result on one set from its members' results on that same set (same split, count
 * and labels: the caller evaluates every member on one generated set). `scores` of the result are
 * the mean probabilities.
 */
export function ensembleSet(kind: EnsembleModelKind, members: readonly SetResult[], J: number): SetResult {
  const first = members[0];
  const { split, count, labels } = first;
  for (const [m, r] of members.entries()) {
    if (!r.scores || !r.labels) throw new Error(`ensembleSet: member ${m + 1} has no per-example scores on '${split}'`);
    if (r.split !== split || r.count !== count) throw new Error(`ensembleSet: member ${m + 1} was evaluated on '${r.split}' (${r.count}), the first on '${split}' (${count})`);
  }
  const mean = meanOf(members.map((r) => memberProbabilities(kind, r.scores!, J)));
  if (first.secondLabels) {
    // MultiMNIST: both digits must be among the two longest mean lengths.
    const scored = scoreTwoDigits(mean, labels!, first.secondLabels, count, J);
    return { split, count, correct: scored.correct, almost: scored.almost, accuracy: scored.accuracy, scores: mean, labels, secondLabels: first.secondLabels };
  }
  const { correct, accuracy, predictions, confusion } = scoreClasses(mean, labels!, count, J);
  return { split, count, correct, accuracy, scores: mean, predictions, labels, confusion };
}

/** The two highest of a row of scores, highest first (the first on ties). */
export function twoLongest(row: ArrayLike<number>): [number, number] {
  let a = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[a]) a = j;
  let b = a === 0 ? 1 : 0;
  for (let j = 0; j < row.length; j++) if (j !== a && row[j] > row[b]) b = j;
  return [a, b];
}
