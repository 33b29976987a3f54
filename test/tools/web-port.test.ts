// `npm run web` on a port already taken: one line naming the port and the way out
// (--port), exit 1, no stack trace; startWebServer rejects with WebServerError saying so.
// Only 127.0.0.1 is touched. And the README passes a script's options after npm's `--`.

import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { startWebServer, WebServerError } from '../../tools/web.js';

const root = resolve(import.meta.dirname, '../..');

/** A listener on a free loopback port, standing in for another server. */
async function occupy(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return { server, port: (server.address() as { port: number }).port };
}

describe('npm run web on a port in use', () => {
  it('the command prints one line naming the port and suggesting --port, exit 1', async () => {
    const { server, port } = await occupy();
    try {
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'tools/web.ts', '--port',
        String(port)], { cwd: root, encoding: 'utf8', timeout: 120_000 });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`web: port ${port} on 127.0.0.1 is already in use (another ` +
        'server, or an earlier npm run web still running); pass --port N for another port, ' +
        'or --port 0 for any free one\n');
    } finally {
      server.close();
    }
  });

  it('startWebServer rejects with WebServerError, and leaves no server behind', async () => {
    const { server, port } = await occupy();
    try {
      const err = await startWebServer({ port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WebServerError);
      expect((err as Error).message).toMatch(new RegExp(`^web: port ${port} on 127\\.0\\.0\\.1 ` +
        'is already in use'));
    } finally {
      server.close();
    }
    // Free again, the same port serves.
    const web = await startWebServer({ port });
    try {
      expect(web.url).toBe(`http://127.0.0.1:${port}/`);
      expect((await fetch(web.url)).status).toBe(200);
    } finally {
      await web.stop();
    }
  });
});

describe('README', () => {
  it('every `npm run <script>` given options passes them after `--`', () => {
    // npm keeps options before `--` for itself: `npm run web --port 1` never reaches the
    // server (nor does an option named in a comment on that line, as a reader types it).
    const lines = readFileSync(resolve(root, 'README.md'), 'utf8').split('\n');
    const wrong = lines.filter((l) => [...l.matchAll(/npm run [\w:-]+( -- )?([^`]*)/g)]
      .some((m) => !m[1] && /(^|[\s(])--[a-z]/.test(m[2])));
    expect(wrong).toEqual([]);
    expect(lines).toContain('npm run web -- --port N  # another port (npm keeps options ' +
      'before the -- for itself)');
  });
});
