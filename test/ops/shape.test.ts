// Row concatenation, slicing and in-place assignment: values, gradients and ordering.

import { describe, it, expect } from 'vitest';
import { grad } from '../../src/node.js';
import { concatRows, sliceRows, assign, assignRows } from '../../src/ops/shape.js';
import { mul, scale } from '../../src/ops/elementwise.js';
import { sum } from '../../src/ops/reduce.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

describe('concatRows and sliceRows', () => {
  it('concatenate rows of 1-D and 3-D tensors and route gradients back', async () => {
    const e = engine();
    const a = e.param([1, 2, 3, 4], [2, 2], 'a');
    const b = e.param([5, 6], [1, 2], 'b');
    const c = concatRows([a, b]);
    expect(c.shape).toEqual([3, 2]);
    // f = sum(c * w) with w = rows 1..3 -> df/da = w[0:2], df/db = w[2]
    const w = e.tensor([1, 1, 2, 2, 3, 3], [3, 2]);
    const [ga, gb] = grad(sum(mul(c, w)), [a, b]);
    const [cv, gav, gbv] = await e.run([], [c, ga!, gb!]);
    expect(Array.from(cv)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(gav)).toEqual([1, 1, 2, 2]);
    expect(Array.from(gbv)).toEqual([3, 3]);
  });

  it('slices rows with gradient zero outside the slice', async () => {
    const e = engine();
    const x = e.param([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 2, 2], 'x');
    const s = sliceRows(x, 1, 3);
    expect(s.shape).toEqual([2, 2, 2]);
    const [g] = grad(sum(scale(s, 2)), [x]);
    const [sv, gv] = await e.run([], [s, g!]);
    expect(Array.from(sv)).toEqual([5, 6, 7, 8, 9, 10, 11, 12]);
    expect(Array.from(gv)).toEqual([0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2]);
  });

  it('bad ranges and mismatched shapes are named', () => {
    const e = engine();
    const x = e.tensor([1, 2, 3, 4], [2, 2]);
    expect(() => sliceRows(x, 1, 1)).toThrow(/rows \[1, 1\) are not a non-empty range/);
    expect(() => sliceRows(x, 0, 3)).toThrow(/sliceRows/);
    expect(() => sliceRows(x, '0' as never, 1))
      .toThrow(/sliceRows: rows \["0", 1\) are not a non-empty range/);
    expect(() => concatRows([x, e.tensor([1, 2, 3], [1, 3])]))
      .toThrow(/tensor 1 \[1, 3\] does not match tensor 0 \[2, 2\] past axis 0/);
  });
});

describe('assign', () => {
  it('orders an in-place write after earlier reads and before later ones', async () => {
    const e = engine();
    const p = e.tensor([1, 2], [2]);
    const before = scale(p, 1);
    assign(p, scale(p, 10));
    const after = scale(p, 1);
    const [bv, av] = await e.run([], [before, after]);
    expect(Array.from(bv)).toEqual([1, 2]);
    expect(Array.from(av)).toEqual([10, 20]);
    expect(Array.from(await p.read())).toEqual([10, 20]);
  });

  it('pending in-place writes run with the next run even if nothing reads them', async () => {
    const e = engine();
    const q = e.zeros([3, 2]);
    assignRows(q, 1, e.tensor([7, 8], [1, 2]));
    await e.run();
    expect(Array.from(await q.read())).toEqual([0, 0, 7, 8, 0, 0]);
    expect(() => assignRows(q, 3, e.tensor([7, 8], [1, 2]))).toThrow(/does not fit/);
  });
});
