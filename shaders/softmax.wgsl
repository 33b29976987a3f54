// Softmax with temperature over the last axis, log-softmax, their backwards, and the
// fused soft-target cross-entropy -sum_k q_k log softmax(x / T)_k with its backward.
//
// Every kernel but the mean gives one thread a whole row, looping over it in a fixed
// order: rows are many (up to ~1e5) and short (K up to ~3000), so there is parallelism
// enough without splitting a row, no workgroup memory or barrier is needed (both slow on
// lavapipe, which runs a workgroup as SIMD lanes of one core), and results are
// deterministic. The backward is row-wise too although it has no reduction left (the
// forward saves each row's log-sum-exp and sum of q): one thread per element costs lavapipe
// a u32 division per element, which it scalarises, and per-invocation overhead; row-wise
// was 3-10x faster on 4096 x 3000. Every max is subtracted before exp (an online
// log-sum-exp: one exp per element, a rescale when the running max grows). Workgroup
// counts past 65535 are folded into x and y; the linear index is rebuilt from
// num_workgroups.

override WG: u32 = 64;
override LOG: u32 = 0;   // 0 softmax, 1 log-softmax

const NEG_MAX: f32 = -3.4028234663852886e38;

struct RowParams {
  rows: u32,
  cols: u32,
  inv_t: f32,      // 1 / temperature
}

struct GradParams {
  rows: u32,
  cols: u32,
  inv_t: f32,
  dl_stride: u32,  // 0: one upstream value for every row (mean); 1: one per row
  dl_scale: f32,   // 1 / rows for the mean, else 1
}

struct MeanParams {
  n: u32,
  scale: f32,
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// One step of an online log-sum-exp: m is the running max, s the sum of exp(z - m).
fn lse_push(m: ptr<function, f32>, s: ptr<function, f32>, z: f32) {
  if (z > *m) {
    *s = *s * exp(*m - z) + 1.0;
    *m = z;
  } else {
    *s += exp(z - *m);
  }
}

// ---- softmax and log-softmax ------------------------------------------------------

@group(0) @binding(0) var<storage, read> sm_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> sm_y: array<f32>;
@group(0) @binding(2) var<uniform> sm: RowParams;

@compute @workgroup_size(WG)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= sm.rows) { return; }
  let base = r * sm.cols;
  var m = NEG_MAX;
  var s = 0.0;
  for (var k = 0u; k < sm.cols; k++) { lse_push(&m, &s, sm_x[base + k] * sm.inv_t); }
  let lse = m + log(s);
  for (var k = 0u; k < sm.cols; k++) {
    let ls = sm_x[base + k] * sm.inv_t - lse;
    if (LOG == 1u) { sm_y[base + k] = ls; } else { sm_y[base + k] = exp(ls); }
  }
}

@group(0) @binding(0) var<storage, read> smb_dy: array<f32>;
@group(0) @binding(1) var<storage, read> smb_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> smb_dx: array<f32>;
@group(0) @binding(3) var<uniform> smb: RowParams;

// softmax:     dx_k = y_k (dy_k - sum_j dy_j y_j) / T
// log-softmax: dx_k = (dy_k - exp(y_k) sum_j dy_j) / T
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= smb.rows) { return; }
  let base = r * smb.cols;
  var acc = 0.0;
  for (var k = 0u; k < smb.cols; k++) {
    let dy = smb_dy[base + k];
    if (LOG == 1u) { acc += dy; } else { acc += dy * smb_y[base + k]; }
  }
  for (var k = 0u; k < smb.cols; k++) {
    let i = base + k;
    if (LOG == 1u) {
      smb_dx[i] = (smb_dy[i] - exp(smb_y[i]) * acc) * smb.inv_t;
    } else {
      smb_dx[i] = smb_y[i] * (smb_dy[i] - acc) * smb.inv_t;
    }
  }
}

// ---- soft-target cross-entropy ------------------------------------------------------

