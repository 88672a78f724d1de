// Layout conversions for the texture variants of the implicit-GEMM convolution
// (kernels/conv2d_gemm_tex*.wgsl): the same packed operands as kernels/conv2d_pack.wgsl (same
// values, same zero padding; see there for the packing modes and the packed reduction order), written
// as rgba32float textures (one vec4 per texel) through write-only storage textures. On llvmpipe a
// read from a read-only storage texture is several times cheaper than one from a storage buffer.
// Each entry point writes every texel of its logical operand, one invocation per texel (grids may
// be folded into x and y); texels of a folded texture past the end of the operand are never read.
//
// Texture sides are limited (maxTextureDimension2D, 8,192 in Chromium's SwiftShader), so long
// operands are folded into side-by-side blocks, always along a dimension that the GEMMs walk
// outside their inner loops (src/ops/conv2d.ts textureLayout computes the fold sizes):
//   pack_input_tex        xq [B, Hp, Wp, CG] -> X: texel ((b / ipb) RW + x CG + c, (b % ipb) Hp + y),  RW = Wp CG
//                         (ipb images per block of rows; an image never straddles two blocks)
//   pack_taps_tex         xq in taps mode (Hp = OH, Wp = OW), same layout
//   pack_weight_tex       wt [KP CG 4, N4] -> W: texel ((kp / kpb) 4 N4 + 4 n4 + i, (kp % kpb) CG + c) = wt[k, n4]
//                         for k = (kp CG + c) 4 + i (the four k of a step side by side; kpb kernel positions per block)
//   pack_weight_rows_tex  wr [4 CO4, NR4] -> R: texel (4 (n % cpb) + i, (n / cpb) CO4 + cb) = wr[4 cb + i, n]
//                         (cpb columns n per block, a multiple of 4: a workgroup's 16 columns share a block)
//   pack_weight_rows_channels_tex  the same texture for the grad-input GEMM's column order 'channels':
//                         column k = (ky KW + kx) 4 CG + ci (input channels innermost, padded to 4 CG with
//                         zeros), so that a vec4 of the column gradient holds 4 channels of one tap (col2im_channels)
//   pack_grad_out_tex     dp [rows, CO4] -> D: texel ((m / rpb) CO4 + c, m % rpb)
//   pack_grad_out_t_tex   dpt [rowsPad, MT4] -> T: texel (q % qpb, (q / qpb) rowsPad + co)
// Reference: test/reference/conv2d.ts. Test: test/conv2d.test.ts (through the gemm variant with texture operands).

override WG: u32 = 64;

fn linear(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// ---- pack_input_tex ----
struct InputParams {
  B: u32, Cin: u32, H: u32, W: u32,
  Hp: u32, Wp: u32, CG: u32, kxs: u32,
  py: u32, px: u32, total: u32, RW: u32,
  ipb: u32,
}
@group(0) @binding(0) var<uniform> pi: InputParams;
@group(0) @binding(1) var<storage, read> pi_x: array<f32>;
@group(0) @binding(2) var pi_xq: texture_storage_2d<rgba32float, write>;

fn input_at(b: u32, ci: u32, y: i32, x: i32) -> f32 {
  if (ci >= pi.Cin || y < 0 || y >= i32(pi.H) || x < 0 || x >= i32(pi.W)) { return 0.0; }
  return pi_x[((b * pi.Cin + ci) * pi.H + u32(y)) * pi.W + u32(x)];
}

@compute @workgroup_size(WG)
fn pack_input_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pi.total) { return; }
  // Invocations in input memory order (x fastest): neighbouring lanes read neighbouring floats.
  let xp = i % pi.Wp;
  var t = i / pi.Wp;
  let yp = t % pi.Hp;
  t = t / pi.Hp;
  let c = t % pi.CG;
  let b = t / pi.CG;
  let xx = i32(xp) - i32(pi.px);
  let y = i32(yp) - i32(pi.py);
  var v: vec4f;
  if (pi.kxs == 1u) {
    v = vec4f(input_at(b, 4u * c, y, xx), input_at(b, 4u * c + 1u, y, xx), input_at(b, 4u * c + 2u, y, xx), input_at(b, 4u * c + 3u, y, xx));
  } else {
    v = vec4f(input_at(b, c, y, xx), input_at(b, c, y, xx + 1), input_at(b, c, y, xx + 2), input_at(b, c, y, xx + 3));
  }
  textureStore(pi_xq, vec2u((b / pi.ipb) * pi.RW + xp * pi.CG + c, (b % pi.ipb) * pi.Hp + yp), v);
}

// ---- pack_taps_tex ----
struct TapsParams {
  B: u32, Cin: u32, H: u32, W: u32,
  KH: u32, KW: u32, sy: u32, sx: u32,
  py: u32, px: u32, OH: u32, OW: u32,
  CG: u32, total: u32, RW: u32, ipb: u32,
}
@group(0) @binding(0) var<uniform> pt: TapsParams;
@group(0) @binding(1) var<storage, read> pt_x: array<f32>;
@group(0) @binding(2) var pt_xq: texture_storage_2d<rgba32float, write>;

