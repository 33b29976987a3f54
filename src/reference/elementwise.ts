// Elementwise ops with NumPy broadcasting, each beside its backward rule.

import { show } from './checks.js';
import {
  type RefTensor, assertSameShape, broadcastIndexMap, broadcastShapes, reduceToShape, zeros,
} from './tensor.js';

/** Gradients of a binary op, each already reduced to its input's shape. */
export interface BinaryGrads {
  da: RefTensor;
  db: RefTensor;
}

function binary(a: RefTensor, b: RefTensor, f: (x: number, y: number) => number): RefTensor {
  const shape = broadcastShapes(a.shape, b.shape);
  const ia = broadcastIndexMap(a.shape, shape);
  const ib = broadcastIndexMap(b.shape, shape);
  const out = zeros(shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = f(a.data[ia[i]], b.data[ib[i]]);
  return out;
}

/**
 * Backward of a binary op from its two local partials: each input's gradient is dy times its
 * partial at the broadcast position, then summed back over the broadcast axes.
 */
function binaryBackward(dy: RefTensor, a: RefTensor, b: RefTensor,
  pa: (x: number, y: number) => number, pb: (x: number, y: number) => number): BinaryGrads {
  return binaryGrads(dy, a, b, (d, x, y) => d * pa(x, y), (d, x, y) => d * pb(x, y));
}

/**
 * dy, broadcast, to a where aWins(a, b), else to b: passed or not (as PyTorch's masked
 * fill), never multiplied by 0, so an infinite dy leaves the losing operand 0, not NaN.
 */
function winnerBackward(dy: RefTensor, a: RefTensor, b: RefTensor,
  aWins: (x: number, y: number) => boolean): BinaryGrads {
  return binaryGrads(dy, a, b, (d, x, y) => (aWins(x, y) ? d : 0),
    (d, x, y) => (aWins(x, y) ? 0 : d));
}

/** Each output's share of dy for a and for b, summed back to each operand's shape. */
function binaryGrads(dy: RefTensor, a: RefTensor, b: RefTensor,
  fa: (d: number, x: number, y: number) => number,
  fb: (d: number, x: number, y: number) => number): BinaryGrads {
  const shape = broadcastShapes(a.shape, b.shape);
  assertSameShape('binary backward', dy.shape, shape, 'dy and the broadcast output shape');
  const ia = broadcastIndexMap(a.shape, shape);
  const ib = broadcastIndexMap(b.shape, shape);
  const ga = zeros(shape);
  const gb = zeros(shape);
  for (let i = 0; i < dy.data.length; i++) {
    const x = a.data[ia[i]];
    const y = b.data[ib[i]];
    ga.data[i] = fa(dy.data[i], x, y);
    gb.data[i] = fb(dy.data[i], x, y);
  }
  return { da: reduceToShape(ga, a.shape), db: reduceToShape(gb, b.shape) };
}

export function add(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => x + y);
}

// d(a+b)/da = 1, d(a+b)/db = 1
export function addBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  return binaryBackward(dy, a, b, () => 1, () => 1);
}

export function sub(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => x - y);
}

// d(a-b)/da = 1, d(a-b)/db = -1
export function subBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  return binaryBackward(dy, a, b, () => 1, () => -1);
}

export function mul(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => x * y);
}

// d(ab)/da = b, d(ab)/db = a
export function mulBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  return binaryBackward(dy, a, b, (_x, y) => y, (x) => x);
}

export function div(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => x / y);
}

// d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
export function divBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  return binaryBackward(dy, a, b, (_x, y) => 1 / y, (x, y) => -x / (y * y));
}

/** The larger of a and b; NaN where either is NaN (as torch.maximum). */
export function maximum(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => Math.max(x, y));
}

// d max(a,b) goes to a where a >= b (ties to a), else to b (a NaN operand included)
export function maximumBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  return winnerBackward(dy, a, b, (x, y) => x >= y);
}

/** The smaller of a and b; NaN where either is NaN (as torch.minimum). */
export function minimum(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => Math.min(x, y));
}

// d min(a,b) goes to a where a <= b (ties to a), else to b (a NaN operand included)
export function minimumBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  return winnerBackward(dy, a, b, (x, y) => x <= y);
}

