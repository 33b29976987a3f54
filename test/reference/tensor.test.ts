// Tensor helpers: construction, broadcasting rules, the broadcast-undoing sum, the seeded rng.

import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/reference/random.js';
import {
  broadcastShapes, broadcastTo, full, randn, ravelIndex, reduceToShape, ref, reshape, roundToF32,
  size, strides, uniform, unravelIndex, zeros,
} from '../../src/reference/tensor.js';

describe('tensor construction', () => {
  it('ref fills from a function of the flat and n-d index', () => {
    const t = ref([2, 3], (i, [r, c]) => 10 * r + c + i / 100);
    expect(Array.from(t.data)).toEqual([0, 1.01, 2.02, 10.03, 11.04, 12.05]);
  });

  it('ref and zeros name a shape that is not an array of non-negative integers', () => {
    expect(() => ref([2, -1], [])).toThrow('ref: shape [2, -1] must hold non-negative integers');
    expect(() => zeros(3 as never))
      .toThrow('zeros: shape must be an array of non-negative integers, got 3');
  });

  it('ref and full refuse values that are not numbers, as the engine\'s tensor()', () => {
    // Float64Array.from would turn these into NaN without a word.
    expect(() => ref([2], ['a', 'b'] as never)).toThrow('ref: data[0] is string "a", not a number');
    expect(() => ref([2], [1, null] as never)).toThrow('ref: data[1] is null, not a number');
    expect(() => ref([2], [1, {}] as never)).toThrow('ref: data[1] is object, not a number');
    expect(() => ref([1], new BigInt64Array([1n]) as never))
      .toThrow('ref: data is a BigInt64Array; the reference takes numbers');
    expect(() => ref([1], 'a' as never))
      .toThrow('ref: data must be an array or typed array of numbers, got "a"');
    expect(() => ref([2], ((i: number) => (i === 1 ? '2' : 0)) as never))
      .toThrow('ref: the function gave "2" at flat index 1, not a number');
    expect(() => full([2], '1' as never)).toThrow('full: value must be a number, got "1"');
    // Typed arrays of any number type are numbers.
    expect(Array.from(ref([2], new Int8Array([-1, 2])).data)).toEqual([-1, 2]);
  });

  it('ref rejects a data length that does not match the shape', () => {
    expect(() => ref([2, 2], [1, 2, 3])).toThrow(/\[2, 2\] holds 4 elements but 3/);
  });

  it('a scalar has shape [] and one element; a zero-size axis has none', () => {
    expect(size([])).toBe(1);
    expect(zeros([]).data.length).toBe(1);
    expect(size([3, 0, 2])).toBe(0);
  });

  it('strides and index conversion are row-major', () => {
    expect(strides([2, 3, 4])).toEqual([12, 4, 1]);
    expect(unravelIndex(23, [2, 3, 4])).toEqual([1, 2, 3]);
    expect(ravelIndex([1, 0, 2], [2, 3, 4])).toBe(14);
  });

  it('reshape keeps the data and rejects a size change', () => {
    const t = ref([2, 3], [1, 2, 3, 4, 5, 6]);
    expect(reshape(t, [3, 2]).data).toBe(t.data);
    expect(() => reshape(t, [4, 2])).toThrow(/cannot view \[2, 3\] as \[4, 2\]/);
  });

  it('roundToF32 rounds to the nearest float32', () => {
    expect(roundToF32(ref([1], [0.1])).data[0]).toBe(Math.fround(0.1));
    expect(roundToF32(ref([1], [0.1])).data[0]).not.toBe(0.1);
  });
});

describe('mulberry32 and samplers', () => {
  it('is deterministic per seed, in [0, 1), and differs across seeds', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const c = mulberry32(43);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(c()).not.toBe(xs[0]);
    // The mean of 1000 uniforms is 0.5 with standard deviation ~0.009.
    expect(Math.abs(xs.reduce((s, x) => s + x, 0) / 1000 - 0.5)).toBeLessThan(0.05);
  });

  it('randn has mean ~0 and variance ~1; uniform stays in its range', () => {
    const t = randn([10001], mulberry32(1));
    const n = t.data.length;
    const mean = t.data.reduce((s, x) => s + x, 0) / n;
    const v = t.data.reduce((s, x) => s + (x - mean) ** 2, 0) / n;
    // Standard errors: 0.01 for the mean, ~0.014 for the variance.
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(v - 1)).toBeLessThan(0.07);
    const u = uniform([1000], mulberry32(2), -3, 5);
    expect(Math.min(...u.data)).toBeGreaterThanOrEqual(-3);
    expect(Math.max(...u.data)).toBeLessThan(5);
  });
});

describe('broadcastShapes', () => {
  it('aligns from the right and stretches size-1 axes', () => {
    expect(broadcastShapes([3, 1, 5], [4, 1])).toEqual([3, 4, 5]);
    expect(broadcastShapes([], [2, 3])).toEqual([2, 3]);
    expect(broadcastShapes([1], [0])).toEqual([0]);
  });

  it('names both shapes when they do not broadcast', () => {
    expect(() => broadcastShapes([2, 3], [4, 3])).toThrow(/\[2, 3\] and \[4, 3\]/);
  });
});

describe('reduceToShape', () => {
  it('sums the broadcast axes back (leading and size-1)', () => {
    const g = ref([2, 2, 3], (i) => i);
    // [1, 3]: sum over axes 0 and 1 -> column sums of the 4 rows 0..11
    expect(Array.from(reduceToShape(g, [1, 3]).data)).toEqual([18, 22, 26]);
    // [2, 1, 1]: sum over the last two axes
    expect(Array.from(reduceToShape(g, [2, 1, 1]).data)).toEqual([15, 51]);
    // [] : the total
    expect(Array.from(reduceToShape(g, []).data)).toEqual([66]);
  });

  it('is the adjoint of broadcastTo: <broadcast(x), g> = <x, reduce(g)>', () => {
    const rng = mulberry32(3);
    const x = randn([3, 1, 2], rng);
    const g = randn([5, 3, 4, 2], rng);
    const bx = broadcastTo(x, g.shape);
    const r = reduceToShape(g, x.shape);
    let lhs = 0;
    let rhs = 0;
    for (let i = 0; i < g.data.length; i++) lhs += bx.data[i] * g.data[i];
    for (let i = 0; i < x.data.length; i++) rhs += x.data[i] * r.data[i];
    expect(Math.abs(lhs - rhs)).toBeLessThan(1e-12);
  });

  it('rejects a gradient that is not a broadcast of the shape', () => {
    expect(() => reduceToShape(zeros([2, 3]), [4])).toThrow(/\[2, 3\].*\[4\]/);
  });
});
