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
  checkConvShapes, type ConvTuneResult } from './ops/tune.js';

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
  /**
   * The candidate set the conv2d choices were picked from (CONV_CANDIDATES as JSON): choices
   * from another set are timed again, so that a candidate added later gets its chance.
   */
  conv2dCandidates?: string;
  /**
   * The way of timing that made the choices (TUNER_VERSION); an entry from another way is
   * timed again whole.
   */
  tuner?: number;
}

const CONV_SET = JSON.stringify(CONV_CANDIDATES);
/**
 * 2: candidates no longer read their outputs back while timed, and five interleaved rounds
 * instead of three (version 1's matmul choice was the slower tiling in some runs here).
 * 3: the input gradient at stride 1 runs on another kernel on CPU drivers (forward_rows over
 * dy), so the tilings chosen for version 2's kernel are timed again.
 */
export const TUNER_VERSION = 3;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The cache as an object of adapters, each an object; anything else in the file (not JSON,
 * JSON of another shape, an adapter whose entry is not an object) counts as absent, so the
 * variants are timed afresh and the next write replaces it.
 */
function readTuningCache(): Record<string, AdapterTuning> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(tuningCachePath(), 'utf8'));
  } catch {
    return {};
  }
  if (!isRecord(parsed)) return {};
  const out: Record<string, AdapterTuning> = {};
  for (const [adapter, t] of Object.entries(parsed)) {
    if (!isRecord(t)) continue;
    out[adapter] = { matmul: t.matmul as MatmulTiling | undefined,
      conv2d: isRecord(t.conv2d) ? t.conv2d as Record<string, ConvTiling> : undefined,
      conv2dCandidates: typeof t.conv2dCandidates === 'string' ? t.conv2dCandidates : undefined,
      tuner: typeof t.tuner === 'number' ? t.tuner : undefined };
  }
  return out;
}

/** Merges this adapter's update into the file; false where it could not be written. */
async function updateTuningCache(adapter: string, update: (t: AdapterTuning) => AdapterTuning):
  Promise<boolean> {
  const path = tuningCachePath();
  try {
    // Read again just before writing: another process may have added its own choices.
    const cache = readTuningCache();
    // Choices of another tuner version are dropped, not merged.
    const prev = cache[adapter];
    cache[adapter] = { ...update(prev?.tuner === TUNER_VERSION ? prev : {}), tuner: TUNER_VERSION };
    mkdirSync(dirname(path), { recursive: true });
    await writeFileAtomic(path, new TextEncoder().encode(`${JSON.stringify(cache, null, 2)}\n`));
    return true;
  } catch {
    // A read-only home is fine: the choice holds for this engine, and is timed again later.
    return false;
  }
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Loads this adapter's cached choices, or times the matmul variants and caches the result. */
export async function applyTuning(engine: Engine): Promise<void> {
  engine.gpu.autotune = true;
  const key = engine.gpu.adapterInfo;
  const entry = readTuningCache()[key];
  const cached = entry?.tuner === TUNER_VERSION ? entry : undefined;
  // Only exact candidates are taken: a hand-edited or stale entry is timed again.
  const valid = (t: ConvTiling) => Object.values(CONV_CANDIDATES).some((list) =>
    list.some((c) => same(c, t)));
  const current = cached?.conv2dCandidates === CONV_SET;
  for (const [k, t] of Object.entries(current ? cached?.conv2d ?? {} : {})) {
    if (valid(t)) engine.gpu.tuned.set(k, t);
  }
  const known = cached?.matmul;
  if (known && MATMUL_CANDIDATES.some((c) => same(c, known))) {
    engine.gpu.tuned.set('matmul', known);
    return;
  }
  const { choice } = await tuneMatmul(engine);
  await updateTuningCache(key, (t) => ({ ...t, matmul: choice }));
}

export interface ConvolutionTuning {
  /** The passes timed (none when every shape was cached). */
  timed: ConvTuneResult[];
  /** The cache file the choices were written to, or null where writing failed or none were. */
  savedTo: string | null;
}

/**
 * Times the convolution kernels for each shape not yet tuned on this adapter (tuneConv2d)
 * and caches the choices beside the matmul's.
 */
export async function tuneConvolutions(engine: Engine, shapes: readonly ConvShape[]):
  Promise<ConvolutionTuning> {
  checkConvShapes('tuneConvolutions', shapes);
  const timed = await tuneConv2d(engine, shapes);
  if (!timed.length) return { timed, savedTo: null };
  // Choices from an older candidate set are dropped, not merged.
  const saved = await updateTuningCache(engine.gpu.adapterInfo, (t) => ({ ...t, conv2d: {
    ...(t.conv2dCandidates === CONV_SET ? t.conv2d : {}),
    ...Object.fromEntries(timed.map((r) => [r.key, r.choice])) }, conv2dCandidates: CONV_SET }));
  return { timed, savedTo: saved ? tuningCachePath() : null };
}
