// A minimal, strict reader of MATLAB level-5 MAT files (what MATLAB's `save -v7`/`-v6` and
// scipy.io.savemat write, and scipy.io.loadmat reads), enough for affNIST's files
// (src/io/affnist-file.ts). Format: MathWorks, "MAT-File Format" (matfile_format.pdf), chapter 1.
//
// Layout: a 128-byte header (116 bytes of text starting 'MATLAB', 8 bytes of subsystem offset, the
// version 0x0100, the endian indicator 'IM' in the writer's byte order: the bytes 'I','M' for a
// little-endian file, 'M','I' for a big-endian one), then data elements, each an 8-byte tag (type,
// byte count) and its data, padded to 8 bytes. A tag whose first 32-bit word has a non-zero upper
// half is the "small data element" form: count (upper 16 bits) and type (lower 16) in 4 bytes,
// then up to 4 bytes of data. Top-level elements are miMATRIX (one variable) or miCOMPRESSED (zlib
// data that inflates to one miMATRIX element). An miMATRIX holds sub-elements: array flags (class,
// complex/logical bits), dimensions, name, then the class's data: for numeric classes the real part
// (stored in any numeric type: MATLAB stores a double array as miUINT8 when its values fit, so the
// values are converted to the class); for structs the field name length, the names, then one
// miMATRIX per field.
//
// Supported: little- and big-endian files; numeric classes double, single, int8, uint8, int16,
// uint16, int32, uint32 (real; logical arrays are uint8); char arrays; 1x1 structs (nested).
// Arrays of other kinds (complex, sparse, cell, object, 64-bit integer, function handle, struct
// arrays) are well-formed MAT content this reader does not interpret: they become
// { kind: 'unsupported', what } values, so a file whose unused struct field is, say, a cell array
// still reads, and a caller that needs such a value refuses it naming the file, the field and
// `what`. v7.3 (HDF5) and v4 files are refused. Anything malformed (truncated, unknown data type or
// class, sizes that disagree, bad zlib data) is an error naming the file, the variable and the
// byte. Every size is checked against the bytes that hold it before anything is allocated, so a
// corrupt count cannot make a large allocation; zlib output is capped. Numeric values are converted
// lazily (values()): a field nobody reads costs no copy, which matters for affNIST's 512 MB
// transformed test set. Node only (node:zlib).

import { inflateSync } from 'node:zlib';
import { readRegularFile } from './idx-file.ts';

/** Largest MAT file read: affNIST's largest (transformed test.mat) is far below it. */
export const MAX_MAT_FILE_BYTES = 1 << 30;
/** Largest inflated miCOMPRESSED element (affNIST's transformed test set: about 0.6 GB). */
export const MAX_MAT_INFLATED_BYTES = 1 << 30;
/** Deepest nesting of structs in structs: a corrupt file must not overflow the stack. */
export const MAX_MAT_DEPTH = 32;

export type MatNumericClass = 'double' | 'single' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32';
export type MatNumericArray = Float64Array | Float32Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

export interface MatNumeric {
  kind: 'numeric';
  class: MatNumericClass;
  /** A logical array (class uint8 with the logical flag). */
  logical: boolean;
  /** MATLAB's dimensions (at least 2); the values are in column-major order (the first index fastest). */
  dims: number[];
  /** Number of values: the product of dims. */
  count: number;
  /** The data type the values are stored in (e.g. 'uint8' for a double array of small integers). */
  stored: MatNumericClass;
  /**
   * The values converted to the class, in column-major order. Errors (naming the file and the
   * variable) when a stored value does not fit the class. uint8/int8 stored as themselves are views
   * of the file's bytes (no copy); anything else is converted on each call.
   */
  values(): MatNumericArray;
}

export interface MatChar {
  kind: 'char';
  dims: number[];
  /** The characters in column-major order (a 1xN char array: the string). */
  text: string;
}

export interface MatStruct {
  kind: 'struct';
  dims: number[];
  /** Field values in the file's order (1x1 structs only). */
  fields: Map<string, MatValue>;
}

