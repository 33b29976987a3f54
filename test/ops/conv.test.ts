// conv2d on the GPU against the float64 reference, forward and all three gradients, over
// deliberately awkward settings: 1x1 and non-square kernels, stride, padding and dilation
// that differ per axis, one input channel, prime channel counts, a grid past 65535
// workgroups, both tilings; and the argument checks' messages.

import { describe, it, expect } from 'vitest';
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, CONV_CPU_TILING, CONV_GPU_TILING,
  CONV_SHARED_TILING, convTuneKey,
  defaultConvTiling, type ConvTiling } from '../../src/ops/conv.js';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { assign } from '../../src/ops/shape.js';
import type { Tensor } from '../../src/graph/tensor.js';
import * as R from '../../src/reference/index.js';
import { TOL } from '../../src/reference/compare.js';
import { checkOp, dispatchedEntries, expectClose, randomInput, runRecording, upload,
  useEngine } from '../helpers/gpu.js';

const engine = useEngine();

type Pair = [number, number];

interface Case {
  name: string;
  x: number[];
  w: number[];
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  bias?: boolean;
  tiling?: ConvTiling;
}

async function checkConv(c: Case, seed = 1): Promise<void> {
  const opts = { stride: c.stride, padding: c.padding, dilation: c.dilation };
  const [O, C, KH, KW] = c.w;
  const x = randomInput(c.x, seed);
  const w = randomInput(c.w, seed + 1);
  const inputs = c.bias ? [x, w, randomInput([O], seed + 2)] : [x, w];
  const [N, OHW] = (() => {
    const s = R.conv2dOutputShape(c.x, c.w, opts);
    return [s[0], s[2] * s[3]];
  })();
  // Forward dot products run over C*KH*KW terms, dx over O*KH*KW, dw and the bias over
  // N*H'*W': all products of unit normals.
  const gradK = Math.max(O * KH * KW, N * OHW);
  await checkOp(engine(), {
    name: `conv2d ${c.name}`, inputs,
    gpu: ([tx, tw, tb]) => conv2d(tx, tw, tb ?? null, { ...opts, tiling: c.tiling }),
    refForward: ([rx, rw, rb]) => R.conv2d(rx, rw, rb ?? null, opts),
    refBackward: (dy, [rx, rw]) => [
      R.conv2dBackwardInput(dy, rw, rx.shape, opts),
      R.conv2dBackwardWeight(dy, rx, rw.shape, opts),
      ...(c.bias ? [R.conv2dBackwardBias(dy)] : []),
    ],
    tol: TOL.f32Matmul(C * KH * KW), gradTol: TOL.f32Matmul(gradK),
  });
}

const CASES: Case[] = [
  { name: '3x3 pad 1 with bias', x: [2, 3, 9, 11], w: [5, 3, 3, 3], padding: [1, 1], bias: true },
  { name: '1x1 kernel, no bias', x: [2, 4, 7, 5], w: [3, 4, 1, 1] },
  { name: 'non-square 2x5 kernel, padding [1, 2]', x: [2, 3, 8, 9], w: [4, 3, 2, 5],
    padding: [1, 2], bias: true },
  { name: 'stride [2, 1], padding [1, 0], dilation [1, 2]', x: [2, 3, 11, 13], w: [7, 3, 3, 3],
    stride: [2, 1], padding: [1, 0], dilation: [1, 2], bias: true },
  { name: 'C = 1, O = 13 (prime), stride 2', x: [3, 1, 8, 8], w: [13, 1, 3, 3], stride: [2, 2],
    padding: [1, 1] },
  { name: 'N = 1, H != W, stride [1, 3], dilation [2, 1]', x: [1, 5, 6, 17], w: [6, 5, 3, 2],
    stride: [1, 3], padding: [2, 1], dilation: [2, 1], bias: true },
  { name: 'stride 3 past a 2x2 kernel (input pixels no tap reaches)', x: [2, 2, 10, 10],
    w: [3, 2, 2, 2], stride: [3, 3] },
  { name: 'channels past one tile, 17 <- 19, stride 2', x: [2, 19, 9, 9], w: [17, 19, 3, 3],
    stride: [2, 2], padding: [1, 1], bias: true },
  { name: 'kernel as tall as the padded input (one output row)', x: [1, 2, 3, 5], w: [3, 2, 5, 3],
    padding: [1, 0] },
  { name: 'MNIST-like 28x28, 1 -> 8 channels, pad 1', x: [4, 1, 28, 28], w: [8, 1, 3, 3],
    padding: [1, 1], bias: true },
];

