// The page's script: finds WebGPU (or says plainly that there is none and what to do), runs
// the kernel-check table, and drives the live SwAV panel through tools/web/live.ts. What
// the tests drive is on window.swavgpuPage; the buttons call the same functions.

import * as api from '../../src/browser.js';
import type { Engine } from '../../src/browser.js';
import { CHECKS, runChecks, type CheckReport } from './checks.js';
import { countAssignments, drawGroups, drawHistogram, drawLossChart } from './draw.js';
import { fixedComputation, type FixedResult } from './fixed.js';
import { LIVE_IMAGES, createLiveTrainer, liveConfig, type LiveImages, type LiveStep,
  type LiveTrainer, type LiveTrainerOptions } from './live.js';

export interface PageApi {
  /** Resolves to the adapter description, or rejects with the reason there is none. */
  ready: Promise<string>;
  /** The report of the last finished run of the kernel checks. */
  lastChecks: CheckReport | null;
  runChecks(): Promise<CheckReport>;
  fixed(): Promise<FixedResult>;
  /**
   * Runs `steps` training steps (as the Start button does) and returns their losses;
   * `config` (settings over LIVE_CONFIG) applies when the trainer is created, at the first
   * step.
   */
  train(steps: number, config?: LiveConfig): Promise<number[]>;
}

type LiveConfig = LiveTrainerOptions['config'];

