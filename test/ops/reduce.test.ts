// Reductions' axis arguments on the GPU: repeated axes are refused before any GPU work,
// and the reference's max takes the same axis forms as the engine's (one, a list, all)
// and agrees with it, value and gradient.

import { describe, expect, it } from 'vitest';
import * as red from '../../src/ops/reduce.js';
import * as R from '../../src/reference/index.js';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { TOL } from '../../src/reference/compare.js';
import { checkOp, randomInput, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

describe('repeated axes', () => {
  // PyTorch refuses "dim 0 appears multiple times"; these were de-duplicated in silence.
  const cases: [number[], string][] = [[[0, 0], '0'], [[1, -1], '1'], [[0, 1, 0], '0']];
  for (const op of ['sum', 'mean', 'max'] as const) {
    for (const [axes, twice] of cases) {
      it(`${op} over ${JSON.stringify(axes)} names the op, the axes and x's shape`, () => {
        const x = engine().tensor([1, 2, 3, 4, 5, 6], [2, 3], { name: 'x' });
        const want = `${op}: axes [${axes.join(', ')}] name axis ${twice} more than once ` +
          '(each axis may appear once) for x [2, 3]';
        expect(() => red[op](x, axes)).toThrow(OpArgumentError);
        expect(() => red[op](x, axes)).toThrow(want);
        // The reference refuses the same axes, with the same shape in its message.
        const rx = R.ref([2, 3], [1, 2, 3, 4, 5, 6]);
        expect(() => R[op](rx, axes)).toThrow(`${op}: axes [${axes.join(', ')}] name axis ` +
          `${twice} more than once (repeated axis) for shape [2, 3]`);
      });
    }
  }

  it('distinct axes, negative ones included, still reduce', async () => {
    const x = engine().tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(Array.from(await red.sum(x, [0, -1]).read())).toEqual([21]);
    expect(Array.from(await red.max(x, [-2]).read())).toEqual([4, 5, 6]);
  });

  it('an axis given as a string is shown quoted, and called no integer, not out of range', () => {
    const x = engine().tensor([1, 2, 3, 4, 5, 6], [2, 3], { name: 'x' });
    expect(() => red.sum(x, ['1'] as never))
      .toThrow('sum: axis "1" is not an integer (the axes of x [2, 3] are -2..1)');
    expect(() => red.max(x, 0.5)).toThrow('max: axis 0.5 is not an integer (the axes of x');
    expect(() => red.sum(x, [2])).toThrow('sum: axis 2 is out of range for x [2, 3]');
  });

  it('axes and keepDims of other types are refused; valid ones still reduce', async () => {
    const x = engine().tensor([1, 2, 3, 4, 5, 6], [2, 3], { name: 'x' });
    // An object of options was not iterable (a raw TypeError); a string keepDims read as true.
    expect(() => red.sum(x, { axes: [0] } as never)).toThrow(OpArgumentError);
    expect(() => red.sum(x, { axes: [0] } as never)).toThrow('sum: axes must be an axis, an ' +
      'array of axes or undefined (all), got { axes: [0] }');
    expect(() => red.mean(x, 0, 'false' as never)).toThrow(
      'mean: keepDims must be true or false, got "false"');
    const kept = red.sum(x, 0, true);
    expect([...kept.shape]).toEqual([1, 3]);
    expect(Array.from(await kept.read())).toEqual([5, 7, 9]);
  });
});

describe('engine max and reference max take the same axes', () => {
  // Ties within each reduced set: values from {0, 1, 2}, so the first maximum matters.
  const tied = randomInput([3, 4, 5], 21);
  for (let i = 0; i < tied.data.length; i++) {
    tied.data[i] = Math.floor(Math.abs(tied.data[i]) * 2) % 3;
  }
  const cases: [string, number | number[] | undefined, boolean][] = [
    ['a number', 1, false], ['a negative number', -1, true], ['a list of one', [2], false],
    ['two axes that do not merge', [0, 2], false], ['two axes, keepDims', [2, 0], true],
    ['negative axes', [-3, -2], false], ['all axes (omitted)', undefined, false],
    ['all axes, listed', [0, 1, 2], true],
  ];
  for (const [what, axes, keepDims] of cases) {
    it(`${what}: ${JSON.stringify(axes)}${keepDims ? ' keepDims' : ''}`, async () => {
      await checkOp(engine(), {
        name: `max over ${JSON.stringify(axes)}`, inputs: [tied],
        gpu: ([t]) => red.max(t, axes, keepDims),
        refForward: ([t]) => R.max(t, axes, keepDims),
        refBackward: (dy, [t]) => [R.maxBackward(dy, t, axes, keepDims)],
        tol: TOL.exact,
      });
    });
  }
});
