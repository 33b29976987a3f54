// The kernel-check table (tools/web/checks.ts, the browser page's) in Node on whatever adapter
// Dawn picks: every op family's kernels, forward and backward, against the float64
// references. For a machine where the test suite cannot run (the lent GPU machine has no
// Node.js toolchain, see tools/device/README.md): one process, no test runner.
//
//   node .gpu/tools/checks.js [--json FILE] [--tune]
//
// --tune uses the cached tuned choices (createEngine({ tune: true })), as the benchmark and
// training do; without it the adapter's default tilings. Exit status 1 when any output is
// outside its tolerance.

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createEngine, GpuImages, grad, ops, optim } from '../../src/node.js';
import { runChecks, type CheckRow } from '../web/checks.js';

const { values } = parseArgs({ options: {
  json: { type: 'string' }, tune: { type: 'boolean', default: false },
} });

const engine = await createEngine({ tune: values.tune });
const adapter = engine.gpu.adapterInfo;
const show = (r: CheckRow) => console.log(`${r.pass ? 'ok  ' : 'FAIL'} ${r.family.padEnd(12)} ` +
  `${r.kernel.padEnd(48)} ${r.usage.toFixed(3)} of ${r.tol}${r.pass ? '' : `  ${r.message}`}`);
console.log(`kernel checks on ${adapter}${values.tune ? ' (tuned choices)' : ''}`);
const { rows, ms } = await runChecks(engine, { ops, grad, optim, GpuImages }, show);
const failed = rows.filter((r) => !r.pass);
console.log(`${rows.length - failed.length} of ${rows.length} outputs within tolerance, ` +
  `${(ms / 1000).toFixed(1)} s`);
if (values.json) {
  writeFileSync(values.json, JSON.stringify({ adapter, tuned: values.tune, ms, rows }, null, 1));
}
await engine.dispose();
process.exitCode = failed.length ? 1 : 0;
