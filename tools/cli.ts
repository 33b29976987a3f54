#!/usr/bin/env node
// The swavgpu command: train SwAV, evaluate its features, or both (the main job).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { createEngine } from '../src/node.js';
import { DEFAULT_FASHION_MNIST_DIR } from '../src/data/fashion-node.js';
import { defaultConfig, gpuRecipe, validateConfig, ConfigError, type SwavConfig }
  from '../src/swav/config.js';
import { lockOutput, trainSwav, TrainingError, TrainingInterrupted }
  from '../src/swav/train-node.js';
import { CheckpointError, LOCK_NAME } from '../src/io/checkpoint-node.js';
import { evaluateCheckpoint, printEvalTable } from '../src/eval/run-node.js';

const USAGE = `usage: swavgpu <command> [options]

commands:
  train   train SwAV on Fashion-MNIST, writing checkpoints, metrics and a loss plot
  eval    evaluate a checkpoint's frozen features (linear probe and kNN) against a
          randomly initialised backbone and raw pixels
  main    train with the defaults (2 epochs, at most 20 minutes), then evaluate: the
          project's main job

train options:
  --data DIR             Fashion-MNIST IDX files (default ${DEFAULT_FASHION_MNIST_DIR})
  --out DIR              output folder (default runs/swav; main: runs/main)
  --resume               continue from the latest complete checkpoint in --out, with its
                         settings; only --epochs, --time-budget, --checkpoint-every,
                         --quiet and --data may change (other options given must match).
                         A new --epochs changes the total steps, and so the cosine
                         learning-rate schedule from the resumed step on
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
                         the cosine schedule's end (default ${defaultConfig.finalLr})
  --warmup-epochs E      linear warm-up (default ${defaultConfig.warmupEpochs})
  --weight-decay W       (default ${defaultConfig.weightDecay}); --momentum M (0.9)
  --lars-trust C         LARS trust coefficient (default 0.001)
  --exclude-bias-norm    no LARS adaptation or weight decay for biases and norms
  --freeze-prototypes N  steps with frozen prototypes
                         (default ${defaultConfig.freezePrototypesSteps})
  --checkpoint-every N   steps between checkpoints, the 3 newest kept
                         (default ${defaultConfig.checkpointEvery})
  --time-budget S        stop after S seconds of training, checkpoint kept (default none;
                         main: 1200)
  --gpu-recipe           start from the longer recipe for a real GPU (see README)
  --quiet                plain log lines instead of a live progress line

A training holds --out locked (${LOCK_NAME}) while it runs: a second training into the
same folder is refused, naming the process that holds it. A lock left by a process that
no longer runs is taken over, with a note.

eval options:
  --checkpoint PATH      a checkpoint file, or a run folder (its latest checkpoint)
  --data DIR             as above
  --json FILE            also write the results as JSON
  --bank N               training images in the kNN bank and the probe's training set
                         (default 10000; 0 for all 60000)
  --test N               test images (default 10000, all of them; 0 for all too)
  --probe-epochs N       linear probe epochs (default 20)
  --k N                  kNN neighbours (default 20)

main options: the train options and the eval options but --checkpoint (main evaluates the
checkpoint it trained); its --json defaults to <out>/eval.json.

Ctrl-C stops training after the step in flight (exit 130); --resume continues from the
last checkpoint. SWAVGPU_DEBUG=1..4 prints engine detail (see README) and, from 1, the stack
of an internal error.`;

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
type Option = keyof typeof options;

/** The options each command takes; any other given is refused before any work. */
const EVAL_OPTIONS: Option[] = ['help', 'checkpoint', 'data', 'json', 'bank', 'test',
  'probe-epochs', 'k'];
const TRAIN_OPTIONS = (Object.keys(options) as Option[])
  .filter((o) => o === 'help' || o === 'data' || !EVAL_OPTIONS.includes(o));
