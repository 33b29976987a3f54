// The kernel-check table (tools/web/checks.ts, the browser page's) in Node on whatever adapter
// Dawn picks: every op family's kernels, forward and backward, against the float64
// references. For a machine where the test suite cannot run (the lent GPU machine has no
// Node.js toolchain, see tools/device/README.md): one process, no test runner.
//
//   node .gpu/tools/checks.js [--json FILE] [--tune] [--tilings [--large]]
//
// --tune uses the cached tuned choices (createEngine({ tune: true })), as the benchmark and
// training do; without it the adapter's default tilings. --tilings checks instead every
// tiling candidate the tuner may choose on this adapter (tools/device/tilings.ts), --large
// adds some of the SwAV model's layer shapes. Exit status 1 when any output is outside its
// tolerance (or, for --tilings, when two tilings of one pass disagree in a bit).

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createEngine, GpuImages, grad, ops, optim } from '../../src/node.js';
import { runChecks, type CheckRow } from '../web/checks.js';
import { checkTilings, type TilingRow } from './tilings.js';

const { values } = parseArgs({ options: {
  json: { type: 'string' }, tune: { type: 'boolean', default: false },
  tilings: { type: 'boolean', default: false }, large: { type: 'boolean', default: false },
} });

const engine = await createEngine({ tune: values.tune });
const adapter = engine.gpu.adapterInfo;
const t0 = performance.now();
let rows: (CheckRow | TilingRow)[];
if (values.tilings) {
  console.log(`every tiling candidate on ${adapter}`);
  rows = await checkTilings(engine, { large: values.large }, (r) => console.log(
    `${r.pass ? 'ok  ' : 'FAIL'} ${r.kernel} ${r.tiling} ${r.usage.toFixed(3)}` +
    (r.pass ? '' : `  ${r.message}`)));
} else {
  console.log(`kernel checks on ${adapter}${values.tune ? ' (tuned choices)' : ''}`);
  rows = (await runChecks(engine, { ops, grad, optim, GpuImages }, (r) => console.log(
    `${r.pass ? 'ok  ' : 'FAIL'} ${r.family.padEnd(12)} ${r.kernel.padEnd(48)} ` +
    `${r.usage.toFixed(3)} of ${r.tol}${r.pass ? '' : `  ${r.message}`}`))).rows;
}
const ms = performance.now() - t0;
const failed = rows.filter((r) => !r.pass);
console.log(`${rows.length - failed.length} of ${rows.length} outputs within tolerance, ` +
  `${(ms / 1000).toFixed(1)} s`);
if (values.json) {
  writeFileSync(values.json, JSON.stringify({ adapter, tuned: values.tune,
    tilings: values.tilings, ms, rows }, null, 1));
}
await engine.dispose();
process.exitCode = failed.length ? 1 : 0;
