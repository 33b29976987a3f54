// Shared pieces of the reference tests: the finite-difference tolerance and the loss wrapper.

import { expect } from 'vitest';
import { type GradCheckOptions, checkGrad } from '../../src/reference/finite-diff.js';
import { mulberry32 } from '../../src/reference/random.js';
import { type RefTensor, randn } from '../../src/reference/tensor.js';

/**
 * Finite differences against float64 analytic gradients. With h = 1e-6 the truncation error is
 * ~h^2 = 1e-12 and the rounding error ~1e-16 |f| / h = 1e-10 |f|; our test losses have |f| of
 * at most ~100, so 1e-7 absolute plus 1e-6 relative leaves tenfold headroom and still catches
 * any wrong rule (those are off by O(1)).
 */
export const FD = { rtol: 1e-6, atol: 1e-7 };

export function dot(a: RefTensor, b: RefTensor): number {
  expect(a.shape).toEqual(b.shape);
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += a.data[i] * b.data[i];
  return s;
}

/**
 * Checks a backward rule: the loss is <r, op(xs)> for a fixed random r, so the analytic
 * gradients are the backward fed dy = r.
 */
export function expectGrads(name: string, op: (xs: RefTensor[]) => RefTensor, xs: RefTensor[],
  backward: (dy: RefTensor) => (RefTensor | null)[], seed = 7,
  opts: Partial<GradCheckOptions> = {}): void {
  const r = randn(op(xs).shape, mulberry32(seed));
  const result = checkGrad((v) => dot(r, op(v)), xs, backward(r), { ...FD, name, ...opts });
  expect(result.ok, result.message).toBe(true);
  // A check that compared nothing would pass vacuously.
  expect(result.results.length).toBeGreaterThan(0);
}

/** Elementwise closeness in float64, with the message of compare() on failure. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>,
  tol = 1e-12): void {
  const a = Array.from(actual);
  const e = Array.from(expected);
  expect(a.length).toBe(e.length);
  for (let i = 0; i < a.length; i++) {
    if (Math.abs(a[i] - e[i]) > tol * (1 + Math.abs(e[i]))) {
      expect.fail(`index ${i}: actual ${a[i]}, expected ${e[i]} (tol ${tol})`);
    }
  }
}
