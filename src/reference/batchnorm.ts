// Batch normalisation over N (and H, W) per channel: train, eval, running stats, backward.

import { type RefTensor, zeros } from './tensor.js';

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Channel count C and plane size H W (1 for [N, C]) of a batch-norm input. */
function layout(op: string, xShape: readonly number[]): { C: number; plane: number; m: number } {
  if (xShape.length !== 2 && xShape.length !== 4) {
    throw new Error(`${op}: x must be [N, C] or [N, C, H, W], got ${fmt(xShape)}`);
  }
  const C = xShape[1];
  const plane = xShape.length === 4 ? xShape[2] * xShape[3] : 1;
  return { C, plane, m: xShape[0] * plane };
}

function checkChannels(op: string, C: number, ts: Record<string, RefTensor>): void {
  for (const [name, t] of Object.entries(ts)) {
    if (t.shape.length !== 1 || t.shape[0] !== C) {
      throw new Error(`${op}: ${name} must be [${C}] (one per channel), got ${fmt(t.shape)}`);
    }
  }
}

/** Calls visit(i, c) for each flat index i of x with its channel c. */
function forEach(xShape: readonly number[], C: number, plane: number,
  visit: (i: number, c: number) => void): void {
  const n = xShape[0];
  for (let b = 0; b < n; b++) {
    for (let c = 0; c < C; c++) {
      const base = (b * C + c) * plane;
      for (let j = 0; j < plane; j++) visit(base + j, c);
    }
  }
}

export interface BatchNormTrainResult {
  y: RefTensor;
  /** Per-channel batch mean [C]. */
  mean: RefTensor;
  /** 1 / sqrt(biased variance + eps) [C], what the backward needs. */
  invStd: RefTensor;
  /** Unbiased variance (divided by m - 1) [C], what the running variance tracks. */
  varUnbiased: RefTensor;
}

/**
 * Training-mode batch norm: statistics over every axis but the channel axis 1, m = N H W values
 * per channel. y = (x - mean) invStd gamma + beta with invStd = 1 / sqrt(varBiased + eps).
 * m = 1 is an error, as in PyTorch: the unbiased variance would divide by zero.
 */
export function batchNormTrain(x: RefTensor, gamma: RefTensor, beta: RefTensor, eps: number)
  : BatchNormTrainResult {
  const { C, plane, m } = layout('batchNormTrain', x.shape);
  checkChannels('batchNormTrain', C, { gamma, beta });
  if (m < 2) {
    throw new Error(`batchNormTrain: needs more than one value per channel, x is ${fmt(x.shape)}`);
  }
  const mean = zeros([C]);
  forEach(x.shape, C, plane, (i, c) => { mean.data[c] += x.data[i]; });
  for (let c = 0; c < C; c++) mean.data[c] /= m;
  // Two passes (mean first, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2.
  const sq = zeros([C]);
  forEach(x.shape, C, plane, (i, c) => { sq.data[c] += (x.data[i] - mean.data[c]) ** 2; });
  const invStd = zeros([C]);
  const varUnbiased = zeros([C]);
  for (let c = 0; c < C; c++) {
    invStd.data[c] = 1 / Math.sqrt(sq.data[c] / m + eps);
    varUnbiased.data[c] = sq.data[c] / (m - 1);
  }
  const y = zeros(x.shape);
  forEach(x.shape, C, plane, (i, c) => {
    y.data[i] = (x.data[i] - mean.data[c]) * invStd.data[c] * gamma.data[c] + beta.data[c];
  });
  return { y, mean, invStd, varUnbiased };
}

/**
 * Running statistics, in place, PyTorch's convention: r = (1 - momentum) r + momentum batch,
 * the variance tracking the unbiased batch variance.
 */
