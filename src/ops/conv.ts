// 2-D convolution in NCHW (shaders/conv2d.wgsl): forward, input and weight gradients as
// register-tiled implicit GEMMs, and the backward rule that ties them together.

import { isCpuAdapter } from '../gpu/acquire.js';
import type { BufferRange } from '../gpu/context.js';
import { registerGrad } from '../graph/autodiff.js';
import { Tensor, shapeStr, type EncodeContext } from '../graph/tensor.js';
import { sum } from './reduce.js';
import { checkKeys, checkOptions, checkTensor, fail, groups, optionKeys, showValue,
  vectorRange, type OptionsForm } from './util.js';

export interface Conv2dOptions {
  /** Step between output pixels, a number or [h, w]; default 1. */
  stride?: number | readonly [number, number];
  /** Zeros added on each side, a number or [h, w]; default 0. */
  padding?: number | readonly [number, number];
  /** Gap between kernel taps, a number or [h, w]; default 1. */
  dilation?: number | readonly [number, number];
  /**
   * Force a tiling (tests, benchmarks). Default: the one timed fastest for this shape on this
   * adapter (tuneConv2d, `createEngine({ tune: true })`), else one chosen from the adapter.
   */
  tiling?: ConvTiling;
}

/**
 * Register tiles of the three kernels: each invocation computes TM rows (channels) by TN
 * columns (pixels, or weight taps for the weight gradient), 1..16 and 1..8, in a WG_X x WG_Y
 * workgroup.
 */
export interface ConvTiling {
  TM: number;
  TN: number;
  WG_X: number;
  WG_Y: number;
  /**
   * The forward kernel: 'rows' shares each input row segment among the kernel's columns and
   * reads packed weights from a uniform buffer (kernels up to 3 wide, stride 1 or 2 and no
   * dilation along the width, weights within 64 KiB; others fall back), 'generic' serves
   * every geometry. Default: by adapter and shape (defaultConvForward).
   */
  forward?: ConvForwardKernel;
  /** forward 'shared': depth of the slices staged in workgroup memory; default 16. */
  BK?: number;
  /**
   * forward 'rows': store outputs as whole vectors of VEC (1, 2 or 4; default 1), in row
   * blocks of a multiple of VEC pixels, where the output width is a multiple of VEC (else of
   * 2, else one at a time). On lavapipe every store is a loop over the SIMD lanes, so a vec4
   * store writes four floats for about the price of one. VEC 4 also reads the input rows as
   * vec4s where they allow (stride 1 along the width, W a multiple of 4, padding <= 4).
   */
  VEC?: 1 | 2 | 4;
  /**
   * The input gradient's kernel. 'rows': at stride 1 (no dilation, padding at most the
   * kernel's size - 1, kernels up to 3 wide, weights within 64 KiB) it is the stride-1
   * convolution of dy with the flipped weights, computed by forward 'rows' (vec4 and vec2
   * stores and loads where the widths allow); elsewhere 'generic'. The two add each input
   * gradient's terms in different orders, so this is chosen by adapter, never by timing:
   * default 'rows' on CPU drivers (1.1-2x faster there), 'generic' on GPUs.
   */
  inputGrad?: 'generic' | 'rows';
}

/**
 * 'shared' stages workgroup tiles in workgroup memory, as GPUs want (every geometry; a
 * candidate the tuner times on GPUs only).
 */
export type ConvForwardKernel = 'generic' | 'rows' | 'shared';

const OPTION_KEYS = optionKeys<Conv2dOptions>({ stride: true, padding: true, dilation: true,
  tiling: true });
const TILING_KEYS = optionKeys<ConvTiling>({ TM: true, TN: true, WG_X: true, WG_Y: true,
  forward: true, BK: true, VEC: true, inputGrad: true });

/**
 * Checks the options argument args[at] of a conv op and a forced tiling's keys; values
 * passed one by one are read in PyTorch's order, F.conv2d(x, w, bias, stride, padding,
 * dilation).
 */
function checkConvOptions(op: string, args: ArrayLike<unknown>, at: number, call: string):
  void {
  const form: OptionsForm = { call, keys: OPTION_KEYS,
    positional: ['stride', 'padding', 'dilation'] };
  checkOptions(op, args, at, form);
  const tiling = (args[at] as Conv2dOptions | undefined)?.tiling;
  if (tiling !== undefined) checkKeys(op, 'options.tiling', tiling, TILING_KEYS);
}

