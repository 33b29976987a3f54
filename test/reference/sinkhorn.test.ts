// Sinkhorn-Knopp codes: marginals, hand cases, invariances, and stability at eps = 0.01.

import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/reference/random.js';
import { sinkhorn, sinkhornMarginals } from '../../src/reference/sinkhorn.js';
import { type RefTensor, ref, uniform } from '../../src/reference/tensor.js';
import { expectClose } from './helpers.js';

/** Largest |rowSum - 1| and largest relative |colSum - B/K| of codes q. */
function marginalErrors(q: RefTensor): { row: number; col: number } {
  const [B, K] = q.shape;
  const { rowSums, colSums } = sinkhornMarginals(q);
  return {
    row: Math.max(...rowSums.data.map((v) => Math.abs(v - 1))),
    col: Math.max(...colSums.data.map((v) => Math.abs(v - B / K) / (B / K))),
  };
}

/** The official loop written out literally, without the max shift; fine for mild eps. */
function naiveSinkhorn(scores: RefTensor, eps: number, iters: number): number[] {
  const [B, K] = scores.shape;
  // P[k][b]
  let P = Array.from({ length: K }, (_, k) =>
    Array.from({ length: B }, (_, b) => Math.exp(scores.data[b * K + k] / eps)));
  const total = P.flat().reduce((s, v) => s + v, 0);
  P = P.map((row) => row.map((v) => v / total));
  for (let it = 0; it < iters; it++) {
    P = P.map((row) => {
      const s = row.reduce((a, v) => a + v, 0);
      return row.map((v) => v / s / K);
    });
    for (let b = 0; b < B; b++) {
      const s = P.reduce((a, row) => a + row[b], 0);
      for (let k = 0; k < K; k++) P[k][b] = P[k][b] / s / B;
    }
  }
  const out: number[] = [];
  for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) out.push(P[k][b] * B);
  return out;
}

