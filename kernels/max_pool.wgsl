// 2-D max pooling, k x k window, stride k, TensorFlow's 'SAME' padding (the official baseline CNN's:
// two of them, k = 2). One thread per output element; no index buffer is written: the backward
// kernel (max_pool_grad.wgsl) finds each window's winner again from x, which costs k*k reads per
// input element and saves a [B, C, OH, OW] u32 buffer per pooled layer.
// Layout: x [B, C, H, W] -> out [B, C, OH, OW], OH = ceil(H / k); params.top / params.left are the
// padding above and left of the image (floor of half of OH*k - H); padded positions never win.
// Winner: the first largest value of the window in row-major order (strict >), as the reference.
// Reference: test/reference/pool.ts. Test: test/pool.test.ts. Op: src/ops/pool.ts.

struct Params { n: u32, H: u32, W: u32, OH: u32, OW: u32, k: u32, top: u32, left: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let ox = i % params.OW;
  let oy = (i / params.OW) % params.OH;
  let plane = i / (params.OW * params.OH);
  // Window rows and columns clipped to the image (i32: the first window starts above it when top > 0).
  let y0 = max(i32(oy * params.k) - i32(params.top), 0);
  let y1 = min(i32((oy + 1u) * params.k) - i32(params.top), i32(params.H));
  let x0 = max(i32(ox * params.k) - i32(params.left), 0);
  let x1 = min(i32((ox + 1u) * params.k) - i32(params.left), i32(params.W));
  let base = plane * params.H * params.W;
  var best = x[base + u32(y0) * params.W + u32(x0)];
  for (var y = y0; y < y1; y++) {
    for (var xx = x0; xx < x1; xx++) {
      best = max(best, x[base + u32(y) * params.W + u32(xx)]);
    }
  }
  out[i] = best;
}
