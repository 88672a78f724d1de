// Elementwise binary ops on f32 arrays: out[i] = op(a[i], b[i]) for i < n.
// One invocation per element; the grid may be folded into x and y (see GpuContext.dispatch).
// Reference: test/reference/elementwise.ts. Test: test/elementwise.test.ts.

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

fn element(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = element(wid, nwg, lid);
  if (i >= params.n) { return; }
  out[i] = a[i] + b[i];
}

@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = element(wid, nwg, lid);
  if (i >= params.n) { return; }
  out[i] = a[i] * b[i];
}

// relu backward: a = the forward input x, b = d loss / d relu(x). The gradient at x = 0 is 0.
@compute @workgroup_size(WG)
fn relu_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = element(wid, nwg, lid);
  if (i >= params.n) { return; }
  out[i] = select(0.0, b[i], a[i] > 0.0);
}

// sigmoid backward from its output: a = y = sigmoid(x), b = d loss / d y; dy/dx = y (1 - y).
@compute @workgroup_size(WG)
fn sigmoid_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = element(wid, nwg, lid);
  if (i >= params.n) { return; }
  let y = a[i];
  out[i] = b[i] * y * (1.0 - y);
}
