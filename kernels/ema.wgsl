// Exponential moving average of the parameters (Polyak averaging during training), in place:
//   average = decay * average + (1 - decay) * param
// run once per parameter tensor after each Adam update. decay arrives as a uniform computed on the
// host per step (src/optim/ema.ts: min(decay, (1 + t) / (10 + t)), so a fresh run's average forgets
// the random start quickly). An average starts as a buffer copy of the parameters (ParameterEma.start).
// Layouts: average, param: [n] f32 each (any tensor, flattened), read as vec4 (as kernels/adam.wgsl,
// which this follows: the buffers hold ceil(n / 4) vec4; elements past n are written back unchanged).
// The grid may be folded into x and y.
// A skipped step (the training monitor's flag, read on the GPU: not +-0, NaN included) leaves the
// average bitwise as it was: Adam did not move the parameters, and the average must not count
// them twice.
// Reference: test/reference/ema.ts (emaUpdate). Test: test/ema.test.ts.

struct Params {
  n: u32,
  decay: f32,
  oneMinusDecay: f32,
  flagIndex: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> average: array<vec4f>;
@group(0) @binding(2) var<storage, read> param: array<vec4f>;
@group(0) @binding(3) var<storage, read> flags: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i * 4u >= params.n) { return; }
  // On the bits, as in adam.wgsl: llvmpipe folds `NaN != 0.0` to false.
  if ((bitcast<u32>(flags[params.flagIndex]) & 0x7fffffffu) != 0u) { return; }
  let inside = vec4u(i * 4u) + vec4u(0u, 1u, 2u, 3u) < vec4u(params.n);
  let a0 = average[i];
  average[i] = select(a0, params.decay * a0 + params.oneMinusDecay * param[i], inside);
}
