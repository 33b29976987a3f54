// Batched matrix product with transposes and a fused bias + relu epilogue (shaders/matmul.wgsl).

import { isCpuAdapter } from '../gpu/acquire.js';
import type { GpuContext } from '../gpu/context.js';
import { registerGrad } from '../graph/autodiff.js';
import { Tensor, shapeStr } from '../graph/tensor.js';
import { reluGrad } from './elementwise.js';
import { reshape, sum, sumToShape } from './reduce.js';
import { checkChoice, checkFlag, checkKeys, checkOptions, checkRank, checkTensor, fail,
  optionKeys, showValue } from './util.js';

/**
 * How the product is tiled. `register`: each invocation keeps TM x TN outputs in registers
 * and reads storage directly (fast on CPU drivers such as lavapipe). `shared`: BK-deep
 * slices staged in workgroup memory (what real GPUs want).
 */
export interface MatmulTiling {
  variant: 'register' | 'shared';
  /** Outputs per invocation along M (1..16) and N (1..8). */
  TM: number;
  TN: number;
  /** Invocations per workgroup along N and M. */
  WG_X: number;
  WG_Y: number;
  /** Depth of a workgroup-memory slice (shared variant only). */
  BK?: number;
}

export const REGISTER_TILING: MatmulTiling = { variant: 'register', TM: 8, TN: 8, WG_X: 4,
  WG_Y: 4 };
export const SHARED_TILING: MatmulTiling = { variant: 'shared', TM: 4, TN: 4, WG_X: 16,
  WG_Y: 16, BK: 16 };

/** CPU Vulkan drivers (lavapipe's llvmpipe, SwiftShader) get register tiles; GPUs shared ones. */
export function defaultMatmulTiling(adapterInfo: string): MatmulTiling {
  return isCpuAdapter(adapterInfo) ? REGISTER_TILING : SHARED_TILING;
}

/** The tiling timed fastest on this adapter (tuneMatmul), else the adapter-kind default. */
export function matmulTilingFor(gpu: GpuContext): MatmulTiling {
  return (gpu.tuned.get('matmul') as MatmulTiling | undefined) ??
    defaultMatmulTiling(gpu.adapterInfo);
}

export interface MatmulOptions {
  /** a is stored transposed: [K, M] or [B, K, M]. */
  transA?: boolean;
  /** b is stored transposed: [N, K] or [B, N, K]. */
  transB?: boolean;
  /** Added to every row of the product before relu: shape [N]. */
  bias?: Tensor | null;
  /** Apply max(0, .) after the bias, in the same kernel. */
  relu?: boolean;
  /** Force a tiling (tests, benchmarks); default chosen from the adapter. */
  tiling?: MatmulTiling;
}

const OPTIONS = { call: 'matmul(a, b, {})', keys: optionKeys<MatmulOptions>({ transA: true,
  transB: true, bias: true, relu: true, tiling: true }) };
const TILING_KEYS = optionKeys<MatmulTiling>({ variant: true, TM: true, TN: true, WG_X: true,
  WG_Y: true, BK: true });

interface Geometry {
  /** Batch items the kernel loops over (1 when none or when the batch folds into M). */
  batch: number;
  m: number;
  n: number;
  k: number;
  aBatchStride: number;
  bBatchStride: number;
  outShape: number[];
}

function geometry(a: Tensor, b: Tensor, tA: boolean, tB: boolean): Geometry {
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const m = tA ? ac : ar;
  const k = tA ? ar : ac;
  const kb = tB ? bc : br;
  const n = tB ? br : bc;
  if (k !== kb) {
    fail('matmul', `inner sizes differ: a ${shapeStr(a.shape)} (transA=${tA}) gives K=${k}, ` +
      `b ${shapeStr(b.shape)} (transB=${tB}) gives K=${kb}`);
  }
  const ab = a.rank === 3 ? a.shape[0] : 0;
  const bb = b.rank === 3 ? b.shape[0] : 0;
  if (ab && bb && ab !== bb) {
    fail('matmul', `batch sizes differ: a ${shapeStr(a.shape)}, b ${shapeStr(b.shape)}; ` +
      `two 3-D operands need equal batches (a 2-D operand broadcasts)`);
  }
  const batch = Math.max(ab, bb);
  const outShape = batch ? [batch, m, n] : [m, n];
  // [B, M, K] times a shared [K, N] is one [B*M, K] x [K, N] product in the same layout.
  if (ab && !bb && !tA) {
    return { batch: 1, m: ab * m, n, k, aBatchStride: 0, bBatchStride: 0, outShape };
  }
  return { batch: Math.max(batch, 1), m, n, k, aBatchStride: ab ? m * k : 0,
    bBatchStride: bb ? k * n : 0, outShape };
}

function checkTiling(t: MatmulTiling): void {
  checkKeys('matmul', 'options.tiling', t, TILING_KEYS);
  checkChoice('matmul', 'tiling.variant', t.variant, ['register', 'shared']);
  // The shader's register arrays hold at most 16 rows and 8 columns.
  for (const [key, max] of [['TM', 16], ['TN', 8]] as const) {
    if (!Number.isInteger(t[key]) || t[key] < 1 || t[key] > max) {
      fail('matmul', `tiling.${key} must be an integer in 1..${max}, got ${showValue(t[key])}`);
    }
  }
}

