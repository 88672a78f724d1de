// Image grids: exact pixel placement on tiny made-up images, clamping, colour modes, upscaling.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { imageGrid, rgbGrid, toByte, upscaleNearest, type RasterImage } from '../src/io/images.ts';

const images = suite('image grids');

/** Rows of an image as arrays (of pixels, or of [r, g, b] for colour), for readable comparisons. */
function rows(img: RasterImage): Array<Array<number | number[]>> {
  return Array.from({ length: img.height }, (_, y) =>
    Array.from({ length: img.width }, (_, x) => {
      const at = (y * img.width + x) * img.channels;
      return img.channels === 1 ? img.pixels[at] : Array.from(img.pixels.subarray(at, at + img.channels));
    }));
}

/** `count` grey h x w images whose pixel (k, y, x) is byte k*h*w + y*w + x + 1, as floats. */
function numbered(count: number, h: number, w: number): Float32Array {
  return Float32Array.from({ length: count * h * w }, (_, i) => (i + 1) / 255);
}

images('grey grid: cells in row-major order, padding around and between, background in the gaps', () => {
  const g = imageGrid(numbered(3, 2, 3), 3, 2, 3, { columns: 2, padding: 1, background: 0.5 });
  const B = 128; // round(0.5 * 255)
  assert.equal([g.width, g.height, g.channels], [9, 7, 1]);
  assert.equal(rows(g), [
    [B, B, B, B, B, B, B, B, B],
    [B, 1, 2, 3, B, 7, 8, 9, B],
    [B, 4, 5, 6, B, 10, 11, 12, B],
    [B, B, B, B, B, B, B, B, B],
    [B, 13, 14, 15, B, B, B, B, B],
    [B, 16, 17, 18, B, B, B, B, B],
    [B, B, B, B, B, B, B, B, B],
  ]);
});

images('values are clamped to [0, 1] and rounded; NaN draws as 0', () => {
  const g = imageGrid(Float32Array.of(-1, 0, 0.2 / 255, 0.6 / 255, 0.5, 1, 7, NaN, Infinity, -Infinity), 1, 1, 10, { padding: 0 });
  assert.equal(Array.from(g.pixels), [0, 0, 0, 1, 128, 255, 255, 0, 255, 0]);
  assert.is(toByte(254.4 / 255), 254);
  assert.is(toByte(254.6 / 255), 255);
});

images('scale magnifies each cell but not the padding; matches upscaleNearest of the unpadded grid', () => {
  const g = imageGrid(Float32Array.of(1, 2, 3, 4).map((v) => v / 255), 1, 2, 2, { padding: 1, scale: 2 });
  assert.equal(rows(g), [
    [0, 0, 0, 0, 0, 0],
    [0, 1, 1, 2, 2, 0],
    [0, 1, 1, 2, 2, 0],
    [0, 3, 3, 4, 4, 0],
    [0, 3, 3, 4, 4, 0],
    [0, 0, 0, 0, 0, 0],
  ]);
  const data = numbered(5, 3, 4);
  const scaled = imageGrid(data, 5, 3, 4, { columns: 1, padding: 0, scale: 3 });
  const reference = upscaleNearest(imageGrid(data, 5, 3, 4, { columns: 1, padding: 0 }), 3);
  assert.equal([scaled.width, scaled.height], [12, 45]);
  assert.equal(scaled.pixels, reference.pixels);
});

images('default columns make a near-square grid; unused cells are background', () => {
  const g = imageGrid(numbered(5, 1, 1), 5, 1, 1, { padding: 0, background: 1 });
  assert.equal(rows(g), [[1, 2, 3], [4, 5, 255]]);
  assert.equal([imageGrid(numbered(16, 1, 1), 16, 1, 1).width, imageGrid(numbered(17, 1, 1), 17, 1, 1).width], [4 * 3 + 2, 5 * 3 + 2]);
});

