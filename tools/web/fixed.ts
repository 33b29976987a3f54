// One fixed computation, run the same way in Node and in the page, so the tests can compare
// the two adapters' values: a seeded toy loss over elementwise ops and reductions with
// broadcasting, and its gradients, recorded as one graph and read in one run.

import type * as Swavgpu from '../../src/browser.js';
import type { Engine, Tensor } from '../../src/browser.js';
import { mulberry32 } from '../../src/reference/random.js';

export type FixedApi = Pick<typeof Swavgpu, 'ops' | 'grad'>;

/** Named outputs as plain arrays (they cross page.evaluate as JSON). */
export type FixedResult = Record<string, number[]>;

function seeded(n: number, seed: number, scale: number): Float32Array {
  const rng = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() * 2 - 1) * scale;
  return out;
}

/**
 * h = tanh(x * w + b), loss = mean((h - sigmoid(h))^2) + mean(log(1 + exp(h))) over a
 * [16, 33] batch, with x [16, 33], w [33] and b [16, 1]: outputs h, the loss and its
 * gradients with respect to x, w and b.
 */
export async function fixedComputation(api: FixedApi, engine: Engine): Promise<FixedResult> {
  const { ops, grad } = api;
  const x = engine.tensor(seeded(16 * 33, 1, 2), [16, 33], { name: 'x', requiresGrad: true });
  const w = engine.tensor(seeded(33, 2, 1), [33], { name: 'w', requiresGrad: true });
  const b = engine.tensor(seeded(16, 3, 0.5), [16, 1], { name: 'b', requiresGrad: true });
  const h = ops.tanh(ops.add(ops.mul(x, w), b));
  const gap = ops.mean(ops.square(ops.sub(h, ops.sigmoid(h))));
  const softplus = ops.mean(ops.log(ops.addScalar(ops.exp(h), 1)));
  const loss = ops.add(gap, softplus);
  const gs = grad(loss, [x, w, b]) as Tensor[];
  const [hv, lv, gx, gw, gb] = await engine.run([], [h.keep(), loss.keep(), ...gs]);
  for (const t of [x, w, b, h, loss, ...gs]) t.dispose();
  return { h: [...hv], loss: [...lv], 'dloss/dx': [...gx], 'dloss/dw': [...gw],
    'dloss/db': [...gb] };
}
