// 2-D convolution in NCHW with zero padding, stride and dilation, and its two gradients, each
// as an implicit GEMM (the im2col matrix is never built; its entries are read from x or dy
// where they are needed):
//   forward          y[n,o,oh,ow] = bias[o] + sum_{c,kh,kw} w[o,c,kh,kw] x[n,c,ih,iw]
//                    rows o, columns (n, oh, ow), depth (kh, kw, c)
//   backward_input   dx[n,c,ih,iw] = sum_{o,kh,kw} w[o,c,kh,kw] dy[n,o,oh,ow]
//                    rows c, columns (n, ih, iw), depth (kh, kw, o)
//   backward_weight  dw[o,c,kh,kw] = sum_{n,oh,ow} dy[n,o,oh,ow] x[n,c,ih,iw]
//                    rows o, columns (c, kh, kw), depth (n, oh, ow), split into chunks whose
//                    partial sums `sum_partials` adds in a fixed order
// with ih = oh sh - ph + kh dh and iw = ow sw - pw + kw dw.
//
// Each invocation keeps a TM x TN block of outputs in registers and reads storage directly,
// with no workgroup memory (fastest on lavapipe, see matmul.wgsl). A block's TN columns lie
// in one image row, so which kernel rows (kh) touch the input is the same for the whole block
// and rows outside the image are skipped whole. Each output adds its terms in an order fixed
// by the geometry alone (forward: kh, c, kw; input gradient: kh, kw, o; weight gradient:
// chunks chosen from the shape), never by the tiling or kernel variant, so that every tiling
// gives the same bits. In backward_input the pixels of a block share one phase of the stride (rows
// ih = rh mod sh, columns sw apart), so a kernel tap reaches all of them or none and the
// skipped taps cost nothing: a strided convolution's input gradient multiplies no zeros.
// On CPU drivers the input gradient at stride 1 runs on forward_rows instead (the stride-1
// convolution of dy with pack_weights_flipped's weights), in that kernel's order.
// Reads outside the image use a clamped address and are replaced by zero; rows and columns
// past the edges are not stored. The grid (chunk, row tile, column tile) is one linear
// workgroup count folded by the host into x and y past 65535.

override TM: u32 = 4;      // rows (output or input channels) per invocation, 1..16
override TN: u32 = 4;      // columns (pixels or weight taps) per invocation, 1..8
override WG_X: u32 = 8;    // invocations along columns
override WG_Y: u32 = 4;    // invocations along rows
override WG: u32 = 64;     // sum_partials

const MAX_TM: u32 = 16;
const MAX_TN: u32 = 8;

