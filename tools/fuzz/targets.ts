// Every fuzz target, in the order the fuzzer runs them.
import type { Target } from './harness.ts';
import { idxFileTarget, idxParseTarget } from './idx.ts';
import { safetensorsTarget } from './safetensors.ts';
import { checkpointTarget } from './checkpoint.ts';
import { cifarFileTarget, cifarParseTarget } from './cifar.ts';
import { cliArgsTarget, cliCommandsTarget } from './cli.ts';

export const TARGETS: Target[] = [
  idxParseTarget, idxFileTarget, safetensorsTarget, checkpointTarget, cifarParseTarget, cifarFileTarget, cliArgsTarget, cliCommandsTarget,
];
