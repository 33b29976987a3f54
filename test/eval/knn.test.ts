// Weighted kNN on the GPU: a vote checked by hand, separated clusters, agreement with a
// float64 brute force across chunks, runs and bank blocks, and the argument errors.

import { describe, expect, it } from 'vitest';
import { knnClassify, knnPredict, l2NormalizeRows } from '../../src/eval/knn.js';
import type { Features } from '../../src/eval/features.js';
import { mulberry32 } from '../../src/reference/random.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

function feats(rows: number[][]): Features {
  return { data: Float32Array.from(rows.flat()), rows: rows.length, dim: rows[0].length };
}

/** Gaussian blobs: `perClass` points around one random centre per class. */
function blobs(classes: number, perClass: number, dim: number, spread: number, seed: number) {
  const rnd = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const centres = Array.from({ length: classes }, () => Array.from({ length: dim }, gauss));
  const rows: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < classes * perClass; i++) {
    const c = i % classes;
    rows.push(centres[c].map((v) => v + spread * gauss()));
    y.push(c);
  }
  return { x: feats(rows), y };
}

/** The same vote in float64 on the CPU, by brute force over the whole bank. */
function cpuKnn(bank: Features, bankY: number[], test: Features, k: number, T: number,
  classes: number): number[] {
  const b = l2NormalizeRows(bank);
  const t = l2NormalizeRows(test);
  const out: number[] = [];
  for (let r = 0; r < t.rows; r++) {
    const sims: [number, number][] = [];
    for (let i = 0; i < b.rows; i++) {
      let s = 0;
      for (let j = 0; j < b.dim; j++) s += t.data[r * t.dim + j] * b.data[i * b.dim + j];
      sims.push([s, i]);
    }
    sims.sort((p, q) => q[0] - p[0] || p[1] - q[1]);
    const score = new Array<number>(classes).fill(0);
    for (let j = 0; j < k; j++) score[bankY[sims[j][1]]] += Math.exp(sims[j][0] / T);
    out.push(score.indexOf(Math.max(...score)));
  }
  return out;
}

describe('knn vote', () => {
  it('weights neighbours by exp(sim / T): checked by hand', async () => {
    // Query (1, 0). Neighbours by cosine: a = 1 (class 0), b = 0.8 and c = 0.79 (class 1),
    // d = -1 (class 0, never among the 3 nearest). With T = 0.07, class 0 scores
    // e^(1/0.07) = 1.6e6 against e^(0.8/0.07) + e^(0.79/0.07) = 1.7e5: class 0 wins.
    // With T = 1: e^1 = 2.72 against e^0.8 + e^0.79 = 4.43: class 1 wins, as a plain
    // majority would. Scaling a row changes nothing: cosine ignores length.
    const c = (s: number) => [s, Math.sqrt(1 - s * s)];
    const bank = feats([[3, 0], c(0.8), c(0.79).map((v) => 5 * v), [-2, 0]]);
    const bankY = [0, 1, 1, 0];
    const test = feats([[1, 0]]);
    const e = engine();
    expect([...await knnPredict(e, bank, bankY, test, { k: 3, temperature: 0.07,
      classes: 2 })]).toEqual([0]);
    expect([...await knnPredict(e, bank, bankY, test, { k: 3, temperature: 1,
      classes: 2 })]).toEqual([1]);
    // k = 1: the single nearest decides.
    expect([...await knnPredict(e, bank, bankY, feats([[0.8, 0.62]]), { k: 1,
      classes: 2 })]).toEqual([1]);
  });

  it('classifies well-separated clusters perfectly', async () => {
    const bank = blobs(4, 50, 8, 0.05, 1);
    const test = blobs(4, 25, 8, 0.05, 1);
    const acc = await knnClassify(engine(), bank.x, bank.y, test.x, test.y, { classes: 4 });
    expect(acc).toBe(1);
  });

  it('matches a float64 brute force across chunks, runs and bank blocks', async () => {
    // Overlapping classes, so the vote is not trivial; chunks of 7 test rows, runs of 40
    // rows (the last one short) and bank blocks of 130 rows (the top-k of each block
    // merged on the CPU) cut everything at awkward places.
    const bank = blobs(5, 61, 16, 1.2, 2);
    const test = blobs(5, 21, 16, 1.2, 3);
    const want = cpuKnn(bank.x, bank.y, test.x, 20, 0.07, 5);
    const e = engine();
    const whole = await knnPredict(e, bank.x, bank.y, test.x, { classes: 5 });
    expect([...whole]).toEqual(want);
    const cut = await knnPredict(e, bank.x, bank.y, test.x, { classes: 5, chunk: 7,
      rowsPerRun: 40, bankBlock: 130 });
    expect([...cut]).toEqual(want);
    const k64 = await knnPredict(e, bank.x, bank.y, test.x, { classes: 5, k: 64, chunk: 50,
      bankBlock: 100, temperature: 0.5 });
    expect([...k64]).toEqual(cpuKnn(bank.x, bank.y, test.x, 64, 0.5, 5));
  });
});

