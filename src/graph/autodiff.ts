// Reverse-mode autodiff over the recorded graph. Each op registers one backward rule
// beside its forward (registerGrad); a rule receives the gradients of the node's outputs
// and returns those of its inputs, built from ordinary ops, so backward runs on the same
// kernels and in the same submission as forward.

import { OpArgumentError, NotSupportedError } from '../gpu/errors.js';
import { Tensor, shapeStr, type Node } from './tensor.js';

export interface GradContext {
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: Readonly<Record<string, unknown>>;
  /** Gradient of each output; null where no gradient reaches it. */
  grads: (Tensor | null)[];
  /** Which inputs need a gradient: a rule may skip the others (return null). */
  needs: boolean[];
}

export type GradRule = (g: GradContext) => (Tensor | null)[];

const rules = new Map<string, GradRule>();

export function registerGrad(op: string, rule: GradRule): void {
  if (rules.has(op)) throw new Error(`registerGrad: op ${op} already has a backward rule`);
  rules.set(op, rule);
}

export function hasGradRule(op: string): boolean {
  return rules.has(op);
}

/** Adds two gradients; set by the elementwise ops module to avoid an import cycle. */
let addFn: ((a: Tensor, b: Tensor) => Tensor) | null = null;
let onesLikeFn: ((t: Tensor) => Tensor) | null = null;

export function setGradHelpers(add: (a: Tensor, b: Tensor) => Tensor,
  onesLike: (t: Tensor) => Tensor): void {
  addFn = add;
  onesLikeFn = onesLike;
}

/**
 * Gradients of `output` with respect to each of `wrt`. `output` must hold one value unless
 * `seed` (its upstream gradient, same shape) is given. A tensor of `wrt` that the output
 * does not depend on gets null when `allowUnused`, else an error.
 */
export function grad(output: Tensor, wrt: Tensor[], opts: { seed?: Tensor;
  allowUnused?: boolean } = {}): (Tensor | null)[] {
  if (!addFn || !onesLikeFn) throw new Error('grad: ops are not loaded (import the engine index)');
  checkGradArgs(output, wrt, opts);
  if (!opts.seed && output.size !== 1) {
    throw new OpArgumentError(`grad: output ${output.describe()} is not a scalar; pass a seed`);
  }
  if (opts.seed && (opts.seed.rank !== output.rank ||
    opts.seed.shape.some((d, i) => d !== output.shape[i]))) {
    throw new OpArgumentError(`grad: seed ${opts.seed.describe()} must have the shape of ` +
      `output ${output.describe()}`);
  }
  if (!output.requiresGrad) {
    throw new OpArgumentError(`grad: output ${output.describe()} does not depend on any ` +
      `tensor that requires a gradient`);
  }
  // Nodes between the output and tensors requiring grad, in creation order.
  const nodes: Node[] = [];
  const seen = new Set<Node>();
  const stack: Tensor[] = [output];
  while (stack.length) {
    const t = stack.pop()!;
    const n = t.node;
    if (!n || seen.has(n) || !t.requiresGrad) continue;
    if (t.state === 'released' || t.state === 'disposed') {
      throw new OpArgumentError(`grad: ${t.describe()} was ${t.state} by an earlier run; ` +
        `build gradients before running the forward pass`);
    }
    seen.add(n);
    nodes.push(n);
    for (const i of n.inputs) stack.push(i);
  }
  nodes.sort((a, b) => b.id - a.id);
  // Only tensors that lead to one of `wrt` need a gradient: a rule skips the others, so
  // no gradient is recorded that nobody asked for (it would stay pending forever).
  const leads = new Set<Tensor>(wrt);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (n.inputs.some((t) => leads.has(t))) for (const o of n.outputs) leads.add(o);
  }
  const engine = output.engine;
  const before = new Set(engine.pendingNodes);
  const grads = new Map<Tensor, Tensor>();
  grads.set(output, opts.seed ?? onesLikeFn(output));
  for (const n of nodes) {
    const outGrads = n.outputs.map((o) => grads.get(o) ?? null);
    if (outGrads.every((g) => g === null) || !n.outputs.some((o) => leads.has(o))) continue;
    const rule = rules.get(n.op);
    if (!rule) {
      throw new NotSupportedError(`grad: op '${n.op}' has no backward rule, and ` +
        `${n.outputs.map((o) => o.describe()).join(', ')} lies on the path to the gradient`);
    }
    const needs = n.inputs.map((t) => t.requiresGrad && leads.has(t));
    const inGrads = rule({ inputs: n.inputs, outputs: n.outputs, attrs: n.attrs,
      grads: outGrads, needs });
    n.inputs.forEach((t, i) => {
      const g = inGrads[i];
      if (!g || !needs[i]) return;
      if (g.size !== t.size || g.shape.length !== t.shape.length ||
        g.shape.some((d, k) => d !== t.shape[k])) {
        throw new Error(`grad: backward rule of '${n.op}' returned ${shapeStr(g.shape)} for ` +
          `input ${i} of shape ${shapeStr(t.shape)}`);
      }
      const prev = grads.get(t);
      grads.set(t, prev ? addFn!(prev, g) : g);
    });
  }
  const result = wrt.map((t, i) => {
    const g = grads.get(t);
    if (g) return g;
    if (opts.allowUnused) return null;
    if (!t.requiresGrad) {
      throw new OpArgumentError(`grad: wrt[${i}] ${t.describe()} does not require a gradient, ` +
        `so none is traced through it (make it with engine.param(...) or ` +
        `engine.tensor(data, shape, { requiresGrad: true }); allowUnused gives null)`);
    }
    throw new OpArgumentError(`grad: wrt[${i}] ${t.describe()} does not affect ` +
      `${output.describe()} (pass allowUnused to get null)`);
  });
  discardDeadEnds(engine, before, result);
  return result;
}

