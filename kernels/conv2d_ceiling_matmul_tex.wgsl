// The plain f32 matmul of kernels/conv2d_ceiling_matmul.wgsl with texture operands: the ceiling of
// the texture variants of the convolution GEMMs (kernels/conv2d_gemm_tex*.wgsl). On llvmpipe a load
// from a read-only storage texture is far cheaper than one from a storage buffer (inlined on OpenGL,
// one call on Vulkan, no per-lane bounds-checked loop: ../shared/SOFTWARE_GPU.md).
// C[M, N] (+)= A[M, K] B[K, N] over the reduction range [k0, k1) (split-K: successive dispatches
// accumulate when accumulate = 1):
//   a [K / 4 wide, M high]: texel (k4, m) = A[m, 4 k4 .. 4 k4 + 3]
//   b [N wide, K / 4 high]: texel (4 n4 + i, k4) = B[4 k4 + i, 4 n4 .. 4 n4 + 3]   (the 4 rows of a k-step side by side)
//   c [M, N] row-major storage buffer
// Register block as in the buffer kernel: ROWS rows x 16 columns per invocation (32 vec4
// accumulators), the WG invocations of a workgroup share the columns. M must be a multiple of
// WG * ROWS, N of 16, K, k0 and k1 of 4; every texture side within maxTextureDimension2D.
// Not used by the engine. Checked against CPU dot products of sampled elements (tools/bench/lib.ts).

struct Params { M: u32, N4: u32, K4: u32, k0: u32, k1: u32, accumulate: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var a: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var b: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4f>;

override WG: u32 = 8;
override ROWS: u32 = 8;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n4 = wid.x * 4u;
  let m0 = wid.y * WG * ROWS + lid;
  let ns = p.N4;
  let bx = i32(4u * n4);
  let ay0 = i32(m0 + 0u * WG);
  let ay1 = i32(m0 + 1u * WG);
  let ay2 = i32(m0 + 2u * WG);
  let ay3 = i32(m0 + 3u * WG);
  let ay4 = i32(m0 + 4u * WG);
  let ay5 = i32(m0 + 5u * WG);
  let ay6 = i32(m0 + 6u * WG);
  let ay7 = i32(m0 + 7u * WG);
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  for (var k = i32(p.k0 / 4u); k < i32(p.k1 / 4u); k++) {
    let b0 = mat4x4f(textureLoad(b, vec2i(bx + 0, k)), textureLoad(b, vec2i(bx + 1, k)), textureLoad(b, vec2i(bx + 2, k)), textureLoad(b, vec2i(bx + 3, k)));
    let b1 = mat4x4f(textureLoad(b, vec2i(bx + 4, k)), textureLoad(b, vec2i(bx + 5, k)), textureLoad(b, vec2i(bx + 6, k)), textureLoad(b, vec2i(bx + 7, k)));
    let b2 = mat4x4f(textureLoad(b, vec2i(bx + 8, k)), textureLoad(b, vec2i(bx + 9, k)), textureLoad(b, vec2i(bx + 10, k)), textureLoad(b, vec2i(bx + 11, k)));
    let b3 = mat4x4f(textureLoad(b, vec2i(bx + 12, k)), textureLoad(b, vec2i(bx + 13, k)), textureLoad(b, vec2i(bx + 14, k)), textureLoad(b, vec2i(bx + 15, k)));
    let a0 = textureLoad(a, vec2i(k, ay0));
    acc00 += b0 * a0; acc01 += b1 * a0; acc02 += b2 * a0; acc03 += b3 * a0;
    let a1 = textureLoad(a, vec2i(k, ay1));
    acc10 += b0 * a1; acc11 += b1 * a1; acc12 += b2 * a1; acc13 += b3 * a1;
    let a2 = textureLoad(a, vec2i(k, ay2));
    acc20 += b0 * a2; acc21 += b1 * a2; acc22 += b2 * a2; acc23 += b3 * a2;
    let a3 = textureLoad(a, vec2i(k, ay3));
    acc30 += b0 * a3; acc31 += b1 * a3; acc32 += b2 * a3; acc33 += b3 * a3;
    if (ROWS > 4u) {
      let a4 = textureLoad(a, vec2i(k, ay4));
      acc40 += b0 * a4; acc41 += b1 * a4; acc42 += b2 * a4; acc43 += b3 * a4;
      let a5 = textureLoad(a, vec2i(k, ay5));
      acc50 += b0 * a5; acc51 += b1 * a5; acc52 += b2 * a5; acc53 += b3 * a5;
      let a6 = textureLoad(a, vec2i(k, ay6));
      acc60 += b0 * a6; acc61 += b1 * a6; acc62 += b2 * a6; acc63 += b3 * a6;
      let a7 = textureLoad(a, vec2i(k, ay7));
      acc70 += b0 * a7; acc71 += b1 * a7; acc72 += b2 * a7; acc73 += b3 * a7;
    }
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
