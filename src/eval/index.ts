// Evaluation of frozen features: feature extraction, the linear probe and weighted kNN.

export { extractFeatures, pixelFeatures, blockRows, uploadBlocks, checkFeatures,
  checkLabels } from './features.js';
export type { Features, FeatureModel, ExtractOptions, RowBlock } from './features.js';
export { linearProbe, standardize } from './linear.js';
export type { LinearProbeOptions, LinearProbeResult } from './linear.js';
export { knnClassify, knnPredict, l2NormalizeRows } from './knn.js';
export type { KnnOptions } from './knn.js';
