// Direct 2-D convolution, forward (the oracle and the kernel for odd shapes): one invocation per
// output element sums over Cin x KH x KW, adds the bias and optionally applies ReLU.
//   x    [B, Cin, H, W]        w   [Cout, Cin, KH, KW]       bias [Cout] (read only if has_bias)
//   out  [B, Cout, OH, OW]     out[b,co,oy,ox] = bias[co] + sum x[b,ci,oy*sy-py+ky,ox*sx-px+kx] w[co,ci,ky,kx]
// Input positions outside the image are zeros (padding). The grid may be folded into x and y.
// Reference: test/reference/conv2d.ts (conv2dForward). Test: test/conv2d.test.ts.

struct Params {
  B: u32, Cin: u32, H: u32, W: u32,
  Cout: u32, KH: u32, KW: u32, sy: u32,
  sx: u32, py: u32, px: u32, OH: u32,
  OW: u32, relu: u32, has_bias: u32, total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

// ReLU that keeps NaN, decided on the bits (as in dense.wgsl): OpenGL llvmpipe may compare floats
// unordered (`NaN < 0.0` true) and WGSL's max(NaN, 0) may return either operand; a NaN must reach
// the trainer's non-finite check, not become 0. Zero for -0 ... -inf, v otherwise.
fn relu_keep_nan(v: f32) -> f32 {
  let bits = bitcast<u32>(v);
  return select(v, 0.0, bits >= 0x80000000u && bits <= 0xff800000u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.total) { return; }
  let ox = i % p.OW;
  var t = i / p.OW;
  let oy = t % p.OH;
  t = t / p.OH;
  let co = t % p.Cout;
  let b = t / p.Cout;
  var acc = 0.0;
  if (p.has_bias != 0u) { acc = bias[co]; }
  let y0 = i32(oy * p.sy) - i32(p.py);
  let x0 = i32(ox * p.sx) - i32(p.px);
  for (var ci = 0u; ci < p.Cin; ci++) {
    let xc = (b * p.Cin + ci) * p.H;
    let wc = (co * p.Cin + ci) * p.KH;
    for (var ky = 0u; ky < p.KH; ky++) {
      let iy = y0 + i32(ky);
      if (iy < 0 || iy >= i32(p.H)) { continue; }
      let xr = (xc + u32(iy)) * p.W;
      let wr = (wc + ky) * p.KW;
      for (var kx = 0u; kx < p.KW; kx++) {
        let ix = x0 + i32(kx);
        if (ix < 0 || ix >= i32(p.W)) { continue; }
        acc += x[xr + u32(ix)] * w[wr + kx];
      }
    }
  }
  // select, not max: llvmpipe's max(NaN, 0) is 0, which would hide a NaN from the training monitor.
  if (p.relu != 0u) { acc = relu_keep_nan(acc); }
  out[i] = acc;
}
