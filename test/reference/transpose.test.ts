// transpose2d: hand values for a matrix and a batch, its backward, and the rank check.

import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/reference/random.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { transpose2d, transpose2dBackward } from '../../src/reference/transpose.js';
import { expectGrads } from './helpers.js';

describe('transpose2d', () => {
  it('[2, 3] -> [3, 2]: out[c, r] = x[r, c]', () => {
    const y = transpose2d(ref([2, 3], [1, 2, 3, 4, 5, 6]));
    expect(y.shape).toEqual([3, 2]);
    expect(Array.from(y.data)).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it('[2, 2, 3] -> [2, 3, 2]: each batch on its own; NaN and -0 are moved as they are', () => {
    const y = transpose2d(ref([2, 2, 3], [1, 2, 3, 4, 5, 6, 7, NaN, 9, 10, -0, 12]));
    expect(y.shape).toEqual([2, 3, 2]);
    expect(Array.from(y.data)).toEqual([1, 4, 2, 5, 3, 6, 7, 10, NaN, -0, 9, 12]);
    expect(Object.is(y.data[9], -0)).toBe(true);
    // [1, 1] and a single row are their own transposes' data.
    expect(Array.from(transpose2d(ref([1, 4], [1, 2, 3, 4])).data)).toEqual([1, 2, 3, 4]);
  });

  it('backward is the transpose of dy, checked against x\'s shape', () => {
    const dx = transpose2dBackward(ref([3, 2], [1, 4, 2, 5, 3, 6]), [2, 3]);
    expect(dx.shape).toEqual([2, 3]);
    expect(Array.from(dx.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => transpose2dBackward(ref([2, 3], [1, 2, 3, 4, 5, 6]), [2, 3]))
      .toThrow('transpose2dBackward: dy must be [3, 2] (x [2, 3] with its last two axes ' +
        'swapped), got [2, 3]');
    for (const shape of [[7, 13], [3, 5, 4]]) {
      const x = randn(shape, mulberry32(3));
      expectGrads('transpose2d backward', ([v]) => transpose2d(v), [x],
        (dy) => [transpose2dBackward(dy, x.shape)]);
    }
  });

  it('refuses ranks other than 2 and 3, as the engine', () => {
    expect(() => transpose2d(ref([4], [1, 2, 3, 4])))
      .toThrow('transpose2d: x must have rank 2 or 3, got [4]');
    expect(() => transpose2d(ref([1, 1, 1, 1], [1]))).toThrow(/rank 2 or 3, got \[1, 1, 1, 1\]/);
  });
});
