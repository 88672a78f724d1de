// Backward of max_pool.wgsl as a gather: one thread per input element, which takes its window's
// output gradient if it is the window's winner (the first largest value in row-major order, strict >,
// found again from x) and 0 otherwise. Windows do not overlap (stride = size), so every input
// element has one window and no sum is needed.
// Layout: x, dx [B, C, H, W]; dout [B, C, OH, OW]; params as in max_pool.wgsl, n = B*C*H*W.
// Reference: test/reference/pool.ts (maxPool2dBackward). Test: test/pool.test.ts.

struct Params { n: u32, H: u32, W: u32, OH: u32, OW: u32, k: u32, top: u32, left: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let px = i % params.W;
  let py = (i / params.W) % params.H;
  let plane = i / (params.W * params.H);
  let oy = (py + params.top) / params.k;
  let ox = (px + params.left) / params.k;
  let y0 = max(i32(oy * params.k) - i32(params.top), 0);
  let y1 = min(i32((oy + 1u) * params.k) - i32(params.top), i32(params.H));
  let x0 = max(i32(ox * params.k) - i32(params.left), 0);
  let x1 = min(i32((ox + 1u) * params.k) - i32(params.left), i32(params.W));
  let base = plane * params.H * params.W;
  var win = base + u32(y0) * params.W + u32(x0);
  var best = x[win];
  for (var y = y0; y < y1; y++) {
    for (var xx = x0; xx < x1; xx++) {
      let j = base + u32(y) * params.W + u32(xx);
      if (x[j] > best) {
        best = x[j];
        win = j;
      }
    }
  }
  dx[i] = select(0.0, dout[(plane * params.OH + oy) * params.OW + ox], win == i);
}
