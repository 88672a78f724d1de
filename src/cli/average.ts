// `capsnet average --checkpoint A --checkpoint B [...] --out FILE`: one checkpoint whose parameters
// are the mean of the given ones' (src/io/checkpoint-average.ts says when that makes sense). No GPU:
// it reads, averages and writes (atomically). The members must be checkpoints of one model config
// and one task (the checks of an ensemble); members from different runs (another --seed) are
// averaged with a warning, since that is rarely what was meant.

import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { saveCheckpoint } from '../io/checkpoint-file.ts';
import { averageCheckpoints } from '../io/checkpoint-average.ts';
import type { AnyCheckpoint } from '../io/checkpoint.ts';
import { checkEnsembleMembers, loadMembers, type Member } from './eval.ts';
import { UsageError, outputFileFlag, parseFlags, pathFlag } from './args.ts';

export async function averageCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags('average', argv, {
    checkpoint: { type: 'string', multiple: true },
    out: { type: 'string' },
    half: { type: 'boolean' },
  });
  const paths = values.checkpoint ?? [];
  if (paths.length < 2) throw new UsageError(`capsnet average: give at least two --checkpoint FILE (got ${paths.length})`);
  for (const path of paths) pathFlag(path, '--checkpoint');
  if (values.out === undefined) throw new UsageError('capsnet average: --out FILE is required (the averaged checkpoint to write)');
  outputFileFlag(values.out, '--out');
  // The result replacing one of its own inputs would lose that checkpoint.
  const input = paths.find((p) => resolve(p) === resolve(values.out!));
  if (input !== undefined) throw new UsageError(`capsnet average: --out ${values.out} is also a --checkpoint; write the average to another file`);
  // Nor a run's resumable checkpoint (the average has no Adam state to resume with).
  if (basename(values.out) === 'checkpoint.safetensors' && existsSync(values.out)) {
    throw new UsageError(`capsnet average: --out ${values.out} would replace a run's checkpoint (--resume continues from it); write the average to another file`);
  }
  // The same file twice would weigh it twice.
  const twice = paths.find((p, i) => paths.findIndex((q) => resolve(q) === resolve(p)) !== i);
  if (twice !== undefined) throw new UsageError(`capsnet average: --checkpoint ${twice} is given twice; each checkpoint counts once`);
  // Adam's state is not averaged (see averageCheckpoints): loadMembers drops it.
  const members = await loadMembers(paths, 'capsnet average');
  checkEnsembleMembers(members, false, 'capsnet average', 'an average');
  // Only a hint (not checked like the fields above: a file from another tool may have no seed).
  const seedOf = (m: Member) => String((m.ckpt.training?.options as { seed?: unknown } | undefined)?.seed ?? 'unknown');
  if (new Set(members.map(seedOf)).size > 1) {
    console.error(
      `capsnet average: warning: the checkpoints come from runs with different seeds (${members.map((m) => `${m.path}: ${seedOf(m)}`).join(', ')}); ` +
        'averaging weights helps for checkpoints of one run, while networks trained from different starts average to a poor one (an ensemble, `capsnet eval --checkpoint A --checkpoint B`, combines those)',
    );
  }
  let averaged: AnyCheckpoint;
  try {
    averaged = averageCheckpoints(members.map((m) => ({ source: m.path, file: resolve(m.path), ckpt: m.ckpt })));
  } catch (error) {
    throw new UsageError(`capsnet average: ${(error as Error).message}`);
  }
  await saveCheckpoint(values.out, averaged, { half: values.half ?? false });
  console.log(
    `capsnet average: wrote ${values.out}: the mean of ${members.length} checkpoints' parameters (steps ${members.map((m) => m.ckpt.step).join(', ')})${values.half ? ', as F16' : ''}; ` +
      `Adam's state left out (--init-from estimates it to train on). Evaluate it: capsnet eval --checkpoint ${values.out}`,
  );
  return 0;
}
