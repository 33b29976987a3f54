// Layout ops along the leading axis, as the engine's: concatenation and slicing of rows.

import { type RefTensor, size, zeros } from './tensor.js';

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** The tensors' rows one after another; each has at least one axis, the same ones past 0. */
export function concatRows(ts: readonly RefTensor[]): RefTensor {
  if (!Array.isArray(ts as unknown) || ts.length === 0) {
    throw new Error('concatRows: needs at least one tensor');
  }
  const rest = ts[0].shape.slice(1);
  ts.forEach((t, i) => {
    if (t.shape.length === 0) {
      throw new Error(`concatRows: tensor ${i} is a scalar []; rows need at least one axis`);
    }
    if (t.shape.length !== rest.length + 1 || t.shape.slice(1).some((d, k) => d !== rest[k])) {
      throw new Error(`concatRows: tensor ${i} ${fmt(t.shape)} does not match tensor 0 ` +
        `${fmt(ts[0].shape)} past axis 0`);
    }
  });
  const rows = ts.reduce((n, t) => n + t.shape[0], 0);
  const out = zeros([rows, ...rest]);
  let at = 0;
  for (const t of ts) {
    out.data.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

// d concat(x_0 .. x_n) / d x_i = the rows of dy that x_i filled
export function concatRowsBackward(dy: RefTensor, shapes: readonly (readonly number[])[])
  : RefTensor[] {
  if (!Array.isArray(shapes as unknown) || shapes.length === 0) {
    throw new Error('concatRowsBackward: needs the shape of at least one input');
  }
  const rows = shapes.reduce((n, s) => n + (s[0] ?? 0), 0);
  const rest = shapes[0].slice(1);
  const want = [rows, ...rest];
  if (shapes.some((s) => s.length !== want.length || s.slice(1).some((d, k) => d !== rest[k])) ||
    dy.shape.length !== want.length || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`concatRowsBackward: dy ${fmt(dy.shape)} is not the concatenation of ` +
      `${shapes.map(fmt).join(', ')}`);
  }
  let at = 0;
  return shapes.map((s) => {
    const n = size(s);
    const g = zeros(s);
    g.data.set(dy.data.subarray(at, at + n));
    at += n;
    return g;
  });
}

function checkRange(op: string, shape: readonly number[], start: number, end: number): void {
  if (shape.length < 1 || !Number.isInteger(start) || !Number.isInteger(end) || start < 0 ||
    end > shape[0] || start >= end) {
    throw new Error(`${op}: rows [${start}, ${end}) are not a non-empty range of ` +
      `${fmt(shape)}`);
  }
}

/** Rows [start, end) of x. */
export function sliceRows(x: RefTensor, start: number, end: number): RefTensor {
  checkRange('sliceRows', x.shape, start, end);
  const rowSize = x.data.length / x.shape[0];
  const out = zeros([end - start, ...x.shape.slice(1)]);
  out.data.set(x.data.subarray(start * rowSize, end * rowSize));
  return out;
}

// d slice(x) / dx = dy placed at the slice's rows, zeros elsewhere
export function sliceRowsBackward(dy: RefTensor, xShape: readonly number[], start: number,
  end: number): RefTensor {
  checkRange('sliceRowsBackward', xShape, start, end);
  const want = [end - start, ...xShape.slice(1)];
  if (dy.shape.length !== want.length || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`sliceRowsBackward: dy must be ${fmt(want)} (rows [${start}, ${end}) of ` +
      `${fmt(xShape)}), got ${fmt(dy.shape)}`);
  }
  const dx = zeros(xShape);
  dx.data.set(dy.data, start * (size(xShape) / xShape[0]));
  return dx;
}
