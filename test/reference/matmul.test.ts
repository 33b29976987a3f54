// Matmul: hand values, transposes, batch broadcasting, and the backward against finite
// differences.

import { describe, expect, it } from 'vitest';
import { matmul, matmulBackward } from '../../src/reference/matmul.js';
import { mulberry32 } from '../../src/reference/random.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

describe('matmul forward', () => {
  it('2x2 by hand', () => {
    const y = matmul(ref([2, 2], [1, 2, 3, 4]), ref([2, 2], [5, 6, 7, 8]));
    expect(y.shape).toEqual([2, 2]);
    expect(Array.from(y.data)).toEqual([19, 22, 43, 50]);
  });

  it('transposes read the stored matrix the other way', () => {
    const a = ref([2, 3], [1, 2, 3, 4, 5, 6]);
    // a^T a: [3, 3]
    expect(Array.from(matmul(a, a, { transA: true }).data))
      .toEqual([17, 22, 27, 22, 29, 36, 27, 36, 45]);
    // a a^T: [2, 2]
    expect(Array.from(matmul(a, a, { transB: true }).data)).toEqual([14, 32, 32, 77]);
    // a^T b^T with b = a^T stored [3, 2]: (a^T)(a) again
    const at = ref([3, 2], [1, 4, 2, 5, 3, 6]);
    expect(Array.from(matmul(a, at, { transA: true, transB: true }).data))
      .toEqual([17, 22, 27, 22, 29, 36, 27, 36, 45]);
  });

  it('a 2-D operand broadcasts over the other\'s batch', () => {
    const a = ref([2, 1, 2], [1, 2, 3, 4]);
    const b = ref([2, 1], [10, 1]);
    const y = matmul(a, b);
    expect(y.shape).toEqual([2, 1, 1]);
    expect(Array.from(y.data)).toEqual([12, 34]);
    const y2 = matmul(ref([1, 2], [1, 1]), ref([2, 2, 1], [1, 2, 3, 4]));
    expect(Array.from(y2.data)).toEqual([3, 7]);
  });

  it('K = 0 gives zeros; shape errors name both shapes', () => {
    expect(Array.from(matmul(ref([2, 0], []), ref([0, 3], [])).data)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(() => matmul(ref([2, 3], (i) => i), ref([2, 3], (i) => i)))
      .toThrow(/inner sizes differ: a \[2, 3\].*K=3, b \[2, 3\].*K=2/);
    expect(() => matmul(ref([2, 1, 1], [1, 2]), ref([3, 1, 1], [1, 2, 3])))
      .toThrow(/batch sizes differ/);
    expect(() => matmul(ref([4], [1, 2, 3, 4]), ref([4, 1], [1, 2, 3, 4]))).toThrow(/2-D or 3-D/);
  });
});

describe('matmul backward against finite differences', () => {
  // [M, K, N] with primes and 1s so no dimension can be mistaken for another.
  const dims: [number, number, number][] = [[1, 1, 1], [3, 5, 2], [1, 7, 3], [4, 1, 5]];
  for (const [M, K, N] of dims) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const batching of ['none', 'both', 'a', 'b'] as const) {
          it(`[${M},${K}]x[${K},${N}] transA=${transA} transB=${transB} batch=${batching}`, () => {
            const rng = mulberry32(M * 100 + K * 10 + N);
            const B = 3;
            const sa = transA ? [K, M] : [M, K];
            const sb = transB ? [N, K] : [K, N];
            const a = randn(batching === 'both' || batching === 'a' ? [B, ...sa] : sa, rng);
            const b = randn(batching === 'both' || batching === 'b' ? [B, ...sb] : sb, rng);
            const opts = { transA, transB };
            expectGrads('matmul backward', ([x, y]) => matmul(x, y, opts), [a, b], (dy) => {
              const g = matmulBackward(a, b, dy, opts);
              expect(g.da.shape).toEqual(a.shape);
              expect(g.db.shape).toEqual(b.shape);
              return [g.da, g.db];
            });
          });
        }
      }
    }
  }

  it('hand values: d(ab)/da = dy b^T, d(ab)/db = a^T dy', () => {
    const a = ref([2, 2], [1, 2, 3, 4]);
    const b = ref([2, 2], [5, 6, 7, 8]);
    const dy = ref([2, 2], [1, 0, 0, 1]);
    const g = matmulBackward(a, b, dy);
    expectClose(g.da.data, [5, 7, 6, 8]);
    expectClose(g.db.data, [1, 3, 2, 4]);
  });
});
