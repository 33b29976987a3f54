// Learning-rate schedules against SwAV's numpy formulas, written out step by step.

import { describe, expect, it } from 'vitest';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { constant, warmupCosine } from '../../src/optim/schedule.js';

/** SwAV's main_swav.py: np.linspace warm-up, then the cosine over the remaining steps. */
function swavSchedule(start: number, base: number, final: number, warmup: number,
  total: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < warmup; i++) {
    out.push(warmup === 1 ? start : start + ((base - start) * i) / (warmup - 1));
  }
  const rest = total - warmup;
  for (let t = 0; t < rest; t++) {
    out.push(final + 0.5 * (base - final) * (1 + Math.cos((Math.PI * t) / rest)));
  }
  return out;
}

describe('warmupCosine', () => {
  // [start, base, final, warm-up steps, total steps]: SwAV's ImageNet settings scaled down,
  // no warm-up, a one-step warm-up (linspace of 1 is [start]), warm-up only.
  const cases: [number, number, number, number, number][] = [
    [0.3, 4.8, 0.0048, 10, 100], [0, 0.6, 0.0006, 0, 37], [0.1, 1, 0, 1, 5], [0, 2, 0.5, 4, 4],
  ];
  for (const [start, base, final, warmup, total] of cases) {
    it(`start ${start}, base ${base}, final ${final}, warm-up ${warmup} of ${total}`, () => {
      const lr = warmupCosine({ base, final, warmupSteps: warmup, totalSteps: total, start });
      const want = swavSchedule(start, base, final, warmup, total);
      want.forEach((v, i) => expect(lr(i), `step ${i}`).toBeCloseTo(v, 12));
      // Past the end it stays at the final rate.
      expect(lr(total)).toBe(final);
      expect(lr(total + 1000)).toBe(final);
    });
  }

  it('hits the landmarks: start, base at the end of warm-up, halfway, final', () => {
    const lr = warmupCosine({ base: 4.8, final: 0.0048, warmupSteps: 10, totalSteps: 110,
      start: 0.3 });
    expect(lr(0)).toBe(0.3);
    expect(lr(9)).toBeCloseTo(4.8, 12);
    expect(lr(10)).toBeCloseTo(4.8, 12);
    expect(lr(60)).toBeCloseTo((4.8 + 0.0048) / 2, 12);
  });

  it('rejects bad arguments, naming the value', () => {
    const bad: [() => unknown, RegExp][] = [
      [() => warmupCosine({ base: NaN, final: 0, warmupSteps: 0, totalSteps: 5 }),
        /warmupCosine: base must be a finite number, got NaN/],
      [() => warmupCosine({ base: 1, final: 0, warmupSteps: 1.5, totalSteps: 5 }),
        /warmupCosine: warmupSteps must be an integer >= 0, got 1.5/],
      [() => warmupCosine({ base: 1, final: 0, warmupSteps: 6, totalSteps: 5 }),
        /warmupCosine: totalSteps \(5\) must be >= warmupSteps \(6\)/],
      [() => warmupCosine({ base: 1, final: 0, warmupSteps: 0, totalSteps: 5 })(-1),
        /warmupCosine: step must be an integer >= 0, got -1/],
      [() => constant(-0.1), /constant: lr must be >= 0, got -0.1/],
    ];
    for (const [f, msg] of bad) {
      expect(f).toThrow(OpArgumentError);
      expect(f).toThrow(msg);
    }
    expect(constant(0.05)(123)).toBe(0.05);
  });
});
