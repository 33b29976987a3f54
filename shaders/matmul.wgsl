// Batched matrix product out[b] = op(a[b]) op(b[b]) (+ bias over columns, then relu when
// asked), op being an optional transpose: a is [M, K] or [K, M] per batch item, b is [K, N]
// or [N, K]. Transposes are strides (a[row, k] at row * a_row_stride + k * a_k_stride), and
// bias and relu are uniform flags read once per output, so that one pipeline per tiling
// serves every layout: on lavapipe each pipeline costs seconds of compilation. A 2-D
// operand shared by every batch item has batch stride 0.
//
// Two tilings of the same product, chosen per adapter:
// - `main` keeps a TM x TN block of outputs per invocation in registers and reads its
//   operands straight from storage, with no workgroup memory. On lavapipe (a CPU driver
//   that runs a workgroup as SIMD lanes of one core, where barriers are costly) this was
//   about ten times faster than workgroup-memory tiles: each value loaded feeds TN or TM
//   multiply-adds.
// - `main_shared` stages BK-deep slices of a and b in workgroup memory, as GPUs want, and
//   each invocation again accumulates a TM x TN block from them.
// Rows past M and columns past N read a clamped (valid) address and are not stored, so the
// inner loops carry no bounds test. The grid of (batch, row tile, column tile) is one
// linear workgroup count that the host folds into x and y past 65535; it is rebuilt here
// from num_workgroups.

override TM: u32 = 4;        // rows of out per invocation (1..16)
override TN: u32 = 4;        // columns of out per invocation (1..8)
override WG_X: u32 = 8;      // invocations along N in a workgroup
override WG_Y: u32 = 8;      // invocations along M in a workgroup
override BK: u32 = 16;       // depth of one workgroup-memory slice (main_shared)

const MAX_TM: u32 = 16;
const MAX_TN: u32 = 8;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  batch: u32,
  a_batch_stride: u32,   // 0 when a is shared by every batch item
  b_batch_stride: u32,
  tiles_m: u32,          // workgroup tiles along M
  tiles_n: u32,          // workgroup tiles along N
  a_row_stride: u32,     // K, or 1 when a is stored transposed
  a_k_stride: u32,       // 1, or M
  b_k_stride: u32,       // N, or 1 when b is stored transposed
  b_col_stride: u32,     // 1, or K
  has_bias: u32,
  relu: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

// Batch item, row-tile and column-tile of a workgroup from its folded linear index.
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
  let g = wid.x + wid.y * nwg.x;
  let tn = g % params.tiles_n;
  let r = g / params.tiles_n;
  return vec3<u32>(r / params.tiles_m, r % params.tiles_m, tn);
}

// Element (row, kk) of op(a) for one batch item, and (kk, col) of op(b).
fn load_a(base: u32, row: u32, kk: u32) -> f32 {
  return a[base + row * params.a_row_stride + kk * params.a_k_stride];
}

fn load_b(base: u32, kk: u32, col: u32) -> f32 {
  return b[base + kk * params.b_k_stride + col * params.b_col_stride];
}

fn epilogue(v: f32, col: u32) -> f32 {
  var r = v;
  if (params.has_bias != 0u) { r += bias[col]; }
  if (params.relu != 0u) { r = select(max(r, 0.0), r, is_nan(r)); }
  return r;
}

