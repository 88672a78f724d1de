// From a drawing to what the model expects, the way MNIST's digits were made (LeCun et al.): the
// ink's bounding box is scaled, keeping its aspect ratio, to fit a 20x20 box (area averaging, so
// strokes stay anti-aliased), the result is scaled to a peak of 1, and it is placed in a 28x28
// field so that its centre of mass sits at the centre. Pure (no DOM): tested in test/web.test.ts.

export interface NormalizeOptions {
  /** Output side (28). */
  size?: number;
  /** Side of the box the ink is scaled to fit (20). */
  box?: number;
  /** Intensities at or below this are background when finding the ink (0.05). */
  threshold?: number;
}

/**
 * Area-average resampling of the rectangle [x0, x0 + w) x [y0, y0 + h) of `src` (sw x sh, row-major)
 * to dw x dh: each output pixel is the mean of the source over its footprint (fractional pixels
 * weighted by coverage).
 */
export function resampleArea(
  src: ArrayLike<number>, sw: number, sh: number,
  x0: number, y0: number, w: number, h: number, dw: number, dh: number,
): Float32Array {
  if (x0 < 0 || y0 < 0 || x0 + w > sw || y0 + h > sh || w <= 0 || h <= 0) {
    throw new RangeError(`resampleArea: rectangle ${x0},${y0} ${w}x${h} is not inside ${sw}x${sh}`);
  }
  // Horizontal pass into [h, dw], then vertical into [dh, dw].
  const weights = (n: number, dn: number) => {
    const f = n / dn; // source pixels per output pixel
    const out: Array<Array<[number, number]>> = [];
    for (let o = 0; o < dn; o++) {
      const a = o * f;
      const b = (o + 1) * f;
      const taps: Array<[number, number]> = [];
      for (let s = Math.floor(a); s < Math.min(n, Math.ceil(b)); s++) {
        const cover = Math.min(b, s + 1) - Math.max(a, s);
        if (cover > 0) taps.push([s, cover / f]);
      }
      out.push(taps);
    }
    return out;
  };
  const wx = weights(w, dw);
  const wy = weights(h, dh);
  const rows = new Float32Array(h * dw);
  for (let y = 0; y < h; y++) {
    const base = (y0 + y) * sw + x0;
    for (let o = 0; o < dw; o++) {
      let acc = 0;
      for (const [s, k] of wx[o]) acc += src[base + s] * k;
      rows[y * dw + o] = acc;
    }
  }
  const out = new Float32Array(dh * dw);
  for (let o = 0; o < dh; o++) {
    for (let x = 0; x < dw; x++) {
      let acc = 0;
      for (const [s, k] of wy[o]) acc += rows[s * dw + x] * k;
      out[o * dw + x] = acc;
    }
  }
  return out;
}

/**
 * A drawing (intensities in [0, 1], `width` x `height`, ink bright on dark) as an MNIST-like
 * size x size image, or null when there is no ink.
 */
export function normalizeDrawing(src: ArrayLike<number>, width: number, height: number, options: NormalizeOptions = {}): Float32Array | null {
  const size = options.size ?? 28;
  const box = options.box ?? 20;
  const threshold = options.threshold ?? 0.05;
  if (src.length !== width * height) throw new RangeError(`normalizeDrawing: ${src.length} values for ${width}x${height}`);
  let [left, top, right, bottom] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (src[y * width + x] > threshold) {
        if (x < left) left = x;
        if (x > right) right = x;
        if (y < top) top = y;
        if (y > bottom) bottom = y;
      }
    }
  }
  if (right < 0) return null;
  const w = right - left + 1;
  const h = bottom - top + 1;
  const scale = box / Math.max(w, h);
  const dw = Math.max(1, Math.round(w * scale));
  const dh = Math.max(1, Math.round(h * scale));
  const small = resampleArea(src, width, height, left, top, w, h, dw, dh);
  let peak = 0;
  for (const v of small) peak = Math.max(peak, v);
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) {
      const v = small[y * dw + x] / peak;
      small[y * dw + x] = Math.min(1, v);
      mass += v;
      mx += v * x;
      my += v * y;
    }
  }
  // The centre of mass (in pixel indices) goes to the centre of the field, (size - 1) / 2.
  const ox = Math.round((size - 1) / 2 - mx / mass);
  const oy = Math.round((size - 1) / 2 - my / mass);
  const out = new Float32Array(size * size);
  for (let y = 0; y < dh; y++) {
    const ty = y + oy;
    if (ty < 0 || ty >= size) continue;
    for (let x = 0; x < dw; x++) {
      const tx = x + ox;
      if (tx >= 0 && tx < size) out[ty * size + tx] = small[y * dw + x];
    }
  }
  return out;
}

/** The index of the largest value (the first on ties). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}
