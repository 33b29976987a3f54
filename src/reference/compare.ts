// Elementwise comparison of a kernel's output against the reference, with named tolerances.

import { checkNonNegative, checkNumbers, checkShape, checkTolerance, show } from './checks.js';
import { size, unravelIndex } from './tensor.js';

export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface CompareOptions extends Tolerance {
  /** Names the output in the message, e.g. "conv2d dx (backward)". */
  name?: string;
  /** When given, indices are also reported as n-d indices of this shape. */
  shape?: readonly number[];
  /**
   * NaN in actual matches NaN in expected at the same index (numpy's assert_allclose with
   * equal_nan). Default false: a NaN is usually a kernel bug, so a test that means NaN to
   * propagate (relu or max of NaN) says so.
   */
  equalNan?: boolean;
}

export interface CompareResult {
  ok: boolean;
  /** Largest |actual - expected|; Infinity when a NaN or infinity fails to match. */
  maxAbsErr: number;
  /**
   * Largest |actual - expected| / |expected|; Infinity where expected is 0 and actual is not,
   * and where a NaN or an infinity fails to match.
   */
  maxRelErr: number;
  /** Flat index of the element furthest past its tolerance (closest to it when all pass). */
  worstIndex: number;
  /** `worstIndex` as an n-d index when `shape` was given, else null. */
  worstIndexNd: number[] | null;
  /** Flat index of the first failing element, -1 when none fails. */
  firstBadIndex: number;
  actualAtWorst: number;
  expectedAtWorst: number;
  /** Number of elements compared. */
  count: number;
  /** Number of failing elements. */
  badCount: number;
  message: string;
}

const U32 = 2 ** -24;

/** The term count of a TOL tier: a positive integer, or a loud error (NaN bounds pass all). */
function termCount(tierName: string, arg: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw new Error(`TOL.${tierName}: ${arg} must be a positive integer (the number of terms ` +
      `summed), got ${show(n)}`);
  }
  return n;
}

/**
 * Named tolerance tiers for comparing a float32 kernel against this float64 reference, fed the
 * same float32-rounded inputs (see roundToF32). u = 2^-24 ~ 6e-8 is the float32 unit roundoff.
 * Frozen, tiers included: one test assigning TOL.exact.atol would loosen every later one.
 */
export const TOL = Object.freeze({
  /** Bit-exact: copies, layout changes, max, argmax, relu masks. */
  exact: Object.freeze<Tolerance>({ atol: 0, rtol: 0 }),
  /**
   * One float32 op per element. + - * are correctly rounded (u), but WGSL allows / and sqrt
   * 2.5 ulp, exp 3 + 2|x| ulp, and log only an absolute 2^-21 ~ 5e-7 near 1: so ~170 u
   * relative, and an absolute floor for log's absolute bound and for outputs near zero.
   */
  f32Elementwise: Object.freeze<Tolerance>({ atol: 1e-6, rtol: 1e-5 }),
  /**
   * A sum of n float32 terms of typical size `magnitude`. Each addition rounds by u times the
   * running partial sum; with rounding errors that behave like independent random signs
   * (Higham and Mary, 2019) the total is ~ sqrt(n) u |partial|. Same-sign terms make
   * |partial| ~ |result|, covered by rtol = 4 sqrt(n) u; cancelling terms leave
   * |partial| ~ sqrt(n) magnitude while the result may be near 0, covered by
   * atol = 4 n u magnitude. The factor 4 is headroom for the tail of the error distribution.
   */
  f32Reduction(n: number, magnitude = 1): Tolerance {
    const m = termCount('f32Reduction', 'n', n);
    checkNonNegative('TOL.f32Reduction', 'magnitude', magnitude);
    return { atol: 4 * m * U32 * magnitude + 1e-7, rtol: 4 * Math.sqrt(m) * U32 + 2 * U32 };
  },
  /**
   * A dot product of length k (matmul, conv with k = C*KH*KW): the sum bound above with terms
   * a_i b_i of typical size `magnitude`, plus one rounding per product (FMA may fuse it away).
   */
  f32Matmul(k: number, magnitude = 1): Tolerance {
    termCount('f32Matmul', 'k', k);
    checkNonNegative('TOL.f32Matmul', 'magnitude', magnitude);
    const t = TOL.f32Reduction(k, magnitude);
    return { atol: t.atol, rtol: t.rtol + U32 };
  },
  /**
   * Float32 gradients: a backward chains several reductions and subtracts terms of similar size
   * (batch norm's dx = g s (dy - mean(dy) - xhat mean(dy xhat)), softmax's y (dy - <dy, y>)),
   * so cancellation amplifies the relative error of the result well past the forward's.
   * 1e-3 relative (~16000 u) and 1e-4 absolute, the usual looser tier for gradients.
   */
  gradient: Object.freeze<Tolerance>({ atol: 1e-4, rtol: 1e-3 }),
});

