// Row-wise L2 normalisation: values, the eps floor for zero rows, and the backward.

import { describe, expect, it } from 'vitest';
import { l2Normalize, l2NormalizeBackward } from '../../src/reference/l2norm.js';
import { mulberry32 } from '../../src/reference/random.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

describe('l2Normalize', () => {
  it('divides each row by its norm: [3, 4] -> [0.6, 0.8]', () => {
    expectClose(l2Normalize(ref([2, 2], [3, 4, 0, -2])).data, [0.6, 0.8, 0, -1]);
  });

  it('a zero row stays zero (no 0/0) and a tiny row is divided by eps', () => {
    const y = l2Normalize(ref([2, 2], [0, 0, 1e-13, 0]));
    expect(Array.from(y.data)).toEqual([0, 0, 0.1, 0]);
    const dx = l2NormalizeBackward(ref([2, 2], [1, 2, 3, 4]), ref([2, 2], [0, 0, 1e-13, 0]));
    expectClose(dx.data, [1e12, 2e12, 3e12, 4e12]);
  });

  for (const shape of [[1, 1], [3, 7], [5, 2], [1, 128]]) {
    it(`backward [${shape}]`, () => {
      const x = randn(shape, mulberry32(shape[1]));
      expectGrads('l2Normalize backward', ([v]) => l2Normalize(v), [x],
        (dy) => [l2NormalizeBackward(dy, x)]);
    });
  }

  it('the gradient is orthogonal to y (normalisation removes the radial part)', () => {
    const rng = mulberry32(3);
    const x = randn([1, 9], rng);
    const y = l2Normalize(x);
    const dx = l2NormalizeBackward(randn([1, 9], rng), x);
    const dot = y.data.reduce((s, v, i) => s + v * dx.data[i], 0);
    expect(Math.abs(dot)).toBeLessThan(1e-14);
  });
});
