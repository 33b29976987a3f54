// SGD, LARS and Adam on the GPU against the float64 reference steps, over several steps and
// parameter shapes (one element, primes, both LARS norm paths, a zero weight and a zero
// gradient), plus recording (one submission, no readback), state round trips and checks.

import { describe, expect, it } from 'vitest';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { grad } from '../../src/graph/autodiff.js';
import { mul } from '../../src/ops/elementwise.js';
import { sum } from '../../src/ops/reduce.js';
import { Adam, isBiasOrNorm, LARS, type Optimizer, SGD, STEP_KEY, warmupCosine }
  from '../../src/optim/index.js';
import { TOL, type Tolerance } from '../../src/reference/compare.js';
import * as R from '../../src/reference/optim.js';
import { expectClose, randomInput, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

/** A reference update of one parameter: p and its state arrays in place. */
type RefStep = (p: Float64Array, g: Float64Array, state: (Float64Array | null)[], index: number,
  step: number, lr: number) => void;

interface Case {
  name: string;
  shapes: number[][];
  make: () => Optimizer;
  ref: RefStep;
  /** Per step and parameter: true for an all-zero gradient. */
  zeroGrad?: (step: number, index: number) => boolean;
  /** Parameters that start at zero. */
  zeroParam?: number[];
  steps: number;
  lr: (step: number) => number;
  tol: Tolerance;
}

/**
 * Runs `steps` steps on the GPU (each recorded then flushed: no readback in between) and in
 * float64 from the same float32 inputs, then compares every parameter and state tensor.
 */
async function runCase(c: Case): Promise<void> {
  const e = engine();
  const init = c.shapes.map((s, i) => {
    const t = randomInput(s, 100 + i);
    if (c.zeroParam?.includes(i)) t.data.fill(0);
    return t;
  });
  const params = init.map((t, i) => e.param(t.data, t.shape, `${c.name}.p${i}`));
  const refP = init.map((t) => Float64Array.from(t.data));
  const refState: (Float64Array | null)[][] = init.map(() => [null, null]);
  const opt = c.make();
  const readbacks0 = e.gpu.counters.readbacks;
  for (let s = 0; s < c.steps; s++) {
    const gs = c.shapes.map((shape, i) => {
      const g = randomInput(shape, 1000 * s + i);
      if (c.zeroGrad?.(s, i)) g.data.fill(0);
      return g;
    });
    opt.step(params, gs.map((g) => e.tensor(g.data, g.shape)));
    gs.forEach((g, i) => c.ref(refP[i], g.data, refState[i], i, s, c.lr(s)));
    await e.flush();
  }
  expect(e.gpu.counters.readbacks - readbacks0, 'readbacks while stepping').toBe(0);
  const state = opt.state();
  const values = await e.run([], params);
  values.forEach((v, i) => expectClose(v, refP[i], c.tol, `${c.name} parameter ${i} ` +
    `[${c.shapes[i]}] after ${c.steps} steps`));
  const names = Object.keys(state).filter((k) => k !== STEP_KEY).sort();
  const stateValues = await e.run([], names.map((k) => state[k]));
  names.forEach((k, j) => {
    const m = /^optim\.(\d+)\.(\w+)$/.exec(k)!;
    const i = Number(m[1]);
    const slot = m[2] === 'exp_avg_sq' ? 1 : 0;
    expectClose(stateValues[j], refState[i][slot]!, c.tol, `${c.name} state ${k}`);
  });
}

// One element, a prime, a 2-d prime-by-prime weight, past LARS's one-workgroup norm limit
// (16384) by a little and by a lot (the 64-workgroup first pass with a ragged last chunk).
const SHAPES = [[1], [7], [13, 257], [130, 131], [301, 997]];
// Several steps: the parameters and momenta drift by a few float32 roundings per step, far
// inside f32Elementwise's 170 u; LARS adds its norms' relative error (f32Reduction of ~3e5
// terms, ~1e-4 u * sqrt(n)) to a ratio that multiplies lr-sized steps.
const STEPS = 4;

describe('SGD', () => {
  for (const [label, momentum, nesterov, weightDecay] of [
    ['plain', 0, false, 0], ['momentum and weight decay', 0.9, false, 1e-4],
    ['Nesterov', 0.9, true, 5e-4],
  ] as const) {
    it(`${label} over ${STEPS} steps`, async () => {
      await runCase({
        name: `SGD ${label}`, shapes: SHAPES, steps: STEPS, lr: () => 0.1,
        make: () => new SGD({ lr: 0.1, momentum, nesterov, weightDecay }),
        ref: (p, g, st, _i, _s, lr) => {
          st[0] = R.sgdStep(p, g, st[0], { lr, momentum, weightDecay, nesterov });
        },
        tol: TOL.f32Elementwise,
      });
    });
  }

  it('takes its rate from a schedule, one uniform per step', async () => {
    const lr = warmupCosine({ base: 0.5, final: 0.001, warmupSteps: 2, totalSteps: 4,
      start: 0.05 });
    await runCase({
      name: 'SGD scheduled', shapes: [[5], [3, 4]], steps: 4, lr,
      make: () => new SGD({ lr, momentum: 0.9 }),
      ref: (p, g, st, _i, _s, r) => {
        st[0] = R.sgdStep(p, g, st[0], { lr: r, momentum: 0.9, weightDecay: 0 });
      },
      tol: TOL.f32Elementwise,
    });
  });
});

describe('LARS (apex LARC, clip = false)', () => {
  const o = { momentum: 0.9, weightDecay: 1e-6, trust: 0.001 };
  const larsRef = (exclude: (i: number) => boolean): RefStep =>
    (p, g, st, i, _s, lr) => {
      st[0] = R.larsStep(p, g, st[0], { lr, ...o, exclude: exclude(i) });
    };

  it(`matches over ${STEPS} steps, both norm paths`, async () => {
    await runCase({
      name: 'LARS', shapes: SHAPES, steps: STEPS, lr: () => 4.8,
      make: () => new LARS({ lr: 4.8, ...o }), ref: larsRef(() => false),
      tol: TOL.f32Elementwise,
    });
  });

  it('a zero weight and a zero gradient skip the adaptation and the weight decay', async () => {
    // Parameter 0 starts at zero (||p|| = 0 on the first step, then moves); parameter 1
    // gets an all-zero gradient on steps 0 and 2 (||g|| = 0: only momentum moves it); the
    // weight decay is large so that applying it by mistake would show.
    const big = { ...o, weightDecay: 0.1 };
    await runCase({
      name: 'LARS zero norms', shapes: [[9, 5], [40], [600, 30]], steps: 3, lr: () => 0.5,
      zeroParam: [0], zeroGrad: (s, i) => i === 1 && s % 2 === 0,
      make: () => new LARS({ lr: 0.5, ...big }),
      ref: (p, g, st, _i, _s, lr) => {
        st[0] = R.larsStep(p, g, st[0], { lr, ...big });
      },
      tol: TOL.f32Elementwise,
    });
  });

  it('excluded parameters (isBiasOrNorm) take plain SGD with momentum', async () => {
    const shapes = [[17], [6, 11], [1]];
    await runCase({
      name: 'LARS exclude', shapes, steps: 3, lr: () => 0.3,
      make: () => new LARS({ lr: 0.3, ...o, exclude: isBiasOrNorm }),
      ref: larsRef((i) => shapes[i].length <= 1), tol: TOL.f32Elementwise,
    });
  });

  it('records 2 dispatches per small tensor, 3 per large one, 1 per excluded one', async () => {
    const e = engine();
    const ps = [e.param(new Float32Array(100).fill(1), [100], 'b'),
      e.param(new Float32Array(200).fill(1), [10, 20], 'w'),
      e.param(new Float32Array(20000).fill(1), [100, 200], 'big')];
    const opt = new LARS({ lr: 0.1, momentum: 0.9, exclude: isBiasOrNorm });
    opt.step(ps, ps.map((p) => e.tensor(new Float32Array(p.size).fill(0.5), p.shape)));
    await e.flush();
    expect(e.lastRun.dispatches).toBe(1 + 2 + 3);
  });
});

describe('Adam', () => {
  for (const weightDecay of [0, 1e-2]) {
    it(`matches over ${STEPS} steps, weight decay ${weightDecay}`, async () => {
      const ao = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay };
      await runCase({
        name: `Adam wd ${weightDecay}`, shapes: SHAPES, steps: STEPS, lr: () => ao.lr,
        make: () => new Adam(ao),
        ref: (p, g, st, _i, s) => {
          st[0] ??= new Float64Array(p.length);
          st[1] ??= new Float64Array(p.length);
          R.adamStep(p, g, st[0], st[1], s + 1, ao);
        },
        // The update divides m by sqrt(v) + eps: a ratio of two float32 moments, each a few
        // roundings off, and sqrt's 2.5 ulp; still far inside f32Elementwise.
        tol: TOL.f32Elementwise,
      });
    });
  }
});

