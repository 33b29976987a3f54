// Reductions over axes (sum, mean, max, argmax) and the backward of sum, mean and max.

import { type RefTensor, broadcastIndexMap, zeros } from './tensor.js';

/** Axes as the engine's reductions take them: one, a list, or all when omitted. */
export type Axes = number | readonly number[] | undefined;

/**
 * Normalises axes (negative counts from the end) and sorts them, rejecting out-of-range
 * axes and axes repeated after normalising ([1, -2] on rank 3 names axis 1 twice), as
 * PyTorch does and the engine's reductions do.
 */
function normAxes(op: string, shape: readonly number[], axes: Axes): number[] {
  const rank = shape.length;
  const shapeText = `[${shape.join(', ')}]`;
  if (axes === undefined) return shape.map((_d, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  if (!Array.isArray(list)) {
    throw new Error(`${op}: axes must be a number or an array of numbers, got ${String(axes)}`);
  }
  const out = list.map((a) => (a < 0 ? a + rank : a));
  out.forEach((a, i) => {
    if (!Number.isInteger(a) || a < 0 || a >= rank) {
      throw new Error(`${op}: axis ${list[i]} is out of range for shape ${shapeText}`);
    }
  });
  const twice = out.find((a, i) => out.indexOf(a) !== i);
  if (twice !== undefined) {
    throw new Error(`${op}: axes [${list.join(', ')}] name axis ${twice} more than once ` +
      `(repeated axis) for shape ${shapeText}`);
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
export function sum(x: RefTensor, axes?: Axes, keepDims = false): RefTensor {
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
export function mean(x: RefTensor, axes?: Axes, keepDims = false): RefTensor {
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
export function sumBackward(dy: RefTensor, xShape: readonly number[], axes?: Axes,
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
export function meanBackward(dy: RefTensor, xShape: readonly number[], axes?: Axes,
  keepDims = false): RefTensor {
  const ax = normAxes('meanBackward', xShape, axes);
  const dx = sumBackward(dy, xShape, ax, keepDims);
  const n = reducedCount(xShape, ax);
  for (let i = 0; i < dx.data.length; i++) dx.data[i] /= n;
  return dx;
}

/**
 * Value and flat index into x of the first maximum of each reduced set, first in row-major
 * order over the reduced axes (as the engine's max and its gradient pick it); a NaN wins,
 * as in NumPy and PyTorch.
 */
function maxOver(x: RefTensor, axes: Axes, keepDims: boolean, op: string)
  : { values: RefTensor; at: Int32Array; ax: number[] } {
  const ax = normAxes(op, x.shape, axes);
  const empty = ax.find((a) => x.shape[a] === 0);
  if (empty !== undefined) {
    throw new Error(`${op}: axis ${empty} of [${x.shape.join(', ')}] is empty`);
  }
  const { kept, out } = reducedShapes(x.shape, ax, keepDims);
  // Row-major order over x visits each reduced set in row-major order over its axes.
  const map = broadcastIndexMap(kept, x.shape);
  const values = zeros(out);
  values.data.fill(-Infinity);
  const at = new Int32Array(values.data.length).fill(-1);
  for (let i = 0; i < x.data.length; i++) {
    const o = map[i];
    const v = x.data[i];
    const best = values.data[o];
    // Strict > keeps the first of tied maxima; a NaN is taken once and then kept. -Infinity
    // everywhere still marks its first element.
    if (at[o] < 0 || v > best || (Number.isNaN(v) && !Number.isNaN(best))) {
      values.data[o] = v;
      at[o] = i;
    }
  }
  return { values, at, ax };
}

/**
 * Maximum over `axes` (one, a list, or all when omitted), as the engine's `max`: NaN where
 * the reduced set holds a NaN.
 */
export function max(x: RefTensor, axes?: Axes, keepDims = false): RefTensor {
  return maxOver(x, axes, keepDims, 'max').values;
}

/** Index (as a float64 value) of the first maximum along one `axis`. */
export function argmax(x: RefTensor, axis: number, keepDims = false): RefTensor {
  if (typeof axis !== 'number') {
    // An index along several axes at once has no single coordinate to give.
    throw new Error(`argmax: takes one axis (a number), got ${JSON.stringify(axis)}`);
  }
  const { values, at, ax: [a] } = maxOver(x, axis, keepDims, 'argmax');
  const len = x.shape[a];
  const inner = x.shape.slice(a + 1).reduce((n, d) => n * d, 1);
  for (let j = 0; j < at.length; j++) values.data[j] = Math.floor(at[j] / inner) % len;
  return values;
}

// d max(x)/dx_i = [i is the first maximum of its reduced set, row-major over the reduced
// axes]: ties send the whole gradient to the first maximal element, as argmax picks it,
// instead of splitting it
export function maxBackward(dy: RefTensor, x: RefTensor, axes?: Axes, keepDims = false)
  : RefTensor {
  const { values, at } = maxOver(x, axes, keepDims, 'maxBackward');
  checkDy('maxBackward', dy, values.shape);
  const dx = zeros(x.shape);
  for (let j = 0; j < at.length; j++) dx.data[at[j]] = dy.data[j];
  return dx;
}
