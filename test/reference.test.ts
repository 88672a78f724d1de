// The CPU reference checks itself: every backward pass against central finite differences of its
// own forward pass (f64), and every forward pass against values worked out by hand.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './helpers/assert.ts';
import { randomNormal, randomUniform } from './helpers/random.ts';
import { gradcheck, type GradcheckOptions } from './reference/gradcheck.ts';
import { conv2dBackward, conv2dForward, type Conv2dOptions } from './reference/conv2d.ts';
import {
  capsPredict, capsPredictBackward, capsuleLengths, capsuleLengthsBackward, longestCapsule, maskCapsules,
  maskCapsulesBackward, primaryCapsReshape, primaryCapsReshapeBackward, routingBackward, routingForward, squash,
  squashBackward, type RoutingOptions,
} from './reference/capsules.ts';
import {
  marginLoss, marginLossBackward, oneHot, reconstructionLoss, reconstructionLossBackward, softmaxCrossEntropy,
  softmaxCrossEntropyBackward,
} from './reference/losses.ts';
import { denseBackward, denseForward, type Activation } from './reference/dense.ts';
import { adamStep, learningRate } from './reference/adam.ts';
import {
  capsNetConfig, capsNetForward, capsNetParamShapes, countCapsNetParams, PAPER_CONFIG, randomCapsNetParams,
  type CapsNetConfig,
} from './reference/capsnet.ts';

/** sum(out * R): a scalar whose gradient with respect to out is R, so backward(R) is its gradient. */
function dot(a: Float64Array, b: Float64Array): number {
  assert.is(a.length, b.length);
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
}

/** Tight tolerances for f64 central differences of O(1) functions with eps = 1e-6. */
const TIGHT: GradcheckOptions = { eps: 1e-6, atol: 1e-8, rtol: 1e-6 };

// -------------------------------------------------------------------------------------------------
const conv = suite('reference conv2d');

conv('forward by hand: 1x1x3x3 input, 2x2 kernel, bias, stride 1, valid', () => {
  const x = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const w = Float64Array.from([1, 0, 0, -1]);
  const { out, outShape } = conv2dForward(x, [1, 1, 3, 3], w, [1, 1, 2, 2], Float64Array.from([0.5]));
  assert.equal([...outShape], [1, 1, 2, 2]);
  assert.equal([...out], [1 - 5 + 0.5, 2 - 6 + 0.5, 4 - 8 + 0.5, 5 - 9 + 0.5]);
  const relu = conv2dForward(x, [1, 1, 3, 3], w, [1, 1, 2, 2], Float64Array.from([4.25]), { relu: true }).out;
  assert.equal([...relu], [0.25, 0.25, 0.25, 0.25]);
  const shifted = conv2dForward(x, [1, 1, 3, 3], w, [1, 1, 2, 2], Float64Array.from([4]), { relu: true }).out;
  assert.equal([...shifted], [0, 0, 0, 0]);
});

conv('forward by hand: padding 1, stride 2 and same padding', () => {
  const x = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const ones = new Float64Array(9).fill(1);
  // 3x3 box filter, padding 1, stride 2 on 3x3: output 2x2 at the corners of the padded image.
  const { out, outShape } = conv2dForward(x, [1, 1, 3, 3], ones, [1, 1, 3, 3], null, { stride: 2, padding: 1 });
  assert.equal([...outShape], [1, 1, 2, 2]);
  assert.equal([...out], [1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9]);
  const same = conv2dForward(x, [1, 1, 3, 3], ones, [1, 1, 3, 3], null, { padding: 'same' });
  assert.equal([...same.outShape], [1, 1, 3, 3]);
  assert.is(same.out[4], 45);
  assert.is(same.out[0], 12);
  // the paper's layers: 28 -> 20 (9x9 valid), 20 -> 6 (9x9 stride 2)
  const img = new Float64Array(28 * 28);
  assert.equal([...conv2dForward(img, [1, 1, 28, 28], new Float64Array(81), [1, 1, 9, 9]).outShape], [1, 1, 20, 20]);
  const c1 = new Float64Array(20 * 20);
  assert.equal([...conv2dForward(c1, [1, 1, 20, 20], new Float64Array(81), [1, 1, 9, 9], null, { stride: 2 }).outShape], [1, 1, 6, 6]);
});

