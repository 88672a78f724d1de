// PNG codec: CRC-32, roundtrips, and agreement with an independent implementation (a PNG writer and
// reader in Python written here from the spec, using only Python's zlib), plus every refusal.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { crc32, decodePng, encodePng, type PngChannels } from '../src/io/png.ts';
import { makeRng } from './helpers/random.ts';
import { skipWithReason } from './helpers/skip.ts';

const png = suite('png');
const ascii = (s: string) => new TextEncoder().encode(s);

/** Chunks of a PNG, parsed by the test itself (no CRC check) to inspect what the encoder wrote. */
function chunks(bytes: Uint8Array): Array<{ type: string; data: Uint8Array; at: number }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  for (let at = 8; at < bytes.length;) {
    const length = view.getUint32(at);
    out.push({ type: new TextDecoder().decode(bytes.subarray(at + 4, at + 8)), data: bytes.subarray(at + 8, at + 8 + length), at });
    at += 12 + length;
  }
  return out;
}

/** Test images: noise (filters rarely help) and smooth gradients (they do), for each channel count. */
function testImages(): Array<{ w: number; h: number; c: PngChannels; pixels: Uint8Array }> {
  const rng = makeRng(7);
  const out = [];
  for (const c of [1, 3, 4] as const) {
    for (const [w, h] of [[1, 1], [7, 5], [33, 17], [2, 64]]) {
      out.push({ w, h, c, pixels: Uint8Array.from({ length: w * h * c }, () => Math.floor(rng() * 256)) });
      out.push({ w, h, c, pixels: Uint8Array.from({ length: w * h * c }, (_, i) => (Math.floor(i / c) % w) * 3 + Math.floor(i / (w * c)) * 5 + (i % c) * 40) });
    }
  }
  return out;
}

png('CRC-32 of "123456789" is 0xCBF43926, and continues over pieces', () => {
  assert.is(crc32(ascii('123456789')), 0xcbf43926);
  assert.is(crc32(new Uint8Array(0)), 0);
  const rng = makeRng(3);
  const data = Uint8Array.from({ length: 1000 }, () => Math.floor(rng() * 256));
  assert.is(crc32(data.subarray(300), crc32(data.subarray(0, 300))), crc32(data));
  const zcrc = (zlib as unknown as { crc32?: (d: Uint8Array) => number }).crc32; // Node >= 20.15
  if (zcrc) assert.is(crc32(data), zcrc(data));
});

png('encode then decode returns the same pixels, for grey, RGB and RGBA, odd sizes; rows use several filters', () => {
  const filtersUsed = new Set<number>();
  for (const { w, h, c, pixels } of testImages()) {
    const bytes = encodePng(w, h, c, pixels);
    const back = decodePng(bytes);
    assert.equal([back.width, back.height, back.channels], [w, h, c]);
    assert.ok(Buffer.from(back.pixels).equals(Buffer.from(pixels)), `${w}x${h}x${c} pixels differ`);
    // The IHDR fields, read by hand.
    const [ihdr, ...rest] = chunks(bytes);
    const v = new DataView(ihdr.data.buffer, ihdr.data.byteOffset, 13);
    assert.equal([ihdr.type, v.getUint32(0), v.getUint32(4), ...ihdr.data.subarray(8)], ['IHDR', w, h, 8, { 1: 0, 3: 2, 4: 6 }[c], 0, 0, 0]);
    assert.equal(rest.map((k) => k.type), ['IDAT', 'IEND']);
    const raw = zlib.inflateSync(rest[0].data);
    for (let y = 0; y < h; y++) filtersUsed.add(raw[y * (w * c + 1)]);
  }
  assert.ok(filtersUsed.size >= 3, `the per-row heuristic chose only filters ${[...filtersUsed]}`);
});

png('encodePng refuses bad arguments with messages naming them', () => {
  assert.throws(() => encodePng(0, 1, 1, new Uint8Array(0)), /width must be an integer/);
  assert.throws(() => encodePng(2.5, 1, 1, new Uint8Array(2)), /width must be an integer/);
  assert.throws(() => encodePng(1, -1, 1, new Uint8Array(1)), /height must be an integer/);
  assert.throws(() => encodePng(1, 1, 2 as PngChannels, new Uint8Array(2)), /channels must be 1 \(grey\), 3 \(RGB\) or 4 \(RGBA\), got 2/);
  assert.throws(() => encodePng(3, 2, 3, new Uint8Array(17)), /3x2x3 needs 18 bytes of pixels, got 17/);
  assert.throws(() => encodePng(1, 1, 1, [0] as unknown as Uint8Array), /pixels must be a Uint8Array/);
});

