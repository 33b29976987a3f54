// `npm run web`: serves the kernel-check and live-SwAV page (tools/web/) and the embedding
// example (examples/embed/) on 127.0.0.1 through esbuild's own server, which rebuilds on
// request whenever a source or shader changed.
//
// The serve folder is a fresh temporary directory of symbolic links (the two HTML pages,
// the style sheet, and data/ -> the Fashion-MNIST folder) plus esbuild's outputs:
// swavgpu.js (the same bundle as dist/browser/swavgpu.js), main.js and embed/main.js. The
// pages load the engine only through the bundle, by the import map name `swavgpu`.

import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import * as esbuild from 'esbuild';
import { BROWSER_ENTRY, ROOT, commonOptions, isMain, shadersPlugin } from './build-browser.js';

export const DEFAULT_PORT = 8765;
export const DEFAULT_DATA_DIR = '/usr/share/datasets/fashion-mnist';
/** Loopback only: the server is for the person at this machine and for the tests. */
export const HOST = '127.0.0.1';

const WEB_DIR = join(ROOT, 'tools', 'web');
const EMBED_DIR = join(ROOT, 'examples', 'embed');
const SRC_DIR = join(ROOT, 'src');

/** A start-up failure the person can fix from its one-line message (a port in use). */
export class WebServerError extends Error {
  override name = 'WebServerError';
}

export interface WebServerOptions {
  /** 0 picks a free port. Default DEFAULT_PORT. */
  port?: number;
  /** Folder of the gzip'd Fashion-MNIST IDX files, served as /data/. */
  dataDir?: string;
  /** Log each request to stderr. */
  logRequests?: boolean;
}

export interface WebServer {
  url: string;
  port: number;
  /** The data folder served as /data/, or null when it does not exist. */
  dataDir: string | null;
  stop(): Promise<void>;
}

/**
 * Keeps the pages on the bundle: an import of src/browser.ts from tools/web or
 * examples/embed becomes the bare import `swavgpu` (left to the page's import map), and any
 * other import of the engine's sources is refused, since it would put a second copy of the
 * engine in the page. The float64 references (src/reference) are allowed: the page checks
 * the bundle against them and they are not part of the bundle.
 */
function pageImportsPlugin(): esbuild.Plugin {
  const inPages = (p: string) => p.startsWith(WEB_DIR + sep) || p.startsWith(EMBED_DIR + sep);
  return {
    name: 'swavgpu-page-imports',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point' || !inPages(args.importer)) return undefined;
        if (args.path === 'swavgpu') return { path: 'swavgpu', external: true };
        if (!args.path.startsWith('.')) return undefined;
        const target = resolve(args.resolveDir, args.path).replace(/\.js$/, '.ts');
        if (target === BROWSER_ENTRY) return { path: 'swavgpu', external: true };
        const isReference = target.startsWith(join(SRC_DIR, 'reference') + sep);
        if (target.startsWith(SRC_DIR + sep) && !isReference) {
          return { errors: [{ text: `${relative(ROOT, args.importer)} imports ` +
            `${relative(ROOT, target)}: pages reach the engine only through src/browser.ts ` +
            `(the bundle); use a type-only import for types` }] };
        }
        return undefined;
      });
    },
  };
}

function link(target: string, path: string): void {
  mkdirSync(resolve(path, '..'), { recursive: true });
  symlinkSync(target, path);
}

/** Starts the server; resolves once it listens. */
export async function startWebServer(opts: WebServerOptions = {}): Promise<WebServer> {
  const servedir = mkdtempSync(join(tmpdir(), 'swavgpu-web-'));
  const dataDir = resolve(opts.dataDir ?? DEFAULT_DATA_DIR);
  const haveData = existsSync(dataDir);
  link(join(WEB_DIR, 'index.html'), join(servedir, 'index.html'));
  link(join(WEB_DIR, 'style.css'), join(servedir, 'style.css'));
  link(join(EMBED_DIR, 'index.html'), join(servedir, 'embed', 'index.html'));
  if (haveData) link(dataDir, join(servedir, 'data'));
  let ctx: esbuild.BuildContext | undefined;
  try {
    ctx = await esbuild.context({
      ...commonOptions(),
      entryPoints: [
        { in: BROWSER_ENTRY, out: 'swavgpu' },
        { in: join(WEB_DIR, 'main.ts'), out: 'main' },
        { in: join(EMBED_DIR, 'main.ts'), out: join('embed', 'main') },
      ],
      outdir: servedir, plugins: [shadersPlugin(), pageImportsPlugin()],
    });
    // A broken source should stop start-up with esbuild's message, not serve a blank page.
    await ctx.rebuild();
    const port = opts.port ?? DEFAULT_PORT;
    const served = await ctx.serve({
      host: HOST, port, servedir,
      onRequest: opts.logRequests ? (r) => process.stderr.write(
        `${r.method} ${r.path} ${r.status} ${r.timeInMS} ms\n`) : undefined,
    }).catch((e: unknown) => {
      // esbuild's Go server says `listen tcp4 127.0.0.1:8765: bind: address already in use`.
      const m = e instanceof Error ? /bind: (address already in use|permission denied)/
        .exec(e.message) : null;
      if (!m) throw e;
      throw new WebServerError(m[1] === 'permission denied'
        ? `web: port ${port} on ${HOST} needs more privileges than this user has; pass ` +
          '--port N for a port >= 1024, or --port 0 for any free one'
        : `web: port ${port} on ${HOST} is already in use (another server, or an ` +
          'earlier npm run web still running); pass --port N for another port, or --port 0 ' +
          'for any free one', { cause: e });
    });
    const c = ctx;
    return {
      url: `http://${HOST}:${served.port}/`, port: served.port, dataDir: haveData ? dataDir : null,
      stop: async () => {
        await c.dispose();
        rmSync(servedir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await ctx?.dispose();
    rmSync(servedir, { recursive: true, force: true });
    throw e;
  }
}

function parseArgs(argv: string[]): WebServerOptions {
  const opts: WebServerOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`web: ${a} needs a value`);
      return v;
    };
    if (a === '--port') {
      const p = Number(value());
      if (!Number.isInteger(p) || p < 0 || p > 65535) {
        throw new Error(`web: --port must be an integer in 0..65535 (0: any free port)`);
      }
      opts.port = p;
    } else if (a === '--data') {
      opts.dataDir = value();
    } else if (a === '--log') {
      opts.logRequests = true;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: npm run web -- [--port N] [--data DIR] [--log]\n' +
        `  --port N    port on ${HOST} (default ${DEFAULT_PORT}; 0 for any free port)\n` +
        `  --data DIR  Fashion-MNIST IDX folder (default ${DEFAULT_DATA_DIR})\n` +
        '  --log       print each request\n');
      process.exit(0);
    } else {
      throw new Error(`web: unknown argument ${a} (try --help)`);
    }
  }
  return opts;
}

if (isMain(import.meta.url)) {
  let opts: WebServerOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
  let server: WebServer;
  try {
    server = await startWebServer(opts);
  } catch (e) {
    if (!(e instanceof WebServerError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`swavgpu web page: ${server.url}\n` +
    `  embedding example: ${server.url}embed/\n` +
    (server.dataDir ? `  Fashion-MNIST from ${server.dataDir} at ${server.url}data/\n`
      : `  no Fashion-MNIST at ${resolve(opts.dataDir ?? DEFAULT_DATA_DIR)}: the live panel ` +
        `cannot load images (install dataset-fashion-mnist or pass --data DIR)\n`) +
    '  open it in Chrome or Edge 113+; Ctrl-C stops the server\n');
  const stop = () => {
    server.stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