const COMMAND_OPTIONS: Record<string, Set<Option>> = {
  train: new Set(TRAIN_OPTIONS),
  eval: new Set(EVAL_OPTIONS),
  main: new Set([...TRAIN_OPTIONS, ...EVAL_OPTIONS.filter((o) => o !== 'checkpoint')]),
};

/** The error for options that `command` does not take, or null when all belong. */
export function misplacedOptions(command: string, v: Values): string | null {
  const takes = COMMAND_OPTIONS[command];
  const wrong = (Object.keys(v) as Option[]).filter((o) => v[o] !== undefined && !takes.has(o));
  if (!wrong.length) return null;
  // Grouped by the commands that do take them: `--k, --bank (eval and main options)`.
  const groups = new Map<string, Option[]>();
  for (const o of wrong) {
    const owners = Object.keys(COMMAND_OPTIONS).filter((c) => COMMAND_OPTIONS[c].has(o));
    groups.set(owners.join(' and '), [...groups.get(owners.join(' and ')) ?? [], o]);
  }
  const named = [...groups].map(([owners, os]) => `${os.map((o) => `--${o}`).join(', ')} ` +
    `(${os.length > 1 ? `${owners} options` : `${/^[aeiou]/.test(owners) ? 'an' : 'a'} ` +
      `${owners} option`})`);
  const why = command === 'main' && wrong.includes('checkpoint')
    ? '; main evaluates the checkpoint it trains' : '';
  const listed = command === 'eval'
    ? `eval takes ${EVAL_OPTIONS.filter((o) => o !== 'help').map((o) => `--${o}`).join(', ')}`
    : `swavgpu --help lists ${command}'s options`;
  return `${command} does not take ${named.join(', ')}${why}; ${listed}`;
}

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

/** A crop count: an integer >= `min`, checked before groups of 0 are dropped. */
function cropCount(v: Values, name: 'global-crops' | 'local-crops', fallback: number,
  min: number): number {
  const n = num(v, name, fallback);
  if (!Number.isInteger(n) || n < min) {
    throw new ConfigError(`--${name}: must be an integer >= ${min}` +
      `${min === 1 ? ' (the codes are computed from the global crops)' : ''}, got ${n}`);
  }
  return n;
}

