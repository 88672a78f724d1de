// Direct 2-D convolution, gradient with respect to the weights (the oracle and the kernel for odd
// shapes). A gather: one invocation per element of dw sums over the batch and the output positions.
//   x    [B, Cin, H, W]     dOut [B, Cout, OH, OW] (with relu, masked where out <= 0)
//   dw   [Cout, Cin, KH, KW]
//   dw[co,ci,ky,kx] = sum over b, oy, ox of dOut[b,co,oy,ox] * x[b,ci,oy*sy-py+ky,ox*sx-px+kx]
// The grid may be folded into x and y.
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params {
  B: u32, Cin: u32, H: u32, W: u32,
  Cout: u32, KH: u32, KW: u32, sy: u32,
  sx: u32, py: u32, px: u32, OH: u32,
  OW: u32, relu: u32, total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.total) { return; }
  let kx = i % p.KW;
  var t = i / p.KW;
  let ky = t % p.KH;
  t = t / p.KH;
  let ci = t % p.Cin;
  let co = t / p.Cin;
  var acc = 0.0;
  for (var b = 0u; b < p.B; b++) {
    let xc = (b * p.Cin + ci) * p.H;
    let oc = (b * p.Cout + co) * p.OH;
    for (var oy = 0u; oy < p.OH; oy++) {
      let iy = i32(oy * p.sy + ky) - i32(p.py);
      if (iy < 0 || iy >= i32(p.H)) { continue; }
      for (var ox = 0u; ox < p.OW; ox++) {
        let ix = i32(ox * p.sx + kx) - i32(p.px);
        if (ix < 0 || ix >= i32(p.W)) { continue; }
        let o = (oc + oy) * p.OW + ox;
        var g = dout[o];
        if (p.relu != 0u && !(out[o] > 0.0)) { g = 0.0; }
        acc += g * x[(xc + u32(iy)) * p.W + u32(ix)];
      }
    }
  }
  dw[i] = acc;
}
