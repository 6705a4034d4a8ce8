/**
 * Where a command writes. The binary passes process.stdout/stderr; tests pass buffers, so a
 * command can run in-process and its output be parsed.
 */
export interface Output {
  write(text: string): unknown;
  /** True when the stream is a terminal: progress bars are drawn only then. */
  readonly isTTY?: boolean;
  /** Terminal width, when known. */
  readonly columns?: number;
}

export interface Io {
  readonly stdout: Output;
  readonly stderr: Output;
  /** Resolves relative paths (verify's file, --svg). Defaults to process.cwd(). */
  readonly cwd?: string;
}

/** An Output that keeps what was written, for tests. */
export class BufferOutput implements Output {
  private readonly chunks: string[] = [];
  constructor(readonly isTTY = false) {}
  write(text: string): void {
    this.chunks.push(text);
  }
  get text(): string {
    return this.chunks.join('');
  }
}

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd() };
}
