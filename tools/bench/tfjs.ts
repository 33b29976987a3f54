// TensorFlow.js on its WebGPU backend, on the same Dawn adapter: each case in tfjs's own
// layout (NHWC for images), with gradients from tf.grads given the output's gradient.

import type * as TF from '@tensorflow/tfjs';
import { summarise, type Backend, type PreparedOp } from './worker.js';
import type { CaseSpec } from './protocol.js';
import { convOut, randomData, sizeOf } from './data.js';
import { installDawn } from './dawn.js';

type Tensor = TF.Tensor;

export async function createTfjs(): Promise<Backend> {
  const dawn = await installDawn();
  const tf = await import('@tensorflow/tfjs');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not start');
  await tf.ready();
  const leaf = (shape: number[], seed: number) => tf.tensor(randomData(sizeOf(shape), seed),
    shape);
  /** The values the other contestants use in NCHW (OIHW), laid out for tfjs by `perm`. */
  const permuted = (shape: number[], seed: number, perm: number[]) => tf.tidy(() =>
    tf.transpose(leaf(shape, seed), perm));
  const NHWC = [0, 2, 3, 1];

  function build(spec: CaseSpec, made: Tensor[]): () => Tensor[] {
    const keep = <T extends Tensor>(t: T) => {
      made.push(t);
      return t;
    };
    switch (spec.kind) {
      case 'matmul': {
        const a = keep(leaf([spec.m, spec.k], 1)) as TF.Tensor2D;
        const b = keep(leaf([spec.k, spec.n], 2)) as TF.Tensor2D;
        return () => [tf.matMul(a, b)];
      }
      case 'conv': {
        const [N, C, H, W] = spec.x;
        const [O, , KH, KW] = spec.w;
        const x = keep(permuted([N, C, H, W], 1, NHWC)) as TF.Tensor4D;
        const w = keep(permuted([O, C, KH, KW], 2, [2, 3, 1, 0])) as TF.Tensor4D;
        const dy = keep(permuted([N, O, convOut(H, KH, spec.stride, spec.padding),
          convOut(W, KW, spec.stride, spec.padding)], 3, NHWC)) as TF.Tensor4D;
        const s = spec.stride;
        const p = spec.padding;
        const conv = (a: TF.Tensor4D, b: TF.Tensor4D) => tf.conv2d(a, b, s, p);
        if (!spec.backward) return () => [conv(x, w)];
        const gAll = tf.valueAndGrads((a, b) => conv(a as TF.Tensor4D, b as TF.Tensor4D));
        const gW = tf.valueAndGrad((b) => conv(x, b as TF.Tensor4D));
        return () => tf.tidy(() => {
          if (!spec.needDx) {
            const r = gW(w, dy);
            return [r.value, r.grad];
          }
          const r = gAll([x, w], dy);
          return [r.value, ...r.grads];
        });
      }
      case 'batchnorm': {
        // NHWC (or [N, C]): statistics over every axis but the last.
        const C = spec.x[1];
        const image = spec.x.length === 4;
        const axes = image ? [0, 1, 2] : [0];
        const x = keep(image ? permuted(spec.x, 1, NHWC) : leaf(spec.x, 1));
        const gamma = keep(tf.add(leaf([C], 2), 1));
        const beta = keep(leaf([C], 3));
        const dy = keep(image ? permuted(spec.x, 4, NHWC) : leaf(spec.x, 4));
        const bn = (a: Tensor, g: Tensor, b: Tensor) => {
          const { mean, variance } = tf.moments(a, axes);
          const y = tf.add(tf.mul(tf.mul(tf.sub(a, mean), tf.rsqrt(tf.add(variance, 1e-5))), g),
            b);
          return spec.relu ? tf.relu(y) : y;
        };
        const g = tf.valueAndGrads(bn);
        return () => tf.tidy(() => {
          const r = g([x, gamma, beta], dy);
          return [r.value, ...r.grads];
        });
      }
      case 'softmax-ce': {
        const x = keep(leaf([spec.rows, spec.cols], 1));
        const raw = tf.add(leaf([spec.rows, spec.cols], 2), 1);
        const q = keep(tf.div(raw, tf.sum(raw, 1, true)));
        raw.dispose();
        const ce = (a: Tensor) => tf.mean(tf.neg(tf.sum(tf.mul(q,
          tf.logSoftmax(tf.div(a, spec.temperature))), 1)));
        const vg = tf.valueAndGrad(ce);
        return () => tf.tidy(() => {
          const { value, grad } = vg(x);
          return [value, grad];
        });
      }
      case 'sinkhorn': {
        const s = keep(leaf([spec.rows, spec.cols], 1));
        const B = spec.rows;
        const K = spec.cols;
        return () => [tf.tidy(() => {
          let q = tf.exp(tf.div(tf.sub(s, tf.max(s)), spec.epsilon));
          q = tf.div(q, tf.sum(q));
          for (let it = 0; it < spec.iterations; it++) {
            q = tf.div(q, tf.mul(tf.sum(q, 0, true), K));
            q = tf.div(q, tf.mul(tf.sum(q, 1, true), B));
          }
          return tf.mul(q, B);
        })];
      }
      case 'swav-step':
        throw new Error('tfjs: no SwAV step (the step is compared with PyTorch)');
    }
  }

  return {
    info: () => ({ contestant: 'tfjs', adapter: dawn.adapter,
      version: `@tensorflow/tfjs ${tf.version.tfjs}, webgpu backend` }),
    async prepare(spec): Promise<PreparedOp> {
      const made: Tensor[] = [];
      const one = build(spec, made);
      return {
        async run() {
          const outs = one();
          // Reading the smallest output waits for everything submitted before it.
          const smallest = outs.reduce((a, b) => (b.size < a.size ? b : a));
          await smallest.data();
          for (const t of outs) t.dispose();
        },
        async check() {
          const outs = one();
          const sums = [];
          for (const t of outs) sums.push(summarise(await t.data()));
          for (const t of outs) t.dispose();
          return sums;
        },
        dispose() {
          for (const t of made) t.dispose();
        },
      };
    },
  };
}
