// Your own WGSL kernel as an op of the engine, checked against the float64 references:
// the shader is handed to createEngine by name, the op records one dispatch, and compare()
// judges its output with a named tolerance tier. Run: npx tsx examples/node/custom-kernel.ts
import { createEngine, type Tensor } from '../../src/node.js';
import { add, compare, mulberry32, randn, roundToF32, scale, TOL }
  from '../../src/reference/index.js';

// out = alpha x + y. Bindings are matched by name; the uniform struct's members are set by
// name through `uniforms`; `override` constants are set per dispatch through `overrides`.
const SAXPY = /* wgsl */ `
override WG: u32 = 64;
struct Params { alpha: f32, n: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= params.n) { return; }
  out[gid.x] = params.alpha * x[gid.x] + y[gid.x];
}`;

const engine = await createEngine({ shaders: { saxpy: SAXPY } });
/** Invocations per workgroup: the shader's WG and the dispatch arithmetic, from one value. */
const WG = 64;

/** alpha x + y as an op: recorded now, run with the rest of the graph in one submission. */
function saxpy(alpha: number, x: Tensor, y: Tensor): Tensor {
  const [out] = engine.record({
    op: 'saxpy', inputs: [x, y], outputs: [x.shape],
    encode: (ctx) => ctx.dispatch({
      shader: 'saxpy', overrides: { WG },
      bindings: { x: ctx.input(0), y: ctx.input(1), out: ctx.output(0) },
      uniforms: { alpha, n: x.size }, workgroups: Math.ceil(x.size / WG),
    }),
  });
  return out;
}

// Inputs rounded to float32 first, so that both sides see the same numbers and the
// tolerance covers the kernel's arithmetic alone (what the TOL tiers assume).
const xs = roundToF32(randn([3, 1000], mulberry32(1)));
const ys = roundToF32(randn([3, 1000], mulberry32(2)));
const expected = add(scale(xs, 2.5), ys);
const got = await saxpy(2.5, engine.tensor(xs.data, xs.shape), engine.tensor(ys.data, ys.shape))
  .read();
const r = compare(got, expected.data, { ...TOL.f32Elementwise, name: 'saxpy',
  shape: expected.shape });
console.log(r.message);
await engine.dispose();
if (!r.ok) process.exitCode = 1;
