// Turns a checkpoint of `capsnet train` into the model the web app opens on first visit: F16
// parameters only (half the size, no Adam state) in src/web/models/capsnet-mnist.safetensors, plus a
// sidecar .json (name, description, steps, test accuracy) that the build lists in
// dist/web/models/index.json. With --eval, the F16 copy itself is tested on MNIST's test set (all
// 10,000 images, or --eval N for the first N) and the accuracy goes into the sidecar.
//
//   npx capsnet train --out runs/mnist --epochs 10
//   node --import ./tools/register-ts.mjs tools/export-web-model.ts runs/mnist/checkpoint.safetensors --eval
//   npm run build        # dist/web/ now ships the model
//
// Options: --out FILE (default src/web/models/capsnet-mnist.safetensors), --name TEXT,
// --description TEXT, --eval [N], --batch-size N (evaluation, default 100), --backend B.
import { writeFileSync, mkdirSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCheckpoint } from '../src/io/checkpoint-file.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../src/io/checkpoint.ts';
import { writeFileAtomic } from '../src/io/files.ts';
import { loadMnist } from '../src/io/idx-file.ts';
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import { CapsNet } from '../src/model/capsnet.ts';
import { parameterCount } from '../src/model/config.ts';
import { evaluate } from '../src/train/trainer.ts';
import { fillBatch } from '../src/data/dataset.ts';
import { checkExplorable } from '../src/web/models.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string', default: 'src/web/models/capsnet-mnist.safetensors' },
    name: { type: 'string' },
    description: { type: 'string' },
    eval: { type: 'boolean', default: false },
    'eval-count': { type: 'string' },
    'batch-size': { type: 'string', default: '100' },
    backend: { type: 'string' },
  },
});

// `--eval 2000` as well as `--eval-count 2000`: a number right after --eval is its count.
let evalCount = values['eval-count'] === undefined ? null : Number(values['eval-count']);
const [input, ...rest] = positionals;
if (values.eval && evalCount === null && rest.length > 0 && /^\d+$/.test(rest[0])) evalCount = Number(rest.shift());
if (!input || rest.length > 0) {
  console.error('usage: tools/export-web-model.ts CHECKPOINT [--out FILE] [--name TEXT] [--description TEXT] [--eval [N]] [--batch-size N] [--backend B]');
  process.exit(2);
}
if (evalCount !== null && !(Number.isInteger(evalCount) && evalCount > 0)) {
  console.error(`--eval: ${evalCount} is not a positive number of test images`);
  process.exit(2);
}
const batchSize = Number(values['batch-size']);

const ckpt = await loadCheckpoint(input);
checkExplorable(ckpt.config, input);
// The recipe goes in too (no Adam state): `capsnet train --init-from` the shipped file continues
// the run with the same data order and schedule.
const options = (ckpt.training as { options?: Record<string, unknown> } | undefined)?.options;
// A `capsnet average` result says which checkpoints it is the mean of.
// Their file names only: the paths are this machine's.
const averagedFrom = (ckpt.training as { averaged?: unknown } | undefined)?.averaged;
const averaged = Array.isArray(averagedFrom)
  ? averagedFrom.map((m: { file?: unknown; step?: unknown }) => ({ file: typeof m?.file === 'string' ? basename(m.file) : null, step: m?.step ?? null }))
  : undefined;
// A `capsnet train --ema` average (ema.safetensors) says so: its decay, start step and run file's name.
const movingFrom = (ckpt.training as { movingAverage?: { decay?: unknown; since?: unknown; of?: unknown } } | undefined)?.movingAverage;
const movingAverage = typeof movingFrom === 'object' && movingFrom !== null
  ? { decay: movingFrom.decay ?? null, since: movingFrom.since ?? null, of: typeof movingFrom.of === 'string' ? basename(movingFrom.of) : null }
  : undefined;
const training = { ...(options ? { options } : {}), ...(averaged ? { averaged } : {}), ...(movingAverage ? { movingAverage } : {}) };
const bytes = encodeCheckpoint({ config: ckpt.config, params: ckpt.params, step: ckpt.step, ...(Object.keys(training).length > 0 ? { training } : {}) }, { half: true });
mkdirSync(dirname(values.out!), { recursive: true });
await writeFileAtomic(values.out!, bytes);
console.log(`export-web-model: ${values.out} (F16, ${(bytes.length / 1048576).toFixed(1)} MB, ${parameterCount(ckpt.config).toLocaleString('en-US')} parameters, step ${ckpt.step})`);

const info: Record<string, unknown> = {
  name: values.name ?? `CapsNet trained on MNIST (${ckpt.step.toLocaleString('en-US')} steps)`,
  ...(values.description ? { description: values.description } : {}),
  step: ckpt.step,
  source: basename(input),
  exported: new Date().toISOString(),
};
if (options) info.training = options;
if (averaged) info.averaged = averaged;
if (movingAverage) info.movingAverage = movingAverage;

if (values.eval) {
  // Test the F16 copy itself, as the page will see it.
  const shipped = decodeCheckpoint(bytes, values.out!);
  const ctx = await acquireGpu({ backend: values.backend === undefined ? undefined : resolveBackend(values.backend) });
  try {
    const model = new CapsNet(ctx, shipped.config, shipped.params);
    const test = loadMnist().test;
    const n = Math.min(evalCount ?? test.count, test.count);
    const order = Uint32Array.from({ length: n }, (_, i) => i);
    const started = performance.now();
    const result = await evaluate(model, n, Math.min(batchSize, n), (start, images, labels) => fillBatch(test, order, start, images, labels), (done) => {
      if (process.stdout.isTTY) process.stdout.write(`\rexport-web-model: testing ${done}/${n}`);
    });
    if (process.stdout.isTTY) process.stdout.write('\n');
    info.testAccuracy = result.accuracy;
    info.testCount = n;
    console.log(`export-web-model: test accuracy of the F16 model ${(result.accuracy * 100).toFixed(2)}% on ${n} images (${ctx.adapter.name}, ${((performance.now() - started) / 1000).toFixed(0)} s)`);
    model.dispose();
  } finally {
    ctx.destroy();
  }
}
const sidecar = values.out!.replace(/\.safetensors$/, '') + '.json';
writeFileSync(sidecar, JSON.stringify(info, null, 2) + '\n');
console.log(`export-web-model: ${sidecar}; run \`npm run build\` to ship it in dist/web/models/`);