conv('shape errors are clear', () => {
  const x = new Float64Array(2 * 3 * 7 * 6);
  assert.throws(() => conv2dForward(x, [2, 3, 7, 6], new Float64Array(5 * 2 * 3 * 2), [5, 2, 3, 2]), /input channels/);
  assert.throws(() => conv2dForward(x, [2, 3, 7, 5], new Float64Array(5 * 3 * 3 * 2), [5, 3, 3, 2]), /conv2d x: length/);
  assert.throws(() => conv2dForward(x, [2, 3, 7, 6], new Float64Array(5 * 3 * 3 * 2), [5, 3, 3, 2], new Float64Array(4)), /bias/);
  assert.throws(() => conv2dForward(x, [2, 3, 7, 6], new Float64Array(5 * 3 * 8 * 2), [5, 3, 8, 2]), /larger than/);
  assert.throws(() => conv2dForward(x, [2, 3, 7, 6], new Float64Array(5 * 3 * 3 * 2), [5, 3, 3, 2], null, { padding: 'same' }), /odd/);
  assert.throws(() => conv2dBackward(x, [2, 3, 7, 6], new Float64Array(5 * 3 * 3 * 2), [5, 3, 3, 2], new Float64Array(2 * 5 * 5 * 5), { relu: true }), /out/);
});

const convCases: Conv2dOptions[] = [];
for (const stride of [1, 2]) for (const padding of [0, 1]) for (const relu of [false, true]) convCases.push({ stride, padding, relu });
convCases.push({ stride: [2, 1], padding: [1, 0], relu: true });
convCases.push({ stride: 1, padding: 'same', relu: false });

for (const opts of convCases) {
  conv(`backward vs finite differences: 2x3x7x6 input, 5 filters 3x2 ${JSON.stringify(opts)}`, () => {
    const xShape = [2, 3, 7, 6];
    const wShape = opts.padding === 'same' ? [5, 3, 3, 5] : [5, 3, 3, 2];
    const x = randomNormal(2 * 3 * 7 * 6, 1);
    const w = randomNormal(wShape.reduce((a, b) => a * b), 2, 0.5);
    const bias = randomNormal(5, 3, 0.5);
    const { out } = conv2dForward(x, xShape, w, wShape, bias, opts);
    const R = randomNormal(out.length, 4);
    const { dx, dw, db } = conv2dBackward(x, xShape, w, wShape, R, opts, out);
    const f = ([x_, w_, b_]: Float64Array[]) => dot(conv2dForward(x_, xShape, w_, wShape, b_, opts).out, R);
    gradcheck(f, [x, w, bias], [dx, dw, db], `conv2d ${JSON.stringify(opts)}`, { ...TIGHT, maxPerInput: 1000 });
  });
}

// -------------------------------------------------------------------------------------------------
const sq = suite('reference squash');

sq('forward by hand: s = (3, 4) and s = 0', () => {
  const v = squash(Float64Array.from([3, 4, 0, 0]), 2);
  const f = 25 / 26 / Math.sqrt(25 + 1e-7);
  assertClose(v, [3 * f, 4 * f, 0, 0], { atol: 0, rtol: 1e-15 }, 'squash');
  assertClose([Math.hypot(v[0], v[1])], [25 / 26], { atol: 0, rtol: 1e-8 }, '|squash|');
  assert.equal([...squashBackward(Float64Array.from([0, 0, 0]), Float64Array.from([1, -2, 3]), 3)], [0, 0, 0]);
});

sq('backward vs finite differences: random rows of dims 8, 16 and 5', () => {
  for (const dim of [8, 16, 5]) {
    const s = randomNormal(7 * dim, 10 + dim, 0.7);
    const R = randomNormal(s.length, 20 + dim);
    gradcheck(([s_]) => dot(squash(s_, dim), R), [s], [squashBackward(s, R, dim)], `squash dim ${dim}`, TIGHT);
  }
});

sq('backward at s = 0 exactly, near 0 and at large |s|', () => {
  const dim = 6;
  const zero = new Float64Array(dim);
  const R = randomNormal(dim, 31);
  const dz = squashBackward(zero, R, dim);
  assert.equal([...dz], new Array(dim).fill(0));
  gradcheck(([s_]) => dot(squash(s_, dim), R), [zero], [dz], 'squash at 0', TIGHT);
  // |s| ~ 1e-3 (n2 ~ 1e-6, ten times the epsilon): a finer step.
  const tiny = randomNormal(dim, 32, 1e-3);
  gradcheck(([s_]) => dot(squash(s_, dim), R), [tiny], [squashBackward(tiny, R, dim)], 'squash near 0', { eps: 1e-10, atol: 1e-12, rtol: 1e-6 });
  // |s| ~ 1e3: gradients ~ 1e-3, step scaled with s.
  const big = randomNormal(dim, 33, 1e3);
  gradcheck(([s_]) => dot(squash(s_, dim), R), [big], [squashBackward(big, R, dim)], 'squash large', { eps: 1e-3, atol: 1e-12, rtol: 1e-6 });
});