// ReLU keeps NaN (WGSL leaves max() of a NaN to the driver; lavapipe returns 0): tested on
// the bits.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Adds the bias, applies relu and stores the rows and columns that exist.
fn store_tile(bi: u32, m0: u32, n0: u32, acc: ptr<function, array<f32, 128>>) {
  let base = bi * params.m * params.n;
  for (var j = 0u; j < TN; j++) {
    let col = n0 + j;
    if (col >= params.n) { break; }
    for (var i = 0u; i < TM; i++) {
      let row = m0 + i;
      if (row < params.m) {
        out[base + row * params.n + col] = epilogue((*acc)[i * MAX_TN + j], col);
      }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = tile_of(wid, nwg);
  let bi = t.x;
  let m0 = (t.y * WG_Y + lid.y) * TM;
  let n0 = (t.z * WG_X + lid.x) * TN;
  if (bi >= params.batch || m0 >= params.m || n0 >= params.n) { return; }
  let a_base = bi * params.a_batch_stride;
  let b_base = bi * params.b_batch_stride;
  // Offsets of clamped rows and columns: loads past the edge repeat the last row or column.
  var rows: array<u32, MAX_TM>;
  var cols: array<u32, MAX_TN>;
  for (var i = 0u; i < TM; i++) {
    rows[i] = a_base + min(m0 + i, params.m - 1u) * params.a_row_stride;
  }
  for (var j = 0u; j < TN; j++) {
    cols[j] = b_base + min(n0 + j, params.n - 1u) * params.b_col_stride;
  }
  var acc: array<f32, 128>;
  var av: array<f32, MAX_TM>;
  var bv: array<f32, MAX_TN>;
  for (var kk = 0u; kk < params.k; kk++) {
    let ak = kk * params.a_k_stride;
    let bk = kk * params.b_k_stride;
    for (var i = 0u; i < TM; i++) { av[i] = a[rows[i] + ak]; }
    for (var j = 0u; j < TN; j++) { bv[j] = b[cols[j] + bk]; }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        acc[i * MAX_TN + j] = fma(av[i], bv[j], acc[i * MAX_TN + j]);
      }
    }
  }
  store_tile(bi, m0, n0, &acc);
}

// Slices of op(a) (BK x rows of the tile) and op(b) (BK x columns of the tile).
var<workgroup> a_tile: array<f32, BK * WG_Y * TM>;
var<workgroup> b_tile: array<f32, BK * WG_X * TN>;

@compute @workgroup_size(WG_X, WG_Y)
fn main_shared(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
  let t = tile_of(wid, nwg);
  let bi = t.x;
  // The whole workgroup leaves together (bi is uniform), before any barrier.
  if (bi >= params.batch) { return; }
  let bm = WG_Y * TM;
  let bn = WG_X * TN;
  let tile_m0 = t.y * bm;
  let tile_n0 = t.z * bn;
  let a_base = bi * params.a_batch_stride;
  let b_base = bi * params.b_batch_stride;
  let threads = WG_X * WG_Y;
  var acc: array<f32, 128>;
  var av: array<f32, MAX_TM>;
  var bv: array<f32, MAX_TN>;
  for (var k0 = 0u; k0 < params.k; k0 += BK) {
    // Cooperative loads; entries past the matrix edges are zero.
    for (var e = li; e < BK * bm; e += threads) {
      let kk = e / bm;
      let r = e % bm;
      var v = 0.0;
      if (k0 + kk < params.k && tile_m0 + r < params.m) {
        v = load_a(a_base, tile_m0 + r, k0 + kk);
      }
      a_tile[e] = v;
    }
    for (var e = li; e < BK * bn; e += threads) {
      let kk = e / bn;
      let c = e % bn;
      var v = 0.0;
      if (k0 + kk < params.k && tile_n0 + c < params.n) {
        v = load_b(b_base, k0 + kk, tile_n0 + c);
      }
      b_tile[e] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      // Rows and columns of an invocation are strided by WG_Y and WG_X so that neighbouring
      // invocations read neighbouring words of workgroup memory.
      for (var i = 0u; i < TM; i++) { av[i] = a_tile[kk * bm + i * WG_Y + lid.y]; }
      for (var j = 0u; j < TN; j++) { bv[j] = b_tile[kk * bn + j * WG_X + lid.x]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc[i * MAX_TN + j] = fma(av[i], bv[j], acc[i * MAX_TN + j]);
        }
      }
    }
    workgroupBarrier();
  }
  let base = bi * params.m * params.n;
  for (var i = 0u; i < TM; i++) {
    let row = tile_m0 + i * WG_Y + lid.y;
    for (var j = 0u; j < TN; j++) {
      let col = tile_n0 + j * WG_X + lid.x;
      if (row < params.m && col < params.n) {
        out[base + row * params.n + col] = epilogue(acc[i * MAX_TN + j], col);
      }
    }
  }
}
