// Row-wise L2 normalisation (PyTorch's F.normalize with p = 2, dim = 1) and its backward.

import { type RefTensor, zeros } from './tensor.js';

function rows(op: string, x: RefTensor): [number, number] {
  if (x.shape.length !== 2) throw new Error(`${op}: x must be [N, D], got [${x.shape.join(', ')}]`);
  return [x.shape[0], x.shape[1]];
}

function rowNorm(x: RefTensor, r: number, D: number): number {
  let s = 0;
  for (let j = 0; j < D; j++) s += x.data[r * D + j] ** 2;
  return Math.sqrt(s);
}

/** y = x / max(||x_row||, eps); the floor keeps a zero row at zero instead of 0/0. */
export function l2Normalize(x: RefTensor, eps = 1e-12): RefTensor {
  const [N, D] = rows('l2Normalize', x);
  const y = zeros(x.shape);
  for (let r = 0; r < N; r++) {
    const d = Math.max(rowNorm(x, r, D), eps);
    for (let j = 0; j < D; j++) y.data[r * D + j] = x.data[r * D + j] / d;
  }
  return y;
}

/**
 * Two branches, as PyTorch's clamp_min: where n = ||x|| >= eps (its gradient passes at
 * equality) the norm is differentiated; below eps the denominator is the constant eps.
 */
// n >= eps: dx = (dy - y <y, dy>) / n with y = x / n;  n < eps: dx = dy / eps
export function l2NormalizeBackward(dy: RefTensor, x: RefTensor, eps = 1e-12): RefTensor {
  const [N, D] = rows('l2NormalizeBackward', x);
  if (dy.shape.length !== 2 || dy.shape[0] !== N || dy.shape[1] !== D) {
    throw new Error(`l2NormalizeBackward: dy must be [${N}, ${D}], got [${dy.shape.join(', ')}]`);
  }
  const dx = zeros(x.shape);
  for (let r = 0; r < N; r++) {
    const n = rowNorm(x, r, D);
    if (n < eps) {
      for (let j = 0; j < D; j++) dx.data[r * D + j] = dy.data[r * D + j] / eps;
      continue;
    }
    let ydy = 0;
    for (let j = 0; j < D; j++) ydy += (x.data[r * D + j] / n) * dy.data[r * D + j];
    for (let j = 0; j < D; j++) {
      dx.data[r * D + j] = (dy.data[r * D + j] - (x.data[r * D + j] / n) * ydy) / n;
    }
  }
  return dx;
}