describe('knn and all-zero rows (no direction: cosine similarity 0 with every row)', () => {
  it('a zero bank row ranks between positive and negative similarities; a zero test row ' +
    'takes the first k bank rows', async () => {
    const bank = feats([[0, 0], [-1, 0], [0, 1], [1, 0], [0, 0], [1, 0.2]]);
    const bankY = [2, 1, 1, 0, 2, 0];
    // Row 0 is zero: all six similarities are 0, so its neighbours are bank rows 0, 1 and
    // 2 (ties go to the lower row), classes 2, 1, 1: class 1.
    // Row 1, (-1, -0.1): bank row 1 at 0.995 (class 1), then the zero rows 0 and 4 at 0
    // (class 2) ahead of rows 2, 3 and 5 at -0.1, -0.995 and -0.98: class 1 by far.
    // Row 2, (0, -1): bank rows 0, 1 and 3 at 0 (classes 2, 1, 0), ahead of row 5 at -0.2
    // and row 2 at -1: three equal votes, and the tie goes to the lower class, 0.
    const test = feats([[0, 0], [-1, -0.1], [0, -1]]);
    const e = engine();
    const want = [1, 1, 0];
    expect(cpuKnn(bank, bankY, test, 3, 0.07, 3)).toEqual(want);
    for (const cut of [{}, { bankBlock: 2, chunk: 1 }, { bankBlock: 4, rowsPerRun: 1 }]) {
      expect([...await knnPredict(e, bank, bankY, test, { k: 3, classes: 3, ...cut })])
        .toEqual(want);
    }
    // Normalising keeps a zero row zero (no NaN from 0 / 0).
    expect(l2NormalizeRows(feats([[0, 0], [3, 4]])).data).toEqual(Float32Array.of(0, 0, 0.6, 0.8));
  });
});

describe('knn argument errors', () => {
  const bank = feats([[1, 0], [0, 1], [1, 1]]);
  it('names what is wrong', async () => {
    const e = engine();
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0, 0]]))).rejects.toThrow(
      'knn: bank features are 2-d but test features are 3-d');
    await expect(knnPredict(e, bank, [0, 1], feats([[1, 0]]))).rejects.toThrow(
      'knn: bankY has 2 labels for 3 feature rows');
    await expect(knnPredict(e, bank, [0, 1, 12], feats([[1, 0]]))).rejects.toThrow(
      'knn: bankY[2] = 12 is not a class in 0..9');
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0]]), { k: 4 })).rejects.toThrow(
      'knn: k = 4 is more than the 3 bank rows');
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0]]), { k: 65 })).rejects.toThrow(
      'knn: k must be an integer in 1..64, got 65');
    // { temp: 0.5 } voted at the default temperature.
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0]]), { k: 1, temp: 0.5 } as never))
      .rejects.toThrow('knn: unknown option "temp" (did you mean "temperature"?)');
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0]]), { k: 1, temperature: 0 }))
      .rejects.toThrow('knn: temperature must be a number > 0, got 0');
    // One row more than a [chunk, 3] similarity matrix can hold in one binding.
    const chunk = Math.floor(e.limits.maxStorageBufferBindingSize / 12) + 1;
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0]]), { k: 1, chunk }))
      .rejects.toThrow(`knn: chunk = ${chunk} test rows against 3 bank rows makes a ` +
        `similarity matrix of ${chunk * 12} bytes, past the binding limit of`);
    await expect(knnPredict(e, bank, [0, 1, 0], feats([[1, 0]]), { k: 1, rowsPerRun: 0 }))
      .rejects.toThrow('knn: rowsPerRun must be a positive integer, got 0');
    await expect(knnPredict(e, { data: new Float32Array(5), rows: 3, dim: 2 }, [0, 1, 0],
      feats([[1, 0]]))).rejects.toThrow('knn: bankX has 5 values, expected rows x dim = 3x2');
    await expect(knnClassify(e, bank, [0, 1, 0], feats([[1, 0]]), [1, 2], { k: 1 }))
      .rejects.toThrow('knn: testY has 2 labels for 1 feature rows');
  });

  it('refuses NaN and infinite features, naming the matrix, row, column and value', async () => {
    // On the GPU a NaN row loses every comparison and was voted class 0, a class the bank
    // does not even hold: the same rows as the tester's repro.
    const e = engine();
    const b6 = feats([[1, 0], [1, 0.1], [1, 0.2], [-1, 0.3], [-1, 0.4], [-1, 0.5]]);
    const y6 = [3, 3, 3, 7, 7, 7];
    await expect(knnPredict(e, b6, y6, feats([[-1, 0], [NaN, NaN]]), { k: 3 }))
      .rejects.toThrow('knn: testX row 1, column 0 is NaN: features must be finite');
    await expect(knnPredict(e, b6, y6, feats([[-1, 0], [0, -Infinity]]), { k: 3 }))
      .rejects.toThrow('knn: testX row 1, column 1 is -Infinity: features must be finite');
    const badBank = feats([[1, 0], [1, 0.1], [1, 0.2], [-1, 0.3], [Infinity, 0.4], [-1, 0.5]]);
    await expect(knnPredict(e, badBank, y6, feats([[-1, 0]]), { k: 3 }))
      .rejects.toThrow('knn: bankX row 4, column 0 is Infinity: features must be finite');
    await expect(knnClassify(e, b6, y6, feats([[NaN, 1]]), [7], { k: 3 }))
      .rejects.toThrow('knn: testX row 0, column 0 is NaN: features must be finite');
    // The finite rows of the same call still get the bank's classes.
    expect([...await knnPredict(e, b6, y6, feats([[-1, 0], [1, 0]]), { k: 3 })]).toEqual([7, 3]);
  });
});