struct Params {
  n: i32, c: i32, h: i32, w: i32,
  o: i32, kh: i32, kw: i32, oh: i32,
  ow: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dh: i32, dw: i32,
  q_tiles: i32,          // column tiles per image row (per stride phase in backward_input)
  cols: i32,             // column tiles in all
  phase_rows: i32,       // backward_input: input rows per stride phase, ceil(H / sh)
  tiles_x: i32,          // workgroups along columns
  tiles_y: i32,          // workgroups along rows
  rows_per_chunk: i32,   // backward_weight: (n, oh) pairs per depth chunk
  total: i32,            // backward_weight and sum_partials: outputs O*C*KH*KW
  n_chunks: i32,
  has_bias: i32,         // forward: add bias[o] (a uniform flag: one pipeline either way)
  rows4: i32,            // forward_rows: vec4s per weight tap in wt (output channels / 4)
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
// forward_rows: the weights packed by pack_weights as [C, KH, KW, O rounded up to 4], in a
// uniform buffer of fixed size (64 KiB, the least maxUniformBufferBindingSize WebGPU allows).
@group(0) @binding(7) var<uniform> wt: array<vec4<f32>, 4096>;
// The output as vec4s and vec2s, for the forward_rows variants that store whole vectors.
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> out2: array<vec2<f32>>;
// The input as vec4s (the same buffer as x), for forward_rows' vector loads.
@group(0) @binding(10) var<storage, read> x4: array<vec4<f32>>;

// The element of a one-per-invocation entry (pack_weights*, sum_partials): its folded
// workgroup's linear index times WG plus its place in the workgroup.
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> i32 {
  return i32((wid.x + wid.y * nwg.x) * WG + li);
}

// (chunk, row tile, column tile) of a workgroup from its folded linear index.
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec3<i32> {
  let g = i32(wid.x + wid.y * nwg.x);
  let tx = g % p.tiles_x;
  let r = g / p.tiles_x;
  return vec3<i32>(r / p.tiles_y, r % p.tiles_y, tx);
}

// The block of a forward invocation: image n, output row oh, first column ow0 of its TN
// pixels and first channel o0 of its TM; o0 = -1 where the grid's edge leaves it none.
fn forward_block(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec4<i32> {
  let t = tile_of(wid, nwg);
  let col = t.z * i32(WG_X) + i32(lid.x);
  let o0 = (t.y * i32(WG_Y) + i32(lid.y)) * i32(TM);
  if (col >= p.cols || o0 >= p.o) { return vec4<i32>(0, 0, 0, -1); }
  let row = col / p.q_tiles;
  return vec4<i32>(row / p.oh, row % p.oh, (col % p.q_tiles) * i32(TN), o0);
}

fn bias_of(o: i32) -> f32 {
  if (p.has_bias != 0) { return bias[o]; }
  return 0.0;
}

// Forward epilogue: the block's outputs that exist, plus the bias where there is one.
fn store_outputs(n: i32, o0: i32, oh: i32, ow0: i32, acc: ptr<function, array<f32, 128>>) {
  for (var i = 0u; i < TM; i++) {
    let o = o0 + i32(i);
    if (o >= p.o) { break; }
    let b = bias_of(o);
    let base = ((n * p.o + o) * p.oh + oh) * p.ow;
    for (var j = 0u; j < TN; j++) {
      let ow = ow0 + i32(j);
      if (ow < p.ow) { out[base + ow] = (*acc)[i * MAX_TN + j] + b; }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = forward_block(wid, nwg, lid);
  if (b.w < 0) { return; }
  let n = b.x;
  let oh = b.y;
  let ow0 = b.z;
  let o0 = b.w;
  let khw = p.kh * p.kw;
  let hw = p.h * p.w;
  var wrow: array<i32, MAX_TM>;
  for (var i = 0u; i < TM; i++) { wrow[i] = min(o0 + i32(i), p.o - 1) * p.c * khw; }
  var acc: array<f32, 128>;
  var xv: array<f32, MAX_TN>;
  var wv: array<f32, MAX_TM>;
  let xn = n * p.c * hw;
  for (var kh = 0; kh < p.kh; kh++) {
    let ih = oh * p.sh - p.ph + kh * p.dh;
    // A kernel row above or below the image adds nothing to the whole block.
    let depth = select(0, p.c, ih >= 0 && ih < p.h);
    let xrow = xn + clamp(ih, 0, p.h - 1) * p.w;
    // Channels outside kernel columns: the order of forward_rows, so that both kernels (and
    // every tiling) add each output's terms in the same order and agree to the bit.
    for (var c = 0; c < depth; c++) {
      let xc = xrow + c * hw;
      for (var kw = 0; kw < p.kw; kw++) {
        for (var j = 0u; j < TN; j++) {
          let iw = (ow0 + i32(j)) * p.sw - p.pw + kw * p.dw;
          xv[j] = select(0.0, x[xc + clamp(iw, 0, p.w - 1)], iw >= 0 && iw < p.w);
        }
        let tap = kh * p.kw + kw;
        for (var i = 0u; i < TM; i++) { wv[i] = w[wrow[i] + c * khw + tap]; }
        for (var i = 0u; i < TM; i++) {
          for (var j = 0u; j < TN; j++) {
            acc[i * MAX_TN + j] = fma(wv[i], xv[j], acc[i * MAX_TN + j]);
          }
        }
      }
    }
  }
  store_outputs(n, o0, oh, ow0, &acc);
}

// The forward pass for kernels 1 to 3 taps wide with stride 1 or 2 along the width and no
// dilation there (every convolution of the SwAV ResNets). Two changes from `forward`, both
// aimed at loads, which dominate on lavapipe: there, a storage-buffer load whose address is not
// a compile-time uniform costs a scalar loop over the SIMD lanes with a bounds test per lane,
// while a uniform-buffer load is one vector gather.
// - Each channel's input row segment that the block's TN pixels need under all KW_ROW taps,
//   (TN - 1) * SW_ROW + KW_ROW values, is loaded once and shared by the taps (10 loads instead
//   of 24 for 8 pixels of a 3x3 stride-1 kernel).
// - The weights come from the packed uniform copy `wt`, TM output channels of one tap being
//   TM / 4 consecutive vec4s (TM is a multiple of 4 here).
override KW_ROW: u32 = 3;  // forward_rows: kernel width, 1..3
override SW_ROW: u32 = 1;  // forward_rows: stride along the width, 1 or 2
const MAX_SEG: u32 = 20;   // (MAX_TN - 1) * 2 + 3 = 17, rounded up
// forward_rows, vec4 input loads (XV = 1; host: stride 1 along the width, W and TN multiples
// of 4, padding PW_ROW <= 4): each row segment is read as XV_N whole vec4s, a quarter of the
// lane loops of one load per float.
override XV: u32 = 0;
override PW_ROW: u32 = 0;
override XV_PAD: u32 = (PW_ROW + 3u) / 4u;  // the window's vec4s left of the first pixel
override XV_N: u32 = (4u * XV_PAD - PW_ROW + (TN - 1u) * SW_ROW + KW_ROW + 3u) / 4u;
const MAX_XV: u32 = 5;

// acc[i][j] += wt(tap kw, channel o0 + i) * xs[j * SW_ROW + kw], for one kernel column kw.
fn rows_tap(kw: u32, wb: i32, xs: ptr<function, array<f32, MAX_SEG>>,
            acc: ptr<function, array<f32, 128>>) {
  var wv: array<f32, MAX_TM>;
  let q = wb + i32(kw) * p.rows4;
  for (var i = 0u; i < TM; i++) { wv[i] = wt[q + i32(i / 4u)][i % 4u]; }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      (*acc)[i * MAX_TN + j] = fma(wv[i], (*xs)[j * SW_ROW + kw], (*acc)[i * MAX_TN + j]);
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = forward_block(wid, nwg, lid);
  if (b.w < 0) { return; }
  var acc: array<f32, 128>;
  rows_block(b, &acc);
  store_outputs(b.x, b.w, b.y, b.z, &acc);
}

// forward_rows for output rows whose width is a multiple of 4, in blocks of a multiple of 4
// pixels: the same sums, stored as whole vec4s. Lavapipe runs every store as a loop over the
// SIMD lanes; a vec4 store shares one lane's address and bounds work among four floats
// (measured: 1.3x on the 28x28 stem, whose 9 multiply-adds an output leave stores dear).
@compute @workgroup_size(WG_X, WG_Y)
fn forward_rows4(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = forward_block(wid, nwg, lid);
  if (b.w < 0) { return; }
  var acc: array<f32, 128>;
  rows_block(b, &acc);
  for (var i = 0u; i < TM; i++) {
    let o = b.w + i32(i);
    if (o >= p.o) { break; }
    let bo = bias_of(o);
    let base = (((b.x * p.o + o) * p.oh + b.y) * p.ow + b.z) / 4;
    for (var j = 0u; j < TN; j += 4u) {
      if (b.z + i32(j) < p.ow) {
        let a = i * MAX_TN + j;
        out4[base + i32(j / 4u)] = vec4<f32>(acc[a], acc[a + 1u], acc[a + 2u], acc[a + 3u]) + bo;
      }
    }
  }
}

// forward_rows for output rows of even width, in blocks of an even number of pixels: stored
// as vec2s.
@compute @workgroup_size(WG_X, WG_Y)
fn forward_rows2(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = forward_block(wid, nwg, lid);
  if (b.w < 0) { return; }
  var acc: array<f32, 128>;
  rows_block(b, &acc);
  for (var i = 0u; i < TM; i++) {
    let o = b.w + i32(i);
    if (o >= p.o) { break; }
    let bo = bias_of(o);
    let base = (((b.x * p.o + o) * p.oh + b.y) * p.ow + b.z) / 2;
    for (var j = 0u; j < TN; j += 2u) {
      if (b.z + i32(j) < p.ow) {
        let a = i * MAX_TN + j;
        out2[base + i32(j / 2u)] = vec2<f32>(acc[a], acc[a + 1u]) + bo;
      }
    }
  }
}

// The sums of a forward_rows block into acc.
fn rows_block(b: vec4<i32>, acc: ptr<function, array<f32, 128>>) {
  let n = b.x;
  let oh = b.y;
  let ow0 = b.z;
  let o0 = b.w;
  let hw = p.h * p.w;
  let seg = (TN - 1u) * SW_ROW + KW_ROW;
  // Columns of the segment: clamped offsets, and whether each lies inside the image.
  var xoff: array<i32, MAX_SEG>;
  var ok: array<bool, MAX_SEG>;
  let iw0 = ow0 * i32(SW_ROW) - p.pw;
  for (var s = 0u; s < seg; s++) {
    let iw = iw0 + i32(s);
    ok[s] = iw >= 0 && iw < p.w;
    xoff[s] = clamp(iw, 0, p.w - 1);
  }
  var xs: array<f32, MAX_SEG>;
  // XV: the segment lies in the window of XV_N vec4s from column ow0 - 4 XV_PAD, at a
  // constant offset in it; each vec4 is wholly inside the row or wholly outside (W % 4 == 0).
  let w0 = ow0 - 4 * i32(XV_PAD);
  var win: array<vec4<f32>, MAX_XV>;
  let xn = n * p.c * hw;
  for (var kh = 0; kh < p.kh; kh++) {
    let ih = oh * p.sh - p.ph + kh * p.dh;
    let depth = select(0, p.c, ih >= 0 && ih < p.h);
    let xrow = xn + clamp(ih, 0, p.h - 1) * p.w;
    for (var c = 0; c < depth; c++) {
      let xc = xrow + c * hw;
      if (XV != 0u) {
        // Window elements lo..hi-1 are used. A vec4 of which only the last (the padding's
        // left neighbour) or only the first is used is one scalar load instead of four (a
        // vec4 load is four lane loops on lavapipe; 2-5% on the 28x28 layers).
        let lo = 4u * XV_PAD - PW_ROW;
        let hi = lo + (TN - 1u) * SW_ROW + KW_ROW;
        for (var v = 0u; v < XV_N; v++) {
          let col = w0 + 4 * i32(v);
          let inside = col >= 0 && col < p.w;
          if (4u * v + 3u == lo) {
            let e = select(0.0, x[xc + clamp(col + 3, 0, p.w - 1)], inside);
            win[v] = vec4<f32>(0.0, 0.0, 0.0, e);
          } else if (4u * v + 1u == hi) {
            win[v] = vec4<f32>(select(0.0, x[xc + clamp(col, 0, p.w - 1)], inside), 0.0, 0.0, 0.0);
          } else {
            win[v] = select(vec4<f32>(0.0), x4[(xc + clamp(col, 0, p.w - 4)) / 4], inside);
          }
        }
        for (var s = 0u; s < seg; s++) {
          let k = 4u * XV_PAD - PW_ROW + s;
          xs[s] = win[k / 4u][k % 4u];
        }
      } else {
        for (var s = 0u; s < seg; s++) {
          // A 1-wide strided kernel reads every SW_ROW-th column only.
          if (KW_ROW > 1u || s % SW_ROW == 0u) { xs[s] = select(0.0, x[xc + xoff[s]], ok[s]); }
        }
      }
      let wb = (c * p.kh + kh) * i32(KW_ROW) * p.rows4 + o0 / 4;
      rows_tap(0u, wb, &xs, acc);
      if (KW_ROW > 1u) { rows_tap(1u, wb, &xs, acc); }
      if (KW_ROW > 2u) { rows_tap(2u, wb, &xs, acc); }
    }
  }
}

// wt[k * rows4 * 4 + o] = w[o, k] for the C * KH * KW taps k, zero for o past O: the layout
// forward_rows reads.
@compute @workgroup_size(WG)
fn pack_weights(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
  let i = flat_index(wid, nwg, li);
  if (i >= p.total) { return; }
  let opad = p.rows4 * 4;
  let o = i % opad;
  let k = i / opad;
  let taps = p.c * p.kh * p.kw;
  out[i] = select(0.0, w[min(o, p.o - 1) * taps + k], o < p.o);
}

// The input gradient at stride 1 is the stride-1 convolution of dy with the weights flipped
// in both kernel axes and with input and output channels swapped (padding KH - 1 - ph, KW - 1
// - pw), which forward_rows then computes. wt[k * rows4 * 4 + c] = w[o, c, KH-1-kh, KW-1-kw]
// for the taps k = (o, kh, kw) of that convolution, zero for c past C.
@compute @workgroup_size(WG)
fn pack_weights_flipped(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
  let i = flat_index(wid, nwg, li);
  if (i >= p.total) { return; }
  let cpad = p.rows4 * 4;
  let c = i % cpad;
  let k = i / cpad;
  let khw = p.kh * p.kw;
  let o = k / khw;
  // (KH-1-kh) KW + (KW-1-kw) = KH KW - 1 - (kh KW + kw): both axes flipped at once.
  let tap = khw - 1 - k % khw;
  out[i] = select(0.0, w[(o * p.c + min(c, p.c - 1)) * khw + tap], c < p.c);
}

// The forward pass as GPUs like it: the implicit GEMM in workgroup tiles of BM = WG_Y TM
// output channels by BN = WG_X TN output pixels (all images' pixels in one run of columns),
// whose BK-deep slices of weights and of the input the workgroup stages in workgroup memory
// before each invocation multiplies its TM x TN block out of them. The depth runs over
// (kh, c, kw) in that order, the order of `forward` and `forward_rows`: a tap outside the
// image adds an exact zero where those skip it, so all three give the same bits.
override BK: u32 = 16;     // forward_shared: depth of one staged slice
var<workgroup> w_tile: array<f32, BK * WG_Y * TM>;
var<workgroup> x_tile: array<f32, BK * WG_X * TN>;

@compute @workgroup_size(WG_X, WG_Y)
fn forward_shared(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
  let t = tile_of(wid, nwg);
  let bm = i32(WG_Y * TM);
  let bn = i32(WG_X * TN);
  let m0 = t.y * bm;
  let n0 = t.z * bn;
  let depth = p.kh * p.c * p.kw;
  let khw = p.kh * p.kw;
  let threads = i32(WG_X * WG_Y);
  var acc: array<f32, 128>;
  var av: array<f32, MAX_TM>;
  var bv: array<f32, MAX_TN>;
  for (var k0 = 0; k0 < depth; k0 += i32(BK)) {
    // Cooperative loads; entries past the edges, and taps outside the image, are zero.
    for (var e = i32(li); e < i32(BK) * bm; e += threads) {
      let k = k0 + e / bm;
      let o = m0 + e % bm;
      var v = 0.0;
      if (k < depth && o < p.o) {
        let kw = k % p.kw;
        let r = k / p.kw;
        v = w[(o * p.c + r % p.c) * khw + (r / p.c) * p.kw + kw];
      }
      w_tile[e] = v;
    }
    for (var e = i32(li); e < i32(BK) * bn; e += threads) {
      let k = k0 + e / bn;
      let col = n0 + e % bn;
      var v = 0.0;
      if (k < depth && col < p.cols) {
        let kw = k % p.kw;
        let r = k / p.kw;
        let c = r % p.c;
        let kh = r / p.c;
        let ow = col % p.ow;
        let q = col / p.ow;
        let ih = (q % p.oh) * p.sh - p.ph + kh * p.dh;
        let iw = ow * p.sw - p.pw + kw * p.dw;
        if (ih >= 0 && ih < p.h && iw >= 0 && iw < p.w) {
          v = x[(((q / p.oh) * p.c + c) * p.h + ih) * p.w + iw];
        }
      }
      x_tile[e] = v;
    }
    workgroupBarrier();
    for (var kk = 0; kk < i32(BK); kk++) {
      // Rows and columns of an invocation are strided by WG_Y and WG_X, so that neighbouring
      // invocations read neighbouring words of workgroup memory.
      for (var i = 0u; i < TM; i++) { av[i] = w_tile[kk * bm + i32(i * WG_Y + lid.y)]; }
      for (var j = 0u; j < TN; j++) { bv[j] = x_tile[kk * bn + i32(j * WG_X + lid.x)]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc[i * MAX_TN + j] = fma(av[i], bv[j], acc[i * MAX_TN + j]);
        }
      }
    }
    workgroupBarrier();
  }
  let ohw = p.oh * p.ow;
  for (var i = 0u; i < TM; i++) {
    let o = m0 + i32(i * WG_Y + lid.y);
    if (o >= p.o) { break; }
    let b = bias_of(o);
    for (var j = 0u; j < TN; j++) {
      let col = n0 + i32(j * WG_X + lid.x);
      if (col < p.cols) {
        let n = col / ohw;
        out[(n * p.o + o) * ohw + col % ohw] = acc[i * MAX_TN + j] + b;
      }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = tile_of(wid, nwg);
  let col = t.z * i32(WG_X) + i32(lid.x);
  let c0 = (t.y * i32(WG_Y) + i32(lid.y)) * i32(TM);
  if (col >= p.cols || c0 >= p.c) { return; }
  // Columns: stride phase (rh, rw), image n, row qh of that phase, block q of the phase's
  // pixels in that row; ih = rh + sh qh, iw = rw + sw (q TN + j). Phases outermost, so that
  // neighbouring invocations (SIMD lanes on lavapipe) skip the same taps.
  let q = col % p.q_tiles;
  var r = col / p.q_tiles;
  let qh = r % p.phase_rows;
  r = r / p.phase_rows;
  let n = r % p.n;
  r = r / p.n;
  let rw = r % p.sw;
  let ih = r / p.sw + p.sh * qh;
  if (ih >= p.h) { return; }
  let khw = p.kh * p.kw;
  let ohw = p.oh * p.ow;
  let ckhw = p.c * khw;
  var wcol: array<i32, MAX_TM>;
  for (var i = 0u; i < TM; i++) { wcol[i] = min(c0 + i32(i), p.c - 1) * khw; }
  var acc: array<f32, 128>;
  var dv: array<f32, MAX_TN>;
  var wv: array<f32, MAX_TM>;
  var doff: array<i32, MAX_TN>;
  var ok: array<bool, MAX_TN>;
  let dyn = n * p.o * ohw;
  for (var kh = 0; kh < p.kh; kh++) {
    // Output row reached through kernel row kh, if the stride lands on one.
    let th = ih + p.ph - kh * p.dh;
    let hit_h = th >= 0 && th % p.sh == 0 && th / p.sh < p.oh;
    let dyrow = dyn + select(0, th / p.sh, hit_h) * p.ow;
    for (var kw = 0; kw < p.kw; kw++) {
      // The same phase for every pixel of the block: all of them or none are reached.
      let tw = rw + p.sw * q * i32(TN) + p.pw - kw * p.dw;
      let depth = select(0, p.o, hit_h && tw % p.sw == 0);
      let ow0 = tw / p.sw;
      for (var j = 0u; j < TN; j++) {
        let ow = ow0 + i32(j);
        ok[j] = ow >= 0 && ow < p.ow;
        doff[j] = dyrow + clamp(ow, 0, p.ow - 1);
      }
      let tap = kh * p.kw + kw;
      for (var o = 0; o < depth; o++) {
        for (var j = 0u; j < TN; j++) { dv[j] = select(0.0, dy[doff[j] + o * ohw], ok[j]); }
        for (var i = 0u; i < TM; i++) { wv[i] = w[o * ckhw + wcol[i] + tap]; }
        for (var i = 0u; i < TM; i++) {
          for (var j = 0u; j < TN; j++) {
            acc[i * MAX_TN + j] = fma(wv[i], dv[j], acc[i * MAX_TN + j]);
          }
        }
      }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let c = c0 + i32(i);
    if (c >= p.c) { break; }
    let base = ((n * p.c + c) * p.h + ih) * p.w;
    for (var j = 0u; j < TN; j++) {
      let iw = rw + p.sw * (q * i32(TN) + i32(j));
      if (iw < p.w) { out[base + iw] = acc[i * MAX_TN + j]; }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = tile_of(wid, nwg);
  let chunk = t.x;
  let k0 = (t.z * i32(WG_X) + i32(lid.x)) * i32(TN);
  let o0 = (t.y * i32(WG_Y) + i32(lid.y)) * i32(TM);
  let taps = p.c * p.kh * p.kw;
  if (chunk >= p.n_chunks || k0 >= taps || o0 >= p.o) { return; }
  let khw = p.kh * p.kw;
  let hw = p.h * p.w;
  let ohw = p.oh * p.ow;
  // Each column is one weight tap (c, kh, kw): its channel plane and its offsets in x.
  var xc: array<i32, MAX_TN>;
  var hoff: array<i32, MAX_TN>;
  var woff: array<i32, MAX_TN>;
  for (var j = 0u; j < TN; j++) {
    let ck = min(k0 + i32(j), taps - 1);
    let tap = ck % khw;
    xc[j] = (ck / khw) * hw;
    hoff[j] = (tap / p.kw) * p.dh - p.ph;
    woff[j] = (tap % p.kw) * p.dw - p.pw;
  }
  var dyo: array<i32, MAX_TM>;
  for (var i = 0u; i < TM; i++) { dyo[i] = min(o0 + i32(i), p.o - 1) * ohw; }
  var acc: array<f32, 128>;
  var dv: array<f32, MAX_TM>;
  var xv: array<f32, MAX_TN>;
  var xrow: array<i32, MAX_TN>;
  var okh: array<bool, MAX_TN>;
  let r0 = chunk * p.rows_per_chunk;
  let r1 = min(r0 + p.rows_per_chunk, p.n * p.oh);
  for (var r = r0; r < r1; r++) {
    let n = r / p.oh;
    let oh = r % p.oh;
    for (var j = 0u; j < TN; j++) {
      let ih = oh * p.sh + hoff[j];
      okh[j] = ih >= 0 && ih < p.h;
      xrow[j] = n * p.c * hw + xc[j] + clamp(ih, 0, p.h - 1) * p.w;
    }
    let dyrow = n * p.o * ohw + oh * p.ow;
    for (var ow = 0; ow < p.ow; ow++) {
      for (var i = 0u; i < TM; i++) { dv[i] = dy[dyrow + dyo[i] + ow]; }
      for (var j = 0u; j < TN; j++) {
        let iw = ow * p.sw + woff[j];
        let inside = okh[j] && iw >= 0 && iw < p.w;
        xv[j] = select(0.0, x[xrow[j] + clamp(iw, 0, p.w - 1)], inside);
      }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc[i * MAX_TN + j] = fma(dv[i], xv[j], acc[i * MAX_TN + j]);
        }
      }
    }
  }
  // Chunk s writes its partial sums at s * total; with one chunk that is dw itself.
  let base = chunk * p.total;
  for (var i = 0u; i < TM; i++) {
    let o = o0 + i32(i);
    if (o >= p.o) { break; }
    for (var j = 0u; j < TN; j++) {
      let ck = k0 + i32(j);
      if (ck < taps) { out[base + o * taps + ck] = acc[i * MAX_TN + j]; }
    }
  }
}

// out[i] = sum over chunks s, in order, of part[s * total + i].
@compute @workgroup_size(WG)
fn sum_partials(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
  let i = flat_index(wid, nwg, li);
  if (i >= p.total) { return; }
  var s = 0.0;
  for (var k = 0; k < p.n_chunks; k++) { s += part[k * p.total + i]; }
  out[i] = s;
}
