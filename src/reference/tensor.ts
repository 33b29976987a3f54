// Float64 row-major tensors for the CPU reference, plus the shape helpers every kernel uses.

import { checkNumbers, checkShape, show } from './checks.js';

/** A dense float64 tensor in row-major (C) order. A scalar has shape [] and one element. */
export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/** Builds the value at flat index `i`, whose n-d index is `index`. */
export type TensorInit = (i: number, index: number[]) => number;

/** Number of elements of a shape; [] is a scalar, so 1. */
export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides, in elements. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** The n-d index of flat index `i` in `shape`. */
export function unravelIndex(i: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return index;
}

/** The flat index of n-d `index` in `shape`. */
export function ravelIndex(index: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d] + index[d];
  return i;
}

/**
 * Makes a tensor from a Float64Array (used as is, not copied), a number array or a function.
 * Anything but numbers is refused (a string would become NaN), as the engine's tensor().
 */
export function ref(
  shape: readonly number[],
  init: Float64Array | ArrayLike<number> | TensorInit,
): RefTensor {
  checkShape('ref', shape);
  const n = size(shape);
  let data: Float64Array;
  if (typeof init === 'function') {
    data = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v: unknown = init(i, unravelIndex(i, shape));
      if (typeof v !== 'number') {
        throw new Error(`ref: the function gave ${show(v)} at flat index ${i}, not a number`);
      }
      data[i] = v;
    }
  } else {
    checkNumbers('ref', 'data', init);
    data = init instanceof Float64Array ? init : Float64Array.from(init);
    if (data.length !== n) {
      throw new Error(
        `ref: shape [${shape.join(', ')}] holds ${n} elements but ${data.length} values were given`,
      );
    }
  }
  return { shape: [...shape], data };
}

export function zeros(shape: readonly number[]): RefTensor {
  checkShape('zeros', shape);
  return { shape: [...shape], data: new Float64Array(size(shape)) };
}

export function full(shape: readonly number[], value: number): RefTensor {
  if (typeof value !== 'number') {
    throw new Error(`full: value must be a number, got ${show(value)}`);
  }
  const t = zeros(shape);
  t.data.fill(value);
  return t;
}

/** Standard normal samples from a uniform rng (Box-Muller, one pair per two draws). */
export function randn(shape: readonly number[], rng: () => number): RefTensor {
  const t = zeros(shape);
  const n = t.data.length;
  for (let i = 0; i < n; i += 2) {
    // 1 - u keeps the log argument in (0, 1], so no log(0).
    const r = Math.sqrt(-2 * Math.log(1 - rng()));
    const theta = 2 * Math.PI * rng();
    t.data[i] = r * Math.cos(theta);
    if (i + 1 < n) t.data[i + 1] = r * Math.sin(theta);
  }
  return t;
}

/** Uniform samples in [lo, hi); the default [-1, 1) is centred so sums cancel as in real data. */
export function uniform(shape: readonly number[], rng: () => number, lo = -1, hi = 1): RefTensor {
  const t = zeros(shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = lo + (hi - lo) * rng();
  return t;
}

export function clone(t: RefTensor): RefTensor {
  return { shape: [...t.shape], data: Float64Array.from(t.data) };
}

/** Same data, new shape of the same size. */
export function reshape(t: RefTensor, shape: readonly number[]): RefTensor {
  if (size(shape) !== t.data.length) {
    throw new Error(`reshape: cannot view [${t.shape.join(', ')}] as [${shape.join(', ')}]`);
  }
  return { shape: [...shape], data: t.data };
}

/**
 * Rounds every element to the nearest float32, so the reference starts from the very values a
 * GPU buffer holds; otherwise input rounding (2^-24 relative) is charged to the kernel.
 */
export function roundToF32(t: RefTensor): RefTensor {
  return { shape: [...t.shape], data: Float64Array.from(t.data, Math.fround) };
}

/** NumPy broadcasting: align from the right; each pair of sizes must match or one must be 1. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(
        `broadcastShapes: [${a.join(', ')}] and [${b.join(', ')}] do not broadcast ` +
          `(axis ${i} of the result: ${da} vs ${db}; sizes must match or one must be 1)`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * For each flat index of `outShape`, the flat index of the element of `inShape` it reads under
 * broadcasting. The one place that maps broadcast outputs back to their inputs.
 */
export function broadcastIndexMap(inShape: readonly number[], outShape: readonly number[])
  : Int32Array {
  const rank = outShape.length;
  const offset = rank - inShape.length;
  if (offset < 0) {
    throw new Error(`broadcastIndexMap: [${inShape.join(', ')}] has more axes than ` +
      `[${outShape.join(', ')}]`);
  }
  // Input strides laid against the output axes, 0 where the input repeats along the axis.
  const inStrides = strides(inShape);
  const s = new Array<number>(rank).fill(0);
  for (let d = 0; d < inShape.length; d++) {
    const o = outShape[d + offset];
    if (inShape[d] !== o && inShape[d] !== 1) {
      throw new Error(`broadcastIndexMap: [${inShape.join(', ')}] does not broadcast to ` +
        `[${outShape.join(', ')}]`);
    }
    s[d + offset] = inShape[d] === 1 ? 0 : inStrides[d];
  }
  const n = size(outShape);
  const map = new Int32Array(n);
  const idx = new Array<number>(rank).fill(0);
  let flat = 0;
  for (let i = 0; i < n; i++) {
    map[i] = flat;
    // Odometer increment of the output index, tracking the input offset alongside.
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      flat += s[d];
      if (idx[d] < outShape[d]) break;
      flat -= s[d] * idx[d];
      idx[d] = 0;
    }
  }
  return map;
}

/** Broadcasts `t` to `shape`, materialising the repeats. */
export function broadcastTo(t: RefTensor, shape: readonly number[]): RefTensor {
  const map = broadcastIndexMap(t.shape, shape);
  const out = zeros(shape);
  for (let i = 0; i < map.length; i++) out.data[i] = t.data[map[i]];
  return out;
}

/**
 * Undoes broadcasting: sums `grad` over every axis along which `shape` was repeated, so the
 * result has `shape`. d(broadcast x)/dx routes each output back to its one source: a sum.
 */
export function reduceToShape(grad: RefTensor, shape: readonly number[]): RefTensor {
  const g = grad.shape;
  const offset = g.length - shape.length;
  if (offset < 0 || shape.some((d, i) => d !== 1 && d !== g[i + offset])) {
    throw new Error(`reduceToShape: gradient [${grad.shape.join(', ')}] is not a broadcast of ` +
      `[${shape.join(', ')}]`);
  }
  const map = broadcastIndexMap(shape, grad.shape);
  const out = zeros(shape);
  for (let i = 0; i < map.length; i++) out.data[map[i]] += grad.data[i];
  return out;
}

/** Same shape, or a loud error naming the op and both shapes. */
export function assertSameShape(op: string, a: readonly number[], b: readonly number[],
  what = 'shapes'): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
    throw new Error(`${op}: ${what} must match, got [${a.join(', ')}] and [${b.join(', ')}]`);
  }
}
