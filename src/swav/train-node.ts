// The Node training loop: data from disk, progress on the terminal, metrics as JSON lines,
// atomic checkpoints, resume, a loss plot, and a clean stop on NaN or a lost device.

import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { DeviceLostError } from '../gpu/errors.js';
import { loadFashionMnist } from '../data/fashion-node.js';
import { listCheckpoints, lockFolder, writeFileAtomic, type FolderLock }
  from '../io/checkpoint-node.js';
import { FileSystemError } from '../io/file-error.js';
import { firstNonFinite } from '../io/safetensors.js';
import { STEP_KEY } from '../optim/optimizer.js';
import { SwavTrainer, type StepResult } from './trainer.js';
import { validateConfig, type SwavConfig } from './config.js';
import {
  describeSkipped, noCheckpointError, removeStaleTemps, restoreSnapshot, scanRun,
  snapshotTrainer, writeTrainerCheckpoint, type TrainerSnapshot,
} from './checkpoint-node.js';
import { lossCurveSvg } from './plot.js';
import { tuneConvolutions, tuningCachePath } from '../tune-node.js';

/** Called around the steps of trainSwav; tests inject faults here. */
export interface TrainHooks {
  /**
   * Before step `step` is recorded, in the run and again when a NaN diagnosis replays that
   * step, so a fault injected here (a NaN written into a tensor, a destroyed device)
   * happens at the same point both times.
   */
  beforeStep?: (trainer: SwavTrainer, step: number) => void;
}

export interface TrainOptions {
  config: SwavConfig;
  /** Folder of the Fashion-MNIST IDX files. */
  dataDir: string;
  out: string;
  resume: boolean;
  /** One plain line every few steps instead of a live progress line. */
  quiet: boolean;
  /** Where progress goes (default: stderr). */
  log?: (line: string, live?: boolean) => void;
  /**
   * Stop once the global step count reaches this, as the time budget does: a checkpoint
   * is written and --resume continues (default: run to the end).
   */
  stopAtStep?: number;
  hooks?: TrainHooks;
  /**
   * On resume, the config to continue with, given the checkpoint's (it may refuse by
   * throwing). Default: the checkpoint's, with this call's time budget.
   */
  resumeConfig?: (saved: SwavConfig) => SwavConfig;
  /**
   * Aborting it stops training after the step in flight, without a checkpoint; trainSwav
   * then throws TrainingInterrupted naming the newest checkpoint.
   */
  signal?: AbortSignal;
  /**
   * The lock on `out` (from lockOutput), where the caller took it before starting the
   * engine; it stays the caller's to release. Default: trainSwav takes it for the call.
   */
  lock?: FolderLock;
}

export interface TrainSummary {
  steps: number;
  finalLoss: number;
  seconds: number;
  imagesPerSecond: number;
  checkpoint: string;
  stoppedEarly: boolean;
}

/** What stopped a run; `step` and `tensor` are set where one step and tensor are to blame. */
export class TrainingError extends Error {
  constructor(message: string, readonly details: { step?: number; tensor?: string;
    checkpoint?: string } = {}) {
    super(message);
    this.name = 'TrainingError';
  }
}

/** Training stopped by `signal` (Ctrl-C): nothing was written after the last checkpoint. */
export class TrainingInterrupted extends TrainingError {
  constructor(readonly step: number, checkpoint: string) {
    super(`interrupted at step ${step}; the last checkpoint is ${checkpoint || 'none (none ' +
      'was written yet)'}${checkpoint ? ', --resume continues' : ''}`, { step, checkpoint });
    this.name = 'TrainingInterrupted';
  }
}

/** Raised inside the loop when step `step` gave a non-finite loss or state. */
class NonFiniteDetected extends Error {
  constructor(readonly step: number, readonly what: string) {
    super(`step ${step}: ${what}`);
  }
}

function formatTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