export function configFromArgs(v: Values, from?: SwavConfig): SwavConfig {
  const base: SwavConfig = from ??
    { ...defaultConfig, ...(v['gpu-recipe'] ? gpuRecipe : {}) };
  const [g, l] = [base.crops[0], base.crops[1] ?? { count: 0, size: 14, scale: [0.15, 0.4] }];
  const crops = [
    { count: cropCount(v, 'global-crops', g.count, 1), size: num(v, 'global-size', g.size),
      scale: list(v, 'global-scale', g.scale, 2) as [number, number] },
    { count: cropCount(v, 'local-crops', l.count, 0), size: num(v, 'local-size', l.size),
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

/** Options that may change on --resume; the rest must match the checkpoint's config. */
const RESUME_SAFE = new Set(['epochs', 'time-budget', 'checkpoint-every', 'quiet', 'data']);
/** Options that are not training settings at all (the command's own, and eval's). */
const NOT_CONFIG = new Set(['help', 'out', 'resume', 'checkpoint', 'json', 'bank', 'test',
  'probe-epochs', 'k']);

/** What each training option sets, to compare a checkpoint's config with the given one. */
const field = (c: SwavConfig, o: string): unknown => {
  const group = (i: number) => c.crops[i] ?? { count: 0, size: undefined, scale: undefined };
  switch (o) {
    case 'global-crops': return group(0).count;
    case 'global-size': return group(0).size;
    case 'global-scale': return group(0).scale;
    case 'local-crops': return group(1).count;
    case 'local-size': return group(1).size;
    case 'local-scale': return group(1).scale;
    case 'jitter': return c.jitter.strength;
    case 'jitter-p': return c.jitter.p;
    case 'blur-p': return c.blur.p;
    case 'lr': return c.baseLr;
    case 'final-lr': return c.finalLr;
    case 'freeze-prototypes': return c.freezePrototypesSteps;
    case 'gpu-recipe': return Object.keys(gpuRecipe).map((k) => c[k as keyof SwavConfig]);
    default: return c[o.replace(/-(\w)/g, (_, x: string) => x.toUpperCase()) as keyof SwavConfig];
  }
};

/**
 * The config a resumed run continues with: the checkpoint's, with the options that are safe
 * to change taken from the command line; any other option given must agree with it.
 */
export function resumeConfig(v: Values, saved: SwavConfig, timeBudget: number): SwavConfig {
  const given = configFromArgs(v, saved);
  const withRecipe = { ...saved, ...gpuRecipe };
  for (const o of Object.keys(v)) {
    if (RESUME_SAFE.has(o) || NOT_CONFIG.has(o) || v[o as keyof Values] === undefined) continue;
    const want = o === 'gpu-recipe' ? field(withRecipe, o) : field(given, o);
    const have = field(saved, o);
    if (JSON.stringify(want) !== JSON.stringify(have)) {
      const show = (x: unknown) => o === 'gpu-recipe' ? (x === want ? 'the GPU recipe' : 'other')
        : Array.isArray(x) ? x.join(',') : String(x);
      throw new ConfigError(`--${o}: cannot change on --resume: the checkpoint has ` +
        `${show(have)}, the command line gives ${show(want)} (only --epochs, --time-budget, ` +
        '--checkpoint-every, --quiet and --data may change)');
    }
  }
  return validateConfig({ ...saved, epochs: given.epochs, checkpointEvery: given.checkpointEvery,
    timeBudget });
}

interface EvalArgs {
  bank: number;
  test: number;
  probeEpochs: number;
  k: number;
  json?: string;
}

/** Eval's options, all checked before any training or evaluation starts. */
function evalArgs(v: Values, command: string, out: string): EvalArgs {
  const int = (name: 'bank' | 'test' | 'probe-epochs' | 'k', fallback: number, min: number,
    max = Infinity) => {
    const n = num(v, name, fallback);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigError(`--${name}: must be an integer ${max < Infinity ? `in ${min}..${max}`
        : `>= ${min}`}${min === 0 ? ' (0 for all)' : ''}, got ${n}`);
    }
    return n;
  };
  const r: EvalArgs = { bank: int('bank', 10000, 0), test: int('test', 10000, 0),
    probeEpochs: int('probe-epochs', 20, 1), k: int('k', 20, 1, 64) };
  if (r.bank > 0 && r.k > r.bank) {
    // main would otherwise train for minutes and fail at the kNN.
    throw new ConfigError(`--k ${r.k} is more than the --bank ${r.bank} images the neighbours ` +
      `are drawn from`);
  }
  if (v.json !== undefined) {
    const dir = dirname(v.json);
    let ok = false;
    try {
      ok = statSync(dir).isDirectory();
      accessSync(dir, constants.W_OK);
    } catch {
      ok = false;
    }
    if (!ok) throw new ConfigError(`--json ${v.json}: the folder ${dir} does not exist or is ` +
      'not writable');
    try {
      if (statSync(v.json).isDirectory()) {
        throw new ConfigError(`--json ${v.json}: is a folder; give a file name`);
      }
    } catch (e) {
      if (e instanceof ConfigError) throw e;
    }
    r.json = v.json;
  } else if (command === 'main') {
    r.json = `${out}/eval.json`;
  }
  return r;
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
  const misplaced = misplacedOptions(command, v);
  if (misplaced) {
    process.stderr.write(`swavgpu: ${misplaced}\n`);
    return 2;
  }
  const dataDir = v.data ?? DEFAULT_FASHION_MNIST_DIR;
  const out = v.out ?? (command === 'main' ? 'runs/main' : 'runs/swav');
  // Every option is checked before the engine starts, and eval's before training.
  const training = command === 'train' || command === 'main';
  const fresh = training ? configFromArgs(v) : null;
  // The main job must end within 30 minutes on a 2-core machine without a GPU: its
  // training stops at 20 minutes even where the machine is slower than ours.
  if (fresh && command === 'main' && v['time-budget'] === undefined) fresh.timeBudget = 1200;
  // Two epochs fit that budget here (about 13 minutes of training at ~150 images/s).
  if (fresh && command === 'main' && v.epochs === undefined) fresh.epochs = 2;
  const evalOpts = command === 'eval' || command === 'main' ? evalArgs(v, command, out) : null;
  if (command === 'eval' && !v.checkpoint) {
    throw new ConfigError('--checkpoint: needed (a file or a run folder)');
  }
  const log = (l: string) => process.stderr.write(`${l}\n`);
  // The output folder is locked before the engine starts: a second training into it stops
  // here. The lock goes on every exit: the end, an error, Ctrl-C, and SIGTERM (below).
  const lock = fresh ? lockOutput(out, !!v.resume, log) : null;
  const onTerm = () => {
    process.stderr.write(`\nswavgpu: stopped by SIGTERM${fresh ? '; --resume continues from ' +
      'the last checkpoint' : ''}\n`);
    process.exit(143);
  };
  process.on('SIGTERM', onTerm);
  let engine: Awaited<ReturnType<typeof createEngine>>;
  try {
    engine = await createEngine({
      tune: true,
      onLost: (m) => process.stderr.write(`\nswavgpu: ${m}\n`),
    });
  } catch (e) {
    process.off('SIGTERM', onTerm);
    lock?.release();
    throw e;
  }
  try {
    let checkpoint = v.checkpoint;
    if (fresh) {
      // Ctrl-C: stop after the step in flight; a second one ends the process at once.
      const interrupt = new AbortController();
      const onInt = () => {
        if (interrupt.signal.aborted) process.exit(130);
        interrupt.abort();
      };
      process.on('SIGINT', onInt);
      try {
        const summary = await trainSwav(engine, {
          config: fresh, dataDir, out, resume: !!v.resume, quiet: !!v.quiet,
          resumeConfig: (saved) => resumeConfig(v, saved, fresh.timeBudget),
          signal: interrupt.signal, lock: lock ?? undefined,
        });
        checkpoint = summary.checkpoint;
      } finally {
        process.off('SIGINT', onInt);
      }
    }
    if (evalOpts && checkpoint) {
      const result = await evaluateCheckpoint(engine, { checkpoint, dataDir, ...evalOpts, log });
      process.stdout.write(printEvalTable(result));
    }
    return 0;
  } finally {
    process.off('SIGTERM', onTerm);
    lock?.release();
    await engine.dispose();
  }
}

/** An error a user can act on from its message alone: no stack trace. */
export function isKnownError(e: unknown): boolean {
  if (e instanceof ConfigError || e instanceof TrainingError || e instanceof CheckpointError) {
    return true;
  }
  if (!(e instanceof Error)) return false;
  // A system call's failure (EEXIST, EACCES, ENOENT...): Node's message names the path.
  const sys = e as NodeJS.ErrnoException;
  if (typeof sys.code === 'string' && typeof sys.syscall === 'string') return true;
  return /Error$/.test(e.name) && e.name !== 'Error' && e.name !== 'TypeError' &&
    e.name !== 'ReferenceError' && e.name !== 'SyntaxError';
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (e: unknown) => {
  if (e instanceof TrainingInterrupted) {
    process.stderr.write(`\nswavgpu: ${e.message}\n`);
    process.exitCode = 130;
    return;
  }
  const message = e instanceof Error ? e.message : String(e);
  if (isKnownError(e)) {
    process.stderr.write(`\nswavgpu: ${message}\n`);
  } else {
    // A bug in swavgpu itself: one line, and the stack where SWAVGPU_DEBUG asks for it.
    const debug = Number(process.env.SWAVGPU_DEBUG ?? 0) >= 1;
    process.stderr.write(`\nswavgpu: internal error: ${message}\n` + (debug
      ? `${(e as Error)?.stack ?? ''}\n` : '(SWAVGPU_DEBUG=1 prints the stack trace)\n'));
  }
  process.exitCode = 1;
});