/** A well-formed array of a kind this reader does not interpret (its bytes are skipped). */
export interface MatUnsupported {
  kind: 'unsupported';
  dims: number[];
  /** What it is, e.g. 'a complex double array', 'class cell'. */
  what: string;
}

export type MatValue = MatNumeric | MatChar | MatStruct | MatUnsupported;

export interface MatFile {
  /** The header's descriptive text, trailing blanks removed. */
  header: string;
  littleEndian: boolean;
  /** The variables by name, in the file's order. */
  variables: Map<string, MatValue>;
}

export interface MatReadOptions {
  maxFileBytes?: number;
  maxInflatedBytes?: number;
}

/** Reads and parses a MAT file; every error names `path`. */
export function readMatFile(path: string, options: MatReadOptions = {}): MatFile {
  const bytes = readRegularFile(path, options.maxFileBytes ?? MAX_MAT_FILE_BYTES, 'MAT file');
  return parseMatFile(bytes, path, options);
}

// Data types (the tag's type field), by number: name and bytes per value for the numeric ones.
const MI_INT8 = 1;
const MI_UINT8 = 2;
const MI_INT32 = 5;
const MI_UINT32 = 6;
const MI_MATRIX = 14;
const MI_COMPRESSED = 15;
const MI_UTF8 = 16;
const MI_UTF16 = 17;
const MI_UINT16 = 4;
const TYPE_NAMES: Record<number, string> = {
  1: 'miINT8', 2: 'miUINT8', 3: 'miINT16', 4: 'miUINT16', 5: 'miINT32', 6: 'miUINT32', 7: 'miSINGLE', 9: 'miDOUBLE',
  12: 'miINT64', 13: 'miUINT64', 14: 'miMATRIX', 15: 'miCOMPRESSED', 16: 'miUTF8', 17: 'miUTF16', 18: 'miUTF32',
};
const typeName = (type: number) => `${TYPE_NAMES[type] ?? 'unknown data type'} (${type})`;

/** The numeric data types a real part may be stored in, as the class of the same name. */
const STORED_TYPES: Record<number, MatNumericClass> = { 1: 'int8', 2: 'uint8', 3: 'int16', 4: 'uint16', 5: 'int32', 6: 'uint32', 7: 'single', 9: 'double' };

// Array classes (the low byte of the array flags).
const MX_STRUCT = 2;
const MX_CHAR = 4;
const NUMERIC_CLASSES: Record<number, MatNumericClass> = { 6: 'double', 7: 'single', 8: 'int8', 9: 'uint8', 10: 'int16', 11: 'uint16', 12: 'int32', 13: 'uint32' };
const REFUSED_CLASSES: Record<number, string> = {
  1: 'cell', 3: 'object', 5: 'sparse', 14: 'int64', 15: 'uint64', 16: 'function handle', 17: 'opaque (a MATLAB object)',
};
const FLAG_COMPLEX = 0x08;
const FLAG_LOGICAL = 0x02;

interface ClassInfo {
  bytes: number;
  make: (n: number) => MatNumericArray;
  read: (view: DataView, offset: number, little: boolean) => number;
  /** Integer classes: the range of values; undefined for floating point. */
  range?: [number, number];
}
const CLASS_INFO: Record<MatNumericClass, ClassInfo> = {
  int8: { bytes: 1, make: (n) => new Int8Array(n), read: (v, o) => v.getInt8(o), range: [-128, 127] },
  uint8: { bytes: 1, make: (n) => new Uint8Array(n), read: (v, o) => v.getUint8(o), range: [0, 255] },
  int16: { bytes: 2, make: (n) => new Int16Array(n), read: (v, o, le) => v.getInt16(o, le), range: [-32768, 32767] },
  uint16: { bytes: 2, make: (n) => new Uint16Array(n), read: (v, o, le) => v.getUint16(o, le), range: [0, 65535] },
  int32: { bytes: 4, make: (n) => new Int32Array(n), read: (v, o, le) => v.getInt32(o, le), range: [-(2 ** 31), 2 ** 31 - 1] },
  uint32: { bytes: 4, make: (n) => new Uint32Array(n), read: (v, o, le) => v.getUint32(o, le), range: [0, 2 ** 32 - 1] },
  single: { bytes: 4, make: (n) => new Float32Array(n), read: (v, o, le) => v.getFloat32(o, le) },
  double: { bytes: 8, make: (n) => new Float64Array(n), read: (v, o, le) => v.getFloat64(o, le) },
};

