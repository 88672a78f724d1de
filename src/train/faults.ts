// Fault injection, for tests only: `capsnet train --inject-fault SPEC` (and the Trainer hooks
// beforeStep / afterStepRecorded) make a chosen step fail the way real runs fail, so that the tests
// can check what the user then sees and that --resume continues. Nothing here runs unless asked.
//
// SPEC is a comma-separated list of KIND@STEP (STEP 1-based, as in progress reports and messages):
//   nan-input@S            the first pixel of step S's batch is NaN (as from a corrupt data file)
//   inf-input@S            ... +infinity
//   nan-param:NAME@S       before step S, element 0 of parameter NAME (e.g. conv1.weight) is set to NaN
//   device-loss@S          before step S, the GPU device is destroyed (as when a driver resets)
//   validation-error@S     step S's commands include an invalid dispatch (a kernel binding one
//                          buffer twice as writable storage), so WebGPU rejects the step's submit
// Tests: test/nonfinite.test.ts, test/device-loss.test.ts.

import type { GpuContext, KernelSpec } from '../gpu/context.ts';
import type { Tensor } from '../tensor.ts';
import { empty, untrack } from '../tensor.ts';
import type { TrainHooks } from './trainer.ts';

export type FaultKind = 'nan-input' | 'inf-input' | 'nan-param' | 'device-loss' | 'validation-error';

export interface Fault {
  kind: FaultKind;
  /** 1-based step. */
  step: number;
  /** nan-param: the parameter's checkpoint name. */
  param?: string;
}

const KINDS: readonly FaultKind[] = ['nan-input', 'inf-input', 'nan-param', 'device-loss', 'validation-error'];

/** Parses SPEC (see the header); errors name the part that is wrong. */
export function parseFaults(spec: string): Fault[] {
  return spec.split(',').map((part) => {
    const m = /^([a-z-]+)(?::([A-Za-z0-9_.]+))?@(\d+)$/.exec(part.trim());
    if (!m) throw new Error(`--inject-fault: '${part}' is not KIND@STEP or nan-param:NAME@STEP`);
    const kind = m[1] as FaultKind;
    if (!KINDS.includes(kind)) throw new Error(`--inject-fault: unknown kind '${m[1]}' (known: ${KINDS.join(', ')})`);
    const step = Number(m[3]);
    if (!Number.isSafeInteger(step) || step < 1) throw new Error(`--inject-fault: step must be an integer >= 1 in '${part}'`);
    if ((kind === 'nan-param') !== (m[2] !== undefined)) {
      throw new Error(kind === 'nan-param' ? `--inject-fault: nan-param needs a parameter name: nan-param:NAME@STEP` : `--inject-fault: only nan-param takes a :NAME ('${part}')`);
    }
    return { kind, step, ...(m[2] !== undefined ? { param: m[2] } : {}) };
  });
}

// Binds one buffer twice as writable storage: WebGPU's validation rejects the dispatch (writable
// storage bindings may not alias within a usage scope), and with it the whole submit.
const ALIASING_KERNEL: KernelSpec = {
  name: 'injected fault: aliasing writable bindings',
  code: `@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@compute @workgroup_size(1) fn main() { a[0] = b[0]; }`,
};

/**
 * Trainer hooks that inject `faults` into the run: model parameters by name (for nan-param). The
 * hooks check every fault's parameter name up front.
 */
export function faultHooks(ctx: GpuContext, faults: readonly Fault[], params: Record<string, Tensor>): Pick<TrainHooks, 'beforeStep' | 'afterStepRecorded'> & { dispose(): void } {
  for (const f of faults) {
    if (f.kind === 'nan-param' && !params[f.param!]) throw new Error(`--inject-fault: no parameter '${f.param}' (parameters: ${Object.keys(params).join(', ')})`);
  }
  let scratch: Tensor | null = null;
  const at = (step: number, kinds: FaultKind[]) => faults.filter((f) => f.step === step + 1 && kinds.includes(f.kind));
  return {
    beforeStep(step, batch) {
      for (const f of at(step, ['nan-input', 'inf-input', 'nan-param', 'device-loss'])) {
        if (f.kind === 'nan-input') batch.images[0] = NaN;
        else if (f.kind === 'inf-input') batch.images[0] = Infinity;
        else if (f.kind === 'nan-param') ctx.upload(params[f.param!].buffer, new Float32Array([NaN]));
        else ctx.device.destroy();
      }
    },
    afterStepRecorded(step) {
      if (at(step, ['validation-error']).length === 0) return;
      scratch ??= untrack(empty(ctx, [4], 'injected fault'));
      ctx.dispatch(ALIASING_KERNEL, [scratch.buffer, scratch.buffer], null, 1);
    },
    dispose() {
      scratch?.dispose();
    },
  };
}
