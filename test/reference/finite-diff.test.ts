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

describe('checkGrad and numericGrad refuse what would check nothing or mislead', () => {
  const x = () => ref([3], [0.5, -1.25, 2]);
  const y = () => ref([3], [3, 0.1, -2]);

  it('zero directions, all-null gradients and empty inputs are refused, not passed', () => {
    const [a, b] = [x(), y()];
    const g = grads(a, b);
    expect(() => checkGrad(f, [a, b], g, { ...FD, mode: 'directional', directions: 0 }))
      .toThrow('checkGrad(gradient): directions must be an integer >= 1 (zero directions ' +
        'check nothing), got 0');
    expect(() => checkGrad(f, [a, b], g, { ...FD, mode: 'directional', directions: 1.5 }))
      .toThrow(/directions must be an integer >= 1/);
    for (const mode of ['full', 'directional'] as const) {
      expect(() => checkGrad(f, [a, b], [null, null], { ...FD, mode, name: 'toy' }))
        .toThrow('checkGrad(toy): nothing to check: every one of the 2 gradients is null');
    }
    const empty = ref([0, 3], []);
    expect(() => checkGrad(() => 0, [empty], [ref([0, 3], [])], FD))
      .toThrow('checkGrad(gradient): nothing to check: every input with a gradient is empty');
  });

  it('one tensor at two positions, directions in full mode and a short gradient are refused',
    () => {
      const a = x();
      // f(a, a) = sum(a^3) + sin(a_0): each perturbation moves both positions, so the numeric
      // derivative is the sum of the two analytic ones, and either alone would "fail".
      const g = grads(a, a);
      expect(() => checkGrad(f, [a, a], g, FD)).toThrow(
        'checkGrad(gradient): inputs 0 and 1 are the same tensor: pass it once');
      expect(() => checkGrad(f, [x(), y()], grads(x(), y()), { ...FD, directions: 5 }))
        .toThrow("checkGrad(gradient): directions applies to mode 'directional'");
      const short = { shape: x().shape, data: new Float64Array(1) };
      expect(() => checkGrad(f, [x(), y()], [short, null], FD)).toThrow(
        `checkGrad(gradient): gradient 0 holds 1 values but its shape [${x().shape.join(', ')}]`);
    });

  it('an unknown mode is refused, not run as directional', () => {
    expect(() => checkGrad(f, [x(), y()], grads(x(), y()), { ...FD, mode: 'Directional' as never }))
      .toThrow(`checkGrad(gradient): mode must be 'full' or 'directional', got "Directional"`);
  });

  it('restores the inputs bit for bit when f throws, in both modes and in numericGrad', () => {
    for (const mode of ['full', 'directional'] as const) {
      const a = ref([3], [0.1, -0, 3]);
      const b = y();
      let calls = 0;
      // Throws on the second call, while a is shifted by -h (full) or along -v (directional).
      const boom = (xs: RefTensor[]) => {
        if (++calls === 2) throw new Error('boom');
        return f(xs);
      };
      expect(() => checkGrad(boom, [a, b], grads(a, b), { ...FD, mode })).toThrow('boom');
      expect(calls).toBe(2);
      expect(Object.is(a.data[0], 0.1) && Object.is(a.data[1], -0) && a.data[2] === 3,
        `${mode}: ${Array.from(a.data)}`).toBe(true);
      expect(Array.from(b.data)).toEqual([3, 0.1, -2]);
    }
    const a = ref([2], [0.25, 7]);
    let calls = 0;
    expect(() => numericGrad(() => {
      if (++calls === 3) throw new Error('boom');
      return 0;
    }, [a], 0)).toThrow('boom');
    expect(Array.from(a.data)).toEqual([0.25, 7]);
  });

  it('refuses float32 and plain-array inputs, whose step is lost or cannot be restored', () => {
    const a = x();
    const b = y();
    const g = grads(a, b);
    const a32 = { shape: [3], data: Float32Array.from(a.data) } as unknown as RefTensor;
    const plain = { shape: [3], data: Array.from(a.data) } as unknown as RefTensor;
    expect(() => checkGrad(f, [a32, b], g, FD))
      .toThrow('checkGrad(gradient): input 0 holds a Float32Array; finite differences need a ' +
        'Float64Array (a step of 1e-6 is lost to float32 rounding');
    expect(() => checkGrad(f, [plain, b], g, { ...FD, mode: 'directional' }))
      .toThrow(/checkGrad\(gradient\): input 0 holds a plain array; .*Float64Array/);
    expect(() => numericGrad(f, [a32, b], 0)).toThrow(/numericGrad: input 0 holds a Float32Array/);
    // An input skipped by a null gradient is never perturbed, so any data will do there.
    const idx = { shape: [3], data: Int32Array.from([0, 1, 2]) } as unknown as RefTensor;
    const r = checkGrad(([v]) => v.data[0] ** 2, [a, idx], [ref([3], [1, 0, 0]), null], FD);
    expect(r.ok, r.message).toBe(true);
  });

  it('numericGrad names an index out of range; both refuse a bad step and a non-number f', () => {
    expect(() => numericGrad(f, [x(), y()], 2))
      .toThrow('numericGrad: index must be an integer in 0..1 (one of the 2 inputs), got 2');
    expect(() => numericGrad(f, [x(), y()], -1)).toThrow(/index must be an integer in 0..1/);
    expect(() => numericGrad(f, [x(), y()], 0, 0))
      .toThrow('numericGrad: h must be a finite number > 0, got 0');
    expect(() => checkGrad(f, [x(), y()], grads(x(), y()), { ...FD, h: -1e-6 }))
      .toThrow('checkGrad(gradient): h must be a finite number > 0, got -0.000001');
    const arrayF = (() => [1]) as unknown as (xs: RefTensor[]) => number;
    expect(() => checkGrad(arrayF, [x(), y()], grads(x(), y()), FD))
      .toThrow('checkGrad(gradient): f returned [1], not a number');
  });
});