/** grad's arguments, checked before anything is recorded (plain JavaScript callers too). */
function checkGradArgs(output: unknown, wrt: unknown, opts: unknown): void {
  const what = (v: unknown) => v === null ? 'null' : Array.isArray(v) ? 'an array' :
    v instanceof Tensor ? v.describe() : typeof v;
  if (!(output instanceof Tensor)) {
    throw new OpArgumentError(`grad: output must be a Tensor, got ${what(output)}`);
  }
  if (!Array.isArray(wrt)) {
    throw new OpArgumentError(`grad: wrt must be an array of tensors, got ${what(wrt)}`);
  }
  wrt.forEach((t, i) => {
    if (!(t instanceof Tensor)) {
      throw new OpArgumentError(`grad: wrt[${i}] must be a Tensor, got ${what(t)}`);
    }
    if (t.engine !== output.engine) {
      throw new OpArgumentError(`grad: wrt[${i}] ${t.describe()} belongs to another engine ` +
        `than output ${output.describe()}`);
    }
  });
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new OpArgumentError(`grad: options must be an object { seed?, allowUnused? }, got ` +
      what(opts));
  }
  const { seed, allowUnused, ...rest } = opts as { seed?: unknown; allowUnused?: unknown };
  const unknown = Object.keys(rest);
  if (unknown.length) {
    throw new OpArgumentError(`grad: unknown option ${unknown.map((k) => `'${k}'`).join(', ')} ` +
      `(it takes seed and allowUnused)`);
  }
  if (seed !== undefined) {
    if (!(seed instanceof Tensor)) {
      throw new OpArgumentError(`grad: seed must be a Tensor, got ${what(seed)}`);
    }
    if (seed.engine !== output.engine) {
      throw new OpArgumentError(`grad: seed ${seed.describe()} belongs to another engine than ` +
        `output ${output.describe()}`);
    }
  }
  if (allowUnused !== undefined && typeof allowUnused !== 'boolean') {
    throw new OpArgumentError(`grad: allowUnused must be a boolean, got ${what(allowUnused)}`);
  }
}

/**
 * Drops the nodes this backward recorded that no returned gradient depends on (a rule
 * may build a gradient for an input nobody asked about): left pending, they would keep
 * their inputs' buffers alive and never run.
 */
function discardDeadEnds(engine: Tensor['engine'], before: Set<Node>,
  result: (Tensor | null)[]): void {
  const created = engine.pendingNodes.filter((n) => !before.has(n));
  if (created.length === 0) return;
  const live = new Set<Node>();
  const stack = result.filter((t): t is Tensor => t !== null).map((t) => t.node)
    .filter((n): n is Node => n !== null);
  while (stack.length) {
    const n = stack.pop()!;
    if (live.has(n) || before.has(n)) continue;
    live.add(n);
    for (const t of n.inputs) if (t.node) stack.push(t.node);
  }
  const dead = created.filter((n) => !live.has(n) && n.mutates.length === 0);
  if (dead.length) engine.discard(dead);
}