export function updateRunningStats(runMean: RefTensor, runVar: RefTensor, mean: RefTensor,
  varUnbiased: RefTensor, momentum: number): void {
  const C = runMean.shape[0];
  checkChannels('updateRunningStats', C, { runMean, runVar, mean, varUnbiased });
  for (let c = 0; c < C; c++) {
    runMean.data[c] = (1 - momentum) * runMean.data[c] + momentum * mean.data[c];
    runVar.data[c] = (1 - momentum) * runVar.data[c] + momentum * varUnbiased.data[c];
  }
}

/** Eval-mode batch norm: y = (x - runMean) / sqrt(runVar + eps) gamma + beta. */
export function batchNormEval(x: RefTensor, gamma: RefTensor, beta: RefTensor,
  runMean: RefTensor, runVar: RefTensor, eps: number): RefTensor {
  const { C, plane } = layout('batchNormEval', x.shape);
  checkChannels('batchNormEval', C, { gamma, beta, runMean, runVar });
  const y = zeros(x.shape);
  forEach(x.shape, C, plane, (i, c) => {
    const s = 1 / Math.sqrt(runVar.data[c] + eps);
    y.data[i] = (x.data[i] - runMean.data[c]) * s * gamma.data[c] + beta.data[c];
  });
  return y;
}

export interface BatchNormGrads {
  dx: RefTensor;
  dgamma: RefTensor;
  dbeta: RefTensor;
}

/**
 * Training-mode backward, through the batch statistics too (mean and invStd depend on every x
 * of the channel). xhat = (x - mean) invStd; sums run over the m values of a channel.
 */
// dbeta = sum dy, dgamma = sum dy xhat, dx = gamma invStd (dy - dbeta / m - xhat dgamma / m)
export function batchNormBackward(dy: RefTensor, x: RefTensor, gamma: RefTensor, mean: RefTensor,
  invStd: RefTensor): BatchNormGrads {
  const { C, plane, m } = layout('batchNormBackward', x.shape);
  checkChannels('batchNormBackward', C, { gamma, mean, invStd });
  checkDy('batchNormBackward', dy, x);
  const xhat = (i: number, c: number) => (x.data[i] - mean.data[c]) * invStd.data[c];
  const dgamma = zeros([C]);
  const dbeta = zeros([C]);
  forEach(x.shape, C, plane, (i, c) => {
    dbeta.data[c] += dy.data[i];
    dgamma.data[c] += dy.data[i] * xhat(i, c);
  });
  const dx = zeros(x.shape);
  forEach(x.shape, C, plane, (i, c) => {
    dx.data[i] = gamma.data[c] * invStd.data[c] *
      (dy.data[i] - dbeta.data[c] / m - xhat(i, c) * dgamma.data[c] / m);
  });
  return { dx, dgamma, dbeta };
}

/** Eval-mode backward: the statistics are constants, so batch norm is a per-channel affine map. */
// dx = dy gamma / sqrt(runVar + eps), dgamma = sum dy xhat, dbeta = sum dy
export function batchNormEvalBackward(dy: RefTensor, x: RefTensor, gamma: RefTensor,
  runMean: RefTensor, runVar: RefTensor, eps: number): BatchNormGrads {
  const { C, plane } = layout('batchNormEvalBackward', x.shape);
  checkChannels('batchNormEvalBackward', C, { gamma, runMean, runVar });
  checkDy('batchNormEvalBackward', dy, x);
  const dx = zeros(x.shape);
  const dgamma = zeros([C]);
  const dbeta = zeros([C]);
  forEach(x.shape, C, plane, (i, c) => {
    const s = 1 / Math.sqrt(runVar.data[c] + eps);
    dx.data[i] = dy.data[i] * gamma.data[c] * s;
    dgamma.data[c] += dy.data[i] * (x.data[i] - runMean.data[c]) * s;
    dbeta.data[c] += dy.data[i];
  });
  return { dx, dgamma, dbeta };
}

function checkDy(op: string, dy: RefTensor, x: RefTensor): void {
  if (dy.shape.length !== x.shape.length || dy.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`${op}: dy ${fmt(dy.shape)} must have the shape of x ${fmt(x.shape)}`);
  }
}
