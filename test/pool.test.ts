// Max pooling (kernels/max_pool.wgsl, src/ops/pool.ts) against the f64 reference
// (test/reference/pool.ts): forward and backward bit for bit (a max and a copy are exact) on odd
// sizes, windows cut by the image edge, 'SAME' padding above and left (k = 3, 4) also against
// values worked out by hand as TensorFlow pads, many ties (the first largest wins in both), NaN (it
// wins its window, forward and backward), the official baseline CNN's real shapes, and a grid folded past
// 65,535 workgroups; the reference's backward against finite differences; k = 1 is the identity;
// bad arguments are refused before anything is dispatched.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers/gpu.ts';
import { assertClose } from './helpers/assert.ts';
import { makeRng, randomUniform } from './helpers/random.ts';
import { gradcheck } from './reference/gradcheck.ts';
import * as ref from './reference/pool.ts';
import { fromArray, parameter, tidy } from '../src/tensor.ts';
import { maxPool2d } from '../src/ops/pool.ts';
import { backward } from '../src/autograd/tape.ts';
import { ShapeError } from '../src/gpu/errors.ts';
import type { GpuContext } from '../src/gpu/context.ts';

const test = suite('max pooling');
const EXACT = { atol: 0, rtol: 0 };

/** GPU forward and backward of one pool against the reference, exactly. */
async function compare(ctx: GpuContext, shape: [number, number, number, number], k: number, xv: Float32Array, seed: number): Promise<void> {
  const { out: refOut, outShape } = ref.maxPool2dForward(xv, shape, k);
  const dout = Float32Array.from(randomUniform(refOut.length, seed, -1, 1));
  const x = parameter(ctx, shape, xv, 'x');
  const [y, dx] = tidy(() => {
    const out = maxPool2d(x, k);
    backward(out, fromArray(ctx, out.shape, dout, 'dout'));
    return [out, x.grad!];
  });
  const what = `[${shape.join(', ')}] k ${k}`;
  assert.equal(y.shape, outShape, `${what}: output shape`);
  assertClose(await y.read(), refOut, EXACT, `${what} forward`);
  assertClose(await dx.read(), ref.maxPool2dBackward(xv, shape, k, dout), EXACT, `${what} backward`);
  y.dispose();
  x.dispose();
}

const random = (n: number, seed: number) => Float32Array.from(randomUniform(n, seed, -2, 2));

const CASES: Array<[[number, number, number, number], number, string]> = [
  [[2, 3, 8, 8], 2, 'even sides'],
  [[2, 3, 7, 9], 2, 'odd sides: partial windows at the bottom and right'],
  [[3, 5, 11, 10], 3, 'k 3: one padding column on the left (10 -> 4 windows of 3)'],
  [[2, 4, 5, 6], 4, 'k 4: a padding row on top and one column on the left'],
  [[1, 1, 1, 1], 2, 'a 1x1 image'],
  [[1, 67, 3, 5], 2, 'element counts that are not multiples of the 64-thread workgroup'],
];
CASES.forEach(([shape, k, what], c) => {
  test(`forward and backward equal the reference exactly: ${what}`, async () => {
    const n = shape.reduce((a, b) => a * b, 1);
    await compare(await gpu(), shape, k, random(n, 10 + c), 100 + c);
  });
});

test("hand-worked 'SAME' windows: 5x6 with k 4 pads a row on top and a column on the left (TensorFlow's split); 3x3 with k 2 cuts the last row and column", async () => {
  const ctx = await gpu();
  // x[y][x] = 10 y + x. k 4 on 5 rows: OH 2, 3 padding rows, 1 on top: windows rows {0,1,2}, {3,4};
  // 6 columns: OW 2, 2 padding columns, 1 on the left: columns {0,1,2}, {3,4,5}. Maxima: bottom-right
  // corners, 22, 25, 42, 45. k 3 on 4: one padding row on each side: rows {0,1}, {2,3}.
  const grid = (H: number, W: number) => Float32Array.from({ length: H * W }, (_, i) => 10 * Math.floor(i / W) + (i % W));
  const cases: Array<[number, number, number, number[]]> = [[5, 6, 4, [22, 25, 42, 45]], [3, 3, 2, [11, 12, 21, 22]], [4, 4, 3, [11, 13, 31, 33]]];
  for (const [H, W, k, expected] of cases) {
    const x = fromArray(ctx, [1, 1, H, W], grid(H, W), 'x');
    const y = maxPool2d(x, k);
    assert.equal(Array.from(await y.read()), expected, `${H}x${W}, k ${k}`);
    assert.equal(Array.from(ref.maxPool2dForward(grid(H, W), [1, 1, H, W], k).out), expected, `reference ${H}x${W}, k ${k}`);
    x.dispose();
    y.dispose();
  }
});

