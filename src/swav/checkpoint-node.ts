// Saving and restoring a SwAV run in Node: safetensors files (readable by PyTorch's
// safetensors), written atomically with a checksum, with the config and position in the
// metadata.

import type { Engine } from '../graph/engine.js';
import { CheckpointError, checkpointName, findLatestCheckpoint, loadCheckpoint, pruneCheckpoints,
  processAlive, saveCheckpoint } from '../io/checkpoint-node.js';
import { firstNonFinite, type ParsedSafetensors, type Tensor as SafeTensor }
  from '../io/safetensors.js';
import type { Tensor } from '../graph/tensor.js';
import type { SwavConfig } from './config.js';
import type { SwavTrainer, TrainerPosition } from './trainer.js';
import { STEP_KEY } from '../optim/optimizer.js';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';

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

/** A trainer's whole state on the CPU, read in one submission: what a checkpoint holds. */
export interface TrainerSnapshot {
  step: number;
  config: SwavConfig;
  position: TrainerPosition;
  tensors: Record<string, SafeTensor>;
}

/**
 * Reads the trainer's state tensors and position. The position is taken when the read is
 * recorded, so both describe the state after the same step.
 */
export async function snapshotTrainer(trainer: SwavTrainer): Promise<TrainerSnapshot> {
  const state = trainer.stateTensors();
  const position = trainer.position();
  const step = trainer.step;
  try {
    const tensors = await readTensors(trainer.engine, state);
    // A device lost while the copies ran gives no values worth saving, whatever came back.
    trainer.engine.gpu.checkAlive('checkpoint read');
    return { step, config: trainer.cfg, position, tensors };
  } finally {
    // Optimizer.state() makes a fresh one-value leaf for the step count at every call;
    // returning it at once keeps the pool flat across checkpoints.
    state[STEP_KEY]?.dispose();
  }
}

/** Refused to write a checkpoint: its state holds a non-finite value. */
export class NonFiniteStateError extends Error {
  override name = 'NonFiniteStateError';
  constructor(readonly step: number, readonly tensor: string, readonly index: number,
    readonly value: number) {
    super(`state after step ${step - 1}: ${tensor} holds ${value} at element ${index}; ` +
      'no checkpoint was written');
  }
}

/**
 * Writes a snapshot as `ckpt-<step>.safetensors` (atomically, with its checksum) and
 * prunes to the `keep` newest. A snapshot holding NaN or infinity is refused, so the
 * newest checkpoint on disk is always a state training can continue from.
 */
export async function writeTrainerCheckpoint(dir: string, snap: TrainerSnapshot,
  keep = 3): Promise<string> {
  const bad = firstNonFinite(snap.tensors);
  if (bad) throw new NonFiniteStateError(snap.step, bad.name, bad.index, bad.value);
  const path = join(dir, checkpointName(snap.step));
  await saveCheckpoint(path, snap.tensors, {
    [CONFIG_KEY]: JSON.stringify(snap.config),
    [POSITION_KEY]: JSON.stringify(snap.position),
    format: 'pt',
  });
  await pruneCheckpoints(dir, keep);
  return path;
}

export async function saveTrainerCheckpoint(dir: string, trainer: SwavTrainer,
  keep = 3): Promise<string> {
  return writeTrainerCheckpoint(dir, await snapshotTrainer(trainer), keep);
}

/**
 * Puts a snapshot back into a live trainer (the NaN diagnosis replays from one). Unlike a
 * fresh process, this trainer may already hold optimizer state the snapshot lacks (a
 * momentum buffer created after it was taken): such state is reset to the zeros it was
 * created with, and the optimizer's step count to the snapshot's step.
 */
export function restoreSnapshot(trainer: SwavTrainer, snap: TrainerSnapshot): void {
  const values: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(snap.tensors)) values[name] = t.data as Float32Array;
  const now = trainer.optimizer.state();
  for (const [name, t] of Object.entries(now)) {
    if (name === STEP_KEY) values[name] ??= Float32Array.of(snap.step);
    else values[name] ??= new Float32Array(t.size);
  }
  now[STEP_KEY]?.dispose();
  trainer.load(values, snap.position);
}

