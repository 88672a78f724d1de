// Image grids for figures (pure, no I/O): model inputs and reconstructions are float tensors with
// values in [0, 1]; these lay them out in a grid of 8-bit pixels ready for encodePng.

export interface RasterImage {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  /** Row-major, channels interleaved, top row first. */
  pixels: Uint8Array;
}

/** A colour with components in [0, 1]. */
export type Rgb = readonly [number, number, number];

export interface GridOptions {
  /** Cells per row; default ceil(sqrt(count)), a near-square grid. */
  columns?: number;
  /** Gap in output pixels around and between cells (like torchvision's make_grid). */
  padding?: number;
  /** Integer magnification of each cell (nearest neighbour); padding is not magnified. */
  scale?: number;
}

/** One layer of a tinted grid: `count` grey images [N, H, W] drawn in `color`. */
export interface TintedLayer {
  images: Float32Array;
  color: Rgb;
}

/** A float in [0, 1] as a byte: clamped, rounded; NaN becomes 0 so a diverged model still draws. */
export function toByte(v: number): number {
  return v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0;
}

/**
 * `count` grey images [N, H, W] (values in [0, 1], clamped) in a grid: cell k at row floor(k / columns),
 * column k % columns. `background` (in [0, 1]) fills the padding and unused cells.
 */
export function imageGrid(
  images: Float32Array, count: number, height: number, width: number,
  options: GridOptions & { background?: number } = {},
): RasterImage {
  const layout = gridLayout(count, height, width, options);
  if (images.length !== count * height * width) {
    throw new RangeError(`imageGrid: ${count} images of ${height}x${width} need ${count * height * width} values, got ${images.length}`);
  }
  const out = new Uint8Array(layout.width * layout.height).fill(toByte(options.background ?? 0));
  drawCells(layout, count, height, width, 1, (k, y, x, px, o) => {
    o[px] = toByte(images[(k * height + y) * width + x]);
  }, out);
  return { width: layout.width, height: layout.height, channels: 1, pixels: out };
}

/**
 * A colour grid, from either
 * - colour images [N, 3, H, W] (planar, as a model produces them), or
 * - layers of grey images each drawn in its colour: the colour at a pixel is the background moved
 *   towards each layer's colour by that layer's value, the moves summed and clamped. On black, two
 *   overlaid digits in red and green show yellow where they overlap; on white a single layer fades
 *   from white to its colour.
 * `background` is a grey level or a colour, in [0, 1].
 */
export function rgbGrid(
  source: Float32Array | readonly TintedLayer[], count: number, height: number, width: number,
  options: GridOptions & { background?: number | Rgb } = {},
): RasterImage {
  const layout = gridLayout(count, height, width, options);
  const bgOption = options.background ?? 0;
  const bg: Rgb = typeof bgOption === 'number' ? [bgOption, bgOption, bgOption] : bgOption;
  const plane = height * width;
  let pixel: (k: number, y: number, x: number, c: number) => number;
  if (source instanceof Float32Array) {
    if (source.length !== count * 3 * plane) {
      throw new RangeError(`rgbGrid: ${count} colour images of 3x${height}x${width} need ${count * 3 * plane} values, got ${source.length}`);
    }
    pixel = (k, y, x, c) => source[(k * 3 + c) * plane + y * width + x];
  } else {
    if (source.length === 0) throw new RangeError('rgbGrid: no layers given');
    source.forEach((layer, i) => {
      if (layer.images.length !== count * plane) {
        throw new RangeError(`rgbGrid: layer ${i} needs ${count} grey images of ${height}x${width} (${count * plane} values), got ${layer.images.length}`);
      }
    });
    pixel = (k, y, x, c) => {
      let v = bg[c];
      for (const layer of source) v += layer.images[k * plane + y * width + x] * (layer.color[c] - bg[c]);
      return v;
    };
  }
  const out = new Uint8Array(layout.width * layout.height * 3);
  for (let i = 0; i < out.length; i += 3) out.set([toByte(bg[0]), toByte(bg[1]), toByte(bg[2])], i);
  drawCells(layout, count, height, width, 3, (k, y, x, px, o) => {
    for (let c = 0; c < 3; c++) o[px + c] = toByte(pixel(k, y, x, c));
  }, out);
  return { width: layout.width, height: layout.height, channels: 3, pixels: out };
}

/** `image` magnified `factor` times in each direction, each pixel becoming a factor x factor block. */
export function upscaleNearest(image: RasterImage, factor: number): RasterImage {
  if (!Number.isInteger(factor) || factor < 1) throw new RangeError(`upscaleNearest: factor must be a positive integer, got ${factor}`);
  const { width, height, channels, pixels } = image;
  if (pixels.length !== width * height * channels) {
    throw new RangeError(`upscaleNearest: a ${width}x${height}x${channels} image needs ${width * height * channels} bytes, got ${pixels.length}`);
  }
  const W = width * factor;
  const out = new Uint8Array(W * height * factor * channels);
  for (let y = 0; y < height; y++) {
    // Build one magnified row, then copy it factor times.
    const rowStart = y * factor * W * channels;
    for (let x = 0; x < width; x++) {
      const src = pixels.subarray((y * width + x) * channels, (y * width + x + 1) * channels);
      for (let d = 0; d < factor; d++) out.set(src, rowStart + (x * factor + d) * channels);
    }
    for (let d = 1; d < factor; d++) out.copyWithin(rowStart + d * W * channels, rowStart, rowStart + W * channels);
  }
  return { width: W, height: height * factor, channels, pixels: out };
}

// ---- shared layout -----------------------------------------------------------------------------

interface Layout { columns: number; padding: number; scale: number; width: number; height: number }

function gridLayout(count: number, height: number, width: number, options: GridOptions): Layout {
  for (const [name, v] of [['count', count], ['height', height], ['width', width]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`image grid: ${name} must be a positive integer, got ${v}`);
  }
  const columns = options.columns ?? Math.ceil(Math.sqrt(count));
  const padding = options.padding ?? 2;
  const scale = options.scale ?? 1;
  if (!Number.isInteger(columns) || columns < 1) throw new RangeError(`image grid: columns must be a positive integer, got ${columns}`);
  if (!Number.isInteger(padding) || padding < 0) throw new RangeError(`image grid: padding must be a non-negative integer, got ${padding}`);
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`image grid: scale must be a positive integer, got ${scale}`);
  const rows = Math.ceil(count / columns);
  return {
    columns, padding, scale,
    width: columns * (width * scale + padding) + padding,
    height: rows * (height * scale + padding) + padding,
  };
}

/** Calls `put` for every output pixel of every cell with the source image index and coordinates. */
function drawCells(
  layout: Layout, count: number, height: number, width: number, channels: number,
  put: (k: number, y: number, x: number, px: number, out: Uint8Array) => void, out: Uint8Array,
): void {
  const { columns, padding, scale } = layout;
  for (let k = 0; k < count; k++) {
    const top = padding + Math.floor(k / columns) * (height * scale + padding);
    const left = padding + (k % columns) * (width * scale + padding);
    for (let oy = 0; oy < height * scale; oy++) {
      for (let ox = 0; ox < width * scale; ox++) {
        put(k, Math.floor(oy / scale), Math.floor(ox / scale), ((top + oy) * layout.width + left + ox) * channels, out);
      }
    }
  }
}
