// Node-only checkpoints: atomic writes, safetensors with SHA-256s of the data and the header,
// resume, and the lock that keeps a run folder to one training at a time.

import { FileError, FileSystemError } from './file-error.js';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync,
  writeSync } from 'node:fs';
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

import {
  assembleSafetensors,
  firstNonFinite,
  packSafetensors,
  parseSafetensors,
  type Metadata,
  type ParsedSafetensors,
  type SafetensorsDtype,
  type Tensor,
} from './safetensors.js';

/** A checkpoint that failed its checksum, or that could not be read. */
export class CheckpointError extends FileError {
  override name = 'CheckpointError';
}

/** The `__metadata__` key holding the hex SHA-256 of the data section. */
export const CHECKSUM_KEY = 'swavgpu.sha256';
/**
 * The `__metadata__` key holding the hex SHA-256 of what the header says (headerDigest): the
 * metadata, the data checksum among it, and each tensor's name, dtype and shape in the
 * data section's order. Files written before it was added have none and are still read.
 * Both checksums detect corruption (a flipped bit, a torn or truncated write), not
 * tampering: whoever edits a file can recompute them, or drop this key.
 */
export const HEADER_CHECKSUM_KEY = 'swavgpu.header_sha256';
/** Marks a file still being written by writeFileAtomic; never a finished checkpoint. */
const TEMP_MARK = '.tmp-';
const CHECKPOINT_NAME = /^ckpt-(\d+)\.safetensors$/;

/**
 * Replaces `path` with `bytes` so that a reader (or a restart after a crash) sees either
 * the old file or the new one, never a mix: write a temporary file beside it, flush it to
 * disk, rename it over the target, then flush the directory so the rename itself persists.
 * A failure is a FileSystemError naming `path` and its folder (not the temporary file),
 * with the OS's code; `what` says what the file is (`the checkpoint`).
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array,
  what = 'the file'): Promise<void> {
  try {
    await writeAtomic(path, bytes);
  } catch (e) {
    throw new FileSystemError(path, `write ${what}`, e);
  }
}

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const dir = dirname(path);
  const temp = join(
    dir,
    `${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(6).toString('hex')}`,
  );
  let created = false;
  try {
    const file = await open(temp, 'wx');
    created = true;
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
    created = false;
  } catch (e) {
    if (created) await rm(temp, { force: true }).catch(() => {});
    throw e;
  }
  await syncDirectory(dir);
}

async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch (e) {
    // Windows cannot open a directory as a file; there the rename is as durable as it gets.
    if (process.platform === 'win32') return;
    throw e;
  }
  try {
    await handle.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Some file systems refuse fsync on a directory; the data itself is already synced.
    if (code !== 'EINVAL' && code !== 'EPERM' && code !== 'EISDIR') throw e;
  } finally {
    await handle.close();
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The SHA-256 of a parsed header's content, independent of its JSON's spacing and key
 * order: the metadata (sorted, without HEADER_CHECKSUM_KEY) and each tensor's name, dtype
 * and shape in the order of its bytes in the data section (which, with the sizes, fixes
 * every data_offsets). A corrupted name, shape or metadata value changes it, as does a
 * swap of two tensors' offsets.
 */
export function headerDigest(parsed: {
  metadata: Metadata;
  tensors: Record<string, { dtype: SafetensorsDtype; shape: readonly number[] }>;
  dataOrder: readonly string[];
}): string {
  const meta = Object.keys(parsed.metadata).filter((k) => k !== HEADER_CHECKSUM_KEY).sort()
    .map((k) => [k, parsed.metadata[k]]);
  const tensors = parsed.dataOrder.map((name) => {
    const t = parsed.tensors[name];
    return [name, t.dtype, t.shape];
  });
  return sha256(new TextEncoder().encode(JSON.stringify({ meta, tensors })));
}

/**
 * Writes tensors as a safetensors checkpoint, atomically, with the SHA-256 of the data
 * section under `swavgpu.sha256` and that of the header's content under
 * `swavgpu.header_sha256` in the metadata. Stale checksum keys in `metadata` (from a
 * checkpoint loaded earlier) are replaced by fresh ones.
 */
