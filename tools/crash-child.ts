// A child process for the reliability tests: `train` runs a tiny SwAV config with a
// checkpoint after every step (the kill -9 test kills it at random points), `dispose`
// creates an engine, runs work, disposes it and reports its CPU time until Node exits.
//
//   npx tsx tools/crash-child.ts train --out DIR [--data DIR] [--resume] [--epochs N]
//     [--every N]
//   npx tsx tools/crash-child.ts dispose
//
// Every line on stdout is one JSON object, so the parent can follow the child's progress.

import { parseArgs } from 'node:util';
import { createEngine } from '../src/node.js';
import { DEFAULT_FASHION_MNIST_DIR } from '../src/data/fashion-node.js';
import { defaultConfig, validateConfig, type SwavConfig } from '../src/swav/config.js';
import { trainSwav, TrainingError } from '../src/swav/train-node.js';
import { mean } from '../src/ops/reduce.js';
import { matmul } from '../src/ops/matmul.js';
import * as ew from '../src/ops/elementwise.js';

function say(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ t: Date.now(), ...event })}\n`);
}

/** The run the kill test interrupts: 8 steps per epoch, crops small enough for ~20 ms steps. */
function crashConfig(epochs: number, every: number): SwavConfig {
  return validateConfig({
    ...defaultConfig, subset: 64, batchSize: 8, epochs, seed: 3, width: 2, hidden: 8,
    featDim: 4, prototypes: 5, queueLength: 16, freezePrototypesSteps: 3,
    crops: [{ count: 2, size: 16, scale: [0.4, 1] }, { count: 2, size: 8, scale: [0.2, 0.4] }],
    assign: [0, 1], checkpointEvery: every,
  });
}

async function train(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({ args: argv, options: {
    out: { type: 'string' }, data: { type: 'string' }, resume: { type: 'boolean' },
    epochs: { type: 'string' }, every: { type: 'string' },
  } });
  if (!v.out) throw new Error('crash-child train: --out DIR is needed');
  const engine = await createEngine();
  try {
    const summary = await trainSwav(engine, {
      config: crashConfig(Number(v.epochs ?? 4), Number(v.every ?? 1)),
      dataDir: v.data ?? DEFAULT_FASHION_MNIST_DIR, out: v.out, resume: !!v.resume, quiet: false,
      // Live lines come once per step: the parent times its kill from the first of them.
      log: (line, live) => say({ kind: live ? 'step' : 'log', line }),
    });
    say({ kind: 'done', steps: summary.steps, checkpoint: summary.checkpoint });
    return 0;
  } catch (e) {
    if (!(e instanceof TrainingError)) throw e;
    say({ kind: 'error', message: e.message });
    return 1;
  } finally {
    await engine.dispose();
  }
}

/** Some work on an engine, then dispose; CPU time is reported after dispose and at exit. */
async function dispose(): Promise<number> {
  const engine = await createEngine();
  const x = engine.tensor(Float32Array.from({ length: 64 * 64 }, (_, i) => (i % 7) / 7),
    [64, 64]);
  let total = 0;
  for (let i = 0; i < 20; i++) {
    const y = mean(ew.relu(matmul(x, ew.addScalar(x, i / 20))));
    total += (await y.read())[0];
  }
  await engine.dispose();
  const disposed = process.cpuUsage();
  say({ kind: 'disposed', total, cpu: disposed });
  // Half a second with nothing to do: a process that polls the GPU would burn it.
  setTimeout(() => say({ kind: 'idle', cpu: process.cpuUsage(disposed) }), 500);
  process.on('exit', () => say({ kind: 'exit', cpu: process.cpuUsage(disposed) }));
  return 0;
}

const [command, ...rest] = process.argv.slice(2);
const job = command === 'train' ? train(rest) : command === 'dispose' ? dispose() :
  Promise.reject(new Error(`crash-child: unknown command ${JSON.stringify(command)} ` +
    '(train or dispose)'));
job.then((code) => {
  process.exitCode = code;
}, (e: unknown) => {
  say({ kind: 'crash', message: (e as Error)?.stack ?? String(e) });
  process.exitCode = 2;
});
