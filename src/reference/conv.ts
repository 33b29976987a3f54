// Direct 2-D convolution in NCHW with zero padding, and its three backward products.

import { show } from './checks.js';
import { type Pair, pairOf } from './pair.js';
import { type RefTensor, zeros } from './tensor.js';

/** The engine's conv2d options; like it, no grouped convolution (a `groups` past 1 is refused). */
export interface Conv2dOptions {
  /** One number for both axes or [sh, sw]; default 1, as the engine's conv2d. */
  stride?: Pair;
  /** Zeros added on each side, a number or [ph, pw]; default 0. */
  padding?: Pair;
  /** Gap between kernel taps, a number or [dh, dw]; default 1. */
  dilation?: Pair;
}

interface Geometry {
  N: number; C: number; H: number; W: number;
  O: number; KH: number; KW: number;
  OH: number; OW: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function geometry(xShape: readonly number[], wShape: readonly number[], opts: Conv2dOptions,
  op: string): Geometry {
  if (xShape.length !== 4) throw new Error(`${op}: x must be [N, C, H, W], got ${fmt(xShape)}`);
  if (wShape.length !== 4) {
    throw new Error(`${op}: w must be [O, C, KH, KW], got ${fmt(wShape)}`);
  }
  const [N, C, H, W] = xShape;
  const [O, Cw, KH, KW] = wShape;
  if (C !== Cw) {
    throw new Error(`${op}: x has C=${C} channels ${fmt(xShape)} but w expects ${Cw} ` +
      `${fmt(wShape)}`);
  }
  if (typeof opts !== 'object' || opts === null) {
    throw new Error(`${op}: options must be an object, got ${String(opts)}`);
  }
  const shapes = `x ${fmt(xShape)}, w ${fmt(wShape)}`;
  // Silently ignored, a grouped layer would be compared against an ungrouped reference.
  const { groups } = opts as { groups?: unknown };
  if (groups !== undefined && groups !== 1) {
    throw new Error(`${op}: groups ${show(groups)} is not supported: the reference computes ` +
      `ungrouped convolutions only, as the engine's conv2d (${shapes})`);
  }
  const [sh, sw] = pairOf(op, 'stride', opts.stride, 1, [1, 1], shapes);
  const [ph, pw] = pairOf(op, 'padding', opts.padding, 0, [0, 0], shapes);
  const [dh, dw] = pairOf(op, 'dilation', opts.dilation, 1, [1, 1], shapes);
  // H' = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1
  const OH = Math.floor((H + 2 * ph - dh * (KH - 1) - 1) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - dw * (KW - 1) - 1) / sw) + 1;
  if (OH < 1 || OW < 1) {
    throw new Error(`${op}: the dilated kernel ${fmt(wShape)} (dilation ${fmt([dh, dw])}) ` +
      `does not fit the padded input ${fmt(xShape)} (padding ${fmt([ph, pw])})`);
  }
  return { N, C, H, W, O, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw };
}

/** Output shape [N, O, H', W'] of conv2d, or a loud error when the kernel does not fit. */
export function conv2dOutputShape(xShape: readonly number[], wShape: readonly number[],
  opts: Conv2dOptions = {}): number[] {
  const g = geometry(xShape, wShape, opts, 'conv2dOutputShape');
  return [g.N, g.O, g.OH, g.OW];
}

/**
 * Visits every (output, input, weight) triple that multiplies in the forward, skipping taps that
 * land in the zero padding. All three products walk the same loop, so they agree by
 * construction on which taps exist.
 */
