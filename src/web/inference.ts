// The explorer's GPU work for one image: the forward pass (reading back the lengths, the digit
// capsules, and, for the routing view, the primary capsules u and their predictions u_hat, taken
// from the model's layer taps) and the decoder's reconstruction from any capsule vector.

import type { CapsNet } from '../model/capsnet.ts';
import { type Tensor, fromArray, tidy } from '../tensor.ts';
import { noGrad } from '../autograd/tape.ts';

export interface Analysis {
  /** The image [C * H * W], as given. */
  input: Float32Array;
  /** Capsule lengths [J]. */
  lengths: Float32Array;
  /** Digit capsules [J, D]. */
  v: Float32Array;
  /** Primary capsules [I, Din]. */
  u: Float32Array;
  /** Predictions [I, J, D]. */
  uhat: Float32Array;
  /** Wall time of the forward pass and its readback. */
  ms: number;
}

/** The forward pass of one image [C * H * W] with what the views need, read back. */
export async function analyse(model: CapsNet, input: Float32Array): Promise<Analysis> {
  const c = model.config;
  const ctx = model.ctx;
  const started = performance.now();
  const out = tidy(() =>
    noGrad(() => {
      const x = fromArray(ctx, [1, c.inputChannels, c.inputSize, c.inputSize], input, 'explorer input');
      let u: Tensor | null = null;
      let uhat: Tensor | null = null;
      const { v, lengths } = model.forward(x, (name, t) => {
        if (name === 'primary capsules') u = t;
        else if (name === 'predictions u_hat') uhat = t;
      });
      if (!u || !uhat) throw new Error("CapsNet.forward did not report 'primary capsules' and 'predictions u_hat' (layer names changed?)");
      return { v, lengths, u: u as Tensor, uhat: uhat as Tensor };
    }),
  );
  try {
    const [lengths, v, u, uhat] = await Promise.all([out.lengths.read(), out.v.read(), out.u.read(), out.uhat.read()]);
    return { input, lengths, v, u, uhat, ms: performance.now() - started };
  } finally {
    for (const t of Object.values(out)) t.dispose();
  }
}

/** The decoder's image [pixels] from capsule `selected` of the digit capsules v [J * D]. */
export async function reconstruct(model: CapsNet, v: Float32Array, selected: number): Promise<Float32Array> {
  const c = model.config;
  const out = tidy(() =>
    noGrad(() => model.decode(fromArray(model.ctx, [1, c.digitCaps, c.digitDim], v, 'explorer capsules'), Int32Array.of(selected))),
  );
  try {
    return await out.read();
  } finally {
    out.dispose();
  }
}
