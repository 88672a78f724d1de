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
  // Only taps with (iy + py - ky) divisible by sy read this position: ky = ky0, ky0 + sy, ... with
  // oy = oy0, oy0 - 1, ... (one division per axis, none in the loops).
  let ty = iy + p.py;
  let tx = ix + p.px;
  let kx0 = tx % p.sx;
  let ox0 = i32(tx / p.sx);
  var oy = i32(ty / p.sy);
  var acc = 0.0;
  for (var ky = ty % p.sy; ky < p.KH; ky += p.sy) {
    if (oy >= 0 && oy < i32(p.OH)) {
      var ox = ox0;
      for (var kx = kx0; kx < p.KW; kx += p.sx) {
        if (ox >= 0 && ox < i32(p.OW)) {
          for (var co = 0u; co < p.Cout; co++) {
            let o = ((b * p.Cout + co) * p.OH + u32(oy)) * p.OW + u32(ox);
            var g = dout[o];
            if (p.relu != 0u && !(out[o] > 0.0)) { g = 0.0; }
            acc += g * w[((co * p.Cin + ci) * p.KH + ky) * p.KW + kx];
          }
        }
        ox -= 1;
      }
    }
    oy -= 1;
  }
  dx[i] = acc;
}
