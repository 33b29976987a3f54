// Pooling: global average and max pooling, hand values, tie policy, and backward rules.

import { describe, expect, it } from 'vitest';
import {
  type MaxPool2dOptions, globalAvgPool, globalAvgPoolBackward, maxPool2d, maxPool2dBackward,
} from '../../src/reference/pool.js';
import { mulberry32 } from '../../src/reference/random.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

describe('globalAvgPool', () => {
  it('averages each plane by hand', () => {
    const x = ref([1, 2, 2, 2], [1, 2, 3, 4, 10, 20, 30, 41]);
    const y = globalAvgPool(x);
    expect(y.shape).toEqual([1, 2]);
    expectClose(y.data, [2.5, 25.25]);
  });

  for (const shape of [[1, 1, 1, 1], [2, 3, 5, 7], [3, 1, 2, 1]]) {
    it(`backward [${shape}]`, () => {
      const x = randn(shape, mulberry32(shape[3]));
      expectGrads('globalAvgPool backward', ([v]) => globalAvgPool(v), [x],
        (dy) => [globalAvgPoolBackward(dy, x.shape)]);
    });
  }
});

describe('maxPool2d', () => {
  it('2x2 stride 2 by hand', () => {
    const x = ref([1, 1, 4, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    const y = maxPool2d(x, { kernel: [2, 2] });
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect(Array.from(y.data)).toEqual([6, 8, 14, 16]);
  });

  it('ResNet stem 3x3 stride 2 padding 1: padding is -Infinity, so negatives survive', () => {
    const x = ref([1, 1, 3, 3], [-9, -8, -7, -6, -5, -4, -3, -2, -1]);
    const y = maxPool2d(x, { kernel: [3, 3], stride: [2, 2], padding: [1, 1] });
    // H' = floor((3 + 2 - 3) / 2) + 1 = 2; windows centred on (0,0), (0,2), (2,0), (2,2)
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect(Array.from(y.data)).toEqual([-5, -4, -2, -1]);
  });

  it('the gradient goes to the first maximal element of the window (row-major)', () => {
    // One window holds four equal maxima: only the first (top-left) receives dy.
    const x = ref([1, 1, 2, 2], [3, 3, 3, 3]);
    const dx = maxPool2dBackward(ref([1, 1, 1, 1], [1]), x, { kernel: [2, 2] });
    expect(Array.from(dx.data)).toEqual([1, 0, 0, 0]);
    // Overlapping windows (stride 1) that pick the same element add their gradients.
    const x2 = ref([1, 1, 1, 3], [0, 5, 0]);
    const dx2 = maxPool2dBackward(ref([1, 1, 1, 2], [2, 3]), x2,
      { kernel: [1, 2], stride: [1, 1] });
    expect(Array.from(dx2.data)).toEqual([0, 5, 0]);
  });

  it('takes kernel, stride and padding as a number or a pair, as the engine does', () => {
    const x = randn([2, 3, 7, 6], mulberry32(8));
    const num = maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
    const pair = maxPool2d(x, { kernel: [3, 3], stride: [2, 2], padding: [1, 1] });
    expect(num.shape).toEqual([2, 3, 4, 3]);
    expect(Array.from(num.data)).toEqual(Array.from(pair.data));
    // kernel 2 alone: stride defaults to the kernel.
    expect(maxPool2d(x, { kernel: 2 }).shape).toEqual([2, 3, 3, 3]);
    expect(maxPool2d(x, { kernel: [3, 2], stride: 1 }).shape).toEqual([2, 3, 5, 5]);
    const dy = randn([2, 3, 4, 3], mulberry32(9));
    expect(Array.from(maxPool2dBackward(dy, x, { kernel: 3, stride: 2, padding: 1 }).data))
      .toEqual(Array.from(maxPool2dBackward(dy, x,
        { kernel: [3, 3], stride: [2, 2], padding: [1, 1] }).data));
  });

  it('names the op, the option and the value of a bad option', () => {
    const x = ref([1, 1, 4, 4], (i) => i);
    expect(() => maxPool2d(x, { kernel: 0 })).toThrow(
      'maxPool2d: kernel must be an integer >= 1 or a pair [h, w] of them, got 0 ' +
      '(x [1, 1, 4, 4])');
    expect(() => maxPool2d(x, { kernel: 2, stride: 1.5 })).toThrow(
      'maxPool2d: stride must be an integer >= 1 or a pair [h, w] of them, got 1.5');
    expect(() => maxPool2d(x, { kernel: 2, padding: -1 })).toThrow(
      'maxPool2d: padding must be an integer >= 0 or a pair [h, w] of them, got -1');
    expect(() => maxPool2d(x, { kernel: [2, 2, 2] as never })).toThrow(
      'maxPool2d: kernel must be an integer >= 1 or a pair [h, w] of them, got [2,2,2]');
    expect(() => maxPool2d(x, {} as never)).toThrow('maxPool2d: options { kernel } are required');
    expect(() => maxPool2dBackward(x, x, undefined as never)).toThrow(
      'maxPool2dBackward: options { kernel } are required, got undefined');
  });

  it('rejects padding over half the kernel', () => {
    expect(() => maxPool2d(ref([1, 1, 4, 4], (i) => i), { kernel: [2, 2], padding: [2, 0] }))
      .toThrow(/padding \[2, 0\] must be between 0 and half the kernel \[2, 2\]/);
  });

  const cases: { name: string; x: number[]; opts: MaxPool2dOptions }[] = [
    { name: '1x1 kernel', x: [1, 1, 1, 1], opts: { kernel: [1, 1] } },
    { name: '3x3 s2 p1 (ResNet stem)', x: [2, 3, 7, 6], opts: { kernel: [3, 3], stride: [2, 2],
      padding: [1, 1] } },
    { name: 'non-square 3x2, stride [1,2], padding [1,0]', x: [1, 2, 5, 7],
      opts: { kernel: [3, 2], stride: [1, 2], padding: [1, 0] } },
    { name: 'stride 3 > kernel 2 skips inputs', x: [1, 1, 7, 5], opts: { kernel: [2, 2],
      stride: [3, 3] } },
  ];
  for (const c of cases) {
    it(`backward against finite differences: ${c.name}`, () => {
      // Random normals are distinct almost surely, so no window has a tie within +-h.
      const x = randn(c.x, mulberry32(c.x[2] * 13 + c.x[3]));
      expectGrads('maxPool2d backward', ([v]) => maxPool2d(v, c.opts), [x],
        (dy) => [maxPool2dBackward(dy, x, c.opts)]);
    });
  }
});
