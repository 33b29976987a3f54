// Top-k along the last axis: the k largest values of each row, descending, with indices.

import { type RefTensor, zeros } from './tensor.js';

/** Whether a ranks strictly before b: larger first, NaN after every number. */
function better(a: number, b: number): boolean {
  return a > b || (Number.isNaN(b) && !Number.isNaN(a));
}

/**
 * Each row's k largest values in descending order and their column indices; equal values
 * keep index order (a stable sort), NaN sorts after -Infinity. x: [..., M], 1 <= k <= M.
 */
export function topk(x: RefTensor, k: number): { values: RefTensor; indices: RefTensor } {
  if (x.shape.length < 1) throw new Error('topk: x must have at least one axis, got []');
  const m = x.shape[x.shape.length - 1];
  if (!Number.isInteger(k) || k < 1 || k > m) {
    throw new Error(`topk: k must be an integer in 1..${m}, got ${k}`);
  }
  const rows = m === 0 ? 0 : x.data.length / m;
  const shape = [...x.shape.slice(0, -1), k];
  const values = zeros(shape);
  const indices = zeros(shape);
  const order = new Array<number>(m);
  for (let r = 0; r < rows; r++) {
    const base = r * m;
    for (let j = 0; j < m; j++) order[j] = j;
    // Array.prototype.sort is stable, so equal values stay in index order.
    order.sort((a, b) => {
      const va = x.data[base + a];
      const vb = x.data[base + b];
      return better(va, vb) ? -1 : better(vb, va) ? 1 : 0;
    });
    for (let i = 0; i < k; i++) {
      values.data[r * k + i] = x.data[base + order[i]];
      indices.data[r * k + i] = order[i];
    }
  }
  return { values, indices };
}
