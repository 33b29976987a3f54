// Float64 reference of SwAV's networks for the end-to-end tests: a tape of src/reference ops
// whose backward chains the reference backward rules by hand, the swapped-prediction loss,
// a reference SwavModel with the same parameter names as the GPU one, and the tolerances
// the GPU's scores, codes, loss and gradients are held to.

import {
  type Conv2dOptions, type MaxPool2dWindow, type RefTensor, addBackward, add as refAdd,
  batchNormBackward, batchNormTrain, conv2d, conv2dBackwardBias, conv2dBackwardInput,
  conv2dBackwardWeight, globalAvgPool, globalAvgPoolBackward, l2Normalize,
  l2NormalizeBackward, matmul, matmulBackward, maxPool2d, maxPool2dBackward, relu,
  reluBackward, sinkhorn, softCrossEntropy, softCrossEntropyBackward, TOL, type Tolerance,
  zeros,
} from '../../src/reference/index.js';
import { expectClose } from '../helpers/gpu.js';

/** A value on the tape and the gradient of the final scalar with respect to it. */
export interface Var {
  value: RefTensor;
  grad: RefTensor | null;
}

function accumulate(v: Var, g: RefTensor): void {
  if (!v.grad) {
    v.grad = { shape: [...g.shape], data: Float64Array.from(g.data) };
    return;
  }
  for (let i = 0; i < g.data.length; i++) v.grad.data[i] += g.data[i];
}

/**
 * Records reference forward ops and, for each, the reference backward that undoes it.
 * backward() walks them in reverse: each op reads its output's gradient and adds its inputs'
 * gradients, so a value used twice (a residual input, a shared weight) sums both paths.
 */
export class RefTape {
  private backs: (() => void)[] = [];
  /**
   * How far the forward stayed from the kinks of its piecewise-linear ops: the smallest
   * |input| of a ReLU and the smallest gap between the largest and the second largest value
   * of a max-pooling window. Finite differences with a step that could cross a kink measure
   * a different one-sided slope, so their tests require this to be well above the step.
   */
  kinkDistance = Infinity;

  leaf(value: RefTensor): Var {
    return { value, grad: null };
  }

  private op(value: RefTensor, back: (dy: RefTensor) => void): Var {
    const out: Var = { value, grad: null };
    this.backs.push(() => {
      if (out.grad) back(out.grad);
    });
    return out;
  }

  conv2d(x: Var, w: Var, bias: Var | null, opts: Conv2dOptions): Var {
    return this.op(conv2d(x.value, w.value, bias?.value ?? null, opts), (dy) => {
      accumulate(x, conv2dBackwardInput(dy, w.value, x.value.shape, opts));
      accumulate(w, conv2dBackwardWeight(dy, x.value, w.value.shape, opts));
      if (bias) accumulate(bias, conv2dBackwardBias(dy));
    });
  }

  /** Training-mode batch norm (batch statistics), optionally followed by a ReLU. */
  batchNorm(x: Var, gamma: Var, beta: Var, opts: { eps?: number; relu?: boolean } = {}): Var {
    const r = batchNormTrain(x.value, gamma.value, beta.value, opts.eps ?? 1e-5);
    const bn = this.op(r.y, (dy) => {
      const g = batchNormBackward(dy, x.value, gamma.value, r.mean, r.invStd);
      accumulate(x, g.dx);
      accumulate(gamma, g.dgamma);
      accumulate(beta, g.dbeta);
    });
    return opts.relu ? this.relu(bn) : bn;
  }

  relu(x: Var): Var {
    for (const v of x.value.data) this.kinkDistance = Math.min(this.kinkDistance, Math.abs(v));
    return this.op(relu(x.value), (dy) => accumulate(x, reluBackward(dy, x.value)));
  }

  add(a: Var, b: Var): Var {
    return this.op(refAdd(a.value, b.value), (dy) => {
      const g = addBackward(dy, a.value, b.value);
      accumulate(a, g.da);
      accumulate(b, g.db);
    });
  }

  maxPool2d(x: Var, opts: MaxPool2dWindow): Var {
    this.kinkDistance = Math.min(this.kinkDistance, maxPoolGap(x.value, opts));
    return this.op(maxPool2d(x.value, opts),
      (dy) => accumulate(x, maxPool2dBackward(dy, x.value, opts)));
  }

