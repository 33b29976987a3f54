// The Node examples the README points to run and print what they claim.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function example(name: string): { code: number | null; out: string } {
  const r = spawnSync('npx', ['tsx', `examples/node/${name}.ts`], { encoding: 'utf8',
    timeout: 120_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('examples/node', () => {
  it("custom-kernel: the user's saxpy kernel passes compare against the reference", () => {
    const r = example('custom-kernel');
    expect(r.out)
      .toMatch(/saxpy: all 3000 elements within \|a - e\| <= 0\.000001 \+ 0\.00001 \|e\|/);
    expect(r.code).toBe(0);
  });

  it('quickstart: the loss and gradient of the twelve-line model', () => {
    // x w = [[7.5, 2], [18, 2]] (all positive, relu passes it); loss = mean(y^2) = 388.25 / 4;
    // dloss/dw = x^T (y / 2) = [[39.75, 5], [52.5, 7], [65.25, 9]].
    const r = example('quickstart');
    expect(r.out).toMatch(/loss 97\.0625 dloss\/dw \[ 39\.75, 5, 52\.5, 7, 65\.25, 9 \]/);
    expect(r.code).toBe(0);
  });
});
