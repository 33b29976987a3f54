// The linear probe on the GPU: standardization, a separable synthetic problem, seeding,
// and the argument errors.

import { describe, expect, it } from 'vitest';
import type { Features } from '../../src/eval/features.js';
import { linearProbe, standardize } from '../../src/eval/linear.js';
import { mulberry32 } from '../../src/reference/random.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

/** Gaussian blobs around one random centre per class, in `dim` dimensions. */
function blobs(classes: number, rows: number, dim: number, spread: number, seed: number,
  centreSeed = 100): { x: Features; y: Uint8Array } {
  const gaussian = (rnd: () => number) => () =>
    Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const gc = gaussian(mulberry32(centreSeed));
  const centres = Array.from({ length: classes }, () => Array.from({ length: dim }, gc));
  const g = gaussian(mulberry32(seed));
  const data = new Float32Array(rows * dim);
  const y = new Uint8Array(rows);
  for (let i = 0; i < rows; i++) {
    y[i] = i % classes;
    // An offset and scale per dimension that standardization has to undo.
    for (let j = 0; j < dim; j++) {
      data[i * dim + j] = 5 + (j + 1) * (centres[y[i]][j] + spread * g());
    }
  }
  return { x: { data, rows, dim }, y };
}

describe('standardize', () => {
  it('uses the train mean and standard deviation for both sets', () => {
    const train: Features = { data: Float32Array.from([1, 10, 3, 10, 5, 10]), rows: 3, dim: 2 };
    const test: Features = { data: Float32Array.from([3, 11]), rows: 1, dim: 2 };
    const [a, b] = standardize(train, test);
    // Column 0: mean 3, variance 8/3; column 1 is constant: only the 1e-5 floor divides.
    const s0 = Math.sqrt(8 / 3 + 1e-5);
    const s1 = Math.sqrt(1e-5);
    expect([...a.data].map((v) => +v.toFixed(5))).toEqual(
      [-2 / s0, 0, 0, 0, 2 / s0, 0].map((v) => +v.toFixed(5)));
    expect(b.data[0]).toBe(0);
    expect(b.data[1]).toBeCloseTo(1 / s1, 1);
  });

  it('features of float32\'s largest magnitudes: moments in float64, no overflow', () => {
    // Sums of 3e38 and squares of 6e38 would overflow float32; in float64 they do not.
    const col = [1e20, 3e38, -3e38, 3e38].map(Math.fround);
    const train: Features = { data: Float32Array.from(col), rows: 4, dim: 1 };
    const test: Features = { data: Float32Array.of(Math.fround(-1e38)), rows: 1, dim: 1 };
    const [a, b] = standardize(train, test);
    const mean = col.reduce((s, v) => s + v, 0) / 4;
    const std = Math.sqrt(col.reduce((s, v) => s + (v - mean) ** 2, 0) / 4 + 1e-5);
    const z = (v: number) => Math.fround((v - mean) / std);
    expect(Array.from(a.data)).toEqual(col.map(z));
    // Mean 0.75e38, variance 6.1875e76: 3e38 standardizes to 2.25 / sqrt(6.1875) = 3/sqrt(11).
    expect(a.data[1]).toBeCloseTo(3 / Math.sqrt(11), 6);
    expect(Array.from(b.data)).toEqual([z(Math.fround(-1e38))]);
  });

  it('refuses a test value that standardizes past float32\'s range, naming it', async () => {
    // Constant on the train set: only the variance floor divides, 1e37 / 0.00316 = 3.2e39.
    const train: Features = { data: Float32Array.of(0, 2, 0, 2, 0, 2), rows: 3, dim: 2 };
    const test: Features = { data: Float32Array.of(1, 1e37), rows: 1, dim: 2 };
    const message = (what: string) => `${what}: test row 0, column 1 is 1e+37, which ` +
      'standardizes to 3.162e+39 with the train set\'s mean 2 and standard deviation 0.003162 ' +
      'in that column: past float32\'s range of +-3.4e38 (features far outside the train ' +
      'set\'s spread)';
    // Was a test row of [316.2, Infinity], sent to the GPU and classified all the same.
    expect(() => standardize(train, test)).toThrow(message('standardize'));
    const e = engine();
    const before = e.gpu.counters.dispatches;
    await expect(linearProbe(e, train, [0, 1, 0], test, [1], { classes: 2 })).rejects.toThrow(
      message('linearProbe'));
    expect(e.gpu.counters.dispatches).toBe(before);
  });

  it('checks its arguments when called on its own', () => {
    const f: Features = { data: new Float32Array(6), rows: 3, dim: 2 };
    const g: Features = { data: new Float32Array(3), rows: 1, dim: 3 };
    expect(() => standardize(f, g)).toThrow(
      'standardize: train features are 2-d but test features are 3-d');
    expect(() => standardize(f, { ...g, rows: 2 })).toThrow(
      'standardize: test has 3 values, expected rows x dim = 2x3');
  });
});

