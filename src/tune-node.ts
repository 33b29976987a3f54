// Tuning choices cached on disk per adapter (Node): the matmul tiling, timed when an engine
// is created with `tune: true`, and each convolution shape's tilings, timed where a caller
// names its shapes (the SwAV training loop).

import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Engine } from './graph/engine.js';
import { writeFileAtomic } from './io/checkpoint-node.js';
import type { ConvTiling } from './ops/conv.js';
import type { MatmulTiling } from './ops/matmul.js';
import { CONV_CANDIDATES, MATMUL_CANDIDATES, tuneConv2d, tuneMatmul, type ConvShape,
  type ConvTuneResult } from './ops/tune.js';

/** Where the choices are kept: $XDG_CACHE_HOME/swavgpu/tuning.json, else ~/.cache/... */
export function tuningCachePath(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'swavgpu', 'tuning.json');
}

/** What tuning.json keeps per adapter. */
interface AdapterTuning {
  matmul?: MatmulTiling;
  /** Chosen tilings by convTuneKey (pass and shape). */
  conv2d?: Record<string, ConvTiling>;
}

function readTuningCache(): Record<string, AdapterTuning> {
  try {
    return JSON.parse(readFileSync(tuningCachePath(), 'utf8')) as Record<string, AdapterTuning>;
  } catch {
    // No cache yet, or an unreadable one: time the variants afresh.
    return {};
  }
}

async function updateTuningCache(adapter: string, update: (t: AdapterTuning) => AdapterTuning):
  Promise<void> {
  const path = tuningCachePath();
  // Read again just before writing: another process may have added its own choices.
  const cache = readTuningCache();
  cache[adapter] = update(cache[adapter] ?? {});
  try {
    mkdirSync(dirname(path), { recursive: true });
    await writeFileAtomic(path, new TextEncoder().encode(`${JSON.stringify(cache, null, 2)}\n`));
  } catch {
    // A read-only home is fine: the choice holds for this engine, and is timed again later.
  }
}

/** Loads this adapter's cached choices, or times the matmul variants and caches the result. */
export async function applyTuning(engine: Engine): Promise<void> {
  engine.gpu.autotune = true;
  const key = engine.gpu.adapterInfo;
  const cached = readTuningCache()[key];
  const valid = (t: ConvTiling) => Object.values(CONV_CANDIDATES).some((list) =>
    list.some((c) => JSON.stringify(c) === JSON.stringify(t)));
  for (const [k, t] of Object.entries(cached?.conv2d ?? {})) {
    if (valid(t)) engine.gpu.tuned.set(k, t);
  }
  const known = cached?.matmul;
  if (known && MATMUL_CANDIDATES.some((c) => JSON.stringify(c) === JSON.stringify(known))) {
    engine.gpu.tuned.set('matmul', known);
    return;
  }
  const { choice } = await tuneMatmul(engine);
  await updateTuningCache(key, (t) => ({ ...t, matmul: choice }));
}

/**
 * Times the convolution kernels for each shape not yet tuned on this adapter (tuneConv2d)
 * and caches the choices beside the matmul's. Returns the passes timed (none when every
 * shape was cached).
 */
export async function tuneConvolutions(engine: Engine, shapes: readonly ConvShape[]):
  Promise<ConvTuneResult[]> {
  const results = await tuneConv2d(engine, shapes);
  if (results.length) {
    await updateTuningCache(engine.gpu.adapterInfo, (t) => ({ ...t, conv2d: {
      ...t.conv2d, ...Object.fromEntries(results.map((r) => [r.key, r.choice])) } }));
  }
  return results;
}
