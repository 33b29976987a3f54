// SwAV: the model, the loss, the queue, the trainer and its recipe (platform-free parts).

export { SwavModel } from './model.js';
export type { SwavModelOptions } from './model.js';
export { swavLoss } from './loss.js';
export type { SwavLossOptions, SwavLossResult } from './loss.js';
export { SwavQueue } from './queue.js';
export { SwavTrainer } from './trainer.js';
export type { StepResult, TrainerPosition } from './trainer.js';
export { defaultConfig, gpuRecipe, validateConfig, cropCount, ConfigError } from './config.js';
export type { SwavConfig, CropGroup } from './config.js';
export { assignmentStats } from './metrics.js';
export { lossCurveSvg } from './plot.js';