describe('linearProbe', () => {
  it('separates a linearly separable 10-class problem (> 95%)', async () => {
    const train = blobs(10, 2000, 24, 0.35, 1);
    const test = blobs(10, 500, 24, 0.35, 2);
    const losses: number[] = [];
    const r = await linearProbe(engine(), train.x, train.y, test.x, test.y, {
      epochs: 10, batch: 128, seed: 3, onEpoch: (_, l) => losses.push(l),
    });
    expect(r.trainAcc).toBeGreaterThan(0.95);
    expect(r.testAcc).toBeGreaterThan(0.95);
    expect(losses).toEqual(r.losses);
    expect(r.losses.length).toBe(10);
    // ln 10 = 2.3 is chance; the loss falls well below it and keeps falling overall.
    expect(r.losses[0]).toBeLessThan(2.3);
    expect(r.losses[9]).toBeLessThan(r.losses[0]);
  });

  it('is reproducible from its seed, and a batch that does not divide the set works', async () => {
    const train = blobs(3, 301, 5, 1.0, 4);
    const test = blobs(3, 97, 5, 1.0, 5);
    const o = { epochs: 3, batch: 64, seed: 7, classes: 3 };
    const a = await linearProbe(engine(), train.x, train.y, test.x, test.y, o);
    const b = await linearProbe(engine(), train.x, train.y, test.x, test.y, o);
    expect(b).toEqual(a);
    expect(a.testAcc).toBeGreaterThan(0.6);
  });

  it('names bad arguments', async () => {
    const e = engine();
    const f: Features = { data: new Float32Array(6), rows: 3, dim: 2 };
    const g: Features = { data: new Float32Array(3), rows: 1, dim: 3 };
    await expect(linearProbe(e, f, [0, 1, 2], g, [0])).rejects.toThrow(
      'linearProbe: train features are 2-d but test features are 3-d');
    await expect(linearProbe(e, f, [0, 1, 2], f, [0, 1, 2], { epochs: 0 })).rejects.toThrow(
      'linearProbe: epochs must be a positive integer, got 0');
    await expect(linearProbe(e, f, [0, 1, 2], f, [0, 1, 2], { lr: -1 })).rejects.toThrow(
      'linearProbe: lr must be a number > 0, got -1');
    await expect(linearProbe(e, f, [0, 1, 2], f, [0, 1, 2], { epoch: 3 } as never))
      .rejects.toThrow('linearProbe: unknown option "epoch" (did you mean "epochs"?)');
    for (const seed of [NaN, -1.5]) {
      await expect(linearProbe(e, f, [0, 1, 2], f, [0, 1, 2], { seed })).rejects.toThrow(
        `linearProbe: seed must be an integer, got ${seed}`);
    }
    // JSON.stringify threw its own TypeError on a bigint instead of this message.
    await expect(linearProbe(e, f, [0, 1, 2], f, [0, 1, 2], { seed: 3n as never })).rejects
      .toThrow('linearProbe: seed must be an integer, got 3n');
    await expect(linearProbe(e, f, [0, 1, 2], f, [0, 1, 2], { seed: '3' as never })).rejects
      .toThrow('linearProbe: seed must be an integer, got "3"');
    await expect(linearProbe(e, f, [0, 1, 3], f, [0, 1, 2], { classes: 3 })).rejects.toThrow(
      'linearProbe: trainY[2] = 3 is not a class in 0..2');
  });

  it('refuses NaN and infinite features instead of blaming the learning rate', async () => {
    const e = engine();
    const train = blobs(2, 6, 2, 0.1, 1);
    const test = blobs(2, 4, 2, 0.1, 2);
    const nanTrain = { ...train.x, data: train.x.data.slice() };
    nanTrain.data[2 * 2 + 1] = NaN;
    const o = { epochs: 2, batch: 2, classes: 2 };
    await expect(linearProbe(e, nanTrain, train.y, test.x, test.y, o)).rejects.toThrow(
      'linearProbe: trainX row 2, column 1 is NaN: features must be finite');
    // A NaN test row never reaches the loss: it would only have been predicted class 0.
    const infTest = { ...test.x, data: test.x.data.slice() };
    infTest.data[3 * 2] = Infinity;
    await expect(linearProbe(e, train.x, train.y, infTest, test.y, o)).rejects.toThrow(
      'linearProbe: testX row 3, column 0 is Infinity: features must be finite');
  });

  it('still reports genuine divergence from finite features', async () => {
    const train = blobs(3, 60, 4, 1.0, 3);
    await expect(linearProbe(engine(), train.x, train.y, train.x, train.y,
      { epochs: 3, batch: 8, classes: 3, lr: 1e38 })).rejects.toThrow(
      /^linearProbe: the training loss of epoch \d is (NaN|Infinity); lower lr \(1e\+38\)$/);
  });
});
