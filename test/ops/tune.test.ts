// Per-adapter tiling by timing: every candidate is timed, the fastest becomes the default,
// and later products use it.

import { describe, it, expect } from 'vitest';
import { matmul } from '../../src/ops/matmul.js';
import { convCandidates, MATMUL_CANDIDATES, tuneConv2d, tuneMatmul }
  from '../../src/ops/tune.js';
import { conv2d, convTuneKey, CONV_CPU_TILING, type ConvPass } from '../../src/ops/conv.js';
import { tuneConvolutions } from '../../src/tune-node.js';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

/** The error `p` rejects with: the ops layer's OpArgumentError, its message holding `text`. */
async function refused(p: Promise<unknown>, text: string): Promise<void> {
  const err = await p.then(() => 'resolved', (e: unknown) => e);
  expect(err).toBeInstanceOf(OpArgumentError);
  expect((err as Error).message).toContain(text);
}

describe('tuneMatmul', () => {
  it('times every candidate and makes the fastest the default', async () => {
    const e = engine();
    const { choice, ms } = await tuneMatmul(e, { size: 96, reps: 1 });
    expect(ms).toHaveLength(MATMUL_CANDIDATES.length);
    expect(ms.every((m) => m > 0 && Number.isFinite(m))).toBe(true);
    expect(choice).toBe(MATMUL_CANDIDATES[ms.indexOf(Math.min(...ms))]);
    expect(e.gpu.tuned.get('matmul')).toBe(choice);
    const a = e.tensor([1, 2, 3, 4], [2, 2]);
    const y = matmul(a, a);
    expect(y.node!.attrs.tiling).toBe(choice);
    // [[1,2],[3,4]]^2 = [[7,10],[15,22]] whichever tiling won.
    expect(Array.from(await y.read())).toEqual([7, 10, 15, 22]);
  });

  it('refuses rounds or sizes that are no positive integer, choosing nothing', async () => {
    const e = engine();
    e.gpu.tuned.delete('matmul');
    for (const reps of [0, -1, 1.5, Number.NaN]) {
      await refused(tuneMatmul(e, { reps }),
        `tuneMatmul: reps must be an integer >= 1, got ${reps}`);
      await refused(tuneConv2d(e, [{ x: [1, 1, 4, 4], w: [2, 1, 3, 3] }], { reps }),
        `tuneConv2d: reps must be an integer >= 1, got ${reps}`);
    }
    await refused(tuneMatmul(e, { size: 0 }), 'tuneMatmul: size must be a positive integer, got 0');
    await refused(tuneMatmul(e, { size: '64' as never }),
      'tuneMatmul: size must be a positive integer, got "64"');
    await refused(tuneMatmul(e, { rep: 3 } as never),
      'tuneMatmul: unknown option "rep" (did you mean "reps"?)');
    await refused(tuneConv2d(e, [{ x: [1, 1, 4, 4], w: [2, 1, 3, 3] }], 3 as never),
      'tuneConv2d: options must be one object, as in tuneConv2d(engine, shapes, { reps })');
    expect(e.gpu.tuned.has('matmul')).toBe(false);
    expect([...e.gpu.tuned.keys()].some((k) => k.includes('x1x1x4x4'))).toBe(false);
  });
});

describe('tuneConv2d', () => {
  it('times each pass of each shape, keeps the fastest per shape, and conv2d then uses it',
    async () => {
      const e = engine();
      const shape = { x: [2, 3, 6, 7], w: [5, 3, 3, 3], padding: 1 };
      const first = { x: [2, 1, 6, 6], w: [4, 1, 1, 1], stride: 2, needDx: false };
      const results = await tuneConv2d(e, [shape, first], { reps: 1 });
      // Three passes for the first shape, two for the one whose input needs no gradient.
      expect(results.map((r) => r.key.split(' ')[0])).toEqual(['conv2d.forward',
        'conv2d.backwardWeight', 'conv2d.backwardInput', 'conv2d.forward',
        'conv2d.backwardWeight']);
      for (const r of results) {
        const pass = r.key.slice('conv2d.'.length, r.key.indexOf(' ')) as ConvPass;
        const candidates = convCandidates(e, pass);
        expect(r.ms).toHaveLength(candidates.length);
        expect(r.choice).toBe(candidates[r.ms.indexOf(Math.min(...r.ms))]);
        // lavapipe: the workgroup-memory forward is not timed.
        expect(candidates.some((t) => t.forward === 'shared')).toBe(false);
        expect(e.gpu.tuned.get(r.key)).toBe(r.choice);
      }
      expect(results[0].key).toBe(convTuneKey('forward', shape.x, shape.w, shape));
      // Tuned shapes are not timed again.
      expect(await tuneConv2d(e, [shape], { reps: 1 })).toEqual([]);
      // conv2d follows the tuned choice: 'rows' packs the weights first (two dispatches).
      const dispatches = async (forward: 'rows' | 'generic') => {
        e.gpu.tuned.set(results[0].key, { ...CONV_CPU_TILING, forward });
        const before = e.gpu.counters.dispatches;
        const y = conv2d(e.zeros(shape.x), e.zeros(shape.w), null, { padding: 1 });
        await y.read();
        y.dispose();
        return e.gpu.counters.dispatches - before;
      };
      expect(await dispatches('rows')).toBe(2);
      expect(await dispatches('generic')).toBe(1);
    });
});

describe('tuneConv2d and tuneConvolutions argument checks', () => {
  it('check ranks before channels, and every shape before timing any', async () => {
    const e = engine();
    const before = [...e.gpu.tuned.keys()];
    // A 3-D x was read as NCHW: "x [2, 5, 5] has 5 channels but w expects 2".
    await refused(tuneConvolutions(e, [{ x: [2, 5, 5], w: [3, 2, 3, 3] }]),
      'tuneConvolutions: shapes[0]: x [2, 5, 5] must be [N, C, H, W] (rank 4), got rank 3');
    await refused(tuneConv2d(e, [{ x: [1, 2, 5, 5], w: [3, 2, 3] }]),
      'tuneConv2d: shapes[0]: w [3, 2, 3] must be [O, C, KH, KW] (rank 4), got rank 3');
    // The good first shape is not timed when the second is bad.
    const good = { x: [1, 2, 5, 5], w: [3, 2, 3, 3] };
    await refused(tuneConv2d(e, [good, { x: [1, 4, 5, 5], w: [3, 2, 3, 3] }], { reps: 1 }),
      'tuneConv2d: shapes[1]: x [1, 4, 5, 5] has 4 channels but w [3, 2, 3, 3] expects 2');
    await refused(tuneConv2d(e, [{ ...good, stride: 0 }]),
      'tuneConv2d: shapes[0]: stride must be an integer >= 1 or a pair [h, w] of them, got 0');
    await refused(tuneConv2d(e, [{ x: [1, 2, 0, 5], w: [3, 2, 3, 3] }]),
      'tuneConv2d: shapes[0]: x [1, 2, 0, 5] must hold positive integers');
    await refused(tuneConv2d(e, { x: [1, 2, 5, 5] } as never),
      'tuneConv2d: shapes must be an array of { x, w } shapes');
    expect([...e.gpu.tuned.keys()]).toEqual(before);
  });
});
