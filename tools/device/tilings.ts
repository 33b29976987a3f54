// Every tiling candidate the tuner may choose on this adapter, against the float64
// references: matmul's variants (register and workgroup-memory tiles) and each convolution
// pass under each of convCandidates' tilings (on GPUs the workgroup-memory forward too) and
// both input-gradient kernels. The test suite does this on lavapipe; a machine that cannot
// run it (the lent GPU machine) runs this instead, through tools/device/checks.ts --tilings.
//
// Beside the tolerance, the tilings of one pass must agree bit for bit: every conv variant
// adds each output's terms in the same order, so that tuning never changes a result (the
// input gradient's two kernels are the exception, each checked on its own).

import type { Engine } from '../../src/graph/engine.js';
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, type ConvTiling } from
  '../../src/ops/conv.js';
import { matmul, type MatmulTiling } from '../../src/ops/matmul.js';
import { convCandidates, MATMUL_CANDIDATES } from '../../src/ops/tune.js';
import { TOL, compare, type Tolerance } from '../../src/reference/compare.js';
import * as R from '../../src/reference/index.js';
import { mulberry32 } from '../../src/reference/random.js';
import { roundToF32, uniform, type RefTensor } from '../../src/reference/tensor.js';
import { usageOf } from '../web/checks.js';

export interface TilingRow {
  kernel: string;
  tiling: string;
  pass: boolean;
  /** Share of the tolerance the worst element uses (below 1 passes). */
  usage: number;
  message: string;
}

interface ConvCase { x: number[]; w: number[]; stride: number; padding: number;
  dilation?: number }

/**
 * Shapes with 1s, primes, sizes no tile divides, and the SwAV model's layer kinds (3x3 at
 * stride 1 and 2, 1x1 at stride 2); `large` adds a few of the model's own shapes at batch 32.
 */
export function convCases(large: boolean): ConvCase[] {
  const cases: ConvCase[] = [
    { x: [1, 1, 1, 1], w: [1, 1, 1, 1], stride: 1, padding: 0 },
    { x: [3, 5, 11, 13], w: [7, 5, 3, 3], stride: 1, padding: 1 },
    { x: [2, 3, 9, 17], w: [19, 3, 3, 3], stride: 2, padding: 1 },
    { x: [2, 6, 10, 10], w: [5, 6, 1, 1], stride: 2, padding: 0 },
    { x: [2, 3, 12, 11], w: [4, 3, 3, 2], stride: 1, padding: 2, dilation: 2 },
  ];
  if (large) {
    cases.push(
      { x: [32, 1, 28, 28], w: [8, 1, 3, 3], stride: 1, padding: 1 },
      { x: [32, 8, 28, 28], w: [16, 8, 3, 3], stride: 2, padding: 1 },
      { x: [32, 16, 14, 14], w: [32, 16, 1, 1], stride: 2, padding: 0 },
      { x: [32, 32, 7, 7], w: [32, 32, 3, 3], stride: 1, padding: 1 },
    );
  }
  return cases;
}

const MATMUL_SHAPES: [number, number, number][] = [[1, 1, 1], [37, 53, 61], [128, 96, 200]];

const show = (t: object) => JSON.stringify(t).replace(/"/g, '');

function random(shape: number[], seed: number): RefTensor {
  return roundToF32(uniform(shape, mulberry32(seed), -1, 1));
}

/** Runs every candidate; `onRow` sees each row as it comes. */
export async function checkTilings(engine: Engine, opts: { large?: boolean } = {},
  onRow: (r: TilingRow) => void = () => {}): Promise<TilingRow[]> {
  const rows: TilingRow[] = [];
  const add = (r: TilingRow) => {
    rows.push(r);
    onRow(r);
  };
  const judge = (kernel: string, tiling: string, got: Float32Array, want: RefTensor,
    tol: Tolerance) => {
    const r = compare(got, want.data, { ...tol, name: `${kernel} ${tiling}`, shape: want.shape });
    add({ kernel, tiling, pass: r.ok, usage: usageOf(got, want.data, tol),
      message: r.ok ? '' : r.message });
  };
  // Tilings of one pass that must give the same bits: the first one's output is the yardstick.
  const sameBits = (kernel: string, outs: [string, Float32Array][]) => {
    for (const [name, out] of outs.slice(1)) {
      const i = out.findIndex((v, k) => !Object.is(v, outs[0][1][k]));
      add({ kernel, tiling: `${name} = ${outs[0][0]}`, pass: i < 0, usage: i < 0 ? 0 : Infinity,
        message: i < 0 ? '' : `element ${i}: ${out[i]} here, ${outs[0][1][i]} under ` +
          outs[0][0] });
    }
  };
  for (const [M, K, N] of MATMUL_SHAPES) {
    const a = random([M, K], M + K);
    const b = random([K, N], K + N);
    const want = R.matmul(a, b);
    const kernel = `matmul ${M}x${K}x${N}`;
    for (const t of MATMUL_CANDIDATES) {
      const y = matmul(engine.tensor(a.data, a.shape), engine.tensor(b.data, b.shape),
        { tiling: t as MatmulTiling });
      judge(kernel, show(t), await y.read(), want, TOL.f32Matmul(K));
    }
  }
  for (const c of convCases(opts.large ?? false)) {
    const geo = { stride: c.stride, padding: c.padding, dilation: c.dilation ?? 1 };
    const x = random(c.x, 1);
    const w = random(c.w, 2);
    const yRef = R.conv2d(x, w, null, geo);
    const dy = random(yRef.shape, 3);
    const [N, C] = c.x;
    const [O, , KH, KW] = c.w;
    const name = `conv x${c.x.join('x')} w${c.w.join('x')} s${c.stride} p${c.padding}` +
      (c.dilation ? ` d${c.dilation}` : '');
    const xt = engine.tensor(x.data, x.shape);
    const wt = engine.tensor(w.data, w.shape);
    const dyt = engine.tensor(dy.data, dy.shape);
    const run = async (label: string, want: RefTensor, tol: Tolerance,
      tilings: readonly ConvTiling[], f: (t: ConvTiling) => ReturnType<typeof conv2d>) => {
      const outs: [string, Float32Array][] = [];
      for (const t of tilings) {
        const got = await f(t).read();
        judge(`${name} ${label}`, show(t), got, want, tol);
        outs.push([show(t), got]);
      }
      return outs;
    };
    sameBits(`${name} forward`, await run('forward', yRef, TOL.f32Matmul(C * KH * KW),
      convCandidates(engine, 'forward'), (t) => conv2d(xt, wt, null, { ...geo, tiling: t })));
    const dxRef = R.conv2dBackwardInput(dy, w, c.x, geo);
    for (const kernel of ['generic', 'rows'] as const) {
      const tilings = convCandidates(engine, 'backwardInput').map((t) => ({ ...t,
        inputGrad: kernel }));
      sameBits(`${name} input gradient (${kernel})`, await run(`input gradient (${kernel})`,
        dxRef, TOL.f32Matmul(O * KH * KW), tilings,
        (t) => conv2dBackwardInput(dyt, wt, c.x, { ...geo, tiling: t })));
    }
    const dwRef = R.conv2dBackwardWeight(dy, x, c.w, geo);
    sameBits(`${name} weight gradient`, await run('weight gradient', dwRef,
      TOL.f32Matmul(N * yRef.shape[2] * yRef.shape[3]), convCandidates(engine, 'backwardWeight'),
      (t) => conv2dBackwardWeight(dyt, xt, c.w, { ...geo, tiling: t })));
    for (const t of [xt, wt, dyt]) t.dispose();
  }
  return rows;
}