function defaultLog(line: string, live = false): void {
  if (live && process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${line}`);
  else process.stderr.write(`${line}\n`);
}

/** Metric rows of the steps before `step`; a line cut short by a kill is dropped. */
function keptMetrics(path: string, step: number): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => {
    try {
      const row = JSON.parse(line) as { step?: unknown };
      return typeof row.step === 'number' && row.step < step;
    } catch {
      return false;
    }
  });
}

function firstBadValue(v: ArrayLike<number>): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return i;
  return -1;
}

/** Marks a promise as handled, so one abandoned by a failure cannot crash the process. */
function settled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

interface InFlight {
  step: number;
  result: Promise<StepResult>;
  /** The parameters after the step, read every few steps to catch a NaN the loss hides. */
  params: Promise<Float32Array[]> | null;
}

/**
 * Takes the lock on a training's output folder, after creating the folder for a fresh run
 * (a resumed one must exist): a second training into a folder in use is refused here with
 * FolderLockedError naming the folder and the pid that holds it, before any data or GPU
 * work. A lock left by a process no longer running is taken over, with a note to `log`.
 */
export function lockOutput(out: string, resume: boolean,
  log: (line: string) => void = defaultLog): FolderLock {
  if (resume) {
    let isDir = false;
    try {
      isDir = statSync(out).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) throw new TrainingError(`--resume: ${noCheckpointError(out, []).message}`);
  } else {
    try {
      mkdirSync(out, { recursive: true });
    } catch (e) {
      throw new TrainingError(`--out ${out}: cannot create the output folder ` +
        `(${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  return lockFolder(out, log);
}

/**
 * Trains SwAV into `opts.out`, holding the folder's lock (see lockOutput) for the whole
 * call: one training per folder at a time.
 */
export async function trainSwav(engine: Engine, opts: TrainOptions): Promise<TrainSummary> {
  if (opts.lock && opts.lock.folder !== resolve(opts.out)) {
    throw new TrainingError(`the lock passed is on ${opts.lock.folder}, not on --out ` +
      `${opts.out}`);
  }
  // The arguments are checked before the folder is made and locked.
  validateConfig(opts.config);
  const stopAt = opts.stopAtStep;
  if (stopAt !== undefined && !(Number.isSafeInteger(stopAt) && stopAt >= 0)) {
    throw new TrainingError(`stopAtStep must be an integer >= 0, got ${stopAt}`);
  }
  const lock = opts.lock ?? lockOutput(opts.out, opts.resume, opts.log ?? defaultLog);
  try {
    return await trainLocked(engine, opts);
  } finally {
    if (!opts.lock) lock.release();
  }
}

async function trainLocked(engine: Engine, opts: TrainOptions): Promise<TrainSummary> {
  const log = opts.log ?? defaultLog;
  const live = !opts.quiet && (opts.log !== undefined || process.stderr.isTTY === true);
  let config = validateConfig(opts.config);
  const stopAt = opts.stopAtStep;
  let resumed: Awaited<ReturnType<typeof scanRun>>['run'] = null;
  if (opts.resume) {
    // Nothing in the folder is touched until a complete checkpoint is found.
    const { run, skipped } = await scanRun(opts.out);
    if (!run) throw new TrainingError(`--resume: ${noCheckpointError(opts.out, skipped).message}`);
    if (skipped.length) log(`--resume: ${describeSkipped(skipped)}; using ${run.path}`);
    resumed = run;
    config = validateConfig(opts.resumeConfig ? opts.resumeConfig(run.config)
      : { ...run.config, timeBudget: config.timeBudget });
  } else {
    // lockOutput made the folder. Any checkpoint file counts, even one that does not load:
    // a fresh run would overwrite the run's metrics and config beside it.
    const found = await listCheckpoints(opts.out);
    if (found.length) {
      const more = found.length > 1 ? ` and ${found.length - 1} more` : '';
      throw new TrainingError(`${opts.out} already holds checkpoints (${found[0].path}${more}): ` +
        `pass --resume to continue that run (from the newest that loads), or choose another ` +
        `--out`);
    }
  }

  const data = await loadFashionMnist(opts.dataDir, 'train',
    config.subset > 0 ? { limit: config.subset } : {});
  const trainer = new SwavTrainer(engine, config, data);
  if (resumed) {
    try {
      trainer.load(resumed.tensors, resumed.position);
    } catch (e) {
      trainer.dispose();
      throw new TrainingError(`${resumed.path}: does not fit the model of its own config: ` +
        (e as Error).message.replace(/^checkpoint: /, ''), { checkpoint: resumed.path });
    }
    if (trainer.done) {
      trainer.dispose();
      log(`nothing to train: the run already has ${resumed.position.step} of ` +
        `${trainer.totalSteps} steps (${resumed.path}); raise --epochs to train further`);
      return { steps: 0, finalLoss: NaN, seconds: 0, imagesPerSecond: 0,
        checkpoint: resumed.path, stoppedEarly: false };
    }
    await removeStaleTemps(opts.out,
      (p) => log(`removed ${p}, left by a write that did not finish`));
    log(`resumed from ${resumed.path} at step ${trainer.step}`);
  }
  if (engine.gpu.autotune) {
    // Time the convolution kernels of this model's shapes once per adapter (cached).
    const t = performance.now();
    const shapes = trainer.convShapes();
    const { timed, savedTo } = await tuneConvolutions(engine, shapes);
    if (timed.length) {
      log(`timed the convolution kernels of ${shapes.length} layer shapes (${timed.length} ` +
        `passes) in ${((performance.now() - t) / 1000).toFixed(0)} s, ` + (savedTo
        ? `once per adapter (cached in ${savedTo})`
        : `not cached (${tuningCachePath()} could not be written)`));
    }
  }
  const metricsPath = join(opts.out, 'metrics.jsonl');
  // Keep the metrics of the steps before the resumed one; drop any written after it.
  const kept = resumed ? keptMetrics(metricsPath, trainer.step) : [];
  const history = kept.map((l) => JSON.parse(l) as { step: number; loss: number });

  const B = config.batchSize;
  const startStep = trainer.step;
  const t0 = performance.now();
  const recent: number[] = [];
  let last: StepResult | null = null;
  let checkpoint = resumed?.path ?? '';
  let stoppedEarly = false;
  log(`training ${trainer.model.parameterCount()} parameters on ${data.count} images: ` +
    `${trainer.totalSteps} steps of ${B} (${trainer.stepsPerEpoch} per epoch), ` +
    `from step ${trainer.step}`);
  const params = trainer.model.namedParameters();

  const handle = async (f: InFlight) => {
    const r = await f.result;
    if (!Number.isFinite(r.loss)) throw new NonFiniteDetected(r.step, `the loss is ${r.loss}`);
    if (f.params) {
      const values = await f.params;
      for (const [k, v] of values.entries()) {
        const i = firstBadValue(v);
        if (i >= 0) {
          throw new NonFiniteDetected(r.step, `parameter ${params[k][0]} holds ${v[i]} at ` +
            `element ${i} after it (the loss, ${r.loss}, was finite)`);
        }
      }
    }
    last = r;
    const now = performance.now();
    recent.push(now);
    if (recent.length > 21) recent.shift();
    const perStep = recent.length > 1 ? (now - recent[0]) / (recent.length - 1) / 1000 : NaN;
    const row = { step: r.step, epoch: r.epoch, loss: r.loss, lr: r.lr,
      prototypesUsed: r.stats.used, assignmentEntropy: r.stats.entropy,
      imagesPerSecond: B / perStep, elapsed: (now - t0) / 1000 };
    try {
      appendFileSync(metricsPath, `${JSON.stringify(row)}\n`);
    } catch (err) {
      throw new FileSystemError(metricsPath, 'append to the metrics', err);
    }
    history.push({ step: r.step, loss: r.loss });
    const left = (trainer.totalSteps - r.step - 1) * perStep;
    const line = `epoch ${r.epoch + 1}/${Math.ceil(config.epochs)} step ${r.step + 1}/` +
      `${trainer.totalSteps} loss ${r.loss.toFixed(4)} lr ${r.lr.toFixed(4)} protos ` +
      `${r.stats.used}/${config.prototypes} ` +
      (Number.isFinite(perStep) ? `${(B / perStep).toFixed(1)} img/s left ${formatTime(left)}`
        : 'starting');
    // A live line on a terminal; into a log (a file, a pipe, --quiet) every 50th step.
    if (live) log(line, true);
    else if (r.step % Math.max(config.logEvery * 10, 50) === 0) log(line);
  };

  // The state a NaN diagnosis replays from: the newest checkpoint's, or the start's.
  let good: TrainerSnapshot | null = null;
  const save = async () => {
    const snap = await snapshotTrainer(trainer);
    const bad = firstNonFinite(snap.tensors);
    if (bad) {
      throw new NonFiniteDetected(snap.step - 1, `${bad.name} holds ${bad.value} at element ` +
        `${bad.index} after it, found when reading it for a checkpoint`);
    }
    checkpoint = await writeTrainerCheckpoint(opts.out, snap);
    good = snap;
    await writeFileAtomic(join(opts.out, 'loss.svg'),
      Buffer.from(lossCurveSvg(history, config.prototypes)), 'the loss plot');
  };

  const submit = (): InFlight => {
    // A device lost since the last step: stop here, before recording on it.
    engine.gpu.checkAlive(`step ${trainer.step}`);
    opts.hooks?.beforeStep?.(trainer, trainer.step);
    // Every logEvery steps the parameters come back too, in the step's own submission: a
    // NaN can hide from the loss (a comparison in a kernel, a masked gradient, a reduction
    // that never reads it), but not from the values it lands in.
    const probing = (trainer.step + 1) % config.logEvery === 0;
    const { step, result, extra } = trainer.runStep(probing ? params.map(([, t]) => t) : []);
    return { step, result: settled(result), params: probing ? settled(extra) : null };
  };

  let inFlight: InFlight | null = null;
  try {
    await writeFileAtomic(metricsPath, Buffer.from(kept.map((l) => `${l}\n`).join('')),
      'the metrics');
    await writeFileAtomic(join(opts.out, 'config.json'),
      Buffer.from(`${JSON.stringify(config, null, 2)}\n`), 'the config');
    good = await snapshotTrainer(trainer);
    while (!trainer.done && !(stopAt !== undefined && trainer.step >= stopAt) &&
      !opts.signal?.aborted) {
      // One step stays in flight: the GPU works on step s while step s-1's values are read.
      const prev: InFlight | null = inFlight;
      inFlight = submit();
      if (prev) await handle(prev);
      const step = inFlight.step;
      const every = config.checkpointEvery;
      const boundary = (step + 1) % trainer.stepsPerEpoch === 0 ||
        (every > 0 && (step + 1) % every === 0);
      const overTime = config.timeBudget > 0 && (performance.now() - t0) / 1000 > config.timeBudget;
      const atStop = stopAt !== undefined && trainer.step >= stopAt;
      if (boundary || overTime || atStop || trainer.done) {
        await handle(inFlight);
        inFlight = null;
        await save();
      }
      if ((overTime || atStop) && !trainer.done) {
        stoppedEarly = true;
        log(`\n${overTime ? `time budget of ${config.timeBudget} s` : `step ${stopAt}`} ` +
          `reached at step ${trainer.step}; checkpoint written, --resume continues`);
        break;
      }
    }
    if (inFlight) await handle(inFlight);
    inFlight = null;
    if (opts.signal?.aborted && !trainer.done) {
      throw new TrainingInterrupted(trainer.step, checkpoint);
    }
    if (stopAt !== undefined && trainer.step >= stopAt && !trainer.done) stoppedEarly = true;
  } catch (e) {
    // Let what is still on the GPU finish before anything else is recorded.
    const pending: InFlight | null = inFlight;
    if (pending) await Promise.allSettled([pending.result, pending.params]);
    if (e instanceof TrainingInterrupted) throw e;
    // "Good" holds: every checkpoint's values were checked finite before it was written
    // (writeTrainerCheckpoint refuses any other), and the resumed one passed its checksum.
    const where = `the last good checkpoint is ${checkpoint || 'none (none was written)'}`;
    if (engine.gpu.lost || e instanceof DeviceLostError) {
      // The device's own reason, not whichever call happened to notice it first.
      let why = (e as Error).message;
      try {
        engine.gpu.checkAlive('GPU');
      } catch (lost) {
        if (lost instanceof DeviceLostError) why = lost.message.slice('GPU: '.length);
      }
      throw new TrainingError(`the GPU device was lost near step ${pending?.step ??
        trainer.step - 1} (${why}). Training stopped; ${where}, and --resume continues from ` +
        'it on a working device', { checkpoint });
    }
    if (e instanceof FileSystemError) {
      // A write into --out failed (a full disk, a folder made read-only or removed): the
      // checkpoints already written are whole, since each is renamed into place complete.
      throw new TrainingError(`${e.message}. Training stopped at step ${trainer.step}; ` +
        (checkpoint ? `the last good checkpoint is still ${checkpoint}, and --resume ` +
          'continues from it' : 'no checkpoint was written yet'), { checkpoint });
    }
    if (!(e instanceof NonFiniteDetected) || !good) throw e;
    log(`\nnon-finite values after step ${e.step}; replaying from step ${good.step} to find ` +
      'the first bad tensor');
    let found: Finding | null = null;
    let first: string;
    try {
      found = await findFirstNonFinite(trainer, good, e.step, opts.hooks);
      first = found ? `The first non-finite value came at step ${found.step}, in ` +
        `${found.tensor}: ${found.detail}` : `The replay from step ${good.step} stayed ` +
        'finite, so the fault did not come back (an outside write or a hardware fault?)';
    } catch (err) {
      first = `Replaying from step ${good.step} to find the first bad tensor failed: ` +
        (err as Error).message;
    }
    throw new TrainingError(`training stopped at step ${e.step}: ${e.what}. ${first}. ` +
      `${where[0].toUpperCase()}${where.slice(1)}`,
      { step: found?.step ?? e.step, tensor: found?.tensor, checkpoint });
  } finally {
    if (live) log('');
    trainer.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  const steps = trainer.step - startStep;
  const finalLoss = (last as StepResult | null)?.loss ?? NaN;
  log(`trained ${steps} steps in ${formatTime(seconds)} (${(steps * B / seconds).toFixed(1)} ` +
    `images/s); final loss ${finalLoss.toFixed(4)}; checkpoint ${checkpoint}`);
  return { steps, finalLoss, seconds, imagesPerSecond: (steps * B) / seconds, checkpoint,
    stoppedEarly };
}

// ---- NaN diagnosis ----------------------------------------------------------------------
//
// Detection is cheap and in three places: the loss of every step, the parameters every
// logEvery steps (a comparison or a mask can drop a NaN, so a loss may stay finite over
// broken weights), and the whole state at every checkpoint, before it is written. Naming the
// culprit is left to a replay from the last good state, which costs nothing until a
// fault happens and, since a replay repeats a run bit for bit, finds the same fault.

interface Finding {
  step: number;
  /** The tensor, e.g. `softCrossEntropyBackward#812 [16, 5]` or a parameter's name. */
  tensor: string;
  detail: string;
}

interface Captured {
  op: string;
  inputs: Tensor[];
  outputs: Tensor[];
  mutates: Tensor[];
}

/**
 * Runs `fn` with every node it records captured and its outputs kept (not returned to
 * the pool), for the diagnosis to read them all afterwards. The engine's own record() is
 * wrapped on this instance for the call and restored after.
 */
function captureNodes<T>(engine: Engine, fn: () => T): { value: T; nodes: Captured[] } {
  const nodes: Captured[] = [];
  const original = engine.record;
  engine.record = (spec) => {
    const outputs = original.call(engine, spec);
    for (const t of outputs) t.keep();
    nodes.push({ op: spec.op, inputs: spec.inputs, outputs, mutates: spec.mutates ?? [] });
    return outputs;
  };
  try {
    return { value: fn(), nodes };
  } finally {
    delete (engine as { record?: unknown }).record;
  }
}

/**
 * Replays steps from the snapshot `good` up to `lastStep`, reading the whole state after
 * each; at the first step whose loss or state is not finite, goes back to the state
 * before it and reruns it with every intermediate kept, and names the first tensor, in
 * creation order, holding a NaN or an infinity. Replays are exact (a resumed run repeats
 * the same values bit for bit), so the fault comes back unless it came from outside.
 */
async function findFirstNonFinite(trainer: SwavTrainer, good: TrainerSnapshot,
  lastStep: number, hooks?: TrainHooks): Promise<Finding | null> {
  const engine = trainer.engine;
  restoreSnapshot(trainer, good);
  let before = good;
  for (let step = good.step; step <= lastStep; step++) {
    hooks?.beforeStep?.(trainer, step);
    const r = await trainer.runStep().result;
    const after = await snapshotTrainer(trainer);
    if (Number.isFinite(r.loss) && !firstNonFinite(after.tensors)) {
      before = after;
      continue;
    }
    // Step `step` goes bad: rerun it from the state before it, keeping everything.
    restoreSnapshot(trainer, before);
    hooks?.beforeStep?.(trainer, step);
    const start = await snapshotTrainer(trainer);
    const leaf = firstNonFinite(start.tensors);
    if (leaf) {
      return { step, tensor: leaf.name, detail: `it held ${leaf.value} at element ` +
        `${leaf.index} before any op of the step ran (written from outside the step)` };
    }
    const { nodes } = captureNodes(engine, () => trainer.runStep());
    const outputs = nodes.flatMap((n) => n.outputs);
    const values = await engine.run([], outputs);
    const names = stateNames(trainer);
    try {
      return describeFirst(names, nodes, values, step) ??
        await afterUpdates(trainer, names, nodes, step);
    } finally {
      for (const t of outputs) t.dispose();
    }
  }
  return null;
}

/** Names of the trainer's state tensors (parameters, buffers, optimizer slots, queue). */
function stateNames(trainer: SwavTrainer): Map<Tensor, string> {
  const state = trainer.stateTensors();
  const names = new Map<Tensor, string>();
  for (const [name, t] of Object.entries(state)) {
    // The step count is a fresh leaf per call (see snapshotTrainer): return it at once.
    if (name === STEP_KEY) t.dispose();
    else names.set(t, name);
  }
  return names;
}

/** The first captured output holding a NaN or an infinity, in creation order. */
function describeFirst(names: Map<Tensor, string>, nodes: Captured[], values: Float32Array[],
  step: number): Finding | null {
  // An optimizer update reads a parameter's gradient as its first input.
  const gradientOf = new Map<Tensor, string>();
  for (const n of nodes) {
    if (n.mutates.length && /Update$/.test(n.op) && n.inputs[0]) {
      gradientOf.set(n.inputs[0], names.get(n.mutates[0]) ?? n.mutates[0].describe());
    }
  }
  let k = 0;
  for (const [i, n] of nodes.entries()) {
    for (const [j, t] of n.outputs.entries()) {
      const v = values[k++];
      const at = firstBadValue(v);
      if (at < 0) continue;
      const gradient = gradientOf.get(t);
      const inputs = n.inputs.map((x) => names.get(x) ?? x.describe()).join(', ');
      return { step, tensor: t.describe(), detail: `${gradient ? `the gradient of ` +
        `${gradient}, ` : ''}output ${j} of '${n.op}' (inputs: ${inputs}), node ${i + 1} of ` +
        `the ${nodes.length} the step recorded; its element ${at} is ${v[at]}, and every ` +
        'value computed before it in the step was finite' };
    }
  }
  return null;
}

/** When every intermediate was finite: the first state tensor an in-place update broke. */
async function afterUpdates(trainer: SwavTrainer, names: Map<Tensor, string>,
  nodes: Captured[], step: number): Promise<Finding | null> {
  const bad = firstNonFinite((await snapshotTrainer(trainer)).tensors);
  if (!bad) return null;
  const writer = nodes.find((n) => n.mutates.some((t) => names.get(t) === bad.name));
  return { step, tensor: bad.name, detail: `its in-place update` +
    `${writer ? ` ('${writer.op}')` : ''} wrote ${bad.value} at element ${bad.index} from ` +
    'inputs that were all finite' };
}
