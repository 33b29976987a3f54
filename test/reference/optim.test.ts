// Optimizer steps against hand-computed updates: SGD, SwAV's LARS (apex LARC), Adam.

import { describe, expect, it } from 'vitest';
import { adamStep, larsStep, sgdStep } from '../../src/reference/optim.js';
import { expectClose } from './helpers.js';

const f64 = (xs: number[]) => Float64Array.from(xs);

describe('sgdStep', () => {
  it('momentum 0.9 and weight decay 0.01 over two steps, buf = d on the first', () => {
    const p = f64([1, -2]);
    const g = f64([0.5, 0.5]);
    const opts = { lr: 0.1, momentum: 0.9, weightDecay: 0.01 };
    // d = g + 0.01 p = [0.51, 0.48]; buf = d; p -= 0.1 d
    let buf = sgdStep(p, g, null, opts);
    expectClose(p, [0.949, -2.048]);
    expectClose(buf!, [0.51, 0.48]);
    // d = [0.50949, 0.47952]; buf = 0.9 [0.51, 0.48] + d = [0.96849, 0.91152]
    buf = sgdStep(p, g, buf, opts);
    expectClose(buf!, [0.96849, 0.91152]);
    expectClose(p, [0.852151, -2.139152]);
    expectClose(g, [0.5, 0.5]);
  });

  it('Nesterov steps along d + momentum buf', () => {
    const p = f64([1, -2]);
    sgdStep(p, f64([0.5, 0.5]), null, { lr: 0.1, momentum: 0.9, weightDecay: 0.01,
      nesterov: true });
    // 1.9 d = [0.969, 0.912]
    expectClose(p, [0.9031, -2.0912]);
  });

  it('dampening applies from the second step only (PyTorch)', () => {
    const p = f64([1]);
    const opts = { lr: 1, momentum: 0.9, weightDecay: 0, dampening: 0.5 };
    const buf = sgdStep(p, f64([1]), null, opts);
    expectClose(p, [0]);
    sgdStep(p, f64([1]), buf, opts);
    // buf = 0.9 * 1 + 0.5 * 1 = 1.4
    expectClose(p, [-1.4]);
  });

  it('momentum 0 keeps no buffer', () => {
    const p = f64([2]);
    expect(sgdStep(p, f64([1]), null, { lr: 0.5, momentum: 0, weightDecay: 0.5 })).toBeNull();
    // d = 1 + 0.5 * 2 = 2
    expectClose(p, [1]);
  });

  it('rejects mismatched lengths', () => {
    expect(() => sgdStep(f64([1, 2]), f64([1]), null, { lr: 1, momentum: 0, weightDecay: 0 }))
      .toThrow(/g has 1 elements but p has 2/);
  });
});

describe('larsStep (apex LARC, clip = false)', () => {
  const opts = { lr: 1, momentum: 0.9, weightDecay: 0.1, trust: 0.001 };

  it('scales g + wd p by trust ||p|| / (||g|| + wd ||p|| + 1e-8)', () => {
    // ||p|| = 5, ||g|| = 1: a = 0.005 / 1.50000001; g' = [0.9, 1.2] a
    const p = f64([3, 4]);
    const buf = larsStep(p, f64([0.6, 0.8]), null, opts);
    const a = 0.005 / (1.5 + 1e-8);
    expectClose(buf!, [0.9 * a, 1.2 * a]);
    expectClose(p, [3 - 0.9 * a, 4 - 1.2 * a]);
    // Second step: buf = 0.9 buf + g'' with the new norms.
    const pn = Math.hypot(3 - 0.9 * a, 4 - 1.2 * a);
    const a2 = (0.001 * pn) / (1 + 0.1 * pn + 1e-8);
    const g2 = [(0.6 + 0.1 * (3 - 0.9 * a)) * a2, (0.8 + 0.1 * (4 - 1.2 * a)) * a2];
    larsStep(p, f64([0.6, 0.8]), buf, opts);
    expectClose(p, [3 - 0.9 * a - (0.9 * 0.9 * a + g2[0]), 4 - 1.2 * a - (0.9 * 1.2 * a + g2[1])]);
  });

  it('a zero gradient applies NO weight decay (LARC zeroed SGD\'s and skipped its own)', () => {
    const p = f64([3, 4]);
    larsStep(p, f64([0, 0]), null, opts);
    expectClose(p, [3, 4], 0);
  });

  it('a zero parameter takes the raw gradient, unscaled and without weight decay', () => {
    const p = f64([0, 0]);
    larsStep(p, f64([1, 2]), null, { ...opts, lr: 0.1 });
    expectClose(p, [-0.1, -0.2]);
  });

  it('excluded parameters take plain SGD with momentum, no weight decay, no trust ratio', () => {
    const p = f64([3, 4]);
    const buf = larsStep(p, f64([0.6, 0.8]), null, { ...opts, lr: 0.5, exclude: true });
    expectClose(p, [2.7, 3.6]);
    larsStep(p, f64([0.6, 0.8]), buf, { ...opts, lr: 0.5, exclude: true });
    // buf = 0.9 [0.6, 0.8] + [0.6, 0.8] = [1.14, 1.52]
    expectClose(p, [2.7 - 0.57, 3.6 - 0.76]);
  });
});

describe('adamStep', () => {
  const opts = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

  it('two steps by hand, with bias correction', () => {
    const p = f64([1]);
    const m = f64([0]);
    const v = f64([0]);
    adamStep(p, f64([0.5]), m, v, 1, opts);
    // m = 0.05, v = 0.00025; m / 0.1 = 0.5, sqrt(v / 0.001) = 0.5
    expectClose(m, [0.05]);
    expectClose(v, [0.00025]);
    expectClose(p, [1 - 0.05 / (0.5 + 1e-8)]);
    adamStep(p, f64([-0.25]), m, v, 2, opts);
    // m = 0.045 - 0.025 = 0.02; v = 0.00024975 + 0.0000625 = 0.00031225
    expectClose(m, [0.02]);
    expectClose(v, [0.00031225]);
    const step2 = (0.1 / 0.19) * (0.02 / (Math.sqrt(0.00031225) / Math.sqrt(0.001999) + 1e-8));
    expectClose(p, [1 - 0.05 / (0.5 + 1e-8) - step2]);
  });

  it('L2 weight decay joins the gradient before the moments', () => {
    const p = f64([2]);
    const m = f64([0]);
    const v = f64([0]);
    // d = 0 + 0.5 * 2 = 1: m = 0.1, v = 0.001, step = 0.1 * 1 / (1 + 1e-8)
    adamStep(p, f64([0]), m, v, 1, { ...opts, weightDecay: 0.5 });
    expectClose(m, [0.1]);
    expectClose(p, [2 - 0.1 / (1 + 1e-8)]);
  });

  it('the step counts from 1', () => {
    expect(() => adamStep(f64([1]), f64([1]), f64([0]), f64([0]), 0, opts))
      .toThrow(/step counts from 1/);
  });
});