/** The three kernels a tiling can be timed and chosen for. */
export type ConvPass = 'forward' | 'backwardInput' | 'backwardWeight';

/**
 * Measured on lavapipe (see tools/probe-matmul.ts): 16 channels by 8 pixels beat 8 by 8 on
 * most SwAV layers with 16 or 32 channels (forward and both gradients; 8-channel layers fit
 * 8 rows either way).
 */
export const CONV_CPU_TILING: ConvTiling = { TM: 16, TN: 8, WG_X: 8, WG_Y: 1 };
/** For GPUs: smaller blocks per invocation, more invocations per workgroup. */
export const CONV_GPU_TILING: ConvTiling = { TM: 4, TN: 4, WG_X: 16, WG_Y: 8 };
/** For GPUs, the forward through workgroup memory: 32 x 64 tiles, 16 deep (6 KiB staged). */
export const CONV_SHARED_TILING: ConvTiling = { TM: 4, TN: 4, WG_X: 16, WG_Y: 8, BK: 16,
  forward: 'shared' };

export function defaultConvTiling(adapterInfo: string): ConvTiling {
  return isCpuAdapter(adapterInfo) ? CONV_CPU_TILING : CONV_GPU_TILING;
}

/**
 * The forward kernel used when neither the tiling nor tuning says: on CPU drivers 'rows' for
 * layers of at most 8 output channels, where loads outweigh the multiply-adds (measured 1.4x
 * faster on the 8-channel SwAV layers on lavapipe, and no faster or slower with 16 or 32);
 * on GPUs 'generic', until timing says otherwise.
 */
export function defaultConvForward(adapterInfo: string, outChannels: number): ConvForwardKernel {
  return isCpuAdapter(adapterInfo) && outChannels <= 8 ? 'rows' : 'generic';
}

/** The key of a convolution shape and pass in the engine's tuned choices. */
export function convTuneKey(pass: ConvPass, xShape: readonly number[], wShape: readonly number[],
  opts: Pick<Conv2dOptions, 'stride' | 'padding' | 'dilation'>): string {
  return tuneKeyOf(pass, geometry('conv2d', xShape, wShape, opts));
}

function tuneKeyOf(pass: ConvPass, g: Geometry): string {
  return `conv2d.${pass} x${[g.N, g.C, g.H, g.W].join('x')} w${[g.O, g.C, g.KH, g.KW].join('x')} ` +
    `s${g.stride} p${g.padding} d${g.dilation}`;
}

/** The forced tiling, else this shape's tuned one, else the adapter's default. */
function resolveTiling(engine: Tensor['engine'], pass: ConvPass, g: Geometry,
  forced: ConvTiling | undefined): ConvTiling {
  const tiling = forced ?? (engine.gpu.tuned.get(tuneKeyOf(pass, g)) as ConvTiling | undefined) ??
    defaultConvTiling(engine.gpu.adapterInfo);
  checkTiling(tiling);
  return tiling;
}

/**
 * Invocations the weight gradient aims for before it splits its reduction into chunks.
 * On lavapipe 128-1024 were alike and 4096 up to 2x slower on the SwAV layers (each chunk
 * writes partial sums that a second pass adds, and 2 cores need few invocations); GPUs
 * want many.
 */
const WEIGHT_GRAD_TARGET_CPU = 256;
const WEIGHT_GRAD_TARGET_GPU = 4096;
const SUM_WG = 64;

interface Geometry {
  N: number; C: number; H: number; W: number;
  O: number; KH: number; KW: number; OH: number; OW: number;
  stride: [number, number]; padding: [number, number]; dilation: [number, number];
}

function pair(op: string, name: string, v: unknown, min: number, dflt: number, shapes: string):
  [number, number] {
  const p = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 ||
    p.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < min)) {
    const rule = min === 1 ? 'positive integers' : 'non-negative integers';
    fail(op, `${name} must be a number or [h, w] of ${rule}, got ${showValue(v)} ` +
      `(${shapes})`);
  }
  return [p[0], p[1]];
}