@group(0) @binding(0) var<storage, read> ce_x: array<f32>;
@group(0) @binding(1) var<storage, read> ce_q: array<f32>;
@group(0) @binding(2) var<storage, read_write> ce_loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> ce_stats: array<f32>;
@group(0) @binding(4) var<uniform> ce: RowParams;

// loss_r = sum_k q_k (lse - z_k), with z = x / T: the terms are >= 0 for q >= 0, so no
// cancellation between sum(q) lse and sum(q z), which are both large when T is small.
// stats[r] = (lse, sum q): all the backward needs besides x and q.
@compute @workgroup_size(WG)
fn ce_forward(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= ce.rows) { return; }
  let base = r * ce.cols;
  var m = NEG_MAX;
  var s = 0.0;
  for (var k = 0u; k < ce.cols; k++) { lse_push(&m, &s, ce_x[base + k] * ce.inv_t); }
  let lse = m + log(s);
  var loss = 0.0;
  var qs = 0.0;
  for (var k = 0u; k < ce.cols; k++) {
    let q = ce_q[base + k];
    loss += q * (lse - ce_x[base + k] * ce.inv_t);
    qs += q;
  }
  ce_loss[r] = loss;
  ce_stats[2u * r] = lse;
  ce_stats[2u * r + 1u] = qs;
}

@group(0) @binding(0) var<storage, read> mean_in: array<f32>;
@group(0) @binding(1) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(2) var<uniform> mp: MeanParams;

var<workgroup> partial: array<f32, WG>;

// The mean of the per-row losses in one workgroup: thread t sums t, t + WG, ..., then a
// fixed tree; deterministic, and only log2(WG) barriers for the whole batch.
@compute @workgroup_size(WG)
fn ce_mean(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < mp.n; i += WG) { acc += mean_in[i]; }
  partial[lid] = acc;
  workgroupBarrier();
  for (var width = WG / 2u; width > 0u; width /= 2u) {
    if (lid < width) { partial[lid] += partial[lid + width]; }
    workgroupBarrier();
  }
  if (lid == 0u) { mean_out[0] = partial[0] * mp.scale; }
}

@group(0) @binding(0) var<storage, read> cg_x: array<f32>;
@group(0) @binding(1) var<storage, read> cg_q: array<f32>;
@group(0) @binding(2) var<storage, read> cg_stats: array<f32>;
@group(0) @binding(3) var<storage, read> cg_dl: array<f32>;
@group(0) @binding(4) var<storage, read_write> cg_out: array<f32>;
@group(0) @binding(5) var<uniform> cg: GradParams;

// dlogits_rk = dl_r (p_rk sum_j q_rj - q_rk) / T with p = exp(x / T - lse)
@compute @workgroup_size(WG)
fn ce_grad_logits(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= cg.rows) { return; }
  let dl = cg_dl[r * cg.dl_stride] * cg.dl_scale * cg.inv_t;   // dl_r / T
  let lse = cg_stats[2u * r];
  let qs = cg_stats[2u * r + 1u];
  let base = r * cg.cols;
  for (var k = 0u; k < cg.cols; k++) {
    let i = base + k;
    cg_out[i] = dl * (exp(cg_x[i] * cg.inv_t - lse) * qs - cg_q[i]);
  }
}

@group(0) @binding(0) var<storage, read> cq_x: array<f32>;
@group(0) @binding(1) var<storage, read> cq_stats: array<f32>;
@group(0) @binding(2) var<storage, read> cq_dl: array<f32>;
@group(0) @binding(3) var<storage, read_write> cq_out: array<f32>;
@group(0) @binding(4) var<uniform> cq: GradParams;

// dq_rk = -dl_r log softmax(x / T)_rk = dl_r (lse_r - x_rk / T)
@compute @workgroup_size(WG)
fn ce_grad_q(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= cq.rows) { return; }
  let dl = cq_dl[r * cq.dl_stride] * cq.dl_scale;
  let lse = cq_stats[2u * r];
  let base = r * cq.cols;
  for (var k = 0u; k < cq.cols; k++) {
    cq_out[base + k] = dl * (lse - cq_x[base + k] * cq.inv_t);
  }
}
