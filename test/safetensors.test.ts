// safetensors encode/decode (roundtrips, f16 rounding, every malformed header) and atomic file writes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeSafetensors, encodeSafetensors, f16BitsToF32, f32ToF16Bits, MAX_HEADER_BYTES, type TensorData,
} from '../src/io/safetensors.ts';
import { readFileBytes, writeFileAtomic } from '../src/io/files.ts';
import { makeRng, randomNormal } from './helpers/random.ts';
import { withAllocationGuard } from '../tools/fuzz/harness.ts';

/** A safetensors file built by hand (independent of the encoder): header text + `dataBytes` of data. */
function rawFile(header: unknown, data: Uint8Array | number = 0, headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

const bits = (data: TensorData) => Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));

// ---------------------------------------------------------------------------------------------
const codec = suite('safetensors codec');

codec('F32, I32 and U8 roundtrip bit-exactly, with metadata', () => {
  const w = Float32Array.from(randomNormal(2 * 3 * 5, 1));
  w.set([0, -0, Infinity, -Infinity, NaN, 1e-45, 3.4028234663852886e38]);
  const step = Int32Array.from([-7, 0, 2 ** 31 - 1]);
  const mask = Uint8Array.from([0, 255, 17]);
  const metadata = { step: '1234', config: JSON.stringify({ routing: 3, decoder: true }), empty: '' };
  const bytes = encodeSafetensors({ 'conv1.weight': { shape: [2, 3, 5], data: w }, step: { shape: [3], data: step }, mask: { shape: [3], data: mask } }, metadata);
  const decoded = decodeSafetensors(bytes, 'ckpt.safetensors');
  assert.equal(decoded.metadata, metadata);
  assert.equal([...decoded.tensors.keys()].sort(), ['conv1.weight', 'mask', 'step']);
  const cw = decoded.tensors.get('conv1.weight')!;
  assert.equal([cw.dtype, cw.shape], ['F32', [2, 3, 5]]);
  assert.ok(cw.data instanceof Float32Array);
  assert.equal(bits(cw.data), bits(w));
  assert.equal(decoded.tensors.get('step')!.dtype, 'I32');
  assert.equal(Array.from(decoded.tensors.get('step')!.data), Array.from(step));
  assert.equal(Array.from(decoded.tensors.get('mask')!.data), Array.from(mask));
  // Scalars and empty tensors are legal.
  const edge = decodeSafetensors(encodeSafetensors({ s: { shape: [], data: Float32Array.of(2.5) }, e: { shape: [0, 4], data: new Float32Array(0) } }), 'edge');
  assert.equal(Array.from(edge.tensors.get('s')!.data), [2.5]);
  assert.equal(edge.tensors.get('e')!.shape, [0, 4]);
});

codec('the header is sorted, space-padded to 8 bytes, and every tensor is aligned', () => {
  const bytes = encodeSafetensors({
    zeta: { shape: [3], data: Uint8Array.of(1, 2, 3) },
    alpha: { shape: [3], data: Float32Array.of(1, 2, 3), dtype: 'F16' },
    mid: { shape: [2], data: Float32Array.of(1, 2) },
    beta: { shape: [1], data: Float32Array.of(1) },
  }, { a: 'b' });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.is((8 + n) % 8, 0);
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.ok(/^\{.*\} *$/.test(text), text);
  const header = JSON.parse(text);
  assert.equal(Object.keys(header), ['__metadata__', 'alpha', 'beta', 'mid', 'zeta']);
  // Largest elements first: beta, mid (F32), alpha (F16), zeta (U8).
  assert.equal(header.beta.data_offsets, [0, 4]);
  assert.equal(header.mid.data_offsets, [4, 12]);
  assert.equal(header.alpha.data_offsets, [12, 18]);
  assert.equal(header.zeta.data_offsets, [18, 21]);
  assert.is(bytes.length, 8 + n + 21);
});

