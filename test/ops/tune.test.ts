// Per-adapter tiling by timing: every candidate is timed, the fastest becomes the default,
// and later products use it.

import { describe, it, expect } from 'vitest';
import { matmul } from '../../src/ops/matmul.js';
import { MATMUL_CANDIDATES, tuneMatmul } from '../../src/ops/tune.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

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
});
