// The executor and autodiff: one submission per run, buffer reuse, errors that name what is
// wrong, gradient accumulation and stop-gradient, and the engine's limits.

import { describe, it, expect } from 'vitest';
import { createEngine, grad, BindingError, ShaderError, OpArgumentError, NotSupportedError,
  DeviceLostError } from '../../src/node.js';
import * as ops from '../../src/ops/elementwise.js';
import { sum, mean, max, reshape } from '../../src/ops/reduce.js';
import { l2Normalize } from '../../src/ops/l2norm.js';
import { batchNorm } from '../../src/ops/batchnorm.js';
import { globalAvgPool, maxPool2d } from '../../src/ops/pool.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { assign, assignRows } from '../../src/ops/shape.js';
import { topk } from '../../src/ops/topk.js';
import { matmul } from '../../src/ops/matmul.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine({
  shaders: {
    // Deliberately broken WGSL: a type error on line 5.
    broken: [
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;',
      '@compute @workgroup_size(1)',
      'fn main(@builtin(global_invocation_id) id: vec3<u32>) {',
      '  let i = id.x;',
      '  out[i] = i;',
      '}',
    ].join('\n'),
    // Deliberately broken WGSL: a syntax error ('lett') on line 4, which the reflection
    // step meets first.
    misspelt: [
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;',
      '@compute @workgroup_size(1)',
      'fn main(@builtin(global_invocation_id) id: vec3<u32>) {',
      '  lett i = id.x;',
      '  out[i] = 1.0;',
      '}',
    ].join('\n'),
    // Reads vec4s: a bound range needs at least one.
    probe4: [
      '@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;',
      '@group(0) @binding(1) var<storage, read_write> dst: array<f32>;',
      '@compute @workgroup_size(1)',
      'fn main() { dst[0] = src[0].x + 1.0; }',
    ].join('\n'),
    // Valid WGSL that the tests bind wrongly on purpose.
    probe: [
      'struct Params { n: u32, scale: f32 }',
      '@group(0) @binding(0) var<storage, read> src: array<f32>;',
      '@group(0) @binding(1) var<storage, read_write> dst: array<f32>;',
      '@group(0) @binding(2) var<uniform> params: Params;',
      '@compute @workgroup_size(64)',
      'fn main(@builtin(global_invocation_id) id: vec3<u32>) {',
      '  if (id.x < params.n) { dst[id.x] = src[id.x] * params.scale; }',
      '}',
    ].join('\n'),
  },
});

function probe(e: ReturnType<typeof engine>, x: ReturnType<ReturnType<typeof engine>['tensor']>,
  spec: { bindings?: string[]; uniforms?: Record<string, number>;
    src?: { offset?: number; size?: number } }) {
  const [y] = e.record({
    op: 'probe', inputs: [x], outputs: [x.shape],
    encode: (ctx) => {
      const bufs: Record<string, ReturnType<typeof ctx.input>> = {};
      const names = spec.bindings ?? ['src', 'dst'];
      if (names[0]) bufs[names[0]] = { ...ctx.input(0), ...spec.src };
      if (names[1]) bufs[names[1]] = ctx.output(0);
      ctx.dispatch({ shader: 'probe', bindings: bufs, uniforms: spec.uniforms ?? {},
        workgroups: 1 });
    },
  });
  return y;
}