/**
 * A unary op as its value at the input x and either its derivative there (dx = dy f'(x)) or,
 * for a gate, where dy passes (dx = dy where pass(x), else 0): selected, not multiplied by 0,
 * so an infinite or NaN dy leaves 0 where the gate is shut, as the engine's select does.
 */
type UnaryRule =
  | { f: (x: number) => number; df: (x: number) => number }
  | { f: (x: number) => number; pass: (x: number) => boolean };

function sigmoidOf(x: number): number {
  // Two branches so exp never sees a large positive argument (no Infinity / Infinity).
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/**
 * One table for the unary ops. Policy at kinks, following PyTorch: relu'(0) = 0 (the
 * subgradient that keeps dead units dead), abs'(0) = sign(0) = 0, leakyRelu'(0) = slope.
 */
const UNARY = {
  // d(-x) = -1
  neg: { f: (x) => -x, df: () => -1 },
  // d relu(x) = [x > 0], a gate; relu(NaN) = NaN, as PyTorch's (its gradient there is 0)
  relu: { f: (x) => (x > 0 || Number.isNaN(x) ? x : 0), pass: (x) => x > 0 },
  // d exp(x) = exp(x)
  exp: { f: Math.exp, df: Math.exp },
  // d log(x) = 1/x
  log: { f: Math.log, df: (x) => 1 / x },
  // d sqrt(x) = 1/(2 sqrt(x)), Infinity at 0
  sqrt: { f: Math.sqrt, df: (x) => 0.5 / Math.sqrt(x) },
  // d x^2 = 2x
  square: { f: (x) => x * x, df: (x) => 2 * x },
  // d sigmoid(x) = s (1 - s)
  sigmoid: { f: sigmoidOf, df: (x) => sigmoidOf(x) * (1 - sigmoidOf(x)) },
  // d tanh(x) = 1 - tanh(x)^2
  tanh: { f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2 },
  // d |x| = sign(x), 0 at 0
  abs: { f: Math.abs, df: (x) => Math.sign(x) },
  // d (1/x) = -1/x^2
  reciprocal: { f: (x) => 1 / x, df: (x) => -1 / (x * x) },
  // d sign(x) = 0 (away from 0, where it jumps): a gate that never opens, as the engine's fill
  sign: { f: Math.sign, pass: () => false },
  // d x = 1
  copy: { f: (x) => x, df: () => 1 },
} satisfies Record<string, UnaryRule>;

export type UnaryOpName = keyof typeof UNARY;
export const unaryOpNames = Object.keys(UNARY) as UnaryOpName[];

function mapUnary(x: RefTensor, f: (v: number) => number): RefTensor {
  const out = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) out.data[i] = f(x.data[i]);
  return out;
}

/** dx[i] from dy[i] and x[i], checked for matching shapes. */
function backwardUnary(dy: RefTensor, x: RefTensor, dx: (d: number, v: number) => number,
  op: string): RefTensor {
  assertSameShape(`${op}Backward`, dy.shape, x.shape, 'dy and x shapes');
  const out = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) out.data[i] = dx(dy.data[i], x.data[i]);
  return out;
}

/** The rule of `op`, or an error naming the op and listing the known ones. */
function unaryRule(fn: string, op: unknown): UnaryRule {
  if (typeof op !== 'string' || !Object.prototype.hasOwnProperty.call(UNARY, op)) {
    throw new Error(`${fn}: unknown op ${show(op)}; the known ones are ` +
      `${unaryOpNames.join(', ')}`);
  }
  return UNARY[op as UnaryOpName];
}

/** Forward of the named unary op. */
export function unary(op: UnaryOpName, x: RefTensor): RefTensor {
  return mapUnary(x, unaryRule('unary', op).f);
}

/** Backward of the named unary op: dx = dy * f'(x), or dy selected by a gate (relu, sign). */
export function unaryBackward(op: UnaryOpName, dy: RefTensor, x: RefTensor): RefTensor {
  const rule = unaryRule('unaryBackward', op);
  const dx = 'pass' in rule
    ? (d: number, v: number) => (rule.pass(v) ? d : 0)
    : (d: number, v: number) => d * rule.df(v);
  return backwardUnary(dy, x, dx, op);
}

