// Sum, mean and max over chosen axes (shaders/reduce.wgsl) with their gradients, and
// sumToShape: the one helper that undoes broadcasting in gradients.

import { registerGrad } from '../graph/autodiff.js';
import type { Tensor, Shape } from '../graph/tensor.js';
import { shapeStr } from '../graph/tensor.js';
import { elementwiseTilingOf } from './elementwise.js';
import { broadcastStrides, checkFlag, checkTensor, collapseDims, fail, groups,
  showValue } from './util.js';

const WG = 64;
/** Past this many elements per output, and with few outputs, split into chunks. */
const CHUNK = 1024;

/**
 * Axes normalised (negative counts from the end) and sorted. An axis named twice, [0, 0] or
 * [1, -1] on rank 2, is refused as PyTorch refuses it ("dim appears multiple times"): it
 * is a caller's mistake that a silent de-duplication would hide.
 */
function normAxes(op: string, x: Tensor, axes: number | readonly number[] | undefined): number[] {
  if (axes !== undefined && typeof axes !== 'number' && !Array.isArray(axes)) {
    fail(op, `axes must be an axis, an array of axes or undefined (all), got ${showValue(axes)}`);
  }
  const list = axes === undefined ? x.shape.map((_, i) => i) : typeof axes === 'number' ? [axes] :
    [...axes];
  const out: number[] = [];
  for (const a of list) {
    if (!Number.isInteger(a)) {
      fail(op, `axis ${showValue(a)} is not an integer (the axes of ${x.describe()} are ` +
        `${-x.rank}..${x.rank - 1})`);
    }
    if (a < -x.rank || a >= x.rank) fail(op, `axis ${a} is out of range for ${x.describe()}`);
    const n = a < 0 ? a + x.rank : a;
    if (out.includes(n)) {
      fail(op, `axes [${list.join(', ')}] name axis ${n} more than once (each axis may ` +
        `appear once) for ${x.describe()}`);
    }
    out.push(n);
  }
  return out.sort((a, b) => a - b);
}

function rowMajorStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * A reduction of x over `axes` as reduce.wgsl reads it: the kept (o) and reduced (r)
 * dimensions, each collapsed to at most four sizes and strides into x.
 */
function reduction(op: string, x: Tensor, axes: number[]) {
  const strides = rowMajorStrides(x.shape);
  const keptDims = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const keptShape = keptDims.map((i) => x.shape[i]);
  const redShape = axes.map((i) => x.shape[i]);
  const nOut = keptShape.reduce((a, b) => a * b, 1);
  const nRed = redShape.reduce((a, b) => a * b, 1);
  const outC = collapseDims(op, keptShape, [keptDims.map((i) => strides[i])]);
  const redC = collapseDims(op, redShape, [axes.map((i) => strides[i])]);
  /** The shader's uniforms: each thread reduces `chunk` of its output's n_red elements. */
  const uniforms = (chunk: number, nChunks: number, scale: number) => ({
    n_out: nOut, n_red: nRed, chunk, n_chunks: nChunks, out_shape: outC.shape,
    out_strides: outC.strides[0], red_shape: redC.shape, red_strides: redC.strides[0], scale,
  });
  return { keptShape, nOut, nRed, uniforms };
}

function reduceOp(op: 'sum' | 'mean' | 'max', x: Tensor, axesIn: number | readonly number[] |
  undefined, keepDims: boolean): Tensor {
  checkTensor(op, 'x', x);
  const axes = normAxes(op, x, axesIn);
  checkFlag(op, 'keepDims', keepDims, false);
  const { keptShape, nOut, nRed, uniforms } = reduction(op, x, axes);
  const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : keptShape;
  const scale = op === 'mean' ? 1 / nRed : 1;
  const OP = op === 'max' ? 1 : 0;
  const nChunks = nOut < 256 && nRed > CHUNK ? Math.ceil(nRed / CHUNK) : 1;
  const [out] = x.engine.record({
    op, inputs: [x], outputs: [outShape.length ? outShape : []], attrs: { axes, keepDims },
    encode: (ctx) => {
      if (nChunks === 1) {
        ctx.dispatch({
          shader: 'reduce', overrides: { WG, OP },
          bindings: { x: ctx.input(0), out: ctx.output(0) },
          uniforms: uniforms(nRed, 1, scale), workgroups: groups(nOut, WG),
        });
        return;
      }
      const partial = ctx.scratch(nOut * nChunks * 4);
      ctx.dispatch({
        shader: 'reduce', overrides: { WG, OP }, bindings: { x: ctx.input(0), out: partial },
        uniforms: uniforms(CHUNK, nChunks, 1), workgroups: groups(nOut * nChunks, WG),
      });
      ctx.dispatch({
        shader: 'reduce', overrides: { WG, OP }, bindings: { x: partial, out: ctx.output(0) },
        uniforms: { n_out: nOut, n_red: nChunks, chunk: nChunks, n_chunks: 1,
          out_shape: [1, 1, 1, nOut], out_strides: [0, 0, 0, nChunks],
          red_shape: [1, 1, 1, nChunks], red_strides: [0, 0, 0, 1], scale },
        workgroups: groups(nOut, WG),
      });
    },
  });
  return out;
}

export const sum = (x: Tensor, axes?: number | readonly number[], keepDims = false) =>
  reduceOp('sum', x, axes, keepDims);
export const mean = (x: Tensor, axes?: number | readonly number[], keepDims = false) =>
  reduceOp('mean', x, axes, keepDims);
/**
 * Maximum over axes; NaN where the reduced set holds a NaN (as PyTorch). Its gradient goes
 * whole to the first maximal element of each reduced set (row-major order over the reduced
 * axes), as argmax picks it, or to the first NaN.
 */