function geometry(op: string, xShape: readonly number[], wShape: readonly number[],
  opts: Conv2dOptions): Geometry {
  const [N, C, H, W] = xShape;
  const [O, Cw, KH, KW] = wShape;
  if (C !== Cw) {
    fail(op, `x ${shapeStr(xShape)} has ${C} channels but w ${shapeStr(wShape)} expects ${Cw} ` +
      `(x is [N, C, H, W], w is [O, C, KH, KW])`);
  }
  const shapes = `x ${shapeStr(xShape)}, w ${shapeStr(wShape)}`;
  const stride = pair(op, 'stride', opts.stride, 1, 1, shapes);
  const padding = pair(op, 'padding', opts.padding, 0, 0, shapes);
  const dilation = pair(op, 'dilation', opts.dilation, 1, 1, shapes);
  // H' = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1
  const OH = Math.floor((H + 2 * padding[0] - dilation[0] * (KH - 1) - 1) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * padding[1] - dilation[1] * (KW - 1) - 1) / stride[1]) + 1;
  if (OH < 1 || OW < 1) {
    fail(op, `the kernel of w ${shapeStr(wShape)} with dilation ${shapeStr(dilation)} spans ` +
      `${dilation[0] * (KH - 1) + 1}x${dilation[1] * (KW - 1) + 1}, larger than the input ` +
      `x ${shapeStr(xShape)} padded by ${shapeStr(padding)} ` +
      `(${H + 2 * padding[0]}x${W + 2 * padding[1]})`);
  }
  return { N, C, H, W, O, KH, KW, OH, OW, stride, padding, dilation };
}

/** conv2d's rules for a forced tiling, keys and values, also run by nn.Conv2d's constructor. */
export function checkConvTiling(t: ConvTiling): void {
  checkKeys('conv2d', 'tiling', t, TILING_KEYS);
  checkTiling(t);
}

function checkTiling(t: ConvTiling): void {
  // Workgroup sides as WebGPU's default limits allow (256 invocations, 256 along x or y).
  for (const key of ['WG_X', 'WG_Y'] as const) {
    if (!Number.isInteger(t[key]) || t[key] < 1 || t[key] > 256) {
      fail('conv2d', `tiling.${key} must be an integer in 1..256, got ${showValue(t[key])}`);
    }
  }
  if (t.WG_X * t.WG_Y > 256) {
    fail('conv2d', `tiling.WG_X * tiling.WG_Y must be at most 256 invocations, got ` +
      `${t.WG_X} x ${t.WG_Y}`);
  }
  if (t.forward !== undefined && !['generic', 'rows', 'shared'].includes(t.forward)) {
    fail('conv2d', `tiling.forward must be 'generic', 'rows' or 'shared', got ` +
      showValue(t.forward));
  }
  if (t.VEC !== undefined && ![1, 2, 4].includes(t.VEC)) {
    fail('conv2d', `tiling.VEC must be 1, 2 or 4, got ${showValue(t.VEC)}`);
  }
  if (t.inputGrad !== undefined && !['generic', 'rows'].includes(t.inputGrad)) {
    fail('conv2d', `tiling.inputGrad must be 'generic' or 'rows', got ` +
      showValue(t.inputGrad));
  }
  if ((t.VEC ?? 1) > 1 && t.forward !== 'rows') {
    fail('conv2d', `tiling.VEC (${t.VEC}) applies to forward 'rows' only, got forward ` +
      (t.forward === undefined ? 'by default' : showValue(t.forward)));
  }
  if (t.BK !== undefined && (!Number.isInteger(t.BK) || t.BK < 1 || t.BK > 64)) {
    fail('conv2d', `tiling.BK must be an integer in 1..64, got ${showValue(t.BK)}`);
  }
  // forward 'shared' stages BK x (WG_Y TM + WG_X TN) floats: WebGPU's default 16 KiB.
  const staged = (t.BK ?? 16) * (t.WG_Y * t.TM + t.WG_X * t.TN) * 4;
  if (t.forward === 'shared' && staged > 16384) {
    fail('conv2d', `tiling for forward 'shared' stages ${staged} bytes of workgroup memory, ` +
      `past 16384 (BK ${t.BK ?? 16}, WG_Y x TM ${t.WG_Y} x ${t.TM}, WG_X x TN ` +
      `${t.WG_X} x ${t.TN})`);
  }
  // The shader's register arrays hold at most 16 rows and 8 columns.
  for (const [key, max] of [['TM', 16], ['TN', 8]] as const) {
    if (!Number.isInteger(t[key]) || t[key] < 1 || t[key] > max) {
      fail('conv2d', `tiling.${key} must be an integer in 1..${max}, got ${showValue(t[key])}`);
    }
  }
}

