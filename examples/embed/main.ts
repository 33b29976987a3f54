// The smallest embedding of swavgpu: create an engine on the page's WebGPU, build a tiny
// model from ops, run its forward pass and print the result.

import { createEngine, ops } from 'swavgpu';

const out = document.getElementById('out')!;

try {
  // Throws an AdapterError saying what to do when the browser has no WebGPU.
  const engine = await createEngine();
  // Four examples of three features, and one logistic unit's weights and bias.
  const x = engine.tensor([1, 2, 3, 0, 1, 0, -1, -2, 0, 0.5, 0.5, 0.5], [4, 3]);
  const w = engine.tensor([0.5, -0.25, 0.125], [3]);
  // Nothing runs yet: ops record a graph ...
  const logits = ops.addScalar(ops.sum(ops.mul(x, w), 1), 0.1);
  const p = ops.sigmoid(logits);
  // ... until a value is asked for: one command buffer, one readback.
  const values = await p.read();
  out.textContent = `adapter: ${engine.gpu.adapterInfo}\n` +
    `p = [${[...values].map((v) => v.toFixed(4)).join(', ')}]`;
  await engine.dispose();
} catch (e) {
  out.textContent = String(e instanceof Error ? e.message : e);
}