fn tap_at(b: u32, oy: u32, ox: u32, t: u32) -> f32 {
  let kk = pt.KH * pt.KW;
  if (t >= pt.Cin * kk) { return 0.0; }
  let ci = t / kk;
  let r = t - ci * kk;
  let ky = r / pt.KW;
  let kx = r - ky * pt.KW;
  let y = i32(oy * pt.sy + ky) - i32(pt.py);
  let x = i32(ox * pt.sx + kx) - i32(pt.px);
  if (y < 0 || y >= i32(pt.H) || x < 0 || x >= i32(pt.W)) { return 0.0; }
  return pt_x[((b * pt.Cin + ci) * pt.H + u32(y)) * pt.W + u32(x)];
}

@compute @workgroup_size(WG)
fn pack_taps_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pt.total) { return; }
  // Invocations in input memory order (ox fastest): neighbouring lanes read neighbouring floats.
  let ox = i % pt.OW;
  var r = i / pt.OW;
  let oy = r % pt.OH;
  r = r / pt.OH;
  let c = r % pt.CG;
  let b = r / pt.CG;
  let t = 4u * c;
  let v = vec4f(tap_at(b, oy, ox, t), tap_at(b, oy, ox, t + 1u), tap_at(b, oy, ox, t + 2u), tap_at(b, oy, ox, t + 3u));
  textureStore(pt_xq, vec2u((b / pt.ipb) * pt.RW + ox * pt.CG + c, (b % pt.ipb) * pt.OH + oy), v);
}

// ---- pack_weight_tex ----
struct WeightParams {
  Cout: u32, Cin: u32, KH: u32, KW: u32,
  KQ: u32, CG: u32, kxs: u32, N4: u32,
  total: u32, kpb: u32,
}
@group(0) @binding(0) var<uniform> pw: WeightParams;
@group(0) @binding(1) var<storage, read> pw_w: array<f32>;
@group(0) @binding(2) var pw_wt: texture_storage_2d<rgba32float, write>;

/**
 * Invocations in weight memory order: per column group n4, r runs over (ci, ky, kx) with kx fastest
 * (channels: ci < 4 CG, kx < KW; kx mode: ci < Cin, kx < 4 KQ; taps: r = t < 4 CG), so that
 * neighbouring lanes read neighbouring weights (the transposition scatters the texture writes instead).
 */
@compute @workgroup_size(WG)
fn pack_weight_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pw.total) { return; }
  let perColumn = pw.total / pw.N4; // KP CG 4
  let n4 = i / perColumn;
  let r = i - n4 * perColumn;
  let co = 4u * n4;
  let stride = pw.Cin * pw.KH * pw.KW;
  var kp: u32;
  var c: u32;
  var j: u32;
  var valid: bool;
  var w0: u32;
  if (pw.kxs == 0u) {
    // taps: r is the PyTorch-order tap index itself
    kp = 0u;
    c = r / 4u;
    j = r % 4u;
    valid = r < stride;
    w0 = co * stride + r;
  } else {
    let kxSpan = select(pw.KW, 4u * pw.KQ, pw.kxs == 4u);
    let kx = r % kxSpan;
    let t = r / kxSpan;
    let ky = t % pw.KH;
    let ci = t / pw.KH;
    if (pw.kxs == 1u) {
      kp = ky * pw.KQ + kx;
      c = ci / 4u;
      j = ci % 4u;
    } else {
      kp = ky * pw.KQ + kx / 4u;
      c = ci;
      j = kx % 4u;
    }
    valid = ci < pw.Cin && kx < pw.KW;
    w0 = ((co * pw.Cin + ci) * pw.KH + ky) * pw.KW + kx;
  }
  var v = vec4f(0.0);
  if (valid) {
    for (var jj = 0u; jj < 4u; jj++) {
      if (co + jj < pw.Cout) { v[jj] = pw_w[w0 + jj * stride]; }
    }
  }
  textureStore(pw_wt, vec2u((kp / pw.kpb) * 4u * pw.N4 + 4u * n4 + j, (kp % pw.kpb) * pw.CG + c), v);
}

// ---- pack_weight_rows_tex ----
struct RowsParams { Cout: u32, KK: u32, NR4: u32, total: u32, CO4: u32, cpb: u32 }
@group(0) @binding(0) var<uniform> pr: RowsParams;
@group(0) @binding(1) var<storage, read> pr_w: array<f32>;
@group(0) @binding(2) var pr_wr: texture_storage_2d<rgba32float, write>;

fn row_weight(co: u32, n: u32) -> f32 {
  if (co >= pr.Cout || n >= pr.KK) { return 0.0; }
  return pr_w[co * pr.KK + n];
}

