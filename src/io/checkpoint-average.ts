// Weight averaging: one network whose parameters are the element-wise mean of several checkpoints'
// (the last few checkpoints of one run, as in Polyak averaging or Izmailov et al. 2018's stochastic
// weight averaging). Late in training Adam's iterates wander around a minimum; their mean often
// sits nearer its centre than any one of them. It only makes sense for checkpoints of one run (or
// fine-tunes of one model): two networks trained from different initialisations have their
// capsules and channels in different orders, and their mean is no network at all.
// Unlike an ensemble (src/cli/ensemble.ts) the result is one model: one forward pass per image.
// Pure (checkpoints in, checkpoint out): the CLI is src/cli/average.ts.

import type { AnyCheckpoint } from './checkpoint.ts';

export interface AverageMember {
  /** Where the checkpoint came from, as errors name it. */
  source: string;
  /** The file as the result's metadata records it (default: `source`; the CLI gives absolute paths). */
  file?: string;
  ckpt: AnyCheckpoint;
}

/**
 * The mean of the members' parameters (summed in f64), with the config and kind they share. Adam's
 * moments are left out: they belong to one point of a run, not to the mean. `step` is the last
 * member's; `training` keeps the latest run options and initFrom among the members (so eval,
 * figures and --init-from know the experiment and recipe) and lists the members under `averaged`.
 * A member with NaN or infinite parameters is refused.
 */
export function averageCheckpoints(members: readonly AverageMember[]): AnyCheckpoint {
  if (members.length < 2) throw new Error(`averageCheckpoints: ${members.length} checkpoint${members.length === 1 ? '' : 's'} given, at least 2 needed`);
  const first = members[0];
  const kind = first.ckpt.model ?? 'capsnet';
  for (const m of members.slice(1)) {
    const own = m.ckpt.model ?? 'capsnet';
    if (own !== kind) throw new Error(`${m.source}: holds a ${own} model, ${first.source} a ${kind} model; only checkpoints of one model average`);
    const field = firstDifference(first.ckpt.config as unknown as Record<string, unknown>, m.ckpt.config as unknown as Record<string, unknown>);
    if (field !== null) {
      throw new Error(`${m.source}: config field '${field}' is ${JSON.stringify(configValue(m.ckpt, field))}, ${first.source}'s ${JSON.stringify(configValue(first.ckpt, field))}; only checkpoints of one model config average`);
    }
  }
  const params: Record<string, Float32Array> = {};
  for (const name of Object.keys(first.ckpt.params)) {
    const n = first.ckpt.params[name].length;
    const sum = new Float64Array(n);
    for (const m of members) {
      const data = m.ckpt.params[name];
      // decodeAnyCheckpoint checks every tensor against the config; a hand-built checkpoint might not be.
      if (!data || data.length !== n) throw new Error(`${m.source}: parameter '${name}' has ${data?.length ?? 'no'} values, ${first.source}'s ${n}`);
      let bad = 0;
      for (let i = 0; i < n; i++) {
        if (!Number.isFinite(data[i])) bad++;
        sum[i] += data[i];
      }
      // One NaN member makes every mean it touches NaN: refuse rather than write a broken model.
      if (bad > 0) throw new Error(`${m.source}: parameter '${name}' holds ${bad} NaN or infinite values`);
    }
    const mean = new Float32Array(n);
    for (let i = 0; i < n; i++) mean[i] = sum[i] / members.length;
    params[name] = mean;
  }
  // The step, and the run's recipe and origin, from the latest member (that has them).
  const byStep = [...members].sort((a, b) => b.ckpt.step - a.ckpt.step);
  const options = byStep.find((m) => m.ckpt.training?.options !== undefined)?.ckpt.training?.options;
  const initFrom = byStep.find((m) => m.ckpt.training?.initFrom !== undefined)?.ckpt.training?.initFrom;
  const training: Record<string, unknown> = {
    ...(options !== undefined ? { options } : {}),
    ...(initFrom !== undefined ? { initFrom } : {}),
    averaged: members.map((m) => ({ file: m.file ?? m.source, step: m.ckpt.step })),
  };
  const common = { params, step: byStep[0].ckpt.step, training };
  return first.ckpt.model === 'baseline' ? { model: 'baseline', config: first.ckpt.config, ...common } : { config: first.ckpt.config, ...common };
}

const configValue = (ckpt: AnyCheckpoint, field: string): unknown => (ckpt.config as unknown as Record<string, unknown>)[field] ?? null;

/** The first field (in either object's order) whose JSON differs, or null. */
function firstDifference(a: Record<string, unknown>, b: Record<string, unknown>): string | null {
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) return key;
  }
  return null;
}
