// Transpose of the last two axes of a 2-D or 3-D tensor (shaders/transpose.wgsl).

import { registerGrad } from '../graph/autodiff.js';
import type { Tensor } from '../graph/tensor.js';
import { checkRank, groups } from './util.js';

const WG = 64;

/** x [R, C] -> [C, R], or [B, R, C] -> [B, C, R]. */
export function transpose2d(x: Tensor): Tensor {
  checkRank('transpose2d', 'x', x, [2, 3]);
  const [rows, cols] = x.shape.slice(-2);
  const outShape = x.rank === 3 ? [x.shape[0], cols, rows] : [cols, rows];
  const [out] = x.engine.record({
    op: 'transpose2d', inputs: [x], outputs: [outShape],
    encode: (ctx) => ctx.dispatch({
      shader: 'transpose', overrides: { WG },
      bindings: { x: ctx.input(0), out: ctx.output(0) },
      uniforms: { rows, cols, total: x.size },
      workgroups: groups(x.size, WG),
    }),
  });
  return out;
}

// y = x^T, so dx = dy^T
registerGrad('transpose2d', ({ grads: [g] }) => [transpose2d(g!)]);