/** The uniform block every entry of conv2d.wgsl reads; the grid fields vary per kernel. */
function params(g: Geometry, grid: { qTiles: number; cols: number; phaseRows?: number;
  tilesX: number; tilesY: number; rowsPerChunk?: number; total?: number; nChunks?: number;
  hasBias?: boolean; rows4?: number }) {
  return {
    n: g.N, c: g.C, h: g.H, w: g.W, o: g.O, kh: g.KH, kw: g.KW, oh: g.OH, ow: g.OW,
    sh: g.stride[0], sw: g.stride[1], ph: g.padding[0], pw: g.padding[1],
    dh: g.dilation[0], dw: g.dilation[1], q_tiles: grid.qTiles, cols: grid.cols,
    phase_rows: grid.phaseRows ?? 0, tiles_x: grid.tilesX, tiles_y: grid.tilesY,
    rows_per_chunk: grid.rowsPerChunk ?? 0, total: grid.total ?? 0, n_chunks: grid.nChunks ?? 1,
    has_bias: Number(grid.hasBias ?? false), rows4: grid.rows4 ?? 0,
  };
}

/**
 * The tiling's block fitted to a GEMM of `rows` rows whose blocks run along `extent`
 * columns: a side longer than the GEMM's shrinks to the power of two that covers it, and
 * rows the GEMM lacks (one input channel) go to columns, up to the shader's 8, keeping the
 * block's area (its loads per multiply-add). Powers of two keep the number of pipelines,
 * each compiled once per process at a cost of about a second on lavapipe, small.
 */
function fitted(t: ConvTiling, rows: number, extent: number, evenColumns = false): ConvTiling {
  const cover = (max: number, n: number) => Math.min(max, 2 ** Math.ceil(Math.log2(n)));
  const even = (max: number, n: number) => Math.ceil(n / Math.ceil(n / max));
  const TM = cover(t.TM, rows);
  const maxTN = Math.min(8, Math.max(t.TN, Math.floor((t.TM * t.TN) / TM)));
  return { ...t, TM, TN: (evenColumns ? even : cover)(maxTN, extent) };
}

const overridesOf = (t: ConvTiling) => ({ TM: t.TM, TN: t.TN, WG_X: t.WG_X, WG_Y: t.WG_Y });

interface Attrs {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  /** The caller's forced tiling, passed on to the gradients; otherwise each pass resolves. */
  tiling?: ConvTiling;
}

