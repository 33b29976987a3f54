// Central finite differences in float64, the judge of every analytic backward rule.

import { checkNumbers, checkTolerance, show } from './checks.js';
import { type CompareResult, compare } from './compare.js';
import { mulberry32 } from './random.js';
import { type RefTensor, randn, zeros } from './tensor.js';

/** A scalar function of several tensors, e.g. sum(r * op(x)) with a fixed random r. */
export type ScalarFn = (xs: RefTensor[]) => number;

function checkFunctionAndInputs(what: string, f: unknown, xs: unknown): void {
  if (typeof f !== 'function') throw new Error(`${what}: f must be a function, got ${show(f)}`);
  if (!Array.isArray(xs)) {
    throw new Error(`${what}: xs must be an array of tensors, got ${show(xs)}`);
  }
}

/**
 * Input i must be a tensor holding a Float64Array, since it is perturbed in place: a step of
 * h = 1e-6 on a float32 value of size ~1 is lost to rounding (its spacing is ~1e-7), so the
 * difference would measure rounding, and a plain array has no `set` to restore it with.
 */
function checkPerturbable(what: string, xs: RefTensor[], i: number): void {
  const x: unknown = xs[i];
  if (x === null || typeof x !== 'object' || !Array.isArray((x as RefTensor).shape)) {
    throw new Error(`${what}: input ${i} must be a tensor { shape, data }, got ${show(x)}`);
  }
  const data: unknown = (x as RefTensor).data;
  if (!(data instanceof Float64Array)) {
    const kind = ArrayBuffer.isView(data) ? `a ${data.constructor.name}`
      : Array.isArray(data) ? 'a plain array' : show(data);
    throw new Error(`${what}: input ${i} holds ${kind}; finite differences need a ` +
      'Float64Array (a step of 1e-6 is lost to float32 rounding, and the input is perturbed ' +
      'in place): make it with ref(shape, Float64Array.from(data))');
  }
}

function checkStep(what: string, h: unknown): number {
  if (typeof h !== 'number' || !Number.isFinite(h) || h <= 0) {
    throw new Error(`${what}: h must be a finite number > 0, got ${show(h)}`);
  }
  return h;
}

/** f(xs), refusing anything but a number (an array would be coerced by the subtraction). */
function evaluate(what: string, f: ScalarFn, xs: RefTensor[]): number {
  const v: unknown = f(xs);
  if (typeof v !== 'number') throw new Error(`${what}: f returned ${show(v)}, not a number`);
  return v;
}

