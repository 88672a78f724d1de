// Direct 2-D convolution, gradient with respect to the input (the oracle and the kernel for odd
// shapes). A gather: one invocation per element of dx sums, over the output channels and the kernel
// taps that read this input position, dOut times the weight.
//   dOut [B, Cout, OH, OW]  (with relu, masked where out <= 0: `out` is the forward output)
//   w    [Cout, Cin, KH, KW]        dx [B, Cin, H, W]
//   dx[b,ci,iy,ix] = sum over co, ky, kx with oy = (iy+py-ky)/sy, ox = (ix+px-kx)/sx integral and
//                    in range of dOut[b,co,oy,ox] * w[co,ci,ky,kx]
// The grid may be folded into x and y.
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params {
  B: u32, Cin: u32, H: u32, W: u32,
  Cout: u32, KH: u32, KW: u32, sy: u32,
  sx: u32, py: u32, px: u32, OH: u32,
  OW: u32, relu: u32, total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.total) { return; }
  let ix = i % p.W;
  var t = i / p.W;
  let iy = t % p.H;
  t = t / p.H;
  let ci = t % p.Cin;
  let b = t / p.Cin;
  var acc = 0.0;
  for (var ky = 0u; ky < p.KH; ky++) {
    let ty = i32(iy + p.py) - i32(ky);
    if (ty < 0 || (u32(ty) % p.sy) != 0u) { continue; }
    let oy = u32(ty) / p.sy;
    if (oy >= p.OH) { continue; }
    for (var kx = 0u; kx < p.KW; kx++) {
      let tx = i32(ix + p.px) - i32(kx);
      if (tx < 0 || (u32(tx) % p.sx) != 0u) { continue; }
      let ox = u32(tx) / p.sx;
      if (ox >= p.OW) { continue; }
      for (var co = 0u; co < p.Cout; co++) {
        let o = ((b * p.Cout + co) * p.OH + oy) * p.OW + ox;
        var g = dout[o];
        if (p.relu != 0u && !(out[o] > 0.0)) { g = 0.0; }
        acc += g * w[((co * p.Cin + ci) * p.KH + ky) * p.KW + kx];
      }
    }
  }
  dx[i] = acc;
}