describe('conv2d forward and backward, default tiling', () => {
  for (const c of CASES) it(c.name, async () => checkConv(c));
});

describe('conv2d with other tilings', () => {
  const tilings: [string, ConvTiling][] = [
    ['GPU tiling', CONV_GPU_TILING],
    ['odd 3x5 blocks', { TM: 3, TN: 5, WG_X: 4, WG_Y: 2 }],
    ['one output per invocation', { TM: 1, TN: 1, WG_X: 8, WG_Y: 1 }],
  ];
  for (const [label, tiling] of tilings) {
    it(`${label}: ${CASES[3].name}; ${CASES[7].name}`, async () => {
      await checkConv({ ...CASES[3], tiling });
      await checkConv({ ...CASES[7], tiling }, 5);
    });
  }
  // The 'rows' forward kernel (shared row segments, packed uniform weights) on every case it
  // serves, and its fallback to the generic kernel where it cannot.
  const rows: ConvTiling = { ...CONV_CPU_TILING, forward: 'rows' };
  for (const k of [0, 1, 4, 7, 9]) {
    it(`rows forward kernel: ${CASES[k].name}`, async () => {
      await checkConv({ ...CASES[k], tiling: rows }, 11 + k);
      await checkConv({ ...CASES[k], tiling: { ...CONV_GPU_TILING, forward: 'rows' } }, 21 + k);
    });
  }
  // The workgroup-memory forward (for GPUs) on every case, with the GPU candidate's tiles and
  // with odd ones (a slice depth of 5 that does not divide C KH KW).
  for (const [k, c] of CASES.entries()) {
    it(`shared forward kernel: ${c.name}`, async () => {
      await checkConv({ ...c, tiling: CONV_SHARED_TILING }, 71 + k);
      await checkConv({ ...c, tiling: { TM: 3, TN: 2, WG_X: 4, WG_Y: 3, BK: 5,
        forward: 'shared' } }, 81 + k);
    });
  }
  // On lavapipe the default forward for at most 8 output channels is 'rows': the generic
  // kernel on those cases too.
  for (const k of [0, 1, 9]) {
    it(`generic forward kernel: ${CASES[k].name}`, async () => {
      await checkConv({ ...CASES[k], tiling: { ...CONV_CPU_TILING, forward: 'generic' } }, 51 + k);
    });
  }
  // On lavapipe the input gradient at stride 1 runs on forward_rows (dy convolved with the
  // flipped weights); the generic backward_input kernel, the GPUs' default, on those cases.
  for (const k of [0, 1, 9]) {
    it(`generic input-gradient kernel at stride 1: ${CASES[k].name}`, async () => {
      await checkConv({ ...CASES[k], tiling: { ...CONV_CPU_TILING, inputGrad: 'generic' } },
        91 + k);
      await checkConv({ ...CASES[k], tiling: { ...CONV_GPU_TILING, inputGrad: 'generic' } },
        95 + k);
    });
  }
  it('rows input gradient: kernels 1 to 3 wide and tall, padding 0 up to the kernel size - 1, ' +
    'channels past one tile', async () => {
    const rowsDx = { ...CONV_CPU_TILING, inputGrad: 'rows' as const };
    const cases: Case[] = [
      { name: '3x2 kernel, padding [2, 1] (flipped: none)', x: [2, 3, 8, 9], w: [4, 3, 3, 2],
        padding: [2, 1] },
      { name: '3x3, no padding (flipped: 2)', x: [3, 5, 7, 6], w: [6, 5, 3, 3] },
      { name: '1x3, padding [0, 1]; 17 <- 19 channels', x: [2, 19, 4, 13], w: [17, 19, 1, 3],
        padding: [0, 1], bias: true },
      { name: '2x1, 1 channel in, 28 wide (vec4 loads and stores)', x: [2, 1, 5, 28],
        w: [3, 1, 2, 1] },
    ];
    for (const [k, c] of cases.entries()) {
      await checkConv({ ...c, tiling: rowsDx }, 101 + k);
      await checkConv({ ...c, tiling: { ...rowsDx, TM: 3, TN: 5, WG_X: 4, WG_Y: 2, VEC: 1 } },
        111 + k);
    }
  });
  it('the input gradient runs on forward_rows at stride 1 and falls back where it cannot',
    async () => {
      const e = engine();
      const entries = (x: number[], w: number[], o: Parameters<typeof conv2d>[3]) =>
        dispatchedEntries(e, () => {
          const y = conv2d(e.zeros(x), e.zeros(w), null, o);
          const dy = e.zeros([...y.shape]);
          return [conv2dBackwardInput(dy, e.zeros(w), x, o)];
        });
      const dx = (x: number[], w: number[], o: Parameters<typeof conv2d>[3]) =>
        entries(x, w, o).then((k) => k.slice(-2).join(' '));
      expect(await dx([1, 2, 6, 28], [3, 2, 3, 3], { padding: 1 }))
        .toBe('pack_weights_flipped forward_rows4');
      expect(await dx([1, 2, 6, 14], [3, 2, 3, 3], { padding: 1 }))
        .toBe('pack_weights_flipped forward_rows2');
      expect(await dx([1, 2, 6, 7], [3, 2, 1, 1], {})).toBe('pack_weights_flipped forward_rows');
      const generic = (k: string) => expect(k).toMatch(/(^| )backward_input$/);
      generic(await dx([1, 2, 6, 28], [3, 2, 3, 3],
        { padding: 1, tiling: { ...CONV_CPU_TILING, inputGrad: 'generic' } }));
      generic(await dx([1, 2, 6, 28], [3, 2, 3, 3], { padding: 1, stride: [1, 2] }));
      generic(await dx([1, 2, 6, 28], [3, 2, 3, 3], { padding: 1, dilation: [2, 1] }));
      generic(await dx([1, 2, 6, 28], [3, 2, 3, 3], { padding: [1, 3] }));
      generic(await dx([1, 2, 6, 28], [3, 2, 3, 4], { padding: 1 }));
      // 64 x 64 x 3 x 3 weights: 144 KiB packed.
      generic(await dx([1, 64, 5, 5], [64, 64, 3, 3], { padding: 1 }));
    });
  it('rows forward past one tile of 16 channels, 3 rounded up to 4, 8-wide rows', async () => {
    await checkConv({ name: '20 <- 3, 3x3 stride 1, 37 wide', x: [2, 3, 5, 37], w: [20, 3, 3, 3],
      padding: [1, 1], bias: true, tiling: rows }, 31);
    await checkConv({ name: '3 <- 2, 3x3 stride [1, 2], 2 wide', x: [3, 2, 4, 2], w: [3, 2, 3, 3],
      stride: [1, 2], padding: [1, 1], tiling: { ...rows, TM: 3, TN: 5 } }, 32);
  });
  // Whole-vector stores: vec4 where the output width is a multiple of 4 (28, 4, 8), vec2 where
  // it is even (14, 6, 2), one at a time where it is odd (11, 5); blocks of 8 pixels that
  // overrun the row (28 = 8 + 8 + 8 + 4), prime channel counts, N = 1, bias or none.
  const vecCases: Case[] = [
    { ...CASES[9], name: 'MNIST-like 28x28 (vec4, blocks 8 + 8 + 8 + 4)' },
    { ...CASES[4], name: 'C = 1, O = 13, stride 2: 4 wide (vec4, one block)' },
    { name: 'N = 1, 7 <- 5, 14 wide (vec2)', x: [1, 5, 6, 14], w: [7, 5, 3, 3],
      padding: [1, 1], bias: true },
    { name: '3 <- 2, stride 2: 6 wide (vec2), 1x1 kernel', x: [3, 2, 5, 12], w: [3, 2, 1, 1],
      stride: [2, 2] },
    { name: '17 <- 3, 2 wide (vec2)', x: [2, 3, 3, 2], w: [17, 3, 3, 3], padding: [1, 1],
      bias: true },
    { name: '5 <- 3, 8 wide, stride [1, 2] (vec4)', x: [2, 3, 7, 16], w: [5, 3, 3, 2],
      stride: [1, 2], padding: [1, 0] },
    // VEC 4 also loads the input as vec4s where W and the block are multiples of 4 at stride
    // 1: windows starting left of the image (padding 1 to 4) or at the block (padding 0).
    { name: '6 <- 3, 1x1, 8 wide, padding 0 (vec4 loads and stores)', x: [2, 3, 5, 8],
      w: [6, 3, 1, 1], bias: true },
    { name: '5 <- 2, 3x3, 28 wide, padding [0, 0] (vec4 loads, vec2 stores)',
      x: [1, 2, 5, 28], w: [5, 2, 3, 3] },
    { name: '3 <- 2, 3x3, 8 wide, padding [1, 4] (window one vec4 left)', x: [2, 2, 4, 8],
      w: [3, 2, 3, 3], padding: [1, 4], bias: true },
    { name: '7 <- 1, 3x3, 12 wide, padding 2', x: [3, 1, 6, 12], w: [7, 1, 3, 3],
      padding: [2, 2] },
    { name: '2 <- 3, 3x3, 4 wide (window past both edges)', x: [2, 3, 4, 4], w: [2, 3, 3, 3],
      padding: [1, 1] },
    { ...CASES[0], name: '3x3 pad 1 with bias: 11 wide (one at a time)' },
    { ...CASES[7], name: '17 <- 19, stride 2: 5 wide (one at a time)' },
  ];
  for (const [k, c] of vecCases.entries()) {
    it(`rows forward with vector stores: ${c.name}`, async () => {
      await checkConv({ ...c, tiling: { ...rows, VEC: 4 } }, 91 + k);
      await checkConv({ ...c, tiling: { ...CONV_GPU_TILING, forward: 'rows', VEC: 2 } }, 101 + k);
    });
  }
  it('vector stores and loads run where the widths allow', async () => {
    const e = engine();
    const entries = (x: number[], w: number[], o: Parameters<typeof conv2d>[3]) =>
      dispatchedEntries(e, () => [conv2d(e.zeros(x), e.zeros(w), null, o)],
        (spec) => (spec.entry ?? 'main') + (spec.overrides?.XV ? ' + vec4 loads' : ''));
    const vec4 = { padding: 1, tiling: { ...rows, VEC: 4 as const } };
    expect(await entries([1, 1, 4, 28], [8, 1, 3, 3], vec4)).toEqual(['pack_weights',
      'forward_rows4 + vec4 loads']);
    // 14 wide: vec2 stores, and no vec4 loads (rows of 14 do not start on a vec4).
    expect(await entries([1, 1, 4, 14], [8, 1, 3, 3], vec4)).toEqual(['pack_weights',
      'forward_rows2']);
    expect(await entries([1, 1, 4, 13], [8, 1, 3, 3], vec4)).toEqual(['pack_weights',
      'forward_rows']);
    expect(await entries([1, 1, 4, 28], [8, 1, 3, 3], { ...vec4, tiling: { ...rows, VEC: 2 } }))
      .toEqual(['pack_weights', 'forward_rows2']);
    // Padding 0 (26 wide out: vec2 stores, vec4 loads); stride 2 (14 wide out) and padding 5
    // (36 wide out): no vec4 loads.
    expect(await entries([1, 2, 5, 28], [5, 2, 3, 3], { tiling: { ...rows, VEC: 4 } }))
      .toEqual(['pack_weights', 'forward_rows2 + vec4 loads']);
    expect(await entries([1, 1, 4, 28], [8, 1, 3, 3], { ...vec4, stride: [1, 2] }))
      .toEqual(['pack_weights', 'forward_rows2']);
    expect(await entries([1, 1, 4, 28], [8, 1, 3, 3], { ...vec4, padding: 5 }))
      .toEqual(['pack_weights', 'forward_rows4']);
  });
  it('rows forward runs where it serves and falls back where it cannot', async () => {
    const e = engine();
    const dispatches = async (x: number[], w: number[], o: Parameters<typeof conv2d>[3]) => {
      const before = e.gpu.counters.dispatches;
      const y = conv2d(e.zeros(x), e.zeros(w), null, o);
      await y.read();
      y.dispose();
      return e.gpu.counters.dispatches - before;
    };
    // Packing the weights, then the convolution.
    expect(await dispatches([1, 2, 6, 6], [3, 2, 3, 3], { padding: 1, tiling: rows })).toBe(2);
    expect(await dispatches([1, 2, 6, 6], [3, 2, 3, 3],
      { padding: 1, tiling: { ...rows, forward: 'generic' } })).toBe(1);
    // 4 taps wide, dilated, stride 3 along the width, and 64 x 64 x 3 x 3 weights (144 KiB).
    expect(await dispatches([1, 2, 6, 6], [3, 2, 3, 4], { tiling: rows })).toBe(1);
    expect(await dispatches([1, 2, 9, 9], [3, 2, 3, 3], { dilation: [1, 2], tiling: rows }))
      .toBe(1);
    expect(await dispatches([1, 2, 9, 9], [3, 2, 3, 3], { stride: [1, 3], tiling: rows }))
      .toBe(1);
    expect(await dispatches([1, 64, 5, 5], [64, 64, 3, 3], { tiling: rows })).toBe(1);
  });
  it('falls back to the generic forward kernel past 64 KiB of weights, with the right values',
    async () => {
      await checkConv({ name: '64 <- 64 (144 KiB of weights)', x: [1, 64, 5, 6],
        w: [64, 64, 3, 3], padding: [1, 1], tiling: rows }, 41);
    });
  it('every tiling and forward kernel gives the same bits (tuning never changes results)',
    async () => {
      const e = engine();
      const variants: ConvTiling[] = [
        { ...CONV_CPU_TILING, forward: 'generic' }, { ...CONV_CPU_TILING, forward: 'rows' },
        { ...CONV_GPU_TILING, forward: 'generic' }, { ...CONV_GPU_TILING, forward: 'rows' },
        { TM: 3, TN: 5, WG_X: 4, WG_Y: 2, forward: 'rows' }, CONV_SHARED_TILING,
        { ...CONV_CPU_TILING, forward: 'rows', VEC: 4 },
        { TM: 3, TN: 5, WG_X: 4, WG_Y: 2, forward: 'rows', VEC: 2 },
        { TM: 3, TN: 2, WG_X: 4, WG_Y: 3, BK: 5, forward: 'shared' },
      ];
      for (const c of [CASES[0], CASES[4], CASES[7], { ...CASES[1], stride: [2, 2] as Pair },
        CASES[9]]) {
        const opts = { stride: c.stride, padding: c.padding, dilation: c.dilation };
        const x = e.tensor(Float32Array.from(randomInput(c.x, 61).data), c.x);
        const w = e.tensor(Float32Array.from(randomInput(c.w, 62).data), c.w);
        const y0 = conv2d(x, w, null, opts);
        const dy = e.tensor(Float32Array.from(randomInput([...y0.shape], 63).data), [...y0.shape]);
        y0.dispose();
        const runs: Float32Array[][] = [];
        for (const tiling of variants) {
          const o = { ...opts, tiling };
          runs.push(await e.run([], [conv2d(x, w, null, o),
            conv2dBackwardInput(dy, w, c.x, o), conv2dBackwardWeight(dy, x, c.w, o)]));
        }
        for (const [k, r] of runs.entries()) {
          for (const p of [0, 1, 2]) {
            expect(Array.from(r[p]), `${c.name}: variant ${k}, output ${p}`)
              .toEqual(Array.from(runs[0][p]));
          }
        }
        for (const t of [x, w, dy]) t.dispose();
      }
    });
  it('picks the CPU tiling on lavapipe and the GPU tiling elsewhere', () => {
    expect(defaultConvTiling('mesa software llvmpipe-llvm-15')).toBe(CONV_CPU_TILING);
    expect(defaultConvTiling('nvidia hopper NVIDIA H200')).toBe(CONV_GPU_TILING);
  });
});