/** numericGrad after its checks: the input's elements one at a time, each restored by finally. */
function centralDifferences(what: string, f: ScalarFn, xs: RefTensor[], index: number,
  h: number): RefTensor {
  const x = xs[index].data;
  const g = zeros(xs[index].shape);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    let fp: number;
    let fm: number;
    try {
      x[i] = saved + h;
      fp = evaluate(what, f, xs);
      x[i] = saved - h;
      fm = evaluate(what, f, xs);
    } finally {
      x[i] = saved;
    }
    g.data[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/**
 * d f / d xs[index] by central differences, one element at a time: (f(x+h) - f(x-h)) / 2h.
 * Truncation error is h^2 f'''/6 ~ 1e-12 for h = 1e-6 and smooth O(1) functions; rounding
 * error is ~ 1e-16 |f| / h ~ 1e-10 |f|, so float64 gives about 9 to 10 good digits.
 * xs[index] must hold a Float64Array (ref() makes one): it is perturbed in place and restored
 * bit for bit, also when f throws. f must return a number.
 */
export function numericGrad(f: ScalarFn, xs: RefTensor[], index: number, h = 1e-6): RefTensor {
  checkFunctionAndInputs('numericGrad', f, xs);
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 ||
    index >= xs.length) {
    throw new Error(`numericGrad: index must be an integer in 0..${xs.length - 1} (one of ` +
      `the ${xs.length} inputs), got ${show(index)}`);
  }
  checkPerturbable('numericGrad', xs, index);
  return centralDifferences('numericGrad', f, xs, index, checkStep('numericGrad', h));
}

export interface GradCheckOptions {
  rtol: number;
  atol: number;
  /** Step of the central difference, a finite number > 0; default 1e-6. */
  h?: number;
  /**
   * 'full' (default) differences every element of every checked input. 'directional' checks
   * the derivative along random directions v instead: (f(x + hv) - f(x - hv)) / 2h against
   * sum_i <analytic_i, v_i>, two calls of f per direction, for inputs too large to walk.
   */
  mode?: 'full' | 'directional';
  /** Number of random directions in 'directional' mode, an integer >= 1; default 3. */
  directions?: number;
  /** Source of the random directions, default mulberry32(0). */
  rng?: () => number;
  /** Prefix for messages, e.g. "conv2d backward". */
  name?: string;
}

export interface GradCheckResult {
  ok: boolean;
  /** One entry per checked input ('full') or per direction ('directional'). */
  results: CompareResult[];
  /** The failing results' messages, or a one-line summary when all pass. */
  message: string;
}

/**
 * Checks analytic gradients (one per input, null to skip an input such as an integer index)
 * against central differences of f. Refused before any call of f, since each would pass
 * without checking anything: a missing or NaN tolerance, no gradient to check (all null, or
 * all of empty inputs), zero directions, an unknown mode. Checked inputs must hold
 * Float64Arrays; they are restored bit for bit, also when f throws.
 */
export function checkGrad(f: ScalarFn, xs: RefTensor[], analytic: (RefTensor | null)[],
  opts: GradCheckOptions): GradCheckResult {
  const name = opts?.name ?? 'gradient';
  const what = `checkGrad(${name})`;
  // Checked before any work: a NaN or missing tolerance would pass every gradient.
  checkTolerance(what, opts);
  checkFunctionAndInputs(what, f, xs);
  if (!Array.isArray(analytic)) {
    throw new Error(`${what}: analytic must be an array (a gradient or null per input), ` +
      `got ${show(analytic)}`);
  }
  const h = checkStep(what, opts.h ?? 1e-6);
  const mode = opts.mode ?? 'full';
  if (mode !== 'full' && mode !== 'directional') {
    throw new Error(`${what}: mode must be 'full' or 'directional', got ${show(mode)}`);
  }
  const directions = opts.directions ?? 3;
  if (typeof directions !== 'number' || !Number.isInteger(directions) || directions < 1) {
    throw new Error(`${what}: directions must be an integer >= 1 (zero directions check ` +
      `nothing), got ${show(directions)}`);
  }
  if (opts.rng !== undefined && typeof opts.rng !== 'function') {
    throw new Error(`${what}: rng must be a function returning numbers in [0, 1), ` +
      `got ${show(opts.rng)}`);
  }
  if (analytic.length !== xs.length) {
    throw new Error(`${what}: ${xs.length} inputs but ${analytic.length} gradients`);
  }
  const checked: number[] = [];
  analytic.forEach((g, i) => {
    if (g === null || g === undefined) return;
    checkPerturbable(what, xs, i);
    const x = xs[i];
    if (!Array.isArray(g.shape)) {
      throw new Error(`${what}: gradient ${i} must be a tensor { shape, data } or null, ` +
        `got ${show(g)}`);
    }
    if (g.shape.length !== x.shape.length || g.shape.some((d, j) => d !== x.shape[j])) {
      throw new Error(`${what}: gradient ${i} has shape [${g.shape.join(', ')}] ` +
        `but input ${i} has [${x.shape.join(', ')}]`);
    }
    checkNumbers(what, `gradient ${i} data`, g.data);
    if (g.data.length !== x.data.length) {
      throw new Error(`${what}: gradient ${i} holds ${g.data.length} values but its shape ` +
        `[${g.shape.join(', ')}] has ${x.data.length}`);
    }
    // One tensor at two positions: each perturbation moves both, so the numeric derivative
    // is their sum and neither analytic gradient alone can match it.
    const twin = xs.findIndex((o, j) => j !== i && o === x);
    if (twin >= 0) {
      throw new Error(`${what}: inputs ${Math.min(i, twin)} and ${Math.max(i, twin)} are the ` +
        'same tensor: pass it once (with the sum of its gradients), or pass a copy');
    }
    checked.push(i);
  });
  if (mode === 'full' && opts.directions !== undefined) {
    throw new Error(`${what}: directions applies to mode 'directional'; mode 'full' ` +
      'differentiates along every element');
  }
  if (checked.every((i) => xs[i].data.length === 0)) {
    throw new Error(`${what}: nothing to check: ` + (checked.length === 0
      ? `every one of the ${xs.length} gradients is null`
      : 'every input with a gradient is empty'));
  }
  const results: CompareResult[] = [];
  if (mode === 'full') {
    for (const i of checked) {
      const numeric = centralDifferences(what, f, xs, i, h);
      results.push(compare(analytic[i]!.data, numeric.data, {
        atol: opts.atol, rtol: opts.rtol, shape: xs[i].shape, name: `${name}: input ${i}`,
      }));
    }
  } else {
    const rng = opts.rng ?? mulberry32(0);
    for (let d = 0; d < directions; d++) {
      const dirs = checked.map((i) => randn(xs[i].shape, rng));
      const saved = checked.map((i) => Float64Array.from(xs[i].data));
      const shift = (sign: number) => checked.forEach((i, j) => {
        const x = xs[i].data;
        for (let e = 0; e < x.length; e++) x[e] = saved[j][e] + sign * h * dirs[j].data[e];
      });
      let fp: number;
      let fm: number;
      try {
        shift(1);
        fp = evaluate(what, f, xs);
        shift(-1);
        fm = evaluate(what, f, xs);
      } finally {
        checked.forEach((i, j) => xs[i].data.set(saved[j]));
      }
      let dot = 0;
      checked.forEach((i, j) => {
        const g = analytic[i]!.data;
        for (let e = 0; e < g.length; e++) dot += g[e] * dirs[j].data[e];
      });
      results.push(compare([dot], [(fp - fm) / (2 * h)], {
        atol: opts.atol, rtol: opts.rtol, name: `${name}: direction ${d}`,
      }));
    }
  }
  const bad = results.filter((r) => !r.ok);
  return {
    ok: bad.length === 0,
    results,
    message: bad.length
      ? bad.map((r) => r.message).join('\n')
      : `${name}: ${results.length} checks passed`,
  };
}
