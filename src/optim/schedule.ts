// Learning-rate schedules: functions of the step index (0 for the first step), evaluated
// on the CPU when a step is recorded and passed to the update kernels as a uniform.

import { checkFinite, checkInt, fail } from '../ops/util.js';

export interface WarmupCosineOptions {
  /** The rate at the end of the warm-up, where the cosine starts. */
  base: number;
  /** The rate the cosine ends at. */
  final: number;
  /** Steps of linear warm-up (0: none). */
  warmupSteps: number;
  /** All steps, warm-up included. */
  totalSteps: number;
  /** The rate of the first warm-up step; default 0. */
  start?: number;
}

/**
 * SwAV's schedule: warmupSteps values evenly spaced from start to base, both included
 * (numpy's linspace), then for t = 0 .. totalSteps - warmupSteps - 1
 * final + (base - final) (1 + cos(pi t / (totalSteps - warmupSteps))) / 2. Past the end
 * it stays at final.
 */
export function warmupCosine(opts: WarmupCosineOptions): (step: number) => number {
  const op = 'warmupCosine';
  const base = checkFinite(op, 'base', opts.base);
  const final = checkFinite(op, 'final', opts.final);
  const start = checkFinite(op, 'start', opts.start ?? 0);
  const warmup = checkInt(op, 'warmupSteps', opts.warmupSteps, 0);
  const total = checkInt(op, 'totalSteps', opts.totalSteps, 1);
  if (total < warmup) fail(op, `totalSteps (${total}) must be >= warmupSteps (${warmup})`);
  const cosine = total - warmup;
  return (step: number) => {
    checkInt(op, 'step', step, 0);
    if (step < warmup) {
      return warmup === 1 ? start : start + ((base - start) * step) / (warmup - 1);
    }
    const t = step - warmup;
    if (t >= cosine) return final;
    return final + 0.5 * (base - final) * (1 + Math.cos((Math.PI * t) / cosine));
  };
}

/** The same rate at every step. */
export function constant(lr: number): (step: number) => number {
  const v = checkFinite('constant', 'lr', lr, (x) => x >= 0, 'must be >= 0');
  return () => v;
}
