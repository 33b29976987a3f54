// Medians, ratios, the printed table and the kernel profile of the benchmark's results.

import type { TimingSource } from '../../src/gpu/context.js';
import type { Contestant, StepCounters } from './protocol.js';
import { higherIsBetter, type Unit } from './cases.js';

/** One contestant's figures for one case. */
export interface Measured {
  /** In the case's unit; null when it failed or was skipped. */
  value: number | null;
  /** Median wall time per operation, ms. */
  ms: number | null;
  /** Wall ms per operation of each timed sample, in round order. */
  samples: number[];
  /** Median CPU ms per operation of the threads other than the main one (Node workers). */
  cpuMs: number | null;
  /** Operations per sample. */
  inner: number;
  /** The first call, compilation included, ms. */
  firstMs: number | null;
  error?: string;
  note?: string;
}

export interface Row {
  name: string;
  unit: Unit;
  ours: number | null;
  /** The better peer (by value) and its figure. */
  peer: string | null;
  peerValue: number | null;
  /** How many times better ours is than that peer: > 1 means ours wins. */
  ratio: number | null;
  target: number | null;
  meets: boolean | null;
  /** Every peer's figure. */
  peers: Record<string, number | null>;
  perStep?: number;
  where?: string;
  detail: Partial<Record<Contestant, Measured>>;
}

export function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** ours / peer for rates, peer / ours for times: above 1, ours is better. */
export function ratioOf(unit: Unit, ours: number | null, peer: number | null): number | null {
  if (ours === null || peer === null || ours <= 0 || peer <= 0) return null;
  return higherIsBetter(unit) ? ours / peer : peer / ours;
}

/** Fills the row's comparison fields from its measured contestants. */
export function makeRow(base: Omit<Row, 'ours' | 'peer' | 'peerValue' | 'ratio' | 'meets' |
  'peers'>, peerNames: Contestant[]): Row {
  const ours = base.detail.ours?.value ?? null;
  const peers: Record<string, number | null> = {};
  let peer: string | null = null;
  let peerValue: number | null = null;
  const better = (a: number, b: number) => (higherIsBetter(base.unit) ? a > b : a < b);
  for (const p of peerNames) {
    const v = base.detail[p]?.value ?? null;
    peers[p] = v;
    if (v !== null && (peerValue === null || better(v, peerValue))) {
      peer = p;
      peerValue = v;
    }
  }
  const ratio = ratioOf(base.unit, ours, peerValue);
  const meets = base.target === null || ratio === null ? null : ratio >= base.target;
  return { ...base, ours, peer, peerValue, ratio, meets, peers };
}

/** Three significant figures, at most. */
export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

export function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

/** The results as a fixed-width table (one line per row). */
export function formatTable(rows: Row[], contestants: Contestant[]): string {
  const head = ['case', 'unit', ...contestants, 'best peer', 'ratio', 'target'];
  const lines = rows.map((r) => [
    r.name, r.unit,
    ...contestants.map((c) => {
      if (c === 'ours') return r.ours === null ? (r.detail.ours?.error ? 'failed' : '-') :
        fmt(r.ours);
      if (!(c in r.peers)) return '';
      const d = r.detail[c];
      return r.peers[c] === null ? (d?.error ? 'failed' : '-') : fmt(r.peers[c]);
    }),
    r.peer ?? '-', r.ratio === null ? '-' : `${fmt(r.ratio)}x`,
    r.target === null ? '' : `>=${r.target}x ${r.meets === null ? '?' : r.meets ? 'ok' : 'MISS'}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const pad = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) :
    c.padStart(widths[i]))).join('  ').trimEnd();
  return [pad(head), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(pad)].join('\n');
}

export function formatCounters(c: StepCounters): string {
  const r = c.required;
  const ratio = r.total > 0 ? c.peakBytes / r.total : NaN;
  return [
    `per training step (ours, ${c.steps} steps measured, the first excluded):`,
    `  ${fmt(c.submitsPerStep)} queue submissions, ${fmt(c.readbacksPerStep)} readbacks, ` +
      `${fmt(c.dispatchesPerStep)} dispatches, recorded runs encoded and submitted in ` +
      `${fmt(c.encodeMsPerStep)} ms`,
    `  ${c.allocationsAfterFirst} buffers allocated in the ${c.steps - 1} steps after the first ` +
      `(tensors ` +
      `${c.allocationsByPool.tensors}, uniforms ${c.allocationsByPool.uniforms}, readback ` +
      `${c.allocationsByPool.readback})`,
    `  peak ${mb(c.peakBytes)} of tensor buffers in use (pool holds ${mb(c.poolBytes)}); ` +
      `must be alive: ${mb(r.total)} = params ${mb(r.params)} + optimizer ${mb(r.optimizer)} + ` +
      `running stats ${mb(r.buffers)} + saved activations ${mb(r.saved)} + images and ` +
      `loader ${mb(r.otherLeaves)}`,
    `  peak / must-be-alive = ${fmt(ratio)}x (target <= 2x ${ratio <= 2 ? 'ok' : 'MISS'}); ` +
      `exact-size liveness peak in the engine's order: ${mb(r.livenessPeak)}`,
  ].join('\n');
}

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
  share: number;
}

/** Profiled dispatches summed by the op that recorded them, largest first. */
export function aggregateKernels(dispatches: readonly { label: string; ms: number }[]):
  KernelTime[] {
  const by = new Map<string, { calls: number; ms: number }>();
  for (const d of dispatches) {
    const e = by.get(d.label) ?? { calls: 0, ms: 0 };
    e.calls++;
    e.ms += d.ms;
    by.set(d.label, e);
  }
  const total = [...by.values()].reduce((a, e) => a + e.ms, 0);
  return [...by.entries()].map(([kernel, e]) => ({ kernel, ...e, share: e.ms / total }))
    .sort((a, b) => b.ms - a.ms);
}

export function formatProfile(k: KernelTime[], stepMs: number | null,
  source: TimingSource | null): string {
  const total = k.reduce((a, e) => a + e.ms, 0);
  const w = Math.max(6, ...k.map((e) => e.kernel.length));
  const lines = k.map((e) => `  ${e.kernel.padEnd(w)}  ${String(e.calls).padStart(5)}  ` +
    `${e.ms.toFixed(1).padStart(8)}  ${(100 * e.share).toFixed(1).padStart(5)}%`);
  const how = source === 'device'
    ? 'device timestamps around each dispatch, the step one submission'
    : 'each dispatch submitted and awaited alone';
  return [
    `where the SwAV step's time goes (Engine.profile: ${how}; ${fmt(total)} ms of kernels in ` +
      `all${stepMs === null ? '' : `, the profiled step took ${fmt(stepMs)} ms`}):`,
    `  ${'kernel'.padEnd(w)}  calls        ms  share`,
    ...lines,
  ].join('\n');
}
