// What the codes say about training: how many prototypes are in use and the entropy of
// the assignment distribution (collapse shows as few prototypes and low entropy).

export interface AssignmentStats {
  /** Prototypes that are the argmax of at least one sample's code. */
  used: number;
  /** Entropy (nats) of the distribution of argmax assignments; ln K at most. */
  entropy: number;
  /** Argmax prototype of each row. */
  assignments: Int32Array;
  /** Samples per prototype. */
  histogram: Int32Array;
}

export function assignmentStats(codes: Float32Array, rows: number, k: number): AssignmentStats {
  const assignments = new Int32Array(rows);
  const histogram = new Int32Array(k);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestV = -Infinity;
    for (let j = 0; j < k; j++) {
      const v = codes[r * k + j];
      if (v > bestV) {
        bestV = v;
        best = j;
      }
    }
    assignments[r] = best;
    histogram[best]++;
  }
  let entropy = 0;
  let used = 0;
  for (let j = 0; j < k; j++) {
    if (histogram[j] === 0) continue;
    used++;
    const p = histogram[j] / rows;
    entropy -= p * Math.log(p);
  }
  return { used, entropy, assignments, histogram };
}
