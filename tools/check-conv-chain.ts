// Runs the baseline CNN's convolution chain (1 -> 256 -> 256 -> 128 channels, 5x5, 'same', ReLU,
// 28x28, batch 2) forward and backward on one backend and prints every gradient; run it on two
// backends and compare. On OpenGL llvmpipe the gradients of conv1 and conv2 come out wrong (Vulkan
// matches the f64 reference in test/baseline.test.ts) although each convolution alone is right:
//   node --import ./tools/register-ts.mjs tools/check-conv-chain.ts opengl > /tmp/gl.json
//   node --import ./tools/register-ts.mjs tools/check-conv-chain.ts vulkan > /tmp/vk.json
import { acquireGpu, resolveBackend } from '../src/gpu/node.ts';
import * as ops from '../src/ops/index.ts';
import { fromArray, parameter, tidy } from '../src/tensor.ts';
import { backward } from '../src/autograd/tape.ts';
import { makeRng } from '../test/helpers/random.ts';
const ctx = await acquireGpu({ backend: resolveBackend(process.argv[2]) });
const rng = makeRng(5);
const B = 2, H = 28, K = 5;
const mk = (n: number, s: number) => Float32Array.from({ length: n }, () => (rng() - 0.5) * s);
const xs = Float32Array.from({ length: B * H * H }, () => (rng() < 0.3 ? rng() : 0));
const x = parameter(ctx, [B, 1, H, H], xs, 'x');
const w1 = parameter(ctx, [256, 1, K, K], mk(256 * 25, 0.4), 'w1'); const b1 = parameter(ctx, [256], mk(256, 0.1), 'b1');
const w2 = parameter(ctx, [256, 256, K, K], mk(256 * 256 * 25, 0.02), 'w2'); const b2 = parameter(ctx, [256], mk(256, 0.02), 'b2');
const w3 = parameter(ctx, [128, 256, K, K], mk(128 * 256 * 25, 0.02), 'w3'); const b3 = parameter(ctx, [128], mk(128, 0.02), 'b3');
const rs = mk(B * 128 * H * H, 1);
tidy(() => {
  let y = ops.conv2d(x, w1, b1, { stride: 1, padding: 2, relu: true });
  y = ops.conv2d(y, w2, b2, { stride: 1, padding: 2, relu: true });
  y = ops.conv2d(y, w3, b3, { stride: 1, padding: 2, relu: true });
  backward(ops.sum(ops.mul(y, fromArray(ctx, [B, 128, H, H], rs))));
});
const out: Record<string, number[]> = {};
for (const p of [w1, b1, w2, b2, w3, b3]) out[p.name] = Array.from(await p.grad!.read());
console.log(JSON.stringify(out));
ctx.destroy();
