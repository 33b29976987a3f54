// A small SwAV-shaped network built from GPU ops directly (conv2d, training batch norm, ReLU,
// max and average pooling, linear, L2 normalisation, prototypes, tempered softmax
// cross-entropy against Sinkhorn codes): its loss and every gradient against the float64
// reference, whose hand-chained backward is itself checked by finite differences.

import { describe, expect, it } from 'vitest';
import { grad, type Engine, type Tensor } from '../../src/node.js';
import { batchNorm } from '../../src/ops/batchnorm.js';
import { conv2d } from '../../src/ops/conv.js';
import { mul, relu, scale, stopGradient } from '../../src/ops/elementwise.js';
import { l2Normalize } from '../../src/ops/l2norm.js';
import { matmul } from '../../src/ops/matmul.js';
import { globalAvgPool, maxPool2d } from '../../src/ops/pool.js';
import { sum } from '../../src/ops/reduce.js';
import { concatRows, sliceRows } from '../../src/ops/shape.js';
import { sinkhorn } from '../../src/ops/sinkhorn.js';
import { logSoftmax, softCrossEntropy } from '../../src/ops/softmax.js';
import * as R from '../../src/reference/index.js';
import { expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';
import {
  CODE_TOL, LOSS_TOL, RefTape, SCORE_TOL, type Var, expectGrad, maxAbs, sliceRowsRef,
} from './helpers.js';

const engine = useEngine();

/** Images per view; two views, so 2 N rows reach the batch norms. */
const N = 5;
const C_IN = 2;
/** 7x7 images: the pooling's window and stride do not divide them. */
const HW = 7;
const C1 = 3;
const C2 = 5;
const D = 3;
const K = 5;
const T = 0.1;
const EPS = 0.05;
const ITERS = 3;

/**
 * conv1: 3x3, padding 1, no bias (a bias before a batch norm has no effect);
 * pool: max 3x3, stride 2, padding 1 (7 -> 4); conv2: a 2x3 kernel, stride [1, 2], padding
 * [0, 1], with a bias (4x4 -> 3x2); then global average pooling.
 */
const CONV1 = { padding: 1 };
const POOL = { kernel: 3, stride: 2, padding: 1 };
const CONV2 = { stride: [1, 2], padding: [0, 1] } as const;

const NAMES = ['x', 'conv1.weight', 'bn.weight', 'bn.bias', 'conv2.weight', 'conv2.bias',
  'linear.weight', 'linear.bias', 'prototypes'] as const;
type Name = (typeof NAMES)[number];

/** The inputs and parameters, float32-rounded so both sides start from the same numbers. */
function makeInputs(seed: number): Map<Name, R.RefTensor> {
  const m = new Map<Name, R.RefTensor>();
  m.set('x', randomInput([2 * N, C_IN, HW, HW], seed));
  m.set('conv1.weight', randomInput([C1, C_IN, 3, 3], seed + 1, 0.5));
  // Scales around 1 and shifts around 0, so some units are cut by the ReLU and some not.
  m.set('bn.weight', R.roundToF32(R.ref([C1], (i) => 0.7 + 0.25 * i)));
  m.set('bn.bias', randomInput([C1], seed + 2, 0.3));
  m.set('conv2.weight', randomInput([C2, C1, 2, 3], seed + 3, 0.5));
  m.set('conv2.bias', randomInput([C2], seed + 4, 0.3));
  m.set('linear.weight', randomInput([D, C2], seed + 5));
  m.set('linear.bias', randomInput([D], seed + 6, 0.3));
  // Unit prototypes, as SwAV keeps them: the scores are then cosines in [-1, 1].
  m.set('prototypes', R.roundToF32(R.l2Normalize(randomInput([K, D], seed + 7))));
  return m;
}

/** Codes of each view from its own scores, and the swapped targets [q of view 1; q of 0]. */
function refTargets(scores: R.RefTensor): { codes: R.RefTensor[]; targets: R.RefTensor } {
  const codes = [0, 1].map((v) => R.sinkhorn(sliceRowsRef(scores, v * N, (v + 1) * N), EPS,
    ITERS));
  const targets = R.zeros([2 * N, K]);
  targets.data.set(codes[1].data, 0);
  targets.data.set(codes[0].data, N * K);
  return { codes, targets };
}

/** The float64 forward (and backward when asked); `fixedTargets` holds the codes constant. */
function reference(inputs: Map<Name, R.RefTensor>, opts: { backward?: boolean;
  fixedTargets?: R.RefTensor } = {}) {
  const tape = new RefTape();
  const v = new Map<Name, Var>(NAMES.map((n) => [n, tape.leaf(inputs.get(n)!)]));
  const p = (n: Name) => v.get(n)!;
  let h = tape.conv2d(p('x'), p('conv1.weight'), null, CONV1);
  h = tape.relu(tape.batchNorm(h, p('bn.weight'), p('bn.bias')));
  h = tape.maxPool2d(h, POOL);
  h = tape.relu(tape.conv2d(h, p('conv2.weight'), p('conv2.bias'), CONV2));
  h = tape.globalAvgPool(h);
  const z = tape.l2Normalize(tape.matmulT(h, p('linear.weight'), p('linear.bias')));
  const scores = tape.matmulT(z, p('prototypes'));
  const codes = opts.fixedTargets ? null : refTargets(scores.value);
  const targets = opts.fixedTargets ?? codes!.targets;
  // The mean over the 2 N rows.
  const loss = tape.softCrossEntropySum(scores, targets, T, 1 / (2 * N));
  if (opts.backward) tape.backward(loss);
  return {
    loss: loss.value.data[0], scores: scores.value, codes: codes?.codes ?? [], targets,
    grads: NAMES.map((n) => p(n).grad ?? R.zeros(inputs.get(n)!.shape)),
    kinkDistance: tape.kinkDistance,
  };
}

/**
 * How the GPU computes the loss: the fused soft-target cross-entropy SwAV's loss uses, or
 * spelled out as -sum(q * logSoftmax(s / T)) / rows from the log-softmax and elementwise ops.
 */
type LossPath = 'fused' | 'logSoftmax';

/** The same network from GPU ops; returns the loss, scores, codes and every gradient. */
function gpuNetwork(e: Engine, inputs: Map<Name, R.RefTensor>, path: LossPath) {
  const t = new Map<Name, Tensor>(NAMES.map((n) => [n, upload(e, inputs.get(n)!, true, n)]));
  const p = (n: Name) => t.get(n)!;
  let h = conv2d(p('x'), p('conv1.weight'), null, CONV1);
  h = relu(batchNorm(h, p('bn.weight'), p('bn.bias'), { training: true }));
  h = maxPool2d(h, POOL);
  h = relu(conv2d(h, p('conv2.weight'), p('conv2.bias'), CONV2));
  h = globalAvgPool(h);
  const z = l2Normalize(matmul(h, p('linear.weight'), { transB: true, bias: p('linear.bias') }));
  const scores = matmul(z, p('prototypes'), { transB: true });
  const codes = e.noGrad(() => [0, 1].map((v) =>
    sinkhorn(stopGradient(sliceRows(scores, v * N, (v + 1) * N)),
      { epsilon: EPS, iterations: ITERS })));
  const targets = e.noGrad(() => concatRows([codes[1], codes[0]]));
  const loss = path === 'fused' ? softCrossEntropy(scores, targets, T)
    : scale(sum(mul(targets, logSoftmax(scores, T))), -1 / (2 * N));
  const grads = grad(loss, NAMES.map(p)) as Tensor[];
  return { loss, scores, codes, grads };
}

describe('small SwAV network from GPU ops vs the float64 reference', () => {
  const cases = [[2, 'fused'], [3, 'fused'], [4, 'fused'], [2, 'logSoftmax']] as const;
  for (const [seed, path] of cases) {
    it(`loss, scores, codes and every gradient (seed ${seed}, ${path} loss)`, async () => {
      const e = engine();
      const inputs = makeInputs(seed * 100);
      const g = gpuNetwork(e, inputs, path);
      const out = await e.run([], [g.loss, g.scores, ...g.codes, ...g.grads]);
      const ref = reference(inputs, { backward: true });
      // Float32 moves a pre-activation by ~1e-6; nearer a ReLU's or a max's kink it could
      // take the other side and a gradient would differ for that reason alone.
      expect(ref.kinkDistance, 'distance to a kink (choose another seed)').toBeGreaterThan(1e-5);
      expectClose(out[1], ref.scores, SCORE_TOL, 'scores');
      expectClose(out[2], ref.codes[0], CODE_TOL, 'codes of view 0');
      expectClose(out[3], ref.codes[1], CODE_TOL, 'codes of view 1');
      expectClose(out[0], [ref.loss], LOSS_TOL, 'loss');
      NAMES.forEach((n, i) => expectGrad(out[4 + i], ref.grads[i], `d loss / d ${n}`));
      // Every gradient carries signal: none is 0 by construction (the one bias feeds the
      // second convolution, not a batch norm), so the relative checks above have teeth.
      ref.grads.forEach((r, i) => expect(maxAbs(r.data), `d loss / d ${NAMES[i]} is not 0`)
        .toBeGreaterThan(1e-2));
    });
  }

  it('the reference chain agrees with finite differences (codes held fixed)', () => {
    // With the codes held fixed (they carry no gradient), the loss is a function of the
    // input and the parameters alone; central differences along random directions move all
    // of them at once. h = 1e-6 on an O(1) loss: truncation ~1e-12 and rounding ~1e-10,
    // so 1e-6 relative is tight (measured: <= 2e-9).
    for (const seed of [2, 3, 4]) {
      const inputs = makeInputs(seed * 100);
      const ref = reference(inputs, { backward: true });
      // The step moves each ReLU input and pooled value by ~1e-6 .. 1e-5.
      expect(ref.kinkDistance, 'distance to a kink (choose another seed)').toBeGreaterThan(1e-4);
      const f = (xs: R.RefTensor[]) => reference(new Map(NAMES.map((n, i) => [n, xs[i]])),
        { fixedTargets: ref.targets }).loss;
      const r = R.checkGrad(f, NAMES.map((n) => inputs.get(n)!), ref.grads,
        { mode: 'directional', directions: 6, rtol: 1e-6, atol: 1e-9, rng: R.mulberry32(seed),
          name: `small network (seed ${seed})` });
      expect(r.ok, r.message).toBe(true);
    }
  });
});