sq('very large |s| (1e30, beyond f32; 1e100): finite, unit length, gradient = tangential projection / |s|', () => {
  // The straightforward formulas hold in f64 while 1/((1 + n2) sqrt(n2 + eps)) ~ |s|^-3 does not
  // underflow, i.e. for |s| up to about 1e100 (in f32: about 1e12, see the report).
  for (const scale of [1e30, 1e100]) {
    const dim = 8;
    const s = randomNormal(dim, 40, scale);
    const v = squash(s, dim);
    const norm = Math.sqrt(s.reduce((a, x) => a + x * x, 0));
    assert.ok(v.every(Number.isFinite));
    assertClose(v, Array.from(s, (x) => x / norm), { atol: 0, rtol: 1e-12 }, `squash ${scale}`);
    const dv = randomNormal(dim, 41);
    const ds = squashBackward(s, dv, dim);
    assert.ok(ds.every(Number.isFinite));
    let uDv = 0;
    for (let d = 0; d < dim; d++) uDv += (s[d] / norm) * dv[d];
    const expected = Array.from(dv, (g, d) => (g - (s[d] / norm) * uDv) / norm);
    assertClose(ds, expected, { atol: 0, rtol: 1e-9 }, `squash backward ${scale}`);
  }
});

// -------------------------------------------------------------------------------------------------
const caps = suite('reference capsule ops');

caps('primaryCapsReshape: capsule i = type*G*G + y*G + x, channel c = type*dim + d; backward inverts it', () => {
  const dims = { B: 2, types: 3, dim: 4, G: 5 };
  const conv = randomNormal(2 * 3 * 4 * 5 * 5, 50);
  const u = primaryCapsReshape(conv, dims);
  // b = 1, type = 2, d = 3, y = 4, x = 1
  assert.is(u[(1 * 75 + 2 * 25 + 4 * 5 + 1) * 4 + 3], conv[((1 * 12 + 2 * 4 + 3) * 5 + 4) * 5 + 1]);
  assert.equal([...primaryCapsReshapeBackward(u, dims)], [...conv]);
  const R = randomNormal(u.length, 51);
  gradcheck(([c]) => dot(primaryCapsReshape(c, dims), R), [conv], [primaryCapsReshapeBackward(R, dims)], 'primaryCapsReshape', TIGHT);
});

caps('capsPredict: forward by hand and backward vs finite differences', () => {
  // I = 1, J = 2, Dout = 2, Din = 3
  const W = Float64Array.from([1, 2, 3, 4, 5, 6, /* j = 1 */ 0, 1, 0, -1, 0, 1]);
  const u = Float64Array.from([1, -1, 2]);
  assert.equal([...capsPredict(W, u, { B: 1, I: 1, J: 2, Dout: 2, Din: 3 })], [5, 11, -1, 1]);
  const dims = { B: 3, I: 7, J: 4, Dout: 5, Din: 3 };
  const W2 = randomNormal(7 * 4 * 5 * 3, 52);
  const u2 = randomNormal(3 * 7 * 3, 53);
  const R = randomNormal(3 * 7 * 4 * 5, 54);
  const { dW, du } = capsPredictBackward(W2, u2, R, dims);
  gradcheck(([w_, u_]) => dot(capsPredict(w_, u_, dims), R), [W2, u2], [dW, du], 'capsPredict', TIGHT);
});

caps('lengths: forward, backward vs finite differences, finite gradient at v = 0', () => {
  const dims = { B: 2, J: 3, D: 5 };
  const v = randomNormal(30, 55, 0.4);
  v.fill(0, 5, 10); // capsule (0, 1) is exactly zero
  const len = capsuleLengths(v, dims);
  assertClose([len[1]], [Math.sqrt(1e-9)], { atol: 0, rtol: 1e-15 }, 'length of 0');
  let n2 = 0;
  for (let d = 0; d < 5; d++) n2 += v[d] * v[d];
  assertClose([len[0]], [Math.sqrt(n2)], { atol: 0, rtol: 1e-8 }, 'length');
  const R = randomNormal(6, 56);
  const dv = capsuleLengthsBackward(v, R, dims);
  assert.ok(dv.every(Number.isFinite));
  assert.equal([...dv.subarray(5, 10)], [0, 0, 0, 0, 0]);
  const nonzero = v.map((x, k) => (k >= 5 && k < 10 ? 0.3 : x)); // FD only where |v| >> sqrt(1e-9)
  gradcheck(([v_]) => dot(capsuleLengths(v_, dims), R), [nonzero], [capsuleLengthsBackward(nonzero, R, dims)], 'lengths', TIGHT);
  assert.equal([...longestCapsule(Float64Array.from([0.1, 0.5, 0.2, 0.9, 0.3, 0.9]), 2, 3)], [1, 0]);
});