/**
 * op(a) op(b) (+ bias, then relu when asked). a: [M, K] / [B, M, K] (transA: [K, M] /
 * [B, K, M]); b: [K, N] / [B, K, N] (transB: [N, K] / [B, N, K]). A 2-D operand broadcasts
 * over the other's batch. Output [M, N] or [B, M, N].
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  checkRank('matmul', 'a', a, [2, 3]);
  checkRank('matmul', 'b', b, [2, 3]);
  if (a.engine !== b.engine) fail('matmul', 'a and b belong to different engines');
  checkOptions('matmul', arguments, 2, OPTIONS);
  const tA = checkFlag('matmul', 'transA', opts.transA, false);
  const tB = checkFlag('matmul', 'transB', opts.transB, false);
  const relu = checkFlag('matmul', 'relu', opts.relu, false);
  const g = geometry(a, b, tA, tB);
  const bias = opts.bias ?? null;
  if (bias !== null) {
    checkTensor('matmul', 'bias', bias);
    if (bias.rank !== 1 || bias.shape[0] !== g.n) {
      fail('matmul', `bias must be [${g.n}] (one value per output column), got ` +
        `${bias.describe()} for a ${shapeStr(a.shape)} x b ${shapeStr(b.shape)} product`);
    }
  }
  const tiling = opts.tiling ?? matmulTilingFor(a.engine.gpu);
  checkTiling(tiling);
  const inputs = bias ? [a, b, bias] : [a, b];
  const rowsPerWg = tiling.WG_Y * tiling.TM;
  const colsPerWg = tiling.WG_X * tiling.TN;
  const tilesM = Math.ceil(g.m / rowsPerWg);
  const tilesN = Math.ceil(g.n / colsPerWg);
  const shared = tiling.variant === 'shared';
  const overrides: Record<string, number> = {
    TM: tiling.TM, TN: tiling.TN, WG_X: tiling.WG_X, WG_Y: tiling.WG_Y,
  };
  if (shared) overrides.BK = tiling.BK ?? 16;
  const [out] = a.engine.record({
    op: 'matmul', inputs, outputs: [g.outShape], attrs: { transA: tA, transB: tB, relu, tiling },
    encode: (ctx) => ctx.dispatch({
      shader: 'matmul', entry: shared ? 'main_shared' : 'main', overrides,
      bindings: { a: ctx.input(0), b: ctx.input(1), bias: ctx.input(bias ? 2 : 0),
        out: ctx.output(0) },
      uniforms: { m: g.m, n: g.n, k: g.k, batch: g.batch, a_batch_stride: g.aBatchStride,
        b_batch_stride: g.bBatchStride, tiles_m: tilesM, tiles_n: tilesN,
        // A transpose is a swap of strides: op(a)[row, k] = a[row * rs + k * ks].
        a_row_stride: tA ? 1 : g.k, a_k_stride: tA ? g.m : 1,
        b_k_stride: tB ? 1 : g.n, b_col_stride: tB ? g.k : 1,
        has_bias: Number(!!bias), relu: Number(relu) },
      workgroups: g.batch * tilesM * tilesN,
    }),
  });
  return out;
}

// y = act(op(a) op(b) + bias). With z the pre-activation, dz = dy [y > 0] under relu (the
// subgradient 0 at 0, as relu takes; y > 0 exactly where z > 0), then
// d op(a) = dz op(b)^T, d op(b) = op(a)^T dz and dbias = sum of dz over rows and batch; a
// stored transpose transposes these back, which only swaps the trans flags and operand order.
registerGrad('matmul', ({ inputs, outputs: [y], grads: [gy], attrs, needs }) => {
  const [a, b, bias] = inputs;
  const tA = attrs.transA as boolean;
  const tB = attrs.transB as boolean;
  const tiling = attrs.tiling as MatmulTiling;
  // dy where y > 0, else 0 (not dy sign(y): an infinite dy at a dead unit made NaN there).
  const dz = attrs.relu ? reluGrad(gy!, y) : gy!;
  const mm = (x: Tensor, w: Tensor, transA: boolean, transB: boolean) =>
    matmul(x, w, { transA, transB, tiling });
  let da: Tensor | null = null;
  let db: Tensor | null = null;
  if (needs[0]) {
    // da = dz op(b)^T, stored transposed: op(b) dz^T
    da = sumToShape(tA ? mm(b, dz, tB, true) : mm(dz, b, false, !tB), a.shape);
  }
  if (needs[1]) {
    if (a.rank === 3 && b.rank === 2 && !tA) {
      // A shared b sums its gradient over the batch: with a seen as [B*M, K] and dz as
      // [B*M, N] that sum is the product's own reduction, and no [B, K, N] is built.
      const [B, M, K] = a.shape;
      const a2 = reshape(a, [B * M, K]);
      const dz2 = reshape(dz, [B * M, dz.shape[2]]);
      db = tB ? mm(dz2, a2, true, false) : mm(a2, dz2, true, false);
    } else {
      // db = op(a)^T dz, stored transposed: dz^T op(a)
      db = sumToShape(tB ? mm(dz, a, true, tA) : mm(a, dz, !tA, false), b.shape);
    }
  }
  const dbias = bias && needs[2] ? sum(dz, dz.rank === 3 ? [0, 1] : [0]) : null;
  return bias ? [da, db, dbias] : [da, db];
});
