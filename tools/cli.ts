#!/usr/bin/env node
// The swavgpu command: train SwAV, evaluate its features, or both (the main job).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createEngine } from '../src/node.js';
import { DEFAULT_FASHION_MNIST_DIR } from '../src/data/fashion-node.js';
import { defaultConfig, gpuRecipe, validateConfig, ConfigError, type SwavConfig }
  from '../src/swav/config.js';
import { trainSwav, TrainingError } from '../src/swav/train-node.js';
import { evaluateCheckpoint, printEvalTable } from '../src/eval/run-node.js';

const USAGE = `usage: swavgpu <command> [options]

commands:
  train   train SwAV on Fashion-MNIST, writing checkpoints, metrics and a loss plot
  eval    evaluate a checkpoint's frozen features (linear probe and kNN) against a
          randomly initialised backbone and raw pixels
  main    train with the defaults, then evaluate: the project's main job

train options:
  --data DIR             Fashion-MNIST IDX files (default ${DEFAULT_FASHION_MNIST_DIR})
  --out DIR              output folder (default runs/swav; main: runs/main)
  --resume               continue from the latest checkpoint in --out
  --epochs N             epochs, fractions allowed (default ${defaultConfig.epochs})
  --batch-size N         images per step (default ${defaultConfig.batchSize})
  --subset N             use the first N training images (default all)
  --seed N               seed of initialisation, data order and augmentation (default 0)
  --global-crops N       crops for assignment (default 2), --global-size PX (28),
  --global-scale LO,HI   (0.4,1)
  --local-crops N        small crops (default 4), --local-size PX (14), --local-scale LO,HI
                         (0.15,0.4)
  --jitter S             brightness/contrast strength (default ${defaultConfig.jitter.strength}),
  --jitter-p P           applied with probability P (${defaultConfig.jitter.p})
  --blur-p P             Gaussian blur probability (default 0)
  --width N              backbone width (default ${defaultConfig.width}); --blocks 1,1,1
  --hidden N             projection head hidden size (${defaultConfig.hidden});
  --feat-dim N           feature size (${defaultConfig.featDim})
  --prototypes K         number of prototypes (default ${defaultConfig.prototypes})
  --temperature T        softmax temperature (default ${defaultConfig.temperature})
  --epsilon E            Sinkhorn epsilon (default ${defaultConfig.epsilon})
  --sinkhorn-iterations N  (default ${defaultConfig.sinkhornIterations})
  --queue-length N       queue rows per assignment crop, 0 for none (default 0)
  --queue-start E        epoch the queue starts at (default 0)
  --lr LR                base learning rate (default ${defaultConfig.baseLr}); --final-lr LR
  --warmup-epochs E      linear warm-up (default ${defaultConfig.warmupEpochs})
  --weight-decay W       (default ${defaultConfig.weightDecay}); --momentum M (0.9)
  --lars-trust C         LARS trust coefficient (default 0.001)
  --exclude-bias-norm    no LARS adaptation or weight decay for biases and norms
  --freeze-prototypes N  steps with frozen prototypes (default ${defaultConfig.freezePrototypesSteps})
  --checkpoint-every N   steps between checkpoints (default ${defaultConfig.checkpointEvery})
  --time-budget S        stop after S seconds of training, checkpoint kept (default none;
                         main: 1200)
  --gpu-recipe           start from the longer recipe for a real GPU (see README)
  --quiet                plain log lines instead of a live progress line

eval options:
  --checkpoint PATH      a checkpoint file, or a run folder (its latest checkpoint)
  --data DIR             as above
  --json FILE            also write the results as JSON
  --bank N               training images in the kNN bank and the probe's training set
                         (default 10000; 0 for all 60000)
  --test N               test images (default 10000)
  --probe-epochs N       linear probe epochs (default 20)
  --k N                  kNN neighbours (default 20)

SWAVGPU_DEBUG=1..4 prints engine detail (see README).`;

