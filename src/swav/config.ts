// SwAV's training recipe as one validated object: defaults sized for a CPU adapter
// (lavapipe) within the main job's budget; `gpuRecipe` is the longer one for real GPUs.

export interface CropGroup {
  count: number;
  size: number;
  scale: [number, number];
}

export interface SwavConfig {
  epochs: number;
  batchSize: number;
  /** Use only the first N training images (0: all). */
  subset: number;
  seed: number;
  crops: CropGroup[];
  /** Crop indices whose codes are computed (the global crops). */
  assign: number[];
  flip: number;
  jitter: { strength: number; p: number };
  blur: { p: number; sigma: [number, number] };
  width: number;
  blocks: number[];
  hidden: number;
  featDim: number;
  prototypes: number;
  temperature: number;
  epsilon: number;
  sinkhornIterations: number;
  /** Queue length (0: no queue) and the epoch it starts at. */
  queueLength: number;
  queueStart: number;
  baseLr: number;
  finalLr: number;
  /** Linear warm-up, in epochs (fractions allowed). */
  warmupEpochs: number;
  weightDecay: number;
  momentum: number;
  larsTrust: number;
  /** Exclude biases and normalisation parameters from LARS adaptation and weight decay. */
  excludeBiasNorm: boolean;
  freezePrototypesSteps: number;
  /** Dataset normalisation. */
  mean: number;
  std: number;
  /** Steps between metric reads (each read waits for the GPU). */
  logEvery: number;
  /** Steps between checkpoints (0: at each epoch's end only). */
  checkpointEvery: number;
  /** Stop after this many seconds of training (0: no limit); a checkpoint is written. */
  timeBudget: number;
}

export const defaultConfig: SwavConfig = {
  epochs: 1,
  batchSize: 64,
  subset: 0,
  seed: 0,
  crops: [
    { count: 2, size: 28, scale: [0.4, 1] },
    { count: 4, size: 14, scale: [0.15, 0.4] },
  ],
  assign: [0, 1],
  flip: 0.5,
  jitter: { strength: 0.4, p: 0.8 },
  blur: { p: 0, sigma: [0.1, 2] },
  width: 8,
  blocks: [1, 1, 1],
  hidden: 64,
  featDim: 32,
  prototypes: 100,
  temperature: 0.1,
  epsilon: 0.05,
  sinkhornIterations: 3,
  queueLength: 0,
  queueStart: 0,
  baseLr: 2.4,
  finalLr: 0.0024,
  warmupEpochs: 0.05,
  weightDecay: 1e-6,
  momentum: 0.9,
  larsTrust: 0.001,
  excludeBiasNorm: false,
  freezePrototypesSteps: 40,
  mean: 0.286,
  std: 0.353,
  logEvery: 5,
  checkpointEvery: 200,
  timeBudget: 0,
};