/**
 * y = conv2d(x, w) + bias: x [N, C, H, W], w [O, C, KH, KW], bias [O] or null; output
 * [N, O, H', W'] with H' = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1, likewise W'.
 */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}):
  Tensor {
  checkTensor('conv2d', 'x', x);
  checkTensor('conv2d', 'w', w);
  if (x.rank !== 4) fail('conv2d', `x must be [N, C, H, W], got ${x.describe()}`);
  if (w.rank !== 4) fail('conv2d', `w must be [O, C, KH, KW], got ${w.describe()}`);
  if (x.engine !== w.engine) fail('conv2d', 'x and w belong to different engines');
  if (bias !== null && bias !== undefined && !(bias instanceof Tensor)) {
    fail('conv2d', `bias must be a Tensor, null or undefined, got ${showValue(bias)}; the ` +
      `options come fourth: conv2d(x, w, null, { ${OPTION_KEYS.join(', ')} })`);
  }
  checkConvOptions('conv2d', arguments, 3, 'conv2d(x, w, bias, {})');
  const g = geometry('conv2d', x.shape, w.shape, opts);
  if (bias !== null && bias !== undefined) {
    if (bias.rank !== 1 || bias.shape[0] !== g.O) {
      fail('conv2d', `bias must be [${g.O}] (one value per output channel of w ` +
        `${shapeStr(w.shape)}), got ${bias.describe()}`);
    }
  }
  const tiling = resolveTiling(x.engine, 'forward', g, opts.tiling);
  const attrs: Attrs = { stride: g.stride, padding: g.padding, dilation: g.dilation,
    tiling: opts.tiling };
  const kernel = tiling.forward ?? defaultConvForward(x.engine.gpu.adapterInfo, g.O);
  if (kernel === 'shared') return forwardShared(x, w, bias, g, tiling, attrs);
  const inputs = bias ? [x, w, bias] : [x, w];
  if (kernel === 'rows' && rowsPath(g)) {
    const plan = rowsPlan(g, tiling, !!bias);
    const [y] = x.engine.record({
      op: 'conv2d', inputs, outputs: [[g.N, g.O, g.OH, g.OW]], attrs: { ...attrs },
      encode: (ctx) => {
        const wt = packedWeights(ctx, 'pack_weights', g, plan);
        dispatchRows(ctx, 'conv2d', g, plan, { x: ctx.input(0), bias: ctx.input(bias ? 2 : 1),
          out: ctx.output(0), wt });
      },
    });
    return y;
  }
  const t = fitted(tiling, g.O, g.OW);
  const qTiles = Math.ceil(g.OW / t.TN);
  const cols = g.N * g.OH * qTiles;
  const tilesX = Math.ceil(cols / t.WG_X);
  const tilesY = Math.ceil(g.O / (t.WG_Y * t.TM));
  const grid = { qTiles, cols, tilesX, tilesY, hasBias: !!bias };
  const [y] = x.engine.record({
    op: 'conv2d', inputs, outputs: [[g.N, g.O, g.OH, g.OW]], attrs: { ...attrs },
    encode: (ctx) => ctx.dispatch({
      shader: 'conv2d', entry: 'forward', overrides: overridesOf(t),
      bindings: { x: ctx.input(0), w: ctx.input(1), bias: ctx.input(bias ? 2 : 1),
        out: ctx.output(0) },
      uniforms: params(g, grid), workgroups: tilesX * tilesY,
    }),
  });
  return y;
}

/** How forward_rows covers a geometry: its tile, vector widths and grid. */
interface RowsPlan {
  t: ConvTiling;
  /** Output vectors stored whole: 1, 2 or 4 floats. */
  vec: 1 | 2 | 4;
  /** Input rows read as vec4s. */
  xv: boolean;
  grid: { qTiles: number; cols: number; tilesX: number; tilesY: number; hasBias: boolean;
    rows4: number };
}

function rowsPlan(g: Geometry, tiling: ConvTiling, hasBias: boolean, wantVec = tiling.VEC ?? 1):
  RowsPlan {
  // Row blocks sized evenly (7 + 7 pixels of a 14-wide row, not 8 + 6 padded to 8 + 8),
  // measured up to 1.4x faster on the stride-2 SwAV layers; the TM weights of a tap are read
  // as whole vec4s.
  let t = fitted(tiling, g.O, g.OW, true);
  t = { ...t, TM: Math.min(16, Math.ceil(t.TM / 4) * 4) };
  // Whole-vector stores: the widest of VEC, 2 that divides the output width, with blocks of
  // a multiple of it (7 + 7 pixels of a 14-wide row become 8 + 6 at vec2).
  const vec = ([4, 2] as const).find((v) => v <= wantVec && g.OW % v === 0) ?? 1;
  if (vec > 1) t = { ...t, TN: Math.min(8, Math.ceil(t.TN / vec) * vec) };
  // VEC 4 also reads the input as vec4s where every row segment starts a whole vec4 before
  // (or at) its block: stride 1 along the width, W and TN multiples of 4, padding <= 4.
  const xv = wantVec === 4 && g.stride[1] === 1 && g.W % 4 === 0 && t.TN % 4 === 0 &&
    g.padding[1] <= 4;
  const qTiles = Math.ceil(g.OW / t.TN);
  const cols = g.N * g.OH * qTiles;
  const tilesX = Math.ceil(cols / t.WG_X);
  const tilesY = Math.ceil(g.O / (t.WG_Y * t.TM));
  return { t, vec, xv, grid: { qTiles, cols, tilesX, tilesY, hasBias,
    rows4: Math.ceil(g.O / 4) } };
}

/**
 * The weights (input 1 of the node, w of geometry g) packed for forward_rows by `entry`: as
 * they are, or flipped for the input gradient. Weights that have not changed since they were
 * last packed (a leaf's version) are not packed again: inference, evaluation, and each
 * step's second use of a layer.
 */