images('colour grid from planar [N, 3, H, W] images', () => {
  // Image k, channel c, pixel x (1 x 2 images): byte 100k + 10c + x + 1.
  const data = new Float32Array(2 * 3 * 2);
  for (let k = 0; k < 2; k++) for (let c = 0; c < 3; c++) for (let x = 0; x < 2; x++) data[(k * 3 + c) * 2 + x] = (100 * k + 10 * c + x + 1) / 255;
  const g = rgbGrid(data, 2, 1, 2, { columns: 2, padding: 1, background: [1, 0, 0] });
  const R = [255, 0, 0];
  assert.equal([g.width, g.height, g.channels], [7, 3, 3]);
  assert.equal(rows(g), [
    [R, R, R, R, R, R, R],
    [R, [1, 11, 21], [2, 12, 22], R, [101, 111, 121], [102, 112, 122], R],
    [R, R, R, R, R, R, R],
  ]);
});

images('tinted layers: overlaid digits in two colours mix where they overlap; on white a layer fades to its colour', () => {
  // Two 1 x 3 "digits": the first inks pixels 0 and 1, the second pixels 1 and 2.
  const a = Float32Array.of(1, 1, 0);
  const b = Float32Array.of(0, 1, 1);
  const g = rgbGrid([{ images: a, color: [1, 0, 0] }, { images: b, color: [0, 1, 0] }], 1, 1, 3, { padding: 0 });
  assert.equal(rows(g), [[[255, 0, 0], [255, 255, 0], [0, 255, 0]]]);
  const white = rgbGrid([{ images: Float32Array.of(0, 0.5, 1), color: [0, 0, 1] }], 1, 1, 3, { padding: 1, background: 1 });
  assert.equal(rows(white)[1], [[255, 255, 255], [255, 255, 255], [128, 128, 255], [0, 0, 255], [255, 255, 255]]);
  // Several images per layer go to their own cells.
  const two = rgbGrid([{ images: Float32Array.of(1, 0), color: [0, 0, 1] }], 2, 1, 1, { padding: 0, columns: 2 });
  assert.equal(rows(two), [[[0, 0, 255], [0, 0, 0]]]);
});

images('upscaleNearest: every output pixel is the input pixel at floor(y / f), floor(x / f)', () => {
  const src: RasterImage = { width: 3, height: 2, channels: 3, pixels: Uint8Array.from({ length: 18 }, (_, i) => i * 13) };
  for (const f of [1, 2, 3]) {
    const up = upscaleNearest(src, f);
    assert.equal([up.width, up.height, up.channels], [3 * f, 2 * f, 3]);
    for (let y = 0; y < up.height; y++) {
      for (let x = 0; x < up.width; x++) {
        const s = (Math.floor(y / f) * 3 + Math.floor(x / f)) * 3;
        const o = (y * up.width + x) * 3;
        assert.equal(Array.from(up.pixels.subarray(o, o + 3)), Array.from(src.pixels.subarray(s, s + 3)), `f=${f} (${x}, ${y})`);
      }
    }
  }
});

images('bad arguments are refused with messages naming them', () => {
  assert.throws(() => imageGrid(new Float32Array(5), 1, 2, 3), /1 images of 2x3 need 6 values, got 5/);
  assert.throws(() => imageGrid(new Float32Array(0), 0, 2, 3), /count must be a positive integer, got 0/);
  assert.throws(() => imageGrid(new Float32Array(6), 1, 2, 3, { columns: 0 }), /columns must be a positive integer/);
  assert.throws(() => imageGrid(new Float32Array(6), 1, 2, 3, { padding: -1 }), /padding must be a non-negative integer/);
  assert.throws(() => imageGrid(new Float32Array(6), 1, 2, 3, { scale: 1.5 }), /scale must be a positive integer/);
  assert.throws(() => rgbGrid(new Float32Array(6), 1, 2, 3), /1 colour images of 3x2x3 need 18 values, got 6/);
  assert.throws(() => rgbGrid([], 1, 2, 3), /no layers/);
  assert.throws(() => rgbGrid([{ images: new Float32Array(6), color: [1, 0, 0] }, { images: new Float32Array(5), color: [0, 1, 0] }], 1, 2, 3), /layer 1 needs 1 grey images of 2x3 \(6 values\), got 5/);
  assert.throws(() => upscaleNearest({ width: 2, height: 2, channels: 1, pixels: new Uint8Array(4) }, 0), /factor must be a positive integer/);
  assert.throws(() => upscaleNearest({ width: 2, height: 2, channels: 3, pixels: new Uint8Array(4) }, 2), /needs 12 bytes, got 4/);
});

images.run();
