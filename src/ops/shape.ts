// Layout ops along the leading axis, done with buffer copies (rows are contiguous in
// row-major order): concatenation, slicing, and in-place assignment to a leaf.

import { registerGrad } from '../graph/autodiff.js';
import type { Tensor } from '../graph/tensor.js';
import { shapeStr } from '../graph/tensor.js';
import { checkTensor, fail, showValue } from './util.js';

/** Concatenates along axis 0; the other dimensions must match. */
export function concatRows(ts: Tensor[]): Tensor {
  if (!Array.isArray(ts) || ts.length === 0) fail('concatRows', 'needs at least one tensor');
  ts.forEach((t, i) => checkTensor('concatRows', `tensor ${i}`, t));
  const rest = ts[0].shape.slice(1);
  for (const [i, t] of ts.entries()) {
    if (t.rank !== rest.length + 1 || t.shape.slice(1).some((d, k) => d !== rest[k])) {
      fail('concatRows', `tensor ${i} ${shapeStr(t.shape)} does not match tensor 0 ` +
        `${shapeStr(ts[0].shape)} past axis 0`);
    }
  }
  if (ts.length === 1) return ts[0];
  const rows = ts.reduce((a, t) => a + t.shape[0], 0);
  const [out] = ts[0].engine.record({
    op: 'concatRows', inputs: ts, outputs: [[rows, ...rest]],
    encode: (ctx) => {
      let at = 0;
      ts.forEach((t, i) => {
        ctx.recorder.copy(ctx.input(i).buffer, 0, ctx.output(0).buffer, at, t.bytes);
        at += t.bytes;
      });
    },
  });
  return out;
}

/** Rows [start, end) of x. */
export function sliceRows(x: Tensor, start: number, end: number): Tensor {
  checkTensor('sliceRows', 'x', x);
  if (x.rank < 1 || !Number.isInteger(start) || !Number.isInteger(end) || start < 0 ||
    end > x.shape[0] || start >= end) {
    fail('sliceRows', `rows [${showValue(start)}, ${showValue(end)}) are not a non-empty range ` +
      `of ${x.describe()}`);
  }
  const rowBytes = x.bytes / x.shape[0];
  const [out] = x.engine.record({
    op: 'sliceRows', inputs: [x], outputs: [[end - start, ...x.shape.slice(1)]],
    attrs: { start, end },
    encode: (ctx) => ctx.recorder.copy(ctx.input(0).buffer, start * rowBytes,
      ctx.output(0).buffer, 0, (end - start) * rowBytes),
  });
  return out;
}

/** g placed at rows [start, start + g.rows) of a zero tensor with `rows` rows. */
function padRows(g: Tensor, start: number, rows: number): Tensor {
  const rowBytes = g.bytes / g.shape[0];
  const [out] = g.engine.record({
    op: 'padRows', inputs: [g], outputs: [[rows, ...g.shape.slice(1)]], attrs: { start },
    encode: (ctx) => {
      const o = ctx.output(0).buffer;
      ctx.recorder.clear(o, 0, rows * rowBytes);
      ctx.recorder.copy(ctx.input(0).buffer, 0, o, start * rowBytes, g.bytes);
    },
  });
  return out;
}

/**
 * Writes `value` into the leaf `target` in place, ordered after every earlier read of
 * target and before every later one (runs keep creation order). Carries no gradient.
 */
export function assign(target: Tensor, value: Tensor): void {
  checkTensor('assign', 'target', target);
  checkTensor('assign', 'value', value);
  if (target.node) fail('assign', `target ${target.describe()} must be a leaf`);
  if (target.size !== value.size) {
    fail('assign', `value ${value.describe()} does not fit target ${target.describe()}`);
  }
  // Copying a buffer onto itself is invalid in WebGPU, and would change nothing anyway.
  if (value === target) return;
  target.engine.record({
    op: 'assign', inputs: [value], outputs: [], mutates: [target], differentiable: false,
    encode: (ctx) => ctx.recorder.copy(ctx.input(0).buffer, 0, ctx.mutated(0).buffer, 0,
      value.bytes),
  });
}

/** Writes `value` into rows [row, row + value.rows) of the leaf `target` in place. */
export function assignRows(target: Tensor, row: number, value: Tensor): void {
  checkTensor('assignRows', 'target', target);
  if (target.node) fail('assignRows', `target ${target.describe()} must be a leaf`);
  checkTensor('assignRows', 'value', value);
  if (value === target) fail('assignRows', `value and target are the same tensor`);
  const rowBytes = target.bytes / target.shape[0];
  if (!Number.isInteger(row) || value.bytes % rowBytes !== 0 || row < 0 ||
    row * rowBytes + value.bytes > target.bytes) {
    fail('assignRows', `${value.describe()} at row ${showValue(row)} does not fit ` +
      target.describe());
  }
  target.engine.record({
    op: 'assignRows', inputs: [value], outputs: [], mutates: [target], differentiable: false,
    encode: (ctx) => ctx.recorder.copy(ctx.input(0).buffer, 0, ctx.mutated(0).buffer,
      row * rowBytes, value.bytes),
  });
}

// d concat(x_0..x_n) = the matching row ranges of dy
registerGrad('concatRows', ({ inputs, grads: [g], needs }) => {
  let at = 0;
  return inputs.map((t, i) => {
    const s = at;
    at += t.shape[0];
    return needs[i] ? sliceRows(g!, s, s + t.shape[0]) : null;
  });
});
// d slice(x) = dy placed at the slice's rows of zeros
registerGrad('sliceRows', ({ inputs: [x], grads: [g], attrs }) =>
  [padRows(g!, attrs.start as number, x.shape[0])]);
// d pad(g) = the rows that were placed
registerGrad('padRows', ({ inputs: [g], grads: [d], attrs }) =>
  [sliceRows(d!, attrs.start as number, (attrs.start as number) + g.shape[0])]);
