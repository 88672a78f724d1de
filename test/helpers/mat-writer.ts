// A tiny MATLAB level-5 MAT file writer for tests (src/io/mat-file.ts reads them), written from the
// format's specification: 128-byte header, 8-byte tags, the small data element form for data of at
// most 4 bytes (as MATLAB writes names and the struct field name length), padding to 8 bytes,
// miCOMPRESSED variables (zlib of the whole miMATRIX element). Values can be stored in a narrower
// type than their class, as MATLAB does (a double array of small integers as miUINT8). Options make
// the corrupt files the tests need (complex flag, wrong type numbers, other versions).
import { deflateSync } from 'node:zlib';

export type MatType = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'single' | 'double';

const MI: Record<MatType, number> = { int8: 1, uint8: 2, int16: 3, uint16: 4, int32: 5, uint32: 6, single: 7, double: 9 };
const MX: Record<MatType, number> = { double: 6, single: 7, int8: 8, uint8: 9, int16: 10, uint16: 11, int32: 12, uint32: 13 };
const SIZE: Record<MatType, number> = { int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, single: 4, double: 8 };

export type MatSpec =
  | {
    kind: 'numeric'; class: MatType; dims: number[]; values: ArrayLike<number>;
    /** The type the values are written in (default: the class's). */
    stored?: MatType;
    /** Overrides the real part's data type number (corrupt files). */
    storedTypeNumber?: number;
    complex?: boolean;
  }
  | { kind: 'char'; text: string }
  | { kind: 'struct'; fields: Array<[string, MatSpec]> }
  /** An empty cell array: a class the reader does not interpret. */
  | { kind: 'cell' };

export interface MatWriteOptions {
  compress?: boolean;
  bigEndian?: boolean;
  version?: number;
  /** The two bytes at 126-127 (default 'IM' in the file's byte order). */
  indicator?: string;
  text?: string;
}

class Out {
  parts: Uint8Array[] = [];
  constructor(readonly little: boolean) {}