test('a NaN wins its window wherever it is (first, middle, last; two NaNs: the first), forward and backward; -infinity and +infinity are ordered values', async () => {
  const ctx = await gpu();
  const shape: [number, number, number, number] = [1, 6, 3, 3];
  // Six planes of one 3x3 image, k 2: windows {0,1,3,4}, {2,5}, {6,7}, {8}.
  const planes = [
    [NaN, 5, 1, 2, 3, 4, 0, 1, 2],
    [1, 5, 1, 2, NaN, 4, 0, 1, 2],
    [1, 2, 3, 4, 5, 6, 7, 8, NaN],
    [NaN, 5, 9, NaN, 3, 4, 0, 1, 2],
    [-Infinity, -Infinity, 1, -Infinity, -Infinity, Infinity, 0, 1, 2],
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  ];
  const xv = Float32Array.from(planes.flat());
  await compare(ctx, shape, 2, xv, 61);
  const out = ref.maxPool2dForward(xv, shape, 2).out;
  assert.ok(Number.isNaN(out[0]) && Number.isNaN(out[4]) && Number.isNaN(out[11]) && Number.isNaN(out[12]), 'the windows holding a NaN give NaN');
  assert.equal(Array.from(out.slice(16, 20)), [-Infinity, Infinity, 1, 2]);
  // And the GPU's forward, read directly (compare() checks it equals the reference, NaN for NaN).
  const x = fromArray(ctx, shape, xv, 'x');
  const y = maxPool2d(x, 2);
  const gpuOut = await y.read();
  assert.ok([0, 4, 11, 12].every((i) => Number.isNaN(gpuOut[i])), `NaN windows: ${Array.from(gpuOut.slice(0, 16))}`);
  x.dispose();
  y.dispose();
});

test('ties (values from {0, 1, 2}, and all-zero windows as after a ReLU): the first largest gets the gradient, as in the reference', async () => {
  const ctx = await gpu();
  const rng = makeRng(5);
  const shape: [number, number, number, number] = [2, 3, 9, 7];
  const n = shape.reduce((a, b) => a * b, 1);
  const xv = Float32Array.from({ length: n }, () => Math.floor(rng() * 3));
  xv.fill(0, 0, 2 * 7); // the first two rows of the first plane: windows of zeros only
  await compare(ctx, shape, 2, xv, 6);
  // Each window passes its gradient to exactly one input.
  const dout = new Float64Array(ref.maxPool2dForward(xv, shape, 2).out.length).fill(1);
  const dx = ref.maxPool2dBackward(xv, shape, 2, dout);
  assert.is(dx.reduce((a, b) => a + b, 0), dout.length);
  assert.ok(dx.every((v) => v === 0 || v === 1));
});

test("the official baseline CNN's shapes at 40x40 ('valid' convs): 512 x 36 x 36 -> 18 x 18 and 256 x 14 x 14 -> 7 x 7, batch 2", async () => {
  const ctx = await gpu();
  for (const [shape, seed] of [[[2, 512, 36, 36], 31], [[2, 256, 14, 14], 32]] as Array<[[number, number, number, number], number]>) {
    // ReLU outputs: about half exact zeros.
    const xv = random(shape.reduce((a, b) => a * b, 1), seed).map((v) => Math.max(0, v));
    await compare(ctx, shape, 2, xv, seed + 100);
  }
});

test('a grid folded past 65,535 workgroups (4,326,400 inputs in the backward pass)', async () => {
  const ctx = await gpu();
  const shape: [number, number, number, number] = [2, 8, 520, 520];
  const n = shape.reduce((a, b) => a * b, 1);
  assert.ok(Math.ceil(n / 64) > ctx.limits.maxComputeWorkgroupsPerDimension);
  await compare(ctx, shape, 2, random(n, 41), 42);
});

test('the reference backward matches finite differences (distinct values: no ties within eps)', () => {
  for (const [shape, k] of [[[2, 2, 5, 7], 2], [[1, 3, 7, 6], 3]] as Array<[number[], number]>) {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = randomUniform(n, 51, -1, 1);
    const w = randomUniform(ref.maxPool2dForward(x, shape, k).out.length, 52, -1, 1);
    const f = ([xi]: Float64Array[]) => ref.maxPool2dForward(xi, shape, k).out.reduce((s, v, i) => s + v * w[i], 0);
    gradcheck(f, [x], [ref.maxPool2dBackward(x, shape, k, w)], `max pool [${shape.join(', ')}] k ${k}`);
  }
});

test('k = 1 returns x itself (nothing dispatched); a bad size or rank is a ShapeError before any dispatch', async () => {
  const ctx = await gpu();
  const x = fromArray(ctx, [1, 1, 2, 2], [1, 2, 3, 4], 'x');
  const before = ctx.counters.dispatches;
  assert.is(maxPool2d(x, 1), x);
  for (const k of [0, -2, 1.5, NaN]) assert.throws(() => maxPool2d(x, k), (e: Error) => e instanceof ShapeError && /size must be a positive integer/.test(e.message));
  const flat = fromArray(ctx, [4], [1, 2, 3, 4], 'flat');
  assert.throws(() => maxPool2d(flat, 2), (e: Error) => e instanceof ShapeError && /must be \[B, C, H, W\], got/.test(e.message));
  assert.is(ctx.counters.dispatches, before);
  x.dispose();
  flat.dispose();
});

test.run();
