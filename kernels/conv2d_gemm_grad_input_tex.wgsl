// Implicit-GEMM 2-D convolution, gradient with respect to the input, step 1 of 2, with texture
// operands: kernels/conv2d_gemm_grad_input.wgsl (same GEMM and register block) reading the packed
// output gradient and weight rows from read-only storage textures written by
// kernels/conv2d_pack_tex.wgsl. The column gradient dcols = dOut . w of one group of images (rows
// m0 .. m0 + rows), gathered into dx by col2im (kernels/conv2d_pack.wgsl) as in the buffer variant.
//   dp texture: texel ((m / rpb) CO4 + c, m % rpb) = dOut[b, 4c .. 4c + 3, oy, ox] for m = (b, oy, ox)   (pack_grad_out_tex)
//   wr texture: texel (4 (n % cpb) + i, (n / cpb) CO4 + c) = w[4c + i, 4n .. 4n + 3] (PyTorch k order)  (pack_weight_rows_tex)
//   dcols [rows, NR4] of vec4 (storage buffer): dcols[m - m0, n] = sum over co of dp[m, co] wr[co, n]
// A row's block of the folded dp and a workgroup's block of the folded wr are fixed before the loop.
// Grid: x = NR4 / 4 column tiles, y = row tiles of the group.
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params { CO4: u32, NR4: u32, m0: u32, rpb: u32, cpb: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var dp: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var wr: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> dcols: array<vec4f>;

/** Invocations per workgroup (rows per workgroup = WG * ROWS). */
override WG: u32 = 8;
/** Rows of the register block per invocation: 4 or 8. */
override ROWS: u32 = 8;

/** The texel of row m, reduction index 0, in the folded dp. */
fn row_texel(m: u32) -> vec2i {
  return vec2i(i32((m / p.rpb) * p.CO4), i32(m % p.rpb));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n4 = wid.x * 4u;
  let ml = wid.y * WG * ROWS + lid;
  let ns = p.NR4;
  let t0 = row_texel(p.m0 + ml + 0u * WG);
  let t1 = row_texel(p.m0 + ml + 1u * WG);
  let t2 = row_texel(p.m0 + ml + 2u * WG);
  let t3 = row_texel(p.m0 + ml + 3u * WG);
  let t4 = row_texel(p.m0 + ml + 4u * WG);
  let t5 = row_texel(p.m0 + ml + 5u * WG);
  let t6 = row_texel(p.m0 + ml + 6u * WG);
  let t7 = row_texel(p.m0 + ml + 7u * WG);
  var acc00 = vec4f(0.0); var acc01 = vec4f(0.0); var acc02 = vec4f(0.0); var acc03 = vec4f(0.0);
  var acc10 = vec4f(0.0); var acc11 = vec4f(0.0); var acc12 = vec4f(0.0); var acc13 = vec4f(0.0);
  var acc20 = vec4f(0.0); var acc21 = vec4f(0.0); var acc22 = vec4f(0.0); var acc23 = vec4f(0.0);
  var acc30 = vec4f(0.0); var acc31 = vec4f(0.0); var acc32 = vec4f(0.0); var acc33 = vec4f(0.0);
  var acc40 = vec4f(0.0); var acc41 = vec4f(0.0); var acc42 = vec4f(0.0); var acc43 = vec4f(0.0);
  var acc50 = vec4f(0.0); var acc51 = vec4f(0.0); var acc52 = vec4f(0.0); var acc53 = vec4f(0.0);
  var acc60 = vec4f(0.0); var acc61 = vec4f(0.0); var acc62 = vec4f(0.0); var acc63 = vec4f(0.0);
  var acc70 = vec4f(0.0); var acc71 = vec4f(0.0); var acc72 = vec4f(0.0); var acc73 = vec4f(0.0);
  let wx = i32(4u * (n4 % p.cpb));
  let wy = i32((n4 / p.cpb) * p.CO4);
  let k4 = i32(p.CO4);
  for (var k = 0; k < k4; k++) {
    let y = wy + k;
    let w0 = mat4x4f(textureLoad(wr, vec2i(wx + 0, y)), textureLoad(wr, vec2i(wx + 1, y)), textureLoad(wr, vec2i(wx + 2, y)), textureLoad(wr, vec2i(wx + 3, y)));
    let w1 = mat4x4f(textureLoad(wr, vec2i(wx + 4, y)), textureLoad(wr, vec2i(wx + 5, y)), textureLoad(wr, vec2i(wx + 6, y)), textureLoad(wr, vec2i(wx + 7, y)));
    let w2 = mat4x4f(textureLoad(wr, vec2i(wx + 8, y)), textureLoad(wr, vec2i(wx + 9, y)), textureLoad(wr, vec2i(wx + 10, y)), textureLoad(wr, vec2i(wx + 11, y)));
    let w3 = mat4x4f(textureLoad(wr, vec2i(wx + 12, y)), textureLoad(wr, vec2i(wx + 13, y)), textureLoad(wr, vec2i(wx + 14, y)), textureLoad(wr, vec2i(wx + 15, y)));
    let a0 = textureLoad(dp, vec2i(t0.x + k, t0.y));
    acc00 += w0 * a0; acc01 += w1 * a0; acc02 += w2 * a0; acc03 += w3 * a0;
    let a1 = textureLoad(dp, vec2i(t1.x + k, t1.y));
    acc10 += w0 * a1; acc11 += w1 * a1; acc12 += w2 * a1; acc13 += w3 * a1;
    let a2 = textureLoad(dp, vec2i(t2.x + k, t2.y));
    acc20 += w0 * a2; acc21 += w1 * a2; acc22 += w2 * a2; acc23 += w3 * a2;
    let a3 = textureLoad(dp, vec2i(t3.x + k, t3.y));
    acc30 += w0 * a3; acc31 += w1 * a3; acc32 += w2 * a3; acc33 += w3 * a3;
    if (ROWS > 4u) {
      let a4 = textureLoad(dp, vec2i(t4.x + k, t4.y));
      acc40 += w0 * a4; acc41 += w1 * a4; acc42 += w2 * a4; acc43 += w3 * a4;
      let a5 = textureLoad(dp, vec2i(t5.x + k, t5.y));
      acc50 += w0 * a5; acc51 += w1 * a5; acc52 += w2 * a5; acc53 += w3 * a5;
      let a6 = textureLoad(dp, vec2i(t6.x + k, t6.y));
      acc60 += w0 * a6; acc61 += w1 * a6; acc62 += w2 * a6; acc63 += w3 * a6;
      let a7 = textureLoad(dp, vec2i(t7.x + k, t7.y));
      acc70 += w0 * a7; acc71 += w1 * a7; acc72 += w2 * a7; acc73 += w3 * a7;
    }
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
