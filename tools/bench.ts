// `npm run bench`: our kernels and SwAV step against TensorFlow.js and jax-js on the same
// WebGPU adapter and PyTorch on the CPU, alternating round by round; a table and JSON.

import { writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_FASHION_MNIST_DIR } from '../src/data/fashion-node.js';
import { buildCases, filterCases, type BenchCase } from './bench/cases.js';
import type { CheckReply, Contestant, FinishReply, InfoReply, PrepareReply, ProfileReply,
  SampleReply, ShapesReply, StepCounters } from './bench/protocol.js';
import { aggregateKernels, fmt, formatCounters, formatProfile, formatTable, makeRow, median,
  type KernelTime, type Measured, type Row } from './bench/report.js';
import { PYTHON, torchAvailable, WorkerLink } from './bench/workers.js';

const USAGE = `usage: npm run bench -- [options]

Times each case on each contestant in turn (ours, then the peers, the order rotating each
round) after warm-up, and reports medians. Ratios read "how many times better ours is":
peer/ours for times, ours/peer for rates.

options:
  --reps N       timed rounds per case (default 7; --quick 3)
  --warmup N     untimed rounds per case after the two calls that compile (default 1)
  --only NAMES   only cases whose name contains one of these comma-separated texts
  --quick        fewer cases and rounds (about 2 minutes on 2 cores)
  --json FILE    also write every figure as JSON
  --no-profile   skip the per-kernel profile of the SwAV step (Engine.profile)
  --no-peers     ours only
  --images N     training images of the SwAV step case (default 2048)
  --torch-threads N  PyTorch's intra-op threads (default: the faster of 1 and every core,
                 timed when the case starts)
  --python PATH  the Python whose torch runs the PyTorch mirror (default ${PYTHON})
  --data DIR     Fashion-MNIST folder (default ${DEFAULT_FASHION_MNIST_DIR}; synthetic images
                 where missing)
  --check        instead of timing, compare every contestant's outputs with ours (sum and
                 sum of squares of each output), to show that all compute the same thing
  --list         print the case names and exit
  --help`;

const PREPARE_TIMEOUT_MS = 600_000;
const SAMPLE_TIMEOUT_MS = 180_000;

interface Options {
  reps: number;
  warmup: number;
  only?: string;
  quick: boolean;
  json?: string;
  profile: boolean;
  peers: boolean;
  images: number;
  data: string;
  list: boolean;
  check: boolean;
  torchThreads: number;
  python: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv, allowPositionals: false, options: {
      reps: { type: 'string' }, warmup: { type: 'string' }, only: { type: 'string' },
      quick: { type: 'boolean' }, json: { type: 'string' }, 'no-profile': { type: 'boolean' },
      'no-peers': { type: 'boolean' }, images: { type: 'string' }, data: { type: 'string' },
      list: { type: 'boolean' }, check: { type: 'boolean' }, help: { type: 'boolean' },
      'torch-threads': { type: 'string' }, python: { type: 'string' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: string, v: string | undefined, dflt: number, min: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw new Error(`--${name} must be an integer >= ${min}, got '${v}'`);
    }
    return n;
  };
  const quick = values.quick ?? false;
  return {
    reps: int('reps', values.reps, quick ? 3 : 7, 1),
    warmup: int('warmup', values.warmup, quick ? 0 : 1, 0),
    only: values.only, quick, json: values.json,
    profile: !values['no-profile'] && !quick,
    peers: !values['no-peers'],
    images: int('images', values.images, 2048, 64),
    data: values.data ?? DEFAULT_FASHION_MNIST_DIR,
    list: values.list ?? false,
    check: values.check ?? false,
    torchThreads: int('torch-threads', values['torch-threads'], 0, 0),
    python: values.python ?? PYTHON,
  };
}

/** Worker processes by contestant, restarted after a crash or a timeout. */
class Workers {
  private links = new Map<Contestant, WorkerLink>();
  readonly info = new Map<Contestant, InfoReply>();

  constructor(private readonly python = PYTHON) {}

  async get(who: Contestant): Promise<WorkerLink> {
    let link = this.links.get(who);
    if (!link || !link.alive) {
      link = new WorkerLink(who, { onStderr: (l) => console.error(`[${who}] ${l}`),
        python: this.python });
      this.links.set(who, link);
      if (!this.info.has(who)) {
        this.info.set(who, await link.ask({ cmd: 'info' }, PREPARE_TIMEOUT_MS));
      }
    }
    return link;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.close()));
  }
}

