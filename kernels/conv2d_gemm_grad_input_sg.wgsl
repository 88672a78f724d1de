enable subgroups;

// Implicit-GEMM 2-D convolution, gradient with respect to the input, step 1 of 2: the column
// gradient dcols = dOut . w as a GEMM over the output channels, for one group of images (rows
// m0 .. m0 + rows of dp); step 2 (col2im in kernels/conv2d_pack.wgsl) gathers dcols into dx.
//   dp    [Mrows, K4] of vec4: dp[m, c][j] = dOut[b, 4c + j, oy, ox] (pack_grad_out, relu-masked, zero padded)
//   wr    [4 K4, NR4] of vec4: wr[co, n][j] = w[co, 4n + j], n = (ci KH + ky) KW + kx (w itself when it fits, else pack_weight_rows)
//   dcols [rows, NR4] of vec4: dcols[m - m0, n] = sum over co of dp[m, co] wr[co, n]
// Same register block as kernels/conv2d_gemm.wgsl: ROWS rows x 16 columns per invocation, the WG
// invocations of a workgroup share the columns (workgroup-uniform wr addresses), dp read as vec4 along
// the reduction. Operands are padded to tile multiples by the packing kernels: no bounds checks.
// This _sg variant (adapters whose subgroups are exactly 8 invocations wide, e.g. llvmpipe on
// Vulkan; WG must be 8): each invocation loads 2 of the 16 shared operand vec4s of a step and gets
// the others by subgroupBroadcast, 8x fewer loads of the shared operand (llvmpipe has no cheap
// uniform load for loop-dependent addresses: every lane would load it).
// Grid: x = NR4 / 4 column tiles, y = row tiles of the group.
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params { K4: u32, NR4: u32, m0: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dp: array<vec4f>;
@group(0) @binding(2) var<storage, read> wr: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dcols: array<vec4f>;

/** Invocations per workgroup: must be 8, the subgroup size (rows per workgroup = WG * ROWS). */
override WG: u32 = 8;
/** Rows of the register block per invocation: 4 or 8. */
override ROWS: u32 = 8;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let n4 = wid.x * 4u;
  let ml = wid.y * WG * ROWS + lid;
  let ns = p.NR4;
  let arow0 = (p.m0 + ml + 0u * WG) * p.K4;
  let arow1 = (p.m0 + ml + 1u * WG) * p.K4;
  let arow2 = (p.m0 + ml + 2u * WG) * p.K4;
  let arow3 = (p.m0 + ml + 3u * WG) * p.K4;
  let arow4 = (p.m0 + ml + 4u * WG) * p.K4;
  let arow5 = (p.m0 + ml + 5u * WG) * p.K4;
  let arow6 = (p.m0 + ml + 6u * WG) * p.K4;
  let arow7 = (p.m0 + ml + 7u * WG) * p.K4;
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
  var wi = n4;
  for (var k = 0u; k < p.K4; k++) {
    let s0 = wr[wi + sj0 * ns + sc];
    let s1 = wr[wi + sj1 * ns + sc];
    let w0 = mat4x4f(subgroupBroadcast(s0, 0u), subgroupBroadcast(s0, 4u), subgroupBroadcast(s1, 0u), subgroupBroadcast(s1, 4u));
    let w1 = mat4x4f(subgroupBroadcast(s0, 1u), subgroupBroadcast(s0, 5u), subgroupBroadcast(s1, 1u), subgroupBroadcast(s1, 5u));
    let w2 = mat4x4f(subgroupBroadcast(s0, 2u), subgroupBroadcast(s0, 6u), subgroupBroadcast(s1, 2u), subgroupBroadcast(s1, 6u));
    let w3 = mat4x4f(subgroupBroadcast(s0, 3u), subgroupBroadcast(s0, 7u), subgroupBroadcast(s1, 3u), subgroupBroadcast(s1, 7u));
    let a0 = dp[arow0 + k];
    acc00 += w0 * a0; acc01 += w1 * a0; acc02 += w2 * a0; acc03 += w3 * a0;
    let a1 = dp[arow1 + k];
    acc10 += w0 * a1; acc11 += w1 * a1; acc12 += w2 * a1; acc13 += w3 * a1;
    let a2 = dp[arow2 + k];
    acc20 += w0 * a2; acc21 += w1 * a2; acc22 += w2 * a2; acc23 += w3 * a2;
    let a3 = dp[arow3 + k];
    acc30 += w0 * a3; acc31 += w1 * a3; acc32 += w2 * a3; acc33 += w3 * a3;
    if (ROWS > 4u) {
      let a4 = dp[arow4 + k];
      acc40 += w0 * a4; acc41 += w1 * a4; acc42 += w2 * a4; acc43 += w3 * a4;
      let a5 = dp[arow5 + k];
      acc50 += w0 * a5; acc51 += w1 * a5; acc52 += w2 * a5; acc53 += w3 * a5;
      let a6 = dp[arow6 + k];
      acc60 += w0 * a6; acc61 += w1 * a6; acc62 += w2 * a6; acc63 += w3 * a6;
      let a7 = dp[arow7 + k];
      acc70 += w0 * a7; acc71 += w1 * a7; acc72 += w2 * a7; acc73 += w3 * a7;
    }
    wi += 4u * ns;
  }
  let o0 = (ml + 0u * WG) * ns + n4;
  dcols[o0 + 0u] = acc00; dcols[o0 + 1u] = acc01; dcols[o0 + 2u] = acc02; dcols[o0 + 3u] = acc03;
  let o1 = (ml + 1u * WG) * ns + n4;
  dcols[o1 + 0u] = acc10; dcols[o1 + 1u] = acc11; dcols[o1 + 2u] = acc12; dcols[o1 + 3u] = acc13;
  let o2 = (ml + 2u * WG) * ns + n4;
  dcols[o2 + 0u] = acc20; dcols[o2 + 1u] = acc21; dcols[o2 + 2u] = acc22; dcols[o2 + 3u] = acc23;
  let o3 = (ml + 3u * WG) * ns + n4;
  dcols[o3 + 0u] = acc30; dcols[o3 + 1u] = acc31; dcols[o3 + 2u] = acc32; dcols[o3 + 3u] = acc33;
  if (ROWS > 4u) {
    let o4 = (ml + 4u * WG) * ns + n4;
    dcols[o4 + 0u] = acc40; dcols[o4 + 1u] = acc41; dcols[o4 + 2u] = acc42; dcols[o4 + 3u] = acc43;
    let o5 = (ml + 5u * WG) * ns + n4;
    dcols[o5 + 0u] = acc50; dcols[o5 + 1u] = acc51; dcols[o5 + 2u] = acc52; dcols[o5 + 3u] = acc53;
    let o6 = (ml + 6u * WG) * ns + n4;
    dcols[o6 + 0u] = acc60; dcols[o6 + 1u] = acc61; dcols[o6 + 2u] = acc62; dcols[o6 + 3u] = acc63;
    let o7 = (ml + 7u * WG) * ns + n4;
    dcols[o7 + 0u] = acc70; dcols[o7 + 1u] = acc71; dcols[o7 + 2u] = acc72; dcols[o7 + 3u] = acc73;
  }
}
