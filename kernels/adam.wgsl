// Adam update (PyTorch semantics, bias-corrected, no weight decay), fused: one pass reads the
// gradient and updates m, v and the parameter in place.
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   p -= stepSize * m / (sqrt(v) * invSqrtC2 + eps),  stepSize = lr / (1 - beta1^t),
//   invSqrtC2 = 1 / sqrt(1 - beta2^t)
// (the form PyTorch uses). lr and the bias corrections arrive as uniforms, computed on the host in
// f64 for each step, so the learning-rate schedule costs nothing on the GPU.
// Layouts: param, grad, m, v: [n] f32 each (any tensor, flattened), read and written as vec4: one
// invocation per 4 elements (vec4 loads cost about half as much per element on llvmpipe: the
// update over CapsNet's 8.2M parameters took half the time of the scalar version, on Vulkan and
// OpenGL). The buffers hold at least ceil(n / 4) vec4 (the op checks); in the last vec4, the
// elements past n are written back unchanged. The grid may be folded into x and y.
// A NaN or infinite gradient is not absorbed: it makes m, v and that parameter NaN
// (test/adam.test.ts shows it).
// Skipping a bad step without a readback: `flags[flagIndex]` is read first, and when it is not +-0
// (NaN included) the invocation returns before writing anything, so param, m and v stay bitwise as they were. The
// training monitor writes that flag on the GPU (kernels/step_stats.wgsl: 1 when any monitored
// tensor of the step holds a NaN or infinity); without a monitor the op binds a zero.
// The op dispatches this kernel once per parameter tensor (5 storage buffers: within WebGPU's
// limit of 8 per stage), all in the same command encoder.
// Reference: test/reference/adam.ts (adamStep). Test: test/adam.test.ts.

struct Params {
  n: u32,
  stepSize: f32,
  beta1: f32,
  oneMinusBeta1: f32,
  beta2: f32,
  oneMinusBeta2: f32,
  invSqrtC2: f32,
  eps: f32,
  flagIndex: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<vec4f>;
@group(0) @binding(2) var<storage, read> grad: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4f>;
@group(0) @binding(5) var<storage, read> flags: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i * 4u >= params.n) { return; }
  // Tested on the bits: llvmpipe folds `NaN != 0.0` to false, and a NaN flag must skip too.
  if ((bitcast<u32>(flags[params.flagIndex]) & 0x7fffffffu) != 0u) { return; }
  let inside = vec4u(i * 4u) + vec4u(0u, 1u, 2u, 3u) < vec4u(params.n);
  let g = grad[i];
  let m0 = m[i];
  let v0 = v[i];
  let p0 = param[i];
  let m1 = params.beta1 * m0 + params.oneMinusBeta1 * g;
  let v1 = params.beta2 * v0 + params.oneMinusBeta2 * (g * g);
  m[i] = select(m0, m1, inside);
  v[i] = select(v0, v1, inside);
  param[i] = select(p0, p0 - params.stepSize * m1 / (sqrt(v1) * params.invSqrtC2 + params.eps), inside);
}
