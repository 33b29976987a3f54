// The smallest embedding of swavgpu: create an engine on the page's WebGPU, build a tiny
// model from ops, run its forward pass and print the result.

import { createEngine, ops } from 'swavgpu';

const out = document.getElementById('out')!;

try {
  // Throws an AdapterError saying what to do when the browser has no WebGPU.
  const engine = await createEngine();
  // Four examples of three features; a hidden layer of 5 units and a 2-d embedding.
  const x = engine.tensor([1, 2, 3, 0, 1, 0, -1, -2, 0, 0.5, 0.5, 0.5], [4, 3]);
  const w1 = engine.tensor([0.5, -0.25, 0.125, 1, -1, 0.75, 0.5, -0.5, 0.25, 0,
    -0.25, 1, 0.5, -0.75, 0.25], [3, 5]);
  const b1 = engine.tensor([0.1, 0, -0.1, 0.2, 0], [5]);
  const w2 = engine.tensor([1, 0, 0, 1, 0.5, 0.5, -0.5, 0.5, 1, -1], [5, 2]);
  // Nothing runs yet: ops record a graph ...
  const h = ops.relu(ops.add(ops.matmul(x, w1), b1));
  const z = ops.l2Normalize(ops.matmul(h, w2));
  // ... until a value is asked for: one command buffer, one readback.
  const values = await z.read();
  const rows = [0, 1, 2, 3].map((r) => `[${values[2 * r].toFixed(4)}, ` +
    `${values[2 * r + 1].toFixed(4)}]`);
  out.textContent = `adapter: ${engine.gpu.adapterInfo}\nz = [${rows.join(', ')}]`;
  await engine.dispose();
} catch (e) {
  out.textContent = String(e instanceof Error ? e.message : e);
}
