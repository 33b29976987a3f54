// Elementwise ops with NumPy broadcasting, forward and backward (shaders/elementwise.wgsl).

import { isCpuAdapter } from '../gpu/acquire.js';
import { registerGrad, setGradHelpers } from '../graph/autodiff.js';
import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import type { BufferRange } from '../gpu/context.js';
import { sumToShape } from './reduce.js';
import { broadcastShapes, broadcastStrides, checkFinite, checkKeys, checkTensor, collapseDims,
  fail, vectorRange,
  groups, optionKeys, showValue } from './util.js';

/**
 * Threads per workgroup and consecutive elements per thread. On lavapipe a thread that
 * loops over a run is several times faster than one element per thread (fewer invocations,
 * one index division per run); GPUs want one element per thread for coalesced loads.
 */
export interface ElementwiseTiling {
  WG: number;
  VPT: number;
}

export const ELEMENTWISE_CPU_TILING: ElementwiseTiling = { WG: 64, VPT: 16 };
export const ELEMENTWISE_GPU_TILING: ElementwiseTiling = { WG: 256, VPT: 1 };

export function defaultElementwiseTiling(adapterInfo: string): ElementwiseTiling {
  return isCpuAdapter(adapterInfo) ? ELEMENTWISE_CPU_TILING
    : ELEMENTWISE_GPU_TILING;
}

// Per engine: a forced tiling (tests, benchmarks) or the adapter's default.
const forced = new WeakMap<object, ElementwiseTiling>();

/**
 * Forces the elementwise tiling of one engine (tests, benchmarks); null goes back to the
 * adapter's default. Applies to ops recorded afterwards.
 */
export function setElementwiseTiling(engine: Engine, t: ElementwiseTiling | null):
  void {
  if (t === null) {
    forced.delete(engine);
    return;
  }
  checkKeys('setElementwiseTiling', 'tiling', t,
    optionKeys<ElementwiseTiling>({ WG: true, VPT: true }));
  for (const key of ['WG', 'VPT'] as const) {
    if (!Number.isInteger(t[key]) || t[key] < 1 || t[key] > 1024) {
      fail('setElementwiseTiling', `${key} must be an integer in 1..1024, got ` +
        showValue(t[key]));
    }
  }
  forced.set(engine, { ...t });
}

/** The elementwise tiling an engine's ops use now: the forced one, else the adapter's. */
export function elementwiseTilingOf(engine: Engine): ElementwiseTiling {
  return forced.get(engine) ?? defaultElementwiseTiling(engine.gpu.adapterInfo);
}

export const BINARY = {
  add: 0, sub: 1, mul: 2, div: 3, reluGrad: 4, maximum: 5, minimum: 6, leakyReluGrad: 7,
  sigmoidGrad: 8, tanhGrad: 9, axpby: 10, addRelu: 11, geMask: 12,
} as const;
export const UNARY = {
  neg: 0, relu: 1, exp: 2, log: 3, sqrt: 4, square: 5, sigmoid: 6, tanh: 7, abs: 8,
  affine: 9, leakyRelu: 10, copy: 11, fill: 12, reciprocal: 13, sign: 14,
} as const;

type BinaryName = keyof typeof BINARY;
/**
 * Masks: piecewise constant, so their outputs carry no gradient (zero almost everywhere).
 * The activations' gradients (reluGrad, ...) are differentiable: second derivatives pass.
 */
const NOT_DIFFERENTIABLE: ReadonlySet<BinaryName> = new Set(['geMask']);
type UnaryName = keyof typeof UNARY;

