// The references take the option forms the engine takes (a number for both axes or an
// [h, w] pair): the same options object goes to conv2d and maxPool2d on both sides, as in
// the README, and the two agree, forward and backward.

import { describe, it } from 'vitest';
import { conv2d, type Conv2dOptions } from '../../src/ops/conv.js';
import { maxPool2d, type MaxPool2dOptions } from '../../src/ops/pool.js';
import * as R from '../../src/reference/index.js';
import { TOL } from '../../src/reference/compare.js';
import { checkOp, randomInput, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

describe('reference and engine conv2d, options as numbers and pairs', () => {
  const cases: [string, Conv2dOptions][] = [
    ['stride 2, padding 1 (numbers)', { stride: 2, padding: 1 }],
    ['the same as pairs', { stride: [2, 2], padding: [1, 1] }],
    ['dilation 2 (a number), stride a pair', { stride: [1, 2], dilation: 2 }],
    ['mixed: padding a number, stride and dilation pairs', { stride: [2, 1], padding: 2,
      dilation: [1, 2] }],
  ];
  for (const [what, opts] of cases) {
    it(what, async () => {
      // 1 input channel, 6x7 input, 3x3 kernel: the README's shapes, H != W.
      const x = randomInput([2, 1, 6, 7], 31);
      const w = randomInput([3, 1, 3, 3], 32);
      await checkOp(engine(), {
        name: `conv2d ${JSON.stringify(opts)}`, inputs: [x, w],
        gpu: ([tx, tw]) => conv2d(tx, tw, null, opts),
        refForward: ([rx, rw]) => R.conv2d(rx, rw, null, opts),
        refBackward: (dy, [rx, rw]) => [R.conv2dBackwardInput(dy, rw, rx.shape, opts),
          R.conv2dBackwardWeight(dy, rx, rw.shape, opts)],
        // Sums of 9 products forward; the weight gradient sums over N H' W' (at most 84).
        tol: TOL.f32Reduction(9, 3), gradTol: TOL.f32Reduction(84, 3),
      });
    });
  }
});

describe('reference and engine maxPool2d, options as numbers and pairs', () => {
  const cases: [string, MaxPool2dOptions][] = [
    ['kernel 2 (a number, stride its default)', { kernel: 2 }],
    ['kernel 3, stride 2, padding 1 (numbers)', { kernel: 3, stride: 2, padding: 1 }],
    ['the same as pairs', { kernel: [3, 3], stride: [2, 2], padding: [1, 1] }],
    ['kernel a pair, stride and padding numbers', { kernel: [3, 2], stride: 1, padding: 1 }],
  ];
  for (const [what, opts] of cases) {
    it(what, async () => {
      await checkOp(engine(), {
        name: `maxPool2d ${JSON.stringify(opts)}`, inputs: [randomInput([2, 3, 7, 6], 33)],
        gpu: ([t]) => maxPool2d(t, opts),
        refForward: ([t]) => R.maxPool2d(t, opts),
        refBackward: (dy, [t]) => [R.maxPool2dBackward(dy, t, opts)],
        // A max is exact; a dx sums the dy of at most 9 overlapping windows.
        tol: TOL.exact, gradTol: TOL.f32Reduction(9, 4),
      });
    });
  }
});
