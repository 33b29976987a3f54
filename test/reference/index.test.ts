// The public entry: every op is reachable from one import, and the reference stays standalone.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as reference from '../../src/reference/index.js';

const srcDir = join(dirname(fileURLToPath(import.meta.url)), '../../src/reference');

describe('reference entry', () => {
  it('exports every forward and backward by its contract name', () => {
    const names = [
      'ref', 'zeros', 'randn', 'uniform', 'size', 'broadcastShapes', 'reduceToShape',
      'mulberry32', 'compare', 'assertClose', 'TOL', 'numericGrad', 'checkGrad',
      'add', 'sub', 'mul', 'div', 'addBackward', 'subBackward', 'mulBackward', 'divBackward',
      'neg', 'relu', 'exp', 'log', 'sqrt', 'square', 'sigmoid', 'tanh', 'abs',
      'negBackward', 'reluBackward', 'expBackward', 'logBackward', 'sqrtBackward',
      'squareBackward', 'sigmoidBackward', 'tanhBackward', 'absBackward',
      'scale', 'scaleBackward', 'addScalar', 'addScalarBackward', 'leakyRelu',
      'leakyReluBackward', 'sum', 'mean', 'max', 'argmax', 'sumBackward', 'meanBackward',
      'maxBackward', 'matmul', 'matmulBackward', 'conv2d', 'conv2dBackwardInput',
      'conv2dBackwardWeight', 'conv2dBackwardBias', 'conv2dOutputShape', 'globalAvgPool',
      'globalAvgPoolBackward', 'maxPool2d', 'maxPool2dBackward', 'batchNormTrain',
      'updateRunningStats', 'batchNormEval', 'batchNormBackward', 'batchNormEvalBackward',
      'l2Normalize', 'l2NormalizeBackward', 'softmax', 'logSoftmax', 'softCrossEntropy',
      'softmaxBackward', 'logSoftmaxBackward', 'softCrossEntropyBackward', 'sinkhorn',
      'sinkhornMarginals', 'sgdStep', 'larsStep', 'adamStep',
      'reciprocal', 'reciprocalBackward', 'sign', 'signBackward', 'addRelu', 'addReluBackward',
      'transpose2d', 'transpose2dBackward', 'concatRows', 'concatRowsBackward', 'sliceRows',
      'sliceRowsBackward',
    ];
    const exported = reference as Record<string, unknown>;
    const missing = names.filter((n) => exported[n] === undefined);
    expect(missing).toEqual([]);
    // Codes carry no gradient: there is deliberately no Sinkhorn backward.
    expect(exported.sinkhornBackward).toBeUndefined();
  });

  it('imports only its own files, so it runs in Node and browsers and never judges itself', () => {
    const files = readdirSync(srcDir).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      const text = readFileSync(join(srcDir, f), 'utf8');
      const specifiers = [...text.matchAll(/from\s+'([^']+)'/g)].map((m) => m[1]);
      const foreign = specifiers.filter((s) => !/^\.\/[\w-]+\.js$/.test(s));
      expect(foreign, `${f} imports ${foreign.join(', ')}`).toEqual([]);
    }
  });
});