codec('decodes a file written by another tool (hand-built bytes)', () => {
  const data = new Uint8Array(12);
  const view = new DataView(data.buffer);
  view.setFloat32(0, 1.5, true);
  view.setFloat32(4, -2, true);
  view.setUint16(8, 0x3c00, true); // f16 1.0
  view.setUint16(10, 0xc100, true); // f16 -2.5
  // Key order, spacing and trailing padding as Python's safetensors might write them.
  const header = '{"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}   ';
  const decoded = decodeSafetensors(rawFile(header, data), 'model.safetensors');
  assert.equal(Array.from(decoded.tensors.get('w')!.data), [1.5, -2]);
  assert.equal(decoded.tensors.get('w')!.shape, [1, 2]);
  assert.equal(Array.from(decoded.tensors.get('h')!.data), [1, -2.5]);
  assert.equal(decoded.metadata, { format: 'pt' });
});

// ---------------------------------------------------------------------------------------------
const half = suite('f16');

half('known f16 values decode exactly', () => {
  const known: [number, number][] = [
    [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14], [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity], [0x0000, 0],
  ];
  for (const [h, v] of known) assert.is(f16BitsToF32(h), v, `0x${h.toString(16)}`);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)) && Number.isNaN(f16BitsToF32(0xfc01)));
});

