// PNG encode/decode for the subset the figures need: 8-bit grey, RGB and RGBA, not interlaced.
// Written by hand (node:zlib for deflate only) so the project has no image dependency. The decoder
// exists to read our own figures back in tests and tools, but accepts any encoder's output in that
// subset (all five row filters, several IDAT chunks, ancillary chunks) and names what is wrong
// with anything else.

import { deflateSync, inflateSync } from 'node:zlib';

export type PngChannels = 1 | 3 | 4;

export interface PngImage {
  width: number;
  height: number;
  channels: PngChannels;
  /** Row-major, channels interleaved (RGBRGB...), top row first. */
  pixels: Uint8Array;
}

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
const COLOUR_TYPE: Record<PngChannels, number> = { 1: 0, 3: 2, 4: 6 };
const CHANNELS_OF_COLOUR_TYPE: Record<number, PngChannels> = { 0: 1, 2: 3, 6: 4 };
const COLOUR_TYPE_NAMES: Record<number, string> = { 0: 'grey', 2: 'RGB', 3: 'palette', 4: 'grey + alpha', 6: 'RGBA' };
/** The PNG spec caps width, height and chunk lengths at 2^31 - 1. */
const MAX_DIMENSION = 0x7fffffff;
/** Largest decoded image accepted (bytes of pixels): a guard against decompression bombs. */
export const MAX_PNG_PIXEL_BYTES = 1 << 30;

// ---- CRC-32 (ISO 3309, the one PNG and zlib use), table-driven ----------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 of `bytes`; pass a previous result as `crc` to continue over several pieces. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- encoding ----------------------------------------------------------------------------------

/**
 * An 8-bit PNG of `pixels` (row-major, channels interleaved). Each row gets the filter (of the five)
 * whose output has the smallest sum of absolute signed bytes: libpng's heuristic, which makes
 * digit grids and charts compress several times better than no filtering.
 */
