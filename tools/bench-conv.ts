// Times the convolution passes on the paper's shapes (PrimaryCaps: 256 -> 256, 9x9, stride 2 on
// 20x20; Conv1: 1 -> 256, 9x9, stride 1 on 28x28, ReLU) and a plain tiled f32 matmul on the same
// adapter, the ceiling there. Cases run in interleaved rounds (warm-up rounds first); each figure is
// the median over the rounds of one pass recorded, submitted and waited for. GFLOP/s counts 2 x the multiply-adds of the
// convolution itself (2 B Cout OH OW Cin KH KW per pass), not the padding of the packed operands.
//
//   node --import ./tools/register-ts.mjs tools/bench-conv.ts [--backend default|vulkan|opengl]
//        [--batch 32,128] [--runs 5] [--warmup 2] [--layers primary,conv1] [--variant gemm|direct]
//        [--operands chosen,buffer,subgroups,texture] [--json out.json]
// --operands times the gemm variant with each kind of operands side by side ('chosen': the plan's own
// choice for this adapter; kinds the device lacks are left out).
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
import type { Conv2dPlan, Conv2dVariant } from '../src/ops/conv2d.ts';
import { type MatmulOperands, type Row, convLayerCases, matmulCase, matmulOperands, measure, printTable } from './bench/lib.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'default' },
    batch: { type: 'string', default: '32,128' },
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    layers: { type: 'string', default: 'primary,conv1' },
    variant: { type: 'string' },
    operands: { type: 'string', default: 'chosen' },
    json: { type: 'string' },
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
        const override: Partial<Conv2dPlan> | undefined = kind === 'chosen' ? undefined : { operands: kind === 'texture' ? 'texture' : 'buffer', subgroups: kind === 'subgroups' };
        cases.push(...convLayerCases(ctx, key, B, kind === 'chosen' ? variant : 'gemm', kind === 'chosen' ? '' : `[${kind}] `, override));
      }
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
