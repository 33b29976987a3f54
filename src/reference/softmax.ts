// Tempered softmax and log-softmax over the last axis, and SwAV's soft-target cross-entropy.

import { show } from './checks.js';
import { type RefTensor, zeros } from './tensor.js';

function rows(op: string, x: RefTensor): [number, number] {
  if (x.shape.length !== 2) throw new Error(`${op}: x must be [N, K], got [${x.shape.join(', ')}]`);
  return [x.shape[0], x.shape[1]];
}

function sameShape(op: string, what: string, t: RefTensor, like: RefTensor): void {
  if (t.shape.length !== like.shape.length || t.shape.some((d, i) => d !== like.shape[i])) {
    throw new Error(`${op}: ${what} [${t.shape.join(', ')}] must have the shape ` +
      `[${like.shape.join(', ')}]`);
  }
}

/** T as the engine's softmax takes it: a finite number > 0 (T = 0 gave NaN rows here). */
function checkTemperature(op: string, temperature: unknown): number {
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new Error(`${op}: temperature must be a finite number > 0, got ${show(temperature)}`);
  }
  return temperature;
}

/**
 * log softmax(x / T) row by row, shifted by the row max so exp never overflows:
 * z_k - max - log sum_j exp(z_j - max) with z = x / T.
 */
export function logSoftmax(x: RefTensor, temperature = 1): RefTensor {
  const [N, K] = rows('logSoftmax', x);
  checkTemperature('logSoftmax', temperature);
  const y = zeros(x.shape);
  for (let r = 0; r < N; r++) {
    let m = -Infinity;
    for (let k = 0; k < K; k++) m = Math.max(m, x.data[r * K + k] / temperature);
    let s = 0;
    for (let k = 0; k < K; k++) s += Math.exp(x.data[r * K + k] / temperature - m);
    const lse = m + Math.log(s);
    for (let k = 0; k < K; k++) y.data[r * K + k] = x.data[r * K + k] / temperature - lse;
  }
  return y;
}

/** softmax(x / T) over the last axis. */
export function softmax(x: RefTensor, temperature = 1): RefTensor {
  checkTemperature('softmax', temperature);
  const y = logSoftmax(x, temperature);
  for (let i = 0; i < y.data.length; i++) y.data[i] = Math.exp(y.data[i]);
  return y;
}

/** Backward from the forward output y = softmax(x / T), the tensor the engine keeps. */
// dx_k = y_k (dy_k - sum_j dy_j y_j) / T
export function softmaxBackward(dy: RefTensor, y: RefTensor, temperature = 1): RefTensor {
  const [N, K] = rows('softmaxBackward', y);
  checkTemperature('softmaxBackward', temperature);
  sameShape('softmaxBackward', 'dy', dy, y);
  const dx = zeros(y.shape);
  for (let r = 0; r < N; r++) {
    let dot = 0;
    for (let k = 0; k < K; k++) dot += dy.data[r * K + k] * y.data[r * K + k];
    for (let k = 0; k < K; k++) {
      const i = r * K + k;
      dx.data[i] = (y.data[i] * (dy.data[i] - dot)) / temperature;
    }
  }
  return dx;
}

/** Backward from the forward output y = logSoftmax(x / T). */
// dx_k = (dy_k - exp(y_k) sum_j dy_j) / T
export function logSoftmaxBackward(dy: RefTensor, y: RefTensor, temperature = 1): RefTensor {
  const [N, K] = rows('logSoftmaxBackward', y);
  checkTemperature('logSoftmaxBackward', temperature);
  sameShape('logSoftmaxBackward', 'dy', dy, y);
  const dx = zeros(y.shape);
  for (let r = 0; r < N; r++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += dy.data[r * K + k];
    for (let k = 0; k < K; k++) {
      const i = r * K + k;
      dx.data[i] = (dy.data[i] - Math.exp(y.data[i]) * s) / temperature;
    }
  }
  return dx;
}

export interface SoftCrossEntropyResult {
  /** loss_i = -sum_k q_ik logsoftmax(x_i / T)_k, shape [N]. */
  perRow: RefTensor;
  /** The mean of perRow. */
  mean: number;
}

/** Cross-entropy of soft targets q (rows need not sum to 1) against softmax(logits / T). */
export function softCrossEntropy(logits: RefTensor, q: RefTensor, temperature = 1)
  : SoftCrossEntropyResult {
  const [N, K] = rows('softCrossEntropy', logits);
  checkTemperature('softCrossEntropy', temperature);
  sameShape('softCrossEntropy', 'q', q, logits);
  const ls = logSoftmax(logits, temperature);
  const perRow = zeros([N]);
  let total = 0;
  for (let r = 0; r < N; r++) {
    let l = 0;
    for (let k = 0; k < K; k++) l -= q.data[r * K + k] * ls.data[r * K + k];
    perRow.data[r] = l;
    total += l;
  }
  return { perRow, mean: total / N };
}

/**
 * Backward of softCrossEntropy given the upstream gradient of each row's loss (a [N] tensor),
 * or of the mean (a number, so each row receives dl / N). Includes dq for completeness, though
 * SwAV's codes carry no gradient.
 */
// dlogits_ik = dl_i (p_ik sum_j q_ij - q_ik) / T, with p = softmax(logits / T)
// dq_ik = -dl_i logsoftmax(logits / T)_ik
export function softCrossEntropyBackward(logits: RefTensor, q: RefTensor, temperature: number,
  dl: RefTensor | number): { dlogits: RefTensor; dq: RefTensor } {
  const [N, K] = rows('softCrossEntropyBackward', logits);
  checkTemperature('softCrossEntropyBackward', temperature);
  sameShape('softCrossEntropyBackward', 'q', q, logits);
  if (typeof dl !== 'number' && (dl.shape.length !== 1 || dl.shape[0] !== N)) {
    throw new Error(`softCrossEntropyBackward: dl must be [${N}] or a number, got ` +
      `[${dl.shape.join(', ')}]`);
  }
  const ls = logSoftmax(logits, temperature);
  const dlogits = zeros(logits.shape);
  const dq = zeros(q.shape);
  for (let r = 0; r < N; r++) {
    const d = typeof dl === 'number' ? dl / N : dl.data[r];
    let qs = 0;
    for (let k = 0; k < K; k++) qs += q.data[r * K + k];
    for (let k = 0; k < K; k++) {
      const i = r * K + k;
      dlogits.data[i] = (d * (Math.exp(ls.data[i]) * qs - q.data[i])) / temperature;
      dq.data[i] = -d * ls.data[i];
    }
  }
  return { dlogits, dq };
}