describe('executor', () => {
  it('runs a chain as one submission and reads values back', async () => {
    const e = engine();
    const x = e.tensor([1, 2, 3], [3]);
    const before = e.gpu.counters.submits;
    const y = ops.exp(ops.scale(ops.addScalar(x, 1), 0.5));
    const v = await y.read();
    expect(e.gpu.counters.submits - before).toBe(1);
    expect(Array.from(v).map((a) => +a.toFixed(5))).toEqual(
      [1, 1.5, 2].map((a) => +Math.exp(a).toFixed(5)));
  });

  it('allocates nothing after the first of identical steps', async () => {
    const e = engine();
    const w = e.param(new Float32Array(1000).fill(0.5), [10, 100], 'w');
    const step = async () => {
      const l = mean(ops.square(ops.mul(w, ops.addScalar(w, 1))));
      const [g] = grad(l, [w]);
      const values = await e.run([], [l, g!]);
      // Freed here, not by the garbage collector, whose timing would move the live count.
      l.dispose();
      g!.dispose();
      return values;
    };
    await step();
    const allocs = e.gpu.pool.stats.allocations;
    const live = e.gpu.pool.stats.live;
    for (let i = 0; i < 5; i++) await step();
    expect(e.gpu.pool.stats.allocations).toBe(allocs);
    expect(e.gpu.pool.stats.live).toBe(live);
  });

  it('makes a bind group once per kernel and bound ranges, and reuses it in later steps',
    async () => {
      const e = engine();
      const device = e.gpu.device;
      const made: GPUBindGroupDescriptor[] = [];
      const create = device.createBindGroup.bind(device);
      device.createBindGroup = (d: GPUBindGroupDescriptor) => {
        made.push(d);
        return create(d);
      };
      try {
        const w = e.param(new Float32Array(64).fill(0.5), [8, 8], 'w');
        const step = async (k: number) => {
          const y = ops.mul(ops.addScalar(w, k), w);
          const [v] = await e.run([], [y]);
          y.dispose();
          return v[0];
        };
        expect(await step(1)).toBe(0.75);
        expect(made.length).toBeGreaterThan(0);
        // The pool settles on which buffer serves which tensor after the first step.
        expect(await step(2)).toBe(1.25);
        const first = made.length;
        // The same buffers bound again: no new bind group, and the values of each step.
        expect(await step(3)).toBe(1.75);
        expect(await step(4)).toBe(2.25);
        expect(made.length).toBe(first);
        // Another buffer bound (a second parameter) takes a bind group of its own.
        const v = e.param(new Float32Array(64).fill(2), [8, 8], 'v');
        expect((await ops.mul(v, w).read())[0]).toBe(1);
        expect(made.length).toBeGreaterThan(first);
      } finally {
        device.createBindGroup = create;
      }
    });

  it('reuses every bind group in later steps whose buffers come back in another order',
    async () => {
      const e = engine();
      const device = e.gpu.device;
      let made = 0;
      const create = device.createBindGroup.bind(device);
      device.createBindGroup = (d: GPUBindGroupDescriptor) => {
        made++;
        return create(d);
      };
      try {
        const w = e.param(new Float32Array(64).fill(0.5), [8, 8], 'w2');
        // Intermediates die in an order other than their birth (a outlives b and c), and
        // the two read tensors return to the pool after them.
        const step = async (k: number) => {
          const a = ops.addScalar(w, k);
          const b = ops.mul(a, w);
          const c = ops.addScalar(b, 1);
          const d = ops.mul(c, a);
          const [vb, vd] = await e.run([], [b, d]);
          return [vb[0], vd[0]];
        };
        expect(await step(1)).toEqual([0.75, 2.625]);
        expect(await step(2)).toEqual([1.25, 5.625]);
        const settled = made;
        for (let k = 3; k < 8; k++) await step(k);
        expect(made).toBe(settled);
      } finally {
        device.createBindGroup = create;
      }
    });

  it('keeps every dispatch\'s uniforms its own within one command buffer', async () => {
    const e = engine();
    const x = e.tensor([1, 1, 1, 1], [4]);
    // Three dispatches of the same pipeline with different uniforms, one submission.
    const ys = [2, 3, 5].map((s) => probe(e, x, { uniforms: { n: 4, scale: s } }));
    const values = await e.run([], ys);
    expect(values.map((v) => v[0])).toEqual([2, 3, 5]);
  });

  it('returns each of several readbacks in flight its own data', async () => {
    const e = engine();
    const ts = [1, 2, 3, 4].map((k) => e.tensor([k, k * 10], [2]));
    const reads = await Promise.all(ts.map((t) => ops.scale(t, 2).read()));
    expect(reads.map((r) => Array.from(r))).toEqual([[2, 20], [4, 40], [6, 60], [8, 80]]);
  });

  it('releases intermediates and says so when one is reused', async () => {
    const e = engine();
    const x = e.tensor([1, 2], [2]);
    const mid = ops.scale(x, 3);
    const out = ops.addScalar(mid, 1);
    await out.read();
    expect(mid.state).toBe('released');
    expect(() => ops.neg(mid)).toThrow(/was an intermediate of an earlier run.*keep\(\)/);
    const kept = ops.scale(x, 3).keep();
    await ops.neg(kept).read();
    expect(Array.from(await kept.read())).toEqual([3, 6]);
  });
});