caps('mask: selected capsule only, index j*D + d; backward vs finite differences', () => {
  const dims = { B: 2, J: 3, D: 4 };
  const v = randomNormal(24, 57);
  const sel = [2, 0];
  const m = maskCapsules(v, dims, sel);
  const expected = new Float64Array(24);
  for (let d = 0; d < 4; d++) { expected[2 * 4 + d] = v[2 * 4 + d]; expected[12 + d] = v[12 + d]; }
  assert.equal([...m], [...expected]);
  const R = randomNormal(24, 58);
  gradcheck(([v_]) => dot(maskCapsules(v_, dims, sel), R), [v], [maskCapsulesBackward(R, dims, sel)], 'mask', TIGHT);
  assert.throws(() => maskCapsules(v, dims, [3, 0]), /not an index/);
});

// -------------------------------------------------------------------------------------------------
const routing = suite('reference routing');

/** uhat with some agreement structure: a shared direction per parent plus noise. */
function makeUhat(B: number, I: number, J: number, D: number, seed: number): Float64Array {
  const common = randomNormal(B * J * D, seed, 0.5);
  const noise = randomNormal(B * I * J * D, seed + 1, 0.4);
  const uhat = new Float64Array(B * I * J * D);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < I; i++)
      for (let j = 0; j < J; j++)
        for (let d = 0; d < D; d++) {
          const k = ((b * I + i) * J + j) * D + d;
          uhat[k] = (i % 3 === 0 ? 0 : common[(b * J + j) * D + d]) + noise[k];
        }
  return uhat;
}

routing('r = 1 is the uniform average (c = 1/J; leaky: 1/(J+1)), plus the bias', () => {
  const dims = { B: 2, I: 37, J: 3, D: 5 };
  const uhat = makeUhat(2, 37, 3, 5, 60);
  const bias = randomNormal(15, 61, 0.3);
  for (const leaky of [false, true]) {
    for (const withBias of [false, true]) {
      const { v, saved } = routingForward(uhat, dims, { iterations: 1, leaky, bias: withBias ? bias : null });
      const c = leaky ? 1 / 4 : 1 / 3;
      const s = new Float64Array(2 * 3 * 5);
      for (let b = 0; b < 2; b++)
        for (let j = 0; j < 3; j++)
          for (let d = 0; d < 5; d++) {
            let acc = withBias ? bias[j * 5 + d] : 0;
            for (let i = 0; i < 37; i++) acc += c * uhat[((b * 37 + i) * 3 + j) * 5 + d];
            s[(b * 3 + j) * 5 + d] = acc;
          }
      assertClose(saved.c[0], new Float64Array(2 * 37 * 3).fill(c), { atol: 0, rtol: 1e-15 }, 'c');
      assertClose(v, squash(s, 5), { atol: 1e-15, rtol: 1e-13 }, `r = 1 leaky ${leaky} bias ${withBias}`);
    }
  }
});

routing('coefficients sum to 1 (to < 1 when leaky); examples are routed independently', () => {
  const dims = { B: 3, I: 37, J: 4, D: 6 };
  const uhat = makeUhat(3, 37, 4, 6, 62);
  for (const leaky of [false, true]) {
    const { v, saved } = routingForward(uhat, dims, { iterations: 3, leaky });
    for (let t = 0; t < 3; t++)
      for (let row = 0; row < 3 * 37; row++) {
        let sum = 0;
        for (let j = 0; j < 4; j++) sum += saved.c[t][row * 4 + j];
        if (leaky) assert.ok(sum < 1 && sum > 0, `leaky sum ${sum}`);
        else assertClose([sum], [1], { atol: 1e-15, rtol: 0 }, 'softmax sum');
      }
    // iterations after the first move the coefficients away from uniform
    assert.ok(Math.abs(saved.c[2][0] - saved.c[0][0]) > 1e-3);
    // one example at a time gives the same answer: b is never shared across the batch
    for (let b = 0; b < 3; b++) {
      const one = routingForward(uhat.slice(b * 37 * 24, (b + 1) * 37 * 24), { B: 1, I: 37, J: 4, D: 6 }, { iterations: 3, leaky }).v;
      assertClose(one, v.subarray(b * 24, (b + 1) * 24), { atol: 0, rtol: 0 }, `example ${b}`);
    }
  }
});

