// Implicit-GEMM 2-D convolution, forward, with texture operands: kernels/conv2d_gemm.wgsl (same
// GEMM, same register block, same split-K, bias and ReLU) reading the packed input and weights from
// read-only storage textures written by kernels/conv2d_pack_tex.wgsl, the cheapest loads on llvmpipe
// (../shared/SOFTWARE_GPU.md). out = bias + x (*) w, as C[m, n] = sum_k A[m, k] W[k, n] with
// m = (b, oy, ox), n = output channel, k = ((ky KQ + kq) CG + c) 4 + j:
//   A[m, k] = X texel (row x + kq kxs CG + c, row y + ky)[j], where (row x, row y) is the texel of
//             (b, oy sy, ox sx) in the folded packed input ((b / ipb) RW + ox sx CG, (b % ipb) Hp + oy sy)
//   W[k, n] = Wt texel ((kp / kpb) 4 N4 + 4 (n / 4) + j, (kp % kpb) CG + c)[n % 4]   (kp = ky KQ + kq)
//   bias [Cout] (read if has_bias)                 out [B, Cout, OH, OW] (PyTorch's layout, a storage buffer)
// The folds change only per kernel position, outside the inner loop over c. Rows past M are clamped
// and their results dropped. Split-K: one dispatch per chunk [kp0, kp1) of kernel positions, each
// adding into out in turn (first: bias, last: ReLU).
// Grid: x = N4 / 4 column tiles, y = ceil(M / (WG ROWS)) row tiles.
// Reference: test/reference/conv2d.ts (conv2dForward). Test: test/conv2d.test.ts.

struct Params {
  M: u32, P: u32, OW: u32, sy: u32,
  sx: u32, Hp: u32, CG: u32, kxs: u32,
  KQ: u32, kp0: u32, kp1: u32, N4: u32,
  Cout: u32, flags: u32, RW: u32, ipb: u32,
  kpb: u32,
}
// flags: bit 0 first chunk (start from the bias, or 0), bit 1 last chunk (apply ReLU if bit 2), bit 3 has bias.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var xq: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var wt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

/** Invocations per workgroup (rows per workgroup = WG * ROWS). */
override WG: u32 = 8;
/** Rows of the register block per invocation: 4 or 8. */
override ROWS: u32 = 8;

/** The texel of output row m's receptive field origin in the packed input; m is clamped to the last real row. */
fn row_texel(m: u32) -> vec2i {
  let mm = min(m, p.M - 1u);
  let b = mm / p.P;
  let q = mm - b * p.P;
  let oy = q / p.OW;
  let ox = q - oy * p.OW;
  return vec2i(i32((b / p.ipb) * p.RW + ox * p.sx * p.CG), i32((b % p.ipb) * p.Hp + oy * p.sy));
}

/** Offset in out of row m = (b, q) at channel 0; rows past M are not written. */
fn out_base(m: u32) -> u32 {
  let b = m / p.P;
  return b * p.Cout * p.P + (m - b * p.P);
}

/** The bias of channels 4 n4 .. 4 n4 + 3 when this chunk starts from it (the first, with a bias), else 0. */
fn bias4(n4: u32) -> vec4f {
  var v = vec4f(0.0);
  if ((p.flags & 9u) == 9u) {
    for (var j = 0u; j < 4u; j++) {
      let co = min(4u * n4 + j, p.Cout - 1u);
      v[j] = bias[co];
    }
  }
  return v;
}

/** Writes (first chunk) or adds (later chunks) the 4 channels of row m, with ReLU after the last chunk. */
fn write_out(m: u32, ob: u32, n4: u32, v: vec4f) {
  if (m >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let co = 4u * n4 + j;
    if (co >= p.Cout) { return; }
    let i = ob + co * p.P;
    var s = v[j];
    if ((p.flags & 1u) == 0u) {
      s += out[i];
    }
    if ((p.flags & 6u) == 6u) { s = relu_keep_nan(s); }
    out[i] = s;
  }
}

