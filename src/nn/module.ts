// Modules: named parameters and buffers in PyTorch's naming (so checkpoints load as state
// dicts), train/eval mode, and seeded initialisation.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { OpArgumentError } from '../gpu/errors.js';

export abstract class Module {
  training = true;
  protected params = new Map<string, Tensor>();
  /** Non-trainable state saved with the model (batch-norm running statistics). */
  protected buffers = new Map<string, Tensor>();
  protected modules = new Map<string, Module>();

  constructor(readonly engine: Engine) {}

  abstract forward(x: Tensor): Tensor;

  protected addParam(name: string, t: Tensor): Tensor {
    this.params.set(name, t);
    return t;
  }

  protected addBuffer(name: string, t: Tensor): Tensor {
    this.buffers.set(name, t);
    return t;
  }

  protected addModule<M extends Module>(name: string, m: M): M {
    this.modules.set(name, m);
    return m;
  }

  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.params) out.push([prefix + n, t]);
    for (const [n, m] of this.modules) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.buffers) out.push([prefix + n, t]);
    for (const [n, m] of this.modules) out.push(...m.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters and buffers by name: what a checkpoint holds of the model. */
  stateDict(prefix = ''): Map<string, Tensor> {
    return new Map([...this.namedParameters(prefix), ...this.namedBuffers(prefix)]);
  }

  train(on = true): this {
    this.training = on;
    for (const m of this.modules.values()) m.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Number of trainable values. */
  parameterCount(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }
}

/** A seeded normal generator (Box-Muller over mulberry32) for initialisation. */
export function normalRng(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let spare: number | null = null;
  const normal = () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = Math.max(uniform(), 1e-300);
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
  (normal as { uniform?: () => number }).uniform = uniform;
  return normal;
}

export interface InitRng {
  normal(): number;
  uniform(): number;
}

export function initRng(seed: number): InitRng {
  const n = normalRng(seed) as (() => number) & { uniform: () => number };
  return { normal: n, uniform: n.uniform };
}

/**
 * Constructor checks of the layers, so that a bad size or option is refused where it is
 * given, not at the first forward (or as a raw RangeError from a typed array). `layer`
 * names the layer as the message should: its class and name, `Linear "probe"`.
 */
export function layerError(layer: string, message: string): never {
  throw new OpArgumentError(`${layer}: ${message}`);
}

/** An integer >= `min` (sizes, channel counts, kernels). */
export function checkLayerInt(layer: string, name: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    layerError(layer, `${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

/** A finite number that `rule` (described by `ruleText`) accepts. */
export function checkLayerNumber(layer: string, name: string, v: unknown,
  rule: (x: number) => boolean, ruleText: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !rule(v)) {
    layerError(layer, `${name} must be ${ruleText}, got ${String(v)}`);
  }
  return v;
}

/** An optional boolean flag (bias, relu). */
export function checkLayerFlag(layer: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') {
    layerError(layer, `${name} must be true or false, got ${String(v)}`);
  }
}

/** A number for both axes or an [h, w] pair of integers >= `min`, as conv2d takes them. */
export function checkLayerPair(layer: string, name: string, v: unknown, min: number): void {
  if (v === undefined) return;
  const p = typeof v === 'number' ? [v] : Array.isArray(v) && v.length === 2 ? v : null;
  if (!p || !p.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= min)) {
    layerError(layer, `${name} must be an integer >= ${min} or a pair [h, w] of them, got ` +
      `${JSON.stringify(v)}`);
  }
}

/** The generator that initialises weights: { normal, uniform }, as initRng(seed) makes. */
export function checkInitRng(layer: string, rng: unknown): void {
  const r = rng as Partial<InitRng> | null | undefined;
  if (typeof r?.normal !== 'function' || typeof r?.uniform !== 'function') {
    layerError(layer, `rng must be an InitRng ({ normal, uniform }, from initRng(seed)), got ` +
      `${rng === null ? 'null' : typeof rng}`);
  }
}
