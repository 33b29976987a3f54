// concatRows and sliceRows: hand values, gradients that route rows back, and range checks.

import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/reference/random.js';
import {
  concatRows, concatRowsBackward, sliceRows, sliceRowsBackward,
} from '../../src/reference/shape.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { expectGrads } from './helpers.js';

describe('concatRows', () => {
  it('stacks rows of [2, 2] and [1, 2], and of 1-D tensors', () => {
    const c = concatRows([ref([2, 2], [1, 2, 3, 4]), ref([1, 2], [5, 6])]);
    expect(c.shape).toEqual([3, 2]);
    expect(Array.from(c.data)).toEqual([1, 2, 3, 4, 5, 6]);
    const v = concatRows([ref([2], [1, 2]), ref([3], [3, 4, 5]), ref([1], [NaN])]);
    expect(v.shape).toEqual([6]);
    expect(Array.from(v.data)).toEqual([1, 2, 3, 4, 5, NaN]);
  });

  it('one tensor gives a copy, not the tensor itself', () => {
    const a = ref([1, 2], [1, 2]);
    const c = concatRows([a]);
    expect(Array.from(c.data)).toEqual([1, 2]);
    expect(c.data).not.toBe(a.data);
  });

  it('backward hands each input its rows of dy', () => {
    const [ga, gb] = concatRowsBackward(ref([3, 2], [1, 1, 2, 2, 3, 3]), [[2, 2], [1, 2]]);
    expect(ga.shape).toEqual([2, 2]);
    expect(Array.from(ga.data)).toEqual([1, 1, 2, 2]);
    expect(gb.shape).toEqual([1, 2]);
    expect(Array.from(gb.data)).toEqual([3, 3]);
    const rng = mulberry32(4);
    const xs = [randn([2, 3, 2], rng), randn([1, 3, 2], rng), randn([4, 3, 2], rng)];
    expectGrads('concatRows backward', (v) => concatRows(v), xs,
      (dy) => concatRowsBackward(dy, xs.map((t) => t.shape)));
  });

  it('names an empty list, a scalar and a mismatch past axis 0, as the engine', () => {
    expect(() => concatRows([])).toThrow('concatRows: needs at least one tensor');
    expect(() => concatRows([ref([], [1])]))
      .toThrow('concatRows: tensor 0 is a scalar []; rows need at least one axis');
    expect(() => concatRows([ref([2, 2], [1, 2, 3, 4]), ref([1, 3], [1, 2, 3])]))
      .toThrow('concatRows: tensor 1 [1, 3] does not match tensor 0 [2, 2] past axis 0');
    expect(() => concatRowsBackward(ref([3, 2], [1, 2, 3, 4, 5, 6]), [[2, 2], [2, 2]]))
      .toThrow('concatRowsBackward: dy [3, 2] is not the concatenation of [2, 2], [2, 2]');
  });
});

describe('sliceRows', () => {
  it('rows [1, 3) of [3, 2, 2]', () => {
    const x = ref([3, 2, 2], (i) => i + 1);
    const s = sliceRows(x, 1, 3);
    expect(s.shape).toEqual([2, 2, 2]);
    expect(Array.from(s.data)).toEqual([5, 6, 7, 8, 9, 10, 11, 12]);
    expect(Array.from(sliceRows(ref([3], [1, 2, 3]), 2, 3).data)).toEqual([3]);
  });

  it('backward places dy at the slice\'s rows of zeros', () => {
    const dx = sliceRowsBackward(ref([1, 2], [7, 8]), [3, 2], 1, 2);
    expect(dx.shape).toEqual([3, 2]);
    expect(Array.from(dx.data)).toEqual([0, 0, 7, 8, 0, 0]);
    const x = randn([5, 3], mulberry32(5));
    expectGrads('sliceRows backward', ([v]) => sliceRows(v, 1, 4), [x],
      (dy) => [sliceRowsBackward(dy, x.shape, 1, 4)]);
    expect(() => sliceRowsBackward(ref([2, 2], [1, 2, 3, 4]), [3, 2], 1, 2))
      .toThrow('sliceRowsBackward: dy must be [1, 2] (rows [1, 2) of [3, 2]), got [2, 2]');
  });

  it('refuses empty, reversed, fractional and out-of-range row ranges, as the engine', () => {
    const x = ref([2, 2], [1, 2, 3, 4]);
    expect(() => sliceRows(x, 1, 1))
      .toThrow('sliceRows: rows [1, 1) are not a non-empty range of [2, 2]');
    for (const [s, e] of [[0, 3], [-1, 1], [2, 1], [0.5, 1]]) {
      expect(() => sliceRows(x, s, e)).toThrow(`sliceRows: rows [${s}, ${e}) are not`);
    }
    expect(() => sliceRows(ref([], [1]), 0, 1)).toThrow(/not a non-empty range of \[\]/);
  });
});
