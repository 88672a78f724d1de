enable subgroups;

// The plain f32 matmul that tools/bench-conv.ts measures the convolution kernels against (the
// ceiling on the adapter in use): C[M, N] (+)= A[M, K] B[K, N], all row-major, over the reduction
// range [k0, k1) (split-K: successive dispatches accumulate when accumulate = 1). The same register
// block as kernels/conv2d_gemm_sg.wgsl (ROWS rows x 16 columns per invocation in vec4 accumulators,
// workgroup-uniform B addresses, A read as vec4 along k) on plain operands: no packing, no implicit
// im2col addressing. M must be a multiple of WG * ROWS, N of 16, K, k0 and k1 of 4 (the bench's sizes are).
// This _sg variant shares the B vec4s of a step by subgroupBroadcast (subgroups of 8, WG = 8).
// Not used by the engine. Checked against CPU dot products of sampled elements in tools/bench-conv.ts.

struct Params { M: u32, N4: u32, K4: u32, k0: u32, k1: u32, accumulate: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> b: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4f>;

override WG: u32 = 8;
override ROWS: u32 = 8;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let n4 = wid.x * 4u;
  let m0 = wid.y * WG * ROWS + lid;
  let ns = p.N4;
  let arow0 = (m0 + 0u * WG) * p.K4;
  let arow1 = (m0 + 1u * WG) * p.K4;
  let arow2 = (m0 + 2u * WG) * p.K4;
  let arow3 = (m0 + 3u * WG) * p.K4;
  let arow4 = (m0 + 4u * WG) * p.K4;
  let arow5 = (m0 + 5u * WG) * p.K4;
  let arow6 = (m0 + 6u * WG) * p.K4;
  let arow7 = (m0 + 7u * WG) * p.K4;
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  // Who loads which part of the shared operand goes by subgroup lane (the index subgroupBroadcast
  // reads), not by local_invocation_index: WGSL does not promise the two agree.
  let sc = lane % 4u;
  let sj0 = lane / 4u;
  let sj1 = sj0 + 2u;
  var bi = p.k0 * ns + n4;
  for (var k = p.k0 / 4u; k < p.k1 / 4u; k++) {
    let s0 = b[bi + sj0 * ns + sc];
    let s1 = b[bi + sj1 * ns + sc];
    let b0 = mat4x4f(subgroupBroadcast(s0, 0u), subgroupBroadcast(s0, 4u), subgroupBroadcast(s1, 0u), subgroupBroadcast(s1, 4u));
    let b1 = mat4x4f(subgroupBroadcast(s0, 1u), subgroupBroadcast(s0, 5u), subgroupBroadcast(s1, 1u), subgroupBroadcast(s1, 5u));
    let b2 = mat4x4f(subgroupBroadcast(s0, 2u), subgroupBroadcast(s0, 6u), subgroupBroadcast(s1, 2u), subgroupBroadcast(s1, 6u));
    let b3 = mat4x4f(subgroupBroadcast(s0, 3u), subgroupBroadcast(s0, 7u), subgroupBroadcast(s1, 3u), subgroupBroadcast(s1, 7u));
    let a0 = a[arow0 + k];
    acc00 += b0 * a0; acc01 += b1 * a0; acc02 += b2 * a0; acc03 += b3 * a0;
    let a1 = a[arow1 + k];
    acc10 += b0 * a1; acc11 += b1 * a1; acc12 += b2 * a1; acc13 += b3 * a1;
    let a2 = a[arow2 + k];
    acc20 += b0 * a2; acc21 += b1 * a2; acc22 += b2 * a2; acc23 += b3 * a2;
    let a3 = a[arow3 + k];
    acc30 += b0 * a3; acc31 += b1 * a3; acc32 += b2 * a3; acc33 += b3 * a3;
    if (ROWS > 4u) {
      let a4 = a[arow4 + k];
      acc40 += b0 * a4; acc41 += b1 * a4; acc42 += b2 * a4; acc43 += b3 * a4;
      let a5 = a[arow5 + k];
      acc50 += b0 * a5; acc51 += b1 * a5; acc52 += b2 * a5; acc53 += b3 * a5;
      let a6 = a[arow6 + k];
      acc60 += b0 * a6; acc61 += b1 * a6; acc62 += b2 * a6; acc63 += b3 * a6;
      let a7 = a[arow7 + k];
      acc70 += b0 * a7; acc71 += b1 * a7; acc72 += b2 * a7; acc73 += b3 * a7;
    }
    bi += 4u * ns;
  }
  let o0 = (m0 + 0u * WG) * ns + n4;
  if (p.accumulate != 0u) {
    acc00 += c[o0 + 0u]; acc01 += c[o0 + 1u]; acc02 += c[o0 + 2u]; acc03 += c[o0 + 3u];
  }
  c[o0 + 0u] = acc00; c[o0 + 1u] = acc01; c[o0 + 2u] = acc02; c[o0 + 3u] = acc03;
  let o1 = (m0 + 1u * WG) * ns + n4;
  if (p.accumulate != 0u) {
    acc10 += c[o1 + 0u]; acc11 += c[o1 + 1u]; acc12 += c[o1 + 2u]; acc13 += c[o1 + 3u];
  }
  c[o1 + 0u] = acc10; c[o1 + 1u] = acc11; c[o1 + 2u] = acc12; c[o1 + 3u] = acc13;
  let o2 = (m0 + 2u * WG) * ns + n4;
  if (p.accumulate != 0u) {
    acc20 += c[o2 + 0u]; acc21 += c[o2 + 1u]; acc22 += c[o2 + 2u]; acc23 += c[o2 + 3u];
  }
  c[o2 + 0u] = acc20; c[o2 + 1u] = acc21; c[o2 + 2u] = acc22; c[o2 + 3u] = acc23;
  let o3 = (m0 + 3u * WG) * ns + n4;
  if (p.accumulate != 0u) {
    acc30 += c[o3 + 0u]; acc31 += c[o3 + 1u]; acc32 += c[o3 + 2u]; acc33 += c[o3 + 3u];
  }
  c[o3 + 0u] = acc30; c[o3 + 1u] = acc31; c[o3 + 2u] = acc32; c[o3 + 3u] = acc33;
  if (ROWS > 4u) {
    let o4 = (m0 + 4u * WG) * ns + n4;
    if (p.accumulate != 0u) {
      acc40 += c[o4 + 0u]; acc41 += c[o4 + 1u]; acc42 += c[o4 + 2u]; acc43 += c[o4 + 3u];
    }
    c[o4 + 0u] = acc40; c[o4 + 1u] = acc41; c[o4 + 2u] = acc42; c[o4 + 3u] = acc43;
    let o5 = (m0 + 5u * WG) * ns + n4;
    if (p.accumulate != 0u) {
      acc50 += c[o5 + 0u]; acc51 += c[o5 + 1u]; acc52 += c[o5 + 2u]; acc53 += c[o5 + 3u];
    }
    c[o5 + 0u] = acc50; c[o5 + 1u] = acc51; c[o5 + 2u] = acc52; c[o5 + 3u] = acc53;
    let o6 = (m0 + 6u * WG) * ns + n4;
    if (p.accumulate != 0u) {
      acc60 += c[o6 + 0u]; acc61 += c[o6 + 1u]; acc62 += c[o6 + 2u]; acc63 += c[o6 + 3u];
    }
    c[o6 + 0u] = acc60; c[o6 + 1u] = acc61; c[o6 + 2u] = acc62; c[o6 + 3u] = acc63;
    let o7 = (m0 + 7u * WG) * ns + n4;
    if (p.accumulate != 0u) {
      acc70 += c[o7 + 0u]; acc71 += c[o7 + 1u]; acc72 += c[o7 + 2u]; acc73 += c[o7 + 3u];
    }
    c[o7 + 0u] = acc70; c[o7 + 1u] = acc71; c[o7 + 2u] = acc72; c[o7 + 3u] = acc73;
  }
}
