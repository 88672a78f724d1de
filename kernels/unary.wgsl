// Elementwise unary ops on f32 arrays: out[i] = op(x[i]) for i < n.
// Reference: test/reference/elementwise.ts. Test: test/elementwise.test.ts.

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

fn element(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// ReLU that keeps NaN, decided on the bits: on OpenGL llvmpipe float comparisons are unordered
// (`NaN < 0.0` is true), so select(v, 0.0, v < 0.0) turned NaN into 0 there; WGSL's max(NaN, 0)
// may return either operand. Zero for -0 ... -inf (sign bit set, not NaN), v otherwise.
fn relu_keep_nan(v: f32) -> f32 {
  let bits = bitcast<u32>(v);
  return select(v, 0.0, bits >= 0x80000000u && bits <= 0xff800000u);
}

@compute @workgroup_size(WG)
fn relu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = element(wid, nwg, lid);
  if (i >= params.n) { return; }
  out[i] = relu_keep_nan(x[i]);
}

// Written so that neither branch overflows: exp of a large positive argument would be infinite.
@compute @workgroup_size(WG)
fn sigmoid(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = element(wid, nwg, lid);
  if (i >= params.n) { return; }
  let v = x[i];
  let e = exp(-abs(v));
  out[i] = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}