function packedWeights(ctx: EncodeContext, entry: 'pack_weights' | 'pack_weights_flipped',
  g: Geometry, plan: RowsPlan): BufferRange {
  // C KH KW taps of O channels (rounded to 4), or, flipped, O KH KW taps of C channels.
  const total = g.KH * g.KW * plan.grid.rows4 * 4 * (entry === 'pack_weights' ? g.C : g.O);
  const { range, valid } = ctx.derived(1, `conv2d.${entry}`, PACKED_BYTES, { uniform: true });
  if (!valid) {
    ctx.dispatch({
      shader: 'conv2d', entry, overrides: { WG: SUM_WG },
      bindings: { w: ctx.input(1), out: range }, uniforms: params(g, { ...plan.grid, total }),
      workgroups: groups(total, SUM_WG),
    });
  }
  return range;
}

/** Records forward_rows over x with the packed weights wt (bias is read only if planned). */
function dispatchRows(ctx: EncodeContext, op: string, g: Geometry, plan: RowsPlan,
  r: { x: BufferRange; bias: BufferRange; out: BufferRange; wt: BufferRange }): void {
  const { t, vec, xv } = plan;
  const outv = vec === 1 ? null : vectorRange(r.out, vec);
  const stored: Record<string, BufferRange> = outv ? { [`out${vec}`]: outv } : { out: r.out };
  // Whole tensors start at offset 0 of a buffer sized in 256 bytes: x4 is never null.
  const x4 = vectorRange(r.x, 4) ??
    fail(op, `internal: the input's buffer has no room for vec4 reads`);
  ctx.dispatch({
    shader: 'conv2d', entry: outv ? `forward_rows${vec}` : 'forward_rows',
    overrides: { ...overridesOf(t), KW_ROW: g.KW, SW_ROW: g.stride[1],
      XV: Number(xv), PW_ROW: xv ? g.padding[1] : 0 },
    bindings: { x: r.x, bias: r.bias, ...stored, wt: r.wt, x4 }, uniforms: params(g, plan.grid),
    workgroups: plan.grid.tilesX * plan.grid.tilesY,
  });
}

/**
 * forward_shared: workgroup tiles of WG_Y TM channels by WG_X TN pixels staged through
 * workgroup memory, for GPUs. Rows of the workgroup the layer lacks are dropped (an
 * 8-channel layer takes WG_Y = 2 at TM = 4).
 */
function forwardShared(x: Tensor, w: Tensor, bias: Tensor | null, g: Geometry,
  tiling: ConvTiling, attrs: Attrs): Tensor {
  const WG_Y = Math.min(tiling.WG_Y, Math.ceil(g.O / tiling.TM));
  const t = { ...tiling, WG_Y, BK: tiling.BK ?? 16 };
  const cols = g.N * g.OH * g.OW;
  const tilesX = Math.ceil(cols / (t.WG_X * t.TN));
  const tilesY = Math.ceil(g.O / (t.WG_Y * t.TM));
  const inputs = bias ? [x, w, bias] : [x, w];
  const [y] = x.engine.record({
    op: 'conv2d', inputs, outputs: [[g.N, g.O, g.OH, g.OW]], attrs: { ...attrs },
    encode: (ctx) => ctx.dispatch({
      shader: 'conv2d', entry: 'forward_shared',
      overrides: { ...overridesOf(t), BK: t.BK },
      bindings: { x: ctx.input(0), w: ctx.input(1), bias: ctx.input(bias ? 2 : 1),
        out: ctx.output(0) },
      uniforms: params(g, { qTiles: 0, cols, tilesX, tilesY, hasBias: !!bias }),
      workgroups: tilesX * tilesY,
    }),
  });
  return y;
}

/** Bytes of forward_rows' packed weights: its uniform array's fixed size. */
const PACKED_BYTES = 65536;

/**
 * Whether forward_rows serves this convolution: kernels 1 to 3 wide, stride 1 or 2 and no
 * dilation along the width, and packed weights (O rounded up to 4, plus one tile's overrun)
 * within the 64 KiB uniform window.
 */
