// Faults during training: a NaN or infinity (in the loss, in a state the loss does not
// show yet, or written into a parameter from outside) stops the run with the step and the
// first tensor that went bad, and no checkpoint is written after it; a lost device stops it
// with a clear message, the checkpoint kept, and --resume continues on a new device.

import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.js';
import { checkpointStep, findLatestCheckpoint } from '../../src/io/checkpoint-node.js';
import { defaultConfig, validateConfig, type SwavConfig } from '../../src/swav/config.js';
import { firstNonFinite } from '../../src/io/safetensors.js';
import { trainSwav, TrainingError, type TrainOptions } from '../../src/swav/train-node.js';
import type { SwavTrainer } from '../../src/swav/trainer.js';
import { useEngine } from '../helpers/gpu.js';
import { writeSyntheticMnist } from './synthetic.js';

const engine = useEngine();
const work = mkdtempSync(join(tmpdir(), 'swavgpu-faults-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const DATA = writeSyntheticMnist(join(work, 'data'));

/** 64 images in batches of 8: 8 steps; one crop size keeps each step short. */
const BASE: SwavConfig = validateConfig({
  ...defaultConfig, subset: 64, batchSize: 8, epochs: 1, seed: 5, width: 2, hidden: 8,
  featDim: 4, prototypes: 5, freezePrototypesSteps: 0, logEvery: 2, checkpointEvery: 0,
  crops: [{ count: 2, size: 16, scale: [0.4, 1] }], assign: [0, 1],
});

let runs = 0;
async function failingRun(config: Partial<SwavConfig>, opts: Partial<TrainOptions> = {}):
  Promise<{ out: string; error: TrainingError; logs: string[] }> {
  const out = join(work, `run${runs++}`);
  const logs: string[] = [];
  const err = await trainSwav(engine(), {
    config: { ...BASE, ...config }, dataDir: DATA, out, resume: false,
    quiet: true, log: (l) => logs.push(l), ...opts,
  }).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(TrainingError);
  return { out, error: err as TrainingError, logs };
}

/** Steps of the checkpoints in a run folder, sorted. */
function checkpointSteps(dir: string): number[] {
  return readdirSync(dir).map(checkpointStep).filter((s): s is number => s !== undefined)
    .sort((a, b) => a - b);
}

describe('a NaN or infinity stops training', () => {
  // A NaN in the optimizer's state (momentum) at step 3: that step's update makes a
  // parameter NaN after its loss was computed, so the loss of step 3 is still finite; only
  // the parameter check (every logEvery = 2 steps: after steps 1, 3, ...) or the check of the
  // state before a checkpoint can see it in that step.
  const poisonMomentum = { hooks: { beforeStep: (trainer: SwavTrainer, step: number) => {
    if (step !== 3) return;
    const t = trainer.optimizer.state()['optim.backbone.layer1.0.conv1.weight.momentum_buffer'];
    t.write(Float32Array.from({ length: t.size }, (_, i) => (i === 2 ? NaN : 0)));
  } } };

  it('a NaN the loss does not show yet: found by the parameter check, named', async () => {
    const { out, error } = await failingRun({}, poisonMomentum);
    expect(error.message).toMatch(new RegExp('^training stopped at step 3: parameter ' +
      'backbone\\.layer1\\.0\\.conv1\\.weight holds NaN at element 2 after it ' +
      '\\(the loss, [\\d.e+-]+, was finite\\)'));
    expect(error.message).toContain('The first non-finite value came at step 3, in ' +
      'optim.backbone.layer1.0.conv1.weight.momentum_buffer: it held NaN at element 2 before ' +
      'any op of the step ran');
    expect(error.details.step).toBe(3);
    expect(error.details.tensor).toBe('optim.backbone.layer1.0.conv1.weight.momentum_buffer');
    expect(error.message).toMatch(/The last good checkpoint is none \(none was written\)$/);
    expect(checkpointSteps(out)).toEqual([]);
  });

  it('the same fault with a checkpoint after every step: the bad state is never saved',
    async () => {
      const { out, error } = await failingRun({ checkpointEvery: 1, logEvery: 100 },
        poisonMomentum);
      // Found when reading the state for the checkpoint after step 3, which is not written.
      expect(error.message).toMatch(/^training stopped at step 3: \S+ holds NaN at element \d+ /);
      expect(error.message).toMatch(/found when reading it for a checkpoint/);
      expect(error.message).toContain('in optim.backbone.layer1.0.conv1.weight.momentum_buffer');
      expect(checkpointSteps(out)).toEqual([1, 2, 3]);
      expect(error.message).toContain(`last good checkpoint is ${join(out,
        'ckpt-000003.safetensors')}`);
      const latest = await findLatestCheckpoint(out);
      expect(latest?.step).toBe(3);
      expect(firstNonFinite(latest!.tensors)).toBeNull();
    });

  it('a NaN loss from a huge learning rate: the first tensor is named', async () => {
    // lr 1e30 throws the prototypes to ~1e27 at step 0; at step 1 their squared norm
    // overflows in l2Normalize, the first op of the step, and the loss is NaN.
    const { error } = await failingRun({ baseLr: 1e30, finalLr: 0, warmupEpochs: 0,
      logEvery: 100 });
    expect(error.message).toMatch(/^training stopped at step 1: the loss is NaN\. /);
    expect(error.message).toMatch(/came at step 1, in l2Normalize#\d+ \[5\]: output 1 of /);
    expect(error.message).toMatch(/\(inputs: prototypes\.weight\), node 1 of the \d+ /);
  });

  it('a NaN written into a parameter after a checkpoint: that parameter, that step',
    async () => {
      const { out, error } = await failingRun({ checkpointEvery: 2 }, {
        hooks: {
          beforeStep: (trainer, step) => {
            if (step !== 5) return;
            const w = trainer.model.prototypes;
            w.write(Float32Array.from({ length: w.size }, (_, i) => (i === 3 ? NaN : 0.1)));
          },
        },
      });
      expect(error.message).toMatch(/^training stopped at step 5: /);
      expect(error.message).toMatch(new RegExp('came at step 5, in prototypes\\.weight: it ' +
        'held NaN at element 3 before any op of the step ran'));
      expect(error.details).toMatchObject({ step: 5, tensor: 'prototypes.weight' });
      expect(checkpointSteps(out)).toEqual([2, 4]);
      expect(error.message).toContain(join(out, 'ckpt-000004.safetensors'));
      expect(firstNonFinite((await findLatestCheckpoint(out))!.tensors)).toBeNull();
    });
});

describe('a lost device', () => {
  it('ends the run with a clear message; the checkpoint stays and --resume continues',
    async () => {
      const out = join(work, 'lost');
      const lostEngine = await createEngine();
      const first = await trainSwav(lostEngine, { config: BASE, dataDir: DATA,
        out, resume: false, quiet: true, log: () => {}, stopAtStep: 3 });
      expect(first.checkpoint).toBe(join(out, 'ckpt-000003.safetensors'));
      const logs: string[] = [];
      // Step 4 is in flight when the device goes, just before step 5 is recorded.
      const err = await trainSwav(lostEngine, { config: BASE, dataDir: DATA,
        out, resume: true, quiet: true, log: (l) => logs.push(l), hooks: {
          beforeStep: (_, step) => {
            if (step === 5) lostEngine.gpu.device.destroy();
          },
        } }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(TrainingError);
      process.stderr.write(`device lost: ${(err as Error).message}\n`);
      expect((err as Error).message)
        .toMatch(/^the GPU device was lost near step [56] \(GPU device lost \(destroyed\): /);
      expect((err as Error).message).toContain(`the last good checkpoint is ${first.checkpoint}` +
        ', and --resume continues from it on a working device');
      expect(checkpointSteps(out)).toEqual([3]);
      await lostEngine.dispose();

      const fresh = await createEngine();
      try {
        const resumed = await trainSwav(fresh, { config: BASE, dataDir: DATA,
          out, resume: true, quiet: true, log: (l) => logs.push(l) });
        expect(resumed.steps).toBe(5);
        expect(logs.join('\n')).toContain(`resumed from ${first.checkpoint} at step 3`);
        expect(existsSync(join(out, 'ckpt-000008.safetensors'))).toBe(true);
      } finally {
        await fresh.dispose();
      }
    });
});
