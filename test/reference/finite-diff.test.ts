// The finite-difference judge itself: it must get known derivatives right and catch wrong ones.

import { describe, expect, it } from 'vitest';
import { checkGrad, numericGrad } from '../../src/reference/finite-diff.js';
import { mulberry32 } from '../../src/reference/random.js';
import { type RefTensor, randn, ref } from '../../src/reference/tensor.js';
import { FD } from './helpers.js';

// f(x, y) = sum_i x_i^2 y_i + sin(x_0); df/dx_i = 2 x_i y_i + [i = 0] cos(x_0), df/dy_i = x_i^2
const f = ([x, y]: RefTensor[]) =>
  x.data.reduce((s, v, i) => s + v * v * y.data[i], 0) + Math.sin(x.data[0]);
const grads = (x: RefTensor, y: RefTensor): RefTensor[] => [
  ref(x.shape, (i) => 2 * x.data[i] * y.data[i] + (i === 0 ? Math.cos(x.data[0]) : 0)),
  ref(y.shape, (i) => x.data[i] ** 2),
];

describe('numericGrad', () => {
  it('matches a known derivative to ~1e-9 and restores the input exactly', () => {
    const x = ref([3], [0.5, -1.25, 2]);
    const y = ref([3], [3, 0.1, -2]);
    const before = Float64Array.from(x.data);
    const g = numericGrad(f, [x, y], 0);
    expect(Array.from(x.data)).toEqual(Array.from(before));
    const want = grads(x, y)[0];
    for (let i = 0; i < 3; i++) expect(Math.abs(g.data[i] - want.data[i])).toBeLessThan(1e-8);
  });
});

describe('checkGrad', () => {
  it('accepts correct gradients in full and directional mode', () => {
    const rng = mulberry32(1);
    const x = randn([4, 3], rng);
    const y = randn([4, 3], rng);
    const full = checkGrad(f, [x, y], grads(x, y), FD);
    expect(full.ok, full.message).toBe(true);
    expect(full.results.length).toBe(2);
    const dir = checkGrad(f, [x, y], grads(x, y), { ...FD, mode: 'directional', directions: 4 });
    expect(dir.ok, dir.message).toBe(true);
    expect(dir.results.length).toBe(4);
  });

  it('rejects a gradient with one wrong element, naming the input and index', () => {
    const x = ref([2, 2], [1, 2, 3, 4]);
    const y = ref([2, 2], [1, 1, 1, 1]);
    const g = grads(x, y);
    g[1].data[3] += 1e-3;
    const full = checkGrad(f, [x, y], g, { ...FD, name: 'toy' });
    expect(full.ok).toBe(false);
    expect(full.message).toContain('toy: input 1: 1 of 4 elements outside');
    expect(full.message).toContain('[1, 1] (flat 3)');
    const dir = checkGrad(f, [x, y], g, { ...FD, mode: 'directional' });
    expect(dir.ok).toBe(false);
    expect(Array.from(x.data)).toEqual([1, 2, 3, 4]);
  });

  it('refuses a missing or NaN tolerance instead of passing a gradient wrong by 50', () => {
    const x = ref([2], [1, 2]);
    const wrong = ref([2], [50, 60]);
    const zero = () => 0;
    expect(() => checkGrad(zero, [x], [wrong], {} as never))
      .toThrow(/checkGrad\(gradient\): atol must be a finite number >= 0, got undefined/);
    expect(() => checkGrad(zero, [x], [wrong], { atol: NaN, rtol: NaN, name: 'g' }))
      .toThrow('checkGrad(g): atol must be a finite number >= 0, got NaN');
    expect(() => checkGrad(zero, [x], [wrong], { atol: 0, rtol: -1, mode: 'directional' }))
      .toThrow(/rtol must be a finite number >= 0, got -1/);
    expect(() => checkGrad(zero, [x], [wrong], undefined as never))
      .toThrow(/checkGrad\(gradient\): options must be an object holding atol and rtol/);
  });

  it('skips inputs whose gradient is null and checks shapes', () => {
    const x = ref([2], [1, 2]);
    const y = ref([2], [3, 4]);
    const r = checkGrad(f, [x, y], [grads(x, y)[0], null], FD);
    expect(r.ok, r.message).toBe(true);
    expect(r.results.length).toBe(1);
    expect(() => checkGrad(f, [x, y], [ref([1], [0]), null], FD)).toThrow(/gradient 0 has shape/);
  });
});
