// Row-wise L2 normalisation, y = x / max(||x_row||, eps), and its backward
// (shaders/l2norm.wgsl).

import { NotSupportedError } from '../gpu/errors.js';
import { registerGrad } from '../graph/autodiff.js';
import type { Tensor } from '../graph/tensor.js';
import { checkArity, checkFinite, checkRank, groups } from './util.js';

/** Rows per workgroup: one thread per row. */
const WG = 64;

/**
 * y = x / max(||x_row||_2, eps) for each row of x [N, D] (PyTorch's F.normalize with p = 2,
 * dim = 1): a zero row stays zero. The node also outputs the row norms [N] (before the
 * floor), saved for the backward.
 */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  const op = 'l2Normalize';
  checkArity(op, arguments, 2, 'l2Normalize(x, eps)');
  checkRank(op, 'x', x, [2]);
  checkFinite(op, 'eps', eps, (v) => v > 0, 'must be > 0');
  const [N, D] = x.shape;
  const [y] = x.engine.record({
    op, inputs: [x], outputs: [x.shape, [N]], attrs: { eps },
    encode: (ctx) => ctx.dispatch({
      shader: 'l2norm', entry: 'forward', overrides: { WG },
      bindings: { x: ctx.input(0), y: ctx.output(0), norm: ctx.output(1) },
      uniforms: { N, D, eps }, workgroups: groups(N, WG),
    }),
  });
  return y;
}

// With n = ||x_row|| and y = x / n, where n >= eps: dx = (dy - y <y, dy>) / n;
// where n < eps the denominator is the constant eps: dx = dy / eps.
registerGrad('l2Normalize', ({ outputs: [y, norm], grads, attrs }) => {
  if (grads[1]) {
    throw new NotSupportedError('grad: l2Normalize\'s saved norm output carries no backward ' +
      'rule; take gradients through y only');
  }
  const [N, D] = y.shape;
  const eps = attrs.eps as number;
  const [dx] = y.engine.record({
    op: 'l2NormalizeBackward', inputs: [grads[0]!, y, norm], outputs: [y.shape],
    attrs: { eps },
    encode: (ctx) => ctx.dispatch({
      shader: 'l2norm', entry: 'backward', overrides: { WG },
      bindings: { dy: ctx.input(0), y_saved: ctx.input(1), norm_saved: ctx.input(2),
        dx: ctx.output(0) },
      uniforms: { N, D, eps }, workgroups: groups(N, WG),
    }),
  });
  return [dx];
});