const progress = (text: string) => process.stderr.write(`${text}\n`);

function toValue(c: BenchCase, ms: number): number {
  if (c.unit === 'GFLOP/s') return c.work! / (ms * 1e6);
  if (c.unit === 'images/s') return (c.work! * 1000) / ms;
  return ms;
}

/** Runs one case on every contestant: prepare, warm-up rounds, timed rounds, finish. */
async function runCase(c: BenchCase, workers: Workers, o: Options,
  skip: Map<Contestant, string>): Promise<{ row: Row; counters?: StepCounters }> {
  const who: Contestant[] = ['ours', ...(o.peers ? c.peers : [])];
  const detail: Partial<Record<Contestant, Measured>> = {};
  const cpu: Partial<Record<Contestant, number[]>> = {};
  const step = c.spec.kind === 'swav-step';
  const targetMs = o.quick ? 20 : 60;
  const maxInner = step ? 1 : o.quick ? 5 : 10;
  const active: Contestant[] = [];
  for (const w of who) {
    const m: Measured = { value: null, ms: null, samples: [], cpuMs: null, inner: 0,
      firstMs: null };
    detail[w] = m;
    if (skip.has(w)) {
      m.note = skip.get(w);
      continue;
    }
    try {
      const link = await workers.get(w);
      const r = await link.ask<PrepareReply>({ cmd: 'prepare', spec: c.spec, targetMs, maxInner },
        PREPARE_TIMEOUT_MS);
      m.inner = r.inner;
      m.firstMs = r.firstMs;
      if (r.note) m.note = r.note;
      active.push(w);
      cpu[w] = [];
    } catch (e) {
      m.error = (e as Error).message;
      progress(`  ${w}: ${m.error}`);
    }
  }
  const rounds = o.warmup + o.reps;
  for (let r = 0; r < rounds; r++) {
    // The order rotates so that no contestant always runs right after another's load.
    const order = active.map((_, i) => active[(i + r) % active.length]);
    for (const w of order) {
      const m = detail[w]!;
      if (m.error) continue;
      try {
        const link = await workers.get(w);
        const s = await link.ask<SampleReply>({ cmd: 'sample' }, SAMPLE_TIMEOUT_MS);
        if (r >= o.warmup) {
          m.samples.push(s.ms);
          if (s.cpuMs !== undefined) cpu[w]!.push(s.cpuMs);
        }
      } catch (e) {
        m.error = (e as Error).message;
        progress(`  ${w}: ${m.error}`);
      }
    }
  }
  let counters: StepCounters | undefined;
  for (const w of active) {
    const m = detail[w]!;
    try {
      const link = await workers.get(w);
      const f = await link.ask<FinishReply>({ cmd: 'finish' }, SAMPLE_TIMEOUT_MS);
      if (w === 'ours' && f.counters) counters = f.counters;
    } catch (e) {
      m.error ??= (e as Error).message;
    }
    if (m.error) m.samples = [];
    m.ms = median(m.samples);
    m.value = m.ms === null ? null : toValue(c, m.ms);
    m.cpuMs = median(cpu[w] ?? []);
  }
  const row = makeRow({
    name: c.name, unit: c.unit, target: c.target ?? null, perStep: c.perStep, where: c.where,
    detail,
  }, o.peers ? c.peers : []);
  return { row, counters };
}

/**
 * Each peer's outputs against ours: sums of squares within 1e-3 relative, sums within 1e-3 of
 * |sum| + sqrt(sum of squares) (a sum near zero is compared on the values' scale).
 */
