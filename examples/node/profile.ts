// Engine.profile: where a forward and backward pass of a small convolution layer spends
// its time, dispatch by dispatch.
import { createEngine, ops, grad } from '../../src/node.js';

const engine = await createEngine();
const x = engine.tensor(Float32Array.from({ length: 64 * 28 * 28 }, (_, i) => Math.sin(i)),
  [64, 1, 28, 28]);
const w = engine.param(Float32Array.from({ length: 8 * 9 }, (_, i) => Math.cos(i) / 3),
  [8, 1, 3, 3], 'w');
const step = () => {
  const loss = ops.mean(ops.square(ops.relu(ops.conv2d(x, w, null, { padding: 1 }))));
  const [gw] = grad(loss, [w]);
  return engine.run([], [loss, gw!]);
};
// The first run also pays for compiling the kernels and for the first touch of each new
// buffer's memory; the second shows the steady state.
await step();
const p = await engine.profile(step);
console.log(`timed by: ${p.source}; loss ${p.result[0][0].toFixed(6)}`);
for (const k of p.kernels) {
  console.log(`${k.label.padEnd(22)} ${k.kernel.padEnd(60)} ${String(k.workgroups).padStart(6)}` +
    ` ${k.ms.toFixed(3).padStart(8)} ms`);
}
await engine.dispose();