routing('frozen logits at the base point reproduce the forward pass', () => {
  const dims = { B: 2, I: 37, J: 3, D: 7 };
  const uhat = makeUhat(2, 37, 3, 7, 63);
  const base = routingForward(uhat, dims, { iterations: 3, leaky: true });
  const frozen = routingForward(uhat, dims, { iterations: 3, leaky: true, frozenLogits: base.saved.logits[2] });
  assert.equal([...frozen.v], [...base.v]);
});

routing('the paper size (1152 children, 10 parents, 16-D) runs, finite, 3 iterations', () => {
  const dims = { B: 1, I: 1152, J: 10, D: 16 };
  const uhat = randomNormal(1152 * 10 * 16, 64, 0.05);
  const { v, saved } = routingForward(uhat, dims);
  assert.ok(v.every(Number.isFinite));
  assert.is(saved.c.length, 3);
  const len = capsuleLengths(v, { B: 1, J: 10, D: 16 });
  assert.ok(len.every((l) => l > 0 && l < 1));
});

for (const r of [1, 2, 3]) {
  for (const gradMode of ['all', 'last'] as const) {
    for (const leaky of [false, true]) {
      for (const withBias of [false, true]) {
        const D = 5 + ((r + (leaky ? 1 : 0)) % 3);
        const name = `backward vs finite differences: 2 x 37 children, 3 parents, D=${D}, r=${r}, ${gradMode}, leaky ${leaky}, bias ${withBias}`;
        routing(name, () => {
          const dims = { B: 2, I: 37, J: 3, D };
          const uhat = makeUhat(2, 37, 3, D, 70 + r);
          const bias = randomNormal(3 * D, 80 + r, 0.3);
          const opts: RoutingOptions = { iterations: r, gradMode, leaky, bias: withBias ? bias : null };
          const base = routingForward(uhat, dims, opts);
          const R = randomNormal(2 * 3 * D, 90 + r);
          const { duhat, dbias } = routingBackward(uhat, dims, base.saved, R, opts);
          const frozenLogits = gradMode === 'last' ? base.saved.logits[r - 1] : undefined;
          const f = (inputs: Float64Array[]) =>
            dot(routingForward(inputs[0], dims, { ...opts, bias: withBias ? inputs[1] : null, frozenLogits }).v, R);
          const inputs = withBias ? [uhat, bias] : [uhat];
          const analytic = withBias ? [duhat, dbias!] : [duhat];
          assert.is(dbias === null, !withBias);
          gradcheck(f, inputs, analytic, name, { ...TIGHT, maxPerInput: 600 });
          if (r > 1) {
            // the two modes really differ (and 'last' is not 'all' in disguise)
            const other = routingBackward(uhat, dims, base.saved, R, { ...opts, gradMode: gradMode === 'all' ? 'last' : 'all' });
            let diff = 0;
            for (let k = 0; k < duhat.length; k++) diff = Math.max(diff, Math.abs(other.duhat[k] - duhat[k]));
            assert.ok(diff > 1e-3, `grad modes differ by only ${diff}`);
          }
        });
      }
    }
  }
}

routing('r = 1: both grad modes give the same gradient', () => {
  const dims = { B: 2, I: 37, J: 3, D: 6 };
  const uhat = makeUhat(2, 37, 3, 6, 95);
  const opts = { iterations: 1, leaky: true, bias: randomNormal(18, 96) };
  const base = routingForward(uhat, dims, opts);
  const R = randomNormal(36, 97);
  const a = routingBackward(uhat, dims, base.saved, R, { ...opts, gradMode: 'all' });
  const l = routingBackward(uhat, dims, base.saved, R, { ...opts, gradMode: 'last' });
  assert.equal([...a.duhat], [...l.duhat]);
  assert.equal([...a.dbias!], [...l.dbias!]);
});

// -------------------------------------------------------------------------------------------------
const losses = suite('reference losses');

