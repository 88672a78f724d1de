// The whole paper model for the timing scripts: a seeded batch and one training step recorded as
// src/train/trainer.ts records it (forward, backward, Adam; without the monitor's statistics).

import type { GpuContext } from '../../src/gpu/context.ts';
import { fromArray, tidy } from '../../src/tensor.ts';
import { backward } from '../../src/autograd/tape.ts';
import { CapsNet, oneHotTargets } from '../../src/model/capsnet.ts';
import { Adam } from '../../src/optim/adam.ts';

/** Made-up images in [0, 1) and labels 0..9 for a batch of B. */
export function syntheticBatch(B: number): { images: Float32Array; labels: Int32Array } {
  return {
    images: Float32Array.from({ length: B * 784 }, (_, i) => ((i * 2654435761) % 1000) / 1000),
    labels: Int32Array.from({ length: B }, (_, b) => b % 10),
  };
}

/** The paper CapsNet, its Adam and a function recording one training step on a fixed batch of B. */
export function trainingSetup(ctx: GpuContext, B: number): { model: CapsNet; adam: Adam; step: () => void; batch: ReturnType<typeof syntheticBatch>; dispose: () => void } {
  const model = CapsNet.create(ctx, {}, 1);
  const adam = new Adam(ctx);
  const params = model.parameterList();
  const batch = syntheticBatch(B);
  const { images, labels } = batch;
  const step = () => tidy(() => {
    const x = fromArray(ctx, [B, 1, 28, 28], images);
    const y = fromArray(ctx, [B], Float32Array.from(labels));
    const out = model.loss(x, y, oneHotTargets(ctx, labels, 10));
    backward(out.loss);
    adam.step(params);
    adam.zeroGrad(params);
  });
  return { model, adam, step, batch, dispose: () => { model.dispose(); adam.dispose(); } };
}