const pad8 = (n: number) => (n + 7) & ~7;

/**
 * One buffer being read: the file, or the inflated contents of an miCOMPRESSED element (`origin`
 * then says which, so a position in an error can be found).
 */
class Section {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly little: boolean,
    readonly source: string,
    readonly origin: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  u32(pos: number): number {
    return this.view.getUint32(pos, this.little);
  }

  /** An Error naming the file, what is being read (`where`) and the byte position. */
  fail(where: string, pos: number, what: string): Error {
    return new Error(`${this.source}: ${where}: ${what} (at byte ${pos}${this.origin})`);
  }
}

interface Tag {
  type: number;
  /** Bytes of data. */
  size: number;
  /** Where the data starts. */
  data: number;
  /** Where the next element starts: after the data and its padding to 8 bytes. */
  next: number;
}

/**
 * The tag of the element at `pos`, which must end by `end` (the enclosing element's end) with its
 * data and, if `padded`, its padding.
 */
function readTag(b: Section, pos: number, end: number, where: string, padded = true): Tag {
  if (end - pos < 8) throw b.fail(where, pos, `truncated element: its tag needs 8 bytes, ${Math.max(0, end - pos)} left`);
  const word = b.u32(pos);
  if (word >>> 16 !== 0) {
    // Small data element: up to 4 bytes of data inside the 8 bytes.
    const size = word >>> 16;
    const type = word & 0xffff;
    if (size > 4) throw b.fail(where, pos, `small data element of ${typeName(type)} declares ${size} bytes, at most 4 fit`);
    return { type, size, data: pos + 4, next: pos + 8 };
  }
  const type = word;
  const size = b.u32(pos + 4);
  const left = end - (pos + 8);
  if (size > left) throw b.fail(where, pos, `truncated element: ${typeName(type)} declares ${size} bytes of data, ${left} left`);
  const next = padded ? pos + 8 + pad8(size) : pos + 8 + size;
  if (next > end) throw b.fail(where, pos, `truncated element: ${typeName(type)} of ${size} bytes lacks its padding to 8 bytes`);
  return { type, size, data: pos + 8, next };
}