// ReLU that keeps NaN, decided on the bits (as in dense.wgsl): OpenGL llvmpipe may compare floats
// unordered (`NaN < 0.0` true) and WGSL's max(NaN, 0) may return either operand; a NaN must reach
// the trainer's non-finite check, not become 0. Zero for -0 ... -inf, v otherwise.
fn relu_keep_nan(v: f32) -> f32 {
  let bits = bitcast<u32>(v);
  return select(v, 0.0, bits >= 0x80000000u && bits <= 0xff800000u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n4 = wid.x * 4u;
  let m0 = wid.y * WG * ROWS + lid;
  let base0 = row_texel(m0 + 0u * WG);
  let base1 = row_texel(m0 + 1u * WG);
  let base2 = row_texel(m0 + 2u * WG);
  let base3 = row_texel(m0 + 3u * WG);
  let base4 = row_texel(m0 + 4u * WG);
  let base5 = row_texel(m0 + 5u * WG);
  let base6 = row_texel(m0 + 6u * WG);
  let base7 = row_texel(m0 + 7u * WG);
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  let cg = i32(p.CG);
  for (var kp = p.kp0; kp < p.kp1; kp++) {
    // This kernel position's shift in the packed input and its block of the folded weights.
    let ky = kp / p.KQ;
    let d = vec2i(i32((kp - ky * p.KQ) * p.kxs * p.CG), i32(ky));
    let t0 = base0 + d;
    let t1 = base1 + d;
    let t2 = base2 + d;
    let t3 = base3 + d;
    let t4 = base4 + d;
    let t5 = base5 + d;
    let t6 = base6 + d;
    let t7 = base7 + d;
    let wb = kp / p.kpb;
    let wx = i32(wb * 4u * p.N4 + 4u * n4);
    let wy = i32((kp - wb * p.kpb) * p.CG);
    for (var c = 0; c < cg; c++) {
      let y = wy + c;
      let w0 = mat4x4f(textureLoad(wt, vec2i(wx + 0, y)), textureLoad(wt, vec2i(wx + 1, y)), textureLoad(wt, vec2i(wx + 2, y)), textureLoad(wt, vec2i(wx + 3, y)));
      let w1 = mat4x4f(textureLoad(wt, vec2i(wx + 4, y)), textureLoad(wt, vec2i(wx + 5, y)), textureLoad(wt, vec2i(wx + 6, y)), textureLoad(wt, vec2i(wx + 7, y)));
      let w2 = mat4x4f(textureLoad(wt, vec2i(wx + 8, y)), textureLoad(wt, vec2i(wx + 9, y)), textureLoad(wt, vec2i(wx + 10, y)), textureLoad(wt, vec2i(wx + 11, y)));
      let w3 = mat4x4f(textureLoad(wt, vec2i(wx + 12, y)), textureLoad(wt, vec2i(wx + 13, y)), textureLoad(wt, vec2i(wx + 14, y)), textureLoad(wt, vec2i(wx + 15, y)));
      let a0 = textureLoad(xq, vec2i(t0.x + c, t0.y));
      acc00 += w0 * a0; acc01 += w1 * a0; acc02 += w2 * a0; acc03 += w3 * a0;
      let a1 = textureLoad(xq, vec2i(t1.x + c, t1.y));
      acc10 += w0 * a1; acc11 += w1 * a1; acc12 += w2 * a1; acc13 += w3 * a1;
      let a2 = textureLoad(xq, vec2i(t2.x + c, t2.y));
      acc20 += w0 * a2; acc21 += w1 * a2; acc22 += w2 * a2; acc23 += w3 * a2;
      let a3 = textureLoad(xq, vec2i(t3.x + c, t3.y));
      acc30 += w0 * a3; acc31 += w1 * a3; acc32 += w2 * a3; acc33 += w3 * a3;
      if (ROWS > 4u) {
        let a4 = textureLoad(xq, vec2i(t4.x + c, t4.y));
        acc40 += w0 * a4; acc41 += w1 * a4; acc42 += w2 * a4; acc43 += w3 * a4;
        let a5 = textureLoad(xq, vec2i(t5.x + c, t5.y));
        acc50 += w0 * a5; acc51 += w1 * a5; acc52 += w2 * a5; acc53 += w3 * a5;
        let a6 = textureLoad(xq, vec2i(t6.x + c, t6.y));
        acc60 += w0 * a6; acc61 += w1 * a6; acc62 += w2 * a6; acc63 += w3 * a6;
        let a7 = textureLoad(xq, vec2i(t7.x + c, t7.y));
        acc70 += w0 * a7; acc71 += w1 * a7; acc72 += w2 * a7; acc73 += w3 * a7;
      }
    }
  }
  // The bias of the 16 columns, read once (zero unless this is the first chunk and there is a bias).
  let bias0 = bias4(n4 + 0u);
  let bias1 = bias4(n4 + 1u);
  let bias2 = bias4(n4 + 2u);
  let bias3 = bias4(n4 + 3u);
  let ob0 = out_base(m0 + 0u * WG);
  write_out(m0 + 0u * WG, ob0, n4 + 0u, acc00 + bias0); write_out(m0 + 0u * WG, ob0, n4 + 1u, acc01 + bias1); write_out(m0 + 0u * WG, ob0, n4 + 2u, acc02 + bias2); write_out(m0 + 0u * WG, ob0, n4 + 3u, acc03 + bias3);
  let ob1 = out_base(m0 + 1u * WG);
  write_out(m0 + 1u * WG, ob1, n4 + 0u, acc10 + bias0); write_out(m0 + 1u * WG, ob1, n4 + 1u, acc11 + bias1); write_out(m0 + 1u * WG, ob1, n4 + 2u, acc12 + bias2); write_out(m0 + 1u * WG, ob1, n4 + 3u, acc13 + bias3);
  let ob2 = out_base(m0 + 2u * WG);
  write_out(m0 + 2u * WG, ob2, n4 + 0u, acc20 + bias0); write_out(m0 + 2u * WG, ob2, n4 + 1u, acc21 + bias1); write_out(m0 + 2u * WG, ob2, n4 + 2u, acc22 + bias2); write_out(m0 + 2u * WG, ob2, n4 + 3u, acc23 + bias3);
  let ob3 = out_base(m0 + 3u * WG);
  write_out(m0 + 3u * WG, ob3, n4 + 0u, acc30 + bias0); write_out(m0 + 3u * WG, ob3, n4 + 1u, acc31 + bias1); write_out(m0 + 3u * WG, ob3, n4 + 2u, acc32 + bias2); write_out(m0 + 3u * WG, ob3, n4 + 3u, acc33 + bias3);
  if (ROWS > 4u) {
    let ob4 = out_base(m0 + 4u * WG);
    write_out(m0 + 4u * WG, ob4, n4 + 0u, acc40 + bias0); write_out(m0 + 4u * WG, ob4, n4 + 1u, acc41 + bias1); write_out(m0 + 4u * WG, ob4, n4 + 2u, acc42 + bias2); write_out(m0 + 4u * WG, ob4, n4 + 3u, acc43 + bias3);
    let ob5 = out_base(m0 + 5u * WG);
    write_out(m0 + 5u * WG, ob5, n4 + 0u, acc50 + bias0); write_out(m0 + 5u * WG, ob5, n4 + 1u, acc51 + bias1); write_out(m0 + 5u * WG, ob5, n4 + 2u, acc52 + bias2); write_out(m0 + 5u * WG, ob5, n4 + 3u, acc53 + bias3);
    let ob6 = out_base(m0 + 6u * WG);
    write_out(m0 + 6u * WG, ob6, n4 + 0u, acc60 + bias0); write_out(m0 + 6u * WG, ob6, n4 + 1u, acc61 + bias1); write_out(m0 + 6u * WG, ob6, n4 + 2u, acc62 + bias2); write_out(m0 + 6u * WG, ob6, n4 + 3u, acc63 + bias3);
    let ob7 = out_base(m0 + 7u * WG);
    write_out(m0 + 7u * WG, ob7, n4 + 0u, acc70 + bias0); write_out(m0 + 7u * WG, ob7, n4 + 1u, acc71 + bias1); write_out(m0 + 7u * WG, ob7, n4 + 2u, acc72 + bias2); write_out(m0 + 7u * WG, ob7, n4 + 3u, acc73 + bias3);
  }
}
