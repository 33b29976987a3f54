// compare() and assertClose(): the verdict, the worst and first indices, and the message.

import { describe, expect, it } from 'vitest';
import { TOL, assertClose, compare } from '../../src/reference/compare.js';

describe('compare', () => {
  it('passes values within atol + rtol |e| and reports the largest errors', () => {
    const r = compare([1.0005, 2, -3], [1, 2, -3.001], { atol: 0, rtol: 1e-3 });
    expect(r.ok).toBe(true);
    expect(r.count).toBe(3);
    expect(r.badCount).toBe(0);
    expect(r.firstBadIndex).toBe(-1);
    expect(r.maxAbsErr).toBeCloseTo(0.001, 12);
    expect(r.maxRelErr).toBeCloseTo(0.0005, 12);
    expect(r.message).toMatch(/^output: all 3 elements within/);
  });

  it('names the first and the worst failing element as n-d indices, with both values', () => {
    const expected = [0, 0, 0, 0, 0, 0];
    const actual = [0, 0.2, 0, 0, 0, 0.5];
    const r = compare(actual, expected, { atol: 0.1, rtol: 0, shape: [2, 3], name: 'conv dx' });
    expect(r.ok).toBe(false);
    expect(r.badCount).toBe(2);
    expect(r.firstBadIndex).toBe(1);
    expect(r.worstIndex).toBe(5);
    expect(r.worstIndexNd).toEqual([1, 2]);
    expect(r.actualAtWorst).toBe(0.5);
    expect(r.expectedAtWorst).toBe(0);
    expect(r.maxAbsErr).toBe(0.5);
    expect(r.maxRelErr).toBe(Infinity);
    expect(r.message).toContain('conv dx: 2 of 6 elements outside');
    expect(r.message).toContain('first at [0, 1] (flat 1): actual 0.2, expected 0');
    expect(r.message).toContain('worst at [1, 2] (flat 5): actual 0.5, expected 0');
  });

  it('ranks the worst by excess over tolerance, not by raw error', () => {
    // Index 0 errs by 1 against a tolerance of 1 + 0.01*1000 = 11: fine.
    // Index 1 errs by 0.5 against a tolerance of 0.1: the worst.
    const r = compare([1001, 0.5], [1000, 0], { atol: 1, rtol: 0.01 });
    expect(r.worstIndex).toBe(1);
    expect(r.badCount).toBe(0);
    const r2 = compare([1001, 1.5], [1000, 0], { atol: 1, rtol: 0.01 });
    expect(r2.worstIndex).toBe(1);
    expect(r2.ok).toBe(false);
  });

  it('treats NaN as equal to nothing and infinities as equal only to themselves', () => {
    expect(compare([NaN], [NaN], TOL.gradient).ok).toBe(false);
    expect(compare([Infinity, -Infinity], [Infinity, -Infinity], TOL.exact).ok).toBe(true);
    const r = compare([1, Infinity, NaN], [1, -Infinity, 2], TOL.f32Elementwise);
    expect(r.ok).toBe(false);
    expect(r.badCount).toBe(2);
    expect(r.firstBadIndex).toBe(1);
    expect(r.worstIndex).toBe(1);
    expect(r.maxAbsErr).toBe(Infinity);
    expect(r.message).toContain('actual Infinity, expected -Infinity');
    expect(compare([5], [Infinity], { atol: 1e9, rtol: 1 }).ok).toBe(false);
  });

  it('equalNan matches NaN with NaN only, and is off by default', () => {
    // relu(NaN) is NaN on the GPU and in the reference: a match when the test means it.
    const got = [NaN, 0, 2, Infinity, -Infinity];
    const want = [NaN, 0, 2, Infinity, -Infinity];
    const r = compare(got, want, { ...TOL.exact, equalNan: true, name: 'relu with NaN' });
    expect(r.ok, r.message).toBe(true);
    expect(r.badCount).toBe(0);
    expect(r.maxAbsErr).toBe(0);
    expect(r.maxRelErr).toBe(0);
    expect(r.message).toBe('relu with NaN: all 5 elements within |a - e| <= 0 + 0 |e| ' +
      '(NaN matching NaN); max abs err 0, max rel err 0');
    const off = compare(got, want, TOL.exact);
    expect(off.ok).toBe(false);
    expect(off.badCount).toBe(1);
    expect(off.firstBadIndex).toBe(0);
    // NaN still matches no number, in either direction.
    const mixed = compare([NaN, 1], [1, NaN], { ...TOL.gradient, equalNan: true });
    expect(mixed.badCount).toBe(2);
    expect(() => compare([1], [1], { ...TOL.exact, equalNan: 'yes' as never }))
      .toThrow('compare(output): equalNan must be true or false, got "yes"');
  });

  it('a NaN or infinity that fails to match gives maxRelErr Infinity, as documented', () => {
    // Infinity / Infinity and Infinity / NaN are NaN, which used to leave maxRelErr at 0.
    const inf = compare([Infinity], [-Infinity], TOL.f32Elementwise);
    expect(inf.maxAbsErr).toBe(Infinity);
    expect(inf.maxRelErr).toBe(Infinity);
    const nan = compare([0, 1], [NaN, 1], TOL.f32Elementwise);
    expect(nan.maxRelErr).toBe(Infinity);
    expect(nan.message).toContain('max abs err Infinity, max rel err Infinity');
    expect(compare([NaN], [NaN], TOL.exact).maxRelErr).toBe(Infinity);
  });

  it('fails on a length mismatch and rejects a shape of the wrong size', () => {
    const r = compare([1, 2], [1, 2, 3], TOL.exact);
    expect(r.ok).toBe(false);
    expect(r.message).toMatch(/length mismatch, actual has 2 elements, expected 3/);
    expect(() => compare([1], [1], { ...TOL.exact, shape: [2] })).toThrow(/holds 2 elements/);
  });

  it('exact means bit-for-bit, so one ulp fails', () => {
    const x = 1 + 2 ** -52;
    expect(compare([x], [1], TOL.exact).ok).toBe(false);
    expect(compare([1], [1], TOL.exact).ok).toBe(true);
  });

  it('assertClose throws the message and returns the result when fine', () => {
    expect(() => assertClose([1, 3], [1, 2], { atol: 0.5, rtol: 0, name: 'softmax y' }))
      .toThrow(/softmax y: 1 of 2 elements outside.*\[1\]: actual 3, expected 2/);
    expect(assertClose([1, 2], [1, 2], TOL.exact).ok).toBe(true);
  });
});