describe('recording and state', () => {
  it('forward, backward and the update go to the GPU as one submission', async () => {
    const e = engine();
    const w = e.param(new Float32Array([1, 2, 3]), [3], 'w');
    const x = e.tensor([0.5, -1, 2], [3]);
    const loss = sum(mul(w, x));
    const [g] = grad(loss, [w]);
    const opt = new SGD({ lr: 0.1, momentum: 0.9 });
    opt.step([w], [g]);
    const submits = e.gpu.counters.submits;
    const [wv] = await e.run([], [w]);
    expect(e.gpu.counters.submits - submits, 'submissions').toBe(1);
    expectClose(wv, [0.95, 2.1, 2.8], TOL.f32Elementwise, 'w after one step');
  });

  it('past 65535 workgroups: a parameter of 256 x 65536 + 1 values', async () => {
    const e = engine();
    const n = 256 * 65536 + 1;
    const p = e.param(new Float32Array(n).fill(1), [n], 'huge');
    const opt = new SGD({ lr: 0.5, weightDecay: 0.5 });
    opt.step([p], [e.tensor(new Float32Array(n).fill(0.25), [n])]);
    const v = await p.read();
    // 1 - 0.5 (0.25 + 0.5 * 1) = 0.625, exact in float32 whatever the rounding order.
    let bad = -1;
    for (let i = 0; i < n; i++) if (v[i] !== 0.625) { bad = i; break; }
    expect(bad, `first wrong element at ${bad}`).toBe(-1);
  });

  it('state() and loadState() resume training bit for bit', async () => {
    const e = engine();
    const shapes = [[4, 3], [5]];
    const make = () => new Adam({ lr: 0.01, weightDecay: 1e-3, names: ['w', 'b'] });
    const gradsAt = (s: number) => shapes.map((sh, i) => randomInput(sh, 500 + 10 * s + i));
    const init = shapes.map((sh, i) => randomInput(sh, 400 + i));
    const pa = init.map((t, i) => e.param(t.data, t.shape, `a${i}`));
    const a = make();
    for (let s = 0; s < 2; s++) a.step(pa, gradsAt(s).map((g) => e.tensor(g.data, g.shape)));
    const st = a.state();
    expect(Object.keys(st).sort()).toEqual(['optim.b.exp_avg', 'optim.b.exp_avg_sq',
      'optim.step', 'optim.w.exp_avg', 'optim.w.exp_avg_sq']);
    const keys = Object.keys(st);
    const saved = await e.run([], [...keys.map((k) => st[k]), ...pa]);
    expect(saved[keys.indexOf(STEP_KEY)][0]).toBe(2);
    // A second optimizer loads the state before its first step (values kept until the
    // state tensors are created), on copies of the parameters.
    const pb = pa.map((_, i) => e.param(saved[keys.length + i], shapes[i], `b${i}`));
    const b = make();
    b.loadState(Object.fromEntries(keys.map((k, j) => [k, saved[j]])));
    expect(b.steps).toBe(2);
    for (let s = 2; s < 4; s++) {
      const gs = gradsAt(s);
      a.step(pa, gs.map((g) => e.tensor(g.data, g.shape)));
      b.step(pb, gs.map((g) => e.tensor(g.data, g.shape)));
    }
    const out = await e.run([], [...pa, ...pb]);
    expect(Array.from(out[2])).toEqual(Array.from(out[0]));
    expect(Array.from(out[3])).toEqual(Array.from(out[1]));
    // Loading into state that exists writes it in place.
    b.loadState({ 'optim.w.exp_avg': new Float32Array(12).fill(3) });
    expect(Array.from(await b.state()['optim.w.exp_avg'].read())).toEqual(Array(12).fill(3));
  });

  it('rejects bad options and arguments, naming the optimizer and the value', () => {
    const e = engine();
    const p = e.param(new Float32Array(6), [2, 3], 'p');
    const g = e.tensor(new Float32Array(6), [2, 3]);
    const sgd = new SGD({ lr: 0.1 });
    const bad: [() => unknown, RegExp][] = [
      [() => new SGD({ lr: -1 }), /SGD: lr must be a finite number >= 0 or a schedule/],
      [() => new SGD({ lr: 0.1, momentum: -0.5 }), /SGD: momentum must be >= 0, got -0.5/],
      [() => new SGD({ lr: 0.1, nesterov: true }), /SGD: Nesterov momentum needs momentum > 0/],
      [() => new LARS({ lr: 0.1, trust: 0 }), /LARS: trust must be > 0, got 0/],
      [() => new Adam({ lr: 0.1, beta2: 1 }), /Adam: beta2 must be in \[0, 1\), got 1/],
      [() => new Adam({ lr: 0.1, names: ['a', 'a'] }), /Adam: two parameters share the name 'a'/],
      [() => sgd.step([p], []), /SGD: step got 1 parameters but 0 gradients/],
      [() => sgd.step([p], [e.tensor(new Float32Array(6), [3, 2])]),
        /SGD: gradient 0 \[3, 2\] does not match parameter p \[2, 3\]/],
      [() => sgd.step([mul(p, g)], [g]), /SGD: parameter 0 \(mul#\d+ \[2, 3\]\) must be a leaf/],
      [() => new SGD({ lr: () => NaN }).step([p], [g]),
        /SGD: the learning rate of step 0 is NaN, not a finite number >= 0/],
      [() => sgd.loadState({ 'optim.0.exp_avg': [1] }),
        /SGD: loadState: unknown key 'optim.0.exp_avg' \(this optimizer keeps/],
    ];
    for (const [f, msg] of bad) {
      expect(f).toThrow(OpArgumentError);
      expect(f).toThrow(msg);
    }
    sgd.step([p], [g]);
    const q = e.param(new Float32Array(6), [2, 3], 'q');
    expect(() => sgd.step([q], [g])).toThrow(/SGD: parameter 0 is q \[2, 3\] but was p \[2, 3\]/);
  });
});
