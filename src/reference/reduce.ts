// Reductions over axes (sum, mean, max, argmax) and the backward of sum, mean and max.

import { type RefTensor, broadcastIndexMap, zeros } from './tensor.js';

/** Normalises axes (negative counts from the end), rejecting repeats and out-of-range axes. */
function normAxes(op: string, shape: readonly number[], axes: readonly number[] | undefined)
  : number[] {
  const rank = shape.length;
  if (axes === undefined) return shape.map((_d, i) => i);
  const out = axes.map((a) => (a < 0 ? a + rank : a));
  out.forEach((a, i) => {
    if (!Number.isInteger(a) || a < 0 || a >= rank) {
      throw new Error(`${op}: axis ${axes[i]} is out of range for shape [${shape.join(', ')}]`);
    }
  });
  if (new Set(out).size !== out.length) {
    throw new Error(`${op}: repeated axis in [${axes.join(', ')}]`);
  }
  return out.sort((x, y) => x - y);
}

/** The kept shape (reduced axes as 1) and the output shape (dropped unless keepDims). */
function reducedShapes(shape: readonly number[], axes: number[], keepDims: boolean)
  : { kept: number[]; out: number[] } {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = keepDims ? kept : shape.filter((_d, i) => !axes.includes(i));
  return { kept, out };
}

/**
 * Sum over `axes` (all axes when omitted). Reducing every axis without keepDims gives shape [].
 */
export function sum(x: RefTensor, axes?: readonly number[], keepDims = false): RefTensor {
  const ax = normAxes('sum', x.shape, axes);
  const { kept, out } = reducedShapes(x.shape, ax, keepDims);
  // Every input element adds into the output element it broadcasts from.
  const map = broadcastIndexMap(kept, x.shape);
  const y = zeros(out);
  for (let i = 0; i < x.data.length; i++) y.data[map[i]] += x.data[i];
  return y;
}

function reducedCount(shape: readonly number[], axes: number[]): number {
  return axes.reduce((n, a) => n * shape[a], 1);
}

/** Mean over `axes` (all when omitted). An empty reduction gives NaN (0/0), as NumPy. */
export function mean(x: RefTensor, axes?: readonly number[], keepDims = false): RefTensor {
  const ax = normAxes('mean', x.shape, axes);
  const y = sum(x, ax, keepDims);
  const n = reducedCount(x.shape, ax);
  for (let i = 0; i < y.data.length; i++) y.data[i] /= n;
  return y;
}

function checkDy(op: string, dy: RefTensor, want: number[]): void {
  if (dy.shape.length !== want.length || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`${op}: dy must have the reduced shape [${want.join(', ')}], ` +
      `got [${dy.shape.join(', ')}]`);
  }
}

// d sum(x)/dx_i = 1: dy broadcast back over the reduced axes
export function sumBackward(dy: RefTensor, xShape: readonly number[], axes?: readonly number[],
  keepDims = false): RefTensor {
  const ax = normAxes('sumBackward', xShape, axes);
  const { kept, out } = reducedShapes(xShape, ax, keepDims);
  checkDy('sumBackward', dy, out);
  const map = broadcastIndexMap(kept, xShape);
  const dx = zeros(xShape);
  for (let i = 0; i < dx.data.length; i++) dx.data[i] = dy.data[map[i]];
  return dx;
}

// d mean(x)/dx_i = 1/n, n the number of reduced elements
export function meanBackward(dy: RefTensor, xShape: readonly number[], axes?: readonly number[],
  keepDims = false): RefTensor {
  const ax = normAxes('meanBackward', xShape, axes);
  const dx = sumBackward(dy, xShape, ax, keepDims);
  const n = reducedCount(xShape, ax);
  for (let i = 0; i < dx.data.length; i++) dx.data[i] /= n;
  return dx;
}

/** Value and first index of the maximum along one axis; NaN wins, as in NumPy and PyTorch. */
function maxAlong(x: RefTensor, axis: number, keepDims: boolean, op: string)
  : { values: RefTensor; indices: RefTensor } {
  const [a] = normAxes(op, x.shape, [axis]);
  if (x.shape[a] === 0) throw new Error(`${op}: axis ${axis} of [${x.shape.join(', ')}] is empty`);
  const { out } = reducedShapes(x.shape, [a], keepDims);
  const outer = x.shape.slice(0, a).reduce((n, d) => n * d, 1);
  const len = x.shape[a];
  const inner = x.shape.slice(a + 1).reduce((n, d) => n * d, 1);
  const values = zeros(out);
  const indices = zeros(out);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let best = -Infinity;
      let arg = 0;
      for (let k = 0; k < len; k++) {
        const v = x.data[(o * len + k) * inner + i];
        // Strict > keeps the first of tied maxima; a NaN is taken once and then kept.
        if (v > best || (Number.isNaN(v) && !Number.isNaN(best))) {
          best = v;
          arg = k;
        }
        if (Number.isNaN(best)) break;
      }
      values.data[o * inner + i] = best;
      indices.data[o * inner + i] = arg;
    }
  }
  return { values, indices };
}

/** Maximum along `axis`. */
export function max(x: RefTensor, axis: number, keepDims = false): RefTensor {
  return maxAlong(x, axis, keepDims, 'max').values;
}

/** Index (as a float64 value) of the first maximum along `axis`. */
export function argmax(x: RefTensor, axis: number, keepDims = false): RefTensor {
  return maxAlong(x, axis, keepDims, 'argmax').indices;
}

// d max(x)/dx_i = [i is the first index of the maximum]: ties send the whole gradient to the
// first maximal element, as argmax picks it, instead of splitting it
export function maxBackward(dy: RefTensor, x: RefTensor, axis: number, keepDims = false)
  : RefTensor {
  const { indices } = maxAlong(x, axis, keepDims, 'maxBackward');
  checkDy('maxBackward', dy, indices.shape);
  const a = axis < 0 ? axis + x.shape.length : axis;
  const len = x.shape[a];
  const inner = x.shape.slice(a + 1).reduce((n, d) => n * d, 1);
  const dx = zeros(x.shape);
  for (let j = 0; j < indices.data.length; j++) {
    const o = Math.floor(j / inner);
    const i = j % inner;
    dx.data[(o * len + indices.data[j]) * inner + i] = dy.data[j];
  }
  return dx;
}
