// The engine in a real browser: Debian's Chromium, headless, WebGPU on its SwiftShader CPU
// adapter, driven by playwright-core against the page `npm run web` serves (same server
// code, a random free port on 127.0.0.1). Node's side of the comparisons runs on Dawn.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist } from '../../src/data/fashion-node.js';
import { createEngine, grad, ops } from '../../src/node.js';
import { defaultConfig } from '../../src/swav/config.js';
import { SwavTrainer } from '../../src/swav/trainer.js';
import { compare, type Tolerance } from '../../src/reference/compare.js';
import { startWebServer, type WebServer } from '../../tools/web.js';
import { CHECKS, type CheckReport } from '../../tools/web/checks.js';
import { fixedComputation, type FixedResult } from '../../tools/web/fixed.js';
import { LIVE_IMAGES, liveConfig } from '../../tools/web/live.js';
import type { PageApi } from '../../tools/web/main.js';

const CHROMIUM = '/usr/bin/chromium';
const MISSING = `${CHROMIUM} is missing (tools/setup-system.sh installs Debian's chromium); ` +
  'browser tests skipped';
const ARTIFACTS = join(import.meta.dirname, '..', '..', 'test-artifacts');

// The flags that run WebGPU headless here (see MACHINE-FACTS.md); nothing reaches the network.
const FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Node (Dawn on lavapipe) against Chromium (SwiftShader): two drivers compiling the same WGSL
 * in float32 with the same workgroup sizes, so every sum adds its terms in the same order.
 * What may differ is each driver's exp, log, tanh and division (WGSL allows exp 3 + 2|x| ulp
 * and division 2.5 ulp, so two conforming drivers can disagree by several ulp) and whether
 * a * b + c is fused. Such differences, passed through ~10 chained ops and a mean, stay
 * within some tens of ulp of an output's own scale: we allow 64 ulp of the largest |value|
 * of each output (2^-18 ~ 3.8e-6 relative to it) plus 1e-4 relative per element. A wrong
 * index or op moves values by far more. Measured here: h within 1.2e-7 (|h| <= 1), the
 * loss identical, gradients within 2e-9 (their scale is ~1e-3).
 */
function nodeVsBrowserTol(values: readonly number[]): Tolerance {
  const scale = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  return { atol: 2 ** -18 * scale, rtol: 1e-4 };
}

/** Steps the page trains (CPU_LIVE_CONFIG, about 3 s each in SwiftShader). */
const TRAIN_STEPS = 6;

/**
 * One SwAV step in Node against the same step in the browser: the same seed gives the same
 * images, crops and initial weights (all drawn in JavaScript), so only the two drivers'
 * float32 rounding differs (see nodeVsBrowserTol). The loss carries that rounding through a
 * ResNet, batch norm, Sinkhorn (whose exp(s / 0.05) multiplies a score's error by 20) and a
 * softmax at T = 0.1 (another 10), and the second step's loss also sees the first step's
 * gradients through the LARS update. We allow 1e-4 relative (~1700 ulp: a few ulp per layer
 * times those factors); measured here, 1.1e-7 (2 ulp). A wrong gradient or another batch
 * moves the loss by percents.
 */
const SWAV_NODE_VS_BROWSER: Tolerance = { atol: 0, rtol: 1e-4 };

let browserLosses: number[] | null = null;
let server: WebServer | undefined;
let context: BrowserContext | undefined;
let page: Page | undefined;
let profile: string | undefined;
const pageErrors: string[] = [];

function needBrowser(ctx: TestContext): Page {
  ctx.skip(!page, MISSING);
  return page!;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) return;
  server = await startWebServer({ port: 0 });
  profile = mkdtempSync(join(tmpdir(), 'swavgpu-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS,
    viewport: { width: 1100, height: 1400 },
  });
  page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(server.url);
});

