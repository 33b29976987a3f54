// The tuning cache (src/tune-node.ts): choices timed once are written per adapter and read
// back by the next tuning engine; a corrupt file or an entry that is no candidate is ignored.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, tuneConvolutions } from '../../src/node.js';
import { convTuneKey, CONV_CPU_TILING } from '../../src/ops/conv.js';

const shape = { x: [2, 3, 6, 7], w: [5, 3, 3, 3], padding: 1 };
let dir = '';
let saved: string | undefined;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'swavgpu-tune-'));
  saved = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = dir;
});
afterAll(() => {
  if (saved === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = saved;
  rmSync(dir, { recursive: true, force: true });
});

const file = () => join(dir, 'swavgpu', 'tuning.json');

describe('tuning cache', () => {
  it('writes the choices per adapter and a later engine reads them instead of timing', async () => {
    const a = await createEngine({ tune: true });
    const adapter = a.gpu.adapterInfo;
    try {
      expect(a.gpu.autotune).toBe(true);
      const timed = await tuneConvolutions(a, [shape]);
      expect(timed).toHaveLength(3);
      const cache = JSON.parse(readFileSync(file(), 'utf8'));
      expect(Object.keys(cache)).toEqual([adapter]);
      expect(cache[adapter].matmul).toBeDefined();
      for (const r of timed) expect(cache[adapter].conv2d[r.key]).toEqual(r.choice);
    } finally {
      await a.dispose();
    }
    const b = await createEngine({ tune: true });
    try {
      const key = convTuneKey('forward', shape.x, shape.w, shape);
      expect(b.gpu.tuned.get(key)).toEqual(JSON.parse(readFileSync(file(), 'utf8'))[adapter]
        .conv2d[key]);
      expect(await tuneConvolutions(b, [shape])).toEqual([]);
    } finally {
      await b.dispose();
    }
    // An engine created without tuning neither reads nor times.
    const c = await createEngine();
    try {
      expect(c.gpu.autotune).toBe(false);
      expect(c.gpu.tuned.size).toBe(0);
    } finally {
      await c.dispose();
    }
  });

  it('ignores a corrupt file and entries that are no candidate', async () => {
    writeFileSync(file(), '{ not json');
    const a = await createEngine({ tune: true });
    const adapter = a.gpu.adapterInfo;
    await a.dispose();
    // Rewritten whole, with a fresh matmul choice.
    const cache = JSON.parse(readFileSync(file(), 'utf8'));
    expect(cache[adapter].matmul).toBeDefined();
    const key = convTuneKey('forward', shape.x, shape.w, shape);
    cache[adapter].conv2d = { [key]: { ...CONV_CPU_TILING, TM: 99 } };
    writeFileSync(file(), JSON.stringify(cache));
    const b = await createEngine({ tune: true });
    try {
      expect(b.gpu.tuned.has(key)).toBe(false);
    } finally {
      await b.dispose();
    }
  });
});
