// The tuning cache (src/tune-node.ts): choices timed once are written per adapter and read
// back by the next tuning engine; a corrupt file or an entry that is no candidate is ignored.
// One engine throughout (applyTuning is what createEngine({ tune: true }) runs): creating and
// destroying several Dawn devices in one test process now and then crashed it at exit.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tuneConvolutions } from '../../src/node.js';
import { applyTuning, TUNER_VERSION, tuningCachePath } from '../../src/tune-node.js';
import { convTuneKey, CONV_CPU_TILING } from '../../src/ops/conv.js';
import { CONV_CANDIDATES, MATMUL_CANDIDATES } from '../../src/ops/tune.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();
const shape = { x: [2, 3, 6, 7], w: [5, 3, 3, 3], padding: 1 };
const key = convTuneKey('forward', shape.x, shape.w, shape);
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
const readCache = () => JSON.parse(readFileSync(file(), 'utf8'));

/** The shared engine tuned afresh (matmul and `shape`) into the cache, and the cache. */
async function tunedAfresh() {
  const e = engine();
  e.gpu.tuned.clear();
  await applyTuning(e);
  await tuneConvolutions(e, [shape]);
  return { e, adapter: e.gpu.adapterInfo, cache: readCache() };
}

describe('tuning cache', () => {
  it('writes the choices per adapter; a later tuning engine reads them instead of timing',
    async () => {
      const e = engine();
      const adapter = e.gpu.adapterInfo;
      expect(tuningCachePath()).toBe(file());
      expect(e.gpu.autotune).toBe(false);
      await applyTuning(e);
      expect(e.gpu.autotune).toBe(true);
      const { timed, savedTo } = await tuneConvolutions(e, [shape]);
      expect(timed).toHaveLength(3);
      expect(savedTo).toBe(file());
      const cache = readCache();
      expect(Object.keys(cache)).toEqual([adapter]);
      expect(cache[adapter].matmul).toEqual(e.gpu.tuned.get('matmul'));
      for (const r of timed) expect(cache[adapter].conv2d[r.key]).toEqual(r.choice);
      // As a new engine would start: nothing tuned; the cache fills it without timing.
      e.gpu.tuned.clear();
      await applyTuning(e);
      expect(e.gpu.tuned.get(key)).toEqual(cache[adapter].conv2d[key]);
      expect(e.gpu.tuned.get('matmul')).toEqual(cache[adapter].matmul);
      expect(await tuneConvolutions(e, [shape])).toEqual({ timed: [], savedTo: null });
    });

  it('ignores a corrupt file and entries that are no candidate', async () => {
    const e = engine();
    const adapter = e.gpu.adapterInfo;
    mkdirSync(join(dir, 'swavgpu'), { recursive: true });
    writeFileSync(file(), '{ not json');
    e.gpu.tuned.clear();
    await applyTuning(e);
    // Rewritten whole, with a fresh matmul choice and nothing else.
    const cache = readCache();
    expect(cache[adapter].matmul).toEqual(e.gpu.tuned.get('matmul'));
    expect(cache[adapter].conv2d).toBeUndefined();
    cache[adapter].conv2d = { [key]: { ...CONV_CPU_TILING, TM: 99 },
      [`${key} other`]: { ...CONV_CPU_TILING, forward: 'bogus' } };
    cache[adapter].conv2dCandidates = JSON.stringify(CONV_CANDIDATES);
    writeFileSync(file(), JSON.stringify(cache));
    e.gpu.tuned.clear();
    await applyTuning(e);
    expect([...e.gpu.tuned.keys()]).toEqual(['matmul']);
  });

  it('times again the choices made from another candidate set, and drops them', async () => {
    const { e, adapter, cache } = await tunedAfresh();
    expect(cache[adapter].conv2dCandidates).toBe(JSON.stringify(CONV_CANDIDATES));
    // As a cache written before a candidate was added: same choices, another set.
    cache[adapter].conv2dCandidates = '[]';
    cache[adapter].conv2d[`${key} gone`] = CONV_CANDIDATES.forward[0];
    writeFileSync(file(), JSON.stringify(cache));
    e.gpu.tuned.clear();
    await applyTuning(e);
    expect([...e.gpu.tuned.keys()]).toEqual(['matmul']);
    const { timed } = await tuneConvolutions(e, [shape]);
    expect(timed).toHaveLength(3);
    // Bad shapes are refused under the name the caller used, before any timing.
    await expect(tuneConvolutions(e, [{ x: [2, 5, 5], w: [3, 2, 3, 3] }]))
      .rejects.toThrow('tuneConvolutions: shapes[0]: x [2, 5, 5] must be [N, C, H, W] (rank 4)');
    const after = readCache()[adapter];
    expect(after.conv2dCandidates).toBe(JSON.stringify(CONV_CANDIDATES));
    expect(Object.keys(after.conv2d)).not.toContain(`${key} gone`);
    expect(Object.keys(after.conv2d)).toHaveLength(3);
  });

  it('times again, and drops, the choices of another tuner version', async () => {
    const { e, adapter, cache } = await tunedAfresh();
    expect(cache[adapter].tuner).toBe(TUNER_VERSION);
    // As a cache written by the tuner before: a matmul choice no timing here would pick
    // (the last candidate, 5x slower on lavapipe) is not taken.
    const stale = MATMUL_CANDIDATES[MATMUL_CANDIDATES.length - 1];
    writeFileSync(file(), JSON.stringify({ [adapter]: { ...cache[adapter], tuner: 1,
      matmul: stale, conv2d: { ...cache[adapter].conv2d, [`${key} old`]: CONV_CPU_TILING } } }));
    e.gpu.tuned.clear();
    await applyTuning(e);
    expect([...e.gpu.tuned.keys()]).toEqual(['matmul']);
    const after = readCache()[adapter];
    expect(after.tuner).toBe(TUNER_VERSION);
    expect(after.matmul).toEqual(e.gpu.tuned.get('matmul'));
    // The old conv2d entries went with the old version.
    expect(after.conv2d).toBeUndefined();
    const { timed } = await tuneConvolutions(e, [shape]);
    expect(timed).toHaveLength(3);
    expect(Object.keys(readCache()[adapter].conv2d)).toHaveLength(3);
  });

  it('replaces a file of valid JSON that is no object of adapters', async () => {
    const e = engine();
    const adapter = e.gpu.adapterInfo;
    for (const text of ['null', '0', '"x"', 'true', '[]', `{"${adapter}": 7}`]) {
      writeFileSync(file(), text);
      e.gpu.tuned.clear();
      await applyTuning(e);
      expect(readCache()[adapter].matmul, text).toEqual(e.gpu.tuned.get('matmul'));
    }
    // A conv2d entry that is no object is dropped when the file is next written.
    const cache = readCache();
    cache[adapter].conv2d = 'abc';
    writeFileSync(file(), JSON.stringify(cache));
    e.gpu.tuned.clear();
    await applyTuning(e);
    const { savedTo } = await tuneConvolutions(e, [shape]);
    expect(savedTo).toBe(file());
    expect(Object.keys(readCache()[adapter].conv2d).sort()).toEqual(
      ['backwardInput', 'backwardWeight', 'forward'].map((p) =>
        convTuneKey(p as 'forward', shape.x, shape.w, shape)).sort());
  });

  it('says when the choices could not be written (the cache path is a folder)', async () => {
    const e = engine();
    rmSync(join(dir, 'swavgpu'), { recursive: true, force: true });
    mkdirSync(file(), { recursive: true });
    e.gpu.tuned.clear();
    await applyTuning(e);
    const other = { x: [1, 2, 5, 5], w: [3, 2, 1, 1] };
    const { timed, savedTo } = await tuneConvolutions(e, [other]);
    expect(timed).toHaveLength(3);
    expect(savedTo).toBeNull();
    rmSync(file(), { recursive: true, force: true });
  });
});