describe('sinkhorn', () => {
  it('matches the official loop written out literally (the max shift cancels)', () => {
    const s = uniform([6, 5], mulberry32(1), -1, 1);
    expectClose(sinkhorn(s, 0.5, 3).data, naiveSinkhorn(s, 0.5, 3), 1e-13);
  });

  it("takes the engine's options object, with its defaults (epsilon 0.05, 3 iterations)", () => {
    const s = uniform([6, 5], mulberry32(2), -1, 1);
    expect(sinkhorn(s, { epsilon: 0.5, iterations: 7 }).data)
      .toEqual(sinkhorn(s, 0.5, 7).data);
    expect(sinkhorn(s).data).toEqual(sinkhorn(s, 0.05, 3).data);
    expect(sinkhorn(s, { iterations: 1 }).data).toEqual(sinkhorn(s, 0.05, 1).data);
    expect(() => sinkhorn(s, { eps: 0.5 } as never)).toThrow(
      'sinkhorn: unknown option "eps"; it takes the engine\'s epsilon, iterations, schedule');
    expect(() => (sinkhorn as (...a: unknown[]) => unknown)(s, { epsilon: 0.5 }, 3))
      .toThrow('sinkhorn: give { epsilon, iterations } (as the engine\'s sinkhorn) or eps, ' +
        'iters, got {"epsilon":0.5}, 3');
  });

  it("takes the engine's whole options object, schedule included, and refuses non-numbers",
    () => {
      const s = uniform([6, 5], mulberry32(2), -1, 1);
      // One object for the engine and the reference: schedule changes only how the GPU runs.
      const o = { epsilon: 0.5, iterations: 7, schedule: 'small' } as const;
      expect(sinkhorn(s, o).data).toEqual(sinkhorn(s, 0.5, 7).data);
      expect(() => sinkhorn(s, { schedule: 'fast' as never })).toThrow(
        "sinkhorn: schedule must be 'auto', 'small' or 'passes', got \"fast\"");
      // A string epsilon was divided by as if a number.
      expect(() => sinkhorn(s, { epsilon: '0.5' as never })).toThrow(
        'sinkhorn: eps and iters must be numbers, got "0.5" and 3');
    });

  it('2x2 balanced by hand: scores I with eps 1 give e / (1 + e) on the diagonal', () => {
    const q = sinkhorn(ref([2, 2], [1, 0, 0, 1]), 1, 3);
    const d = Math.E / (1 + Math.E);
    expectClose(q.data, [d, 1 - d, 1 - d, d], 1e-14);
  });

  it('B = 1 gives uniform codes 1/K whatever the scores; K = 1 gives all ones', () => {
    expectClose(sinkhorn(ref([1, 4], [0.9, -0.3, 0.1, 0.5]), 0.05, 3).data,
      [0.25, 0.25, 0.25, 0.25], 1e-15);
    expectClose(sinkhorn(ref([3, 1], [0.9, -0.3, 0.1]), 0.05, 3).data, [1, 1, 1], 1e-15);
    expectClose(sinkhorn(ref([1, 1], [7]), 0.01, 3).data, [1], 0);
  });

  it('rows sum to 1 after every iteration count (the last step normalises them)', () => {
    const s = uniform([32, 10], mulberry32(2), -1, 1);
    for (const iters of [1, 2, 3, 10]) {
      expect(marginalErrors(sinkhorn(s, 0.05, iters)).row).toBeLessThan(1e-14);
    }
  });

  it('columns approach B/K as iterations grow; within 1e-9 after 1000', () => {
    // After 3 iterations the columns can still be far off for sharp scores (eps = 0.05): the
    // deviation measured here is ~0.24, so only convergence is a property, not closeness at 3.
    const s = uniform([32, 10], mulberry32(2), -1, 1);
    const errs = [1, 3, 10, 100, 1000].map((n) => marginalErrors(sinkhorn(s, 0.05, n)).col);
    for (let i = 1; i < errs.length; i++) expect(errs[i]).toBeLessThan(errs[i - 1]);
    expect(errs[1]).toBeGreaterThan(0.01);
    expect(errs[4]).toBeLessThan(1e-9);
    // The column sums always total B, since the rows each sum to 1.
    const { colSums } = sinkhornMarginals(sinkhorn(s, 0.05, 3));
    expect(Math.abs(colSums.data.reduce((a, v) => a + v, 0) - 32)).toBeLessThan(1e-12);
  });

  it('mild scores (eps large against their range) balance columns in 3 iterations', () => {
    const s = uniform([16, 8], mulberry32(3), -0.1, 0.1);
    expect(marginalErrors(sinkhorn(s, 1, 3)).col).toBeLessThan(1e-6);
  });

  it('eps = 0.01 with scores in [-1, 1] has no NaN or Infinity', () => {
    const s = uniform([64, 30], mulberry32(4), -1, 1);
    const q = sinkhorn(s, 0.01, 3);
    expect(q.data.every(Number.isFinite)).toBe(true);
    expect(q.data.every((v) => v >= 0)).toBe(true);
    expect(marginalErrors(q).row).toBeLessThan(1e-14);
    // Without the shift exp(1 / 0.01) = e^100 is finite in float64, but e^(10/0.01) is not.
    const big = uniform([8, 4], mulberry32(5), 9, 10);
    expect(sinkhorn(big, 0.01, 3).data.every(Number.isFinite)).toBe(true);
  });

  it('adding a constant to all scores or to one prototype changes nothing', () => {
    const s = uniform([9, 7], mulberry32(6), -1, 1);
    const q = sinkhorn(s, 0.05, 3);
    const shifted = ref(s.shape, (i) => s.data[i] + 3.5);
    expectClose(sinkhorn(shifted, 0.05, 3).data, q.data, 1e-12);
    // A per-prototype constant scales a row of P, which the first row normalisation removes.
    const perProto = ref(s.shape, (i, [, k]) => s.data[i] + 0.01 * k);
    expectClose(sinkhorn(perProto, 0.05, 3).data, q.data, 1e-12);
  });

  it('a prototype whose mass underflows is a loud error, not NaN', () => {
    // Prototype 1 sits 10 below the max; 10 / 0.001 = 10000 underflows exp in float64.
    expect(() => sinkhorn(ref([2, 2], [0, -10, 0, -10]), 0.001, 1)).toThrow(/prototype 1/);
  });

  it('rejects bad arguments', () => {
    expect(() => sinkhorn(ref([4], [1, 2, 3, 4]), 0.05, 3)).toThrow(/\[B, K\]/);
    expect(() => sinkhorn(ref([1, 1], [1]), 0, 3)).toThrow(/eps must be > 0/);
  });
});