declare global {
  interface Window {
    swavgpuPage: PageApi;
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

function cell(tr: HTMLTableRowElement, text: string, cls = ''): void {
  const td = tr.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

const fmtErr = (v: number) => (Number.isNaN(v) ? '-' : v === 0 ? '0' : v.toExponential(2));
/** The share of its tolerance the worst element used, as a percentage. */
const fmtUsage = (v: number) => (Number.isNaN(v) ? '-' : `${(100 * v).toPrecision(2)}%`);

let engine: Engine | null = null;

async function start(): Promise<string> {
  try {
    engine = await api.createEngine({ onLost: (m) => showError('live-status', m) });
  } catch (e) {
    const msg = (e as Error).message;
    if (e instanceof api.AdapterError) {
      $('no-webgpu').hidden = false;
      $('no-webgpu-message').textContent = msg;
    }
    $('adapter').textContent = 'none';
    throw e;
  }
  $('adapter').textContent = engine.gpu.adapterInfo;
  $<HTMLButtonElement>('run-checks').disabled = false;
  return engine.gpu.adapterInfo;
}

function showError(id: string, message: string): void {
  const el = $(id);
  el.textContent = message;
  el.className = 'error';
}

// ---- kernel checks ----------------------------------------------------------------------

function familySummary(report: CheckReport | null): void {
  const rows = report?.rows ?? [];
  const body = $<HTMLTableElement>('families').tBodies[0];
  body.replaceChildren();
  for (const { family: fam } of CHECKS) {
    const tr = body.insertRow();
    cell(tr, fam);
    const mine = rows.filter((r) => r.family === fam);
    const bad = mine.filter((r) => !r.pass).length;
    cell(tr, String(mine.length), 'num');
    cell(tr, fmtErr(Math.max(0, ...mine.map((r) => r.maxAbsErr))), 'num');
    cell(tr, fmtUsage(Math.max(0, ...mine.map((r) => r.usage))), 'num');
    if (mine.length === 0) cell(tr, 'not run', 'none');
    else cell(tr, bad ? `${bad} FAIL` : 'pass', bad ? 'fail' : 'pass');
  }
}

async function pageRunChecks(): Promise<CheckReport> {
  if (!engine) throw new Error('kernel checks: no engine (WebGPU missing)');
  const status = $('checks-status');
  const button = $<HTMLButtonElement>('run-checks');
  const rowsBody = $<HTMLTableElement>('check-rows').tBodies[0];
  button.disabled = true;
  status.dataset.state = 'running';
  status.className = '';
  status.textContent = 'running…';
  rowsBody.replaceChildren();
  try {
    const report = await runChecks(engine, api, (r) => {
      const tr = rowsBody.insertRow();
      tr.title = r.message;
      cell(tr, r.family);
      cell(tr, r.kernel);
      cell(tr, fmtErr(r.maxAbsErr), 'num');
      cell(tr, fmtErr(r.maxRelErr), 'num');
      cell(tr, r.tol, 'num');
      cell(tr, fmtUsage(r.usage), 'num');
      cell(tr, r.pass ? 'pass' : 'FAIL', r.pass ? 'pass' : 'fail');
    });
    familySummary(report);
    const { rows } = report;
    const bad = rows.filter((r) => !r.pass).length;
    status.textContent = `${rows.length - bad} of ${rows.length} outputs pass ` +
      `(${(report.ms / 1000).toFixed(1)} s)`;
    status.className = bad ? 'fail' : 'pass';
    window.swavgpuPage.lastChecks = report;
    return report;
  } catch (e) {
    showError('checks-status', (e as Error).message);
    throw e;
  } finally {
    status.dataset.state = 'done';
    button.disabled = false;
  }
}

// ---- live SwAV --------------------------------------------------------------------------

/** Images and assignments of the most recent steps, newest last, for the grid and bars. */
const RECENT = 256;

const live = {
  trainer: null as LiveTrainer | null,
  losses: [] as number[],
  running: false,
  recentPixels: [] as Uint8Array[],
  recentAssignments: [] as number[],
};

/** Adds a step's images to the recent window and returns the window as one image set. */
function remember(s: LiveStep): { images?: LiveImages; assignments: Int32Array } {
  if (s.images) {
    const px = s.images.height * s.images.width;
    for (let i = 0; i < s.images.count; i++) {
      live.recentPixels.push(s.images.pixels.slice(i * px, (i + 1) * px));
      live.recentAssignments.push(s.assignments[i]);
    }
  } else {
    live.recentPixels = [];
    live.recentAssignments = [...s.assignments];
  }
  const drop = Math.max(0, live.recentAssignments.length - RECENT);
  live.recentPixels.splice(0, drop);
  live.recentAssignments.splice(0, drop);
  const assignments = Int32Array.from(live.recentAssignments);
  if (!s.images) return { assignments };
  const { height, width } = s.images;
  const pixels = new Uint8Array(live.recentPixels.length * height * width);
  live.recentPixels.forEach((p, i) => pixels.set(p, i * height * width));
  return { images: { pixels, count: live.recentPixels.length, height, width }, assignments };
}

async function makeTrainer(config?: LiveConfig): Promise<LiveTrainer> {
  if (!engine) throw new Error('no engine (WebGPU missing)');
  if (!live.trainer) {
    $('live-status').textContent = `fetching ${LIVE_IMAGES} Fashion-MNIST images…`;
    const data = await api.fetchFashionMnist('data/', 'train', { limit: LIVE_IMAGES });
    live.trainer = await createLiveTrainer({ api, engine, data, seed: 0, config });
  }
  return live.trainer;
}

function drawStep(t: LiveTrainer, s: LiveStep): void {
  live.losses.push(s.loss);
  drawLossChart($<HTMLCanvasElement>('loss-chart'), live.losses);
  $('ips').textContent = s.imagesPerSecond.toFixed(1);
  const recent = remember(s);
  $('recent-count').textContent = String(recent.assignments.length);
  drawHistogram($<HTMLCanvasElement>('usage'), countAssignments(recent.assignments, t.prototypes));
  drawGroups($<HTMLCanvasElement>('groups'), recent.images, recent.assignments, t.prototypes);
  $('live-status').textContent = `step ${live.losses.length}: loss ${s.loss.toFixed(4)}`;
}

async function trainSteps(steps: number, config?: LiveConfig): Promise<number[]> {
  const t = await makeTrainer(config);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const s = await t.step();
    drawStep(t, s);
    losses.push(s.loss);
  }
  return losses;
}

async function toggleTraining(): Promise<void> {
  const button = $<HTMLButtonElement>('train-toggle');
  if (live.running) {
    live.running = false;
    return;
  }
  live.running = true;
  button.textContent = 'Stop training';
  try {
    while (live.running) await trainSteps(1);
  } catch (e) {
    showError('live-status', (e as Error).message);
  } finally {
    live.running = false;
    button.textContent = 'Start training';
  }
}

function initLive(): void {
  drawLossChart($<HTMLCanvasElement>('loss-chart'), []);
  drawHistogram($<HTMLCanvasElement>('usage'), []);
  drawGroups($<HTMLCanvasElement>('groups'), undefined, new Int32Array(0), 0);
  const button = $<HTMLButtonElement>('train-toggle');
  button.addEventListener('click', () => void toggleTraining());
}

// ---- start ------------------------------------------------------------------------------

const ready = start();
window.swavgpuPage = {
  ready, lastChecks: null, runChecks: pageRunChecks,
  fixed: async () => {
    await ready;
    return fixedComputation(api, engine!);
  },
  train: trainSteps,
};
familySummary(null);
initLive();
$('run-checks').addEventListener('click', () => void pageRunChecks().catch(() => {}));
ready.then(() => {
  $<HTMLButtonElement>('train-toggle').disabled = false;
  const c = liveConfig(api.swav.defaultConfig, engine!.gpu.adapterInfo);
  $('live-status').textContent = `ready: the first ${LIVE_IMAGES} training images, batches ` +
    `of ${c.batchSize}, ${c.prototypes} prototypes, crops ` +
    `${c.crops.map((g) => `${g.count}x${g.size}px`).join(' + ')}`;
}, () => {});
