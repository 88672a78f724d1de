// Layout conversions for the implicit-GEMM convolution (kernels/conv2d_gemm*.wgsl): each entry
// point writes every element of its output (zeros in the padding), one invocation per element;
// grids may be folded into x and y. Padding the operands to tile multiples here keeps bounds
// checks out of the GEMMs' inner loops.
//
// The packed input xq [B, Hp, Wp, CG] of vec4 (Hp = H + 2 py, Wp = W + 2 px), in one of three modes:
//   channels (kxs = 1): xq[b, y, x, c][j] = x[b, 4c + j, y - py, x - px]      CG = ceil(Cin / 4)
//   kx       (kxs = 4): xq[b, y, x, c][j] = x[b, c, y - py, x - px + j]       CG = Cin
//   taps     (kxs = 0): an explicit im2col, Hp = OH, Wp = OW, CG = ceil(KK / 4) with KK = Cin KH KW:
//                       xq[b, oy, ox, c][j] = x[b, ci, oy sy - py + ky, ox sx - px + kx], t = 4c + j = (ci KH + ky) KW + kx
//                       (the GEMMs then see a 1x1 convolution of stride 1 over it)
// (zero outside the image or past Cin / KK). The packed reduction index of the GEMMs is
//   k = ((ky * KQ + kq) * CG + c) * 4 + j,  with (ci, kx) = (4c + j, kq) in channels mode and
//   (c, 4 kq + j) in kx mode (KQ = KW, or ceil(KW / 4)); in taps mode KQ = KH = 1 and k = t.
//   k slots past Cin, KW or KK hold zero weights.
//
// Entry points:
//   pack_input        x [B, Cin, H, W]           -> xq as above (channels and kx modes)
//   pack_taps         x                          -> xq in taps mode
//   pack_weight       w [Cout, Cin, KH, KW]      -> wt [KH * KQ * CG * 4, N4] of vec4: wt[k, n][j] = w[4n + j, k] (zero past Cout)
//   pack_weight_rows  w                          -> wr [CoutRows, NR4] of vec4: wr[co, n][j] = w[co, 4n + j] with the
//                                                   PyTorch order n = (ci * KH + ky) * KW + kx (zero past Cout or Cin*KH*KW)
//   pack_grad_out     dOut [B, Cout, OH, OW]     -> dp [Mrows, CO4] of vec4: dp[m, c][j] = dOut[b, 4c + j, oy, ox], m = (b, oy, ox)
//   pack_grad_out_t   dOut                       -> dpt [CoutRows, MT4] of vec4: dpt[co, q][j] = dOut[b, co, oy, ox], m = 4q + j
//                     (both zero past M = B * OH * OW or Cout; with relu, zero where the forward output <= 0)
//   finalize_grad_weight  dwp [S, CoutRows, N4 * 4] (packed k order, S split-K slabs) -> dw [Cout, Cin, KH, KW] = sum over slabs
//                     (one invocation per kernel row (co, ci, ky); total = Cout Cin KH rows)
//   col2im            dcols [rows, NR4 * 4] (PyTorch k order) -> dx [b0 .. b0 + Bc) for a group of Bc images (base = b0 Cin H W):
//                     dx[b, ci, iy, ix] = sum over ky, kx with oy = (iy + py - ky) / sy, ox = (ix + px - kx) / sx integral
//                     and in range of dcols[(b * OH + oy) * OW + ox, (ci * KH + ky) * KW + kx]   (a gather)
//   col2im_channels   the same gather from dcols [rows, NR4] of vec4 in the column order 'channels' (k = (ky KW + kx) 4 CG + ci,
//                     kernels/conv2d_pack_tex.wgsl pack_weight_rows_channels_tex): one invocation per 4 channels
//                     (b, 4 c .. 4 c + 3, iy, ix), c fastest, one vec4 load per tap instead of four scalar loads
// Reference: test/reference/conv2d.ts. Test: test/conv2d.test.ts (through the gemm variant).

override WG: u32 = 64;