  globalAvgPool(x: Var): Var {
    return this.op(globalAvgPool(x.value),
      (dy) => accumulate(x, globalAvgPoolBackward(dy, x.value.shape)));
  }

  /** a b^T + bias (bias [N] added to every row): PyTorch's Linear with W stored [out, in]. */
  matmulT(a: Var, b: Var, bias: Var | null = null): Var {
    const y = matmul(a.value, b.value, { transB: true });
    if (bias) {
      const n = bias.value.data.length;
      for (let i = 0; i < y.data.length; i++) y.data[i] += bias.value.data[i % n];
    }
    return this.op(y, (dy) => {
      const g = matmulBackward(a.value, b.value, dy, { transB: true });
      accumulate(a, g.da);
      accumulate(b, g.db);
      // d bias_j = sum over rows of dy_ij
      if (bias) {
        const n = bias.value.data.length;
        const db = zeros([n]);
        for (let i = 0; i < dy.data.length; i++) db.data[i % n] += dy.data[i];
        accumulate(bias, db);
      }
    });
  }

  l2Normalize(x: Var): Var {
    return this.op(l2Normalize(x.value), (dy) => accumulate(x, l2NormalizeBackward(dy, x.value)));
  }

  /** Stacks along axis 0. */
  concatRows(xs: Var[]): Var {
    const rest = xs[0].value.shape.slice(1);
    const rows = xs.reduce((a, x) => a + x.value.shape[0], 0);
    const y = zeros([rows, ...rest]);
    let at = 0;
    for (const x of xs) {
      y.data.set(x.value.data, at);
      at += x.value.data.length;
    }
    return this.op(y, (dy) => {
      let from = 0;
      for (const x of xs) {
        const n = x.value.data.length;
        accumulate(x, { shape: [...x.value.shape], data: dy.data.slice(from, from + n) });
        from += n;
      }
    });
  }

  /**
   * scale * sum_i -<q_i, log softmax(logits_i / T)>: the targets q are constants (SwAV's
   * codes carry no gradient), so only the logits get one.
   */
  softCrossEntropySum(logits: Var, q: RefTensor, temperature: number, scale: number): Var {
    const { perRow } = softCrossEntropy(logits.value, q, temperature);
    let total = 0;
    for (const v of perRow.data) total += v;
    return this.op({ shape: [], data: Float64Array.of(total * scale) }, (dy) => {
      const rows = logits.value.shape[0];
      const dl = { shape: [rows], data: new Float64Array(rows).fill(dy.data[0] * scale) };
      accumulate(logits, softCrossEntropyBackward(logits.value, q, temperature, dl).dlogits);
    });
  }

  /** Seeds d loss / d loss = 1 and runs every recorded backward in reverse order. */
  backward(loss: Var): void {
    if (loss.value.data.length !== 1) {
      throw new Error(`RefTape.backward: the loss must hold one value, got ` +
        `[${loss.value.shape.join(', ')}]`);
    }
    loss.grad = { shape: [...loss.value.shape], data: Float64Array.of(1) };
    for (let i = this.backs.length - 1; i >= 0; i--) this.backs[i]();
  }
}

/**
 * The smallest gap between the largest and the second largest value of any max-pooling
 * window (padding excluded). A tie of exact zeros (a window of ReLU-dead units) is no kink:
 * those stay 0 under a small step, so it does not count.
 */
function maxPoolGap(x: RefTensor, opts: MaxPool2dWindow): number {
  const [N, C, H, W] = x.shape;
  const pair = (v: MaxPool2dWindow['kernel']): readonly [number, number] =>
    (typeof v === 'number' ? [v, v] : v);
  const [kh, kw] = pair(opts.kernel);
  const [sh, sw] = pair(opts.stride ?? opts.kernel);
  const [ph, pw] = pair(opts.padding ?? 0);
  const OH = Math.floor((H + 2 * ph - kh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - kw) / sw) + 1;
  let gap = Infinity;
  for (let nc = 0; nc < N * C; nc++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        let first = -Infinity;
        let second = -Infinity;
        for (let i = 0; i < kh; i++) {
          const h = oh * sh - ph + i;
          for (let j = 0; j < kw; j++) {
            const w = ow * sw - pw + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const v = x.data[(nc * H + h) * W + w];
            if (v > first) {
              second = first;
              first = v;
            } else if (v > second) {
              second = v;
            }
          }
        }
        if (second === -Infinity || (first === 0 && second === 0)) continue;
        gap = Math.min(gap, first - second);
      }
    }
  }
  return gap;
}