export const neg = (x: RefTensor): RefTensor => unary('neg', x);
export const relu = (x: RefTensor): RefTensor => unary('relu', x);
export const exp = (x: RefTensor): RefTensor => unary('exp', x);
export const log = (x: RefTensor): RefTensor => unary('log', x);
export const sqrt = (x: RefTensor): RefTensor => unary('sqrt', x);
export const square = (x: RefTensor): RefTensor => unary('square', x);
export const sigmoid = (x: RefTensor): RefTensor => unary('sigmoid', x);
export const tanh = (x: RefTensor): RefTensor => unary('tanh', x);
export const abs = (x: RefTensor): RefTensor => unary('abs', x);
/** 1 / x: +-Infinity at +-0, as IEEE division. */
export const reciprocal = (x: RefTensor): RefTensor => unary('reciprocal', x);
/** -1, 0 or 1 by the sign of x; -0 stays -0 and NaN stays NaN (as the engine's shader). */
export const sign = (x: RefTensor): RefTensor => unary('sign', x);

type UnaryBackward = (dy: RefTensor, x: RefTensor) => RefTensor;
export const negBackward: UnaryBackward = (dy, x) => unaryBackward('neg', dy, x);
export const reluBackward: UnaryBackward = (dy, x) => unaryBackward('relu', dy, x);
export const expBackward: UnaryBackward = (dy, x) => unaryBackward('exp', dy, x);
export const logBackward: UnaryBackward = (dy, x) => unaryBackward('log', dy, x);
export const sqrtBackward: UnaryBackward = (dy, x) => unaryBackward('sqrt', dy, x);
export const squareBackward: UnaryBackward = (dy, x) => unaryBackward('square', dy, x);
export const sigmoidBackward: UnaryBackward = (dy, x) => unaryBackward('sigmoid', dy, x);
export const tanhBackward: UnaryBackward = (dy, x) => unaryBackward('tanh', dy, x);
export const absBackward: UnaryBackward = (dy, x) => unaryBackward('abs', dy, x);
export const reciprocalBackward: UnaryBackward = (dy, x) => unaryBackward('reciprocal', dy, x);
export const signBackward: UnaryBackward = (dy, x) => unaryBackward('sign', dy, x);

/** relu(a + b), broadcast: a residual connection and its activation; NaN stays NaN. */
export function addRelu(a: RefTensor, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => UNARY.relu.f(x + y));
}

// d relu(a+b)/da = d relu(a+b)/db = [a + b > 0]: dy passes where the sum is positive, as
// relu's gate (selected, so an infinite dy leaves 0 where the sum is not)
export function addReluBackward(dy: RefTensor, a: RefTensor, b: RefTensor): BinaryGrads {
  const pass = (d: number, x: number, y: number) => (UNARY.relu.pass(x + y) ? d : 0);
  return binaryGrads(dy, a, b, pass, pass);
}

/** alpha a + beta b, broadcast. */
export function axpby(alpha: number, a: RefTensor, beta: number, b: RefTensor): RefTensor {
  return binary(a, b, (x, y) => alpha * x + beta * y);
}

// d(alpha a + beta b)/da = alpha, /db = beta
export function axpbyBackward(dy: RefTensor, alpha: number, a: RefTensor, beta: number,
  b: RefTensor): BinaryGrads {
  return binaryBackward(dy, a, b, () => alpha, () => beta);
}

export function scale(x: RefTensor, s: number): RefTensor {
  return mapUnary(x, (v) => v * s);
}

// d(s x)/dx = s
export function scaleBackward(dy: RefTensor, s: number): RefTensor {
  return mapUnary(dy, (v) => v * s);
}

export function addScalar(x: RefTensor, s: number): RefTensor {
  return mapUnary(x, (v) => v + s);
}

// d(x + s)/dx = 1
export function addScalarBackward(dy: RefTensor): RefTensor {
  return mapUnary(dy, (v) => v);
}

/** x for x > 0, slope x otherwise (PyTorch's F.leaky_relu). */
export function leakyRelu(x: RefTensor, slope: number): RefTensor {
  return mapUnary(x, (v) => (v > 0 ? v : slope * v));
}

// d leakyRelu(x) = 1 for x > 0, slope for x <= 0 (so slope at the kink, as PyTorch)
export function leakyReluBackward(dy: RefTensor, x: RefTensor, slope: number): RefTensor {
  return backwardUnary(dy, x, (d, v) => d * (v > 0 ? 1 : slope), 'leakyRelu');
}