/** Parses a whole MAT file; `source` (the file name) is in every error. */
export function parseMatFile(bytes: Uint8Array, source: string, options: MatReadOptions = {}): MatFile {
  const maxInflated = options.maxInflatedBytes ?? MAX_MAT_INFLATED_BYTES;
  if (bytes.length >= 8 && String.fromCharCode(...bytes.subarray(1, 4)) === 'HDF') {
    throw new Error(`${source}: an HDF5 file (MATLAB v7.3 MAT files are HDF5): not supported; save it in MATLAB with save(..., '-v7')`);
  }
  if (bytes.length < 128) throw new Error(`${source}: ${bytes.length} bytes, shorter than the 128-byte header of a MATLAB level-5 MAT file`);
  const indicator = String.fromCharCode(bytes[126], bytes[127]);
  if (indicator !== 'IM' && indicator !== 'MI') {
    throw new Error(`${source}: bytes 126-127 are not the endian indicator 'IM' or 'MI': not a MATLAB level-5 MAT file (a level-4 file, or not MATLAB at all)`);
  }
  const little = indicator === 'IM';
  const text = new TextDecoder('latin1').decode(bytes.subarray(0, 116)).replace(/[\0 ]+$/, '');
  if (!text.startsWith('MATLAB')) throw new Error(`${source}: the header text does not start with 'MATLAB' (starts ${JSON.stringify(text.slice(0, 20))}): not a MAT file`);
  const version = new DataView(bytes.buffer, bytes.byteOffset + 124, 2).getUint16(0, little);
  if (version !== 0x0100) {
    const hint = version === 0x0200 ? ' (0x0200: a v7.3 file, which is HDF5: save it with -v7)' : '';
    throw new Error(`${source}: MAT file version 0x${version.toString(16).padStart(4, '0')} at byte 124, expected 0x0100${hint}`);
  }
  const file = new Section(bytes, little, source, '');
  const variables = new Map<string, MatValue>();
  let pos = 128;
  while (pos < bytes.length) {
    // Zero bytes shorter than a tag at the very end: padding some writers leave after a compressed element.
    if (bytes.length - pos < 8 && bytes.subarray(pos).every((v) => v === 0)) break;
    const where = `variable ${variables.size + 1}`;
    // Top-level elements follow each other without padding (what MATLAB writes and scipy expects).
    const tag = readTag(file, pos, bytes.length, where, false);
    let name: string;
    let value: MatValue;
    if (tag.type === MI_MATRIX) {
      ({ name, value } = readMatrix(file, tag, where, 0));
    } else if (tag.type === MI_COMPRESSED) {
      const inner = inflate(file, pos, tag, where, maxInflated);
      const innerTag = readTag(inner, 0, inner.bytes.length, where, false);
      if (innerTag.type !== MI_MATRIX) throw inner.fail(where, 0, `the compressed element holds ${typeName(innerTag.type)}, expected miMATRIX (14)`);
      const extra = inner.bytes.length - (innerTag.data + innerTag.size);
      if (extra >= 8) throw inner.fail(where, innerTag.data + innerTag.size, `${extra} bytes after the miMATRIX element in the compressed data`);
      ({ name, value } = readMatrix(inner, innerTag, where, 0));
    } else {
      throw file.fail(where, pos, `${typeName(tag.type)} at the top level, expected miMATRIX (14) or miCOMPRESSED (15)`);
    }
    if (variables.has(name)) throw file.fail(`variable '${name}'`, pos, 'a second variable of the same name');
    variables.set(name, value);
    pos = tag.next;
  }
  return { header: text, littleEndian: little, variables };
}

function inflate(b: Section, pos: number, tag: Tag, where: string, maxBytes: number): Section {
  let out: Uint8Array;
  try {
    out = inflateSync(b.bytes.subarray(tag.data, tag.data + tag.size), { maxOutputLength: maxBytes });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE') throw b.fail(where, pos, `miCOMPRESSED element inflates to more than the ${maxBytes}-byte limit`);
    throw b.fail(where, pos, `miCOMPRESSED element of ${tag.size} bytes does not inflate (zlib: ${err.message})`);
  }
  return new Section(out, b.little, b.source, ` of the data inflated from the miCOMPRESSED element at file byte ${pos}`);
}

/** Text of an miINT8 / miUINT8 / miUTF8 element (names and field names are ASCII). */
function asciiAt(b: Section, start: number, length: number): string {
  return new TextDecoder('latin1').decode(b.bytes.subarray(start, start + length));
}

/**
 * An miMATRIX element (`tag` is its tag): its name and value. `where` names the variable or field
 * for errors; `depth` counts the structs it is inside.
 */
