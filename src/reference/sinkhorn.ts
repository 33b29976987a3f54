// Sinkhorn-Knopp equipartition of SwAV's codes, as in the paper's official code, in float64.

import { show } from './checks.js';
import { type RefTensor, zeros } from './tensor.js';

/**
 * The engine's sinkhorn options. `schedule` picks how the GPU runs the iterations, not what
 * they compute: accepted (so one object serves both) and checked, with nothing to choose here.
 */
export interface SinkhornOptions {
  /** Default 0.05. */
  epsilon?: number;
  /** Default 3. */
  iterations?: number;
  schedule?: 'auto' | 'small' | 'passes';
}

const SINKHORN_KEYS: (keyof SinkhornOptions)[] = ['epsilon', 'iterations', 'schedule'];

/**
 * Codes Q [B, K] from prototype scores [B, K]. With P = exp(scores / eps)^T of shape [K, B]:
 * P /= sum(P); then `iters` times { each row /= its sum, /= K; each column /= its sum, /= B };
 * finally P *= B and Q = P^T. The last step normalises columns of P, so each returned row sums
 * to 1 exactly (up to rounding); the returned columns approach B / K as iterations grow.
 *
 * The global max of the scores is subtracted before exp: a constant factor that the first
 * normalisation removes, and without it eps = 0.01 overflows exp. Codes carry no gradient, so
 * there is no backward.
 */
export function sinkhorn(scores: RefTensor, opts?: SinkhornOptions): RefTensor;
/** The older positional form: sinkhorn(scores, eps, iters). */
export function sinkhorn(scores: RefTensor, eps: number, iters: number): RefTensor;
export function sinkhorn(scores: RefTensor, a: number | SinkhornOptions = {},
  b?: number): RefTensor {
  // The engine's form ({ epsilon, iterations }, defaults 0.05 and 3) or the positional one.
  let eps: number;
  let iters: number;
  if (typeof a === 'number') {
    eps = a;
    iters = b as number;
  } else {
    if (a === null || typeof a !== 'object' || Array.isArray(a) || b !== undefined) {
      throw new Error(`sinkhorn: give { epsilon, iterations } (as the engine's sinkhorn) or ` +
        `eps, iters, got ${show(a)}${b === undefined ? '' : `, ${show(b)}`}`);
    }
    const unknown = Object.keys(a).find((k) => !(SINKHORN_KEYS as string[]).includes(k));
    if (unknown !== undefined) {
      throw new Error(`sinkhorn: unknown option ${show(unknown)}; it takes the engine's ` +
        `${SINKHORN_KEYS.join(', ')}`);
    }
    if (a.schedule !== undefined && !['auto', 'small', 'passes'].includes(a.schedule)) {
      throw new Error(`sinkhorn: schedule must be 'auto', 'small' or 'passes', got ` +
        show(a.schedule));
    }
    eps = a.epsilon ?? 0.05;
    iters = a.iterations ?? 3;
  }
  if (typeof eps !== 'number' || typeof iters !== 'number') {
    throw new Error(`sinkhorn: eps and iters must be numbers, got ${show(eps)} and ` +
      show(iters));
  }
  if (scores.shape.length !== 2) {
    throw new Error(`sinkhorn: scores must be [B, K], got [${scores.shape.join(', ')}]`);
  }
  if (!(eps > 0) || !Number.isInteger(iters) || iters < 0) {
    throw new Error(`sinkhorn: eps must be > 0 and iters a non-negative integer, got eps=${eps}` +
      `, iters=${iters}`);
  }
  const [B, K] = scores.shape;
  let m = -Infinity;
  for (const s of scores.data) m = Math.max(m, s);
  // P is stored [K, B]: p[k * B + b] = exp((scores[b, k] - max) / eps)
  const p = new Float64Array(K * B);
  let total = 0;
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < K; k++) {
      const v = Math.exp((scores.data[b * K + k] - m) / eps);
      p[k * B + b] = v;
      total += v;
    }
  }
  for (let i = 0; i < p.length; i++) p[i] /= total;
  for (let it = 0; it < iters; it++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let b = 0; b < B; b++) s += p[k * B + b];
      // A prototype whose every exp underflowed would divide 0 by 0: say so instead of NaN.
      if (!(s > 0)) {
        throw new Error(`sinkhorn: prototype ${k} has zero mass (every exp((score - max) / eps)` +
          ` underflowed, eps=${eps}); the score range over eps must stay below ~700`);
      }
      for (let b = 0; b < B; b++) p[k * B + b] = p[k * B + b] / s / K;
    }
    for (let b = 0; b < B; b++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += p[k * B + b];
      if (!(s > 0)) {
        throw new Error(`sinkhorn: sample ${b} has zero mass (every exp((score - max) / eps) ` +
          `underflowed, eps=${eps}); the score range over eps must stay below ~700`);
      }
      for (let k = 0; k < K; k++) p[k * B + b] = p[k * B + b] / s / B;
    }
  }
  const q = zeros([B, K]);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < K; k++) q.data[b * K + k] = p[k * B + b] * B;
  }
  return q;
}

/** Row sums [B] (each 1 after sinkhorn) and column sums [K] (each near B / K) of codes Q. */
export function sinkhornMarginals(q: RefTensor): { rowSums: RefTensor; colSums: RefTensor } {
  if (q.shape.length !== 2) {
    throw new Error(`sinkhornMarginals: Q must be [B, K], got [${q.shape.join(', ')}]`);
  }
  const [B, K] = q.shape;
  const rowSums = zeros([B]);
  const colSums = zeros([K]);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < K; k++) {
      rowSums.data[b] += q.data[b * K + k];
      colSums.data[k] += q.data[b * K + k];
    }
  }
  return { rowSums, colSums };
}
