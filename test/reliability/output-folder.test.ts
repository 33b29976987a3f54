// trainSwav and its output folder: a write that fails mid-run names the file, the folder,
// the OS's reason and the checkpoint still good; a folder locked by another training is
// refused before any data or GPU work, and the lock goes when the run ends, even in error.

import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync,
  writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FolderLockedError, LOCK_NAME, lockFolder } from '../../src/io/checkpoint-node.js';
import { defaultConfig, validateConfig, type SwavConfig } from '../../src/swav/config.js';
import { trainSwav, TrainingError, type TrainOptions } from '../../src/swav/train-node.js';
import { evaluateCheckpoint } from '../../src/eval/run-node.js';
import { FileSystemError } from '../../src/io/file-error.js';
import { useEngine } from '../helpers/gpu.js';
import { writeSyntheticMnist } from './synthetic.js';

const engine = useEngine();
const work = mkdtempSync(join(tmpdir(), 'swavgpu-outdir-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const DATA = writeSyntheticMnist(join(work, 'data'), 32);

/** 32 images in batches of 8: 4 steps, a checkpoint after every second. */
const BASE: SwavConfig = validateConfig({
  ...defaultConfig, subset: 32, batchSize: 8, epochs: 1, seed: 5, width: 2, hidden: 8,
  featDim: 4, prototypes: 5, freezePrototypesSteps: 0, logEvery: 2, checkpointEvery: 2,
  crops: [{ count: 2, size: 16, scale: [0.4, 1] }], assign: [0, 1],
});

let runs = 0;
function options(opts: Partial<TrainOptions> = {}): TrainOptions {
  return { config: BASE, dataDir: DATA, out: join(work, `run${runs++}`), resume: false,
    quiet: true, log: () => undefined, ...opts };
}

/** A run whose hook puts a folder where the file `name` is to be written before `step`. */
async function blockedRun(name: string, step: number):
  Promise<{ out: string; error: TrainingError }> {
  const opts = options();
  const error = await trainSwav(engine(), { ...opts, hooks: { beforeStep: (_, s) => {
    if (s !== step) return;
    rmSync(join(opts.out, name), { force: true });
    mkdirSync(join(opts.out, name));
  } } }).then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(TrainingError);
  return { out: opts.out, error: error as TrainingError };
}

describe('a write into --out that fails stops training, saying what was kept', () => {
  it('a checkpoint that cannot be written: it, the folder, EISDIR, the last good one',
    async () => {
      const { out, error } = await blockedRun('ckpt-000004.safetensors', 3);
      const last = join(out, 'ckpt-000002.safetensors');
      expect(error.message).toBe(`${join(out, 'ckpt-000004.safetensors')}: cannot write the ` +
        `checkpoint in the folder ${out}: EISDIR (a folder of that name is in the way). ` +
        `Training stopped at step 4; the last good checkpoint is still ${last}, and --resume ` +
        'continues from it');
      expect(error.details.checkpoint).toBe(last);
      // No temporary file and no lock are left behind.
      expect(readdirSync(out).sort()).toEqual(['ckpt-000002.safetensors',
        'ckpt-000004.safetensors', 'config.json', 'loss.svg', 'metrics.jsonl']);
    });

  it('before the first checkpoint: says none was written yet', async () => {
    const { out, error } = await blockedRun('ckpt-000002.safetensors', 1);
    expect(error.message).toBe(`${join(out, 'ckpt-000002.safetensors')}: cannot write the ` +
      `checkpoint in the folder ${out}: EISDIR (a folder of that name is in the way). ` +
      'Training stopped at step 2; no checkpoint was written yet');
    expect(error.details.checkpoint).toBe('');
  });

  it('the metrics file: the append names metrics.jsonl and the checkpoint kept', async () => {
    const { out, error } = await blockedRun('metrics.jsonl', 3);
    expect(error.message).toMatch(new RegExp(`^${join(out, 'metrics\\.jsonl')}: cannot ` +
      `append to the metrics in the folder ${out}: EISDIR \\(a folder of that name is in ` +
      'the way\\)\\. Training stopped at step \\d; the last good checkpoint is still ' +
      `${join(out, 'ckpt-000002\\.safetensors')}, and --resume continues from it$`));
  });
});

describe('a fresh run into a folder that holds checkpoints', () => {
  it('is refused, a checkpoint that does not load included, and touches nothing there',
    async () => {
      const first = options();
      await trainSwav(engine(), first);
      const again = await trainSwav(engine(), { ...first }).then(() => null, (e: unknown) => e);
      expect(again).toBeInstanceOf(TrainingError);
      expect((again as Error).message).toBe(`${first.out} already holds checkpoints ` +
        `(${join(first.out, 'ckpt-000004.safetensors')} and 1 more): pass --resume to ` +
        'continue that run (from the newest that loads), or choose another --out');
      // Only a broken checkpoint beside the run's metrics: refused all the same, and the
      // metrics and config are left as they were.
      const out = join(work, 'broken');
      mkdirSync(out);
      writeFileSync(join(out, 'ckpt-000010.safetensors'), 'not a checkpoint');
      writeFileSync(join(out, 'metrics.jsonl'), '{"step":0}\n');
      const broken = await trainSwav(engine(), { ...options(), out })
        .then(() => null, (e: unknown) => e);
      expect((broken as Error).message).toMatch(/already holds checkpoints \(.*ckpt-000010/);
      expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).toBe('{"step":0}\n');
      expect(readdirSync(out).sort()).toEqual(['ckpt-000010.safetensors', 'metrics.jsonl']);
    });
});

describe('evaluation results that cannot be written', () => {
  it('name the file, the folder and the reason, and carry the scores', async () => {
    const run = options();
    await trainSwav(engine(), run);
    // The synthetic training images stand in for the test set too.
    for (const kind of ['images-idx3', 'labels-idx1']) {
      copyFileSync(join(DATA, `train-${kind}-ubyte`), join(DATA, `t10k-${kind}-ubyte`));
    }
    const json = join(work, 'no-such-folder', 'eval.json');
    const error = await evaluateCheckpoint(engine(), { checkpoint: run.out, dataDir: DATA,
      bank: 32, test: 32, k: 3, probeEpochs: 2, json, log: () => undefined })
      .then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(FileSystemError);
    expect((error as Error).message).toMatch(new RegExp(`^${json}: cannot write the ` +
      'evaluation results in the folder .*no-such-folder: ENOENT .*; the results were ' +
      'linear \\{"swav":[0-9.]+,"random":[0-9.]+,"pixels":[0-9.]+\\}, kNN \\{'));
  });
});

describe('the lock on --out', () => {
  it('a folder locked by another training is refused before the data is read', async () => {
    const opts = options({ dataDir: join(work, 'no-data-here') });
    mkdirSync(opts.out);
    const held = lockFolder(opts.out);
    const err = await trainSwav(engine(), opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FolderLockedError);
    expect((err as Error).message).toMatch(new RegExp(`^${opts.out}: in use: process ` +
      `${process.pid} \\(this process\\) has been training into it since `));
    expect(readdirSync(opts.out)).toEqual([LOCK_NAME]);
    held.release();
    // Free now: the next error is the data's, and the run's own lock is gone after it.
    await expect(trainSwav(engine(), opts)).rejects.toThrow(/no-data-here/);
    expect(existsSync(join(opts.out, LOCK_NAME))).toBe(false);
  });

  it('held while training, released at the end', async () => {
    const opts = options();
    const seen: boolean[] = [];
    await trainSwav(engine(), { ...opts, hooks: { beforeStep: () => {
      seen.push(existsSync(join(opts.out, LOCK_NAME)));
    } } });
    expect(seen).toEqual([true, true, true, true]);
    expect(existsSync(join(opts.out, LOCK_NAME))).toBe(false);
  });
});
