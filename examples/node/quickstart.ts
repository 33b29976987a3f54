// The README's example: a tiny model, its gradient, one submission.
import { createEngine, ops, grad } from '../../src/node.js';

const engine = await createEngine();
const x = engine.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
const w = engine.param([0.5, -1, 2, 0, 1, 1], [3, 2], 'w');
const y = ops.relu(ops.matmul(x, w));            // recorded, not run yet
const loss = ops.mean(ops.square(y));
const [gw] = grad(loss, [w]);                    // backward from the same ops
const [l, g] = await engine.run([], [loss, gw!]); // one submission, two readbacks
console.log('loss', l[0], 'dloss/dw', Array.from(g));
await engine.dispose();
