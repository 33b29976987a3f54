// Central finite differences in float64, the judge of every analytic backward rule.

import { checkTolerance } from './checks.js';
import { type CompareResult, compare } from './compare.js';
import { mulberry32 } from './random.js';
import { type RefTensor, randn, zeros } from './tensor.js';

/** A scalar function of several tensors, e.g. sum(r * op(x)) with a fixed random r. */
export type ScalarFn = (xs: RefTensor[]) => number;

/**
 * d f / d xs[index] by central differences, one element at a time: (f(x+h) - f(x-h)) / 2h.
 * Truncation error is h^2 f'''/6 ~ 1e-12 for h = 1e-6 and smooth O(1) functions; rounding
 * error is ~ 1e-16 |f| / h ~ 1e-10 |f|, so float64 gives about 9 to 10 good digits.
 * xs[index] is perturbed in place and restored bit for bit.
 */
export function numericGrad(f: ScalarFn, xs: RefTensor[], index: number, h = 1e-6): RefTensor {
  const x = xs[index];
  const g = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) {
    const saved = x.data[i];
    x.data[i] = saved + h;
    const fp = f(xs);
    x.data[i] = saved - h;
    const fm = f(xs);
    x.data[i] = saved;
    g.data[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export interface GradCheckOptions {
  rtol: number;
  atol: number;
  /** Step of the central difference, default 1e-6. */
  h?: number;
  /**
   * 'full' (default) differences every element of every checked input. 'directional' checks
   * the derivative along random directions v instead: (f(x + hv) - f(x - hv)) / 2h against
   * sum_i <analytic_i, v_i>, two calls of f per direction, for inputs too large to walk.
   */
  mode?: 'full' | 'directional';
  /** Number of random directions in 'directional' mode, default 3. */
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
 * against central differences of f.
 */
export function checkGrad(f: ScalarFn, xs: RefTensor[], analytic: (RefTensor | null)[],
  opts: GradCheckOptions): GradCheckResult {
  const name = opts?.name ?? 'gradient';
  // Checked before any work: a NaN or missing tolerance would pass every gradient.
  checkTolerance(`checkGrad(${name})`, opts);
  const h = opts.h ?? 1e-6;
  if (analytic.length !== xs.length) {
    throw new Error(`checkGrad(${name}): ${xs.length} inputs but ${analytic.length} gradients`);
  }
  analytic.forEach((g, i) => {
    const x = xs[i];
    if (g && (g.shape.length !== x.shape.length || g.shape.some((d, j) => d !== x.shape[j]))) {
      throw new Error(`checkGrad(${name}): gradient ${i} has shape [${g.shape.join(', ')}] ` +
        `but input ${i} has [${x.shape.join(', ')}]`);
    }
  });
  const results: CompareResult[] = [];
  if ((opts.mode ?? 'full') === 'full') {
    analytic.forEach((g, i) => {
      if (!g) return;
      const numeric = numericGrad(f, xs, i, h);
      results.push(compare(g.data, numeric.data, {
        atol: opts.atol, rtol: opts.rtol, shape: xs[i].shape, name: `${name}: input ${i}`,
      }));
    });
  } else {
    const rng = opts.rng ?? mulberry32(0);
    const checked = analytic.map((g, i) => (g ? i : -1)).filter((i) => i >= 0);
    for (let d = 0; d < (opts.directions ?? 3); d++) {
      const dirs = checked.map((i) => randn(xs[i].shape, rng));
      const saved = checked.map((i) => Float64Array.from(xs[i].data));
      const shift = (sign: number) => checked.forEach((i, j) => {
        const x = xs[i].data;
        for (let e = 0; e < x.length; e++) x[e] = saved[j][e] + sign * h * dirs[j].data[e];
      });
      shift(1);
      const fp = f(xs);
      shift(-1);
      const fm = f(xs);
      checked.forEach((i, j) => xs[i].data.set(saved[j]));
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
