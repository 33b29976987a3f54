// tools/device/tilings.ts, the GPU machine's stand-in for the tiling tests: every candidate
// passes here, and a kernel broken in one pass fails that pass's rows and no others.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.js';
import { checkTilings } from '../../tools/device/tilings.js';

describe('checkTilings', () => {
  it('passes every candidate of this adapter, and compares the tilings of a pass bit for bit',
    async () => {
      const e = await createEngine();
      try {
        const rows = await checkTilings(e);
        expect(rows.filter((r) => !r.pass).map((r) => `${r.kernel} ${r.tiling}: ${r.message}`))
          .toEqual([]);
        // Matmul's 4 candidates on 3 shapes; per conv case 2+ forward tilings, both input
        // gradient kernels and the weight gradient, each with its bit-for-bit rows.
        expect(rows.filter((r) => r.kernel.startsWith('matmul')).length).toBe(12);
        expect(rows.some((r) => r.tiling.includes(' = '))).toBe(true);
        expect(rows.some((r) => r.kernel.includes('input gradient (rows)'))).toBe(true);
      } finally {
        await e.dispose();
      }
    });

  it('a weight-gradient kernel that drops a term fails those rows only', async () => {
    const text = readFileSync('shaders/conv2d.wgsl', 'utf8');
    const fma = 'acc[i * MAX_TN + j] = fma(dv[i], xv[j], acc[i * MAX_TN + j]);';
    expect(text.split(fma).length).toBe(2);
    // Every term but the first of each chunk's row 0: a wrong sum, the shape right.
    const broken = text.replace(fma, `if (r != r0 || ow != 0) { ${fma} }`);
    const e = await createEngine({ shaders: { conv2d: broken } });
    try {
      const rows = await checkTilings(e);
      const bad = rows.filter((r) => !r.pass);
      expect(bad.length).toBeGreaterThan(0);
      expect(bad.every((r) => r.kernel.endsWith('weight gradient'))).toBe(true);
      expect(bad.some((r) => r.usage > 1)).toBe(true);
    } finally {
      await e.dispose();
    }
  });
});
