// The run folder's lock: one holder at a time, named when refused; released on release()
// and on process.exit(); a lock whose process is gone is taken over with a note.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync }
  from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { FolderLockedError, LOCK_NAME, lockFolder } from '../../src/io/checkpoint-node.js';
import { FileSystemError } from '../../src/io/file-error.js';

const root = resolve(import.meta.dirname, '../..');
let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'swavgpu-lock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The pid of a process that has exited (and so is not running). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  expect(r.status).toBe(0);
  return r.pid!;
}

describe('lockFolder', () => {
  it('writes the pid, refuses a second lock naming folder and pid, frees on release', () => {
    const lock = lockFolder(dir);
    const path = join(dir, LOCK_NAME);
    expect(lock.path).toBe(path);
    const held = JSON.parse(readFileSync(path, 'utf8')) as { pid: number; host: string };
    expect(held.pid).toBe(process.pid);
    expect(held.host).toBe(hostname());
    // Written whole beside it and linked into place: no temporary file stays.
    expect(readdirSync(dir)).toEqual([LOCK_NAME]);

    const err = (() => {
      try {
        lockFolder(dir);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(FolderLockedError);
    expect((err as FolderLockedError).holder?.pid).toBe(process.pid);
    expect((err as Error).message).toMatch(new RegExp(`^${dir}: in use: process ` +
      `${process.pid} \\(this process\\) has been training into it since \\S+ \\(lock file ` +
      `${path}\\)\\. Wait for it to end, stop it, or use another folder$`));
    // The refusal left the holder's lock alone.
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(process.pid);

    lock.release();
    expect(existsSync(path)).toBe(false);
    lock.release();
    lockFolder(dir).release();
  });

  it('a lock of a process that is no longer running is taken over, with a note', () => {
    const dead = deadPid();
    const path = join(dir, LOCK_NAME);
    writeFileSync(path, JSON.stringify({ pid: dead, host: hostname(),
      started: '2020-01-01T00:00:00.000Z', token: 'old' }));
    const notes: string[] = [];
    const lock = lockFolder(dir, (l) => notes.push(l));
    expect(notes).toEqual([`${path}: took over the lock of process ${dead} (since ` +
      '2020-01-01T00:00:00.000Z), which is no longer running']);
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(process.pid);
    lock.release();
    // Nothing left beside it (the stale file renamed aside is gone too).
    expect(existsSync(path)).toBe(false);
    expect(spawnSync('ls', ['-A', dir], { encoding: 'utf8' }).stdout).toBe('');
  });

  it('a lock naming this process\'s pid but not taken by it (a restarted container) is stale',
    () => {
      const path = join(dir, LOCK_NAME);
      writeFileSync(path, JSON.stringify({ pid: process.pid, host: hostname(),
        started: '2025-01-01T00:00:00.000Z', token: 'before-the-restart' }));
      const notes: string[] = [];
      const lock = lockFolder(dir, (l) => notes.push(l));
      expect(notes).toEqual([`${path}: took over the lock of process ${process.pid} (since ` +
        '2025-01-01T00:00:00.000Z), which is no longer running']);
      // While it is held here, this process's own lock is live all the same.
      expect(() => lockFolder(dir)).toThrow(/\(this process\) has been training into it/);
      lock.release();
      expect(existsSync(path)).toBe(false);
    });

  it('another host\'s lock and a lock naming no process are refused, never taken over', () => {
    const path = join(dir, LOCK_NAME);
    writeFileSync(path, JSON.stringify({ pid: deadPid(), host: 'elsewhere',
      started: '2020-01-01T00:00:00.000Z', token: 'x' }));
    expect(() => lockFolder(dir)).toThrow(new RegExp('on host elsewhere has been training ' +
      'into it.*; if it no longer runs on elsewhere, delete the lock file$'));
    writeFileSync(path, 'garbage');
    expect(() => lockFolder(dir)).toThrow(`${dir}: locked by ${path}, which names no process`);
    expect(readFileSync(path, 'utf8')).toBe('garbage');
  });

  it('a missing folder or one under a regular file: the lock file, folder and code', () => {
    const missing = join(dir, 'missing');
    expect(() => lockFolder(missing)).toThrow(new FileSystemError(join(missing, LOCK_NAME),
      'create the lock file', Object.assign(new Error('x'), { code: 'ENOENT' })).message);
    writeFileSync(join(dir, 'plain'), 'x');
    expect(() => lockFolder(join(dir, 'plain'))).toThrow(
      /plain\/swavgpu\.lock: cannot create the lock file in the folder \S+plain: ENOTDIR/);
  });

  it('processes racing for one folder: exactly one wins, the others name its pid', async () => {
    // The winner holds its lock until its stdin closes, after every process has answered.
    const script = `
      import { lockFolder } from './src/io/checkpoint-node.ts';
      try {
        lockFolder(${JSON.stringify(dir)});
        console.log('won ' + process.pid);
        process.stdin.on('end', () => process.exit(0)).resume();
      } catch (e) {
        console.log('refused ' + e.message);
      }`;
    const children = Array.from({ length: 4 }, () => spawn(process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root }));
    const ended = children.map((child) => new Promise((done) => child.on('close', done)));
    const said = await Promise.all(children.map((child) => new Promise<string>((done) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) done(out.trim());
      });
    })));
    for (const child of children) child.stdin.end();
    await Promise.all(ended);
    const won = said.filter((l) => l.startsWith('won '));
    expect(won).toHaveLength(1);
    const pid = won[0].slice(4);
    for (const l of said.filter((x) => !x.startsWith('won '))) {
      expect(l).toMatch(new RegExp(`^refused ${dir}: in use: process ${pid} has been `));
    }
    expect(existsSync(join(dir, LOCK_NAME))).toBe(false);
  });

  it('process.exit() removes the lock; a killed process leaves it for the next to take',
    () => {
      const script = (end: string) => `
        import { lockFolder } from './src/io/checkpoint-node.ts';
        lockFolder(${JSON.stringify(dir)});
        ${end}`;
      const run = (end: string) => spawnSync(process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script(end)], { cwd: root });
      expect(run('process.exit(3);').status).toBe(3);
      expect(existsSync(join(dir, LOCK_NAME))).toBe(false);
      const killed = run("process.kill(process.pid, 'SIGKILL');");
      expect(killed.signal).toBe('SIGKILL');
      expect(JSON.parse(readFileSync(join(dir, LOCK_NAME), 'utf8')).pid).toBe(killed.pid);
      const notes: string[] = [];
      lockFolder(dir, (l) => notes.push(l)).release();
      expect(notes[0]).toMatch(`took over the lock of process ${killed.pid}`);
    });
});