describe('errors name what is wrong', () => {
  // A type error (met by WebGPU's compiler) and a syntax error ('lett', met first by the
  // reflection step): each names file:line:col and quotes the line; the engine stays usable.
  const broken: [string, RegExp][] = [
    ['broken', /broken\.wgsl:5:\d+: .*\n\s+out\[i\] = i;/],
    ['misspelt', /misspelt\.wgsl:4:\d+: .*\n\s+lett i = id\.x;/],
  ];
  for (const [shader, where] of broken) {
    it(`a shader that does not compile (${shader}) reports file:line:col and the line`,
      async () => {
        const e = engine();
        const x = e.tensor([1], [1]);
        const [y] = e.record({
          op: shader, inputs: [x], outputs: [[1]],
          encode: (ctx) => ctx.dispatch({ shader, bindings: { out: ctx.output(0) },
            workgroups: 1 }),
        });
        const err = await y.read().catch((er: unknown) => er);
        expect(err).toBeInstanceOf(ShaderError);
        expect(String(err)).toMatch(where);
        expect(Array.from(await ops.addScalar(x, 1).read())).toEqual([2]);
      });
  }

  it('a binding the TypeScript side names wrongly', () => {
    const e = engine();
    const x = e.tensor([1], [1]);
    const y = probe(e, x, { bindings: ['source', 'dst'], uniforms: { n: 1, scale: 1 } });
    return expect(y.read()).rejects.toThrow(BindingError);
  });

  it('a missing binding, a missing uniform member and an unknown one', async () => {
    const e = engine();
    const x = e.tensor([1], [1]);
    await expect(probe(e, x, { bindings: ['src', ''], uniforms: { n: 1, scale: 1 } }).read())
      .rejects.toThrow(/probe.*binding 'dst' was not given a buffer/);
    await expect(probe(e, x, { uniforms: { n: 1 } }).read())
      .rejects.toThrow(/uniform 'params\.scale' was not given a value/);
    await expect(probe(e, x, { uniforms: { n: 1, scale: 1, bias: 2 } }).read())
      .rejects.toThrow(/has no member 'bias' \(it has: n, scale\)/);
  });

  it('a shader nobody gave is named, with how to give one', async () => {
    const e = engine();
    const x = e.tensor([1], [1]);
    const [y] = e.record({ op: 'mine', inputs: [x], outputs: [[1]],
      encode: (ctx) => ctx.dispatch({ shader: 'mine', bindings: {}, workgroups: 1 }) });
    const err = await y.read().catch((er: unknown) => er);
    expect(err).toBeInstanceOf(ShaderError);
    expect(String(err)).toMatch(
      /no shader file \S*mine\.wgsl \(a shader of your own is passed by name: createEngine\(/);
  });

  it('a buffer given for the uniform struct is refused, not silently replaced', async () => {
    const e = engine();
    const x = e.tensor([1, 2], [2]);
    const [y] = e.record({
      op: 'probe', inputs: [x], outputs: [x.shape],
      encode: (ctx) => ctx.dispatch({ shader: 'probe', workgroups: 1,
        bindings: { src: ctx.input(0), dst: ctx.output(0), params: ctx.input(0) },
        uniforms: { n: 2, scale: 3 } }),
    });
    const err = await y.read().catch((er: unknown) => er);
    expect(err).toBeInstanceOf(BindingError);
    expect(String(err)).toMatch(new RegExp("binding 'params' is the uniform struct the " +
      'engine fills from `uniforms` \\(members n, scale\\); pass its members there'));
    // Without the buffer, the same dispatch runs on the uniforms.
    await expect(probe(e, x, { uniforms: { n: 2, scale: 3 } }).read()).resolves
      .toEqual(new Float32Array([3, 6]));
  });

  it('a binding range WebGPU would refuse at submission: offset, size, past the end',
    async () => {
      const e = engine();
      const x = e.tensor(new Float32Array(200), [200]);
      const u = { n: 1, scale: 1 };
      // Pooled buffers hold whole 256-byte blocks: x's holds 1 024 bytes.
      await expect(probe(e, x, { uniforms: u, src: { offset: 4, size: 16 } }).read())
        .rejects.toThrow(/'src' starts at byte 4, not a multiple of the adapter's minStorage/);
      await expect(probe(e, x, { uniforms: u, src: { offset: 0, size: 6 } }).read())
        .rejects.toThrow(/binding 'src' of 6 bytes at byte 0 does not fit .*whole 4-byte words/);
      await expect(probe(e, x, { uniforms: u, src: { offset: 256, size: 4096 } }).read())
        .rejects.toThrow(/binding 'src' of 4096 bytes at byte 256 does not fit its buffer of/);
      await expect(probe(e, x, { uniforms: u, src: { offset: '256' as never, size: 16 } })
        .read()).rejects.toThrow(/binding 'src' has offset 256, not a byte count/);
      const [z] = e.record({ op: 'short', inputs: [x], outputs: [[1]], encode: (ctx) =>
        ctx.dispatch({ shader: 'probe4', bindings: { src: { ...ctx.input(0), size: 8 },
          dst: ctx.output(0) }, workgroups: 1 }) });
      await expect(z.read()).rejects.toThrow(new RegExp("short \\(probe4\\.wgsl:main\\): " +
        "binding 'src' is 8 bytes, fewer than the 16 its type needs"));
      // The engine is fine afterwards, and an aligned range within the buffer works.
      const y = probe(e, e.tensor([3, 4], [2]), { uniforms: { n: 2, scale: 2 } });
      expect(Array.from(await y.read())).toEqual([6, 8]);
    });

  it('a written binding that overlaps another of the same buffer, before any GPU work',
    async () => {
      const e = engine();
      const x = e.tensor([1, 2, 3], [3]);
      const [y] = e.record({ op: 'inPlace', inputs: [x], outputs: [[3]], encode: (ctx) =>
        ctx.dispatch({ shader: 'probe', bindings: { src: ctx.input(0), dst: ctx.input(0) },
          uniforms: { n: 3, scale: 2 }, workgroups: 1 }) });
      await expect(y.read()).rejects.toThrow(new RegExp("inPlace \\(probe\\.wgsl:main\\): " +
        "bindings 'src' and 'dst' overlap in one buffer \\(bytes 0 to 12\\) and 'dst' is written"));
      expect(Array.from(await x.read())).toEqual([1, 2, 3]);
    });

  it('a buffer without the binding\'s usage, or mapped, before any GPU work', async () => {
    const e = engine();
    const x = e.tensor([1, 2, 3], [3]);
    // Buffers made outside the engine: without STORAGE usage, and one mapped for reading.
    const plain = e.gpu.device.createBuffer({ size: 256, usage: 8 /* COPY_DST */ });
    const mapped = e.gpu.device.createBuffer({ size: 256, usage: 128 /* STORAGE */,
      mappedAtCreation: true });
    const use = (src: GPUBuffer) => e.record({ op: 'foreign', inputs: [x], outputs: [[3]],
      encode: (ctx) => ctx.dispatch({ shader: 'probe', bindings: { src, dst: ctx.output(0) },
        uniforms: { n: 3, scale: 2 }, workgroups: 1 }) })[0];
    await expect(use(plain).read()).rejects.toThrow(new RegExp("binding 'src' needs an " +
      'unmapped buffer made with STORAGE usage; this one has usage 8 and is unmapped'));
    await expect(use(mapped).read()).rejects.toThrow(/usage 128 and is mapped/);
    expect(Array.from(await x.read())).toEqual([1, 2, 3]);
    plain.destroy();
    mapped.destroy();
  });

  it('shapes that do not broadcast, before any GPU work', () => {
    const e = engine();
    const submits = e.gpu.counters.submits;
    const a = e.tensor(new Float32Array(6), [2, 3]);
    const b = e.tensor(new Float32Array(4), [4]);
    expect(() => ops.add(a, b)).toThrow(OpArgumentError);
    expect(() => ops.add(a, b)).toThrow(/add: shapes \[2, 3\] and \[4\] do not broadcast/);
    expect(e.gpu.counters.submits).toBe(submits);
  });

  it('bad values and shapes of leaves', () => {
    const e = engine();
    expect(() => e.tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2, 2\]/);
    expect(() => e.tensor([], [0])).toThrow(/shape \[0\] must have positive integer/);
    expect(() => ops.scale(e.tensor([1], [1]), NaN)).toThrow(/scale: s must be a finite/);
    expect(() => sum(e.tensor([1, 2], [2]), 3)).toThrow(/axis 3 is out of range/);
  });

  it('a tensor past the binding-size limit is refused, naming size and limit', () => {
    const e = engine();
    const limit = e.limits.maxStorageBufferBindingSize;
    const n = Math.floor(limit / 4) + 1024;
    expect(() => e.zeros([n])).toThrow(new RegExp(`needs ${n * 4} bytes, past .*${limit}`));
  });
});

describe('autodiff', () => {
  it('accumulates gradients where a tensor is used twice', async () => {
    const e = engine();
    const x = e.param([1, 2, 3], [3], 'x');
    // f = sum(x*x + 3x) -> df/dx = 2x + 3
    const f = sum(ops.add(ops.mul(x, x), ops.scale(x, 3)));
    const [g] = grad(f, [x]);
    expect(Array.from(await g!.read())).toEqual([5, 7, 9]);
  });

  it('stops gradient flow through stopGradient and noGrad', async () => {
    const e = engine();
    const x = e.param([1, 2], [2], 'x');
    // f = sum(x * stop(x)) -> df/dx = stop(x) = x
    const f = sum(ops.mul(x, ops.stopGradient(x)));
    const [g] = grad(f, [x]);
    expect(Array.from(await g!.read())).toEqual([1, 2]);
    const y = e.noGrad(() => ops.mul(x, x));
    expect(y.requiresGrad).toBe(false);
    // Tracking could not stay off across an await: async functions are refused.
    expect(() => e.noGrad(async () => ops.mul(x, x))).toThrow(/noGrad: expects a synchronous/);
    expect(e.gradEnabled).toBe(true);
    // Ops recorded synchronously, a promise returned (a read): fine.
    const [v] = await e.noGrad(() => e.run([], [ops.mul(x, x)]));
    expect(Array.from(v)).toEqual([1, 4]);
  });

  it('undoes broadcasting in the gradient', async () => {
    const e = engine();
    const a = e.param([1, 2, 3, 4, 5, 6], [2, 3], 'a');
    const b = e.param([1, 1, 1], [3], 'b');
    const [ga, gb] = grad(sum(ops.mul(a, b)), [a, b]);
    expect(gb!.shape).toEqual([3]);
    expect(Array.from(await gb!.read())).toEqual([5, 7, 9]);
    expect(Array.from(await ga!.read())).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('records no gradient nobody asked for, so nothing is left pending', async () => {
    const e = engine();
    const before = e.pendingNodes.length;
    const a = e.param([1, 2, 3, 4, 5, 6], [2, 3], 'a');
    const b = e.param([1, 2, 3], [3], 'b');
    // b also requires a gradient, but only a's is asked for: the broadcast-undoing
    // reduction for b must not be recorded (it would never run and pin its inputs).
    const [ga] = grad(sum(ops.mul(a, b)), [a]);
    expect(Array.from(await ga!.read())).toEqual([1, 2, 3, 1, 2, 3]);
    expect(e.pendingNodes.length).toBe(before);
  });

  it('an op without a backward rule is a loud error naming it', () => {
    const e = engine();
    const x = e.param([1], [1], 'x');
    const [y] = e.record({ op: 'mystery', inputs: [x], outputs: [[1]], encode: () => {} });
    expect(() => grad(y, [x])).toThrow(NotSupportedError);
    expect(() => grad(y, [x])).toThrow(/op 'mystery' has no backward rule/);
  });

  it('a non-scalar output needs a seed; an unrelated tensor needs allowUnused', () => {
    const e = engine();
    const x = e.param([1, 2], [2], 'x');
    const z = e.param([1], [1], 'z');
    expect(() => grad(ops.scale(x, 2), [x])).toThrow(/is not a scalar; pass a seed/);
    expect(() => grad(sum(x), [z])).toThrow(/does not affect/);
    expect(grad(sum(x), [z], { allowUnused: true })).toEqual([null]);
  });

  it('a wrt tensor that does not require a gradient is named as such, not as unrelated', () => {
    const e = engine();
    const w = e.param([1, 2], [2], 'w');
    const x = e.tensor([3, 4], [2], { name: 'x' });
    // x does affect the loss; it is a constant because it was made without requiresGrad.
    expect(() => grad(sum(ops.mul(x, w)), [w, x]))
      .toThrow(/grad: wrt\[1\] x \[2\] does not require a gradient.*engine\.param/);
    expect(grad(sum(ops.mul(x, w)), [w, x], { allowUnused: true })[1]).toBeNull();
  });

  it('bad arguments are OpArgumentErrors naming the argument, before anything is recorded',
    async () => {
      const e = engine();
      const w = e.param([1, 2], [2], 'w');
      const y = sum(ops.square(w));
      const before = e.pendingNodes.length;
      const call = (...args: unknown[]) => () =>
        (grad as (...a: unknown[]) => unknown)(...args);
      const cases: [() => unknown, RegExp][] = [
        [call(undefined, [w]), /grad: output must be a Tensor, got undefined/],
        [call(y, w), /grad: wrt must be an array of tensors, got w \[2\]/],
        [call(y, [w, undefined]), /grad: wrt\[1\] must be a Tensor, got undefined/],
        [call(y, [w], { seed: [1] }), /grad: seed must be a Tensor, got an array/],
        [call(y, [w], { seeed: 1 }), /grad: unknown option 'seeed' \(it takes seed and/],
        [call(y, [w], null), /grad: options must be an object/],
        [call(y, [w], { allowUnused: 'yes' }), /allowUnused must be a boolean, got string/],
      ];
      for (const [f, re] of cases) {
        expect(f).toThrow(OpArgumentError);
        expect(f).toThrow(re);
      }
      const other = await createEngine();
      try {
        const seed = other.tensor([1], [1]);
        expect(() => grad(y, [w], { seed })).toThrow(/seed leaf#\d+ \[1\] belongs to another/);
        expect(() => grad(y, [other.param([1], [1], 'q')]))
          .toThrow(/wrt\[0\] q \[1\] belongs to another engine/);
      } finally {
        await other.dispose();
      }
      expect(e.pendingNodes.length).toBe(before);
      expect(Array.from(await grad(y, [w])[0]!.read())).toEqual([2, 4]);
    });

  it('a seed of the right size but another shape is refused, naming both shapes', async () => {
    const e = engine();
    const a = e.param([1, 2, 3, 4], [4, 1], 'a');
    const y = ops.scale(a, 2);
    // [1, 4] against [4, 1] would broadcast inside the rule into a wrong gradient.
    expect(() => grad(y, [a], { seed: e.tensor([1, 10, 100, 1000], [1, 4]) }))
      .toThrow(/seed leaf#\d+ \[1, 4\] must have the shape of output scale#\d+ \[4, 1\]/);
    expect(() => grad(y, [a], { seed: e.tensor([1, 10, 100, 1000], [4]) }))
      .toThrow(OpArgumentError);
    const [g] = grad(y, [a], { seed: e.tensor([1, 10, 100, 1000], [4, 1]) });
    expect(Array.from(await g!.read())).toEqual([2, 20, 200, 2000]);
  });

  it('a second derivative through a backward kernel is a loud error naming it', () => {
    const e = engine();
    const p = e.param([0.3, -1.2, 0.7, 2, 0.5, -0.4], [2, 3], 'p');
    const cases: [string, () => Tensor][] = [
      ['l2NormalizeBackward', () => l2Normalize(p)],
      ['batchNormBackward', () => batchNorm(p, e.param([1, 1, 1], [3], 'g'),
        e.param([0, 0, 0], [3], 'b'), { training: true })],
      ['maxGrad', () => max(p, [1])],
      ['globalAvgPoolBackward', () => globalAvgPool(reshape(p, [1, 2, 1, 3]))],
      ['maxPool2dBackward', () => maxPool2d(reshape(p, [1, 1, 2, 3]), { kernel: 2 })],
    ];
    for (const [op, f] of cases) {
      // d/dp of sum(f(p) * f(p)) goes through f's backward kernel; its own gradient has none.
      const y = f();
      const [g] = grad(sum(ops.mul(y, y)), [p]);
      expect(g!.requiresGrad, op).toBe(true);
      expect(() => grad(sum(g!), [p]), op).toThrow(NotSupportedError);
      expect(() => grad(sum(g!), [p]), op).toThrow(new RegExp(`op '${op}' has no backward rule`));
    }
  });
});

describe('second derivatives through the activations', () => {
  // Hessian-vector products H v of f(w) = sum(act(w)^2) (or sum(act(w))), as
  // grad(sum(grad(f)[w] * v), [w]), against float64 closed forms. Tolerance 1e-5 relative:
  // a handful of float32 operations an element, each within 2^-24 relative.
  const w0 = [0.7, -1.3, 0.2, 2.1, -0.4];
  const v0 = [1.5, 0.5, -2, 0.25, 3];
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const cases: [string, (w: Tensor) => Tensor, (w: number, v: number) => number][] = [
    // d/dw 2 relu(w) [w > 0] = 2 [w > 0]
    ['relu(w)^2', (w) => ops.square(ops.relu(w)), (w, v) => (w > 0 ? 2 * v : 0)],
    // leaky'(w)^2 * 2 with slope 0.1
    ['leakyRelu(w)^2', (w) => ops.square(ops.leakyRelu(w, 0.1)),
      (w, v) => 2 * (w > 0 ? 1 : 0.01) * v],
    // tanh'' = -2 t (1 - t^2)
    ['tanh(w)', (w) => ops.tanh(w), (w, v) => -2 * Math.tanh(w) * (1 - Math.tanh(w) ** 2) * v],
    // sigmoid'' = s (1 - s) (1 - 2 s)
    ['sigmoid(w)', (w) => ops.sigmoid(w), (w, v) => sig(w) * (1 - sig(w)) * (1 - 2 * sig(w)) * v],
    // tanh(w)^2: 2 (t'^2 + t t'') = 2 (1 - t^2) (1 - 3 t^2), both inputs of tanhGrad in play
    ['tanh(w)^2', (w) => ops.square(ops.tanh(w)),
      (w, v) => 2 * (1 - Math.tanh(w) ** 2) * (1 - 3 * Math.tanh(w) ** 2) * v],
    // sigmoid(w)^2: 2 (s'^2 + s s'') = 2 s^2 (1 - s) (2 - 3 s), both inputs of sigmoidGrad
    ['sigmoid(w)^2', (w) => ops.square(ops.sigmoid(w)),
      (w, v) => 2 * sig(w) ** 2 * (1 - sig(w)) * (2 - 3 * sig(w)) * v],
  ];
  for (const [name, f, hv] of cases) {
    it(`${name}: H v matches the closed form`, async () => {
      const e = engine();
      const w = e.param(w0, [5], 'w');
      const v = e.tensor(v0, [5]);
      const [g] = grad(sum(f(w)), [w]);
      const [h] = grad(sum(ops.mul(g!, v)), [w]);
      const got = Array.from(await h!.read());
      got.forEach((x, i) => expect(x, `${name} [${i}]`).toBeCloseTo(hv(w0[i], v0[i]), 5));
    });
  }

  it('reluGrad with a broadcast dy: its gradient in dy sums back over the broadcast rows',
    async () => {
      const e = engine();
      const dy = e.param([1, 2, 3], [3], 'dy');
      const x = e.tensor([1, -1, 0, -2, 5, 6], [2, 3]);
      // sum(reluGrad(dy, x) c) in dy: c summed over the rows where x > 0.
      const c = e.tensor([10, 20, 30, 40, 50, 60], [2, 3]);
      const [g] = grad(sum(ops.mul(ops.reluGrad(dy, x), c)), [dy]);
      expect(Array.from(await g!.read())).toEqual([10, 50, 60]);
    });

  it("matmul's fused ReLU: H v of sum(relu(x W)^2) in W is x^T (2 [z > 0] (x V))", async () => {
    const e = engine();
    const x0 = [1, -2, 0.5, 3, 1, -1];  // [3, 2]
    const W0 = [0.4, -0.3, 0.2, 0.5];    // [2, 2]: z = x W has both signs
    const V0 = [1, 2, -1, 0.5];
    const x = e.tensor(x0, [3, 2]);
    const W = e.param(W0, [2, 2], 'W');
    const [gW] = grad(sum(ops.square(matmul(x, W, { relu: true }))), [W]);
    const [h] = grad(sum(ops.mul(gW!, e.tensor(V0, [2, 2]))), [W]);
    const at = (m: number[], cols: number, i: number, j: number) => m[i * cols + j];
    const want = [0, 0, 0, 0];
    const signs = new Set<boolean>();
    for (let r = 0; r < 3; r++) {
      for (let j = 0; j < 2; j++) {
        const z = at(x0, 2, r, 0) * at(W0, 2, 0, j) + at(x0, 2, r, 1) * at(W0, 2, 1, j);
        const xv = at(x0, 2, r, 0) * at(V0, 2, 0, j) + at(x0, 2, r, 1) * at(V0, 2, 1, j);
        signs.add(z > 0);
        for (let i = 0; i < 2; i++) want[i * 2 + j] += at(x0, 2, r, i) * (z > 0 ? 2 * xv : 0);
      }
    }
    const got = Array.from(await h!.read());
    got.forEach((g, i) => expect(g, `[${i}]`).toBeCloseTo(want[i], 5));
    expect(signs.size, 'z has units on both sides of the ReLU').toBe(2);
  });
});

describe('disposal', () => {
  it('a disposed engine refuses work with a clear error', async () => {
    const e = await createEngine();
    const x = e.tensor([1], [1]);
    const y = ops.neg(x);
    await e.dispose();
    // Recording, writing and running are each refused, naming what was asked.
    expect(() => ops.neg(x)).toThrow(/^neg: the engine was disposed$/);
    expect(() => x.write([2])).toThrow(/^write to leaf#\d+ \[1\]: the engine was disposed$/);
    expect(() => e.tensor([1], [1])).toThrow(/disposed/);
    await expect(y.read()).rejects.toThrow(/disposed/);
    for (const f of [() => ops.neg(x), () => x.write([2])]) {
      expect(f).toThrow(DeviceLostError);
    }
  });
});

describe('misuse is refused before GPU work, and the engine stays usable', () => {
  it('a tensor of another engine cannot be run or read here', async () => {
    const e = engine();
    const other = await createEngine();
    try {
      const t = other.tensor([7, 8], [2]);
      expect(() => e.read(t)).toThrow(/run: .* belongs to another engine/);
      expect(() => e.run([], [ops.neg(t)])).toThrow(/belongs to another engine/);
      expect(Array.from(await ops.neg(e.tensor([1, 2], [2])).read())).toEqual([-1, -2]);
    } finally {
      await other.dispose();
    }
  });

  it('assign of a tensor to itself changes nothing; assignRows wants an integer row', async () => {
    const e = engine();
    const t = e.tensor([1, 2], [2]);
    assign(t, t);
    expect(Array.from(await t.read())).toEqual([1, 2]);
    const q = e.zeros([4, 2]);
    expect(() => assignRows(q, 0.5, e.tensor([5, 6], [1, 2]))).toThrow(/at row 0\.5 does not fit/);
    expect(() => assignRows(q, NaN, e.tensor([5, 6], [1, 2]))).toThrow(/assignRows/);
  });

  it('a tensor a pending in-place update uses cannot be disposed', async () => {
    const e = engine();
    const p = e.tensor([1, 2], [2]);
    const v = e.tensor([3, 4], [2]);
    assign(p, v);
    expect(() => v.dispose()).toThrow(/still used by the pending op assign#\d+/);
    expect(() => p.dispose()).toThrow(/still used by the pending op assign/);
    await e.run();
    v.dispose();
    expect(Array.from(await p.read())).toEqual([3, 4]);
    // An in-place write into a disposed leaf is refused when recorded.
    expect(() => assign(v, p)).toThrow(/in-place target 0 .* must be a leaf .*disposed/);
  });

  it('reading one output of a node keeps the others (top-k values, then indices)', async () => {
    const e = engine();
    const r = topk(e.tensor([3, 1, 2, 5], [1, 4]), 2);
    expect(Array.from(await r.values.read())).toEqual([5, 3]);
    expect(Array.from(await r.indices.read())).toEqual([3, 0]);
  });

  it('bad leaf arguments are OpArgumentErrors, not raw TypeErrors', () => {
    const e = engine();
    expect(() => e.tensor([1, 2, 3], 3 as unknown as number[])).toThrow(OpArgumentError);
    expect(() => e.tensor(null as unknown as number[], [3])).toThrow(/data must be an array/);
    expect(() => e.zeros([-1])).toThrow(/zeros: shape \[-1\] must have positive/);
    expect(() => e.zeros(['3'] as unknown as number[])).toThrow(/\["3"\] must have positive/);
    // Float32Array.from would make NaN of these without a word.
    expect(() => e.tensor(['a', 'b'] as unknown as number[], [2]))
      .toThrow(/tensor: data\[0\] is string "a", not a number/);
    expect(() => e.tensor([1, undefined, 3] as unknown as number[], [3]))
      .toThrow(/data\[1\] is undefined/);
    const t = e.tensor([1, 2], [2]);
    expect(() => t.write([1, null] as unknown as number[])).toThrow(/write to .*data\[1\] is null/);
    // Values JSON cannot print, and BigInt arrays, are refused the same way.
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(() => e.tensor([1n, 2n] as unknown as number[], [2]))
      .toThrow(/data\[0\] is bigint, not a number/);
    expect(() => e.tensor([loop, 1] as unknown as number[], [2]))
      .toThrow(/data\[0\] is object, not a number/);
    expect(() => e.tensor(new BigInt64Array(2) as unknown as number[], [2]))
      .toThrow(OpArgumentError);
  });

  it('a read submitted before dispose is delivered, and a new engine works after', async () => {
    const e = await createEngine();
    const p = ops.neg(e.tensor([1, 2], [2])).read();
    await e.dispose();
    expect(Array.from(await p)).toEqual([-1, -2]);
    const e2 = await createEngine();
    const big = e2.zeros([256, 256]);
    expect((await matmul(big, big).read()).length).toBe(65536);
    await e2.dispose();
  });

  it('engines made and freed one after another in one process all work', async () => {
    // Each used to build and drop a Dawn instance of its own; the process then died in Dawn
    // now and then a few engines later (about half the runs of a five-engine test).
    for (let k = 0; k < 6; k++) {
      const e = await createEngine();
      const a = e.tensor(new Float32Array(96 * 96).fill(1), [96, 96]);
      expect((await matmul(a, a).read())[0]).toBe(96);
      await e.dispose();
    }
  });
});