export async function saveCheckpoint(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Metadata = {},
): Promise<void> {
  const packed = packSafetensors(tensors);
  const { [HEADER_CHECKSUM_KEY]: _stale, ...rest } = metadata;
  const meta = { ...rest, [CHECKSUM_KEY]: sha256(packed.data) };
  // The tensors in their data's order, as parseSafetensors will list them (a stable sort by
  // [begin, end] of the header's key order).
  const names = Object.keys(packed.entries);
  const span = (n: string) => packed.entries[n].data_offsets;
  const dataOrder = [...names].sort((a, b) => span(a)[0] - span(b)[0] || span(a)[1] - span(b)[1]);
  const digest = headerDigest({ metadata: meta, tensors: packed.entries, dataOrder });
  await writeFileAtomic(path, assembleSafetensors(packed, { ...meta,
    [HEADER_CHECKSUM_KEY]: digest }), 'the checkpoint');
}

/** A flat index as coordinates in `shape`: 13 in [2, 3, 4] is [1, 0, 1]. */
function coordinates(index: number, shape: readonly number[]): number[] {
  const at: number[] = [];
  for (let i = shape.length - 1; i >= 0; i--) {
    at.unshift(index % shape[i]);
    index = Math.floor(index / shape[i]);
  }
  return at;
}

export interface LoadCheckpointOptions {
  /**
   * Accept tensors holding NaN or infinity. Default false: training never writes such a
   * checkpoint, and one that holds them cannot be trained on or evaluated.
   */
  allowNonFinite?: boolean;
}

/**
 * Reads a checkpoint and verifies its checksums (the header's where it has one) and that
 * every float value is finite; the metadata keeps the checksum keys.
 */
export async function loadCheckpoint(path: string,
  opts: LoadCheckpointOptions = {}): Promise<ParsedSafetensors> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new CheckpointError(path, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  const parsed = parseSafetensors(bytes, path);
  const want = parsed.metadata[CHECKSUM_KEY];
  if (want === undefined) {
    throw new CheckpointError(path, `no ${CHECKSUM_KEY} checksum in __metadata__`);
  }
  const got = sha256(bytes.subarray(parsed.dataOffset));
  if (got !== want) {
    throw new CheckpointError(
      path,
      `checksum mismatch: ${CHECKSUM_KEY} says ${want}, the data section hashes to ${got} ` +
        '(the file is corrupted)',
    );
  }
  const wantHeader = parsed.metadata[HEADER_CHECKSUM_KEY];
  if (wantHeader !== undefined) {
    const gotHeader = headerDigest(parsed);
    if (gotHeader !== wantHeader) {
      throw new CheckpointError(
        path,
        `header checksum mismatch: ${HEADER_CHECKSUM_KEY} says ${wantHeader}, the header ` +
          `(metadata, tensor names, dtypes, shapes and order) hashes to ${gotHeader} ` +
          '(the file is corrupted)',
      );
    }
  }
  const bad = opts.allowNonFinite ? null : firstNonFinite(parsed.tensors);
  if (bad) {
    // Checked after the checksums: a NaN there was written, not a flipped bit.
    const t = parsed.tensors[bad.name];
    throw new CheckpointError(path, `tensor ${bad.name} [${t.shape.join(', ')}] holds ` +
      `${bad.value} at element ${bad.index} ([${coordinates(bad.index, t.shape).join(', ')}]), ` +
      'its first non-finite value; a checkpoint must hold finite values (its checksums ' +
      'match: it was written so, not corrupted afterwards)');
  }
  return parsed;
}

/** The file name for a step: `ckpt-000123.safetensors` (six digits or more). */
export function checkpointName(step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(`checkpointName: step must be a non-negative integer, got ${step}`);
  }
  return `ckpt-${String(step).padStart(6, '0')}.safetensors`;
}

/** The step in a checkpoint file name, or undefined for any other name (temp files too). */
export function checkpointStep(name: string): number | undefined {
  const m = CHECKPOINT_NAME.exec(name);
  if (m === null) return undefined;
  const step = Number(m[1]);
  return Number.isSafeInteger(step) ? step : undefined;
}

/** Why a file in the checkpoint directory was passed over. */
export type SkipReporter = (path: string, reason: string) => void;

export interface LatestCheckpoint extends ParsedSafetensors {
  path: string;
  step: number;
}