export const max = (x: Tensor, axes?: number | readonly number[], keepDims = false) =>
  reduceOp('max', x, axes, keepDims);

/** dx of y = max(x, axes): dy (y's shape) at each first maximum of x, zero elsewhere. */
function maxGrad(x: Tensor, y: Tensor, dy: Tensor, axes: number[]): Tensor {
  const { nOut, nRed, uniforms } = reduction('max', x, axes);
  const [dx] = x.engine.record({
    op: 'maxGrad', inputs: [x, y, dy], outputs: [[...x.shape]],
    encode: (ctx) => {
      const out = ctx.output(0);
      ctx.recorder.clear(out.buffer, out.offset, out.size);
      ctx.dispatch({
        shader: 'reduce', entry: 'max_grad', overrides: { WG },
        bindings: { x: ctx.input(0), y: ctx.input(1), dy: ctx.input(2), out },
        uniforms: uniforms(nRed, 1, 1), workgroups: groups(nOut, WG),
      });
    },
  });
  return dx;
}

/** Sums `g` over the axes along which a tensor of `shape` was broadcast to g's shape. */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (g.rank === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const pad = g.rank - shape.length;
  if (pad < 0) fail('sumToShape', `cannot reduce ${g.describe()} to ${shapeStr(shape)}`);
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    const d = i < pad ? 1 : shape[i - pad];
    if (i < pad || (d === 1 && g.shape[i] !== 1)) axes.push(i);
    else if (d !== g.shape[i]) {
      fail('sumToShape', `cannot reduce ${g.describe()} to ${shapeStr(shape)}`);
    }
  }
  const s = sum(g, axes, true);
  return reshape(s, shape);
}

/** Broadcasts x to `shape` (a copy through the elementwise kernel). */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  checkTensor('broadcastTo', 'x', x);
  if (!Array.isArray(shape) ||
    shape.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < 0)) {
    fail('broadcastTo', `shape must be an array of non-negative integers, got ` +
      `${JSON.stringify(shape)} (x ${x.describe()})`);
  }
  if (x.rank === shape.length && x.shape.every((d, i) => d === shape[i])) return x;
  // As NumPy: x's axes align with the target's last ones; the target may add leading axes,
  // never drop any (dropping one would drop data).
  if (x.rank > shape.length) {
    fail('broadcastTo', `${x.describe()} has ${x.rank} axes, more than the target ` +
      `${shapeStr(shape)}: broadcasting adds leading axes, it never removes any`);
  }
  for (let i = 0; i < shape.length; i++) {
    const d = x.shape[x.rank - shape.length + i] ?? 1;
    if (d !== 1 && d !== shape[i]) {
      fail('broadcastTo', `${x.describe()} does not broadcast to ${shapeStr(shape)}`);
    }
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const c = collapseDims('broadcastTo', shape, [broadcastStrides(x.shape, shape)]);
  // The elementwise ops' tiling: runs of VPT outputs per thread on CPU drivers (a thread per
  // output, as this op once had everywhere, took 10x a same-sized relu on lavapipe).
  const { WG, VPT } = elementwiseTilingOf(x.engine);
  const [out] = x.engine.record({
    op: 'broadcastTo', inputs: [x], outputs: [shape],
    encode: (ctx) => ctx.dispatch({
      shader: 'elementwise', entry: 'unary_main', overrides: { WG, VPT, OP: 11 },
      bindings: { a: ctx.input(0), out: ctx.output(0) },
      uniforms: { n, shape: c.shape, a_strides: c.strides[0], b_strides: [0, 0, 0, 0],
        alpha: 0, beta: 0 },
      workgroups: groups(Math.ceil(n / VPT), WG),
    }),
  });
  return out;
}

/** Same values, new shape (a copy; the graph keeps one buffer per tensor). */
export function reshape(x: Tensor, shape: Shape): Tensor {
  checkTensor('reshape', 'x', x);
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== x.size) fail('reshape', `cannot reshape ${x.describe()} to ${shapeStr(shape)}`);
  const [out] = x.engine.record({
    op: 'reshape', inputs: [x], outputs: [shape],
    encode: (ctx) => ctx.recorder.copy(ctx.input(0).buffer, 0, ctx.output(0).buffer, 0, x.bytes),
  });
  return out;
}

// d sum(x) = broadcast of dy over the summed axes
registerGrad('sum', ({ inputs: [x], grads: [g], attrs }) =>
  [broadcastTo(reshape(g!, keptShape(x.shape, attrs.axes as number[])), x.shape)]);
// d mean(x) = broadcast of dy / n over the averaged axes
registerGrad('mean', ({ inputs: [x], outputs: [y], grads: [g], attrs }) => {
  const n = x.size / y.size;
  return [broadcastTo(reshape(scaleBy(g!, 1 / n), keptShape(x.shape, attrs.axes as number[])),
    x.shape)];
});
// d max(x)/dx_i = [i is the first maximum of its reduced set]: dy there, zero elsewhere
registerGrad('max', ({ inputs: [x], outputs: [y], grads: [g], attrs }) =>
  [maxGrad(x, y, g!, attrs.axes as number[])]);
// d broadcastTo(x) = sum of dy over the broadcast axes
registerGrad('broadcastTo', ({ inputs: [x], grads: [g] }) => [sumToShape(g!, x.shape)]);
// d reshape(x) = reshape(dy) back
registerGrad('reshape', ({ inputs: [x], grads: [g] }) => [reshape(g!, x.shape)]);

function keptShape(shape: Shape, axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

// Late import avoids a cycle: elementwise imports sumToShape from here.
import { scale as scaleBy } from './elementwise.js';