describe('compare refuses a tolerance that would pass everything', () => {
  // With a NaN bound, "error > bound" is false for every element: a wildly wrong output passed.
  it('refuses NaN, missing, infinite and negative atol or rtol, naming the one at fault', () => {
    const wrong = [1, 2, 3];
    const want = [100, -5, 7];
    expect(() => compare(wrong, want, { atol: NaN, rtol: 0 }))
      .toThrow('compare(output): atol must be a finite number >= 0, got NaN');
    expect(() => compare(wrong, want, { rtol: 0.1 } as never))
      .toThrow(/compare\(output\): atol must be a finite number >= 0, got undefined \(give both/);
    expect(() => compare(wrong, want, { atol: 1e-6, rtol: undefined as never, name: 'sum' }))
      .toThrow(/compare\(sum\): rtol must be a finite number >= 0, got undefined/);
    expect(() => compare(wrong, want, { atol: 0, rtol: Infinity }))
      .toThrow(/rtol must be a finite number >= 0, got Infinity/);
    expect(() => compare(wrong, want, { atol: 0, rtol: '0.1' as never }))
      .toThrow(/rtol must be a finite number >= 0, got "0.1"/);
  });
});

describe('compare input checks', () => {
  const tol = TOL.f32Elementwise;

  it('refuses a shape with negative or fractional sizes, even when the product matches', () => {
    expect(() => compare([1, 2], [1, 2], { ...tol, shape: [-1, -2] }))
      .toThrow('compare(output): shape [-1, -2] must hold non-negative integers');
    expect(() => compare([1, 2], [1, 2], { ...tol, shape: [0.5, 4], name: 'y' }))
      .toThrow('compare(y): shape [0.5, 4] must hold non-negative integers');
    expect(() => compare([1, 2], [1, 2], { ...tol, shape: 2 as never }))
      .toThrow('compare(output): shape must be an array of non-negative integers, got 2');
  });

  it('refuses a negative atol, which failed identical values', () => {
    expect(() => compare([1], [1], { atol: -1, rtol: 0 }))
      .toThrow('compare(output): atol must be a finite number >= 0, got -1');
  });

  it('refuses inputs that are not numbers instead of reporting "actual 1, expected 1"', () => {
    expect(() => compare(new BigInt64Array([1n]) as never, [1], TOL.exact))
      .toThrow('compare(output): actual is a BigInt64Array; the reference takes numbers');
    expect(() => compare([1, 2], new BigUint64Array([1n, 2n]) as never, TOL.exact))
      .toThrow(/expected is a BigUint64Array/);
    expect(() => compare(['1', 'x'] as never, [1, 2], tol))
      .toThrow('compare(output): actual[0] is string "1", not a number');
    expect(() => compare([1, 2], [1, 2n] as never, tol))
      .toThrow('compare(output): expected[1] is bigint 2n, not a number');
    expect(() => compare('12' as never, [1, 2], tol))
      .toThrow('compare(output): actual must be an array or typed array of numbers, got "12"');
    // Typed arrays of any number type are fine.
    expect(compare(new Int32Array([1, 2]), new Float32Array([1, 2]), TOL.exact).ok).toBe(true);
  });

  it('names null inputs and missing options instead of raw TypeErrors', () => {
    expect(() => compare([1], null as never, tol))
      .toThrow('compare(output): expected must be an array or typed array of numbers, got null');
    expect(() => compare(undefined as never, [1], { ...tol, name: 'dx' }))
      .toThrow(/compare\(dx\): actual must be .* got undefined/);
    expect(() => compare([1], [1], undefined as never))
      .toThrow('compare(output): options must be an object holding atol and rtol, got undefined');
  });

  it('TOL and its tiers are frozen, so no test can loosen them for the next', () => {
    expect(Object.isFrozen(TOL)).toBe(true);
    expect(() => {
      (TOL.exact as { atol: number }).atol = 5;
    }).toThrow(TypeError);
    expect(() => {
      (TOL as { f32Reduction: unknown }).f32Reduction = () => TOL.gradient;
    }).toThrow(TypeError);
    expect(TOL.exact).toEqual({ atol: 0, rtol: 0 });
    expect(TOL.f32Elementwise).toEqual({ atol: 1e-6, rtol: 1e-5 });
    expect(TOL.gradient).toEqual({ atol: 1e-4, rtol: 1e-3 });
    expect(compare([1 + 2 ** -52], [1], TOL.exact).ok).toBe(false);
  });
});

describe('TOL tiers', () => {
  it('refuse a term count that is not a positive integer, which made NaN bounds', () => {
    // shape[3] of a 2-D shape: the mistake that passed every comparison.
    const shape = [4, 8];
    expect(() => TOL.f32Reduction(shape[3]))
      .toThrow('TOL.f32Reduction: n must be a positive integer (the number of terms summed), ' +
        'got undefined');
    for (const n of [0, -5, 2.5, NaN]) {
      expect(() => TOL.f32Reduction(n)).toThrow(`n must be a positive integer`);
    }
    expect(() => TOL.f32Matmul('27' as never)).toThrow(/TOL.f32Matmul: k must be .*got "27"/);
    expect(() => TOL.f32Matmul(0)).toThrow(/TOL.f32Matmul: k must be a positive integer/);
    expect(() => TOL.f32Reduction(4, NaN))
      .toThrow('TOL.f32Reduction: magnitude must be a finite number >= 0, got NaN');
    expect(() => TOL.f32Matmul(4, -1)).toThrow(/TOL.f32Matmul: magnitude must be/);
  });

  it('grow with the reduction length and stay ordered', () => {
    const u = 2 ** -24;
    expect(TOL.f32Reduction(1).rtol).toBeCloseTo(6 * u, 20);
    expect(TOL.f32Reduction(10000).rtol).toBeGreaterThan(TOL.f32Reduction(100).rtol);
    expect(TOL.f32Reduction(100, 10).atol).toBeGreaterThan(TOL.f32Reduction(100, 1).atol);
    expect(TOL.f32Matmul(64).rtol).toBeGreaterThan(TOL.f32Reduction(64).rtol);
    expect(TOL.gradient.rtol).toBeGreaterThan(TOL.f32Elementwise.rtol);
  });

  it('accept a float32 sum of 4096 terms and reject an off-by-one-term sum', () => {
    // Sequential float32 accumulation of values in [0, 1): the error is what the tier bounds.
    const n = 4096;
    const xs = Array.from({ length: n }, (_, i) => ((i * 2654435761) % 1000) / 1000);
    let f32 = 0;
    let f64 = 0;
    for (const x of xs) {
      f32 = Math.fround(f32 + Math.fround(x));
      f64 += Math.fround(x);
    }
    expect(compare([f32], [f64], TOL.f32Reduction(n)).ok).toBe(true);
    expect(compare([f32 + 0.5], [f64], TOL.f32Reduction(n)).ok).toBe(false);
  });
});