// The rows forward packs the weights into a uniform buffer; for a leaf the packed copy is kept
// and reused until the leaf's values change (write(), an in-place op). Each test asserts both
// that the pack was skipped or redone (dispatch counts) and that the values are those of the
// weights the device holds at that point (a stale copy would give the old weights' output).
describe('conv2d packed weights, kept per leaf until its values change', () => {
  const X = [2, 3, 6, 7];
  const W = [5, 3, 3, 3];
  const opts = { padding: 1, tiling: { ...CONV_CPU_TILING, forward: 'rows' as const } };
  const x = randomInput(X, 61);
  const w1 = randomInput(W, 62);
  const w2 = randomInput(W, 63);
  const expected = (w: typeof w1) => R.conv2d(x, w, null, { padding: [1, 1] });
  const tol = TOL.f32Matmul(3 * 3 * 3);
  // The kernels of a run that reads `ys`, and their values.
  const run = (ys: Tensor[]) => runRecording(engine(), ys);
  const packs = (entries: string[]) => entries.filter((k) => k === 'pack_weights').length;

  it('a second forward with the same leaf reuses the packed copy, to the same bits', async () => {
    const e = engine();
    const tx = upload(e, x);
    const tw = upload(e, w1);
    const a = await run([conv2d(tx, tw, null, opts)]);
    const b = await run([conv2d(tx, tw, null, opts)]);
    expect(a.entries).toEqual(['pack_weights', 'forward_rows']);
    expect(b.entries).toEqual(['forward_rows']);
    expectClose(a.values[0], expected(w1), tol, 'first forward');
    expect(b.values[0]).toEqual(a.values[0]);
    // Two forwards in one run (a layer at two crop sizes): one pack.
    const c = await run([conv2d(tx, tw, null, opts), conv2d(tx, tw, null, opts)]);
    expect(packs(c.entries)).toBe(0);
    tw.write(w2.data);
    const d = await run([conv2d(tx, tw, null, opts), conv2d(tx, tw, null, opts)]);
    expect(packs(d.entries)).toBe(1);
    expectClose(d.values[0], expected(w2), tol, 'after write');
    expect(d.values[1]).toEqual(d.values[0]);
  });

  it('write() while an earlier run is still unsubmitted: that run sees the old weights, ' +
    'the next the new', async () => {
    const e = engine();
    const tx = upload(e, x);
    const tw = upload(e, w1);
    await run([conv2d(tx, tw, null, opts)]);
    // Not awaited: the run is queued (not yet encoded) when the write comes, so the write
    // waits behind it.
    const first = conv2d(tx, tw, null, opts).read();
    tw.write(w2.data);
    const second = conv2d(tx, tw, null, opts).read();
    expectClose(await first, expected(w1), tol, 'run before the write');
    expectClose(await second, expected(w2), tol, 'run after the write');
  });

  it('an in-place update between two forwards of one run: the second packs again', async () => {
    const e = engine();
    const tx = upload(e, x);
    const tw = upload(e, w1);
    const next = upload(e, w2);
    const before = conv2d(tx, tw, null, opts);
    assign(tw, next);
    const after = conv2d(tx, tw, null, opts);
    const r = await run([before, after]);
    expect(packs(r.entries)).toBe(2);
    expectClose(r.values[0], expected(w1), tol, 'before the update');
    expectClose(r.values[1], expected(w2), tol, 'after the update');
    // And the next run reuses what the update's pack left.
    const again = await run([conv2d(tx, tw, null, opts)]);
    expect(packs(again.entries)).toBe(0);
    expect(again.values[0]).toEqual(r.values[1]);
  });

  it('a run that fails before its submission leaves no copy taken for packed', async () => {
    const e = engine();
    const tx = upload(e, x);
    const tw = upload(e, w1);
    const y = conv2d(tx, tw, null, opts);
    const [boom] = e.record({ op: 'boom', inputs: [tx], outputs: [[1]], encode: () => {
      throw new Error('boom: encoding fails on purpose');
    } });
    await expect(e.run([], [y, boom])).rejects.toThrow(/boom/);
    const r = await run([conv2d(tx, tw, null, opts)]);
    expect(packs(r.entries)).toBe(1);
    expectClose(r.values[0], expected(w1), tol, 'after the failed run');
  });

  it('the packed copy is freed with its leaf', async () => {
    const e = engine();
    const tx = upload(e, x);
    const live0 = e.gpu.pool.stats.liveBytes;
    const tw = upload(e, w1);
    const leaf = e.gpu.pool.stats.liveBytes - live0;
    await run([conv2d(tx, tw, null, opts)]);
    expect(e.gpu.pool.stats.liveBytes - live0).toBe(leaf + 65536);
    tw.dispose();
    expect(e.gpu.pool.stats.liveBytes).toBe(live0);
    tx.dispose();
  });
});

