import type { Output } from './io';

/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal (so logs, pipes
 * and tests see nothing). `done()` clears the line.
 */
export class Progress {
  private step = 0;
  private readonly enabled: boolean;
  constructor(
    private readonly out: Output,
    private readonly total: number,
  ) {
    this.enabled = out.isTTY === true && total > 0;
  }

  tick(label: string): void {
    this.step++;
    this.draw(label);
  }

  draw(label: string): void {
    if (!this.enabled) return;
    const width = 24;
    const filled = Math.round((width * Math.min(this.step, this.total)) / this.total);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.step}/${this.total} ${label}`;
    const columns = this.out.columns ?? 100;
    this.out.write(`\r\x1b[2K${bar.slice(0, columns - 1)}`);
  }

  done(): void {
    if (this.enabled) this.out.write('\r\x1b[2K');
  }
}
