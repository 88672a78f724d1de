// IDX reader (the format of the MNIST files, http://yann.lecun.com/exdb/mnist/). Pure: bytes in,
// typed arrays out, so the same code runs in Node and in the browser.
//
// Layout: magic = 0x00 0x00 <type code> <dimension count>, then one big-endian u32 per dimension,
// then the elements, row-major. Only type code 0x08 (unsigned byte) is supported: every MNIST-like
// data set uses it.

import type { Dataset } from './dataset.ts';

export interface IdxArray {
  dims: number[];
  /** A view into the input bytes (no copy), dims.reduce(*) elements. */
  data: Uint8Array;
}

export interface IdxImages {
  count: number;
  height: number;
  width: number;
  /** count * height * width bytes, row-major. */
  data: Uint8Array;
}

export interface IdxLabels {
  count: number;
  data: Uint8Array;
}

const TYPE_NAMES: Record<number, string> = {
  0x08: 'unsigned byte', 0x09: 'signed byte', 0x0b: 'i16', 0x0c: 'i32', 0x0d: 'f32', 0x0e: 'f64',
};

/**
 * Upper bound on the declared element count, checked before anything else is done with the sizes:
 * four u32 dimensions can declare 2^128 elements, which would silently lose precision as a double.
 * 2^31 bytes is far beyond any IDX data set in use (MNIST train: 47 MB).
 */
export const MAX_IDX_ELEMENTS = 2 ** 31;

const hex = (n: number, digits: number) => '0x' + n.toString(16).padStart(digits, '0');

/** Parse IDX bytes. `source` (a file name) is put in every error message. */
export function parseIdx(bytes: Uint8Array, source: string): IdxArray {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw new Error(`${source}: the bytes are gzipped: decompress first (gzip magic 1f 8b, expected IDX magic 00 00 08 xx)`);
  }
  if (bytes.length < 4) {
    throw new Error(`${source}: ${bytes.length} bytes is too short for the 4-byte IDX magic number`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${source}: magic number ${hex(magic, 8)} does not start with two zero bytes: not an IDX file`);
  }
  const type = bytes[2];
  if (type !== 0x08) {
    const name = TYPE_NAMES[type] ?? 'unknown';
    throw new Error(`${source}: magic number ${hex(magic, 8)} has type code ${hex(type, 2)} (${name}), expected 0x08 (unsigned byte)`);
  }
  const ndims = bytes[3];
  if (ndims === 0) {
    throw new Error(`${source}: magic number ${hex(magic, 8)} declares 0 dimensions, expected at least 1`);
  }
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) {
    throw new Error(`${source}: truncated header: ${ndims} dimensions need ${headerBytes} header bytes, the file has ${bytes.length}`);
  }
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  // A zero anywhere makes the product 0, however large the other sizes (an empty set of big images).
  let elements = dims.includes(0) ? 0 : 1;
  for (let d = 0; d < ndims && elements > 0; d++) {
    elements *= dims[d];
    // Bounded at every step so the product stays an exact integer and nothing huge is allocated.
    if (elements > MAX_IDX_ELEMENTS) {
      throw new Error(`${source}: declared sizes [${dims.slice(0, d + 1).join(', ')}${d + 1 < ndims ? ', ...' : ''}] exceed ${MAX_IDX_ELEMENTS} elements: corrupt header or not an IDX file`);
    }
  }
  const available = bytes.length - headerBytes;
  if (available < elements) {
    throw new Error(`${source}: truncated: sizes [${dims.join(', ')}] declare ${elements} data bytes, the file has ${available}`);
  }
  if (available > elements) {
    throw new Error(`${source}: ${available - elements} trailing bytes after the ${elements} data bytes declared by sizes [${dims.join(', ')}]`);
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** An IDX file of images: 3 dimensions (count, height, width), as magic 0x00000803. */
export function parseImages(bytes: Uint8Array, source: string): IdxImages {
  const { dims, data } = parseIdx(bytes, source);
  if (dims.length !== 3) {
    const what = dims.length === 1 ? 'labels' : `${dims.length} dimensions`;
    throw new Error(`${source}: magic number ${hex(0x800 + dims.length, 8)} means ${what}, expected images (0x00000803)`);
  }
  const [count, height, width] = dims;
  if (height === 0 || width === 0) {
    throw new Error(`${source}: image size ${height}x${width}, expected both sides > 0`);
  }
  return { count, height, width, data };
}

/** An IDX file of class labels: 1 dimension, as magic 0x00000801; every label < numClasses. */
export function parseLabels(bytes: Uint8Array, source: string, numClasses = 10): IdxLabels {
  const { dims, data } = parseIdx(bytes, source);
  if (dims.length !== 1) {
    const what = dims.length === 3 ? 'images' : `${dims.length} dimensions`;
    throw new Error(`${source}: magic number ${hex(0x800 + dims.length, 8)} means ${what}, expected labels (0x00000801)`);
  }
  for (let i = 0; i < data.length; i++) {
    if (data[i] >= numClasses) {
      throw new Error(`${source}: label ${i} is ${data[i]}, expected a class index < ${numClasses}`);
    }
  }
  return { count: dims[0], data };
}

/** Images and labels of the same examples as one Dataset (channels = 1). `source` names the pair. */
export function pairDataset(images: IdxImages, labels: IdxLabels, source: string): Dataset {
  if (images.count !== labels.count) {
    throw new Error(`${source}: ${images.count} images but ${labels.count} labels, expected the same count`);
  }
  return {
    images: images.data,
    labels: labels.data,
    count: images.count,
    height: images.height,
    width: images.width,
    channels: 1,
  };
}
