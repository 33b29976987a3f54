// Saving and restoring a SwAV run in Node: safetensors files (readable by PyTorch's
// safetensors), written atomically with a checksum, with the config and position in the
// metadata.

import type { Engine } from '../graph/engine.js';
import { checkpointName, findLatestCheckpoint, loadCheckpoint, pruneCheckpoints, saveCheckpoint,
  type LatestCheckpoint } from '../io/checkpoint-node.js';
import type { Tensor as SafeTensor } from '../io/safetensors.js';
import type { ParsedSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../graph/tensor.js';
import type { SwavConfig } from './config.js';
import type { SwavTrainer, TrainerPosition } from './trainer.js';
import { join } from 'node:path';
import { statSync } from 'node:fs';

export const CONFIG_KEY = 'swavgpu.config';
export const POSITION_KEY = 'swavgpu.position';

/** Reads every tensor back in one submission. */
export async function readTensors(engine: Engine, tensors: Record<string, Tensor>):
  Promise<Record<string, SafeTensor>> {
  const names = Object.keys(tensors);
  const values = await engine.run([], names.map((n) => tensors[n]));
  const out: Record<string, SafeTensor> = {};
  names.forEach((n, i) => {
    out[n] = { dtype: 'F32', shape: [...tensors[n].shape], data: values[i] };
  });
  return out;
}

export async function saveTrainerCheckpoint(dir: string, trainer: SwavTrainer,
  keep = 3): Promise<string> {
  const tensors = await readTensors(trainer.engine, trainer.stateTensors());
  const path = join(dir, checkpointName(trainer.step));
  await saveCheckpoint(path, tensors, {
    [CONFIG_KEY]: JSON.stringify(trainer.cfg),
    [POSITION_KEY]: JSON.stringify(trainer.position()),
    format: 'pt',
  });
  await pruneCheckpoints(dir, keep);
  return path;
}

export interface LoadedRun {
  path: string;
  config: SwavConfig;
  position: TrainerPosition;
  tensors: Record<string, Float32Array>;
}

function decode(path: string, parsed: ParsedSafetensors): LoadedRun {
  const cfg = parsed.metadata[CONFIG_KEY];
  const pos = parsed.metadata[POSITION_KEY];
  if (!cfg || !pos) {
    throw new Error(`${path}: not a swavgpu SwAV checkpoint (metadata lacks ${CONFIG_KEY} ` +
      `or ${POSITION_KEY})`);
  }
  const tensors: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(parsed.tensors)) {
    if (t.dtype !== 'F32') throw new Error(`${path}: tensor ${name} is ${t.dtype}, expected F32`);
    tensors[name] = t.data as Float32Array;
  }
  let config: SwavConfig;
  let position: TrainerPosition;
  try {
    config = JSON.parse(cfg) as SwavConfig;
    position = JSON.parse(pos) as TrainerPosition;
  } catch (e) {
    throw new Error(`${path}: metadata is not valid JSON: ${(e as Error).message}`);
  }
  return { path, config, position, tensors };
}

/** A checkpoint file, or the latest complete one in a directory. */
export async function loadRun(pathOrDir: string,
  onSkip?: (path: string, reason: string) => void): Promise<LoadedRun> {
  let isDir = false;
  try {
    isDir = statSync(pathOrDir).isDirectory();
  } catch {
    throw new Error(`${pathOrDir}: no such checkpoint file or directory`);
  }
  if (isDir) {
    const latest: LatestCheckpoint | null = await findLatestCheckpoint(pathOrDir, onSkip);
    if (!latest) throw new Error(`${pathOrDir}: holds no complete checkpoint`);
    return decode(latest.path, latest);
  }
  return decode(pathOrDir, await loadCheckpoint(pathOrDir));
}

export async function latestRun(dir: string,
  onSkip?: (path: string, reason: string) => void): Promise<LoadedRun | null> {
  const latest = await findLatestCheckpoint(dir, onSkip);
  return latest ? decode(latest.path, latest) : null;
}