function readMatrix(b: Section, tag: Tag, where: string, depth: number): { name: string; value: MatValue } {
  const end = tag.data + tag.size;
  // An empty miMATRIX: MATLAB writes [] in a struct field this way.
  if (tag.size === 0) return { name: '', value: numeric(b, 'double', 'double', false, [0, 0], 0, 0, where) };
  let pos = tag.data;

  const flags = readTag(b, pos, end, `${where}: array flags`);
  if (flags.type !== MI_UINT32 || flags.size !== 8) throw b.fail(where, pos, `array flags are ${typeName(flags.type)} of ${flags.size} bytes, expected miUINT32 (6) of 8 bytes`);
  const flagWord = b.u32(flags.data);
  const classNumber = flagWord & 0xff;
  const flagBits = (flagWord >>> 8) & 0xff;
  pos = flags.next;

  const dimsTag = readTag(b, pos, end, `${where}: dimensions`);
  if (dimsTag.type !== MI_INT32 || dimsTag.size < 8 || dimsTag.size % 4 !== 0) {
    throw b.fail(where, pos, `dimensions are ${typeName(dimsTag.type)} of ${dimsTag.size} bytes, expected miINT32 (5) of at least 2 values`);
  }
  const dims: number[] = [];
  let count = 1;
  for (let k = 0; k < dimsTag.size / 4; k++) {
    const d = b.view.getInt32(dimsTag.data + 4 * k, b.little);
    if (d < 0) throw b.fail(where, dimsTag.data + 4 * k, `dimension ${k + 1} is ${d}, expected >= 0`);
    dims.push(d);
    count *= d; // exact while below 2^53; larger counts fail the size check against the data below
  }
  pos = dimsTag.next;

  const nameTag = readTag(b, pos, end, `${where}: array name`);
  if (nameTag.type !== MI_INT8 && nameTag.type !== MI_UINT8 && nameTag.type !== MI_UTF8) {
    throw b.fail(where, pos, `the array name is ${typeName(nameTag.type)}, expected miINT8 (1)`);
  }
  const name = asciiAt(b, nameTag.data, nameTag.size);
  const here = depth === 0 && name !== '' ? `variable '${name}'` : where;
  pos = nameTag.next;

  const dimsText = dims.join('x');
  const unsupported = (what: string) => ({ name, value: { kind: 'unsupported', dims, what: `${what} (this reader reads real numeric, char and 1x1 struct arrays)` } as const });
  const refused = REFUSED_CLASSES[classNumber];
  if (refused !== undefined) return unsupported(`class ${refused}`);
  if (flagBits & FLAG_COMPLEX) return unsupported(`a complex ${NUMERIC_CLASSES[classNumber] ?? `class ${classNumber}`} array`);

  if (classNumber === MX_STRUCT) {
    if (depth >= MAX_MAT_DEPTH) throw b.fail(here, tag.data, `structs nested more than ${MAX_MAT_DEPTH} deep`);
    if (count !== 1) return unsupported(`a ${dimsText} struct array`);
    return { name, value: readStruct(b, pos, end, here, dims, depth) };
  }
  if (classNumber === MX_CHAR) {
    const data = readTag(b, pos, end, `${here}: characters`);
    if (data.next !== end) throw b.fail(here, data.next, `${end - data.next} bytes after the characters`);
    let text: string;
    if (data.type === MI_UINT16 || data.type === MI_UTF16) {
      if (data.size !== 2 * count) throw b.fail(here, pos, `${data.size} bytes of ${typeName(data.type)} for ${count} characters (${dimsText})`);
      const codes: number[] = [];
      for (let k = 0; k < count; k++) codes.push(b.view.getUint16(data.data + 2 * k, b.little));
      text = String.fromCharCode(...codes);
    } else if (data.type === MI_UTF8 || data.type === MI_UINT8 || data.type === MI_INT8) {
      text = new TextDecoder(data.type === MI_UTF8 ? 'utf-8' : 'latin1').decode(b.bytes.subarray(data.data, data.data + data.size));
    } else {
      throw b.fail(here, pos, `characters stored as ${typeName(data.type)}, expected miUINT16, miUTF16 or miUTF8`);
    }
    return { name, value: { kind: 'char', dims, text } };
  }
  const cls = NUMERIC_CLASSES[classNumber];
  if (cls === undefined) throw b.fail(here, tag.data, `unknown array class ${classNumber}`);
  if ((flagBits & FLAG_LOGICAL) && cls !== 'uint8') throw b.fail(here, tag.data, `a logical array of class ${cls}, expected uint8`);

  const real = readTag(b, pos, end, `${here}: real part`);
  const stored = STORED_TYPES[real.type];
  if (stored === undefined) throw b.fail(here, pos, `the values are stored as ${typeName(real.type)}, expected a numeric type (miINT8 .. miUINT32, miSINGLE, miDOUBLE)`);
  const size = CLASS_INFO[stored].bytes;
  if (real.size !== count * size) {
    throw b.fail(here, pos, `${real.size} bytes of ${typeName(real.type)} for a ${dimsText} array, expected ${count} values x ${size} bytes = ${count * size}`);
  }
  if (real.next !== end) throw b.fail(here, real.next, `${end - real.next} bytes after the real part (an imaginary part without the complex flag?)`);
  return { name, value: numeric(b, cls, stored, (flagBits & FLAG_LOGICAL) !== 0, dims, count, real.data, here) };
}