@compute @workgroup_size(WG)
fn pack_weight_rows_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pr.total) { return; }
  let n4 = i % pr.NR4;
  let n = 4u * n4;
  let co = i / pr.NR4;
  let v = vec4f(row_weight(co, n), row_weight(co, n + 1u), row_weight(co, n + 2u), row_weight(co, n + 3u));
  textureStore(pr_wr, vec2u(4u * (n4 % pr.cpb) + co % 4u, (n4 / pr.cpb) * pr.CO4 + co / 4u), v);
}

// ---- pack_weight_rows_channels_tex ----
struct RowsChannelsParams { Cout: u32, Cin: u32, KT: u32, CG: u32, NR4: u32, total: u32, CO4: u32, cpb: u32 }
@group(0) @binding(0) var<uniform> prc: RowsChannelsParams;
@group(0) @binding(1) var<storage, read> prc_w: array<f32>;
@group(0) @binding(2) var prc_wr: texture_storage_2d<rgba32float, write>;

/** w[co, ci, tap] (tap = ky KW + kx; KT = KH KW taps), zero past the channels, taps or rows. */
fn row_weight_channels(co: u32, ci: u32, tap: u32) -> f32 {
  if (co >= prc.Cout || ci >= prc.Cin || tap >= prc.KT) { return 0.0; }
  return prc_w[(co * prc.Cin + ci) * prc.KT + tap];
}

@compute @workgroup_size(WG)
fn pack_weight_rows_channels_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= prc.total) { return; }
  // One invocation per column n4 of a block of 4 rows (the 4 neighbouring texels of one texture
  // row: the index arithmetic is shared by 4 texels). Invocations in w's memory order (tap
  // fastest) over the KT CG columns, then the padding: neighbouring lanes read neighbouring floats.
  let r = i % prc.NR4;
  let cb = i / prc.NR4;
  var n4 = r;
  var tap = prc.KT;
  var ci = 0u;
  if (r < prc.KT * prc.CG) {
    let c = r / prc.KT;
    tap = r - c * prc.KT;
    ci = 4u * c;
    n4 = tap * prc.CG + c;
  }
  let x = 4u * (n4 % prc.cpb);
  let y = (n4 / prc.cpb) * prc.CO4 + cb;
  for (var j = 0u; j < 4u; j++) {
    let co = 4u * cb + j;
    let v = vec4f(row_weight_channels(co, ci, tap), row_weight_channels(co, ci + 1u, tap), row_weight_channels(co, ci + 2u, tap), row_weight_channels(co, ci + 3u, tap));
    textureStore(prc_wr, vec2u(x + j, y), v);
  }
}

// ---- pack_grad_out_tex, pack_grad_out_t_tex ----
struct GradParams {
  M: u32, P: u32, Cout: u32, relu: u32,
  rows: u32, cols4: u32, total: u32, fold: u32,
}
@group(0) @binding(0) var<uniform> pg: GradParams;
@group(0) @binding(1) var<storage, read> pg_dout: array<f32>;
@group(0) @binding(2) var<storage, read> pg_out: array<f32>;
@group(0) @binding(3) var pg_dp: texture_storage_2d<rgba32float, write>;

/** d loss / d pre-activation at image b, position q, channel co (relu-masked); all in range. */
fn grad_at(b: u32, q: u32, co: u32) -> f32 {
  let o = (b * pg.Cout + co) * pg.P + q;
  let g = pg_dout[o];
  if (pg.relu != 0u && !(pg_out[o] > 0.0)) { return 0.0; }
  return g;
}

/** dp [rows, cols4]: texel ((m / fold) cols4 + c, m % fold). */
@compute @workgroup_size(WG)
fn pack_grad_out_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pg.total) { return; }
  let c = i % pg.cols4;
  let co = 4u * c;
  let m = i / pg.cols4;
  var v = vec4f(0.0);
  if (m < pg.M) {
    let b = m / pg.P;
    let q = m - b * pg.P;
    for (var j = 0u; j < 4u; j++) {
      if (co + j < pg.Cout) { v[j] = grad_at(b, q, co + j); }
    }
  }
  textureStore(pg_dp, vec2u((m / pg.fold) * pg.cols4 + c, m % pg.fold), v);
}

/** dpt [rows, cols4] (rows = channels, cols4 = groups of 4 rows m): texel (q % fold, (q / fold) rows + co). */
@compute @workgroup_size(WG)
fn pack_grad_out_t_tex(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pg.total) { return; }
  let qq = i % pg.cols4;
  let m = 4u * qq;
  let co = i / pg.cols4;
  var v = vec4f(0.0);
  if (co < pg.Cout && m < pg.M) {
    var b = m / pg.P;
    var q = m - b * pg.P;
    for (var j = 0u; j < 4u; j++) {
      if (m + j < pg.M) { v[j] = grad_at(b, q, co); }
      q += 1u;
      if (q == pg.P) {
        q = 0u;
        b += 1u;
      }
    }
  }
  textureStore(pg_dp, vec2u(qq % pg.fold, (qq / pg.fold) * pg.rows + co), v);
}