describe('conv2d dispatch past 65535 workgroups', () => {
  it('a 1x1 conv over a 260x260 image, one pixel per workgroup: forward and dx grids fold',
    async () => {
      // Blocks of 2 channels x 1 pixel in workgroups of one invocation: 67 600 workgroups for
      // the forward and for dx (the folding is the host's, the same for every tiling), dx on
      // both of its kernels (rows: one pixel per block with VEC 1).
      expect(260 * 260).toBeGreaterThan(65_535);
      for (const inputGrad of ['generic', 'rows'] as const) {
        const tiling: ConvTiling = { TM: 2, TN: 1, WG_X: 1, WG_Y: 1, VEC: 1, inputGrad };
        await checkConv({ name: `one pixel per workgroup, dx ${inputGrad}`, x: [1, 1, 260, 260],
          w: [2, 1, 1, 1], bias: true, tiling }, 7);
      }
    });
  it('the vec4-storing rows forward, one 4-pixel block per workgroup: 67 600 workgroups',
    async () => {
      // 1040 rows of 65 blocks (260 / 4) of 1 channel; the gradients run on 1 x 1 blocks.
      const tiling: ConvTiling = { TM: 1, TN: 1, WG_X: 1, WG_Y: 1, forward: 'rows', VEC: 4 };
      await checkConv({ name: 'one vec4 block per workgroup', x: [1, 1, 1040, 260],
        w: [2, 1, 1, 1], bias: true, tiling }, 8);
    });
});