fn linear(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// ---- pack_input ----
struct InputParams {
  B: u32, Cin: u32, H: u32, W: u32,
  Hp: u32, Wp: u32, CG: u32, kxs: u32,
  py: u32, px: u32, total: u32,
}
@group(0) @binding(0) var<uniform> pi: InputParams;
@group(0) @binding(1) var<storage, read> pi_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pi_xq: array<vec4f>;

fn input_at(b: u32, ci: u32, y: i32, x: i32) -> f32 {
  if (ci >= pi.Cin || y < 0 || y >= i32(pi.H) || x < 0 || x >= i32(pi.W)) { return 0.0; }
  return pi_x[((b * pi.Cin + ci) * pi.H + u32(y)) * pi.W + u32(x)];
}

@compute @workgroup_size(WG)
fn pack_input(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pi.total) { return; }
  let c = i % pi.CG;
  var t = i / pi.CG;
  let xx = i32(t % pi.Wp) - i32(pi.px);
  t = t / pi.Wp;
  let y = i32(t % pi.Hp) - i32(pi.py);
  let b = t / pi.Hp;
  var v: vec4f;
  if (pi.kxs == 1u) {
    v = vec4f(input_at(b, 4u * c, y, xx), input_at(b, 4u * c + 1u, y, xx), input_at(b, 4u * c + 2u, y, xx), input_at(b, 4u * c + 3u, y, xx));
  } else {
    v = vec4f(input_at(b, c, y, xx), input_at(b, c, y, xx + 1), input_at(b, c, y, xx + 2), input_at(b, c, y, xx + 3));
  }
  pi_xq[i] = v;
}

// ---- pack_taps ----
struct TapsParams {
  B: u32, Cin: u32, H: u32, W: u32,
  KH: u32, KW: u32, sy: u32, sx: u32,
  py: u32, px: u32, OH: u32, OW: u32,
  CG: u32, total: u32,
}
@group(0) @binding(0) var<uniform> pt: TapsParams;
@group(0) @binding(1) var<storage, read> pt_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pt_xq: array<vec4f>;

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
fn pack_taps(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pt.total) { return; }
  let t = 4u * (i % pt.CG);
  var r = i / pt.CG;
  let ox = r % pt.OW;
  r = r / pt.OW;
  let oy = r % pt.OH;
  let b = r / pt.OH;
  pt_xq[i] = vec4f(tap_at(b, oy, ox, t), tap_at(b, oy, ox, t + 1u), tap_at(b, oy, ox, t + 2u), tap_at(b, oy, ox, t + 3u));
}

// ---- pack_weight ----
struct WeightParams {
  Cout: u32, Cin: u32, KH: u32, KW: u32,
  KQ: u32, CG: u32, kxs: u32, N4: u32,
  total: u32,
}
@group(0) @binding(0) var<uniform> pw: WeightParams;
@group(0) @binding(1) var<storage, read> pw_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> pw_wt: array<vec4f>;

@compute @workgroup_size(WG)
fn pack_weight(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pw.total) { return; }
  let co = 4u * (i % pw.N4);
  let k = i / pw.N4;
  // k = ((ky * KQ + kq) * CG + c) * 4 + j
  let j = k % 4u;
  var t = k / 4u;
  let c = t % pw.CG;
  t = t / pw.CG;
  let kq = t % pw.KQ;
  let ky = t / pw.KQ;
  var ci = c;
  var kx = 4u * kq + j;
  if (pw.kxs == 1u) {
    ci = 4u * c + j;
    kx = kq;
  }
  let stride = pw.Cin * pw.KH * pw.KW;
  var valid = ci < pw.Cin && kx < pw.KW;
  var w0 = ((co * pw.Cin + ci) * pw.KH + ky) * pw.KW + kx;
  if (pw.kxs == 0u) {
    // taps: k is the PyTorch-order tap index itself
    valid = k < stride;
    w0 = co * stride + k;
  }
  var v = vec4f(0.0);
  if (valid) {
    for (var jj = 0u; jj < 4u; jj++) {
      if (co + jj < pw.Cout) { v[jj] = pw_w[w0 + jj * stride]; }
    }
  }
  pw_wt[i] = v;
}

// ---- pack_weight_rows ----
struct RowsParams { Cout: u32, KK: u32, NR4: u32, total: u32 }
@group(0) @binding(0) var<uniform> pr: RowsParams;
@group(0) @binding(1) var<storage, read> pr_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> pr_wr: array<vec4f>;

fn row_weight(co: u32, n: u32) -> f32 {
  if (co >= pr.Cout || n >= pr.KK) { return 0.0; }
  return pr_w[co * pr.KK + n];
}