/** Checkpoint files in `dir`, newest step first; a missing directory has none. */
export async function listCheckpoints(
  dir: string,
  onSkip?: SkipReporter,
): Promise<{ path: string; step: number }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const found: { path: string; step: number }[] = [];
  for (const name of names) {
    if (name.includes(TEMP_MARK) && name.startsWith('ckpt-')) {
      onSkip?.(join(dir, name), 'temporary file from a write that did not finish');
      continue;
    }
    const step = checkpointStep(name);
    if (step !== undefined) found.push({ path: join(dir, name), step });
  }
  return found.sort((a, b) => b.step - a.step);
}

/**
 * The newest checkpoint in `dir` that parses and passes its checksum, loaded, or null
 * when there is none. Temporary and broken files are passed over and reported to `onSkip`.
 */
export async function findLatestCheckpoint(
  dir: string,
  onSkip?: SkipReporter,
): Promise<LatestCheckpoint | null> {
  for (const { path, step } of await listCheckpoints(dir, onSkip)) {
    try {
      return { ...(await loadCheckpoint(path)), path, step };
    } catch (e) {
      onSkip?.(path, e instanceof Error ? e.message : String(e));
    }
  }
  return null;
}

/**
 * Deletes checkpoints older than the `keep` newest valid ones and returns their paths.
 * Validity is checked (checksum and all) so a corrupted newest file never costs the last
 * good one; broken files newer than the cut are left for a person to look at.
 */
export async function pruneCheckpoints(
  dir: string,
  keep: number,
  onSkip?: SkipReporter,
): Promise<string[]> {
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new RangeError(`pruneCheckpoints: keep must be an integer >= 1, got ${keep}`);
  }
  const all = await listCheckpoints(dir, onSkip);
  let valid = 0;
  let cut = all.length;
  for (let i = 0; i < all.length; i++) {
    try {
      await loadCheckpoint(all[i].path);
      valid++;
    } catch (e) {
      onSkip?.(all[i].path, e instanceof Error ? e.message : String(e));
      continue;
    }
    if (valid === keep) {
      cut = i + 1;
      break;
    }
  }
  const removed: string[] = [];
  for (const { path } of all.slice(cut)) {
    try {
      await rm(path, { force: true });
    } catch (e) {
      throw new FileSystemError(path, 'delete the old checkpoint', e);
    }
    removed.push(path);
  }
  return removed;
}

// ---- The run folder's lock -----------------------------------------------------------
//
// A training holds `swavgpu.lock` in its output folder from start to end, so that a second
// one into the same folder is refused instead of interleaving metrics and mixing
// checkpoints. The file holds the holder's pid, host, start time and a token, and is never
// seen without them: they are written to a temporary file first, which is then hard-linked
// to the lock's name (link fails if the name exists: one creator wins, as with O_EXCL).
// Release removes it only while it still holds this token. A lock whose process is gone
// (killed, crashed) is taken over, with a note.

/** The lock file's name in a run folder. */
export const LOCK_NAME = 'swavgpu.lock';

/** What a lock file says about its holder. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
  token: string;
}

/** The folder is locked by another training (or a lock file that cannot be read). */
export class FolderLockedError extends FileError {
  override name = 'FolderLockedError';
  constructor(readonly folder: string, readonly holder: LockHolder | null, detail: string) {
    super(folder, detail);
  }
}

export interface FolderLock {
  /** The locked folder (absolute) and its lock file. */
  readonly folder: string;
  readonly path: string;
  /** Removes the lock file if it is still this lock's; later calls do nothing. */
  release(): void;
}

/** The holder a lock file names; null if it names none, 'gone' if there is no file. */
function readLock(path: string): LockHolder | null | 'gone' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw new FileSystemError(path, 'read the lock file', e);
  }
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    return Number.isSafeInteger(h.pid) && typeof h.token === 'string' ? h as LockHolder : null;
  } catch {
    return null;
  }
}

/** Tokens of the locks this process holds now. */
const heldHere = new Set<string>();

/**
 * Whether the holder of a lock file written on this host still runs. A lock naming this
 * process's own pid is live only if this process took it: otherwise it is a previous
 * process's whose pid came round again (a restarted container usually starts node with the
 * same pid), and stale.
 */
