// The base of every error about a file's contents: the message starts with the file name.
// FileSystemError is the one for a failed read or write: what was being done, to which
// file, in which folder, and the OS's reason. No Node import: the browser bundle has it.

export class FileError extends Error {
  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${detail}`, options);
  }
}

/** The folder part of a path, '/' and '\\' both separators (node:path is not here). */
function folderOf(file: string): string {
  const cut = Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\'));
  return cut < 0 ? '.' : cut === 0 ? file[0] : file.slice(0, cut);
}

/** What the common error codes mean for someone writing into a folder. */
const REASONS: Record<string, string> = {
  ENOENT: 'the folder does not exist',
  ENOTDIR: 'a part of the folder\'s path is a file, not a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is used up',
  EISDIR: 'a folder of that name is in the way',
  EEXIST: 'a file of that name is in the way',
  EMFILE: 'too many open files',
  EIO: 'an input/output error of the device',
};

/**
 * A system call's failure while doing something to a file, said in the file's terms: the
 * message is `<file>: cannot <action> in <folder>: <CODE> (<reason>)`, whatever temporary
 * name the call itself used. `code` is the OS's (EACCES, ENOENT...).
 */
export class FileSystemError extends FileError {
  override name = 'FileSystemError';
  readonly code: string | undefined;

  constructor(file: string, action: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    const why = code ? `${code} (${REASONS[code] ?? ((cause as Error).message
      .replace(/^\w+: /, '').replace(/, \w+ '.*'$/, ''))})`
      : cause instanceof Error ? cause.message : String(cause);
    super(file, `cannot ${action} in the folder ${folderOf(file)}: ${why}`, { cause });
    this.code = code;
  }
}
