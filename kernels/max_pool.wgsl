// 2-D max pooling, k x k windows, stride k, TensorFlow's 'SAME' padding (the official baseline CNN
// pools 2x2 after each convolution).
// Layout: x [B, C, H, W] -> out [B, C, OH, OW], OH = ceil(H / k). params.top / params.left are the
// padding above and left of the image (floor of half of OH*k - H); padded positions never win.
// A window's winner is its first NaN if it holds one (a NaN must reach the training monitor, as in
// the convolutions' ReLU), else its first largest value in row-major order (strict >): one rule,
// `winner`, for both entries, so forward and backward agree on every backend. NaN is tested on the
// bits: OpenGL llvmpipe may compare floats unordered, and WGSL's max(NaN, v) may return either.
// Entry `forward` (one invocation per output, n = B*C*OH*OW): out = x[winner].
// Entry `backward`, a gather (one invocation per input element, n = B*C*H*W): dx = dout of its window
// if it is the window's winner, else 0. Windows do not overlap (stride = size), so each input has
// one window and nothing is summed; the winner is found again from x instead of a saved index
// buffer ([B, C, OH, OW] u32 per pooled layer), at k*k reads per input.
// Reference: test/reference/pool.ts. Test: test/pool.test.ts. Op: src/ops/pool.ts.

struct Params { n: u32, H: u32, W: u32, OH: u32, OW: u32, k: u32, top: u32, left: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

override WG: u32 = 64;

fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

/** Flat index into x of the winner of window (oy, ox) of the plane starting at `base`. */
fn winner(base: u32, oy: u32, ox: u32) -> u32 {
  // Clipped to the image (i32: the first window starts above it when top > 0); never empty, as the
  // padding on each side is below k.
  let y0 = max(i32(oy * params.k) - i32(params.top), 0);
  let y1 = min(i32((oy + 1u) * params.k) - i32(params.top), i32(params.H));
  let x0 = max(i32(ox * params.k) - i32(params.left), 0);
  let x1 = min(i32((ox + 1u) * params.k) - i32(params.left), i32(params.W));
  var win = base + u32(y0) * params.W + u32(x0);
  var best = x[win];
  var found_nan = is_nan(best);
  for (var y = y0; y < y1; y++) {
    for (var xx = x0; xx < x1; xx++) {
      let j = base + u32(y) * params.W + u32(xx);
      let v = x[j];
      if (found_nan) { continue; }
      if (is_nan(v)) {
        win = j;
        found_nan = true;
      } else if (v > best) {
        win = j;
        best = v;
      }
    }
  }
  return win;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let ox = i % params.OW;
  let oy = (i / params.OW) % params.OH;
  let plane = i / (params.OW * params.OH);
  out[i] = x[winner(plane * params.H * params.W, oy, ox)];
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let px = i % params.W;
  let py = (i / params.W) % params.H;
  let plane = i / (params.W * params.H);
  // py + top <= OH*k - 1, so the window is in range.
  let oy = (py + params.top) / params.k;
  let ox = (px + params.left) / params.k;
  let g = dout[(plane * params.OH + oy) * params.OW + ox];
  dx[i] = select(0.0, g, winner(plane * params.H * params.W, oy, ox) == i);
}
