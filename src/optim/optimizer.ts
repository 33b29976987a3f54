// The optimizer base: step() records in-place update nodes into the pending run (no
// readback), state tensors are created lazily as zeros and named stably for checkpoints.

import type { Tensor } from '../graph/tensor.js';
import { shapeStr } from '../graph/tensor.js';
import { checkTensor, fail } from '../ops/util.js';

/** A fixed learning rate, or a schedule: the rate of step i (0 for the first step). */
export type LearningRate = number | ((step: number) => number);

/** Options every optimizer takes. */
export interface OptimizerOptions {
  lr: LearningRate;
  /**
   * Names of the parameters, in the order step() receives them, used in state() keys
   * (e.g. a model's namedParameters()); default: their positions.
   */
  names?: readonly string[];
}

/** The key of the step counter in state(). */
export const STEP_KEY = 'optim.step';

export abstract class Optimizer {
  lr: LearningRate;
  /** Steps recorded so far; the next step() uses lr(steps). */
  steps = 0;
  /** What the optimizer keeps per parameter, e.g. momentum_buffer. */
  protected abstract readonly slotKinds: readonly string[];
  private readonly names: readonly string[] | undefined;
  /** The parameter seen at each position, so state keys cannot silently swap. */
  private order: Tensor[] = [];
  private slots = new Map<string, Tensor>();
  private pending = new Map<string, ArrayLike<number>>();

  constructor(readonly op: string, opts: OptimizerOptions) {
    if (typeof opts !== 'object' || opts === null) fail(op, 'options must be an object');
    this.lr = opts.lr;
    this.checkLr(opts.lr);
    if (opts.names) {
      const seen = new Set<string>();
      for (const n of opts.names) {
        if (typeof n !== 'string' || n === '') fail(op, `names must be non-empty strings`);
        if (seen.has(n)) fail(op, `two parameters share the name '${n}'`);
        seen.add(n);
      }
      this.names = [...opts.names];
    }
  }

  private checkLr(lr: LearningRate): void {
    if (typeof lr === 'function') return;
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) {
      fail(this.op, `lr must be a finite number >= 0 or a schedule function, got ${String(lr)}`);
    }
  }

  /** The learning rate the next step() will record. */
  currentLr(): number {
    const lr = typeof this.lr === 'function' ? this.lr(this.steps) : this.lr;
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) {
      fail(this.op, `the learning rate of step ${this.steps} is ${String(lr)}, not a finite ` +
        `number >= 0`);
    }
    return lr;
  }

  /**
   * Records one update of every parameter whose gradient is not null, in place, into the
   * pending run: they execute with the next run (or flush) and need no readback. Pass the
   * parameters in the same order every step.
   */
  step(params: readonly Tensor[], grads: readonly (Tensor | null)[]): void {
    const op = this.op;
    if (!Array.isArray(params) || !Array.isArray(grads)) {
      fail(op, 'step(params, grads) takes two arrays');
    }
    if (params.length !== grads.length) {
      fail(op, `step got ${params.length} parameters but ${grads.length} gradients`);
    }
    if (this.names && this.names.length !== params.length) {
      fail(op, `step got ${params.length} parameters but ${this.names.length} names`);
    }
    params.forEach((p, i) => {
      checkTensor(op, `parameter ${i}`, p);
      if (p.node !== null || p.state !== 'ready' || !p.buffer) {
        fail(op, `parameter ${i} (${p.describe()}) must be a leaf tensor with a buffer ` +
          `(state ${p.state})`);
      }
      const seen = this.order[i];
      if (seen && seen !== p) {
        fail(op, `parameter ${i} is ${p.describe()} but was ${seen.describe()} at earlier ` +
          `steps; pass the parameters in the same order every step`);
      }
      const g = grads[i];
      if (g === null || g === undefined) return;
      checkTensor(op, `gradient ${i}`, g);
      if (g.engine !== p.engine) fail(op, `gradient ${i} belongs to another engine`);
      if (g.shape.length !== p.shape.length || g.shape.some((d, k) => d !== p.shape[k])) {
        fail(op, `gradient ${i} ${shapeStr(g.shape)} does not match parameter ` +
          `${p.describe()}`);
      }
    });
    const lr = this.currentLr();
    params.forEach((p, i) => {
      this.order[i] = p;
    });
    params.forEach((p, i) => {
      const g = grads[i];
      if (g) this.update(i, p, g, lr);
    });
    this.steps++;
  }

  /** Records the update of parameter i (at position i of step()'s arrays). */
  protected abstract update(i: number, p: Tensor, g: Tensor, lr: number): void;

  private key(i: number, kind: string): string {
    return `optim.${this.names?.[i] ?? i}.${kind}`;
  }

  /** State tensor `kind` of parameter i: created on first use, zeros or loaded values. */
  protected slot(i: number, p: Tensor, kind: string): Tensor {
    const key = this.key(i, kind);
    let t = this.slots.get(key);
    if (t) return t;
    const loaded = this.pending.get(key);
    if (loaded && loaded.length !== p.size) {
      fail(this.op, `loaded state ${key} has ${loaded.length} values but parameter ${i} ` +
        `${p.describe()} has ${p.size}`);
    }
    this.pending.delete(key);
    t = loaded ? p.engine.tensor(loaded, p.shape, { name: key })
      : p.engine.zeros(p.shape, { name: key });
    this.slots.set(key, t);
    return t;
  }

  /**
   * The state to checkpoint: `optim.<name or position>.<kind>` per parameter (only those
   * created so far) and `optim.step`, the step count as a one-value tensor.
   */
  state(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [k, t] of this.slots) out[k] = t;
    const engine = this.order[0]?.engine ?? [...this.slots.values()][0]?.engine;
    if (engine) out[STEP_KEY] = engine.tensor([this.steps], [1], { name: STEP_KEY });
    return out;
  }

  /**
   * Restores state() values (read back from a checkpoint). State not created yet is kept
   * and used when its parameter first steps; an unknown key is an error.
   */
  loadState(values: Record<string, ArrayLike<number>>): void {
    const kinds = this.slotKinds;
    for (const [key, v] of Object.entries(values)) {
      if (key === STEP_KEY) {
        const s = v[0];
        if (v.length !== 1 || !Number.isInteger(s) || s < 0) {
          fail(this.op, `loadState: ${STEP_KEY} must hold one integer >= 0, got ${String(s)}`);
        }
        this.steps = s;
        continue;
      }
      const m = /^optim\.(.+)\.([^.]+)$/.exec(key);
      if (!m || !kinds.includes(m[2])) {
        fail(this.op, `loadState: unknown key '${key}' (this optimizer keeps ` +
          `optim.<parameter>.{${kinds.join(', ')}} and ${STEP_KEY})`);
      }
      const t = this.slots.get(key);
      if (t) {
        if (v.length !== t.size) {
          fail(this.op, `loadState: ${key} has ${v.length} values but ${t.describe()} ` +
            `holds ${t.size}`);
        }
        t.write(v);
      } else {
        this.pending.set(key, v);
      }
    }
  }
}