function rowsPath(g: Geometry): boolean {
  const packed = (g.C * g.KH * g.KW * Math.ceil(g.O / 4) * 4 + 16) * 4;
  return g.KW <= 3 && g.stride[1] <= 2 && g.dilation[1] === 1 && packed <= PACKED_BYTES;
}

/**
 * The input gradient at stride 1 as a convolution of dy: the geometry of that convolution (dy
 * in, dx out, the flipped weights' channels swapped), or null where forward_rows cannot
 * compute it (stride or dilation past 1, padding past the kernel's reach, kernels over 3
 * wide, weights past 64 KiB).
 */
function flippedGeometry(g: Geometry): Geometry | null {
  const [ph, pw] = g.padding;
  if (g.stride[0] !== 1 || g.stride[1] !== 1 || g.dilation[0] !== 1 || g.dilation[1] !== 1 ||
    ph > g.KH - 1 || pw > g.KW - 1) return null;
  const t: Geometry = { N: g.N, C: g.O, H: g.OH, W: g.OW, O: g.C, KH: g.KH, KW: g.KW,
    OH: g.H, OW: g.W, stride: [1, 1], padding: [g.KH - 1 - ph, g.KW - 1 - pw], dilation: [1, 1] };
  return rowsPath(t) ? t : null;
}

function checkDy(op: string, dy: Tensor, g: Geometry): void {
  checkTensor(op, 'dy', dy);
  const want = [g.N, g.O, g.OH, g.OW];
  if (dy.rank !== 4 || dy.shape.some((d, i) => d !== want[i])) {
    fail(op, `dy must have the output shape ${shapeStr(want)}, got ${dy.describe()}`);
  }
}

/** dx of y = conv2d(x, w): dy [N, O, H', W'] and w give a tensor of `xShape`. */
export function conv2dBackwardInput(dy: Tensor, w: Tensor, xShape: readonly number[],
  opts: Conv2dOptions = {}): Tensor {
  const op = 'conv2dBackwardInput';
  checkTensor(op, 'w', w);
  checkConvOptions(op, arguments, 3, 'conv2dBackwardInput(dy, w, xShape, {})');
  if (xShape.length !== 4 || w.rank !== 4) {
    fail(op, `x must be [N, C, H, W] and w [O, C, KH, KW], got ${shapeStr(xShape)} and ` +
      `${w.describe()}`);
  }
  const g = geometry(op, xShape, w.shape, opts);
  checkDy(op, dy, g);
  const tiling = resolveTiling(w.engine, 'backwardInput', g, opts.tiling);
  const flipped = flippedGeometry(g);
  const kernel = tiling.inputGrad ??
    (isCpuAdapter(w.engine.gpu.adapterInfo) ? 'rows' : 'generic');
  if (flipped && kernel === 'rows') {
    // Vector stores and loads wherever the widths allow: on lavapipe, where this kernel is
    // the default, they always pay.
    const plan = rowsPlan(flipped, tiling, false, tiling.VEC ?? 4);
    const [dx] = w.engine.record({
      op, inputs: [dy, w], outputs: [[...xShape]],
      encode: (ctx) => {
        const wt = packedWeights(ctx, 'pack_weights_flipped', g, plan);
        // dy is the input; it stands in for the (unread) bias too.
        dispatchRows(ctx, op, flipped, plan, { x: ctx.input(0), bias: ctx.input(0),
          out: ctx.output(0), wt });
      },
    });
    return dx;
  }
  // Columns: (stride phase rh, rw; n; row of the phase; block of TN pixels of the phase).
  const [sh, sw] = g.stride;
  const phaseCols = Math.ceil(g.W / sw);
  const phaseRows = Math.ceil(g.H / sh);
  const t = fitted(tiling, g.C, phaseCols);
  const qTiles = Math.ceil(phaseCols / t.TN);
  const cols = sh * sw * g.N * phaseRows * qTiles;
  const tilesX = Math.ceil(cols / t.WG_X);
  const tilesY = Math.ceil(g.C / (t.WG_Y * t.TM));
  const [dx] = w.engine.record({
    op, inputs: [dy, w], outputs: [[...xShape]],
    encode: (ctx) => ctx.dispatch({
      shader: 'conv2d', entry: 'backward_input', overrides: overridesOf(t),
      bindings: { dy: ctx.input(0), w: ctx.input(1), out: ctx.output(0) },
      uniforms: params(g, { qTiles, cols, phaseRows, tilesX, tilesY }),
      workgroups: tilesX * tilesY,
    }),
  });
  return dx;
}