/** Rows [start, end) of a [N, ...] reference tensor (a copy). */
export function sliceRowsRef(t: RefTensor, start: number, end: number): RefTensor {
  const row = t.data.length / t.shape[0];
  return { shape: [end - start, ...t.shape.slice(1)], data: t.data.slice(start * row, end * row) };
}

export function concatRowsRef(ts: RefTensor[]): RefTensor {
  const rows = ts.reduce((a, t) => a + t.shape[0], 0);
  const out = zeros([rows, ...ts[0].shape.slice(1)]);
  let at = 0;
  for (const t of ts) {
    out.data.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

export interface SwavTargetOptions {
  /** Images per batch B; the scores hold the crops crop-major, B rows each. */
  batch: number;
  crops: number;
  assign: number[];
  epsilon: number;
  iterations: number;
  /** Queue scores per assignment crop, put before the batch's rows for Sinkhorn. */
  queueScores?: (RefTensor | null)[];
}

/**
 * The codes of each assignment crop (Sinkhorn on its B rows, after the queue's rows when
 * given, keeping the batch's B rows) and the per-crop targets sum_{i in A, i != v} q_i,
 * stacked crop-major like the scores.
 */
export function swavTargets(scores: RefTensor, o: SwavTargetOptions)
  : { codes: RefTensor[]; targets: RefTensor } {
  const B = o.batch;
  const K = scores.shape[1];
  const codes = o.assign.map((crop, i) => {
    const own = sliceRowsRef(scores, crop * B, (crop + 1) * B);
    const queued = o.queueScores?.[i] ?? null;
    if (!queued) return sinkhorn(own, o.epsilon, o.iterations);
    const q = sinkhorn(concatRowsRef([queued, own]), o.epsilon, o.iterations);
    return sliceRowsRef(q, queued.shape[0], queued.shape[0] + B);
  });
  const targets = zeros([o.crops * B, K]);
  for (let v = 0; v < o.crops; v++) {
    o.assign.forEach((crop, i) => {
      if (crop === v) return;
      const base = v * B * K;
      for (let j = 0; j < B * K; j++) targets.data[base + j] += codes[i].data[j];
    });
  }
  return { codes, targets };
}

// ---- the reference SwavModel ------------------------------------------------------------

export interface RefSwavShape {
  /** Backbone stem width; stage s has width 2^s times it. */
  width: number;
  /** Basic blocks per stage; the first stage has stride 1, the others 2. */
  blocks: number[];
}

export interface RefSwavLossOptions extends SwavTargetOptions {
  temperature: number;
}

export interface RefSwavResult {
  loss: number;
  scores: RefTensor;
  z: RefTensor;
  codes: RefTensor[];
  targets: RefTensor;
  /** d loss / d parameter, by the GPU model's parameter names; only when asked. */
  grads: Map<string, RefTensor>;
  /** RefTape.kinkDistance of the forward. */
  kinkDistance: number;
}

/**
 * SwavModel.embed and swavLoss in float64, from the parameters by name (as
 * SwavModel.namedParameters() gives them; the prototypes already unit-normalised). With
 * `fixedTargets` the codes are not recomputed: the loss is then a plain function of the
 * parameters, which is what the finite differences check (the codes are constants there).
 */
export function refSwavStep(params: Map<string, RefTensor>, shape: RefSwavShape,
  groups: RefTensor[], o: RefSwavLossOptions,
  opts: { backward?: boolean; fixedTargets?: RefTensor } = {}): RefSwavResult {
  const tape = new RefTape();
  const leaves = new Map<string, Var>();
  const p = (name: string): Var => {
    let v = leaves.get(name);
    if (!v) {
      const t = params.get(name);
      if (!t) throw new Error(`refSwavStep: no parameter named ${name}`);
      v = tape.leaf(t);
      leaves.set(name, v);
    }
    return v;
  };
  const bn = (x: Var, name: string, withRelu: boolean) =>
    tape.batchNorm(x, p(`${name}.weight`), p(`${name}.bias`), { relu: withRelu });
  const backbone = (x: Var): Var => {
    let h = bn(tape.conv2d(x, p('backbone.conv1.weight'), null, { padding: 1 }),
      'backbone.bn1', true);
    let c = shape.width;
    shape.blocks.forEach((n, s) => {
      const outC = shape.width * 2 ** s;
      for (let b = 0; b < n; b++) {
        const stride = b === 0 && s > 0 ? 2 : 1;
        const pre = `backbone.layer${s + 1}.${b}`;
        const a = bn(tape.conv2d(h, p(`${pre}.conv1.weight`), null,
          { stride, padding: 1 }), `${pre}.bn1`, true);
        const r = bn(tape.conv2d(a, p(`${pre}.conv2.weight`), null, { padding: 1 }),
          `${pre}.bn2`, false);
        const short = stride !== 1 || c !== outC
          ? bn(tape.conv2d(h, p(`${pre}.downsample.0.weight`), null, { stride }),
            `${pre}.downsample.1`, false)
          : h;
        h = tape.relu(tape.add(r, short));
        c = outC;
      }
    });
    return tape.globalAvgPool(h);
  };
  const feats = tape.concatRows(groups.map((g) => backbone(tape.leaf(g))));
  const h1 = bn(tape.matmulT(feats, p('projection_head.0.weight'), p('projection_head.0.bias')),
    'projection_head.1', true);
  const h2 = tape.matmulT(h1, p('projection_head.3.weight'), p('projection_head.3.bias'));
  const z = tape.l2Normalize(h2);
  const scores = tape.matmulT(z, p('prototypes.weight'));
  const computed = opts.fixedTargets ? null : swavTargets(scores.value, o);
  const targets = opts.fixedTargets ?? computed!.targets;
  const scale = 1 / (o.assign.length * (o.crops - 1) * o.batch);
  const loss = tape.softCrossEntropySum(scores, targets, o.temperature, scale);
  const grads = new Map<string, RefTensor>();
  if (opts.backward) {
    tape.backward(loss);
    for (const name of params.keys()) {
      const v = leaves.get(name);
      grads.set(name, v?.grad ?? zeros(params.get(name)!.shape));
    }
  }
  return { loss: loss.value.data[0], scores: scores.value, z: z.value,
    codes: computed?.codes ?? [], targets, grads, kinkDistance: tape.kinkDistance };
}

/**
 * Scores are cosines (|s| <= 1) at the end of a float32 forward chain of at most about ten
 * stages (convolutions of k <= 27 terms, batch norms over <= 490 values, pooling, linears,
 * the normalisation), each within the reduction tier 4 sqrt(n) u <= 5e-6: 2e-5 absolute covers
 * them added up. Measured: <= 4e-6.
 */
export const SCORE_TOL: Tolerance = { atol: 2e-5, rtol: 0 };
/**
 * Codes are Sinkhorn's exp(s / eps) rescaled by rows and columns; like a softmax at
 * temperature eps, d q / d s ~ q (1 - q) / eps <= 1 / (4 eps) = 5: 5x the scores' error.
 * Measured: <= 6e-6.
 */
export const CODE_TOL: Tolerance = { atol: 5 * SCORE_TOL.atol, rtol: 0 };
/**
 * The loss: each row's cross-entropy moves by at most 2 max|ds| / T = 4e-4 for a score error
 * ds (log-softmax is 1-Lipschitz per entry in s / T, and the targets of a row sum to <= 2),
 * and the codes' error times |log p| adds less; about 1e-4 of a loss near ln(5) .. 10.
 * Measured: <= 6e-7 relative.
 */
export const LOSS_TOL: Tolerance = { atol: 0, rtol: 1e-4 };

/** Largest |value| of an array (0 for an empty one). */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * Gradients, elementwise against each tensor's largest: a float32 backward sums rounding
 * errors of partial sums as large as the largest entries, so small entries carry an error
 * of the tensor's scale, not of their own (the reduction tier's atol, scaled). Measured:
 * <= 2.1e-5 max|g| over 6 models; 1e-4 max|g| + 1e-4 |g| is a 5x margin and 10x tighter than
 * TOL.gradient (which a 0.1% error in one gamma gradient would pass). A gradient that is 0
 * in exact arithmetic (a bias feeding a batch norm) has no scale: float32 leaves <= 2e-5 of
 * noise, judged by TOL.gradient's absolute floor.
 */
export function expectGrad(actual: ArrayLike<number>, expected: RefTensor, name: string): void {
  const scale = maxAbs(expected.data);
  const tol = scale < 1e-12 ? TOL.gradient : { atol: 1e-4 * scale, rtol: 1e-4 };
  expectClose(actual, expected, tol, name);
}
