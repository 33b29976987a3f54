// Conv2d: hand-computed outputs, the output-size rule, and all three backward products against
// finite differences over awkward strides, paddings and dilations.

import { describe, expect, it } from 'vitest';
import {
  type Conv2dOptions, conv2d, conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight,
  conv2dOutputShape,
} from '../../src/reference/conv.js';
import { mulberry32 } from '../../src/reference/random.js';
import { randn, ref } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

describe('conv2d forward', () => {
  it('3x3 input, 2x2 ones kernel: sums of each 2x2 window, plus bias', () => {
    const x = ref([1, 1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const w = ref([1, 1, 2, 2], [1, 1, 1, 1]);
    const y = conv2d(x, w, ref([1], [0.5]));
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect(Array.from(y.data)).toEqual([12.5, 16.5, 24.5, 28.5]);
  });

  it('padding 1 with a 3x3 kernel keeps the size; zeros are read outside', () => {
    const x = ref([1, 1, 2, 2], [1, 2, 3, 4]);
    const w = ref([1, 1, 3, 3], [0, 0, 0, 0, 1, 0, 0, 0, 0]);
    // The centre tap is an identity.
    expect(Array.from(conv2d(x, w, null, { padding: [1, 1] }).data)).toEqual([1, 2, 3, 4]);
    const corner = ref([1, 1, 3, 3], [1, 0, 0, 0, 0, 0, 0, 0, 0]);
    // The top-left tap reads one up and one left: zero outside, so only y[1,1] sees x[0,0].
    expect(Array.from(conv2d(x, corner, null, { padding: [1, 1] }).data)).toEqual([0, 0, 0, 1]);
  });

  it('two channels, two filters, stride 2 and dilation 2 by hand', () => {
    // x[c, h, w] = 100 c + 10 h + w on a 5x5 grid.
    const x = ref([1, 2, 5, 5], (_i, [, c, h, w]) => 100 * c + 10 * h + w);
    // Filter 0 sums the two channels' top-left taps; filter 1 takes channel 1's bottom-right.
    const w = ref([2, 2, 2, 2], [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    const y = conv2d(x, w, null, { stride: [2, 2], dilation: [2, 2] });
    // H' = floor((5 - 2*1 - 1)/2) + 1 = 2
    expect(y.shape).toEqual([1, 2, 2, 2]);
    // Filter 0 at (oh, ow): x[0, 2oh, 2ow] + x[1, 2oh, 2ow]
    // Filter 1 at (oh, ow): x[1, 2oh + 2, 2ow + 2]
    expect(Array.from(y.data)).toEqual([100, 104, 140, 144, 122, 124, 142, 144]);
  });

  it('output size follows floor((H + 2p - d (k - 1) - 1) / s) + 1', () => {
    expect(conv2dOutputShape([2, 3, 7, 6], [4, 3, 3, 2],
      { stride: [2, 1], padding: [1, 0], dilation: [1, 2] })).toEqual([2, 4, 4, 4]);
    expect(conv2dOutputShape([1, 1, 224, 224], [64, 1, 7, 7],
      { stride: [2, 2], padding: [3, 3] })).toEqual([1, 64, 112, 112]);
    expect(() => conv2dOutputShape([1, 1, 2, 2], [1, 1, 3, 3])).toThrow(/does not fit/);
    expect(() => conv2dOutputShape([1, 2, 4, 4], [1, 3, 3, 3])).toThrow(/C=2.*expects 3/);
  });

  it('takes stride, padding and dilation as a number or a pair, as the engine does', () => {
    // Both forms from the same options object the README hands the engine and the reference.
    const rng = mulberry32(12);
    const x = randn([1, 2, 7, 6], rng);
    const w = randn([3, 2, 3, 2], rng);
    const num = conv2d(x, w, null, { stride: 2, padding: 1, dilation: 2 });
    const pair = conv2d(x, w, null, { stride: [2, 2], padding: [1, 1], dilation: [2, 2] });
    expect(num.shape).toEqual([1, 3, 3, 3]);
    expect(Array.from(num.data)).toEqual(Array.from(pair.data));
    expect(conv2dOutputShape([2, 3, 7, 6], [4, 3, 3, 2], { stride: [2, 1], padding: 1 }))
      .toEqual([2, 4, 4, 7]);
    const dy = randn([1, 3, 3, 3], rng);
    expect(Array.from(conv2dBackwardInput(dy, w, x.shape, { stride: 2, padding: 1,
      dilation: 2 }).data)).toEqual(Array.from(conv2dBackwardInput(dy, w, x.shape,
      { stride: [2, 2], padding: [1, 1], dilation: [2, 2] }).data));
  });

  it('names the op, the option, the value and the shapes of a bad option', () => {
    const x = [1, 1, 6, 6];
    const w = [2, 1, 3, 3];
    const shapes = '(x [1, 1, 6, 6], w [2, 1, 3, 3])';
    expect(() => conv2dOutputShape(x, w, { stride: 0 })).toThrow('conv2dOutputShape: stride ' +
      `must be an integer >= 1 or a pair [h, w] of them, got 0 ${shapes}`);
    expect(() => conv2d(randn(x, mulberry32(1)), randn(w, mulberry32(2)), null,
      { padding: [1, -1] })).toThrow(
      `conv2d: padding must be an integer >= 0 or a pair [h, w] of them, got [1,-1] ${shapes}`);
    expect(() => conv2dOutputShape(x, w, { dilation: 1.5 })).toThrow(
      'conv2dOutputShape: dilation must be an integer >= 1 or a pair [h, w] of them, got 1.5');
    expect(() => conv2dOutputShape(x, w, { stride: [1, 1, 1] as never })).toThrow(
      'conv2dOutputShape: stride must be an integer >= 1 or a pair [h, w] of them, got [1,1,1]');
    expect(() => conv2dOutputShape(x, w, { padding: '1' as never })).toThrow(
      'conv2dOutputShape: padding must be an integer >= 0 or a pair [h, w] of them, got "1"');
    expect(() => conv2dOutputShape(x, w, null as never)).toThrow(
      'conv2dOutputShape: options must be an object, got null');
  });

  it('refuses groups other than 1 instead of computing an ungrouped convolution', () => {
    // x [1, 2, 4, 4] with w [2, 1, 3, 3] would be a valid groups-2 layer; 2 channels of w.
    const x = randn([1, 2, 4, 4], mulberry32(1));
    const w = randn([2, 2, 3, 3], mulberry32(2));
    const grouped = { groups: 2 } as Conv2dOptions;
    expect(() => conv2d(x, w, null, grouped)).toThrow('conv2d: groups 2 is not supported: the ' +
      'reference computes ungrouped convolutions only, as the engine\'s conv2d ' +
      '(x [1, 2, 4, 4], w [2, 2, 3, 3])');
    const dy = randn([1, 2, 2, 2], mulberry32(3));
    expect(() => conv2dBackwardInput(dy, w, x.shape, grouped))
      .toThrow(/conv2dBackwardInput: groups 2 is not supported/);
    expect(() => conv2dBackwardWeight(dy, x, w.shape, grouped))
      .toThrow(/conv2dBackwardWeight: groups 2 is not supported/);
    // groups 1 is the ungrouped convolution itself.
    const one = conv2d(x, w, null, { groups: 1 } as Conv2dOptions);
    expect(Array.from(one.data)).toEqual(Array.from(conv2d(x, w, null).data));
  });
});

describe('conv2d backward against finite differences', () => {
  const cases: { name: string; x: number[]; w: number[]; opts: Conv2dOptions }[] = [
    { name: '1x1 kernel, all ones', x: [1, 1, 1, 1], w: [1, 1, 1, 1], opts: {} },
    { name: 'plain 3x3', x: [2, 3, 5, 5], w: [4, 3, 3, 3], opts: {} },
    {
      name: 'stride [2,1] padding [1,0] dilation [1,2], 3x2 kernel',
      x: [2, 3, 7, 6], w: [5, 3, 3, 2], opts: { stride: [2, 1], padding: [1, 0], dilation: [1, 2] },
    },
    {
      name: 'stride [1,3] padding [0,2] dilation [2,1], 2x3 kernel, prime sizes',
      x: [1, 2, 7, 5], w: [3, 2, 2, 3], opts: { stride: [1, 3], padding: [0, 2], dilation: [2, 1] },
    },
    {
      name: 'stride larger than kernel skips inputs (their gradient is 0)',
      x: [1, 1, 7, 7], w: [2, 1, 2, 2], opts: { stride: [3, 3] },
    },
    {
      name: 'padding larger than kernel reach',
      x: [1, 2, 3, 2], w: [2, 2, 1, 1], opts: { padding: [2, 1] },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const rng = mulberry32(c.x.reduce((s, d) => s * 7 + d, 1));
      const x = randn(c.x, rng);
      const w = randn(c.w, rng);
      const b = randn([c.w[0]], rng);
      expectGrads(`conv2d backward (${c.name})`, ([xx, ww, bb]) => conv2d(xx, ww, bb, c.opts),
        [x, w, b], (dy) => [
          conv2dBackwardInput(dy, w, x.shape, c.opts),
          conv2dBackwardWeight(dy, x, w.shape, c.opts),
          conv2dBackwardBias(dy),
        ]);
    });
  }

  it('a larger conv (1200 inputs) along random directions, the check for big tensors', () => {
    const opts: Conv2dOptions = { stride: [2, 1], padding: [1, 2], dilation: [2, 1] };
    const rng = mulberry32(99);
    const x = randn([2, 6, 10, 10], rng);
    const w = randn([8, 6, 3, 5], rng);
    const b = randn([8], rng);
    expectGrads('conv2d backward (directional)', ([xx, ww, bb]) => conv2d(xx, ww, bb, opts),
      [x, w, b], (dy) => [
        conv2dBackwardInput(dy, w, x.shape, opts),
        conv2dBackwardWeight(dy, x, w.shape, opts),
        conv2dBackwardBias(dy),
      ], 7, { mode: 'directional', directions: 4 });
  });

  it('bias gradient sums over N, H\', W\' (hand values)', () => {
    const dy = ref([2, 2, 1, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
    expectClose(conv2dBackwardBias(dy).data, [1 + 2 + 5 + 6, 3 + 4 + 7 + 8]);
  });

  it('rejects a dy that is not the output shape', () => {
    expect(() => conv2dBackwardInput(ref([1, 1, 3, 3], (i) => i), ref([1, 1, 2, 2], [1, 1, 1, 1]),
      [1, 1, 3, 3])).toThrow(/dy must be the output shape \[1, 1, 2, 2\]/);
  });
});
