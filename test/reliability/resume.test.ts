// Exact resume and determinism of the Node training loop: a run stopped at a step limit
// and by its time budget, then resumed, gives the same losses and final state bit for bit
// as an uninterrupted one, queue, frozen prototypes and lazily made momentum included;
// and two runs with the same seed agree bit for bit.

import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync }
  from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/io/checkpoint-node.js';
import { defaultConfig, validateConfig, type SwavConfig } from '../../src/swav/config.js';
import { CONFIG_KEY, POSITION_KEY } from '../../src/swav/checkpoint-node.js';
import { trainSwav, type TrainOptions } from '../../src/swav/train-node.js';
import { useEngine } from '../helpers/gpu.js';
import { writeSyntheticMnist } from './synthetic.js';

const engine = useEngine();
const work = mkdtempSync(join(tmpdir(), 'swavgpu-resume-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const DATA = writeSyntheticMnist(join(work, 'data'));

/**
 * 32 images in batches of 8: 4 steps per epoch, 12 steps. The queue (2 batches long) is
 * full and used from step 2; the prototypes are frozen for 3 steps, so their momentum
 * buffer first exists after a stop at step 2; two crop sizes run two backbone passes.
 */
const CONFIG: SwavConfig = validateConfig({
  ...defaultConfig, subset: 32, batchSize: 8, epochs: 3, seed: 11, width: 2, hidden: 8,
  featDim: 4, prototypes: 5, queueLength: 16, freezePrototypesSteps: 3, checkpointEvery: 0,
  crops: [{ count: 2, size: 16, scale: [0.4, 1] }, { count: 2, size: 8, scale: [0.2, 0.4] }],
  assign: [0, 1],
});
const STEPS = 12;

type Leg = Partial<Pick<TrainOptions, 'stopAtStep'>> & { timeBudget?: number };

/** Trains in `dir` in legs (each but the first resumes); returns each leg's summary. */
async function train(name: string, legs: Leg[], config = CONFIG) {
  const out = join(work, name);
  const summaries = [];
  for (const [i, leg] of legs.entries()) {
    summaries.push(await trainSwav(engine(), {
      config: { ...config, timeBudget: leg.timeBudget ?? 0 }, dataDir: DATA,
      out, resume: i > 0, quiet: true, stopAtStep: leg.stopAtStep, log: () => {},
    }));
  }
  return { out, summaries };
}

/** [step, float32 bits of the loss] per metrics row, in file order. */
function lossBits(dir: string): [number, number][] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const row = JSON.parse(l) as { step: number; loss: number };
    return [row.step, new Uint32Array(Float32Array.of(row.loss).buffer)[0]];
  });
}

async function finalState(dir: string, step = STEPS) {
  return loadCheckpoint(join(dir, `ckpt-${String(step).padStart(6, '0')}.safetensors`));
}

function sameBits(a: Awaited<ReturnType<typeof finalState>>,
  b: Awaited<ReturnType<typeof finalState>>): void {
  expect(Object.keys(a.tensors).sort()).toEqual(Object.keys(b.tensors).sort());
  for (const [name, t] of Object.entries(a.tensors)) {
    const u = b.tensors[name].data;
    expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
      .equals(Buffer.from(u.buffer, u.byteOffset, u.byteLength)), name).toBe(true);
  }
}

describe('resume', () => {
  let whole: { out: string } | undefined;

  it('an uninterrupted run: 12 finite losses, one row per step', async () => {
    whole = await train('whole', [{}]);
    const rows = lossBits(whole.out);
    expect(rows.map(([s]) => s)).toEqual([...Array(STEPS).keys()]);
  });

  it('stopped at steps 2 and 7 and by a time budget at 3, then resumed: the same bits',
    async () => {
      const legs = await train('legs', [{ stopAtStep: 2 }, { timeBudget: 1e-6 },
        { stopAtStep: 7 }, {}]);
      expect(legs.summaries.map((s) => [s.steps, s.stoppedEarly]))
        .toEqual([[2, true], [1, true], [4, true], [5, false]]);
      expect(lossBits(legs.out)).toEqual(lossBits(whole!.out));
      sameBits(await finalState(legs.out), await finalState(whole!.out));
    });

  it('a checkpoint holds what the next step depends on', async () => {
    const legs = join(work, 'legs');
    const ck = await loadCheckpoint(join(legs, 'ckpt-000007.safetensors'));
    const names = Object.keys(ck.tensors);
    // Optimizer state: the step count (the schedule's position) and momentum, prototypes'
    // too once they moved; the queue's rows; the batch norms' running statistics.
    expect(names).toEqual(expect.arrayContaining(['optim.step', 'queue.0', 'queue.1',
      'optim.prototypes.weight.momentum_buffer', 'backbone.bn1.running_mean']));
    expect(Array.from(ck.tensors['optim.step'].data as Float32Array)).toEqual([7]);
    // Data order and augmentation are drawn from streams keyed by (seed, epoch, step):
    // the seed in the config and the step in the position restore them both.
    expect(JSON.parse(ck.metadata[CONFIG_KEY]).seed).toBe(CONFIG.seed);
    expect(JSON.parse(ck.metadata[POSITION_KEY])).toEqual({ step: 7,
      queue: { filled: 16, next: (7 * 8) % 16 } });
  });
});

describe('what a kill leaves behind', () => {
  it('a cut metrics line and a dead writer\'s temporary file: resume cleans up, loses nothing',
    async () => {
      const { out } = await train('cut', [{ stopAtStep: 2 }]);
      // A row the kill cut short, and a checkpoint write by a process that no longer exists.
      appendFileSync(join(out, 'metrics.jsonl'), '{"step":2,"epoch":0,"lo');
      const temp = join(out, 'ckpt-000003.safetensors.tmp-4194303-0123456789ab');
      writeFileSync(temp, 'half a checkpoint');
      await trainSwav(engine(), { config: CONFIG, dataDir: DATA, out,
        resume: true, quiet: true, stopAtStep: 4, log: () => {} });
      expect(existsSync(temp)).toBe(false);
      expect(lossBits(out)).toEqual(lossBits(join(work, 'whole')).slice(0, 4));
    });
});

describe('determinism', () => {
  it('a second run with the same seed gives the same losses and state, bit for bit',
    async () => {
      // The pool now holds buffers of earlier runs: results must not depend on them.
      const again = await train('again', [{}]);
      expect(lossBits(again.out)).toEqual(lossBits(join(work, 'whole')));
      sameBits(await finalState(again.out), await finalState(join(work, 'whole')));
    });

  it('another seed gives other losses (the comparison can fail)', async () => {
    const other = await train('other', [{ stopAtStep: 2 }], { ...CONFIG, seed: 12 });
    expect(lossBits(other.out)).not.toEqual(lossBits(join(work, 'whole')).slice(0, 2));
  });
});
