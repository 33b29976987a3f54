// The benchmark harness: its arithmetic (medians, ratio direction, best peer, kernel-line
// totals) on made-up figures, and one real 1-round run of a small case checked for its JSON.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildCases, filterCases } from '../../tools/bench/cases.js';
import type { ShapesReply } from '../../tools/bench/protocol.js';
import { aggregateKernels, formatProfile, formatTable, makeRow, median, ratioOf, type Measured }
  from '../../tools/bench/report.js';

const run = promisify(execFile);

const measured = (value: number | null): Measured => ({ value, ms: value, samples: [],
  cpuMs: null, inner: 1, firstMs: null });

const SHAPES: ShapesReply = {
  convs: [
    { x: [128, 1, 28, 28], w: [8, 1, 3, 3], stride: 1, padding: 1, needDx: false, count: 1,
      where: 'conv1' },
    { x: [256, 8, 14, 14], w: [16, 8, 1, 1], stride: 2, padding: 0, needDx: true, count: 1,
      where: 'layer2.0.downsample.0' },
  ],
  batchnorms: [{ x: [128, 8, 28, 28], relu: true, count: 2 },
    { x: [128, 8, 28, 28], relu: false, count: 1 }],
  softmaxCe: [{ rows: 384, cols: 100, temperature: 0.1 }],
  sinkhorn: [{ rows: 64, cols: 100, epsilon: 0.05, iterations: 3, count: 2 }],
};

describe('bench arithmetic', () => {
  it('takes the median of odd and even counts, null for none', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNull();
  });

  it('reads ratios as "times better": peer/ours for times, ours/peer for rates', () => {
    expect(ratioOf('ms', 2, 8)).toBe(4);
    expect(ratioOf('GFLOP/s', 6, 3)).toBe(2);
    expect(ratioOf('images/s', 10, 100)).toBe(0.1);
    expect(ratioOf('ms', null, 3)).toBeNull();
  });

  it('compares with the better peer and checks the target', () => {
    const times = makeRow({ name: 'c', unit: 'ms', target: 2,
      detail: { ours: measured(10), tfjs: measured(50), jax: measured(15) } }, ['tfjs', 'jax']);
    expect(times).toMatchObject({ peer: 'jax', peerValue: 15, ratio: 1.5, meets: false,
      peers: { tfjs: 50, jax: 15 } });
    const rates = makeRow({ name: 'm', unit: 'GFLOP/s', target: 2,
      detail: { ours: measured(9), tfjs: measured(3), jax: measured(null) } }, ['tfjs', 'jax']);
    expect(rates).toMatchObject({ peer: 'tfjs', ratio: 3, meets: true,
      peers: { tfjs: 3, jax: null } });
    expect(formatTable([times, rates], ['ours', 'tfjs', 'jax'])).toMatch(/1\.50x\s+>=2x MISS/);
  });

  it('sums profiled dispatches by the op that recorded them, largest first', () => {
    const k = aggregateKernels([{ label: 'add', ms: 1 }, { label: 'conv2d', ms: 2.5 },
      { label: 'conv2d', ms: 1.5 }]);
    expect(k).toEqual([{ kernel: 'conv2d', calls: 2, ms: 4, share: 0.8 },
      { kernel: 'add', calls: 1, ms: 1, share: 0.2 }]);
    expect(formatProfile(k, 9, 'device'))
      .toMatch(/device timestamps[^]*conv2d\s+2\s+4\.0\s+80\.0%/);
    expect(formatProfile(k, null, 'wall')).toMatch(/awaited alone; 5\.00 ms of kernels in all\):/);
  });

  it('builds a case per conv shape and pass, one per batch-norm shape, and filters by name',
    () => {
      const cases = buildCases(SHAPES, { images: 2048, data: '' });
      const names = cases.map((c) => c.name);
      expect(names).toContain('conv 128x1x28x28>8 3x3/s1p1 fwd+dw');
      expect(names).toContain('conv 256x8x14x14>16 1x1/s2p0 fwd+bwd');
      expect(names.filter((n) => n.startsWith('batchnorm'))).toEqual(
        ['batchnorm 128x8x28x28 +relu fwd+bwd']);
      expect(cases.find((c) => c.name.startsWith('batchnorm'))?.perStep).toBe(3);
      expect(filterCases(cases, 'matmul, sinkhorn').map((c) => c.name)).toEqual(
        ['matmul 512^3', 'matmul 1024^3', 'sinkhorn 64x100 3 it']);
    });
});

describe('npm run bench', () => {
  it('writes the table and the JSON rows of a 1-round case', async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), 'swavgpu-bench-'));
    const file = join(dir, 'bench.json');
    try {
      const t0 = performance.now();
      const { stdout } = await run('npx', ['tsx', 'tools/bench.ts', '--only', 'sinkhorn',
        '--reps', '1', '--warmup', '0', '--json', file], { timeout: 110_000 });
      expect(stdout).toMatch(/^case\s+unit\s+ours\s+tfjs\s+jax/);
      const out = JSON.parse(readFileSync(file, 'utf8'));
      expect(out.meta).toMatchObject({ reps: 1, warmup: 0, only: 'sinkhorn' });
      expect(out.rows).toHaveLength(1);
      const row = out.rows[0];
      expect(row).toMatchObject({ name: 'sinkhorn 64x100 3 it', unit: 'ms' });
      expect(row.ours).toBeGreaterThan(0);
      expect(Object.keys(row.peers).sort()).toEqual(['jax', 'tfjs']);
      for (const k of ['peer', 'peerValue', 'ratio']) expect(row).toHaveProperty(k);
      expect(row.detail.ours.samples).toHaveLength(1);
      ctx.annotate(`bench run in ${((performance.now() - t0) / 1000).toFixed(1)} s: ours ` +
        `${row.ours.toFixed(2)} ms, tfjs ${row.peers.tfjs}, jax ${row.peers.jax}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the filter when no case matches', async () => {
    const r = await run('npx', ['tsx', 'tools/bench.ts', '--only', 'no-such-case'],
      { timeout: 60_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(r).toMatchObject({ code: 1 });
    expect((r as { stderr: string }).stderr).toMatch(/no case matches --only 'no-such-case'/);
  });
});
