// Batched matrix product with optional transposes, and its backward.

import { type RefTensor, zeros } from './tensor.js';

export interface MatmulOptions {
  /** Read a as stored transposed: [K, M] or [B, K, M]. */
  transA?: boolean;
  /** Read b as stored transposed: [N, K] or [B, N, K]. */
  transB?: boolean;
}

/** The logical view of one operand: batch count (0 when 2-D), rows, cols of op(x). */
interface Operand {
  batch: number;
  rows: number;
  cols: number;
  /** Element (r, c) of op(x) in batch item `bi`. */
  at: (bi: number, r: number, c: number) => number;
}

function operand(x: RefTensor, trans: boolean, name: string): Operand {
  if (x.shape.length !== 2 && x.shape.length !== 3) {
    throw new Error(`matmul: ${name} must be 2-D or 3-D, got [${x.shape.join(', ')}]`);
  }
  const batched = x.shape.length === 3;
  const [r0, c0] = x.shape.slice(-2);
  const stride = r0 * c0;
  const d = x.data;
  return {
    batch: batched ? x.shape[0] : 0,
    rows: trans ? c0 : r0,
    cols: trans ? r0 : c0,
    // A 2-D operand ignores the batch index: it is shared by every item.
    at: trans
      ? (bi, r, c) => d[(batched ? bi * stride : 0) + c * c0 + r]
      : (bi, r, c) => d[(batched ? bi * stride : 0) + r * c0 + c],
  };
}

/**
 * op(a) op(b), op being a transpose when asked. A 2-D operand broadcasts over the other's
 * batch; two 3-D operands must have equal batch sizes. Output [M, N] or [B, M, N].
 */
export function matmul(a: RefTensor, b: RefTensor, opts: MatmulOptions = {}): RefTensor {
  const A = operand(a, opts.transA ?? false, 'a');
  const B = operand(b, opts.transB ?? false, 'b');
  if (A.cols !== B.rows) {
    throw new Error(`matmul: inner sizes differ: a [${a.shape.join(', ')}] ` +
      `(transA=${!!opts.transA}) gives K=${A.cols}, b [${b.shape.join(', ')}] ` +
      `(transB=${!!opts.transB}) gives K=${B.rows}`);
  }
  if (A.batch && B.batch && A.batch !== B.batch) {
    throw new Error(`matmul: batch sizes differ: a [${a.shape.join(', ')}], ` +
      `b [${b.shape.join(', ')}]`);
  }
  const batch = Math.max(A.batch, B.batch);
  const M = A.rows;
  const N = B.cols;
  const K = A.cols;
  const out = zeros(batch ? [batch, M, N] : [M, N]);
  let o = 0;
  for (let bi = 0; bi < Math.max(batch, 1); bi++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += A.at(bi, i, k) * B.at(bi, k, j);
        out.data[o++] = acc;
      }
    }
  }
  return out;
}

/** Sums a [B, R, C] gradient over its batch when the operand was a shared 2-D matrix. */
function unbatch(g: RefTensor, operandRank: number): RefTensor {
  if (operandRank === 3 || g.shape.length === 2) return g;
  const [batch, r, c] = g.shape;
  const out = zeros([r, c]);
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < r * c; i++) out.data[i] += g.data[bi * r * c + i];
  }
  return out;
}

/**
 * Gradients of y = op(a) op(b), each in the layout its operand is stored in.
 * d op(a) = dy op(b)^T, d op(b) = op(a)^T dy; a stored transpose transposes these back, and a
 * 2-D operand shared over the batch sums its per-item gradients.
 */
export function matmulBackward(a: RefTensor, b: RefTensor, dy: RefTensor,
  opts: MatmulOptions = {}): { da: RefTensor; db: RefTensor } {
  const tA = opts.transA ?? false;
  const tB = opts.transB ?? false;
  // da = dy op(b)^T, or for a stored [K, M]: (dy op(b)^T)^T = op(b) dy^T
  const da = tA
    ? matmul(b, dy, { transA: tB, transB: true })
    : matmul(dy, b, { transB: !tB });
  // db = op(a)^T dy, or for a stored [N, K]: (op(a)^T dy)^T = dy^T op(a)
  const db = tB
    ? matmul(dy, a, { transA: true, transB: tA })
    : matmul(a, dy, { transA: !tA });
  return { da: unbatch(da, a.shape.length), db: unbatch(db, b.shape.length) };
}