/** The longer recipe for a real GPU: a wider, deeper backbone and the paper's crops. */
export const gpuRecipe: Partial<SwavConfig> = {
  epochs: 100,
  batchSize: 256,
  width: 32,
  blocks: [2, 2, 2],
  hidden: 256,
  featDim: 64,
  prototypes: 100,
  crops: [
    { count: 2, size: 28, scale: [0.3, 1] },
    { count: 4, size: 14, scale: [0.08, 0.3] },
  ],
  jitter: { strength: 0.8, p: 0.8 },
  baseLr: 0.6,
  finalLr: 0.0006,
  warmupEpochs: 5,
  queueLength: 3840,
  queueStart: 15,
  checkpointEvery: 1000,
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function check(cond: boolean, option: string, message: string, value: unknown): void {
  if (!cond) throw new ConfigError(`--${option}: ${message}, got ${JSON.stringify(value)}`);
}

const isInt = (v: number, min: number) => Number.isInteger(v) && v >= min;
const isNum = (v: number) => typeof v === 'number' && Number.isFinite(v);

/** Throws ConfigError naming the option and the bad value. */
export function validateConfig(c: SwavConfig): SwavConfig {
  check(isNum(c.epochs) && c.epochs > 0, 'epochs', 'must be a positive number', c.epochs);
  check(isInt(c.batchSize, 2), 'batch-size', 'must be an integer >= 2 (batch norm)', c.batchSize);
  check(isInt(c.subset, 0), 'subset', 'must be an integer >= 0', c.subset);
  check(isInt(c.seed, 0), 'seed', 'must be an integer >= 0', c.seed);
  check(c.crops.length >= 1, 'crops', 'needs at least one crop group', c.crops);
  for (const g of c.crops) {
    check(isInt(g.count, 1), 'crops', 'each group needs a count >= 1', g.count);
    check(isInt(g.size, 1), 'crops', 'each crop size must be an integer >= 1', g.size);
    check(isNum(g.scale[0]) && isNum(g.scale[1]) && g.scale[0] > 0 && g.scale[0] <= g.scale[1] &&
      g.scale[1] <= 1, 'crops', 'scale must be (lo, hi) with 0 < lo <= hi <= 1', g.scale);
  }
  const V = c.crops.reduce((a, g) => a + g.count, 0);
  check(V >= 2, 'crops', 'needs at least 2 crops in all', V);
  check(c.assign.length >= 1 && c.assign.every((a) => isInt(a, 0) && a < V), 'assign',
    `must be crop indices below ${V}`, c.assign);
  check(isNum(c.flip) && c.flip >= 0 && c.flip <= 1, 'flip', 'must be in [0, 1]', c.flip);
  check(isNum(c.jitter.strength) && c.jitter.strength >= 0, 'jitter', 'must be >= 0',
    c.jitter.strength);
  check(isNum(c.jitter.p) && c.jitter.p >= 0 && c.jitter.p <= 1, 'jitter-p', 'must be in [0, 1]',
    c.jitter.p);
  check(isNum(c.blur.p) && c.blur.p >= 0 && c.blur.p <= 1, 'blur-p', 'must be in [0, 1]',
    c.blur.p);
  check(isInt(c.width, 1), 'width', 'must be an integer >= 1', c.width);
  check(c.blocks.length >= 1 && c.blocks.every((b) => isInt(b, 1)), 'blocks',
    'must be a list of integers >= 1', c.blocks);
  check(isInt(c.hidden, 1), 'hidden', 'must be an integer >= 1', c.hidden);
  check(isInt(c.featDim, 1), 'feat-dim', 'must be an integer >= 1', c.featDim);
  check(isInt(c.prototypes, 1), 'prototypes', 'must be an integer >= 1', c.prototypes);
  check(isNum(c.temperature) && c.temperature > 0, 'temperature', 'must be > 0', c.temperature);
  check(isNum(c.epsilon) && c.epsilon > 0, 'epsilon', 'must be > 0', c.epsilon);
  check(isInt(c.sinkhornIterations, 1), 'sinkhorn-iterations', 'must be an integer >= 1',
    c.sinkhornIterations);
  check(isInt(c.queueLength, 0) && c.queueLength % c.batchSize === 0, 'queue-length',
    `must be 0 or a multiple of the batch size ${c.batchSize}`, c.queueLength);
  check(isNum(c.queueStart) && c.queueStart >= 0, 'queue-start', 'must be >= 0', c.queueStart);
  check(isNum(c.baseLr) && c.baseLr > 0, 'lr', 'must be > 0', c.baseLr);
  check(isNum(c.finalLr) && c.finalLr >= 0, 'final-lr', 'must be >= 0', c.finalLr);
  check(isNum(c.warmupEpochs) && c.warmupEpochs >= 0, 'warmup-epochs', 'must be >= 0',
    c.warmupEpochs);
  check(isNum(c.weightDecay) && c.weightDecay >= 0, 'weight-decay', 'must be >= 0', c.weightDecay);
  check(isNum(c.momentum) && c.momentum >= 0 && c.momentum < 1, 'momentum', 'must be in [0, 1)',
    c.momentum);
  check(isNum(c.larsTrust) && c.larsTrust > 0, 'lars-trust', 'must be > 0', c.larsTrust);
  check(isInt(c.freezePrototypesSteps, 0), 'freeze-prototypes', 'must be an integer >= 0',
    c.freezePrototypesSteps);
  check(isNum(c.std) && c.std > 0, 'std', 'must be > 0', c.std);
  check(isInt(c.logEvery, 1), 'log-every', 'must be an integer >= 1', c.logEvery);
  check(isInt(c.checkpointEvery, 0), 'checkpoint-every', 'must be an integer >= 0',
    c.checkpointEvery);
  check(isNum(c.timeBudget) && c.timeBudget >= 0, 'time-budget', 'must be >= 0 seconds',
    c.timeBudget);
  return c;
}

/** Total crops per image. */
export function cropCount(c: SwavConfig): number {
  return c.crops.reduce((a, g) => a + g.count, 0);
}