afterAll(async () => {
  await context?.close();
  await server?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('the web page in headless Chromium', () => {
  it('finds a WebGPU adapter', async (ctx) => {
    const p = needBrowser(ctx);
    const adapter = await p.evaluate(() => window.swavgpuPage.ready);
    expect(adapter).not.toBe('');
    expect(await p.textContent('#adapter')).toBe(adapter);
  });

  it('passes every kernel check against the float64 references', async (ctx) => {
    const p = needBrowser(ctx);
    await p.click('#run-checks');
    await p.waitForSelector('#checks-status[data-state="done"]', { timeout: 60_000 });
    const report = await p.evaluate(() => window.swavgpuPage.lastChecks) as CheckReport | null;
    expect(report, await p.textContent('#checks-status') ?? '').not.toBeNull();
    const { rows } = report!;
    const failures = rows.filter((r) => !r.pass).map((r) => `${r.family}: ${r.message}`);
    expect(failures, failures.join('\n')).toEqual([]);
    // Every family of the table ran, forward and backward.
    expect(new Set(rows.map((r) => r.family))).toEqual(new Set(CHECKS.map((c) => c.family)));
    expect(rows.some((r) => r.kernel.includes('backward'))).toBe(true);
    ctx.annotate(`${rows.length} outputs in ${(report!.ms / 1000).toFixed(1)} s`);
    expect(await p.textContent('#families')).toContain('pass');
  });

  it('gives the values Node gives for a fixed loss and its gradients', async (ctx) => {
    const p = needBrowser(ctx);
    const inBrowser = await p.evaluate(() => window.swavgpuPage.fixed()) as FixedResult;
    const engine = await createEngine();
    let inNode: FixedResult;
    try {
      inNode = await fixedComputation({ ops, grad }, engine);
    } finally {
      await engine.dispose();
    }
    expect(Object.keys(inBrowser).sort()).toEqual(Object.keys(inNode).sort());
    for (const [name, nodeValues] of Object.entries(inNode)) {
      const r = compare(inBrowser[name], nodeValues,
        { ...nodeVsBrowserTol(nodeValues), name: `${name} (browser vs Node)` });
      expect(r.ok, r.message).toBe(true);
      ctx.annotate(`${name}: max abs diff ${r.maxAbsErr.toExponential(2)}, max rel diff ` +
        `${r.maxRelErr.toExponential(2)} over ${r.count} values`);
    }
  });

  it('trains SwAV live: the loss falls over a few steps', async (ctx) => {
    const p = needBrowser(ctx);
    ctx.skip(!server!.dataDir, `no Fashion-MNIST at ${DEFAULT_FASHION_MNIST_DIR} ` +
      '(Debian package dataset-fashion-mnist; tools/setup-system.sh installs it)');
    const losses = await p.evaluate((n) => window.swavgpuPage.train(n), TRAIN_STEPS);
    expect(losses.every(Number.isFinite), losses.join(', ')).toBe(true);
    // Each step sees other images, so compare the means of the first and last two.
    const first = (losses[0] + losses[1]) / 2;
    const last = (losses[losses.length - 2] + losses[losses.length - 1]) / 2;
    expect(last, losses.join(', ')).toBeLessThan(first);
    browserLosses = losses;
    ctx.annotate(`losses ${losses.map((l) => l.toFixed(4)).join(', ')}`);
  });

  it('gives the SwAV losses Node gives for the first two steps of the same seed', async (ctx) => {
    ctx.skip(!browserLosses, 'the page trained no SwAV steps (see the test above)');
    const engine = await createEngine();
    const nodeLosses: number[] = [];
    try {
      const data = await loadFashionMnist(DEFAULT_FASHION_MNIST_DIR, 'train',
        { limit: LIVE_IMAGES });
      // The page's settings for its adapter (both are CPU adapters: CPU_LIVE_CONFIG).
      const adapter = await page!.evaluate(() => window.swavgpuPage.ready);
      const trainer = new SwavTrainer(engine, liveConfig(defaultConfig, adapter), data);
      for (let i = 0; i < 2; i++) nodeLosses.push((await trainer.runStep().result).loss);
      trainer.dispose();
    } finally {
      await engine.dispose();
    }
    const r = compare(browserLosses!.slice(0, 2), nodeLosses,
      { ...SWAV_NODE_VS_BROWSER, name: 'SwAV loss, steps 0 and 1 (browser vs Node)' });
    expect(r.ok, r.message).toBe(true);
    ctx.annotate(`Node ${nodeLosses.join(', ')}; browser ${browserLosses!.slice(0, 2).join(', ')}`);
  });

  it('saves a screenshot of the page to test-artifacts/', async (ctx) => {
    const p = needBrowser(ctx);
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, 'web-page.png');
    await p.screenshot({ path, fullPage: true });
    expect(existsSync(path)).toBe(true);
    expect(pageErrors).toEqual([]);
  });

  it('runs the embedding example: a forward pass printed in the page', async (ctx) => {
    const p = needBrowser(ctx);
    const embed = await p.context().newPage();
    try {
      await embed.goto(`${server!.url}embed/`);
      await embed.waitForFunction(() =>
        document.getElementById('out')?.textContent?.includes('z ='));
      const text = (await embed.textContent('#out'))!;
      const got = (JSON.parse(text.slice(text.indexOf('z = ') + 4)) as number[][]).flat();
      // The example's model in float64: l2Normalize(relu(x W1 + b1) W2).
      const x = [[1, 2, 3], [0, 1, 0], [-1, -2, 0], [0.5, 0.5, 0.5]];
      const w1 = [[0.5, -0.25, 0.125, 1, -1], [0.75, 0.5, -0.5, 0.25, 0],
        [-0.25, 1, 0.5, -0.75, 0.25]];
      const b1 = [0.1, 0, -0.1, 0.2, 0];
      const w2 = [[1, 0], [0, 1], [0.5, 0.5], [-0.5, 0.5], [1, -1]];
      const want = x.flatMap((row) => {
        const h = b1.map((b, j) => Math.max(0, row.reduce((s, v, k) => s + v * w1[k][j], b)));
        const z = [0, 1].map((c) => h.reduce((s, v, j) => s + v * w2[j][c], 0));
        return z.map((v) => v / Math.hypot(...z));
      });
      // Printed to 4 decimals.
      const r = compare(got, want, { atol: 5e-5, rtol: 0, name: 'embed example z' });
      expect(r.ok, r.message).toBe(true);
    } finally {
      await embed.close();
    }
  });

  it('says what to do when the browser has no WebGPU', async (ctx) => {
    const p = needBrowser(ctx);
    const bare = await p.context().newPage();
    try {
      // A browser without WebGPU has no navigator.gpu; take it away before the page loads.
      await bare.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
      });
      await bare.goto(server!.url);
      await bare.waitForSelector('#no-webgpu', { state: 'visible' });
      const text = (await bare.textContent('#no-webgpu'))!;
      expect(text).toContain('no navigator.gpu');
      expect(text).toContain('--enable-unsafe-webgpu');
      expect(await bare.isDisabled('#run-checks')).toBe(true);
    } finally {
      await bare.close();
    }
  });
});

// Keeps the page's global in the type checker's view for the evaluate callbacks above.
export type { PageApi };
