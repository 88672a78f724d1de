// Times the convolution passes on the paper's shapes (PrimaryCaps: 256 -> 256, 9x9, stride 2 on
// 20x20; Conv1: 1 -> 256, 9x9, stride 1 on 28x28, ReLU) and a plain tiled f32 matmul on the same
// adapter, the ceiling there. Cases run in interleaved rounds (warm-up rounds first); each figure is
// the median over the rounds of one pass recorded, submitted and waited for. GFLOP/s counts 2 x the multiply-adds of the
// convolution itself (2 B Cout OH OW Cin KH KW per pass), not the padding of the packed operands.
//
//   node --import ./tools/register-ts.mjs tools/bench-conv.ts [--backend auto|default|vulkan|opengl]
//        [--batch 32,128] [--runs 5] [--warmup 2] [--layers primary,conv1] [--variant gemm|direct]
//        [--operands chosen,buffer,subgroups,texture] [--parts] [--json out.json]
// --operands times the gemm variant with each kind of operands side by side ('chosen': the plan's own
// choice for this adapter; kinds the device lacks are left out).
// --parts adds, for each layer's chosen grad-input plan, one row per kernel of that pass: the same
// pass recorded with only that kernel's dispatches kept (the others are dropped, so its results are
// meaningless; only the time is of interest). The rows' GFLOP/s use the whole pass's flops: their
// ms add up to about the pass's. Then the whole pass, and (texture operands) the whole pass with the
// other grad-input column order (plan.gradInputColumns), for a comparison within one run.
//
// The machine is shared and noisy: besides wall-clock GFLOP/s, each row shows GFLOP per CPU-second
// of the process's threads other than the main one (llvmpipe's workers; Linux /proc only), a
// figure of the kernels' efficiency that other load disturbs less. Multiply by the number of cores
// llvmpipe uses for the wall-clock rate of an idle machine.
//
// Not a test: nothing is asserted about speed. It will be folded into `npm run bench`.

import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { type Conv2dPlan, type Conv2dVariant, conv2dGeometry, conv2dPlan } from '../src/ops/conv2d.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { CONV_LAYERS, type Case, type MatmulOperands, type Row, convLayerCases, matmulCase, matmulOperands, measure, printTable } from './bench/lib.ts';

const { values: args } = parseArgs({
  options: {
    // Unset: CAPSNET_BACKEND, else 'auto' (the engine's own choice: OpenGL llvmpipe without a GPU); 'default' is Dawn's default backend.
    backend: { type: 'string' },
    batch: { type: 'string', default: '32,128' },
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    layers: { type: 'string', default: 'primary,conv1' },
    variant: { type: 'string' },
    operands: { type: 'string', default: 'chosen' },
    json: { type: 'string' },
    parts: { type: 'boolean', default: false },
  },
});

const runs = Number(args.runs);
const warmup = Number(args.warmup);
const batches = args.batch!.split(',').map(Number);
const variant = args.variant as Conv2dVariant | undefined;

const backend = resolveBackend(args.backend);
const ctx = await acquireGpu({ backend });
console.log(`adapter: ${ctx.adapter.name} - ${ctx.adapter.description} (${ctx.adapter.featureLevel})`);
console.log(`median of ${runs} interleaved rounds after ${warmup} warm-up rounds; each run = record + submit + wait\n`);
const all: Row[] = [];
const available = matmulOperands(ctx);
try {
  for (const B of batches) {
    // The ceiling: a square matmul, and one of PrimaryCaps' forward GEMM size at batch 32 (split-K as
    // the conv), with buffer operands, subgroups (where subgroups are 8 wide) and texture operands
    // (where read-only storage textures exist). The best of them is the ceiling.
    const cases = [];
    for (const operands of available) cases.push(matmulCase(ctx, 1024, 1024, 1024, 0, operands), matmulCase(ctx, 32 * 36, 256, 20736, 2048, operands));
    for (const key of args.layers!.split(',')) {
      for (const kind of args.operands!.split(',')) {
        if (!(kind === 'chosen' || available.includes(kind as MatmulOperands))) continue;
        const override: Partial<Conv2dPlan> | undefined = kind === 'chosen' ? undefined : { operands: kind === 'texture' ? 'texture' : 'buffer', subgroups: kind === 'subgroups', ...(kind === 'texture' ? {} : { gradInputColumns: 'kernel' as const }) };
        cases.push(...convLayerCases(ctx, key, B, kind === 'chosen' ? variant : 'gemm', kind === 'chosen' ? '' : `[${kind}] `, override));
      }
      if (args.parts) cases.push(...gradInputParts(ctx, key, B));
    }
    const rows = await measure(ctx, cases, { runs, warmup });
    cases.forEach((c) => c.dispose());
    printTable(rows);
    all.push(...rows);
  }
  if (args.json) writeFileSync(args.json, JSON.stringify({ adapter: ctx.adapter, runs, warmup, rows: all }, null, 2));
} finally {
  ctx.destroy();
}

/** The chosen grad-input pass of a layer, once per kernel it uses, with only that kernel's dispatches kept (see --parts). */
function gradInputParts(context: GpuContext, key: string, B: number): Case[] {
  const [forward, gradInput, gradWeight] = convLayerCases(context, key, B, variant);
  forward.dispose();
  const parts: Case[] = [];
  const names = kernelNames(gradInput);
  for (const name of names) {
    parts.push({
      ...gradInput, what: `${gradInput.what} [${name.replace(/^conv2d_(pack(_tex)?\.)?/, '')}]`, note: 'only this kernel',
      run: () => {
        const dispatch = context.dispatch;
        context.dispatch = function (this: GpuContext, kernel, ...rest) {
          if (kernel.name === name) dispatch.call(this, kernel, ...rest);
        };
        try {
          gradInput.run();
        } finally {
          context.dispatch = dispatch;
        }
      },
      check: undefined, dispose: () => {},
    });
  }
  parts.push({ ...gradInput, what: `${gradInput.what} (whole)`, dispose: gradWeight.dispose });
  // The same pass with the other grad-input column order (where the plan's operands allow both).
  const chosen = conv2dPlan(context, conv2dGeometry(CONV_LAYERS[key].x(B), CONV_LAYERS[key].w, null, CONV_LAYERS[key].options), { ...CONV_LAYERS[key].options, variant });
  if (chosen.operands === 'texture') {
    const other = chosen.gradInputColumns === 'channels' ? 'kernel' : 'channels';
    const [f, gi, gw] = convLayerCases(context, key, B, variant, '', { gradInputColumns: other });
    f.dispose();
    parts.push({ ...gi, what: `${gi.what} (columns ${other})`, dispose: gw.dispose });
  }
  return parts;
}

/** The kernels one run of a case would dispatch, by name, in order of first use (nothing is dispatched). */
function kernelNames(c: Case): string[] {
  const names: string[] = [];
  const dispatch = ctx.dispatch;
  ctx.dispatch = function (kernel) {
    if (!names.includes(kernel.name)) names.push(kernel.name);
  };
  try {
    c.run();
  } finally {
    ctx.dispatch = dispatch;
  }
  return names;
}
