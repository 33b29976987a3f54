// Transpose of the last two axes of a 2-D or 3-D tensor, as the engine's transpose2d.

import { type RefTensor, zeros } from './tensor.js';

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** x [R, C] -> [C, R], or [B, R, C] -> [B, C, R]: out[b, c, r] = x[b, r, c]. */
export function transpose2d(x: RefTensor): RefTensor {
  const rank = x.shape.length;
  if (rank !== 2 && rank !== 3) {
    throw new Error(`transpose2d: x must have rank 2 or 3, got ${fmt(x.shape)}`);
  }
  const [R, C] = x.shape.slice(-2);
  const B = rank === 3 ? x.shape[0] : 1;
  const out = zeros(rank === 3 ? [B, C, R] : [C, R]);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) out.data[(b * C + c) * R + r] = x.data[(b * R + r) * C + c];
    }
  }
  return out;
}

// y = x^T, so dx = dy^T; dy must have the shape of y, x's last two axes swapped
export function transpose2dBackward(dy: RefTensor, xShape: readonly number[]): RefTensor {
  const want = [...xShape.slice(0, -2), ...xShape.slice(-2).reverse()];
  if (xShape.length < 2 || dy.shape.length !== want.length ||
    dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`transpose2dBackward: dy must be ${fmt(want)} (x ${fmt(xShape)} with its ` +
      `last two axes swapped), got ${fmt(dy.shape)}`);
  }
  return transpose2d(dy);
}