/** Temporary files (`<name>.tmp-<pid>-<hex>`) left in `dir` by processes no longer alive. */
export async function removeStaleTemps(dir: string,
  onRemove?: (path: string) => void): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const path = join(dir, name);
    await rm(path, { force: true });
    onRemove?.(path);
    removed.push(path);
  }
  return removed;
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
    throw new CheckpointError(path, `not a swavgpu SwAV checkpoint (metadata lacks ` +
      `${CONFIG_KEY} or ${POSITION_KEY})`);
  }
  const tensors: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(parsed.tensors)) {
    if (t.dtype !== 'F32') {
      throw new CheckpointError(path, `tensor ${name} is ${t.dtype}, expected F32`);
    }
    tensors[name] = t.data as Float32Array;
  }
  let config: SwavConfig;
  let position: TrainerPosition;
  try {
    config = JSON.parse(cfg) as SwavConfig;
    position = JSON.parse(pos) as TrainerPosition;
  } catch (e) {
    throw new CheckpointError(path, `metadata is not valid JSON: ${(e as Error).message}`);
  }
  return { path, config, position, tensors };
}

/** A file passed over while looking for the newest complete checkpoint, and why. */
export interface SkippedFile {
  path: string;
  reason: string;
}

/** The reason alone: a CheckpointError's message starts with the path it names. */
function reasonOf(path: string, e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.startsWith(`${path}: `) ? m.slice(path.length + 2) : m;
}

/** `a: why; b: why` for an error message or a log line. */
export function describeSkipped(skipped: SkippedFile[]): string {
  return skipped.map((s) => `skipped ${s.path} (${s.reason})`).join('; ');
}

/**
 * The newest complete SwAV checkpoint in `dir`, with every newer file passed over and why;
 * `run` is null when none is complete (a missing folder holds none).
 */
export async function scanRun(dir: string):
  Promise<{ run: LoadedRun | null; skipped: SkippedFile[] }> {
  const skipped: SkippedFile[] = [];
  const latest = await findLatestCheckpoint(dir,
    (path, why) => skipped.push({ path, reason: reasonOf(path, why) }));
  if (!latest) return { run: null, skipped };
  try {
    return { run: decode(latest.path, latest), skipped };
  } catch (e) {
    // A checksummed file that is not ours: nothing older is looked at, as for a bad file.
    skipped.push({ path: latest.path, reason: reasonOf(latest.path, e) });
    return { run: null, skipped };
  }
}

/** The error for a folder holding no complete checkpoint, naming each file passed over. */
export function noCheckpointError(dir: string, skipped: SkippedFile[]): CheckpointError {
  let exists = true;
  try {
    exists = statSync(dir).isDirectory();
  } catch {
    exists = false;
  }
  if (!exists) return new CheckpointError(dir, 'no such folder, so no checkpoint to use');
  return new CheckpointError(dir, 'holds no complete checkpoint' +
    (skipped.length ? `: ${describeSkipped(skipped)}` : ' (no ckpt-*.safetensors file)'));
}

/**
 * A checkpoint file, or the latest complete one in a directory. For a directory, files
 * newer than the one used are reported to `onFallback` (only when there are any).
 */
export async function loadRun(pathOrDir: string,
  onFallback?: (used: string, skipped: SkippedFile[]) => void): Promise<LoadedRun> {
  let isDir = false;
  try {
    isDir = statSync(pathOrDir).isDirectory();
  } catch {
    throw new CheckpointError(pathOrDir, 'no such checkpoint file or directory');
  }
  if (isDir) {
    const { run, skipped } = await scanRun(pathOrDir);
    if (!run) throw noCheckpointError(pathOrDir, skipped);
    if (skipped.length) onFallback?.(run.path, skipped);
    return run;
  }
  return decode(pathOrDir, await loadCheckpoint(pathOrDir));
}

export async function latestRun(dir: string,
  onSkip?: (path: string, reason: string) => void): Promise<LoadedRun | null> {
  const { run, skipped } = await scanRun(dir);
  for (const s of skipped) onSkip?.(s.path, s.reason);
  return run;
}
