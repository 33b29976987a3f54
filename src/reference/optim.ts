// Optimizer steps (SGD, SwAV's LARS, Adam) on flat float64 parameters, updated in place.

/**
 * Convention for every step here: `p` and the state arrays (`buf`, `m`, `v`) are updated in
 * place; `g` is never written. A momentum buffer starts as null, as PyTorch's does, and the step
 * returns the buffer to keep (allocated on the first step).
 */

export interface SgdOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  dampening?: number;
  nesterov?: boolean;
}

function checkLengths(op: string, arrays: Record<string, Float64Array | null>): void {
  const entries = Object.entries(arrays).filter(([, a]) => a !== null) as [string, Float64Array][];
  const n = entries[0][1].length;
  for (const [name, a] of entries) {
    if (a.length !== n) {
      throw new Error(`${op}: ${name} has ${a.length} elements but ${entries[0][0]} has ${n}`);
    }
  }
}

/**
 * PyTorch SGD: d = g + wd p; with momentum, buf = d on the first step (buf null), else
 * buf = momentum buf + (1 - dampening) d; the step direction is buf, or d + momentum buf with
 * Nesterov; p -= lr direction. Returns the momentum buffer (null when momentum is 0).
 */
export function sgdStep(p: Float64Array, g: Float64Array, buf: Float64Array | null,
  opts: SgdOptions): Float64Array | null {
  checkLengths('sgdStep', { p, g, buf });
  const { lr, momentum, weightDecay } = opts;
  const dampening = opts.dampening ?? 0;
  const nesterov = opts.nesterov ?? false;
  if (nesterov && (momentum <= 0 || dampening !== 0)) {
    throw new Error('sgdStep: Nesterov momentum needs momentum > 0 and dampening 0 (PyTorch rule)');
  }
  const first = buf === null;
  const state = momentum !== 0 ? (buf ?? new Float64Array(p.length)) : null;
  for (let i = 0; i < p.length; i++) {
    const d = g[i] + weightDecay * p[i];
    let step = d;
    if (state) {
      state[i] = first ? d : momentum * state[i] + (1 - dampening) * d;
      step = nesterov ? d + momentum * state[i] : state[i];
    }
    p[i] -= lr * step;
  }
  return state;
}

export interface LarsOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Trust coefficient, SwAV's 0.001 by default. */
  trust?: number;
  /** Added to the denominator of the trust ratio, apex's 1e-8 by default. */
  eps?: number;
  /**
   * Excluded parameters (our choice, e.g. biases and batch-norm affine) skip LARS entirely:
   * plain SGD with momentum, no weight decay, no trust ratio.
   */
  exclude?: boolean;
}

function norm(a: Float64Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s);
}

/**
 * SwAV's optimizer: apex's LARC wrapper (clip = false) around SGD with momentum. LARC moves the
 * group's weight decay out of SGD (sets it to 0) and applies it itself, and only when both norms
 * are nonzero: with pn = ||p||, gn = ||g||,
 *   a = trust pn / (gn + wd pn + eps),  g' = (g + wd p) a;
 * if either norm is 0, g' = g with NO weight decay at all (LARC skips the block and SGD's was
 * zeroed). Then SGD with momentum, dampening 0, no Nesterov, weight decay 0 steps with g'.
 * Note the learning rate still multiplies: p -= lr buf. Returns the momentum buffer.
 */
export function larsStep(p: Float64Array, g: Float64Array, buf: Float64Array | null,
  opts: LarsOptions): Float64Array | null {
  checkLengths('larsStep', { p, g, buf });
  const sgd = { lr: opts.lr, momentum: opts.momentum, weightDecay: 0 };
  if (opts.exclude) return sgdStep(p, g, buf, sgd);
  const wd = opts.weightDecay;
  const pn = norm(p);
  const gn = norm(g);
  const adapted = Float64Array.from(g);
  if (pn !== 0 && gn !== 0) {
    const a = ((opts.trust ?? 0.001) * pn) / (gn + pn * wd + (opts.eps ?? 1e-8));
    for (let i = 0; i < p.length; i++) adapted[i] = (g[i] + wd * p[i]) * a;
  }
  return sgdStep(p, adapted, buf, sgd);
}

export interface AdamOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** L2 penalty added to the gradient (PyTorch Adam, not AdamW's decoupled decay). */
  weightDecay: number;
}

/**
 * PyTorch Adam, step counted from 1: d = g + wd p; m = b1 m + (1 - b1) d;
 * v = b2 v + (1 - b2) d^2; p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 * m and v start as zeros.
 */
export function adamStep(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array,
  step: number, opts: AdamOptions): void {
  checkLengths('adamStep', { p, g, m, v });
  if (!Number.isInteger(step) || step < 1) {
    throw new Error(`adamStep: step counts from 1, got ${step}`);
  }
  const { lr, beta1, beta2, eps, weightDecay } = opts;
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  for (let i = 0; i < p.length; i++) {
    const d = g[i] + weightDecay * p[i];
    m[i] = beta1 * m[i] + (1 - beta1) * d;
    v[i] = beta2 * v[i] + (1 - beta2) * d * d;
    p[i] -= (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps));
  }
}
