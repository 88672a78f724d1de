// Implicit-GEMM 2-D convolution, gradient with respect to the weights, with texture operands:
// kernels/conv2d_gemm_grad_weight.wgsl (same GEMM, register block, split-K slabs and chunks; the
// packed result is finalized by finalize_grad_weight in kernels/conv2d_pack.wgsl) reading the
// transposed output gradient and the packed input from read-only storage textures written by
// kernels/conv2d_pack_tex.wgsl:
//   dpt texture: texel (q % qpb, (q / qpb) rowsPad + co) = dOut[m = 4q .. 4q + 3, co]   (pack_grad_out_t_tex, relu-masked, zero padded)
//   xq texture:  the folded packed input of kernels/conv2d_gemm_tex.wgsl                (pack_input_tex / pack_taps_tex)
//   dwp [slabs, rowsPad, N4] of vec4 (storage buffer, packed k order): dwp[s, co, n][j] = sum over m in slab s of dpt[co, m] xq(m, n)[j]
// Every invocation of a workgroup walks the same rows m, so the cursor over m = (b, oy, ox) (with the
// image fold of the packed input) and the fold of dpt along q advance with uniform branches, no
// division in the loop. Rows m past M read a clamped position times dpt's zero padding.
// Grid: x = N4 / 4 column tiles, y = rowsPad / (WG ROWS), z = slabs.
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params {
  M: u32, P: u32, OW: u32, sy: u32,
  sx: u32, Hp: u32, CG: u32, kxs: u32,
  KQ: u32, NK4: u32, N4: u32, MT4: u32,
  rowsPad: u32, slab4: u32, chunk0: u32, chunk4: u32,
  accumulate: u32, OH: u32, RW: u32, ipb: u32,
  qpb: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var dpt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var xq: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> dwp: array<vec4f>;

/** Invocations per workgroup (output channels per workgroup = WG * ROWS). */
override WG: u32 = 8;
/** Rows (output channels) of the register block per invocation: 4 or 8. */
override ROWS: u32 = 8;

/** The texel of row m's receptive field origin in the packed input (m < M). */
fn row_texel(m: u32) -> vec2i {
  let b = m / p.P;
  let q = m - b * p.P;
  let oy = q / p.OW;
  let ox = q - oy * p.OW;
  return vec2i(i32((b / p.ipb) * p.RW + ox * p.sx * p.CG), i32((b % p.ipb) * p.Hp + oy * p.sy));
}

/** The shift of packed column n (vec4) within a receptive field; n is clamped to the last real one. */
fn col_shift(n: u32) -> vec2i {
  let nn = min(n, p.NK4 - 1u);
  let kp = nn / p.CG;
  let ky = kp / p.KQ;
  return vec2i(i32((kp - ky * p.KQ) * p.kxs * p.CG + (nn - kp * p.CG)), i32(ky));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n4 = wid.x * 4u;
  let row0 = wid.y * WG * ROWS + lid;
  let slab = wid.z;
  let off0 = col_shift(n4 + 0u);
  let off1 = col_shift(n4 + 1u);
  let off2 = col_shift(n4 + 2u);
  let off3 = col_shift(n4 + 3u);
  let begin = slab * p.slab4 + p.chunk0;
  let end = min(min(begin + p.chunk4, (slab + 1u) * p.slab4), p.MT4);
  let arow0 = i32(row0 + 0u * WG);
  let arow1 = i32(row0 + 1u * WG);
  let arow2 = i32(row0 + 2u * WG);
  let arow3 = i32(row0 + 3u * WG);
  let arow4 = i32(row0 + 4u * WG);
  let arow5 = i32(row0 + 5u * WG);
  let arow6 = i32(row0 + 6u * WG);
  let arow7 = i32(row0 + 7u * WG);
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  // The cursor: row m = (b, oy, ox) with bi = b % ipb, and its texel; rows past M use the last row.
  let last = row_texel(p.M - 1u);
  let stepX = i32(p.sx * p.CG);
  let rowBack = i32(p.OW * p.sx * p.CG);
  let imageStep = i32(p.Hp) - i32(p.OH * p.sy);
  var m = 4u * begin;
  var ox = 0u;
  var oy = 0u;
  var bi = 0u;
  var pos = last;
  if (m < p.M) {
    let b = m / p.P;
    let q0 = m - b * p.P;
    oy = q0 / p.OW;
    ox = q0 - oy * p.OW;
    bi = b % p.ipb;
    pos = row_texel(m);
  }
  // dpt's fold along q.
  var qx = i32(begin % p.qpb);
  var qy = i32((begin / p.qpb) * p.rowsPad);
  let qpb = i32(p.qpb);
  for (var q = begin; q < end; q++) {
    let b0 = select(last, pos, m < p.M);
    m += 1u;
    ox += 1u;
    pos.x += stepX;
    if (ox == p.OW) {
      ox = 0u;
      pos.x -= rowBack;
      oy += 1u;
      pos.y += i32(p.sy);
      if (oy == p.OH) {
        oy = 0u;
        pos.y += imageStep;
        bi += 1u;
        if (bi == p.ipb) {
          bi = 0u;
          pos = vec2i(pos.x + i32(p.RW), 0);
        }
      }
    }
    let b1 = select(last, pos, m < p.M);
    m += 1u;
    ox += 1u;
    pos.x += stepX;
    if (ox == p.OW) {
      ox = 0u;
      pos.x -= rowBack;
      oy += 1u;
      pos.y += i32(p.sy);
      if (oy == p.OH) {
        oy = 0u;
        pos.y += imageStep;
        bi += 1u;
        if (bi == p.ipb) {
          bi = 0u;
          pos = vec2i(pos.x + i32(p.RW), 0);
        }
      }
    }
    let b2 = select(last, pos, m < p.M);
    m += 1u;
    ox += 1u;
    pos.x += stepX;
    if (ox == p.OW) {
      ox = 0u;
      pos.x -= rowBack;
      oy += 1u;
      pos.y += i32(p.sy);
      if (oy == p.OH) {
        oy = 0u;
        pos.y += imageStep;
        bi += 1u;
        if (bi == p.ipb) {
          bi = 0u;
          pos = vec2i(pos.x + i32(p.RW), 0);
        }
      }
    }
    let b3 = select(last, pos, m < p.M);
    m += 1u;
    ox += 1u;
    pos.x += stepX;
    if (ox == p.OW) {
      ox = 0u;
      pos.x -= rowBack;
      oy += 1u;
      pos.y += i32(p.sy);
      if (oy == p.OH) {
        oy = 0u;
        pos.y += imageStep;
        bi += 1u;
        if (bi == p.ipb) {
          bi = 0u;
          pos = vec2i(pos.x + i32(p.RW), 0);
        }
      }
    }
    let x0 = mat4x4f(textureLoad(xq, b0 + off0), textureLoad(xq, b1 + off0), textureLoad(xq, b2 + off0), textureLoad(xq, b3 + off0));
    let x1 = mat4x4f(textureLoad(xq, b0 + off1), textureLoad(xq, b1 + off1), textureLoad(xq, b2 + off1), textureLoad(xq, b3 + off1));
    let x2 = mat4x4f(textureLoad(xq, b0 + off2), textureLoad(xq, b1 + off2), textureLoad(xq, b2 + off2), textureLoad(xq, b3 + off2));
    let x3 = mat4x4f(textureLoad(xq, b0 + off3), textureLoad(xq, b1 + off3), textureLoad(xq, b2 + off3), textureLoad(xq, b3 + off3));
    let a0 = textureLoad(dpt, vec2i(qx, qy + arow0));
    acc00 += x0 * a0; acc01 += x1 * a0; acc02 += x2 * a0; acc03 += x3 * a0;
    let a1 = textureLoad(dpt, vec2i(qx, qy + arow1));
    acc10 += x0 * a1; acc11 += x1 * a1; acc12 += x2 * a1; acc13 += x3 * a1;
    let a2 = textureLoad(dpt, vec2i(qx, qy + arow2));
    acc20 += x0 * a2; acc21 += x1 * a2; acc22 += x2 * a2; acc23 += x3 * a2;
    let a3 = textureLoad(dpt, vec2i(qx, qy + arow3));
    acc30 += x0 * a3; acc31 += x1 * a3; acc32 += x2 * a3; acc33 += x3 * a3;
    if (ROWS > 4u) {
      let a4 = textureLoad(dpt, vec2i(qx, qy + arow4));
      acc40 += x0 * a4; acc41 += x1 * a4; acc42 += x2 * a4; acc43 += x3 * a4;
      let a5 = textureLoad(dpt, vec2i(qx, qy + arow5));
      acc50 += x0 * a5; acc51 += x1 * a5; acc52 += x2 * a5; acc53 += x3 * a5;
      let a6 = textureLoad(dpt, vec2i(qx, qy + arow6));
      acc60 += x0 * a6; acc61 += x1 * a6; acc62 += x2 * a6; acc63 += x3 * a6;
      let a7 = textureLoad(dpt, vec2i(qx, qy + arow7));
      acc70 += x0 * a7; acc71 += x1 * a7; acc72 += x2 * a7; acc73 += x3 * a7;
    }
    qx += 1;
    if (qx == qpb) {
      qx = 0;
      qy += i32(p.rowsPad);
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