export function encodePng(width: number, height: number, channels: PngChannels, pixels: Uint8Array): Uint8Array {
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_DIMENSION) throw new RangeError(`encodePng: ${name} must be an integer from 1 to ${MAX_DIMENSION}, got ${v}`);
  }
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new RangeError(`encodePng: channels must be 1 (grey), 3 (RGB) or 4 (RGBA), got ${channels}`);
  if (!(pixels instanceof Uint8Array)) throw new TypeError('encodePng: pixels must be a Uint8Array');
  const stride = width * channels;
  if (pixels.length !== stride * height) {
    throw new RangeError(`encodePng: ${width}x${height}x${channels} needs ${stride * height} bytes of pixels, got ${pixels.length}`);
  }

  const filtered = new Uint8Array((stride + 1) * height);
  const candidates = Array.from({ length: 5 }, () => new Uint8Array(stride));
  const zeros = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const prior = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : zeros;
    let best = 0;
    let bestCost = Infinity;
    for (let f = 0; f < 5; f++) {
      const out = candidates[f];
      let cost = 0;
      for (let i = 0; i < stride; i++) {
        const a = i >= channels ? row[i - channels] : 0;
        const c = i >= channels ? prior[i - channels] : 0;
        const v = (row[i] - predict(f, a, prior[i], c)) & 0xff;
        out[i] = v;
        cost += v < 128 ? v : 256 - v;
      }
      if (cost < bestCost) [best, bestCost] = [f, cost];
    }
    filtered[y * (stride + 1)] = best;
    filtered.set(candidates[best], y * (stride + 1) + 1);
  }

  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, COLOUR_TYPE[channels], 0, 0, 0], 8); // bit depth, colour type, compression, filter, interlace
  const idat = deflateSync(filtered, { level: 9 });
  const parts = [SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The predictor of PNG filter `f` from the left (a), above (b) and upper-left (c) bytes. */
function predict(f: number, a: number, b: number, c: number): number {
  switch (f) {
    case 0: return 0;
    case 1: return a;
    case 2: return b;
    case 3: return (a + b) >>> 1;
    default: { // Paeth
      const p = a + b - c;
      const pa = Math.abs(p - a);
      const pb = Math.abs(p - b);
      const pc = Math.abs(p - c);
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
  }
}

/** length, type, data, CRC of type + data. */
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

// ---- decoding ----------------------------------------------------------------------------------

/** Decodes an 8-bit grey, RGB or RGBA non-interlaced PNG. `name` (a file name) starts every error message. */
export function decodePng(bytes: Uint8Array, name = 'PNG'): PngImage {
  const fail = (why: string): never => {
    throw new Error(`${name}: ${why}`);
  };
  if (bytes.length < SIGNATURE.length || SIGNATURE.some((b, i) => bytes[i] !== b)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: { width: number; height: number; channels: PngChannels } | undefined;
  const idat: Uint8Array[] = [];
  let ended = false;
  let at = SIGNATURE.length;
  while (!ended) {
    if (at + 12 > bytes.length) fail(`truncated: ${at === bytes.length ? 'no IEND chunk' : `chunk header at byte ${at} is cut short`}`);
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (!/^[A-Za-z]{4}$/.test(type)) fail(`bad chunk type ${JSON.stringify(type)} at byte ${at}`);
    if (length > MAX_DIMENSION) fail(`chunk ${type} at byte ${at} has length ${length}, over the 2^31 - 1 limit`);
    if (at + 12 + length > bytes.length) fail(`truncated: chunk ${type} at byte ${at} needs ${length} bytes of data, ${Math.max(0, bytes.length - at - 12)} left`);
    const data = bytes.subarray(at + 8, at + 8 + length);
    const stored = view.getUint32(at + 8 + length);
    const actual = crc32(bytes.subarray(at + 4, at + 8 + length));
    if (stored !== actual) fail(`CRC mismatch in chunk ${type} at byte ${at} (stored ${hex(stored)}, computed ${hex(actual)})`);
    if (!header && type !== 'IHDR') fail(`the first chunk must be IHDR, found ${type}`);
    switch (type) {
      case 'IHDR':
        if (header) fail('more than one IHDR chunk');
        header = parseHeader(data, fail);
        break;
      case 'IDAT':
        idat.push(data);
        break;
      case 'IEND':
        ended = true;
        break;
      case 'PLTE': // a suggested palette for RGB(A) images: harmless to ignore (palette images are refused in IHDR)
        break;
      default:
        // Bit 5 of the first letter (lower case) marks an ancillary chunk, safe to skip; an unknown
        // critical chunk means we would misread the image.
        if (type.charCodeAt(0) & 0x20) break;
        fail(`unsupported critical chunk ${type}`);
    }
    at += 12 + length;
  }
  if (idat.length === 0) fail('no IDAT chunk (no image data)');
  const { width, height, channels } = header!;
  const stride = width * channels;
  const expected = (stride + 1) * height;
  if (stride * height > MAX_PNG_PIXEL_BYTES) fail(`${width}x${height}x${channels} is over the ${MAX_PNG_PIXEL_BYTES}-byte limit`);

  let raw: Uint8Array;
  try {
    raw = inflateSync(concat(idat), { maxOutputLength: expected + 1 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    raw = fail(err.code === 'ERR_BUFFER_TOO_LARGE'
      ? `image data inflates to more than the ${expected} bytes a ${width}x${height}x${channels} image needs`
      : `corrupt image data (zlib: ${err.message})`);
  }
  if (raw.length !== expected) fail(`image data inflates to ${raw.length} bytes, a ${width}x${height}x${channels} image needs ${expected}`);

  const pixels = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    if (f > 4) fail(`row ${y} has unknown filter type ${f}`);
    const src = y * (stride + 1) + 1;
    const dst = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[dst + i - channels] : 0;
      const b = y > 0 ? pixels[dst - stride + i] : 0;
      const c = y > 0 && i >= channels ? pixels[dst - stride + i - channels] : 0;
      pixels[dst + i] = (raw[src + i] + predict(f, a, b, c)) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

function parseHeader(data: Uint8Array, fail: (why: string) => never): { width: number; height: number; channels: PngChannels } {
  if (data.length !== 13) fail(`IHDR has ${data.length} bytes, not 13`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const width = view.getUint32(0);
  const height = view.getUint32(4);
  const [depth, colourType, compression, filter, interlace] = data.subarray(8, 13);
  if (width < 1 || width > MAX_DIMENSION || height < 1 || height > MAX_DIMENSION) fail(`IHDR: invalid size ${width}x${height}`);
  const channels = CHANNELS_OF_COLOUR_TYPE[colourType];
  if (!channels) {
    const what = COLOUR_TYPE_NAMES[colourType] ?? 'invalid';
    fail(`IHDR: colour type ${colourType} (${what}) is not supported; only grey (0), RGB (2) and RGBA (6)`);
  }
  if (depth !== 8) fail(`IHDR: bit depth ${depth} is not supported; only 8`);
  if (compression !== 0) fail(`IHDR: unknown compression method ${compression}`);
  if (filter !== 0) fail(`IHDR: unknown filter method ${filter}`);
  if (interlace !== 0) fail(interlace === 1 ? 'IHDR: interlaced (Adam7) images are not supported' : `IHDR: unknown interlace method ${interlace}`);
  return { width, height, channels };
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
