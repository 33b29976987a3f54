// Engine.profile: every dispatch of the runs a function makes, timed by the device's own
// timestamps (one submission per run still) or, without timestamp queries, each dispatch
// run alone; the values computed are the same either way.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { createEngine, setDebug, type Engine, type Tensor } from '../../src/node.js';
import { withPreciseTimestamps } from '../../src/node.js';
import { addScalar, relu, setElementwiseTiling } from '../../src/ops/elementwise.js';
import { conv2d } from '../../src/ops/conv.js';
import { matmul } from '../../src/ops/matmul.js';
import { broadcastTo, sum } from '../../src/ops/reduce.js';
import { dispatchedEntries, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

function seeded(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/**
 * conv2d -> relu -> sum over a 2x3x17x17 input: five dispatches in the first run (conv's
 * weight pack among them), four in the later ones (the leaf's packed weights are kept).
 */
function chain(e: Engine): { x: Tensor; w: Tensor; build: () => Tensor[] } {
  const x = e.tensor(seeded(2 * 3 * 17 * 17, 1), [2, 3, 17, 17]);
  const w = e.tensor(seeded(5 * 3 * 3 * 3, 2), [5, 3, 3, 3]);
  return { x, w, build: () => [sum(relu(conv2d(x, w, null, { padding: 1 })))] };
}

/** Counts the query sets the device creates while `fn` runs. */
async function querySetsMade(e: Engine, fn: () => Promise<unknown>): Promise<number> {
  const device = e.gpu.device;
  const spy = vi.spyOn(device, 'createQuerySet');
  try {
    await fn();
    return spy.mock.calls.length;
  } finally {
    spy.mockRestore();
  }
}

afterEach(() => setDebug(0));

describe('Engine.profile with timestamp queries', () => {
  it('times each dispatch in order, in one submission, and changes no value', async () => {
    const e = engine();
    // lavapipe, the project's adapter, has timestamp queries: the device path is the one run.
    expect(e.gpu.timestamps).toBe(true);
    const { x, w, build } = chain(e);
    const [plain] = await e.run([], build());
    const entries = await dispatchedEntries(e, build, (s) => `${s.shader}:${s.entry ?? 'main'}`);
    const submits0 = e.gpu.counters.submits;
    const t0 = performance.now();
    const p = await e.profile(async () => (await e.run([], build()))[0]);
    const wallMs = performance.now() - t0;
    expect(e.gpu.counters.submits - submits0).toBe(1);
    expect(p.source).toBe('device');
    expect(Array.from(p.result)).toEqual(Array.from(plain));
    expect(p.kernels.map((k) => k.kernel.replace(/\{.*\}$/, ''))).toEqual(entries);
    expect(p.kernels.map((k) => k.label)).toEqual(['conv2d', 'relu', 'sum', 'sum']);
    for (const k of p.kernels) {
      expect(Number.isFinite(k.ms) && k.ms >= 0).toBe(true);
      expect(k.workgroups).toBeGreaterThan(0);
    }
    expect(p.kernels.reduce((a, k) => a + k.ms, 0)).toBeLessThanOrEqual(wallMs);
    x.dispose();
    w.dispose();
  });

  it('a large kernel takes longer than a tiny one, at sub-quantum resolution', async () => {
    const e = engine();
    const a = e.tensor(seeded(384 * 384, 3), [384, 384]);
    const b = e.tensor(seeded(4, 4), [4]);
    const p = await e.profile(() => e.run([], [matmul(a, a), addScalar(b, 1)]));
    const [big, tiny] = p.kernels;
    expect(big.label).toBe('matmul');
    expect(tiny.label).toBe('addScalar');
    expect(big.ms).toBeGreaterThan(tiny.ms);
    // Dawn rounds timestamps down to 65.536 us unless timestamp_quantization is disabled,
    // which the Node engine does: a 384^3 matmul's time is no whole number of such quanta.
    expect((big.ms * 1e6) % 65536).not.toBe(0);
    a.dispose();
    b.dispose();
  });

  it('past one query set: 2 100 dispatches in one run, each timed', async () => {
    const e = engine();
    const x = e.tensor([1, 2, 3], [3]);
    const p = await e.profile(async () => {
      let y = x;
      for (let i = 0; i < 2100; i++) y = addScalar(y, 1);
      return (await e.run([], [y]))[0];
    });
    expect(Array.from(p.result)).toEqual([2101, 2102, 2103]);
    expect(p.kernels).toHaveLength(2100);
    expect(p.kernels.every((k) => k.label === 'addScalar' && Number.isFinite(k.ms) &&
      k.ms >= 0)).toBe(true);
    x.dispose();
  });

  it('profiles runs the function did not await, and nothing outside it', async () => {
    const e = engine();
    const { x, w, build } = chain(e);
    const p = await e.profile(() => {
      void e.run(build());
    });
    expect(p.kernels).toHaveLength(5);
    expect(await querySetsMade(e, () => e.run([], build()))).toBe(0);
    expect(await querySetsMade(e, () => e.profile(() => e.run([], build())))).toBe(1);
    x.dispose();
    w.dispose();
  });

  it('an error in the function rejects the profile and ends it', async () => {
    const e = engine();
    const { x, w, build } = chain(e);
    await expect(e.profile(async () => {
      await e.run(build());
      throw new Error('user code failed');
    })).rejects.toThrow('user code failed');
    expect(await querySetsMade(e, () => e.run([], build()))).toBe(0);
    x.dispose();
    w.dispose();
  });

  it('SWAVGPU_DEBUG=3 prints each dispatch with its device time', async () => {
    const e = engine();
    const { x, w, build } = chain(e);
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((m: string) => {
      lines.push(m);
    });
    try {
      setDebug(3, 'relu');
      await e.run([], build());
      await e.sync();
      await new Promise((r) => setTimeout(r, 10));
    } finally {
      spy.mockRestore();
    }
    // Level 3 also prints the levels below (the run's line); the filter keeps relu's alone.
    const timed = lines.filter((l) => / ms \(/.test(l));
    expect(timed).toHaveLength(1);
    expect(timed[0]).toMatch(/^\[swavgpu\] relu: \d+\.\d{3} ms \(device\)$/);
    x.dispose();
    w.dispose();
  });
});

describe('Engine.profile and failures', () => {
  it('reports workgroups as asked, before folding past 65 535', async () => {
    const e = engine();
    const x = e.tensor([1], [1]);
    setElementwiseTiling(e, { WG: 1, VPT: 1 });
    try {
      const p = await e.profile(() => e.run([], [broadcastTo(x, [65_537])]));
      expect(p.kernels.map((k) => k.workgroups)).toEqual([65_537]);
    } finally {
      setElementwiseTiling(e, null);
    }
  });

  it('a device lost under a profile whose function throws leaves nothing unhandled',
    async () => {
      const e = await createEngine();
      const unhandled: unknown[] = [];
      const onUnhandled = (r: unknown) => unhandled.push(r);
      process.on('unhandledRejection', onUnhandled);
      try {
        const { build } = chain(e);
        await expect(e.profile(async () => {
          const run = e.run([], build());
          await e.flush();
          e.gpu.device.destroy();
          await run.catch(() => undefined);
          throw new Error('user code failed');
        })).rejects.toThrow('user code failed');
        await new Promise((r) => setTimeout(r, 50));
        expect(unhandled).toEqual([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
        await e.dispose();
      }
    });
});

describe('Engine.profile without timestamp queries', () => {
  it('runs each dispatch alone and reports wall times; the values are the same', async () => {
    const e = await createEngine();
    try {
      Object.defineProperty(e.gpu, 'timestamps', { value: false });
      const { build } = chain(e);
      const [plain] = await e.run([], build());
      const submits0 = e.gpu.counters.submits;
      const p = await e.profile(async () => (await e.run([], build()))[0]);
      expect(p.source).toBe('wall');
      // Each dispatch submitted alone, then the run's remainder (its readback copy).
      expect(e.gpu.counters.submits - submits0).toBe(5);
      expect(Array.from(p.result)).toEqual(Array.from(plain));
      expect(p.kernels.map((k) => k.label)).toEqual(['conv2d', 'relu', 'sum', 'sum']);
      expect(p.kernels.every((k) => k.ms > 0)).toBe(true);
    } finally {
      await e.dispose();
    }
  });
});

describe('withPreciseTimestamps', () => {
  it('adds timestamp_quantization to the disabled Dawn features, once', () => {
    const q = 'disable-dawn-features=timestamp_quantization';
    expect(withPreciseTimestamps([])).toEqual([q]);
    expect(withPreciseTimestamps(['enable-dawn-features=x'])).toEqual(
      ['enable-dawn-features=x', q]);
    expect(withPreciseTimestamps(['disable-dawn-features=a,b'])).toEqual(
      ['disable-dawn-features=a,b,timestamp_quantization']);
    expect(withPreciseTimestamps(['disable-dawn-features='])).toEqual([q]);
    expect(withPreciseTimestamps([q])).toEqual([q]);
    // Dawn honours the last of several entries; flags that name it themselves stay.
    expect(withPreciseTimestamps(['disable-dawn-features=a', 'disable-dawn-features=b']))
      .toEqual(['disable-dawn-features=a', 'disable-dawn-features=b,timestamp_quantization']);
    expect(withPreciseTimestamps(['enable-dawn-features=timestamp_quantization']))
      .toEqual(['enable-dawn-features=timestamp_quantization']);
  });
});
