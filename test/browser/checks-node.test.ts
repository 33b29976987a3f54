// The page's kernel-check table run in Node on Dawn: proves the table's cases and
// tolerances right, so a check that fails only in the browser points at the browser's adapter.

import { describe, expect, it } from 'vitest';
import { GpuImages, grad, ops, optim } from '../../src/node.js';
import { CHECKS, runChecks } from '../../tools/web/checks.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

describe("the page's kernel-check table on Node's adapter", () => {
  it('runs every family and every output passes', async (ctx) => {
    const { rows, ms } = await runChecks(engine(), { ops, grad, optim, GpuImages });
    expect(new Set(rows.map((r) => r.family))).toEqual(new Set(CHECKS.map((c) => c.family)));
    const failures = rows.filter((r) => !r.pass).map((r) => `${r.family}: ${r.message}`);
    expect(failures, failures.join('\n')).toEqual([]);
    ctx.annotate(`${rows.length} outputs in ${(ms / 1000).toFixed(1)} s`);
  });
});