losses('margin loss by hand, multi-hot targets, and gradient vs finite differences', () => {
  // example 0: target 0 with length 0.5 -> 0.4^2; class 1 at 0.3 -> 0.5 * 0.2^2; class 2 at 0.05 -> 0
  // example 1 (two-hot 1, 2): class 0 at 0.95 -> 0.5 * 0.85^2; class 1 at 0.95 -> 0; class 2 at 0.6 -> 0.3^2
  const L = Float64Array.from([0.5, 0.3, 0.05, 0.95, 0.95, 0.6]);
  const T = Float64Array.from([1, 0, 0, 0, 1, 1]);
  const { loss, perExample } = marginLoss(L, T, 2, 3);
  assertClose(perExample, [0.16 + 0.02, 0.5 * 0.85 * 0.85 + 0.09], { atol: 1e-15, rtol: 1e-14 }, 'per example');
  assertClose([loss], [(0.18 + 0.36125 + 0.09) / 2], { atol: 1e-15, rtol: 1e-14 }, 'mean');
  const dL = marginLossBackward(L, T, 2, 3);
  // present: -2 (0.9 - L) / B; absent: 2 * 0.5 * (L - 0.1) / B
  assertClose(dL, [-0.4, 0.1, 0, 0.425, 0, -0.3], { atol: 1e-15, rtol: 1e-14 }, 'gradient by hand');
  const L2 = randomUniform(5 * 10, 100, 0, 1.2);
  const T2 = oneHot([3, 0, 9, 9, 1], 5, 10);
  gradcheck(([l]) => marginLoss(l, T2, 5, 10).loss, [L2], [marginLossBackward(L2, T2, 5, 10)], 'margin loss', TIGHT);
});

losses('reconstruction loss by hand and gradient vs finite differences', () => {
  const recon = Float64Array.from([0.5, 0.25, 1, 0]);
  const target = Float64Array.from([0, 0.25, 0, 0]);
  const { loss, perExample } = reconstructionLoss(recon, target, 2, 2);
  assertClose(perExample, [0.0005 * 0.25, 0.0005 * 1], { atol: 0, rtol: 1e-15 }, 'per example');
  assertClose([loss], [0.0005 * 1.25 / 2], { atol: 0, rtol: 1e-15 }, 'mean');
  const r2 = randomUniform(3 * 11, 101, 0, 1);
  const t2 = randomUniform(3 * 11, 102, 0, 1);
  gradcheck(([r]) => reconstructionLoss(r, t2, 3, 11).loss, [r2], [reconstructionLossBackward(r2, t2, 3, 11)], 'recon loss', { ...TIGHT, atol: 1e-11 });
});

losses('softmax cross-entropy by hand and gradient vs finite differences', () => {
  const { loss } = softmaxCrossEntropy(Float64Array.from([0, 0, 0, 1000, 0, 0]), [1, 0], 2, 3);
  assertClose([loss], [Math.log(3) / 2], { atol: 0, rtol: 1e-14 }, 'uniform + confident');
  const logits = randomNormal(4 * 7, 103, 2);
  const labels = [0, 6, 3, 3];
  gradcheck(([l]) => softmaxCrossEntropy(l, labels, 4, 7).loss, [logits], [softmaxCrossEntropyBackward(logits, labels, 4, 7)], 'cross-entropy', TIGHT);
});

// -------------------------------------------------------------------------------------------------
const dense = suite('reference dense');

dense('forward by hand', () => {
  const x = Float64Array.from([1, 2]);
  const W = Float64Array.from([1, -1, 0.5, 0.5]);
  const b = Float64Array.from([0.5, -1.5]);
  assert.equal([...denseForward(x, W, b, { B: 1, In: 2, Out: 2 })], [-0.5, 0]);
  assert.equal([...denseForward(x, W, b, { B: 1, In: 2, Out: 2 }, 'relu')], [0, 0]);
  assertClose(denseForward(x, W, b, { B: 1, In: 2, Out: 2 }, 'sigmoid'), [1 / (1 + Math.exp(0.5)), 0.5], { atol: 0, rtol: 1e-15 }, 'sigmoid');
});

for (const act of ['none', 'relu', 'sigmoid'] as Activation[]) {
  dense(`backward vs finite differences: 3 x 7 -> 5, ${act}`, () => {
    const dims = { B: 3, In: 7, Out: 5 };
    const x = randomNormal(21, 110);
    const W = randomNormal(35, 111, 0.6);
    const b = randomNormal(5, 112, 0.3);
    const y = denseForward(x, W, b, dims, act);
    const R = randomNormal(15, 113);
    const { dx, dW, db } = denseBackward(x, W, R, dims, act, y);
    gradcheck(([x_, w_, b_]) => dot(denseForward(x_, w_, b_, dims, act), R), [x, W, b], [dx, dW, db], `dense ${act}`, TIGHT);
  });
}

// -------------------------------------------------------------------------------------------------
const adam = suite('reference Adam and schedule');

