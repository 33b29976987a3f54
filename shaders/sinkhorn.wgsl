// Sinkhorn-Knopp equipartition of SwAV's codes, in the log domain.
//
// Q = exp(s / eps) normalised to total mass 1, then `iterations` times: each column
// (prototype) scaled to mass 1/K, each row (sample) to mass 1/B; finally times B. Every
// normalisation is a shift of log Q, so Q is never stored: log Q[b,k] = s[b,k]/eps - u[b]
// - v[k] + log B, and an iteration only updates the potentials
//   v[k] = log K + lse_b(s[b,k]/eps - u[b]),   u[b] = log B + lse_k(s[b,k]/eps - v[k]).
// The global normalisation before the first iteration is a constant shift that the first
// column update absorbs (it starts from u = 0), so it costs nothing. Each log-sum-exp is
// max-shifted as it goes, so eps = 0.01 with scores in [-1, 1] (exponents of +-100) never
// overflows or loses a column to underflow. The last row update writes Q itself.
//
// One thread owns one potential and loops in a fixed order: results are deterministic and
// bit-identical between the two schedules. Large problems take two dispatches per
// iteration (one thread per column, then one per row: reads of neighbouring threads are
// neighbours in the column pass, and no workgroup memory is needed, which lavapipe runs
// slowly). Small ones run everything in one workgroup that loops, with storage barriers
// between the passes, saving the per-dispatch cost that dominates there.

override WG: u32 = 64;
override WRITE_Q: u32 = 0;   // row_pass: 1 on the last iteration, which writes Q

const NEG_MAX: f32 = -3.4028234663852886e38;

struct Params {
  rows: u32,       // B
  cols: u32,       // K
  inv_eps: f32,
  log_rows: f32,   // log B
  log_cols: f32,   // log K
  first: u32,      // col_pass: 1 when u is still 0 (the first iteration)
  iterations: u32, // small: the whole loop
}

@group(0) @binding(0) var<storage, read> s: array<f32>;
@group(0) @binding(1) var<storage, read_write> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// One step of an online log-sum-exp: m is the running max, t the sum of exp(z - m).
fn lse_push(m: ptr<function, f32>, t: ptr<function, f32>, z: f32) {
  if (z > *m) {
    *t = *t * exp(*m - z) + 1.0;
    *m = z;
  } else {
    *t += exp(z - *m);
  }
}

fn col_update(k: u32, first: bool) {
  var m = NEG_MAX;
  var t = 0.0;
  for (var b = 0u; b < p.rows; b++) {
    var z = s[b * p.cols + k] * p.inv_eps;
    if (!first) { z -= u[b]; }
    lse_push(&m, &t, z);
  }
  v[k] = p.log_cols + m + log(t);
}

fn row_update(b: u32, write_q: bool) {
  let base = b * p.cols;
  var m = NEG_MAX;
  var t = 0.0;
  for (var k = 0u; k < p.cols; k++) {
    lse_push(&m, &t, s[base + k] * p.inv_eps - v[k]);
  }
  let lse = m + log(t);
  u[b] = p.log_rows + lse;
  if (write_q) {
    // Q = B exp(log Q) with log Q = z - v - u = z - v - lse - log B: each row sums to 1.
    for (var k = 0u; k < p.cols; k++) {
      q[base + k] = exp(s[base + k] * p.inv_eps - v[k] - lse);
    }
  }
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn col_pass(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let k = linear_index(wid, nwg, lid);
  if (k >= p.cols) { return; }
  col_update(k, p.first == 1u);
}

@compute @workgroup_size(WG)
fn row_pass(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.rows) { return; }
  row_update(b, WRITE_Q == 1u);
}

// Every iteration in one workgroup; dispatched as exactly one workgroup.
@compute @workgroup_size(WG)
fn small(@builtin(local_invocation_index) lid: u32) {
  for (var it = 0u; it < p.iterations; it++) {
    for (var k = lid; k < p.cols; k += WG) { col_update(k, it == 0u); }
    storageBarrier();
    let last = it + 1u == p.iterations;
    for (var b = lid; b < p.rows; b += WG) { row_update(b, last); }
    storageBarrier();
  }
}