/** Shortest round-trip form, so the printed value is exactly the one compared. */
function fmt(v: number): string {
  return String(v);
}

function formatIndex(i: number, shape: readonly number[] | undefined): string {
  if (!shape) return `[${i}]`;
  return `[${unravelIndex(i, shape).join(', ')}] (flat ${i})`;
}

/**
 * Compares `actual` to `expected`. Element i passes when |a - e| <= atol + rtol |e| holds;
 * atol and rtol are both required, each a finite number >= 0. A NaN equals nothing, not even
 * NaN, unless `equalNan` is set; an infinity passes only against the same infinity.
 */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>,
  opts: CompareOptions): CompareResult {
  const name = opts?.name ?? 'output';
  const what = `compare(${name})`;
  checkTolerance(what, opts);
  checkNumbers(what, 'actual', actual);
  checkNumbers(what, 'expected', expected);
  const { atol, rtol, shape } = opts;
  if (shape !== undefined) checkShape(what, shape);
  const equalNan = opts.equalNan ?? false;
  if (typeof equalNan !== 'boolean') {
    throw new Error(`${what}: equalNan must be true or false, got ${show(equalNan)}`);
  }
  const n = expected.length;
  if (shape && size(shape) !== n) {
    throw new Error(`${what}: shape [${shape.join(', ')}] holds ${size(shape)} ` +
      `elements but expected has ${n}`);
  }
  if (actual.length !== n) {
    return {
      ok: false, maxAbsErr: Infinity, maxRelErr: Infinity, worstIndex: -1, worstIndexNd: null,
      firstBadIndex: -1, actualAtWorst: NaN, expectedAtWorst: NaN, count: n, badCount: n,
      message: `${name}: length mismatch, actual has ${actual.length} elements, expected ${n}`,
    };
  }

  let maxAbsErr = 0;
  let maxRelErr = 0;
  let worstIndex = -1;
  // How far past its tolerance the worst element is; -Infinity so the first element counts.
  let worstExcess = -Infinity;
  let firstBadIndex = -1;
  let badCount = 0;
  for (let i = 0; i < n; i++) {
    const a = actual[i];
    const e = expected[i];
    let absErr: number;
    let relErr: number;
    let excess: number;
    let pass: boolean;
    if (Number.isFinite(a) && Number.isFinite(e)) {
      absErr = Math.abs(a - e);
      relErr = absErr === 0 ? 0 : absErr / Math.abs(e);
      const bound = atol + rtol * Math.abs(e);
      // Passes only when the comparison holds, so a NaN anywhere fails the element.
      pass = absErr <= bound;
      excess = absErr - bound;
    } else if (a === e || (equalNan && Number.isNaN(a) && Number.isNaN(e))) {
      // The same infinity, or NaN against NaN when asked for.
      absErr = 0;
      relErr = 0;
      excess = -Infinity;
      pass = true;
    } else {
      // Infinity / Infinity or NaN / anything would make the ratio NaN and hide it.
      absErr = Infinity;
      relErr = Infinity;
      excess = Infinity;
      pass = false;
    }
    if (absErr > maxAbsErr) maxAbsErr = absErr;
    if (relErr > maxRelErr) maxRelErr = relErr;
    if (!pass) {
      badCount++;
      if (firstBadIndex < 0) firstBadIndex = i;
    }
    if (excess > worstExcess) {
      worstExcess = excess;
      worstIndex = i;
    }
  }

  const ok = badCount === 0;
  const actualAtWorst = worstIndex >= 0 ? actual[worstIndex] : NaN;
  const expectedAtWorst = worstIndex >= 0 ? expected[worstIndex] : NaN;
  const tol = `|a - e| <= ${atol} + ${rtol} |e|${equalNan ? ' (NaN matching NaN)' : ''}`;
  const errs = `max abs err ${fmt(maxAbsErr)}, max rel err ${fmt(maxRelErr)}`;
  let message: string;
  if (ok) {
    message = `${name}: all ${n} elements within ${tol}; ${errs}`;
  } else {
    const at = (i: number) =>
      `${formatIndex(i, shape)}: actual ${fmt(actual[i])}, expected ${fmt(expected[i])}`;
    message = `${name}: ${badCount} of ${n} elements outside ${tol}; ` +
      `first at ${at(firstBadIndex)}; worst at ${at(worstIndex)}; ${errs}`;
  }
  return {
    ok, maxAbsErr, maxRelErr, worstIndex,
    worstIndexNd: shape && worstIndex >= 0 ? unravelIndex(worstIndex, shape) : null,
    firstBadIndex, actualAtWorst, expectedAtWorst, count: n, badCount, message,
  };
}

/** compare(), throwing an Error with its message when any element fails. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>,
  opts: CompareOptions): CompareResult {
  const result = compare(actual, expected, opts);
  if (!result.ok) throw new Error(result.message);
  return result;
}