function binaryOp(name: BinaryName, a: Tensor, b: Tensor, alpha = 0, beta = 0): Tensor {
  checkTensor(name, 'a', a);
  checkTensor(name, 'b', b);
  if (a.engine !== b.engine) fail(name, 'a and b belong to different engines');
  const outShape = broadcastShapes(name, a.shape, b.shape);
  const n = outShape.reduce((x, y) => x * y, 1);
  const c = collapseDims(name, outShape,
    [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
  const contiguous = a.size === n && b.size === n;
  const { WG, VPT } = elementwiseTilingOf(a.engine);
  const [out] = a.engine.record({
    op: name, inputs: [a, b], outputs: [outShape], attrs: { alpha, beta },
    differentiable: !NOT_DIFFERENTIABLE.has(name),
    encode: (ctx) => {
      const uniforms = { n, shape: c.shape, a_strides: c.strides[0], b_strides: c.strides[1],
        alpha, beta };
      const [a4, b4, out4] = [ctx.input(0), ctx.input(1), ctx.output(0)]
        .map((r) => vectorRange(r, 4));
      if (contiguous && a4 && b4 && out4) {
        const V = Math.max(1, VPT >> 2);
        ctx.dispatch({
          shader: 'elementwise', entry: 'binary_vec4', overrides: { WG, VPT: V, OP: BINARY[name] },
          bindings: { a4, b4, out4 }, uniforms, workgroups: groups(Math.ceil(n / 4 / V), WG),
        });
        return;
      }
      ctx.dispatch({
        shader: 'elementwise', entry: 'binary_main',
        overrides: { WG, VPT, OP: BINARY[name], CONTIGUOUS: contiguous ? 1 : 0 },
        bindings: { a: ctx.input(0), b: ctx.input(1), out: ctx.output(0) },
        uniforms, workgroups: groups(Math.ceil(n / VPT), WG),
      });
    },
  });
  return out;
}

function unaryOp(name: UnaryName | 'scale' | 'addScalar', op: number, a: Tensor, alpha = 0,
  beta = 0): Tensor {
  checkTensor(name, 'x', a);
  const n = a.size;
  const { WG, VPT } = elementwiseTilingOf(a.engine);
  const [out] = a.engine.record({
    op: name, inputs: [a], outputs: [a.shape], attrs: { alpha, beta },
    encode: (ctx) => {
      const uniforms = { n, shape: [1, 1, 1, n], a_strides: [0, 0, 0, 1],
        b_strides: [0, 0, 0, 0], alpha, beta };
      const [a4, out4] = [ctx.input(0), ctx.output(0)].map((r) => vectorRange(r, 4));
      if (a4 && out4) {
        const V = Math.max(1, VPT >> 2);
        ctx.dispatch({
          shader: 'elementwise', entry: 'unary_vec4', overrides: { WG, VPT: V, OP: op },
          bindings: { a4, out4 }, uniforms, workgroups: groups(Math.ceil(n / 4 / V), WG),
        });
        return;
      }
      ctx.dispatch({
        shader: 'elementwise', entry: 'unary_main', overrides: { WG, VPT, OP: op, CONTIGUOUS: 1 },
        bindings: { a: ctx.input(0), out: ctx.output(0) }, uniforms,
        workgroups: groups(Math.ceil(n / VPT), WG),
      });
    },
  });
  return out;
}

export const add = (a: Tensor, b: Tensor) => binaryOp('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binaryOp('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binaryOp('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binaryOp('div', a, b);
export const maximum = (a: Tensor, b: Tensor) => binaryOp('maximum', a, b);
export const minimum = (a: Tensor, b: Tensor) => binaryOp('minimum', a, b);
/** relu(a + b) in one pass (a residual connection and its activation; broadcasts). */
export const addRelu = (a: Tensor, b: Tensor) => binaryOp('addRelu', a, b);
/** dy where x > 0, else 0: relu's gradient (differentiable in dy; zero in x). */
export const reluGrad = (dy: Tensor, x: Tensor) => binaryOp('reluGrad', dy, x);
/** alpha * a + beta * b (same shapes or broadcast). */
export const axpby = (alpha: number, a: Tensor, beta: number, b: Tensor) =>
  binaryOp('axpby', a, b, checkFinite('axpby', 'alpha', alpha), checkFinite('axpby', 'beta', beta));

export const neg = (x: Tensor) => unaryOp('neg', UNARY.neg, x);
export const relu = (x: Tensor) => unaryOp('relu', UNARY.relu, x);
export const exp = (x: Tensor) => unaryOp('exp', UNARY.exp, x);
export const log = (x: Tensor) => unaryOp('log', UNARY.log, x);
export const sqrt = (x: Tensor) => unaryOp('sqrt', UNARY.sqrt, x);
export const square = (x: Tensor) => unaryOp('square', UNARY.square, x);
export const sigmoid = (x: Tensor) => unaryOp('sigmoid', UNARY.sigmoid, x);
export const tanh = (x: Tensor) => unaryOp('tanh', UNARY.tanh, x);
export const abs = (x: Tensor) => unaryOp('abs', UNARY.abs, x);
export const reciprocal = (x: Tensor) => unaryOp('reciprocal', UNARY.reciprocal, x);
export const sign = (x: Tensor) => unaryOp('sign', UNARY.sign, x);
export const scale = (x: Tensor, s: number) =>
  unaryOp('scale', UNARY.affine, x, checkFinite('scale', 's', s), 0);
export const addScalar = (x: Tensor, s: number) =>
  unaryOp('addScalar', UNARY.affine, x, 1, checkFinite('addScalar', 's', s));
export const leakyRelu = (x: Tensor, slope = 0.01) =>
  unaryOp('leakyRelu', UNARY.leakyRelu, x, checkFinite('leakyRelu', 'slope', slope));
export const copy = (x: Tensor) => unaryOp('copy', UNARY.copy, x);

/** A tensor of `value` with x's shape, recorded as a node (no upload). */
export function fillLike(x: Tensor, value: number): Tensor {
  checkTensor('fillLike', 'x', x);
  return x.engine.noGrad(() => unaryOp('fill', UNARY.fill, x, value));
}

/** The same values with gradient flow cut: SwAV's codes are computed through this. */
export function stopGradient(x: Tensor): Tensor {
  checkTensor('stopGradient', 'x', x);
  const [out] = x.engine.record({
    op: 'stopGradient', inputs: [x], outputs: [x.shape], differentiable: false,
    encode: (ctx) => ctx.recorder.copy(ctx.input(0).buffer, 0, ctx.output(0).buffer, 0, x.bytes),
  });
  return out;
}

// ---- backward rules: one per op, each with its derivative --------------------------

// d(a+b) = da + db; broadcasting is undone by summing (sumToShape).
registerGrad('add', ({ inputs: [a, b], grads: [g] }) =>
  [sumToShape(g!, a.shape), sumToShape(g!, b.shape)]);
// y = relu(a + b): dy reaches a and b where y > 0 (subgradient 0 at 0, as relu's), one
// reluGrad pass against the output shared by both when neither is broadcast.
registerGrad('addRelu', ({ inputs: [a, b], outputs: [y], grads: [g], needs }) => {
  const gz = reluGrad(g!, y);
  return [needs[0] ? sumToShape(gz, a.shape) : null, needs[1] ? sumToShape(gz, b.shape) : null];
});
// d(a-b) = da - db
registerGrad('sub', ({ inputs: [a, b], grads: [g], needs }) =>
  [sumToShape(g!, a.shape), needs[1] ? sumToShape(neg(g!), b.shape) : null]);
// d(ab) = b da + a db
registerGrad('mul', ({ inputs: [a, b], grads: [g], needs }) => [
  needs[0] ? sumToShape(mul(g!, b), a.shape) : null,
  needs[1] ? sumToShape(mul(g!, a), b.shape) : null,
]);
// d(a/b) = da / b - a db / b^2
registerGrad('div', ({ inputs: [a, b], outputs: [y], grads: [g], needs }) => [
  needs[0] ? sumToShape(div(g!, b), a.shape) : null,
  needs[1] ? sumToShape(neg(mul(g!, div(y, b))), b.shape) : null,
]);
// d max(a,b) goes to a where a >= b (ties to a), else to b (a NaN operand included); the
// comparison itself, not the sign of a - b (which rounds to 0 or overflows).
registerGrad('maximum', ({ inputs: [a, b], grads: [g], needs }) =>
  winnerGrads(g!, a, b, binaryOp('geMask', a, b), needs));
// d min(a,b) goes to a where a <= b (ties to a), else to b.
registerGrad('minimum', ({ inputs: [a, b], grads: [g], needs }) =>
  winnerGrads(g!, a, b, binaryOp('geMask', b, a), needs));

/**
 * dy to a where aWins is 1, to b where it is 0, each summed back to its shape. Selected, not
 * multiplied by the mask: an infinite dy leaves the losing operand 0, not inf * 0 = NaN.
 */
function winnerGrads(g: Tensor, a: Tensor, b: Tensor, aWins: Tensor, needs: boolean[]):
  (Tensor | null)[] {
  return [
    needs[0] ? sumToShape(reluGrad(g, aWins), a.shape) : null,
    needs[1] ? sumToShape(reluGrad(g, addScalar(neg(aWins), 1)), b.shape) : null,
  ];
}
// d(alpha a + beta b) = alpha da + beta db
registerGrad('axpby', ({ inputs: [a, b], grads: [g], attrs }) => [
  sumToShape(scale(g!, attrs.alpha as number), a.shape),
  sumToShape(scale(g!, attrs.beta as number), b.shape),
]);
// d(-x) = -dx
registerGrad('neg', ({ grads: [g] }) => [neg(g!)]);
// d relu(x) = dx [x > 0]; at x = 0 the subgradient 0 is taken (as PyTorch does).
registerGrad('relu', ({ inputs: [x], grads: [g] }) => [reluGrad(g!, x)]);
// d leaky(x) = dx [x > 0] + slope dx [x <= 0]
registerGrad('leakyRelu', ({ inputs: [x], grads: [g], attrs }) =>
  [binaryOp('leakyReluGrad', g!, x, attrs.alpha as number)]);
// Second derivatives: the activations' gradient ops, differentiated in turn (each summed
// back to its input's shape, should a caller have broadcast them).
// reluGrad(dy, x) = dy [x > 0]: linear in dy, piecewise constant in x (0 almost everywhere).
registerGrad('reluGrad', ({ inputs: [dy, x], grads: [g], needs }) => [
  needs[0] ? sumToShape(reluGrad(g!, x), dy.shape) : null,
  needs[1] ? fillLike(x, 0) : null,
]);
registerGrad('leakyReluGrad', ({ inputs: [dy, x], grads: [g], attrs, needs }) => [
  needs[0] ? sumToShape(binaryOp('leakyReluGrad', g!, x, attrs.alpha as number), dy.shape) : null,
  needs[1] ? fillLike(x, 0) : null,
]);
// sigmoidGrad(dy, s) = dy s (1 - s): d/dy the same with g, d/ds = g dy (1 - 2 s).
registerGrad('sigmoidGrad', ({ inputs: [dy, s], grads: [g], needs }) => [
  needs[0] ? sumToShape(binaryOp('sigmoidGrad', g!, s), dy.shape) : null,
  needs[1] ? sumToShape(mul(mul(g!, dy), addScalar(scale(s, -2), 1)), s.shape) : null,
]);
// tanhGrad(dy, t) = dy (1 - t^2): d/dy the same with g, d/dt = -2 g dy t.
registerGrad('tanhGrad', ({ inputs: [dy, t], grads: [g], needs }) => [
  needs[0] ? sumToShape(binaryOp('tanhGrad', g!, t), dy.shape) : null,
  needs[1] ? sumToShape(mul(mul(g!, dy), scale(t, -2)), t.shape) : null,
]);
// d exp(x) = exp(x) dx
registerGrad('exp', ({ outputs: [y], grads: [g] }) => [mul(g!, y)]);
// d log(x) = dx / x
registerGrad('log', ({ inputs: [x], grads: [g] }) => [div(g!, x)]);
// d sqrt(x) = dx / (2 sqrt(x))
registerGrad('sqrt', ({ outputs: [y], grads: [g] }) => [div(scale(g!, 0.5), y)]);
// d x^2 = 2 x dx
registerGrad('square', ({ inputs: [x], grads: [g] }) => [mul(g!, scale(x, 2))]);
// d sigmoid(x) = s (1 - s) dx
registerGrad('sigmoid', ({ outputs: [y], grads: [g] }) => [binaryOp('sigmoidGrad', g!, y)]);
// d tanh(x) = (1 - t^2) dx
registerGrad('tanh', ({ outputs: [y], grads: [g] }) => [binaryOp('tanhGrad', g!, y)]);
// d |x| = sign(x) dx (0 at 0)
registerGrad('abs', ({ inputs: [x], grads: [g] }) => [mul(g!, sign(x))]);
// d (1/x) = -dx / x^2
registerGrad('reciprocal', ({ outputs: [y], grads: [g] }) => [neg(mul(g!, square(y)))]);
// d sign(x) = 0 almost everywhere
registerGrad('sign', ({ grads: [g] }) => [fillLike(g!, 0)]);
// d (s x) = s dx
registerGrad('scale', ({ grads: [g], attrs }) => [scale(g!, attrs.alpha as number)]);
// d (x + s) = dx
registerGrad('addScalar', ({ grads: [g] }) => [g!]);
// d copy(x) = dx
registerGrad('copy', ({ grads: [g] }) => [g!]);

setGradHelpers(add, (t) => fillLike(t, 1));
