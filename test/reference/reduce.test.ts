// Reductions: hand values over chosen axes, argmax ties, and the backward rules.

import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/reference/random.js';
import {
  argmax, max, maxBackward, mean, meanBackward, sum, sumBackward,
} from '../../src/reference/reduce.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

// x[i, j, k] = 100 i + 10 j + k on [2, 3, 2]
const x = ref([2, 3, 2], (_f, [i, j, k]) => 100 * i + 10 * j + k);

describe('sum and mean', () => {
  it('hand values over one axis, two axes, all axes, negative axes', () => {
    const s1 = sum(x, [1]);
    expect(s1.shape).toEqual([2, 2]);
    expect(Array.from(s1.data)).toEqual([30, 33, 330, 333]);
    const s02 = sum(x, [0, 2], true);
    expect(s02.shape).toEqual([1, 3, 1]);
    expect(Array.from(s02.data)).toEqual([202, 242, 282]);
    const all = sum(x);
    expect(all.shape).toEqual([]);
    expect(Array.from(all.data)).toEqual([726]);
    expect(Array.from(sum(x, [-1]).data)).toEqual(Array.from(sum(x, [2]).data));
    expect(Array.from(mean(x, [1]).data)).toEqual([10, 11, 110, 111]);
    expect(Array.from(mean(x).data)).toEqual([60.5]);
  });

  it('rejects out-of-range and repeated axes', () => {
    expect(() => sum(x, [3])).toThrow(/axis 3 is out of range for shape \[2, 3, 2\]/);
    expect(() => sum(x, [1, -2])).toThrow(
      'sum: axes [1, -2] name axis 1 more than once (repeated axis) for shape [2, 3, 2]');
    expect(() => mean(x, [0, 0])).toThrow(
      'mean: axes [0, 0] name axis 0 more than once (repeated axis) for shape [2, 3, 2]');
    expect(() => max(x, [2, 0, -1])).toThrow(
      'max: axes [2, 0, -1] name axis 2 more than once (repeated axis) for shape [2, 3, 2]');
    expect(() => maxBackward(ref([3], [1, 1, 1]), x, [0, -3])).toThrow(
      'maxBackward: axes [0, -3] name axis 0 more than once (repeated axis)');
  });

  it('takes one axis as a number, as the engine does', () => {
    expect(Array.from(sum(x, 1).data)).toEqual(Array.from(sum(x, [1]).data));
    expect(Array.from(mean(x, -1, true).data)).toEqual(Array.from(mean(x, [2], true).data));
  });

  const cases: [number[], number[], boolean][] = [
    [[1], [0], false],
    [[2, 3, 5], [1], false],
    [[2, 3, 5], [0, 2], true],
    [[7, 1, 3], [-1], true],
    [[3, 4], [0, 1], false],
  ];
  for (const [shape, axes, keep] of cases) {
    it(`sum/mean backward [${shape}] axes [${axes}] keepDims=${keep}`, () => {
      const t = randn(shape, mulberry32(shape.length * 31 + axes.length));
      expectGrads('sum backward', ([v]) => sum(v, axes, keep), [t],
        (dy) => [sumBackward(dy, t.shape, axes, keep)]);
      expectGrads('mean backward', ([v]) => mean(v, axes, keep), [t],
        (dy) => [meanBackward(dy, t.shape, axes, keep)]);
    });
  }
});

describe('max and argmax', () => {
  it('hand values along each axis', () => {
    expect(Array.from(max(x, 1).data)).toEqual([20, 21, 120, 121]);
    expect(Array.from(argmax(x, 1).data)).toEqual([2, 2, 2, 2]);
    expect(Array.from(max(x, 0, true).data)).toEqual([100, 101, 110, 111, 120, 121]);
    expect(max(x, 0, true).shape).toEqual([1, 3, 2]);
  });

  it('ties pick the first index; maxBackward sends dy there only', () => {
    const t = ref([2, 4], [1, 3, 3, 0, -1, -1, -1, -1]);
    expect(Array.from(argmax(t, 1).data)).toEqual([1, 0]);
    const dx = maxBackward(ref([2], [5, 7]), t, 1);
    expect(Array.from(dx.data)).toEqual([0, 5, 0, 0, 7, 0, 0, 0]);
  });

  it('a NaN wins the max, as in PyTorch', () => {
    expect(Number.isNaN(max(ref([3], [1, NaN, 2]), 0).data[0])).toBe(true);
    expect(Array.from(argmax(ref([3], [1, NaN, 2]), 0).data)).toEqual([1]);
  });

  it('over several axes, and all when omitted, as the engine\'s max', () => {
    // Over axes 0 and 2 of x: max over i, k of 100 i + 10 j + k is 101 + 10 j.
    const m02 = max(x, [0, 2]);
    expect(m02.shape).toEqual([3]);
    expect(Array.from(m02.data)).toEqual([101, 111, 121]);
    expect(max(x, [2, 0], true).shape).toEqual([1, 3, 1]);
    expect(Array.from(max(x, [-1, -3], true).data)).toEqual([101, 111, 121]);
    const all = max(x);
    expect(all.shape).toEqual([]);
    expect(Array.from(all.data)).toEqual([121]);
    // Earlier a list was taken as its first axis (or failed): [0, 2] must not be max over 0.
    expect(Array.from(max(x, [0, 2]).data)).not.toEqual(Array.from(max(x, 0).data));
  });

  it('over several axes the gradient goes to the first maximum in row-major order', () => {
    // Each [i, :, k] set over axes (0, 2) of t ties at 3; row-major first is the lowest
    // flat index among the maxima.
    const t = ref([2, 2, 2], [1, 3, 3, 0, 3, 2, -1, 5]);
    // Sets (j = 0): flat 0, 1, 4, 5 -> [1, 3, 3, 2], first max at 1; (j = 1): 2, 3, 6, 7
    // -> [3, 0, -1, 5], max at 7.
    expect(Array.from(max(t, [0, 2]).data)).toEqual([3, 5]);
    const dx = maxBackward(ref([2], [10, 20]), t, [0, 2]);
    expect(Array.from(dx.data)).toEqual([0, 10, 0, 0, 0, 0, 0, 20]);
    // A NaN anywhere in a set wins it, and takes the gradient.
    const n = ref([2, 2], [1, NaN, NaN, 4]);
    expect(Array.from(max(n, [0, 1]).data)).toEqual([NaN]);
    expect(Array.from(maxBackward(ref([], [7]), n, [1, 0]).data)).toEqual([0, 7, 0, 0]);
  });

  it('argmax takes one axis only and says so', () => {
    expect(() => argmax(x, [0, 1] as unknown as number)).toThrow(
      'argmax: takes one axis (a number), got [0,1]');
  });

  it('maxBackward against finite differences (distinct values, so no ties)', () => {
    const t = randn([3, 5, 2], mulberry32(4));
    for (const axis of [0, 1, -1]) {
      expectGrads('max backward', ([v]) => max(v, axis), [t], (dy) => [maxBackward(dy, t, axis)]);
    }
    for (const axes of [[0, 2], [1, -1], undefined]) {
      expectGrads('max backward', ([v]) => max(v, axes), [t], (dy) => [maxBackward(dy, t, axes)]);
    }
    expectClose(maxBackward(ref([], [2]), ref([1], [4]), 0).data, [2]);
  });
});