async function checkCase(c: BenchCase, workers: Workers, o: Options): Promise<string> {
  const got = new Map<Contestant, CheckReply>();
  const problems: string[] = [];
  for (const w of ['ours', ...(o.peers ? c.peers : [])] as Contestant[]) {
    try {
      const link = await workers.get(w);
      await link.ask({ cmd: 'prepare', spec: c.spec, targetMs: 1, maxInner: 1 },
        PREPARE_TIMEOUT_MS);
      got.set(w, await link.ask<CheckReply>({ cmd: 'check' }, SAMPLE_TIMEOUT_MS));
      await link.ask({ cmd: 'finish' }, SAMPLE_TIMEOUT_MS);
    } catch (e) {
      problems.push(`${w}: ${(e as Error).message}`);
    }
  }
  const ours = got.get('ours');
  for (const [w, sums] of got) {
    if (w === 'ours' || !ours) continue;
    if (sums.length !== ours.length) {
      problems.push(`${w}: ${sums.length} outputs, ours ${ours.length}`);
      continue;
    }
    sums.forEach(([s, q], i) => {
      const [s0, q0] = ours[i];
      const scale = Math.abs(s0) + Math.sqrt(q0);
      if (Math.abs(q - q0) > 1e-3 * q0 || Math.abs(s - s0) > 1e-3 * scale) {
        problems.push(`${w}: output ${i} sum ${s.toPrecision(6)} (ours ${s0.toPrecision(6)}), ` +
          `sum of squares ${q.toPrecision(6)} (ours ${q0.toPrecision(6)})`);
      }
    });
  }
  return problems.length ? problems.join('; ') :
    `ok (${[...got.keys()].join(', ')} agree on ${ours?.length ?? 0} outputs)`;
}

/** Sums of ms x calls per step over a family of cases, for each contestant with them all. */
function aggregate(name: string, rows: Row[], target: number | null, peers: Contestant[]):
  Row | null {
  if (rows.length < 2) return null;
  const detail: Partial<Record<Contestant, Measured>> = {};
  for (const w of ['ours', ...peers] as Contestant[]) {
    const parts = rows.map((r) => {
      const d = r.detail[w];
      return d?.ms === null || d?.ms === undefined ? null : d.ms * (r.perStep ?? 1);
    });
    const ok = parts.every((p) => p !== null);
    const total = ok ? (parts as number[]).reduce((a, b) => a + b, 0) : null;
    detail[w] = { value: total, ms: total, samples: [], cpuMs: null, inner: 0, firstMs: null,
      note: ok ? undefined : 'missing cases' };
  }
  const calls = rows.reduce((a, r) => a + (r.perStep ?? 1), 0);
  return makeRow({ name: `${name} (${calls} calls/step)`, unit: 'ms', target, detail }, peers);
}