half('every f16 value survives f16 -> f32 -> f16, and F16 tensors roundtrip exactly', () => {
  const values = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    values[h] = f16BitsToF32(h);
    const back = f32ToF16Bits(values[h]);
    if (Number.isNaN(values[h])) assert.ok((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN 0x${h.toString(16)} stays NaN`);
    else assert.is(back, h, `0x${h.toString(16)}`);
  }
  const decoded = decodeSafetensors(encodeSafetensors({ all: { shape: [65536], data: values, dtype: 'F16' } }), 'f16');
  const t = decoded.tensors.get('all')!;
  assert.is(t.dtype, 'F16');
  for (let h = 0; h < 65536; h++) assert.ok(Object.is(t.data[h], values[h]), `0x${h.toString(16)}`);
});

half('f32 -> f16 rounds to the nearest value, ties to even, overflow to infinity', () => {
  // Reference: the finite non-negative f16 values in increasing order (bit patterns 0 .. 0x7bff).
  const finite = Array.from({ length: 0x7c00 }, (_, h) => f16BitsToF32(h));
  const nearest = (v: number): number => {
    const a = Math.abs(v);
    if (a >= 65520) return (v < 0 ? 0x8000 : 0) | 0x7c00; // 65504 + half an ulp (16) and beyond
    let lo = 0, hi = finite.length - 1; // largest h with finite[h] <= a
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (finite[mid] <= a) lo = mid; else hi = mid - 1;
    }
    let h = lo;
    if (h + 1 < finite.length) {
      const down = a - finite[h], up = finite[h + 1] - a;
      if (up < down || (up === down && h % 2 === 1)) h++;
    }
    return (v < 0 || Object.is(v, -0) ? 0x8000 : 0) | h;
  };
  const rng = makeRng(5);
  const cases: number[] = [65504, 65519.99, 65520, 1e6, 2 ** -25, 2 ** -26, 1e-40, -0];
  for (let h = 0; h + 1 < finite.length; h += 7) cases.push(Math.fround((finite[h] + finite[h + 1]) / 2)); // exact ties
  for (let i = 0; i < 20000; i++) {
    const v = Math.fround((rng() < 0.5 ? -1 : 1) * 2 ** (rng() * 48 - 30));
    cases.push(v);
  }
  for (const v of cases) assert.is(f32ToF16Bits(v), nearest(v), `${v}`);
  assert.is(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie, to even (down)
  assert.is(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie, to even (up)
});

// ---------------------------------------------------------------------------------------------
const malformed = suite('safetensors malformed');

const entry = (dtype: unknown, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
const expectError = (bytes: Uint8Array, pattern: RegExp) => assert.throws(() => decodeSafetensors(bytes, 'bad.safetensors'), pattern);

malformed('header length: too short, over the limit, past the end', () => {
  expectError(new Uint8Array(5), /^bad\.safetensors: 5 bytes is too short for the 8-byte header length$/);
  expectError(rawFile({}, 0, BigInt(MAX_HEADER_BYTES) + 1n), /bad\.safetensors: header length 100000001 exceeds the 100000000-byte limit/);
  expectError(rawFile({}, 0, 2n ** 63n), /bad\.safetensors: header length 9223372036854775808 exceeds/);
  expectError(rawFile({}, 0, 100n), /bad\.safetensors: header length 100 runs past the end of the file \(10 bytes\)/);
});

malformed('header must be a UTF-8 JSON object', () => {
  expectError(rawFile('{"a": '), /bad\.safetensors: header is not valid UTF-8 JSON: /);
  const badUtf8 = rawFile('{"a":1}');
  badUtf8[9] = 0xff;
  expectError(badUtf8, /bad\.safetensors: header is not valid UTF-8 JSON/);
  expectError(rawFile('[1, 2]'), /bad\.safetensors: header is an array, expected a JSON object/);
  expectError(rawFile('null'), /bad\.safetensors: header is null, expected a JSON object/);
});

malformed('each entry: object, dtype, shape, data_offsets', () => {
  expectError(rawFile({ w: 3 }), /bad\.safetensors: tensor w is 3, expected an object with dtype, shape, data_offsets/);
  expectError(rawFile({ w: entry('BF16', [1], [0, 2]) }, 2), /bad\.safetensors: tensor w: dtype "BF16", expected one of F32, F16, I32, U8/);
  expectError(rawFile({ w: entry('toString', [1], [0, 2]) }, 2), /tensor w: dtype "toString", expected one of/);
  expectError(rawFile({ w: { shape: [1], data_offsets: [0, 4] } }, 4), /tensor w: dtype undefined, expected one of/);
  expectError(rawFile({ w: entry('F32', 4, [0, 16]) }, 16), /bad\.safetensors: tensor w: shape 4, expected an array of non-negative integers/);
  expectError(rawFile({ w: entry('F32', [2, -2], [0, 16]) }, 16), /tensor w: shape \[2,-2\], expected an array of non-negative integers/);
  expectError(rawFile({ w: entry('F32', [1.5], [0, 4]) }, 4), /tensor w: shape \[1\.5\]/);
  expectError(rawFile({ w: entry('F32', [1], [0]) }, 4), /bad\.safetensors: tensor w: data_offsets \[0\], expected \[begin, end\], non-negative integers/);
  expectError(rawFile({ w: entry('F32', [1], ['0', 4]) }, 4), /tensor w: data_offsets \["0",4\], expected/);
  expectError(rawFile({ w: entry('F32', [1], [4, 0]) }, 4), /tensor w: data_offsets \[4, 0\] has begin > end/);
  expectError(rawFile({ w: entry('F32', [2], [0, 8]) }, 4), /bad\.safetensors: tensor w: data_offsets \[0, 8\] run past the end of the data \(4 bytes\)/);
});

malformed('shape times dtype size must equal the offsets span', () => {
  expectError(rawFile({ w: entry('F32', [3], [0, 8]) }, 8), /bad\.safetensors: tensor w: shape \[3\] of F32 needs 12 bytes, data_offsets \[0, 8\] span 8/);
  expectError(rawFile({ w: entry('F16', [2, 2], [0, 4]) }, 4), /tensor w: shape \[2, 2\] of F16 needs 8 bytes, data_offsets \[0, 4\] span 4/);
  // A huge shape is compared without ever computing (or allocating) its full size.
  expectError(rawFile({ w: entry('F32', [2 ** 40, 2 ** 40, 0.5e1], [0, 8]) }, 8), /tensor w: shape \[1099511627776, 1099511627776, 5\] of F32 needs more than 2\^53 bytes/);
});

malformed('data must be covered exactly once: no overlap, gap or trailing bytes', () => {
  expectError(rawFile({ a: entry('F32', [2], [0, 8]), b: entry('F32', [1], [4, 8]) }, 8), /bad\.safetensors: tensor b: data_offsets \[4, 8\] overlap tensor a \(ends at 8\)/);
  expectError(rawFile({ a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) }, 12), /bad\.safetensors: data bytes \[4, 8\) belong to no tensor \(gap before tensor b\)/);
  expectError(rawFile({ a: entry('F32', [1], [4, 8]) }, 8), /data bytes \[0, 4\) belong to no tensor \(gap before tensor a\)/);
  expectError(rawFile({ a: entry('F32', [1], [0, 4]) }, 6), /bad\.safetensors: data bytes \[4, 6\) belong to no tensor \(trailing bytes\)/);
  expectError(rawFile({}, 3), /data bytes \[0, 3\) belong to no tensor/);
});

malformed('metadata must map strings to strings', () => {
  expectError(rawFile({ __metadata__: [1] }), /bad\.safetensors: __metadata__ is an array, expected an object of strings/);
  expectError(rawFile({ __metadata__: { step: 12 } }), /bad\.safetensors: __metadata__\.step is 12, expected a string/);
  expectError(rawFile({ __metadata__: { cfg: { a: 1 } } }), /__metadata__\.cfg is an object, expected a string/);
  // A key named __proto__ stays data, it does not change the result's prototype.
  const odd = decodeSafetensors(rawFile('{"__metadata__":{"__proto__":"x"}}'), 'odd');
  assert.is(Object.getPrototypeOf(odd.metadata), Object.prototype);
  assert.is(odd.metadata['__proto__'], 'x');
});

malformed('hostile headers: sizes bounded before allocating, nothing executed, messages stay short', async () => {
  // A header length of 2^63 or one past the end allocates nothing the size of what it declares.
  for (const declared of [2n ** 63n, BigInt(MAX_HEADER_BYTES), 1000n]) {
    const r = await withAllocationGuard(1 << 20, () => decodeSafetensors(rawFile({}, 0, declared), 'h.safetensors'));
    assert.ok(r.threw, `header length ${declared} refused`);
    assert.match((r.error as Error).message, /^h\.safetensors: header length \d+ (exceeds|runs past)/);
    assert.ok(r.largest < 1024, `largest allocation ${r.largest} bytes`);
  }
  // A tensor declaring 2^40 elements over 8 bytes of data: refused before any tensor is allocated.
  const r = await withAllocationGuard(1 << 20, () => decodeSafetensors(rawFile({ w: entry('F32', [2 ** 40], [0, 8]) }, 8), 'big'));
  assert.ok(r.threw && r.largest < 1024, `refused without allocating (${r.largest} bytes)`);
  // The header is data: JSON.parse only. Names and values that would be code or prototype keys in
  // other decoders stay strings, and no built-in prototype changes.
  const names = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', '${process.exit(1)}', 'function(){}'];
  const header: Record<string, unknown> = {};
  names.forEach((name, k) => Object.defineProperty(header, name, { value: entry('U8', [1], [k, k + 1]), enumerable: true }));
  const before = Reflect.ownKeys(Object.prototype).length;
  const decoded = decodeSafetensors(rawFile(header, Uint8Array.from(names, (_, k) => k)), 'names');
  assert.equal([...decoded.tensors.keys()].sort(), [...names].sort());
  names.forEach((name, k) => assert.equal(Array.from(decoded.tensors.get(name)!.data), [k], name));
  assert.is(Reflect.ownKeys(Object.prototype).length, before);
  // A shape nested a million deep (JSON.parse copes; JSON.stringify in a message would overflow)
  // and megabyte names give short messages that still name the file and the tensor.
  expectError(rawFile(`{"w":{"dtype":"F32","shape":${'['.repeat(1e6)}${']'.repeat(1e6)},"data_offsets":[0,0]}}`), /^bad\.safetensors: tensor w: shape an array of 1 items \(nested\), expected/);
  const long = 'n'.repeat(1e6);
  assert.throws(() => decodeSafetensors(rawFile({ [long]: 5 }), 'bad.safetensors'), (e: Error) => e.message.length < 300 && /^bad\.safetensors: tensor n{80}\.\.\. \(1000000 characters\) is 5/.test(e.message));
});

malformed('the encoder rejects inconsistent input', () => {
  assert.throws(() => encodeSafetensors({ w: { shape: [2, 3], data: new Float32Array(5) } }), /encodeSafetensors: tensor w: shape \[2, 3\] has 6 elements, the data has 5/);
  assert.throws(() => encodeSafetensors({ w: { shape: [1], data: new Int32Array(1), dtype: 'F16' } }), /tensor w: dtype F16 needs a Float32Array, got a Int32Array/);
  assert.throws(() => encodeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), /"__metadata__" is reserved/);
  assert.throws(() => encodeSafetensors({}, { step: 3 as unknown as string }), /__metadata__\.step is a number, expected a string/);
});

// ---------------------------------------------------------------------------------------------
const files = suite('atomic files');

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-files-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** assert.throws for promises: rejects with a message matching `pattern`. */
async function rejects(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (e) {
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

files('writes, replaces, and leaves no temporary file; checkpoints survive the trip', () => withTempDir(async (dir) => {
  const path = join(dir, 'ckpt.safetensors');
  const first = encodeSafetensors({ w: { shape: [4], data: Float32Array.of(1, 2, 3, 4) } }, { step: '1' });
  await writeFileAtomic(path, first);
  assert.equal(readdirSync(dir), ['ckpt.safetensors']);
  const second = encodeSafetensors({ w: { shape: [2], data: Float32Array.of(5, 6) } }, { step: '2' });
  await writeFileAtomic(path, [second.subarray(0, 10), second.subarray(10)]);
  assert.equal(readdirSync(dir), ['ckpt.safetensors']);
  const back = decodeSafetensors(await readFileBytes(path), path);
  assert.equal(back.metadata, { step: '2' });
  assert.equal(Array.from(back.tensors.get('w')!.data), [5, 6]);
}));

files('a write that fails midway leaves the old file untouched and removes the temporary file', () => withTempDir(async (dir) => {
  const path = join(dir, 'ckpt.safetensors');
  writeFileSync(path, 'old contents');
  let sawTemp = false;
  function* chunks(): Generator<Uint8Array> {
    yield new TextEncoder().encode('new, half written');
    // Mid-write: the target still holds the old data; the new bytes are in a temporary file beside it.
    assert.is(readFileSync(path, 'utf8'), 'old contents');
    sawTemp = readdirSync(dir).some((name) => name !== 'ckpt.safetensors' && name.endsWith('.tmp'));
    throw new Error('disk full (simulated)');
  }
  await rejects(writeFileAtomic(path, chunks()), new RegExp(`${path}: atomic write failed: disk full \\(simulated\\)`));
  assert.ok(sawTemp, 'the data went to a temporary file in the same folder');
  assert.is(readFileSync(path, 'utf8'), 'old contents');
  assert.equal(readdirSync(dir), ['ckpt.safetensors']);
}));

files('a missing folder or a directory in the way fails cleanly, naming the path', () => withTempDir(async (dir) => {
  const missing = join(dir, 'no-such-folder', 'ckpt.safetensors');
  await rejects(writeFileAtomic(missing, new Uint8Array(8)), new RegExp(`${missing}: atomic write failed: ENOENT`));
  assert.equal(readdirSync(dir), []);
  const occupied = join(dir, 'taken');
  mkdirSync(occupied);
  writeFileSync(join(occupied, 'keep'), 'x');
  await rejects(writeFileAtomic(occupied, new Uint8Array(8)), new RegExp(`${occupied}: atomic write failed`));
  assert.ok(statSync(occupied).isDirectory());
  assert.equal(readdirSync(dir), ['taken']);
  assert.equal(readdirSync(occupied), ['keep']);
  await rejects(readFileBytes(join(dir, 'nope')), new RegExp(`${join(dir, 'nope')}: cannot read: ENOENT`));
}));

codec.run();
half.run();
malformed.run();
files.run();