png('decodePng names what is wrong with a damaged or unsupported file', () => {
  const good = encodePng(4, 3, 3, Uint8Array.from({ length: 36 }, (_, i) => i * 7));
  const ihdrCrcAt = 8 + 8 + 13; // signature, length + type, 13 bytes of IHDR data
  /** `good` with IHDR data byte `k` set to `v` and the CRC fixed, so only the field is wrong. */
  const withIhdr = (k: number, v: number) => {
    const b = good.slice();
    b[16 + k] = v;
    new DataView(b.buffer).setUint32(ihdrCrcAt, crc32(b.subarray(12, ihdrCrcAt)));
    return b;
  };
  assert.throws(() => decodePng(ascii('GIF89a...'), 'x.png'), /^x\.png: not a PNG file \(bad signature\)/);
  const flipped = good.slice();
  flipped[good.length - 20] ^= 1; // inside the IDAT data
  assert.throws(() => decodePng(flipped, 'f.png'), /f\.png: CRC mismatch in chunk IDAT at byte 33/);
  assert.throws(() => decodePng(good.subarray(0, good.length - 12)), /truncated: no IEND chunk/);
  assert.throws(() => decodePng(good.subarray(0, 40)), /truncated: chunk header at byte 33 is cut short/);
  assert.throws(() => decodePng(good.subarray(0, 50)), /truncated: chunk IDAT at byte 33 needs \d+ bytes of data/);
  assert.throws(() => decodePng(withIhdr(8, 16)), /bit depth 16 is not supported/);
  assert.throws(() => decodePng(withIhdr(9, 3)), /colour type 3 \(palette\) is not supported/);
  assert.throws(() => decodePng(withIhdr(9, 4)), /colour type 4 \(grey \+ alpha\) is not supported/);
  assert.throws(() => decodePng(withIhdr(12, 1)), /interlaced \(Adam7\) images are not supported/);
  // The data (3 rows of 1 + 4x3 bytes = 39) against a header claiming width 5 (48 needed) or 3 (30).
  assert.throws(() => decodePng(withIhdr(3, 5)), /image data inflates to 39 bytes, a 5x3x3 image needs 48/);
  assert.throws(() => decodePng(withIhdr(3, 3)), /image data inflates to more than the 30 bytes a 3x3x3 image needs/);
  // An unknown critical chunk before IEND, and an IDAT-less file.
  const parts = chunks(good);
  const build = (list: Array<[string, Uint8Array]>) => {
    const pieces = [good.subarray(0, 8)];
    for (const [type, data] of list) {
      const c = new Uint8Array(12 + data.length);
      new DataView(c.buffer).setUint32(0, data.length);
      c.set(ascii(type), 4);
      c.set(data, 8);
      new DataView(c.buffer).setUint32(8 + data.length, crc32(c.subarray(4, 8 + data.length)));
      pieces.push(c);
    }
    return Uint8Array.from(pieces.flatMap((p) => [...p]));
  };
  const ihdr: [string, Uint8Array] = ['IHDR', parts[0].data];
  const idat: [string, Uint8Array] = ['IDAT', parts[1].data];
  const iend: [string, Uint8Array] = ['IEND', new Uint8Array(0)];
  assert.throws(() => decodePng(build([ihdr, idat, ['ZZZZ', ascii('?')], iend])), /unsupported critical chunk ZZZZ/);
  assert.throws(() => decodePng(build([ihdr, iend])), /no IDAT chunk/);
  assert.throws(() => decodePng(build([idat, ihdr, iend])), /the first chunk must be IHDR, found IDAT/);
  assert.throws(() => decodePng(build([ihdr, ['IDAT', ascii('not zlib')], iend])), /corrupt image data \(zlib/);
  // A bad filter byte in row 1.
  const raw = zlib.inflateSync(parts[1].data);
  raw[13] = 9;
  assert.throws(() => decodePng(build([ihdr, ['IDAT', zlib.deflateSync(raw)], iend])), /row 1 has unknown filter type 9/);
  // Ancillary chunks are skipped; a split IDAT is joined.
  const split = build([ihdr, ['tEXt', ascii('Comment\0hi')], ['IDAT', parts[1].data.subarray(0, 5)], ['IDAT', parts[1].data.subarray(5)], iend]);
  assert.equal(decodePng(split).pixels, decodePng(good).pixels);
});

// ---- independent implementation ----------------------------------------------------------------

const hasPython = spawnSync('python3', ['-c', 'import zlib'], { encoding: 'utf8' }).status === 0;

/** Decodes a PNG (8-bit, colour type 0/2/6) from the spec: CRCs checked, all five filters; prints w h c hex. */
const PY_DECODE = String.raw`
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'signature'
at, idat = 8, b''
while True:
    n, kind = struct.unpack('>I4s', data[at:at + 8])
    body = data[at + 8:at + 8 + n]
    assert struct.unpack('>I', data[at + 8 + n:at + 12 + n])[0] == zlib.crc32(kind + body), 'crc ' + kind.decode()
    if kind == b'IHDR':
        w, h, depth, ctype, comp, filt, inter = struct.unpack('>IIBBBBB', body)
        assert (depth, comp, filt, inter) == (8, 0, 0, 0)
        c = {0: 1, 2: 3, 6: 4}[ctype]
    elif kind == b'IDAT':
        idat += body
    elif kind == b'IEND':
        break
    at += 12 + n
raw, stride, out, prev = zlib.decompress(idat), w * c, bytearray(), bytearray(w * c)
for y in range(h):
    f, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = row[i - c] if i >= c else 0
        b = prev[i]
        d = prev[i - c] if i >= c else 0
        if f == 0: p = 0
        elif f == 1: p = a
        elif f == 2: p = b
        elif f == 3: p = (a + b) // 2
        else:
            q = a + b - d
            pa, pb, pc = abs(q - a), abs(q - b), abs(q - d)
            p = a if pa <= pb and pa <= pc else (b if pb <= pc else d)
        row[i] = (row[i] + p) & 255
    out += row
    prev = row
print(w, h, c, out.hex())
`;

/** Writes a PNG whose row y uses filter y % 5, its data split over two IDATs, with a tEXt chunk; prints the pixels' hex. */
const PY_ENCODE = String.raw`
import struct, sys, zlib
path, w, h, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
px = bytearray(((x * 37 + y * 11) ^ (k * 91) ^ ((x * y) % 13)) & 255 for y in range(h) for x in range(w) for k in range(c))
stride, raw, prev = w * c, bytearray(), bytearray(w * c)
for y in range(h):
    row, f = px[y * stride:(y + 1) * stride], y % 5
    raw.append(f)
    for i in range(stride):
        a = row[i - c] if i >= c else 0
        b = prev[i]
        d = prev[i - c] if i >= c else 0
        q = a + b - d
        pa, pb, pc = abs(q - a), abs(q - b), abs(q - d)
        p = [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else (b if pb <= pc else d)][f]
        raw.append((row[i] - p) & 255)
    prev = row
def chunk(kind, body):
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
z = zlib.compress(bytes(raw))
ctype = {1: 0, 3: 2, 4: 6}[c]
out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, ctype, 0, 0, 0))
out += chunk(b'tEXt', b'Software\x00hand-written test') + chunk(b'IDAT', z[:7]) + chunk(b'IDAT', z[7:]) + chunk(b'IEND', b'')
open(path, 'wb').write(out)
print(px.hex())
`;

function python(script: string, args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return r.stdout.trim();
}

if (!hasPython) {
  skipWithReason(png, 'an independent Python PNG reader decodes our files', 'python3 with zlib is not available');
  skipWithReason(png, 'we decode PNGs written by an independent Python writer', 'python3 with zlib is not available');
} else {
  png('an independent Python PNG reader decodes our files to the same pixels', () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-png-'));
    try {
      for (const { w, h, c, pixels } of testImages()) {
        const file = join(dir, `${w}x${h}x${c}.png`);
        writeFileSync(file, encodePng(w, h, c, pixels));
        assert.is(python(PY_DECODE, [file]), `${w} ${h} ${c} ${Buffer.from(pixels).toString('hex')}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  png('we decode PNGs written by an independent Python writer (all five filters, split IDAT, tEXt)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-png-'));
    try {
      for (const [w, h, c] of [[9, 11, 1], [5, 7, 3], [13, 6, 4], [1, 5, 3]] as const) {
        const file = join(dir, `py-${w}x${h}x${c}.png`);
        const expected = python(PY_ENCODE, [file, String(w), String(h), String(c)]);
        const image = decodePng(new Uint8Array(readFileSync(file)), file);
        assert.equal([image.width, image.height, image.channels], [w, h, c]);
        assert.is(Buffer.from(image.pixels).toString('hex'), expected, `${file}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

png.run();
