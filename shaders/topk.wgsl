// Top-k along the last axis of a [rows, cols] matrix: each row's k largest values in
// descending order and their column indices (stored as f32, exact below 2^24). Equal
// values go to the lower index; NaN ranks below every number, -inf included.
//
// One invocation owns one segment of one row and keeps its best k in a private binary
// heap whose root is the worst kept entry, ordered by (value, then lower index), so
// ties are decided by index whatever the scan order. Most entries are rejected by one
// comparison with the root; an accepted one costs log k moves, where a sorted list
// costs k / 2 (on lavapipe: k = 20 took 90 ms of CPU for 10^7 entries, against 160 ms
// for the sorted list; k = 64, 240 against 800). Heap sort writes the result in order.
// Long rows are cut into segments whose candidate lists (k per segment, unfilled slots
// marked by index -1) a further pass of the same kernel merges, reading the original
// indices from idx_in (GATHER = 1): a few wide rows, as in kNN, still spread over many
// invocations. No workgroup memory and no barriers: rows are independent, and on CPU
// drivers (lavapipe) barriers are costly.

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

// Whether (av, ai) ranks after (bv, bi): a worse value, or an equal one at a higher index.
fn worse(av: f32, ai: f32, bv: f32, bi: f32) -> bool {
  return better(bv, av) || (!better(av, bv) && ai > bi);
}

// Places (v, id) at slot `start` of the heap of size n and sifts it down (root = worst kept).
fn sift_down(start: u32, n: u32, v: f32, id: f32) {
  var p = start;
  loop {
    let l = 2u * p + 1u;
    if (l >= n) { break; }
    var c = l;
    if (l + 1u < n && worse(best_v[l + 1u], best_i[l + 1u], best_v[l], best_i[l])) { c = l + 1u; }
    if (!worse(best_v[c], best_i[c], v, id)) { break; }
    best_v[p] = best_v[c];
    best_i[p] = best_i[c];
    p = c;
  }
  best_v[p] = v;
  best_i[p] = id;
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
  for (var j = start; j < end; j++) {
    let v = x[base + j];
    var id = f32(j);
    if (GATHER == 1u) {
      id = idx_in[base + j];
      if (id < 0.0) { continue; }
    }
    if (filled < k) {
      // Filling: sift the new entry up from the end.
      var c = filled;
      filled++;
      loop {
        if (c == 0u) { break; }
        let p = (c - 1u) / 2u;
        if (!worse(v, id, best_v[p], best_i[p])) { break; }
        best_v[c] = best_v[p];
        best_i[c] = best_i[p];
        c = p;
      }
      best_v[c] = v;
      best_i[c] = id;
    } else if (worse(best_v[0], best_i[0], v, id)) {
      sift_down(0u, k, v, id);
    }
  }
  let o = t * k;
  for (var r = filled; r < k; r++) {
    values[o + r] = -3.4028234663852886e38;
    indices[o + r] = -1.0;
  }
  // Heap sort: the root, the worst left, fills the last unwritten slot; the best ends first.
  for (var n = filled; n > 0u; n--) {
    values[o + n - 1u] = best_v[0];
    indices[o + n - 1u] = best_i[0];
    sift_down(0u, n - 1u, best_v[n - 1u], best_i[n - 1u]);
  }
}