@compute @workgroup_size(WG)
fn pack_weight_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pr.total) { return; }
  let n = 4u * (i % pr.NR4);
  let co = i / pr.NR4;
  pr_wr[i] = vec4f(row_weight(co, n), row_weight(co, n + 1u), row_weight(co, n + 2u), row_weight(co, n + 3u));
}

// ---- pack_grad_out, pack_grad_out_t ----
struct GradParams {
  M: u32, P: u32, Cout: u32, relu: u32,
  rows: u32, cols4: u32, total: u32,
}
@group(0) @binding(0) var<uniform> pg: GradParams;
@group(0) @binding(1) var<storage, read> pg_dout: array<f32>;
@group(0) @binding(2) var<storage, read> pg_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> pg_dp: array<vec4f>;

/** d loss / d pre-activation at image b, position q, channel co (relu-masked); all in range. */
fn grad_at(b: u32, q: u32, co: u32) -> f32 {
  let o = (b * pg.Cout + co) * pg.P + q;
  let g = pg_dout[o];
  if (pg.relu != 0u && !(pg_out[o] > 0.0)) { return 0.0; }
  return g;
}

@compute @workgroup_size(WG)
fn pack_grad_out(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pg.total) { return; }
  let co = 4u * (i % pg.cols4);
  let m = i / pg.cols4;
  var v = vec4f(0.0);
  if (m < pg.M) {
    let b = m / pg.P;
    let q = m - b * pg.P;
    for (var j = 0u; j < 4u; j++) {
      if (co + j < pg.Cout) { v[j] = grad_at(b, q, co + j); }
    }
  }
  pg_dp[i] = v;
}

@compute @workgroup_size(WG)
fn pack_grad_out_t(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pg.total) { return; }
  let m = 4u * (i % pg.cols4);
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
  pg_dp[i] = v;
}

// ---- finalize_grad_weight ----
struct FinalizeParams {
  Cout: u32, Cin: u32, KH: u32, KW: u32,
  KQ: u32, CG: u32, kxs: u32, rowLen: u32,
  slabLen: u32, slabs: u32, total: u32,
}
@group(0) @binding(0) var<uniform> pf: FinalizeParams;
@group(0) @binding(1) var<storage, read> pf_dwp: array<f32>;
@group(0) @binding(2) var<storage, read_write> pf_dw: array<f32>;

/** One invocation per kernel row (co, ci, ky): its KW weights, so the index divisions (slow on CPU adapters) are paid once per row. */
@compute @workgroup_size(WG)
fn finalize_grad_weight(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = linear(wid, nwg, lid);
  if (row >= pf.total) { return; }
  let ky = row % pf.KH;
  let t = row / pf.KH;
  let ci = t % pf.Cin;
  let co = t / pf.Cin;
  // Packed index k of (ci, ky, kx) and its step along kx: k = ((ky KQ + kq) CG + c) 4 + j.
  var k = ((ky * pf.KQ) * pf.CG + ci) * 4u; // kx mode: c = ci, kq = kx / 4, j = kx % 4
  if (pf.kxs == 1u) {
    k = ((ky * pf.KQ) * pf.CG + ci / 4u) * 4u + ci % 4u; // channels mode: kq = kx, c = ci / 4, j = ci % 4
  } else if (pf.kxs == 0u) {
    k = (ci * pf.KH + ky) * pf.KW; // taps: the PyTorch-order tap index
  }
  let base = co * pf.rowLen;
  let out0 = row * pf.KW;
  for (var kx = 0u; kx < pf.KW; kx++) {
    var acc = 0.0;
    for (var s = 0u; s < pf.slabs; s++) {
      acc += pf_dwp[s * pf.slabLen + base + k];
    }
    pf_dw[out0 + kx] = acc;
    // Next kx: channels mode steps a whole kernel position (CG vec4s); kx mode steps j, and past
    // j = 3 to the next kq (CG vec4s on); taps steps one tap.
    if (pf.kxs == 1u) {
      k += pf.CG * 4u;
    } else if (pf.kxs == 4u) {
      k += select(1u, pf.CG * 4u - 3u, (kx % 4u) == 3u);
    } else {
      k += 1u;
    }
  }
}

