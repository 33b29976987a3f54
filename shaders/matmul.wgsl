// Batched matrix product out[b] = op(a[b]) op(b[b]) (+ bias over columns, then relu when
// asked), op being a transpose when TRANS_A / TRANS_B are set: a is [M, K] or [K, M] per
// batch item, b is [K, N] or [N, K]. A 2-D operand shared by every batch item has batch
// stride 0.
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

override TM: u32 = 4;        // rows of out per invocation (1..8)
override TN: u32 = 4;        // columns of out per invocation (1..8)
override WG_X: u32 = 8;      // invocations along N in a workgroup
override WG_Y: u32 = 8;      // invocations along M in a workgroup
override BK: u32 = 16;       // depth of one workgroup-memory slice (main_shared)
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override RELU: bool = false;

const MAX_T: u32 = 8;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  batch: u32,
  a_batch_stride: u32,   // 0 when a is shared by every batch item
  b_batch_stride: u32,
  tiles_m: u32,          // workgroup tiles along M
  tiles_n: u32,          // workgroup tiles along N
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
  if (TRANS_A) { return a[base + kk * params.m + row]; }
  return a[base + row * params.k + kk];
}

fn load_b(base: u32, kk: u32, col: u32) -> f32 {
  if (TRANS_B) { return b[base + col * params.k + kk]; }
  return b[base + kk * params.n + col];
}

// Adds the bias, applies relu and stores the rows and columns that exist.
fn store_tile(bi: u32, m0: u32, n0: u32, acc: ptr<function, array<f32, 64>>) {
  let base = bi * params.m * params.n;
  for (var j = 0u; j < TN; j++) {
    let col = n0 + j;
    if (col >= params.n) { break; }
    var bj = 0.0;
    if (HAS_BIAS) { bj = bias[col]; }
    for (var i = 0u; i < TM; i++) {
      let row = m0 + i;
      if (row < params.m) {
        var v = (*acc)[i * MAX_T + j] + bj;
        if (RELU) { v = max(v, 0.0); }
        out[base + row * params.n + col] = v;
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
  // Clamped row and column indices: loads past the edge repeat the last row or column.
  var rows: array<u32, MAX_T>;
  var cols: array<u32, MAX_T>;
  for (var i = 0u; i < TM; i++) { rows[i] = min(m0 + i, params.m - 1u); }
  for (var j = 0u; j < TN; j++) { cols[j] = min(n0 + j, params.n - 1u); }
  var acc: array<f32, 64>;
  var av: array<f32, MAX_T>;
  var bv: array<f32, MAX_T>;
  for (var kk = 0u; kk < params.k; kk++) {
    for (var i = 0u; i < TM; i++) { av[i] = load_a(a_base, rows[i], kk); }
    for (var j = 0u; j < TN; j++) { bv[j] = load_b(b_base, kk, cols[j]); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        acc[i * MAX_T + j] = fma(av[i], bv[j], acc[i * MAX_T + j]);
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
  var acc: array<f32, 64>;
  var av: array<f32, MAX_T>;
  var bv: array<f32, MAX_T>;
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
          acc[i * MAX_T + j] = fma(av[i], bv[j], acc[i * MAX_T + j]);
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
        var v = acc[i * MAX_T + j];
        if (HAS_BIAS) { v += bias[col]; }
        if (RELU) { v = max(v, 0.0); }
        out[base + row * params.n + col] = v;
      }
    }
  }
}
