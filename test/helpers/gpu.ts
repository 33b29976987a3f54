// Shared pieces of the GPU tests: one engine per test file, uploads of reference tensors,
// and checks of a GPU op's forward and backward against the float64 reference.

import { afterAll, beforeAll, expect } from 'vitest';
import { createEngine, type Engine, type Tensor, grad } from '../../src/node.js';
import type { DispatchSpec } from '../../src/gpu/context.js';
import { compare, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import { type RefTensor, randn, roundToF32 } from '../../src/reference/tensor.js';

/**
 * The kernels that computing `build`'s tensors dispatches, each as `describe(spec)` (default:
 * its entry point), in order: to show which variant of a kernel an op chose.
 */
export async function dispatchedEntries(e: Engine, build: () => Tensor[],
  describe: (spec: DispatchSpec) => string = (spec) => spec.entry ?? 'main'): Promise<string[]> {
  const outs = build();
  const { entries } = await runRecording(e, outs, describe);
  for (const t of outs) t.dispose();
  return entries;
}

/** Runs and reads `outs`, noting the kernels dispatched (as dispatchedEntries does). */
export async function runRecording(e: Engine, outs: Tensor[],
  describe: (spec: DispatchSpec) => string = (spec) => spec.entry ?? 'main'):
  Promise<{ entries: string[]; values: Float32Array[] }> {
  const entries: string[] = [];
  const original = e.gpu.recorder.bind(e.gpu);
  e.gpu.recorder = (label: string) => {
    const rec = original(label);
    const dispatch = rec.dispatch.bind(rec);
    rec.dispatch = (spec) => {
      entries.push(describe(spec));
      return dispatch(spec);
    };
    return rec;
  };
  try {
    return { entries, values: await e.run([], outs) };
  } finally {
    e.gpu.recorder = original;
  }
}

/** The engine of the current test file, created before its tests and disposed after. */
export function useEngine(opts: Parameters<typeof createEngine>[0] = {}): () => Engine {
  let engine: Engine | undefined;
  beforeAll(async () => {
    engine = await createEngine(opts);
  });
  afterAll(async () => {
    await engine?.dispose();
  });
  return () => {
    if (!engine) throw new Error('engine not created yet');
    return engine;
  };
}

/** Uploads a reference tensor (rounding to float32 happens on the way). */
export function upload(e: Engine, t: RefTensor, requiresGrad = false, name?: string): Tensor {
  return e.tensor(t.data, t.shape, { requiresGrad, name });
}

/** Random normal inputs already rounded to float32, so both sides see the same numbers. */
export function randomInput(shape: readonly number[], seed: number, scale = 1): RefTensor {
  const t = randn(shape, mulberry32(seed));
  for (let i = 0; i < t.data.length; i++) t.data[i] *= scale;
  return roundToF32(t);
}

export function expectClose(actual: ArrayLike<number>, expected: RefTensor | ArrayLike<number>,
  tol: Tolerance, name: string): void {
  const exp = 'data' in expected ? expected.data : expected;
  const shape = 'shape' in expected ? (expected as RefTensor).shape : undefined;
  expect(actual.length, `${name}: length`).toBe(exp.length);
  const r = compare(actual, exp, { ...tol, name, shape });
  expect(r.ok, r.message).toBe(true);
}

/**
 * Runs `f` on the GPU, checks its output against `refForward`, then seeds the backward
 * with a random upstream gradient dy and checks each input's gradient against
 * `refBackward(dy)` (null entries are skipped). Forward and backward are one run.
 */
export async function checkOp(e: Engine, opts: {
  name: string;
  inputs: RefTensor[];
  /** Which inputs get gradients; default all. */
  grads?: boolean[];
  gpu: (xs: Tensor[]) => Tensor;
  refForward: (xs: RefTensor[]) => RefTensor;
  refBackward?: (dy: RefTensor, xs: RefTensor[]) => (RefTensor | null)[];
  tol: Tolerance;
  gradTol?: Tolerance;
  seed?: number;
}): Promise<void> {
  const wantGrad = opts.grads ?? opts.inputs.map(() => true);
  const xs = opts.inputs.map((t, i) => upload(e, t, !!opts.refBackward && wantGrad[i],
    `${opts.name} input ${i}`));
  const y = opts.gpu(xs);
  const expected = opts.refForward(opts.inputs);
  expect([...y.shape], `${opts.name}: output shape`).toEqual([...expected.shape]);
  if (!opts.refBackward) {
    expectClose(await y.read(), expected, opts.tol, `${opts.name} forward`);
    return;
  }
  const dyRef = randomInput(expected.shape, opts.seed ?? 99);
  const dy = upload(e, dyRef);
  const which = xs.filter((_, i) => wantGrad[i]);
  const gs = grad(y, which, { seed: dy });
  const refGrads = opts.refBackward(dyRef, opts.inputs);
  y.keep();
  const values = await e.run([], [y, ...(gs as Tensor[])]);
  expectClose(values[0], expected, opts.tol, `${opts.name} forward`);
  let k = 1;
  opts.inputs.forEach((_, i) => {
    if (!wantGrad[i]) return;
    const r = refGrads[i];
    if (r) expectClose(values[k], r, opts.gradTol ?? opts.tol, `${opts.name} backward input ${i}`);
    k++;
  });
}
