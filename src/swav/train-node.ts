// The Node training loop: data from disk, progress on the terminal, metrics as JSON lines,
// atomic checkpoints, resume, a loss plot, and a clean stop on NaN or a lost device.

import { mkdirSync, readFileSync, writeFileSync, existsSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../graph/engine.js';
import { loadFashionMnist } from '../data/fashion-node.js';
import { findLatestCheckpoint } from '../io/checkpoint-node.js';
import { SwavTrainer, type StepResult } from './trainer.js';
import { validateConfig, type SwavConfig } from './config.js';
import { latestRun, saveTrainerCheckpoint } from './checkpoint-node.js';
import { lossCurveSvg } from './plot.js';

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
}

export interface TrainSummary {
  steps: number;
  finalLoss: number;
  seconds: number;
  imagesPerSecond: number;
  checkpoint: string;
  stoppedEarly: boolean;
}

export class TrainingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingError';
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

export async function trainSwav(engine: Engine, opts: TrainOptions): Promise<TrainSummary> {
  const log = opts.log ?? defaultLog;
  mkdirSync(opts.out, { recursive: true });
  let config = validateConfig(opts.config);
  const skipped = (p: string, why: string) => log(`skipping ${p}: ${why}`);
  const resumed = opts.resume ? await latestRun(opts.out, skipped) : null;
  if (opts.resume && !resumed) log(`no checkpoint in ${opts.out}: starting from step 0`);
  if (!opts.resume && await findLatestCheckpoint(opts.out)) {
    throw new TrainingError(`${opts.out} already holds checkpoints: pass --resume to ` +
      `continue that run, or choose another --out`);
  }
  if (resumed) config = validateConfig({ ...resumed.config, timeBudget: config.timeBudget });

  const data = await loadFashionMnist(opts.dataDir, 'train',
    config.subset > 0 ? { limit: config.subset } : {});
  const trainer = new SwavTrainer(engine, config, data);
  if (resumed) {
    trainer.load(resumed.tensors, resumed.position);
    log(`resumed from ${resumed.path} at step ${trainer.step}`);
  }
  const metricsPath = join(opts.out, 'metrics.jsonl');
  // Keep the metrics of the steps before the resumed one; drop any written after it.
  const kept = existsSync(metricsPath) && resumed ? readFileSync(metricsPath, 'utf8')
    .split('\n').filter((l) => l && (JSON.parse(l) as StepResult).step < trainer.step) : [];
  writeFileSync(metricsPath, kept.map((l) => `${l}\n`).join(''));
  const history = kept.map((l) => JSON.parse(l) as { step: number; loss: number });
  writeFileSync(join(opts.out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);

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

  const handle = (r: StepResult) => {
    if (!Number.isFinite(r.loss)) {
      throw new TrainingError(`loss is ${r.loss} at step ${r.step} (epoch ${r.epoch}); ` +
        `training stopped. The last good checkpoint is ${checkpoint || 'none (none was written)'}`);
    }
    last = r;
    const now = performance.now();
    recent.push(now);
    if (recent.length > 21) recent.shift();
    const perStep = recent.length > 1 ? (now - recent[0]) / (recent.length - 1) / 1000 : NaN;
    const row = { step: r.step, epoch: r.epoch, loss: r.loss, lr: r.lr,
      prototypesUsed: r.stats.used, assignmentEntropy: r.stats.entropy,
      imagesPerSecond: B / perStep, elapsed: (now - t0) / 1000 };
    appendFileSync(metricsPath, `${JSON.stringify(row)}\n`);
    history.push({ step: r.step, loss: r.loss });
    const left = (trainer.totalSteps - r.step - 1) * perStep;
    const line = `epoch ${r.epoch + 1}/${Math.ceil(config.epochs)} step ${r.step + 1}/` +
      `${trainer.totalSteps} loss ${r.loss.toFixed(4)} lr ${r.lr.toFixed(4)} protos ` +
      `${r.stats.used}/${config.prototypes} ` +
      (Number.isFinite(perStep) ? `${(B / perStep).toFixed(1)} img/s left ${formatTime(left)}`
        : 'starting');
    if (!opts.quiet) log(line, true);
    else if (r.step % Math.max(config.logEvery * 10, 50) === 0) log(line);
  };

  const save = async () => {
    checkpoint = await saveTrainerCheckpoint(opts.out, trainer);
    writeFileSync(join(opts.out, 'loss.svg'), lossCurveSvg(history, config.prototypes));
  };

  let inFlight: Promise<StepResult> | null = null;
  try {
    while (!trainer.done) {
      const { step, result } = trainer.runStep();
      // One step stays in flight: the GPU works on step s while step s-1's values are read.
      if (inFlight) handle(await inFlight);
      inFlight = result;
      const every = config.checkpointEvery;
      const boundary = (step + 1) % trainer.stepsPerEpoch === 0 ||
        (every > 0 && (step + 1) % every === 0);
      const overTime = config.timeBudget > 0 && (performance.now() - t0) / 1000 > config.timeBudget;
      if (boundary || overTime || trainer.done) {
        handle(await inFlight);
        inFlight = null;
        await save();
      }
      if (overTime && !trainer.done) {
        stoppedEarly = true;
        log(`\ntime budget of ${config.timeBudget} s reached at step ${trainer.step}; ` +
          `checkpoint written, --resume continues`);
        break;
      }
    }
    if (inFlight) handle(await inFlight);
  } finally {
    if (!opts.quiet) log('');
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
