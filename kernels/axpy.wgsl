// y[i] += alpha * x[i] for i < n, in place: how gradients accumulate where a tensor feeds
// several consumers (a gather per element, no atomics needed).
// Test: test/elementwise.test.ts (via addInto).

struct Params { n: u32, alpha: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  y[i] += params.alpha * x[i];
}