adam('first step moves every parameter by lr against the gradient sign; second step by hand', () => {
  const p = Float64Array.from([1, -2, 0.5, 3]);
  const g = Float64Array.from([0.3, -1e-3, 50, 0]);
  const m = new Float64Array(4);
  const v = new Float64Array(4);
  const before = Float64Array.from(p);
  adamStep(p, g, m, v, 1, { lr: 0.01 });
  for (let k = 0; k < 3; k++) {
    // m_hat = g, v_hat = g^2: update = lr g / (|g| + eps)
    const expected = before[k] - (0.01 * g[k]) / (Math.abs(g[k]) + 1e-8);
    assertClose([p[k]], [expected], { atol: 0, rtol: 1e-15 }, `first step ${k}`);
    assertClose([Math.abs(p[k] - before[k])], [0.01], { atol: 0, rtol: 1e-5 }, `|update| ${k}`);
  }
  assert.is(p[3], before[3]); // zero gradient: no move
  assertClose(m, [0.03, -1e-4, 5, 0], { atol: 0, rtol: 1e-14 }, 'm');
  assertClose(v, [0.3 * 0.3 * 0.001, 1e-9, 2.5, 0], { atol: 0, rtol: 1e-12 }, 'v');
  // second step, gradient 0.1 on parameter 0
  const p1 = p[0];
  adamStep(p, Float64Array.from([0.1, 0, 0, 0]), m, v, 2, { lr: 0.01 });
  const m2 = 0.9 * 0.03 + 0.1 * 0.1;
  const v2 = 0.999 * 0.3 * 0.3 * 0.001 + 0.001 * 0.01;
  const upd = (0.01 * (m2 / (1 - 0.81))) / (Math.sqrt(v2 / (1 - 0.999 * 0.999)) + 1e-8);
  assertClose([p[0]], [p1 - upd], { atol: 0, rtol: 1e-14 }, 'second step');
  assert.throws(() => adamStep(p, g, m, v, 0), /step/);
});

adam('learning rate: lr0 * 0.96^floor(step / 2000), configurable', () => {
  assert.is(learningRate(0), 1e-3);
  assert.is(learningRate(1999), 1e-3);
  assertClose([learningRate(2000), learningRate(4000), learningRate(5999)], [0.96e-3, 0.9216e-3, 0.9216e-3], { atol: 0, rtol: 1e-14 }, 'decay');
  assertClose([learningRate(25, { lr0: 0.1, decayRate: 0.5, decaySteps: 10 })], [0.025], { atol: 0, rtol: 1e-15 }, 'custom');
});

// -------------------------------------------------------------------------------------------------
const model = suite('reference CapsNet');

model('parameter counts: paper config 8,215,568; without decoder 6,804,224', () => {
  assert.is(countCapsNetParams(capsNetConfig()), 8215568);
  assert.is(countCapsNetParams(capsNetConfig({ decoder: false })), 6804224);
  const shapes = capsNetParamShapes(capsNetConfig());
  assert.equal(shapes['conv1.weight'], [256, 1, 9, 9]);
  assert.equal(shapes['primary.weight'], [256, 256, 9, 9]);
  assert.equal(shapes['digit.W'], [1152, 10, 16, 8]);
  assert.equal(shapes['decoder.fc1.weight'], [512, 160]);
  assert.equal(shapes['decoder.fc2.weight'], [1024, 512]);
  assert.equal(shapes['decoder.fc3.weight'], [784, 1024]);
  assert.equal(shapes['decoder.fc3.bias'], [784]);
  assert.equal(Object.keys(shapes).length, 11);
  assert.is(PAPER_CONFIG.routings, 3);
});

function tinyConfig(overrides: Partial<CapsNetConfig> = {}): CapsNetConfig {
  return capsNetConfig({
    inputChannels: 1, inputSize: 12, conv1Channels: 4, conv1Kernel: 3, primaryTypes: 2, primaryDim: 4,
    primaryKernel: 3, primaryStride: 2, digitCaps: 3, digitDim: 5, decoderHidden: [6, 7], ...overrides,
  });
}

