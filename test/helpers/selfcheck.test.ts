// The comparison helpers themselves must be able to fail.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './assert.ts';
import { randomUniform } from './random.ts';

const helpers = suite('test helpers');

helpers('assertClose passes within tolerance and fails outside it', () => {
  assertClose([1, 2.00001], [1, 2], { atol: 1e-4, rtol: 0 }, 'close');
  assert.throws(() => assertClose([1, 2.1], [1, 2], { atol: 1e-4, rtol: 1e-4 }, 'far'), /far: 1 of 2/);
  assert.throws(() => assertClose([NaN], [0], { atol: 1, rtol: 1 }, 'nan'), /nan/);
  assert.throws(() => assertClose([1], [1, 2], { atol: 1, rtol: 1 }, 'len'), /length/);
});

helpers('seeded random data is reproducible and seed-dependent', () => {
  assert.equal(Array.from(randomUniform(5, 7)), Array.from(randomUniform(5, 7)));
  assert.not.equal(Array.from(randomUniform(5, 7)), Array.from(randomUniform(5, 8)));
});

helpers.run();
