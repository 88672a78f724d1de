enable subgroups;

// Implicit-GEMM 2-D convolution, gradient with respect to the weights: the GEMM
// dwp[co, k] = sum over m of dOut[m, co] A[m, k] (A = the implicit im2col of the packed input, as in
// kernels/conv2d_gemm.wgsl), reduced over m = (b, oy, ox) in split-K slabs and chunks; the packed
// result is summed over slabs and reordered to [Cout, Cin, KH, KW] by finalize_grad_weight
// (kernels/conv2d_pack.wgsl).
//   dpt [rowsPad, MT4] of vec4: dpt[co, q][j] = dOut[m = 4q + j, co] (pack_grad_out_t, relu-masked, zero padded)
//   xq  [B, Hp, Wp, CG] of vec4 (pack_input)
//   dwp [slabs, rowsPad, N4] of vec4, packed k order: dwp[s, co, n][j] = sum over m in slab s of dpt[co, m] xq(m, n)[j]
// Register block: ROWS output channels x 16 packed k per invocation; the WG invocations of a
// workgroup share the 16 columns and the loop over m, so xq addresses are workgroup-uniform; dpt is
// read as vec4 along m. Rows m past M read a clamped position times dpt's zero padding.
// This _sg variant (adapters whose subgroups are exactly 8 invocations wide, e.g. llvmpipe on
// Vulkan; WG must be 8): each invocation loads 2 of the 16 shared operand vec4s of a step and gets
// the others by subgroupBroadcast, 8x fewer loads of the shared operand (llvmpipe has no cheap
// uniform load for loop-dependent addresses: every lane would load it).
// Split-K: slab s = workgroup z (parallel, finalize sums them); within a slab, chunks of m run as
// successive dispatches, each adding into dwp (accumulate = 1 after the first).
// Grid: x = N4 / 4 column tiles, y = rowsPad / (WG ROWS), z = slabs.
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params {
  M: u32, P: u32, OW: u32, sy: u32,
  sx: u32, Wp: u32, HpWp: u32, CG: u32,
  kxs: u32, KQ: u32, NK4: u32, N4: u32,
  MT4: u32, rowsPad: u32, slab4: u32, chunk0: u32,
  chunk4: u32, accumulate: u32, OH: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dpt: array<vec4f>;
@group(0) @binding(2) var<storage, read> xq: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dwp: array<vec4f>;

/** Invocations per workgroup: must be 8, the subgroup size (output channels per workgroup = WG * ROWS). */
override WG: u32 = 8;
/** Rows (output channels) of the register block per invocation: 4 or 8. */
override ROWS: u32 = 8;

/** Offset in xq (vec4) of row m's receptive field; m is clamped to the last real row. */
fn row_base(m: u32) -> u32 {
  let mm = min(m, p.M - 1u);
  let b = mm / p.P;
  let q = mm - b * p.P;
  let oy = q / p.OW;
  let ox = q - oy * p.OW;
  return (b * p.HpWp + oy * p.sy * p.Wp + ox * p.sx) * p.CG;
}

/** Moves the cursor (m, ox, oy, base) to the next row m. */
fn advance(m: ptr<function, u32>, ox: ptr<function, u32>, oy: ptr<function, u32>, base: ptr<function, u32>, stepX: u32, rowJump: u32, imgJump: u32) {
  *m += 1u;
  *ox += 1u;
  *base += stepX;
  let wrapX = *ox == p.OW;
  *ox = select(*ox, 0u, wrapX);
  *oy += select(0u, 1u, wrapX);
  *base += select(0u, rowJump, wrapX);
  let wrapY = *oy == p.OH;
  *oy = select(*oy, 0u, wrapY);
  *base += select(0u, imgJump, wrapY);
}

/** Offset in xq of packed column n (vec4) within a receptive field; n is clamped to the last real one. */
fn col_offset(n: u32) -> u32 {
  let nn = min(n, p.NK4 - 1u);
  let kp = nn / p.CG;
  let ky = kp / p.KQ;
  return (ky * p.Wp + (kp - ky * p.KQ) * p.kxs) * p.CG + (nn - kp * p.CG);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let n4 = wid.x * 4u;
  let row0 = wid.y * WG * ROWS + lid;
  let slab = wid.z;
  // This lane's two entries of the 16 shared vec4s of a step: t = lane and lane + 8, with
  // t = 4 j + c (row m = 4 q + j, column n4 + c).
  let myOff = col_offset(n4 + lane % 4u);
  let lowHalf = lane < 4u;
  let begin = slab * p.slab4 + p.chunk0;
  let end = min(min(begin + p.chunk4, (slab + 1u) * p.slab4), p.MT4);
  let arow0 = (row0 + 0u * WG) * p.MT4;
  let arow1 = (row0 + 1u * WG) * p.MT4;
  let arow2 = (row0 + 2u * WG) * p.MT4;
  let arow3 = (row0 + 3u * WG) * p.MT4;
  let arow4 = (row0 + 4u * WG) * p.MT4;
  let arow5 = (row0 + 5u * WG) * p.MT4;
  let arow6 = (row0 + 6u * WG) * p.MT4;
  let arow7 = (row0 + 7u * WG) * p.MT4;
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  // Row m's receptive field in xq, followed incrementally along m = (b, oy, ox) (no divisions in
  // the loop; u32 arithmetic wraps, so the jumps may be "negative"). Rows past M use the last row.
  let lastBase = row_base(p.M - 1u);
  let stepX = p.sx * p.CG;
  let rowJump = (p.sy * p.Wp - p.OW * p.sx) * p.CG;
  let imgJump = (p.HpWp - p.OH * p.sy * p.Wp) * p.CG;
  var m = 4u * begin;
  var base = row_base(m);
  var ox = 0u;
  var oy = 0u;
  if (m < p.M) {
    let q0 = m % p.P;
    oy = q0 / p.OW;
    ox = q0 - oy * p.OW;
  }
  for (var q = begin; q < end; q++) {
    let b0 = select(lastBase, base, m < p.M);
    advance(&m, &ox, &oy, &base, stepX, rowJump, imgJump);
    let b1 = select(lastBase, base, m < p.M);
    advance(&m, &ox, &oy, &base, stepX, rowJump, imgJump);
    let b2 = select(lastBase, base, m < p.M);
    advance(&m, &ox, &oy, &base, stepX, rowJump, imgJump);
    let b3 = select(lastBase, base, m < p.M);
    advance(&m, &ox, &oy, &base, stepX, rowJump, imgJump);
    let s0 = xq[select(b1, b0, lowHalf) + myOff];
    let s1 = xq[select(b3, b2, lowHalf) + myOff];
    let x0 = mat4x4f(subgroupBroadcast(s0, 0u), subgroupBroadcast(s0, 4u), subgroupBroadcast(s1, 0u), subgroupBroadcast(s1, 4u));
    let x1 = mat4x4f(subgroupBroadcast(s0, 1u), subgroupBroadcast(s0, 5u), subgroupBroadcast(s1, 1u), subgroupBroadcast(s1, 5u));
    let x2 = mat4x4f(subgroupBroadcast(s0, 2u), subgroupBroadcast(s0, 6u), subgroupBroadcast(s1, 2u), subgroupBroadcast(s1, 6u));
    let x3 = mat4x4f(subgroupBroadcast(s0, 3u), subgroupBroadcast(s0, 7u), subgroupBroadcast(s1, 3u), subgroupBroadcast(s1, 7u));
    let a0 = dpt[arow0 + q];
    acc00 += x0 * a0; acc01 += x1 * a0; acc02 += x2 * a0; acc03 += x3 * a0;
    let a1 = dpt[arow1 + q];
    acc10 += x0 * a1; acc11 += x1 * a1; acc12 += x2 * a1; acc13 += x3 * a1;
    let a2 = dpt[arow2 + q];
    acc20 += x0 * a2; acc21 += x1 * a2; acc22 += x2 * a2; acc23 += x3 * a2;
    let a3 = dpt[arow3 + q];
    acc30 += x0 * a3; acc31 += x1 * a3; acc32 += x2 * a3; acc33 += x3 * a3;
    if (ROWS > 4u) {
      let a4 = dpt[arow4 + q];
      acc40 += x0 * a4; acc41 += x1 * a4; acc42 += x2 * a4; acc43 += x3 * a4;
      let a5 = dpt[arow5 + q];
      acc50 += x0 * a5; acc51 += x1 * a5; acc52 += x2 * a5; acc53 += x3 * a5;
      let a6 = dpt[arow6 + q];
      acc60 += x0 * a6; acc61 += x1 * a6; acc62 += x2 * a6; acc63 += x3 * a6;
      let a7 = dpt[arow7 + q];
      acc70 += x0 * a7; acc71 += x1 * a7; acc72 += x2 * a7; acc73 += x3 * a7;
    }
  }
  let slabBase = slab * p.rowsPad;
  let o0 = (slabBase + row0 + 0u * WG) * p.N4 + n4;
  if (p.accumulate != 0u) {
    acc00 += dwp[o0 + 0u]; acc01 += dwp[o0 + 1u]; acc02 += dwp[o0 + 2u]; acc03 += dwp[o0 + 3u];
  }
  dwp[o0 + 0u] = acc00; dwp[o0 + 1u] = acc01; dwp[o0 + 2u] = acc02; dwp[o0 + 3u] = acc03;
  let o1 = (slabBase + row0 + 1u * WG) * p.N4 + n4;
  if (p.accumulate != 0u) {
    acc10 += dwp[o1 + 0u]; acc11 += dwp[o1 + 1u]; acc12 += dwp[o1 + 2u]; acc13 += dwp[o1 + 3u];
  }
  dwp[o1 + 0u] = acc10; dwp[o1 + 1u] = acc11; dwp[o1 + 2u] = acc12; dwp[o1 + 3u] = acc13;
  let o2 = (slabBase + row0 + 2u * WG) * p.N4 + n4;
  if (p.accumulate != 0u) {
    acc20 += dwp[o2 + 0u]; acc21 += dwp[o2 + 1u]; acc22 += dwp[o2 + 2u]; acc23 += dwp[o2 + 3u];
  }
  dwp[o2 + 0u] = acc20; dwp[o2 + 1u] = acc21; dwp[o2 + 2u] = acc22; dwp[o2 + 3u] = acc23;
  let o3 = (slabBase + row0 + 3u * WG) * p.N4 + n4;
  if (p.accumulate != 0u) {
    acc30 += dwp[o3 + 0u]; acc31 += dwp[o3 + 1u]; acc32 += dwp[o3 + 2u]; acc33 += dwp[o3 + 3u];
  }
  dwp[o3 + 0u] = acc30; dwp[o3 + 1u] = acc31; dwp[o3 + 2u] = acc32; dwp[o3 + 3u] = acc33;
  if (ROWS > 4u) {
    let o4 = (slabBase + row0 + 4u * WG) * p.N4 + n4;
    if (p.accumulate != 0u) {
      acc40 += dwp[o4 + 0u]; acc41 += dwp[o4 + 1u]; acc42 += dwp[o4 + 2u]; acc43 += dwp[o4 + 3u];
    }
    dwp[o4 + 0u] = acc40; dwp[o4 + 1u] = acc41; dwp[o4 + 2u] = acc42; dwp[o4 + 3u] = acc43;
    let o5 = (slabBase + row0 + 5u * WG) * p.N4 + n4;
    if (p.accumulate != 0u) {
      acc50 += dwp[o5 + 0u]; acc51 += dwp[o5 + 1u]; acc52 += dwp[o5 + 2u]; acc53 += dwp[o5 + 3u];
    }
    dwp[o5 + 0u] = acc50; dwp[o5 + 1u] = acc51; dwp[o5 + 2u] = acc52; dwp[o5 + 3u] = acc53;
    let o6 = (slabBase + row0 + 6u * WG) * p.N4 + n4;
    if (p.accumulate != 0u) {
      acc60 += dwp[o6 + 0u]; acc61 += dwp[o6 + 1u]; acc62 += dwp[o6 + 2u]; acc63 += dwp[o6 + 3u];
    }
    dwp[o6 + 0u] = acc60; dwp[o6 + 1u] = acc61; dwp[o6 + 2u] = acc62; dwp[o6 + 3u] = acc63;
    let o7 = (slabBase + row0 + 7u * WG) * p.N4 + n4;
    if (p.accumulate != 0u) {
      acc70 += dwp[o7 + 0u]; acc71 += dwp[o7 + 1u]; acc72 += dwp[o7 + 2u]; acc73 += dwp[o7 + 3u];
    }
    dwp[o7 + 0u] = acc70; dwp[o7 + 1u] = acc71; dwp[o7 + 2u] = acc72; dwp[o7 + 3u] = acc73;
  }
}
