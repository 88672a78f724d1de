enable subgroups;

// Implicit-GEMM 2-D convolution, forward, for the real shapes (Conv1, PrimaryCaps): out = bias + x (*) w,
// optional ReLU, as the GEMM C[m, n] = sum_k A[m, k] wt[k, n] with m = (b, oy, ox) (M = B OH OW rows),
// n = output channel, k = the packed reduction index (kernels/conv2d_pack.wgsl):
//   A[m, k] = xq[b, oy sy + ky, ox sx + kq kxs, c][j]    (read straight from the packed input: no im2col)
//   xq  [B, Hp, Wp, CG] of vec4 (pack_input)      wt [KH KQ CG 4, N4] of vec4 (pack_weight, zero past Cout)
//   bias [Cout] (read if has_bias)                out [B, Cout, OH, OW] (PyTorch's layout)
// An invocation owns a register block of ROWS rows (m) x 16 columns (n) in vec4 accumulators (4 x 4
// of them per k-step of 4: 16 FMAs per loaded A vec4); the WG invocations of a workgroup share the
// 16 columns, so wt addresses are workgroup-uniform (a cache broadcast on GPUs), and A is read as vec4
// along k. llvmpipe runs each invocation as a SIMD lane and is bound by loads, not FMAs (see
// SOFTWARE_GPU.md). Rows past M are clamped and their results dropped: no bounds checks in the loop.
// This _sg variant (adapters whose subgroups are exactly 8 invocations wide, e.g. llvmpipe on
// Vulkan; WG must be 8): each invocation loads 2 of the 16 shared operand vec4s of a step and gets
// the others by subgroupBroadcast, 8x fewer loads of the shared operand (llvmpipe has no cheap
// uniform load for loop-dependent addresses: every lane would load it).
// Split-K: one dispatch per chunk [kp0, kp1) of kernel positions (ky, kq), each adding into out in
// turn (first: bias, last: ReLU); dispatches in one pass run in order.
// Grid: x = N4 / 4 column tiles, y = ceil(M / (WG ROWS)) row tiles.
// Reference: test/reference/conv2d.ts (conv2dForward). Test: test/conv2d.test.ts.

struct Params {
  M: u32, P: u32, OW: u32, sy: u32,
  sx: u32, Wp: u32, HpWp: u32, CG: u32,
  kxs: u32, KQ: u32, kp0: u32, kp1: u32,
  N4: u32, Cout: u32, flags: u32,
}
// flags: bit 0 first chunk (start from the bias, or 0), bit 1 last chunk (apply ReLU if bit 2), bit 3 has bias.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xq: array<vec4f>;
@group(0) @binding(2) var<storage, read> wt: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

/** Invocations per workgroup: must be 8, the subgroup size (rows per workgroup = 8 * ROWS). */
override WG: u32 = 8;
/** Rows of the register block per invocation: 4 or 8. */
override ROWS: u32 = 8;

/** Offset in xq (vec4) of output row m's receptive field; m is clamped to the last real row. */
fn row_base(m: u32) -> u32 {
  let mm = min(m, p.M - 1u);
  let b = mm / p.P;
  let q = mm - b * p.P;
  let oy = q / p.OW;
  let ox = q - oy * p.OW;
  return (b * p.HpWp + oy * p.sy * p.Wp + ox * p.sx) * p.CG;
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
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let n4 = wid.x * 4u;
  let m0 = wid.y * WG * ROWS + lid;
  let base0 = row_base(m0 + 0u * WG);
  let base1 = row_base(m0 + 1u * WG);
  let base2 = row_base(m0 + 2u * WG);
  let base3 = row_base(m0 + 3u * WG);
  let base4 = row_base(m0 + 4u * WG);
  let base5 = row_base(m0 + 5u * WG);
  let base6 = row_base(m0 + 6u * WG);
  let base7 = row_base(m0 + 7u * WG);
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  // Who loads which part of the shared operand goes by subgroup lane (the index subgroupBroadcast
  // reads), not by local_invocation_index: WGSL does not promise the two agree.
  let sc = lane % 4u;
  let sj0 = lane / 4u;
  let sj1 = sj0 + 2u;
  let n4s = p.N4;
  // Kernel position kp = (ky, kq), followed incrementally (no division in the loop).
  var kq = p.kp0 % p.KQ;
  var off = ((p.kp0 / p.KQ) * p.Wp + kq * p.kxs) * p.CG;
  let rowWrap = (p.Wp - p.KQ * p.kxs) * p.CG;
  var wi = p.kp0 * p.CG * 4u * n4s + n4;
  for (var kp = p.kp0; kp < p.kp1; kp++) {
    for (var c = off; c < off + p.CG; c++) {
      let s0 = wt[wi + sj0 * n4s + sc];
      let s1 = wt[wi + sj1 * n4s + sc];
      let w0 = mat4x4f(subgroupBroadcast(s0, 0u), subgroupBroadcast(s0, 4u), subgroupBroadcast(s1, 0u), subgroupBroadcast(s1, 4u));
      let w1 = mat4x4f(subgroupBroadcast(s0, 1u), subgroupBroadcast(s0, 5u), subgroupBroadcast(s1, 1u), subgroupBroadcast(s1, 5u));
      let w2 = mat4x4f(subgroupBroadcast(s0, 2u), subgroupBroadcast(s0, 6u), subgroupBroadcast(s1, 2u), subgroupBroadcast(s1, 6u));
      let w3 = mat4x4f(subgroupBroadcast(s0, 3u), subgroupBroadcast(s0, 7u), subgroupBroadcast(s1, 3u), subgroupBroadcast(s1, 7u));
      let a0 = xq[base0 + c];
      acc00 += w0 * a0; acc01 += w1 * a0; acc02 += w2 * a0; acc03 += w3 * a0;
      let a1 = xq[base1 + c];
      acc10 += w0 * a1; acc11 += w1 * a1; acc12 += w2 * a1; acc13 += w3 * a1;
      let a2 = xq[base2 + c];
      acc20 += w0 * a2; acc21 += w1 * a2; acc22 += w2 * a2; acc23 += w3 * a2;
      let a3 = xq[base3 + c];
      acc30 += w0 * a3; acc31 += w1 * a3; acc32 += w2 * a3; acc33 += w3 * a3;
      if (ROWS > 4u) {
        let a4 = xq[base4 + c];
        acc40 += w0 * a4; acc41 += w1 * a4; acc42 += w2 * a4; acc43 += w3 * a4;
        let a5 = xq[base5 + c];
        acc50 += w0 * a5; acc51 += w1 * a5; acc52 += w2 * a5; acc53 += w3 * a5;
        let a6 = xq[base6 + c];
        acc60 += w0 * a6; acc61 += w1 * a6; acc62 += w2 * a6; acc63 += w3 * a6;
        let a7 = xq[base7 + c];
        acc70 += w0 * a7; acc71 += w1 * a7; acc72 += w2 * a7; acc73 += w3 * a7;
      }
      wi += 4u * n4s;
    }
    kq += 1u;
    off += p.kxs * p.CG;
    if (kq == p.KQ) {
      kq = 0u;
      off += rowWrap;
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
