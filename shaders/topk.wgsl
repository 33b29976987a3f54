// Top-k along the last axis of a [rows, cols] matrix: each row's k largest values in
// descending order and their column indices (stored as f32, exact below 2^24). Equal
// values go to the lower index; NaN ranks below every number, -inf included.
//
// One invocation owns one segment of one row and keeps its best k in a private sorted
// list, scanning the segment in index order. A value enters only when strictly better
// than the current k-th, and inserts after its equals, so ties keep index order without
// comparing indices. Long rows are cut into segments whose candidate lists (k per
// segment, unfilled slots marked by index -1) a further pass of the same kernel merges,
// reading the original indices from idx_in (GATHER = 1): a few wide rows, as in kNN,
// still spread over many invocations. No workgroup memory and no barriers: rows are
// independent, and on CPU drivers (lavapipe) barriers are costly.

override WG: u32 = 64;
override GATHER: u32 = 0;   // 0: the index is the column; 1: read it from idx_in

// Largest k; private arrays need a constant size.
const KMAX: u32 = 64u;

struct Params {
  rows: u32,
  cols: u32,      // length of each input row
  k: u32,
  seg_len: u32,   // columns per segment
  n_seg: u32,     // segments per row; the output holds n_seg * k per row
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> idx_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

var<private> best_v: array<f32, KMAX>;
var<private> best_i: array<f32, KMAX>;

// Tested on the bits: a compiler allowed to assume no NaN may fold `v != v` to false.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether a ranks strictly before b.
fn better(a: f32, b: f32) -> bool {
  return a > b || (is_nan(b) && !is_nan(a));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= params.rows * params.n_seg) { return; }
  let k = params.k;
  let row = t / params.n_seg;
  let seg = t % params.n_seg;
  let start = seg * params.seg_len;
  let end = min(start + params.seg_len, params.cols);
  let base = row * params.cols;
  var filled = 0u;
  var kth = 0.0;   // best_v[k - 1] once the list is full, kept in a register
  for (var j = start; j < end; j++) {
    let v = x[base + j];
    var id = f32(j);
    if (GATHER == 1u) {
      id = idx_in[base + j];
      if (id < 0.0) { continue; }
    }
    var pos: u32;
    if (filled < k) {
      pos = filled;
      filled++;
    } else {
      if (!better(v, kth)) { continue; }
      pos = k - 1u;
    }
    while (pos > 0u && better(v, best_v[pos - 1u])) {
      best_v[pos] = best_v[pos - 1u];
      best_i[pos] = best_i[pos - 1u];
      pos--;
    }
    best_v[pos] = v;
    best_i[pos] = id;
    if (filled == k) { kth = best_v[k - 1u]; }
  }
  let o = t * k;
  for (var r = 0u; r < k; r++) {
    if (r < filled) {
      values[o + r] = best_v[r];
      indices[o + r] = best_i[r];
    } else {
      // An empty slot of a short segment: the merging pass skips it by its index.
      values[o + r] = -3.4028234663852886e38;
      indices[o + r] = -1.0;
    }
  }
}