const options = {
  help: { type: 'boolean', short: 'h' },
  data: { type: 'string' },
  out: { type: 'string' },
  resume: { type: 'boolean' },
  quiet: { type: 'boolean' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  subset: { type: 'string' },
  seed: { type: 'string' },
  'global-crops': { type: 'string' },
  'global-size': { type: 'string' },
  'global-scale': { type: 'string' },
  'local-crops': { type: 'string' },
  'local-size': { type: 'string' },
  'local-scale': { type: 'string' },
  jitter: { type: 'string' },
  'jitter-p': { type: 'string' },
  'blur-p': { type: 'string' },
  width: { type: 'string' },
  blocks: { type: 'string' },
  hidden: { type: 'string' },
  'feat-dim': { type: 'string' },
  prototypes: { type: 'string' },
  temperature: { type: 'string' },
  epsilon: { type: 'string' },
  'sinkhorn-iterations': { type: 'string' },
  'queue-length': { type: 'string' },
  'queue-start': { type: 'string' },
  lr: { type: 'string' },
  'final-lr': { type: 'string' },
  'warmup-epochs': { type: 'string' },
  'weight-decay': { type: 'string' },
  momentum: { type: 'string' },
  'lars-trust': { type: 'string' },
  'exclude-bias-norm': { type: 'boolean' },
  'freeze-prototypes': { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'time-budget': { type: 'string' },
  'gpu-recipe': { type: 'boolean' },
  checkpoint: { type: 'string' },
  json: { type: 'string' },
  bank: { type: 'string' },
  test: { type: 'string' },
  'probe-epochs': { type: 'string' },
  k: { type: 'string' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parse>['values'];

function parse(argv: string[]) {
  return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
}

function num(v: Values, name: keyof Values, fallback: number): number {
  const s = v[name];
  if (s === undefined) return fallback;
  const n = Number(s);
  if (typeof s !== 'string' || s.trim() === '' || !Number.isFinite(n)) {
    throw new ConfigError(`--${name}: expected a number, got ${JSON.stringify(s)}`);
  }
  return n;
}

function list(v: Values, name: keyof Values, fallback: number[], len?: number): number[] {
  const s = v[name];
  if (s === undefined) return fallback;
  const parts = String(s).split(',').map((x) => Number(x));
  if (parts.some((x) => !Number.isFinite(x)) || (len !== undefined && parts.length !== len)) {
    throw new ConfigError(`--${name}: expected ${len ?? 'a list of'} comma-separated numbers, ` +
      `got ${JSON.stringify(s)}`);
  }
  return parts;
}

export function configFromArgs(v: Values): SwavConfig {
  const base: SwavConfig = { ...defaultConfig, ...(v['gpu-recipe'] ? gpuRecipe : {}) };
  const [g, l] = [base.crops[0], base.crops[1] ?? { count: 0, size: 14, scale: [0.15, 0.4] }];
  const crops = [
    { count: num(v, 'global-crops', g.count), size: num(v, 'global-size', g.size),
      scale: list(v, 'global-scale', g.scale, 2) as [number, number] },
    { count: num(v, 'local-crops', l.count), size: num(v, 'local-size', l.size),
      scale: list(v, 'local-scale', l.scale, 2) as [number, number] },
  ].filter((c) => c.count > 0);
  const assignCount = Math.min(2, crops[0].count);
  return validateConfig({
    ...base,
    epochs: num(v, 'epochs', base.epochs),
    batchSize: num(v, 'batch-size', base.batchSize),
    subset: num(v, 'subset', base.subset),
    seed: num(v, 'seed', base.seed),
    crops,
    assign: Array.from({ length: assignCount }, (_, i) => i),
    jitter: { strength: num(v, 'jitter', base.jitter.strength), p: num(v, 'jitter-p',
      base.jitter.p) },
    blur: { ...base.blur, p: num(v, 'blur-p', base.blur.p) },
    width: num(v, 'width', base.width),
    blocks: list(v, 'blocks', base.blocks),
    hidden: num(v, 'hidden', base.hidden),
    featDim: num(v, 'feat-dim', base.featDim),
    prototypes: num(v, 'prototypes', base.prototypes),
    temperature: num(v, 'temperature', base.temperature),
    epsilon: num(v, 'epsilon', base.epsilon),
    sinkhornIterations: num(v, 'sinkhorn-iterations', base.sinkhornIterations),
    queueLength: num(v, 'queue-length', base.queueLength),
    queueStart: num(v, 'queue-start', base.queueStart),
    baseLr: num(v, 'lr', base.baseLr),
    finalLr: num(v, 'final-lr', base.finalLr),
    warmupEpochs: num(v, 'warmup-epochs', base.warmupEpochs),
    weightDecay: num(v, 'weight-decay', base.weightDecay),
    momentum: num(v, 'momentum', base.momentum),
    larsTrust: num(v, 'lars-trust', base.larsTrust),
    excludeBiasNorm: v['exclude-bias-norm'] ?? base.excludeBiasNorm,
    freezePrototypesSteps: num(v, 'freeze-prototypes', base.freezePrototypesSteps),
    checkpointEvery: num(v, 'checkpoint-every', base.checkpointEvery),
    timeBudget: num(v, 'time-budget', base.timeBudget),
  });
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    process.stderr.write(`swavgpu: ${(e as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  const command = positionals[0];
  if (v.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return command || v.help ? 0 : 2;
  }
  if (!['train', 'eval', 'main'].includes(command) || positionals.length > 1) {
    process.stderr.write(`swavgpu: unknown command ${JSON.stringify(positionals.join(' '))}\n\n` +
      `${USAGE}\n`);
    return 2;
  }
  const dataDir = v.data ?? DEFAULT_FASHION_MNIST_DIR;
  const engine = await createEngine({
    tune: true,
    onLost: (m) => process.stderr.write(`\nswavgpu: ${m}\n`),
  });
  try {
    let checkpoint = v.checkpoint;
    const out = v.out ?? (command === 'main' ? 'runs/main' : 'runs/swav');
    if (command === 'train' || command === 'main') {
      const config = configFromArgs(v);
      // The main job must end within 30 minutes on a 2-core machine without a GPU: its
      // training stops at 20 minutes even where the machine is slower than ours.
      if (command === 'main' && v['time-budget'] === undefined) config.timeBudget = 1200;
      const summary = await trainSwav(engine, { config, dataDir, out, resume: !!v.resume,
        quiet: !!v.quiet });
      checkpoint = summary.checkpoint;
    }
    if (command === 'eval' || command === 'main') {
      if (!checkpoint) throw new ConfigError('--checkpoint: needed (a file or a run folder)');
      const result = await evaluateCheckpoint(engine, {
        checkpoint, dataDir, bank: num(v, 'bank', 10000), test: num(v, 'test', 10000),
        probeEpochs: num(v, 'probe-epochs', 20), k: num(v, 'k', 20),
        json: v.json ?? (command === 'main' ? `${out}/eval.json` : undefined),
        log: (l) => process.stderr.write(`${l}\n`),
      });
      process.stdout.write(printEvalTable(result));
    }
    return 0;
  } finally {
    await engine.dispose();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (e: unknown) => {
  const known = e instanceof ConfigError || e instanceof TrainingError ||
    (e instanceof Error && /Error$/.test(e.name) && e.name !== 'Error' && e.name !== 'TypeError');
  process.stderr.write(`\nswavgpu: ${known ? (e as Error).message : (e as Error)?.stack ?? e}\n`);
  process.exitCode = 1;
});