function forEachTap(g: Geometry, visit: (yi: number, xi: number, wi: number) => void): void {
  for (let n = 0; n < g.N; n++) {
    for (let o = 0; o < g.O; o++) {
      for (let oh = 0; oh < g.OH; oh++) {
        for (let ow = 0; ow < g.OW; ow++) {
          const yi = ((n * g.O + o) * g.OH + oh) * g.OW + ow;
          for (let c = 0; c < g.C; c++) {
            for (let kh = 0; kh < g.KH; kh++) {
              const ih = oh * g.sh - g.ph + kh * g.dh;
              if (ih < 0 || ih >= g.H) continue;
              for (let kw = 0; kw < g.KW; kw++) {
                const iw = ow * g.sw - g.pw + kw * g.dw;
                if (iw < 0 || iw >= g.W) continue;
                const xi = ((n * g.C + c) * g.H + ih) * g.W + iw;
                const wi = ((o * g.C + c) * g.KH + kh) * g.KW + kw;
                visit(yi, xi, wi);
              }
            }
          }
        }
      }
    }
  }
}

/**
 * y[n,o,oh,ow] = bias[o] + sum_{c,kh,kw} w[o,c,kh,kw] x[n, c, ih, iw] with
 * ih = oh sh - ph + kh dh, iw = ow sw - pw + kw dw, and x read as 0 outside [0, H) x [0, W).
 */
export function conv2d(x: RefTensor, w: RefTensor, bias: RefTensor | null,
  opts: Conv2dOptions = {}): RefTensor {
  const g = geometry(x.shape, w.shape, opts, 'conv2d');
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== g.O)) {
    throw new Error(`conv2d: bias must be [${g.O}], got ${fmt(bias.shape)}`);
  }
  const y = zeros([g.N, g.O, g.OH, g.OW]);
  forEachTap(g, (yi, xi, wi) => {
    y.data[yi] += w.data[wi] * x.data[xi];
  });
  if (bias) {
    const plane = g.OH * g.OW;
    for (let i = 0; i < y.data.length; i++) y.data[i] += bias.data[Math.floor(i / plane) % g.O];
  }
  return y;
}

function checkDy(dy: RefTensor, g: Geometry, op: string): void {
  const want = [g.N, g.O, g.OH, g.OW];
  if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`${op}: dy must be the output shape ${fmt(want)}, got ${fmt(dy.shape)}`);
  }
}

// dx[n,c,ih,iw] = sum over taps reading x[n,c,ih,iw] of dy[n,o,oh,ow] w[o,c,kh,kw]
export function conv2dBackwardInput(dy: RefTensor, w: RefTensor, xShape: readonly number[],
  opts: Conv2dOptions = {}): RefTensor {
  const g = geometry(xShape, w.shape, opts, 'conv2dBackwardInput');
  checkDy(dy, g, 'conv2dBackwardInput');
  const dx = zeros(xShape);
  forEachTap(g, (yi, xi, wi) => {
    dx.data[xi] += dy.data[yi] * w.data[wi];
  });
  return dx;
}

// dw[o,c,kh,kw] = sum_{n,oh,ow} dy[n,o,oh,ow] x[n, c, oh sh - ph + kh dh, ow sw - pw + kw dw]
export function conv2dBackwardWeight(dy: RefTensor, x: RefTensor, wShape: readonly number[],
  opts: Conv2dOptions = {}): RefTensor {
  const g = geometry(x.shape, wShape, opts, 'conv2dBackwardWeight');
  checkDy(dy, g, 'conv2dBackwardWeight');
  const dw = zeros(wShape);
  forEachTap(g, (yi, xi, wi) => {
    dw.data[wi] += dy.data[yi] * x.data[xi];
  });
  return dw;
}

// dbias[o] = sum_{n,oh,ow} dy[n,o,oh,ow]
export function conv2dBackwardBias(dy: RefTensor): RefTensor {
  if (dy.shape.length !== 4) {
    throw new Error(`conv2dBackwardBias: dy must be [N, O, H', W'], got ${fmt(dy.shape)}`);
  }
  const [N, O, OH, OW] = dy.shape;
  const db = zeros([O]);
  const plane = OH * OW;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      let acc = 0;
      const base = (n * O + o) * plane;
      for (let i = 0; i < plane; i++) acc += dy.data[base + i];
      db.data[o] += acc;
    }
  }
  return db;
}