  u32(...values: number[]): Uint8Array {
    const b = new Uint8Array(4 * values.length);
    const v = new DataView(b.buffer);
    values.forEach((x, k) => v.setUint32(4 * k, x >>> 0, this.little));
    return b;
  }
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** One data element: the small form when the data fits in 4 bytes, else tag + data + padding. */
function element(o: Out, type: number, data: Uint8Array): Uint8Array {
  if (data.length <= 4 && data.length > 0) {
    const small = new Uint8Array(8);
    small.set(o.u32((data.length << 16) | type));
    small.set(data, 4);
    return small;
  }
  const padded = new Uint8Array((data.length + 7) & ~7);
  padded.set(data);
  return concat([o.u32(type, data.length), padded]);
}

function encodeValues(o: Out, type: MatType, values: ArrayLike<number>): Uint8Array {
  const size = SIZE[type];
  const b = new Uint8Array(values.length * size);
  const v = new DataView(b.buffer);
  for (let k = 0; k < values.length; k++) {
    const x = values[k];
    const at = k * size;
    switch (type) {
      case 'int8': v.setInt8(at, x); break;
      case 'uint8': v.setUint8(at, x); break;
      case 'int16': v.setInt16(at, x, o.little); break;
      case 'uint16': v.setUint16(at, x, o.little); break;
      case 'int32': v.setInt32(at, x, o.little); break;
      case 'uint32': v.setUint32(at, x, o.little); break;
      case 'single': v.setFloat32(at, x, o.little); break;
      case 'double': v.setFloat64(at, x, o.little); break;
    }
  }
  return b;
}

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** An miMATRIX element holding `spec` under `name` ('' for struct fields). */
function matrix(o: Out, name: string, spec: MatSpec): Uint8Array {
  let cls: number;
  let flags = 0;
  let dims: number[];
  const body: Uint8Array[] = [];
  switch (spec.kind) {
    case 'numeric': {
      cls = MX[spec.class];
      if (spec.complex) flags |= 0x08;
      dims = spec.dims;
      const stored = spec.stored ?? spec.class;
      body.push(element(o, spec.storedTypeNumber ?? MI[stored], encodeValues(o, stored, spec.values)));
      if (spec.complex) body.push(element(o, MI[stored], encodeValues(o, stored, spec.values)));
      break;
    }
    case 'char': {
      cls = 4;
      dims = [1, spec.text.length];
      const codes = Array.from(spec.text, (c) => c.charCodeAt(0));
      body.push(element(o, 4, encodeValues(o, 'uint16', codes)));
      break;
    }
    case 'cell':
      cls = 1;
      dims = [0, 0];
      break;
    case 'struct': {
      cls = 2;
      dims = [1, 1];
      const length = 32;
      body.push(element(o, 5, o.u32(length)));
      const names = new Uint8Array(length * spec.fields.length);
      spec.fields.forEach(([field], k) => names.set(ascii(field), k * length));
      body.push(element(o, 1, names));
      for (const [, value] of spec.fields) body.push(matrix(o, '', value));
      break;
    }
  }
  const dimBytes = new Uint8Array(4 * dims.length);
  dims.forEach((d, k) => new DataView(dimBytes.buffer).setInt32(4 * k, d, o.little));
  const content = concat([
    element(o, 6, o.u32((flags << 8) | cls, 0)),
    element(o, 5, dimBytes),
    name === '' ? o.u32(1, 0) : element(o, 1, ascii(name)),
    ...body,
  ]);
  return concat([o.u32(14, content.length), content]);
}

/** A MAT file of `variables`, in order. */
export function matFile(variables: Array<[string, MatSpec]>, options: MatWriteOptions = {}): Uint8Array {
  const o = new Out(!options.bigEndian);
  const header = new Uint8Array(128).fill(0x20);
  header.set(ascii((options.text ?? 'MATLAB 5.0 MAT-file, written by the capsnet-webgpu tests').padEnd(116)));
  header.fill(0, 116, 124); // no subsystem data
  const version = options.version ?? 0x0100;
  new DataView(header.buffer).setUint16(124, version, o.little);
  header.set(ascii(options.indicator ?? (o.little ? 'IM' : 'MI')), 126);
  const parts: Uint8Array[] = [header];
  for (const [name, spec] of variables) {
    const m = matrix(o, name, spec);
    if (options.compress) {
      const z = deflateSync(m);
      parts.push(o.u32(15, z.length), z); // compressed elements are not padded (MATLAB, scipy)
    } else {
      parts.push(m);
    }
  }
  return concat(parts);
}

/**
 * An affNIST-like file: `affNISTdata` with image (uint8, 1600 x N, image n's pixel (y, x) at
 * row y * 40 + x of column n), label_int (class double stored as miUINT8, as MATLAB saves small
 * integers) and the other fields of the real files; `fields` replaces or removes fields by name
 * (undefined: removed).
 */
export function affnistMat(images: Uint8Array, labels: number[], options: MatWriteOptions = {}, fields: Record<string, MatSpec | undefined> = {}): Uint8Array {
  const n = labels.length;
  const oneOfN = new Array<number>(10 * n).fill(0);
  labels.forEach((l, k) => (oneOfN[k * 10 + l] = 1));
  const all: Record<string, MatSpec | undefined> = {
    image: { kind: 'numeric', class: 'uint8', dims: [1600, n], values: images },
    label_int: { kind: 'numeric', class: 'double', stored: 'uint8', dims: [1, n], values: labels },
    label_one_of_n: { kind: 'numeric', class: 'double', stored: 'uint8', dims: [10, n], values: oneOfN },
    human_readable_transform: { kind: 'numeric', class: 'double', dims: [7, n], values: Array.from({ length: 7 * n }, (_, k) => Math.sin(k) * 0.3) },
    index: { kind: 'numeric', class: 'double', stored: 'uint16', dims: [1, n], values: Array.from({ length: n }, (_, k) => 1000 + k) },
    ...fields,
  };
  const present = Object.entries(all).filter((e): e is [string, MatSpec] => e[1] !== undefined);
  return matFile([['affNISTdata', { kind: 'struct', fields: present }]], options);
}
