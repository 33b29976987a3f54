// Optimizers and learning-rate schedules: import { optim } from 'swavgpu'.

export { Optimizer, STEP_KEY } from './optimizer.js';
export type { LearningRate, OptimizerOptions } from './optimizer.js';
export { SGD, OPTIM_WG } from './sgd.js';
export type { SgdOptions } from './sgd.js';
export { LARS, isBiasOrNorm } from './lars.js';
export type { LarsOptions } from './lars.js';
export { Adam } from './adam.js';
export type { AdamOptions } from './adam.js';
export { warmupCosine, constant } from './schedule.js';
export type { WarmupCosineOptions } from './schedule.js';
