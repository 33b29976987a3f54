// jax-js on its WebGPU backend, on the same Dawn adapter: each case as one jit-compiled
// function (jax's fused path), gradients by vjp given the output's gradient.
//
// jax-js counts references: every call consumes its array arguments, so a value used twice
// is passed as `.ref` the first time.

import { readFileSync } from 'node:fs';
import type * as JAX from '@jax-js/jax';
import { summarise, type Backend, type PreparedOp } from './worker.js';
import type { CaseSpec } from './protocol.js';
import { convOut, randomData, sizeOf } from './data.js';
import { installDawn } from './dawn.js';

type Arr = JAX.numpy.Array;

/** The installed version (the package's exports leave out its package.json). */
function packageVersion(): string {
  try {
    const url = new URL('../package.json', import.meta.resolve('@jax-js/jax'));
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return '(version unknown)';
  }
}
type Fn = ((...args: Arr[]) => Arr[]) & { dispose?: () => void };

export async function createJax(): Promise<Backend> {
  const dawn = await installDawn();
  const jax = await import('@jax-js/jax');
  const devices = await jax.init('webgpu');
  if (!devices.includes('webgpu')) throw new Error(`jax-js: no webgpu device (got ${devices})`);
  jax.defaultDevice('webgpu');
  const { numpy: np, lax, nn } = jax;
  const leaf = (shape: number[], seed: number): Arr =>
    np.array(randomData(sizeOf(shape), seed)).reshape(shape);

  /** The case's inputs (held, passed as .ref) and its jit-compiled function. */
  function build(spec: CaseSpec): { inputs: Arr[]; fn: Fn; constants: Arr[] } {
    const jit = (f: (...a: Arr[]) => Arr[]) => jax.jit(f) as unknown as Fn;
    switch (spec.kind) {
      case 'matmul':
        return { inputs: [leaf([spec.m, spec.k], 1), leaf([spec.k, spec.n], 2)],
          fn: jit((a, b) => [np.matmul(a, b)]), constants: [] };
      case 'conv': {
        const [N, , H, W] = spec.x;
        const [O, , KH, KW] = spec.w;
        const s = spec.stride;
        const p = spec.padding;
        const conv = (a: Arr, b: Arr) => lax.convGeneralDilated(a, b, [s, s], [[p, p], [p, p]]);
        const x = leaf(spec.x, 1);
        const w = leaf(spec.w, 2);
        if (!spec.backward) {
          return { inputs: [x, w], fn: jit((a, b) => [conv(a, b)]), constants: [] };
        }
        const dy = leaf([N, O, convOut(H, KH, s, p), convOut(W, KW, s, p)], 3);
        const fn = jit((a, b, d) => {
          if (!spec.needDx) {
            const [y, back] = jax.vjp((bb: Arr) => conv(a, bb), [b]);
            const [dw] = back(d) as Arr[];
            back.dispose();
            return [y, dw];
          }
          const [y, back] = jax.vjp(conv, [a, b]);
          const [dx, dw] = back(d) as Arr[];
          back.dispose();
          return [y, dx, dw];
        });
        return { inputs: [x, w, dy], fn, constants: [] };
      }
      case 'batchnorm': {
        const C = spec.x[1];
        const axes = spec.x.length === 4 ? [0, 2, 3] : [0];
        const bshape = spec.x.length === 4 ? [1, C, 1, 1] : [1, C];
        const bn = (a: Arr, g: Arr, b: Arr) => {
          const mean = np.mean(a.ref, axes, { keepdims: true });
          const c = a.sub(mean);
          const v = np.mean(np.square(c.ref), axes, { keepdims: true });
          const y = c.div(np.sqrt(v.add(1e-5))).mul(g.reshape(bshape)).add(b.reshape(bshape));
          return spec.relu ? nn.relu(y) : y;
        };
        const fn = jit((a, g, b, d) => {
          const [y, back] = jax.vjp(bn, [a, g, b]);
          const grads = back(d) as Arr[];
          back.dispose();
          return [y, ...grads];
        });
        const gamma = leaf([C], 2).add(1);
        return { inputs: [leaf(spec.x, 1), gamma, leaf([C], 3), leaf(spec.x, 4)], fn,
          constants: [] };
      }
      case 'softmax-ce': {
        const raw = leaf([spec.rows, spec.cols], 2).add(1);
        const q = raw.ref.div(np.sum(raw, 1, { keepdims: true }));
        const ce = (a: Arr) => np.sum(q.ref.mul(nn.logSoftmax(a.div(spec.temperature), -1)), 1)
          .mean().neg();
        const vg = jax.valueAndGrad(ce);
        const fn = jit((a) => {
          const [value, g] = vg(a);
          return [value, g as Arr];
        });
        return { inputs: [leaf([spec.rows, spec.cols], 1)], fn, constants: [q] };
      }
      case 'sinkhorn': {
        const B = spec.rows;
        const K = spec.cols;
        const fn = jit((sc) => {
          let q = np.exp(sc.ref.sub(np.max(sc)).div(spec.epsilon));
          q = q.ref.div(np.sum(q));
          for (let it = 0; it < spec.iterations; it++) {
            q = q.ref.div(np.sum(q, 0, { keepdims: true }).mul(K));
            q = q.ref.div(np.sum(q, 1, { keepdims: true }).mul(B));
          }
          return [q.mul(B)];
        });
        return { inputs: [leaf([spec.rows, spec.cols], 1)], fn, constants: [] };
      }
      case 'swav-step':
        throw new Error('jax-js: no SwAV step (the step is compared with PyTorch)');
    }
  }

  return {
    info: () => ({ contestant: 'jax', adapter: dawn.adapter,
      version: `@jax-js/jax ${packageVersion()}, webgpu device, jit` }),
    async prepare(spec): Promise<PreparedOp> {
      const { inputs, fn, constants } = build(spec);
      return {
        async run() {
          const outs = fn(...inputs.map((a) => a.ref));
          await jax.blockUntilReady(outs);
          for (const o of outs) o.dispose();
        },
        async check() {
          const outs = fn(...inputs.map((a) => a.ref));
          const sums = [];
          for (const o of outs) sums.push(summarise(await o.data() as ArrayLike<number>));
          return sums;
        },
        dispose() {
          fn.dispose?.();
          for (const a of [...inputs, ...constants]) a.dispose();
        },
      };
    },
  };
}