describe('conv2d argument checks', () => {
  it('names conv2d, the rule and the shapes', () => {
    const e = engine();
    const x = e.zeros([2, 3, 8, 8]);
    const w = e.zeros([4, 3, 3, 3]);
    const bad = (f: () => unknown, re: RegExp) => {
      expect(f).toThrow(OpArgumentError);
      expect(f).toThrow(re);
    };
    bad(() => conv2d(e.zeros([3, 8, 8]), w, null),
      /conv2d: x must be \[N, C, H, W\], got .*\[3, 8, 8\]/);
    bad(() => conv2d(x, e.zeros([4, 3, 3]), null),
      /conv2d: w must be \[O, C, KH, KW\], got .*\[4, 3, 3\]/);
    bad(() => conv2d(x, e.zeros([4, 2, 3, 3]), null),
      /conv2d: x \[2, 3, 8, 8\] has 3 channels but w \[4, 2, 3, 3\] expects 2/);
    bad(() => conv2d(x, e.zeros([4, 3, 9, 3]), null), new RegExp('conv2d: the kernel of ' +
      'w \\[4, 3, 9, 3\\] with dilation \\[1, 1\\] spans 9x3, larger than the input ' +
      'x \\[2, 3, 8, 8\\] padded by \\[0, 0\\] \\(8x8\\)'));
    bad(() => conv2d(x, w, null, { dilation: [1, 4] }),
      /conv2d: the kernel .* spans 3x9, larger than the input/);
    bad(() => conv2d(x, w, null, { stride: 0 }), new RegExp('conv2d: stride must be a number ' +
      'or \\[h, w\\] of positive integers, got 0 \\(x \\[2, 3, 8, 8\\], w \\[4, 3, 3, 3\\]\\)'));
    bad(() => conv2d(x, w, null, { dilation: [1, -1] }),
      /conv2d: dilation must be a number or \[h, w\] of positive integers, got \[1, -1\]/);
    bad(() => conv2d(x, w, null, { padding: [-1, 0] }),
      /conv2d: padding must be a number or \[h, w\] of non-negative integers, got \[-1, 0\]/);
    // Strings quoted, NaN as NaN (JSON printed "2" as 2 and NaN as null).
    bad(() => conv2d(x, w, null, { stride: '2' as never }),
      /conv2d: stride must be a number or \[h, w\] of positive integers, got "2" \(x/);
    bad(() => conv2d(x, w, null, { padding: [NaN, 1] }),
      /conv2d: padding must be .* non-negative integers, got \[NaN, 1\] \(x/);
    bad(() => conv2d(x, w, e.zeros([3])),
      /conv2d: bias must be \[4\] \(one value per output channel of w \[4, 3, 3, 3\]\), got/);
    // A forced tiling is checked whole: a fractional workgroup side would leave outputs unset.
    const tiled = (t: Partial<ConvTiling>) => () => conv2d(x, w, null,
      { tiling: { ...CONV_CPU_TILING, ...t } as ConvTiling });
    bad(tiled({ WG_X: 1.5 }), /conv2d: tiling.WG_X must be an integer in 1..256, got 1.5/);
    bad(tiled({ WG_Y: 0 }), /conv2d: tiling.WG_Y must be an integer in 1..256, got 0/);
    bad(tiled({ WG_X: 32, WG_Y: 16 }),
      /conv2d: tiling.WG_X \* tiling.WG_Y must be at most 256 invocations, got 32 x 16/);
    bad(tiled({ TM: 17 }), /conv2d: tiling.TM must be an integer in 1..16, got 17/);
    bad(tiled({ forward: 'bogus' as 'rows' }),
      /conv2d: tiling.forward must be 'generic', 'rows' or 'shared', got "bogus"/);
    bad(tiled({ forward: 'shared', BK: 0 }), /conv2d: tiling.BK must be an integer in 1..64/);
    bad(tiled({ forward: 'shared', BK: 64, TM: 16, TN: 8, WG_X: 16, WG_Y: 8 }),
      /conv2d: tiling for forward 'shared' stages 65536 bytes of workgroup memory, past 16384/);
    bad(tiled({ forward: 'rows', VEC: 3 as 4 }), /conv2d: tiling.VEC must be 1, 2 or 4, got 3/);
    bad(tiled({ forward: 'generic', VEC: 4 }),
      /conv2d: tiling.VEC \(4\) applies to forward 'rows' only, got forward "generic"/);
    bad(tiled({ VEC: 2 }),
      /conv2d: tiling.VEC \(2\) applies to forward 'rows' only, got forward by default/);
    bad(tiled({ TN: '4' as never }), /conv2d: tiling.TN must be an integer in 1..8, got "4"/);
    // The gradient ops check dy against the output shape the geometry gives.
    bad(() => conv2dBackwardInput(e.zeros([2, 4, 6, 7]), w, [2, 3, 8, 8]),
      /conv2dBackwardInput: dy must have the output shape \[2, 4, 6, 6\], got .*\[2, 4, 6, 7\]/);
    bad(() => conv2dBackwardWeight(e.zeros([2, 4, 6, 6]), x, [4, 3, 3, 3], { padding: 1 }),
      /conv2dBackwardWeight: dy must have the output shape \[2, 4, 8, 8\], got .*\[2, 4, 6, 6\]/);
  });
});

describe('conv2d options from plain JavaScript', () => {
  // x [1, 1, 4, 4] = 0..15 and a 2x2 kernel summing a pixel and its lower-right neighbour:
  // at stride 2 the output is x[2i, 2j] + x[2i + 1, 2j + 1] = 16 i + 4 j + 5.
  const inputs = () => {
    const e = engine();
    return { x: e.tensor(Array.from({ length: 16 }, (_, i) => i), [1, 1, 4, 4]),
      w: e.tensor([1, 0, 0, 1], [1, 1, 2, 2]) };
  };
  /** The ops as plain JavaScript sees them: any arguments. */
  const js = conv2d as (...args: unknown[]) => Tensor;
  const keys = 'conv2d takes stride, padding, dilation, tiling';

  it('values in the options\' place are refused, shown as the object PyTorch\'s order means',
    () => {
      const { x, w } = inputs();
      expect(() => js(x, w, null, 2)).toThrow(OpArgumentError);
      expect(() => js(x, w, null, 2)).toThrow('conv2d: options must be one object, as in ' +
        'conv2d(x, w, bias, { stride: 2 }); got 2');
      expect(() => js(x, w, null, 2, 1)).toThrow('conv2d: options must be one object, as in ' +
        'conv2d(x, w, bias, { stride: 2, padding: 1 }); got 2, 1 in their place');
      expect(() => js(x, w, null, { stride: 2 }, 1)).toThrow('conv2d: the options object must ' +
        'be the last argument, as in conv2d(x, w, bias, { ... }); got 1 after it');
      expect(() => js(x, w, { stride: 2 })).toThrow('conv2d: bias must be a Tensor, null or ' +
        'undefined, got { stride: 2 }; the options come fourth: conv2d(x, w, null, { stride, ' +
        'padding, dilation, tiling })');
    });

  it('unknown keys are refused, with the closest known one', () => {
    const { x, w } = inputs();
    expect(() => js(x, w, null, { strides: 2 })).toThrow(
      `conv2d: unknown option "strides" (did you mean "stride"?); ${keys}`);
    expect(() => js(x, w, null, { bias: w })).toThrow(`conv2d: unknown option "bias"; ${keys}`);
    expect(() => js(x, w, null, { tiling: { ...CONV_CPU_TILING, tm: 8 } })).toThrow(
      'conv2d: unknown key "tm" in options.tiling (did you mean "TM"?); options.tiling takes ' +
      'TM, TN, WG_X, WG_Y, forward, BK, VEC, inputGrad');
  });

  it('the gradient ops check theirs too', () => {
    const { x, w } = inputs();
    const dy = x.engine.zeros([1, 1, 3, 3]);
    expect(() => (conv2dBackwardInput as (...a: unknown[]) => Tensor)(dy, w, [1, 1, 4, 4], 2))
      .toThrow('conv2dBackwardInput: options must be one object, as in ' +
        'conv2dBackwardInput(dy, w, xShape, { stride: 2 }); got 2');
    expect(() => conv2dBackwardWeight(dy, x, [1, 1, 2, 2], { pad: 1 } as never)).toThrow(
      'conv2dBackwardWeight: unknown option "pad" (did you mean "padding"?); ' +
      'conv2dBackwardWeight takes stride, padding, dilation, tiling');
  });

  it('the object form still strides, pads and tunes', async () => {
    const { x, w } = inputs();
    expect(Array.from(await js(x, w, null, { stride: 2 }).read())).toEqual([5, 9, 21, 25]);
    expect(Array.from(await js(x, w, undefined, { stride: [2, 3] }).read())).toEqual([5, 21]);
    expect(Array.from(await js(x, w, null).read())).toEqual(
      [5, 7, 9, 13, 15, 17, 21, 23, 25]);
    expect(convTuneKey('forward', [1, 1, 4, 4], [1, 1, 2, 2], { stride: 2 }))
      .toBe('conv2d.forward x1x1x4x4 w1x1x2x2 s2,2 p0,0 d1,1');
  });
});