// ---- col2im ----
struct Col2imParams {
  Cin: u32, H: u32, W: u32, KH: u32,
  KW: u32, sy: u32, sx: u32, py: u32,
  px: u32, OH: u32, OW: u32, rowLen: u32,
  base: u32, total: u32,
}
@group(0) @binding(0) var<uniform> pc: Col2imParams;
@group(0) @binding(1) var<storage, read> pc_cols: array<f32>;
@group(0) @binding(2) var<storage, read_write> pc_dx: array<f32>;

@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pc.total) { return; }
  let ix = i % pc.W;
  var t = i / pc.W;
  let iy = t % pc.H;
  t = t / pc.H;
  let ci = t % pc.Cin;
  let b = t / pc.Cin;
  // Only the taps with (iy + py - ky) divisible by sy contribute: ky = ky0, ky0 + sy, ... with
  // oy = oy0, oy0 - 1, ... (one division per axis, none in the loops).
  let ty = iy + pc.py;
  let tx = ix + pc.px;
  let ky0 = ty % pc.sy;
  let kx0 = tx % pc.sx;
  let oy0 = i32(ty / pc.sy);
  let ox0 = i32(tx / pc.sx);
  var acc = 0.0;
  var oy = oy0;
  for (var ky = ky0; ky < pc.KH; ky += pc.sy) {
    if (oy >= 0 && oy < i32(pc.OH)) {
      var ox = ox0;
      let rowBase = (b * pc.OH + u32(oy)) * pc.OW;
      let colBase = (ci * pc.KH + ky) * pc.KW;
      for (var kx = kx0; kx < pc.KW; kx += pc.sx) {
        if (ox >= 0 && ox < i32(pc.OW)) {
          acc += pc_cols[(rowBase + u32(ox)) * pc.rowLen + colBase + kx];
        }
        ox -= 1;
      }
    }
    oy -= 1;
  }
  pc_dx[pc.base + i] = acc;
}

// ---- col2im_channels ----
struct Col2imChannelsParams {
  Cin: u32, H: u32, W: u32, KH: u32,
  KW: u32, sy: u32, sx: u32, py: u32,
  px: u32, OH: u32, OW: u32, NR4: u32,
  CG: u32, base: u32, total: u32,
}
@group(0) @binding(0) var<uniform> pcc: Col2imChannelsParams;
@group(0) @binding(1) var<storage, read> pcc_cols: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> pcc_dx: array<f32>;

@compute @workgroup_size(WG)
fn col2im_channels(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear(wid, nwg, lid);
  if (i >= pcc.total) { return; }
  // Channel blocks fastest: neighbouring lanes walk the same taps (no divergence) and read
  // neighbouring vec4s of the same rows of dcols.
  let c = i % pcc.CG;
  var t = i / pcc.CG;
  let ix = t % pcc.W;
  t = t / pcc.W;
  let iy = t % pcc.H;
  let b = t / pcc.H;
  // The taps as in col2im: ky = ky0, ky0 + sy, ... with oy = oy0, oy0 - 1, ... (and the same along x).
  let ty = iy + pcc.py;
  let tx = ix + pcc.px;
  let ky0 = ty % pcc.sy;
  let kx0 = tx % pcc.sx;
  let oy0 = i32(ty / pcc.sy);
  let ox0 = i32(tx / pcc.sx);
  var acc = vec4f(0.0);
  var oy = oy0;
  for (var ky = ky0; ky < pcc.KH; ky += pcc.sy) {
    if (oy >= 0 && oy < i32(pcc.OH)) {
      var ox = ox0;
      let rowBase = (b * pcc.OH + u32(oy)) * pcc.OW;
      let colBase = ky * pcc.KW * pcc.CG + c;
      for (var kx = kx0; kx < pcc.KW; kx += pcc.sx) {
        if (ox >= 0 && ox < i32(pcc.OW)) {
          acc += pcc_cols[(rowBase + u32(ox)) * pcc.NR4 + colBase + kx * pcc.CG];
        }
        ox -= 1;
      }
    }
    oy -= 1;
  }
  let hw = pcc.H * pcc.W;
  let ci = 4u * c;
  let o = pcc.base + ((b * pcc.Cin + ci) * pcc.H + iy) * pcc.W + ix;
  pcc_dx[o] = acc.x;
  if (ci + 1u < pcc.Cin) { pcc_dx[o + hw] = acc.y; }
  if (ci + 2u < pcc.Cin) { pcc_dx[o + 2u * hw] = acc.z; }
  if (ci + 3u < pcc.Cin) { pcc_dx[o + 3u * hw] = acc.w; }
}