model('tiny config: shapes and the forward pass composed by hand', () => {
  const cfg = tinyConfig();
  const params = randomCapsNetParams(cfg, 1);
  const images = randomUniform(2 * 144, 120, 0, 1);
  const res = capsNetForward(params, cfg, { images, labels: [1, 2] });
  assert.is(res.acts.conv1.length, 2 * 4 * 10 * 10);
  assert.is(res.acts.u.length, 2 * 32 * 4); // grid 4 (floor(7/2) + 1), 2 types -> 32 capsules
  assert.is(res.v.length, 2 * 3 * 5);
  assert.is(res.reconstruction!.length, 2 * 144);
  assert.equal([...res.maskClasses!], [1, 2]);
  // the loss parts are the ops' losses
  const T = oneHot([1, 2], 2, 3);
  assertClose([res.marginLoss], [marginLoss(capsuleLengths(res.v, { B: 2, J: 3, D: 5 }), T, 2, 3).loss], { atol: 0, rtol: 1e-15 }, 'margin');
  assertClose([res.reconLoss], [reconstructionLoss(res.reconstruction!, images, 2, 144).loss], { atol: 0, rtol: 1e-15 }, 'recon');
  assertClose([res.loss], [res.marginLoss + res.reconLoss], { atol: 0, rtol: 1e-15 }, 'total');
  // test time: no labels -> the decoder sees the longest capsule
  const test = capsNetForward(params, cfg, { images, targets: T });
  assert.equal([...test.maskClasses!], [...test.predictions]);
  // without the decoder: no reconstruction, margin only
  const noDec = capsNetForward(randomCapsNetParams(tinyConfig({ decoder: false }), 1), tinyConfig({ decoder: false }), { images, labels: [1, 2] });
  assert.is(noDec.reconstruction, null);
  assert.is(noDec.loss, noDec.marginLoss);
});

const modelCases: Array<[string, Partial<CapsNetConfig>]> = [
  ['r=3, all, decoder', {}],
  ['r=3, last, leaky, bias, decoder', { gradMode: 'last', leaky: true, routingBias: true }],
  ['r=2, all, leaky, bias, no decoder', { routings: 2, leaky: true, routingBias: true, decoder: false }],
  ['r=1, 2 input channels, two-hot targets, paper recon weight', { routings: 1, inputChannels: 2, reconWeight: 0.0005 }],
];

for (const [name, overrides] of modelCases) {
  model(`tiny config (${name}): every parameter's gradient vs finite differences`, () => {
    // a larger reconstruction weight than the paper's 0.0005, so the decoder's gradients are O(0.01)
    // rather than O(1e-5) and the absolute tolerance below means something for them
    const cfg = tinyConfig({ reconWeight: 0.25, ...overrides });
    const params = randomCapsNetParams(cfg, 2);
    // keep the decoder's ReLUs alive (6 and 7 hidden units could otherwise all be off)
    for (const n of ['decoder.fc1.bias', 'decoder.fc2.bias']) params[n]?.forEach((x, k, a) => { a[k] = Math.abs(x); });
    const B = 2;
    const images = randomUniform(B * cfg.inputChannels * 144, 121, 0, 1);
    // a separate reconstruction target, so that perturbing the images moves only the network's input
    const reconTargets = Float64Array.from(images);
    const batch = cfg.inputChannels === 2
      ? { images, reconTargets, targets: Float64Array.from([1, 0, 1, 0, 1, 1]), maskClasses: [2, 1] }
      : { images, reconTargets, labels: [1, 2] };
    const base = capsNetForward(params, cfg, batch);
    const frozenRoutingLogits = cfg.gradMode === 'last' ? base.acts.routing.logits[cfg.routings - 1] : undefined;
    const { grads, dImages } = base.backward();
    const names = Object.keys(capsNetParamShapes(cfg));
    assert.equal(Object.keys(grads), names);
    // the arrays gradcheck perturbs in place are the ones capsNetForward reads
    const f = () => capsNetForward(params, cfg, batch, { frozenRoutingLogits }).loss;
    gradcheck(f, [...names.map((n) => params[n]), images], [...names.map((n) => grads[n]), dImages], `capsnet ${name}`,
      { eps: 1e-6, atol: 1e-9, rtol: 1e-5, maxPerInput: 300 });
    for (const n of names) assert.ok(grads[n].some((g) => g !== 0), `${n} has a nonzero gradient`);
  });
}

model('paper config, batch 1: forward and backward run at the real shapes (about 3 s)', () => {
  const cfg = capsNetConfig();
  const params = randomCapsNetParams(cfg, 3);
  const res = capsNetForward(params, cfg, { images: randomUniform(784, 130, 0, 1), labels: [7] });
  assert.is(res.acts.u.length, 1152 * 8);
  assert.is(res.v.length, 160);
  assert.is(res.reconstruction!.length, 784);
  assert.ok(Number.isFinite(res.loss) && res.loss > 0);
  const { grads } = res.backward();
  for (const [name, shape] of Object.entries(capsNetParamShapes(cfg))) {
    assert.is(grads[name].length, shape.reduce((a, b) => a * b), name);
    assert.ok(grads[name].every(Number.isFinite), name);
  }
});

conv.run();
sq.run();
caps.run();
routing.run();
losses.run();
dense.run();
adam.run();
model.run();