function numeric(b: Section, cls: MatNumericClass, stored: MatNumericClass, logical: boolean, dims: number[], count: number, start: number, where: string): MatNumeric {
  return {
    kind: 'numeric', class: cls, logical, dims, count, stored,
    values(): MatNumericArray {
      const from = CLASS_INFO[stored];
      const to = CLASS_INFO[cls];
      if (cls === stored && from.bytes === 1) {
        return cls === 'uint8' ? b.bytes.subarray(start, start + count) : new Int8Array(b.bytes.buffer, b.bytes.byteOffset + start, count);
      }
      const out = to.make(count);
      for (let k = 0; k < count; k++) {
        const v = from.read(b.view, start + k * from.bytes, b.little);
        if (to.range && !(Number.isInteger(v) && v >= to.range[0] && v <= to.range[1])) {
          throw b.fail(where, start + k * from.bytes, `value ${v} (index ${k}, stored as ${stored}) does not fit the array's class ${cls}`);
        }
        out[k] = v;
      }
      return out;
    },
  };
}

/** The fields of a 1x1 struct, whose sub-elements after the name start at `pos`. */
function readStruct(b: Section, pos: number, end: number, where: string, dims: number[], depth: number): MatStruct {
  const lengthTag = readTag(b, pos, end, `${where}: field name length`);
  if (lengthTag.type !== MI_INT32 || lengthTag.size !== 4) throw b.fail(where, pos, `the field name length is ${typeName(lengthTag.type)} of ${lengthTag.size} bytes, expected one miINT32 (5)`);
  const nameLength = b.view.getInt32(lengthTag.data, b.little);
  if (nameLength < 1 || nameLength > 4096) throw b.fail(where, lengthTag.data, `field name length ${nameLength}, expected 1 .. 4096`);
  pos = lengthTag.next;
  const namesTag = readTag(b, pos, end, `${where}: field names`);
  if (namesTag.type !== MI_INT8 && namesTag.type !== MI_UINT8) throw b.fail(where, pos, `field names are ${typeName(namesTag.type)}, expected miINT8 (1)`);
  if (namesTag.size % nameLength !== 0) throw b.fail(where, pos, `${namesTag.size} bytes of field names is not a multiple of the field name length ${nameLength}`);
  const names: string[] = [];
  for (let k = 0; k < namesTag.size / nameLength; k++) {
    const raw = asciiAt(b, namesTag.data + k * nameLength, nameLength);
    const nul = raw.indexOf('\0');
    names.push(nul < 0 ? raw : raw.slice(0, nul));
  }
  pos = namesTag.next;
  const fields = new Map<string, MatValue>();
  for (const field of names) {
    const fieldWhere = `${where}: field '${field}'`;
    if (fields.has(field)) throw b.fail(fieldWhere, namesTag.data, 'a second field of the same name');
    const tag = readTag(b, pos, end, fieldWhere);
    if (tag.type !== MI_MATRIX) throw b.fail(fieldWhere, pos, `${typeName(tag.type)}, expected miMATRIX (14)`);
    fields.set(field, readMatrix(b, tag, fieldWhere, depth + 1).value);
    pos = tag.next;
  }
  if (pos !== end) throw b.fail(where, pos, `${end - pos} bytes after the last field`);
  return { kind: 'struct', dims, fields };
}