/** dw of y = conv2d(x, w): dy [N, O, H', W'] and x give a tensor of `wShape`. */
export function conv2dBackwardWeight(dy: Tensor, x: Tensor, wShape: readonly number[],
  opts: Conv2dOptions = {}): Tensor {
  const op = 'conv2dBackwardWeight';
  checkTensor(op, 'x', x);
  checkConvOptions(op, arguments, 3, 'conv2dBackwardWeight(dy, x, wShape, {})');
  if (x.rank !== 4 || wShape.length !== 4) {
    fail(op, `x must be [N, C, H, W] and w [O, C, KH, KW], got ${x.describe()} and ` +
      `${shapeStr(wShape)}`);
  }
  const g = geometry(op, x.shape, wShape, opts);
  checkDy(op, dy, g);
  const tiling = resolveTiling(x.engine, 'backwardWeight', g, opts.tiling);
  const taps = g.C * g.KH * g.KW;
  const total = g.O * taps;
  // Weight taps are few (9 for a 3x3 kernel over one channel) and each padded column costs
  // a gather per step of a long reduction: blocks sized evenly (2 of 5, not 2 of 8).
  const t = fitted(tiling, g.O, taps, true);
  const tilesX = Math.ceil(taps / (t.WG_X * t.TN));
  const tilesY = Math.ceil(g.O / (t.WG_Y * t.TM));
  // Few outputs and a long reduction over (n, oh, ow): split the (n, oh) rows into chunks
  // so that enough invocations run, and add the chunks' partial sums afterwards.
  // Counted with the CPU tile whatever the tiling, so that the chunks, and with them the order
  // in which each weight's terms are added, depend on the shape and adapter only: every
  // tiling then gives the same bits, and tuning never changes a run's numbers.
  const ref = fitted(CONV_CPU_TILING, g.O, taps, true);
  const invocations = Math.ceil(taps / ref.TN) * Math.ceil(g.O / ref.TM);
  const rowsAll = g.N * g.OH;
  const target = isCpuAdapter(x.engine.gpu.adapterInfo)
    ? WEIGHT_GRAD_TARGET_CPU : WEIGHT_GRAD_TARGET_GPU;
  const wanted = Math.min(rowsAll, Math.max(1, Math.ceil(target / invocations)));
  const rowsPerChunk = Math.ceil(rowsAll / wanted);
  const nChunks = Math.ceil(rowsAll / rowsPerChunk);
  const grid = { qTiles: 0, cols: taps, tilesX, tilesY, rowsPerChunk, total, nChunks };
  const [dw] = x.engine.record({
    op, inputs: [dy, x], outputs: [[...wShape]],
    encode: (ctx) => {
      const partial = nChunks > 1 ? ctx.scratch(nChunks * total * 4) : ctx.output(0);
      ctx.dispatch({
        shader: 'conv2d', entry: 'backward_weight', overrides: overridesOf(t),
        bindings: { dy: ctx.input(0), x: ctx.input(1), out: partial },
        uniforms: params(g, grid),
        workgroups: nChunks * tilesX * tilesY,
      });
      if (nChunks === 1) return;
      ctx.dispatch({
        shader: 'conv2d', entry: 'sum_partials', overrides: { WG: SUM_WG },
        bindings: { part: partial, out: ctx.output(0) },
        uniforms: params(g, grid),
        workgroups: groups(total, SUM_WG),
      });
    },
  });
  return dw;
}

// y = conv(x, w) + b: dx = conv^T(dy, w) (the input gradient kernel), dw = the correlation
// of dy with x (the weight gradient kernel), db[o] = sum of dy over n, oh, ow.
registerGrad('conv2d', ({ inputs: [x, w, bias], grads: [gy], attrs, needs }) => {
  const opts = attrs as unknown as Attrs;
  return [
    needs[0] ? conv2dBackwardInput(gy!, w, x.shape, opts) : null,
    needs[1] ? conv2dBackwardWeight(gy!, x, w.shape, opts) : null,
    ...(bias ? [needs[2] ? sum(gy!, [0, 2, 3]) : null] : []),
  ];
});
