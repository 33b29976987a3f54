// Global average pooling and 2-D max pooling in NCHW, with their backward rules.

import { type Pair, pairOf } from './pair.js';
import { type RefTensor, zeros } from './tensor.js';

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function nchw(op: string, shape: readonly number[]): [number, number, number, number] {
  if (shape.length !== 4) throw new Error(`${op}: x must be [N, C, H, W], got ${fmt(shape)}`);
  return [shape[0], shape[1], shape[2], shape[3]];
}

/** y[n, c] = mean over h, w of x[n, c, h, w]. */
export function globalAvgPool(x: RefTensor): RefTensor {
  const [N, C, H, W] = nchw('globalAvgPool', x.shape);
  const plane = H * W;
  const y = zeros([N, C]);
  for (let i = 0; i < N * C; i++) {
    let acc = 0;
    for (let j = 0; j < plane; j++) acc += x.data[i * plane + j];
    y.data[i] = acc / plane;
  }
  return y;
}

// dx[n,c,h,w] = dy[n,c] / (H W)
export function globalAvgPoolBackward(dy: RefTensor, xShape: readonly number[]): RefTensor {
  const [N, C, H, W] = nchw('globalAvgPoolBackward', xShape);
  if (dy.shape.length !== 2 || dy.shape[0] !== N || dy.shape[1] !== C) {
    throw new Error(`globalAvgPoolBackward: dy must be [${N}, ${C}], got ${fmt(dy.shape)}`);
  }
  const plane = H * W;
  const dx = zeros(xShape);
  for (let i = 0; i < N * C; i++) {
    for (let j = 0; j < plane; j++) dx.data[i * plane + j] = dy.data[i] / plane;
  }
  return dx;
}

/** The window of maxPool2d as the engine's maxPool2d takes it: numbers or [h, w] pairs. */
export interface MaxPool2dWindow {
  /** Window size, one number for both axes or [kh, kw]. */
  kernel: Pair;
  /** A number or [sh, sw]; default: the kernel size, as PyTorch. */
  stride?: Pair;
  /** -Infinity added on each side, a number or [ph, pw], default 0; at most half the kernel. */
  padding?: Pair;
}

/**
 * The same window with every field an [h, w] pair: the only form this module once took,
 * kept as a type so that code reading the fields as pairs still compiles. The functions
 * take either form (MaxPool2dWindow).
 */
export interface MaxPool2dOptions extends MaxPool2dWindow {
  kernel: [number, number];
  stride?: [number, number];
  padding?: [number, number];
}

interface PoolGeometry {
  N: number; C: number; H: number; W: number; OH: number; OW: number;
  kh: number; kw: number; sh: number; sw: number; ph: number; pw: number;
}

function poolGeometry(op: string, shape: readonly number[], opts: MaxPool2dWindow)
  : PoolGeometry {
  const [N, C, H, W] = nchw(op, shape);
  if (typeof opts !== 'object' || opts === null) {
    throw new Error(`${op}: options { kernel } are required, got ${String(opts)}`);
  }
  const context = `x ${fmt(shape)}`;
  if (opts.kernel === undefined) throw new Error(`${op}: options { kernel } are required`);
  const [kh, kw] = pairOf(op, 'kernel', opts.kernel, 1, [1, 1], context);
  const [sh, sw] = pairOf(op, 'stride', opts.stride, 1, [kh, kw], context);
  const [ph, pw] = pairOf(op, 'padding', opts.padding, 0, [0, 0], context);
  // PyTorch's rule; it also guarantees every window holds at least one real element.
  if (ph > kh / 2 || pw > kw / 2) {
    throw new Error(`${op}: padding ${fmt([ph, pw])} must be between 0 and half the kernel ` +
      `${fmt([kh, kw])}`);
  }
  // H' = floor((H + 2 ph - kh) / sh) + 1 (floor mode, no ceil)
  const OH = Math.floor((H + 2 * ph - kh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - kw) / sw) + 1;
  if (OH < 1 || OW < 1) {
    throw new Error(`${op}: kernel ${fmt([kh, kw])}, stride ${fmt([sh, sw])}, padding ` +
      `${fmt([ph, pw])} give no output for x ${fmt(shape)}`);
  }
  return { N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw };
}

/**
 * For each output, its value and the flat input index of the first maximal element of its
 * window in row-major window order (strict >, so ties keep the earliest). Padding reads as
 * -Infinity, so it never wins over a real element.
 */
function poolArgmax(x: RefTensor, g: PoolGeometry): { y: RefTensor; src: Int32Array } {
  const y = zeros([g.N, g.C, g.OH, g.OW]);
  const src = new Int32Array(y.data.length);
  let o = 0;
  for (let nc = 0; nc < g.N * g.C; nc++) {
    for (let oh = 0; oh < g.OH; oh++) {
      for (let ow = 0; ow < g.OW; ow++) {
        let best = -Infinity;
        let arg = -1;
        for (let i = 0; i < g.kh; i++) {
          const h = oh * g.sh - g.ph + i;
          if (h < 0 || h >= g.H) continue;
          for (let j = 0; j < g.kw; j++) {
            const w = ow * g.sw - g.pw + j;
            if (w < 0 || w >= g.W) continue;
            const xi = (nc * g.H + h) * g.W + w;
            const v = x.data[xi];
            // A NaN wins and stays, so it propagates as in PyTorch.
            if (arg < 0 || v > best || (Number.isNaN(v) && !Number.isNaN(best))) {
              best = v;
              arg = xi;
            }
          }
        }
        y.data[o] = best;
        src[o++] = arg;
      }
    }
  }
  return { y, src };
}

export function maxPool2d(x: RefTensor, opts: MaxPool2dWindow): RefTensor {
  return poolArgmax(x, poolGeometry('maxPool2d', x.shape, opts)).y;
}

// dx[i] = sum of dy over the windows whose first maximal element is i (1 at the argmax, else 0)
export function maxPool2dBackward(dy: RefTensor, x: RefTensor, opts: MaxPool2dWindow)
  : RefTensor {
  const g = poolGeometry('maxPool2dBackward', x.shape, opts);
  const want = [g.N, g.C, g.OH, g.OW];
  if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`maxPool2dBackward: dy must be ${fmt(want)}, got ${fmt(dy.shape)}`);
  }
  const { src } = poolArgmax(x, g);
  const dx = zeros(x.shape);
  // Overlapping windows (stride < kernel) may pick the same element: their gradients add.
  for (let o = 0; o < src.length; o++) dx.data[src[o]] += dy.data[o];
  return dx;
}