function holderAlive(held: LockHolder): boolean {
  if (held.pid === process.pid) return heldHere.has(held.token);
  return processAlive(held.pid);
}

/** Whether a process of this pid runs on this host (one of another user's counts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A name beside `path` that removeStaleTemps clears once this process is gone. */
function tempName(path: string): string {
  return `${path}${TEMP_MARK}${process.pid}-${randomBytes(6).toString('hex')}`;
}

/**
 * Creates the lock file `path` holding `text`, whole, or returns false if it exists.
 * Where hard links are not supported, O_EXCL and a write (a kill between the two would
 * leave an empty lock, which the next run refuses rather than guesses about).
 */
function createLock(path: string, text: string): boolean {
  const temp = tempName(path);
  try {
    writeFileSync(temp, text, { flag: 'wx' });
  } catch (e) {
    throw new FileSystemError(path, 'create the lock file', e);
  }
  try {
    linkSync(temp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') {
      throw new FileSystemError(path, 'create the lock file', e);
    }
  } finally {
    unlinkSync(temp);
  }
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new FileSystemError(path, 'create the lock file', e);
  }
  try {
    writeSync(fd, text);
  } catch (e) {
    unlinkSync(path);
    throw new FileSystemError(path, 'write the lock file', e);
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Removes the stale lock `held` unless another process replaced it meanwhile: the file is
 * first renamed aside (one process wins the rename), and put back if it is not `held`.
 */
function removeStaleLock(path: string, held: LockHolder): void {
  const aside = tempName(path);
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new FileSystemError(path, 'take over the stale lock file', e);
  }
  const taken = readLock(aside);
  if (typeof taken !== 'object' || taken?.token !== held.token) {
    // A live process's fresh lock: back where it was (a link fails if yet another exists).
    try {
      linkSync(aside, path);
    } catch {
      // That newer lock stands; this one was never needed.
    }
  }
  unlinkSync(aside);
}

/**
 * Locks `folder` (which must exist) for this process until release() or exit. A folder
 * locked by a live process, or by a lock file naming none, is refused with
 * FolderLockedError naming the folder and the holder's pid; one locked by a process that
 * is no longer running is taken over, and `onNote` told so.
 */
export function lockFolder(folder: string, onNote?: (line: string) => void): FolderLock {
  const dir = resolve(folder);
  const path = join(dir, LOCK_NAME);
  const me: LockHolder = { pid: process.pid, host: hostname(), started: new Date().toISOString(),
    token: randomBytes(8).toString('hex') };
  // A few rounds: a lock can vanish, or go stale, between the create and the read.
  for (let round = 0; round < 5; round++) {
    if (!createLock(path, `${JSON.stringify(me)}\n`)) {
      const held = readLock(path);
      if (held === 'gone') continue;
      if (held === null) {
        throw new FolderLockedError(dir, null, `locked by ${path}, which names no process ` +
          '(a damaged file? delete it if no training runs there)');
      }
      const here = held.host === me.host;
      if (!here || holderAlive(held)) {
        throw new FolderLockedError(dir, held, `in use: process ${held.pid}` +
          `${held.pid === process.pid && here ? ' (this process)' : ''}` +
          `${here ? '' : ` on host ${held.host}`} has been training into it since ` +
          `${held.started} (lock file ${path}). Wait for it to end, stop it, or use another ` +
          `folder${here ? '' : `; if it no longer runs on ${held.host}, delete the lock file`}`);
      }
      removeStaleLock(path, held);
      onNote?.(`${path}: took over the lock of process ${held.pid} (since ${held.started}), ` +
        'which is no longer running');
      continue;
    }
    let held = true;
    heldHere.add(me.token);
    const release = () => {
      if (!held) return;
      held = false;
      heldHere.delete(me.token);
      process.off('exit', release);
      try {
        const now = readLock(path);
        if (typeof now === 'object' && now?.token === me.token) unlinkSync(path);
      } catch {
        // The folder went away, or became unreadable: nothing left to release.
      }
    };
    // A process.exit() (a second Ctrl-C, SIGTERM in the CLI) still removes it.
    process.on('exit', release);
    return { folder: dir, path, release };
  }
  throw new FolderLockedError(dir, null, `could not take ${path}: other processes kept ` +
    'creating and removing it');
}