/** One SwAV step of ours under Engine.profile, its dispatches summed by op. */
async function profileStep(c: BenchCase): Promise<{ kernels: KernelTime[]; stepMs: number |
  null; source: ProfileReply['source'] | null; error?: string }> {
  const link = new WorkerLink('ours');
  try {
    await link.ask({ cmd: 'prepare', spec: c.spec, targetMs: 1, maxInner: 1 }, PREPARE_TIMEOUT_MS);
    const p = await link.ask<ProfileReply>({ cmd: 'profile' }, PREPARE_TIMEOUT_MS);
    await link.ask({ cmd: 'finish' }, SAMPLE_TIMEOUT_MS);
    return { kernels: aggregateKernels(p.kernels), stepMs: p.ms, source: p.source };
  } catch (e) {
    return { kernels: [], stepMs: null, source: null, error: (e as Error).message };
  } finally {
    await link.close();
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const t0 = performance.now();
  const loads: number[] = [loadavg()[0]];
  const loadTimer = setInterval(() => loads.push(loadavg()[0]), 10_000);
  const workers = new Workers(o.python);
  try {
    const ours = await workers.get('ours');
    const shapes = await ours.ask<ShapesReply>({ cmd: 'shapes' }, PREPARE_TIMEOUT_MS);
    let cases = filterCases(buildCases(shapes, { images: o.images, data: o.data,
      torchThreads: o.torchThreads }), o.only);
    if (o.quick) cases = cases.filter((c) => c.quick);
    if (o.list) {
      for (const c of cases) console.log(c.name);
      return;
    }
    if (!cases.length) throw new Error(`no case matches --only '${o.only}' (see --list)`);
    if (o.check) {
      let bad = 0;
      for (const c of cases.filter((k) => k.spec.kind !== 'swav-step')) {
        const verdict = await checkCase(c, workers, o);
        if (!verdict.startsWith('ok')) bad++;
        console.log(`${c.name}: ${verdict}`);
      }
      if (bad) process.exitCode = 1;
      return;
    }
    const skip = new Map<Contestant, string>();
    if (o.peers && cases.some((c) => c.peers.includes('torch'))) {
      const t = torchAvailable(o.python);
      if (!t.ok) skip.set('torch', `PyTorch row skipped: ${t.why}`);
    }
    const rows: Row[] = [];
    let counters: StepCounters | undefined;
    for (const [i, c] of cases.entries()) {
      progress(`[${i + 1}/${cases.length}] ${c.name}`);
      const r = await runCase(c, workers, o, skip);
      rows.push(r.row);
      counters ??= r.counters;
      const d = r.row;
      const peers = Object.entries(d.peers).map(([p, v]) => `${p} ${fmt(v)}`).join(', ');
      progress(`  ours ${fmt(d.ours)} ${c.unit}` + (peers ? `; ${peers}` : '; no peers') +
        (d.ratio === null ? '' : `; ratio ${fmt(d.ratio)}x`));
    }
    const webgpuPeers: Contestant[] = o.peers ? ['tfjs', 'jax'] : [];
    const convRows = (pass: RegExp) => rows.filter((r) => /^conv /.test(r.name) &&
      pass.test(r.name));
    const aggregates = [
      aggregate('conv fwd, every layer', convRows(/ fwd$/), 2, webgpuPeers),
      aggregate('conv fwd+bwd, every layer', convRows(/ fwd\+(bwd|dw)$/), 2, webgpuPeers),
      aggregate('batchnorm fwd+bwd, every layer',
        rows.filter((r) => r.name.startsWith('batchnorm')), null, webgpuPeers),
    ].filter((r): r is Row => r !== null);
    await workers.closeAll();

    const stepCase = cases.find((c) => c.spec.kind === 'swav-step');
    let profile: Awaited<ReturnType<typeof profileStep>> | null = null;
    if (o.profile && stepCase) {
      progress('profiling one SwAV step (Engine.profile)');
      profile = await profileStep(stepCase);
    }
    clearInterval(loadTimer);
    loads.push(loadavg()[0]);

    const contestants = (['ours', 'tfjs', 'jax', 'torch'] as Contestant[]).filter((w) =>
      w === 'ours' || rows.some((r) => w in r.peers));
    const seconds = (performance.now() - t0) / 1000;
    const load = { start: loads[0], end: loads[loads.length - 1],
      mean: loads.reduce((a, b) => a + b, 0) / loads.length, max: Math.max(...loads) };
    console.log(formatTable([...rows, ...aggregates], contestants));
    console.log(`\nmedians of ${o.reps} rounds after ${o.warmup} warm-up round(s); ` +
      `${seconds.toFixed(0)} s; 1-minute load average ${fmt(load.start)} at the start, ` +
      `${fmt(load.mean)} mean, ${fmt(load.max)} max, on ${availableParallelism()} cores`);
    const adapters = new Map<string, string[]>();
    for (const [w, i] of workers.info) {
      console.log(`  ${w}: ${i.version}`);
      adapters.set(i.adapter, [...(adapters.get(i.adapter) ?? []), w]);
    }
    for (const [a, ws] of adapters) console.log(`  adapter of ${ws.join(', ')}: ${a}`);
    for (const [w, why] of skip) console.log(`  ${w}: ${why}`);
    const notes = rows.flatMap((r) => Object.entries(r.detail).filter(([, d]) => d?.error)
      .map(([w, d]) => `  ${r.name}: ${w} failed: ${d!.error}`));
    if (notes.length) console.log(notes.join('\n'));
    for (const [w, d] of Object.entries(rows.find((r) => r.unit === 'images/s')?.detail ?? {})) {
      if (d?.note && !skip.has(w as Contestant)) console.log(`  swav step, ${w}: ${d.note}`);
    }
    if (counters) console.log(`\n${formatCounters(counters)}`);
    if (profile) {
      console.log(`\n${formatProfile(profile.kernels, profile.stepMs, profile.source)}`);
      if (profile.error) console.log(`  profile stopped early: ${profile.error}`);
    }
    if (o.json) {
      const out = {
        meta: {
          date: new Date().toISOString(), seconds, reps: o.reps, warmup: o.warmup, quick: o.quick,
          only: o.only ?? null, node: process.version, cores: availableParallelism(), load,
          contestants: Object.fromEntries(workers.info),
          skipped: Object.fromEntries(skip),
          ratio: 'how many times better ours is than the better peer: peer/ours for times ' +
            '(ms), ours/peer for rates (GFLOP/s, images/s)',
        },
        rows: [...rows, ...aggregates],
        step: counters ?? null,
        profile,
      };
      writeFileSync(o.json, `${JSON.stringify(out, null, 2)}\n`);
      progress(`wrote ${o.json}`);
    }
  } finally {
    clearInterval(loadTimer);
    await workers.closeAll();
  }
}

main().catch((e) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
});
