import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { jsonNumbers } from '../commands/verify';
import { fmtError, fmtMs, table } from '../format';
import type { Io } from '../io';
import type { MachineInfo } from '../machine';
import { Progress } from '../progress';

/** The adapter's description on one line, for plot subtitles and table headers. */
export function adapterName(adapter: Record<string, string> | undefined, none = 'no WebGPU adapter'): string {
  return adapter ? Object.values(adapter).filter(Boolean).join(' ') : none;
}

/** Runs a benchmark under a progress bar of `steps` ticks on stderr, cleared however it ends. */
export async function withProgress<T>(
  io: Io,
  steps: number,
  run: (tick: (label: string) => void) => Promise<T>,
): Promise<T> {
  const progress = new Progress(io.stderr, steps);
  try {
    return await run((label) => progress.tick(label));
  } finally {
    progress.done();
  }
}

/** Writes `text` to `file` (resolved against the command's working directory); returns the absolute path. */
export async function writeOutputFile(io: Io, file: string, text: string): Promise<string> {
  const resolved = path.resolve(io.cwd ?? process.cwd(), file);
  await writeFile(resolved, text);
  return resolved;
}

/**
 * The failures a benchmark report counts toward a non-zero exit: runs that threw (skips marked
 * as errors, not backends that are merely unavailable) and results whose check failed.
 */
export function countFailures(report: {
  readonly skipped: readonly { readonly error: boolean }[];
  readonly results: readonly { readonly check?: { readonly pass: boolean } }[];
}): number {
  return (
    report.skipped.filter((s) => s.error).length +
    report.results.filter((r) => r.check && !r.check.pass).length
  );
}

export interface BenchOutput {
  /** The benchmark's name, as in `longseq bench <name>`. */
  readonly name: string;
  readonly machine: MachineInfo;
  /** `--json`: print the document instead of the table. */
  readonly json: boolean;
  /** The fields of the JSON document after `benchmark` and `machine` (config, then the report). */
  readonly doc: Record<string, unknown>;
  /** The human-readable output. */
  readonly table: () => string;
  /** `--svg <file>` and the plot to write there. */
  readonly svgPath?: string | undefined;
  readonly svg?: () => string;
  /** Failed runs or checks; any makes the exit code 1. */
  readonly failed: number;
}

/**
 * The common end of `longseq bench <name>`: the plot written where `--svg` says (noted on
 * stderr), then the JSON document `{benchmark, machine, ...doc}` or the table on stdout, and
 * the exit code.
 */
export async function finishBench(io: Io, out: BenchOutput): Promise<number> {
  if (out.svgPath !== undefined && out.svg) {
    const file = await writeOutputFile(io, out.svgPath, out.svg());
    io.stderr.write(`longseq bench ${out.name}: wrote ${file}\n`);
  }
  if (out.json) {
    const doc = { benchmark: out.name, machine: out.machine, ...out.doc };
    io.stdout.write(`${JSON.stringify(doc, jsonNumbers, 2)}\n`);
  } else {
    io.stdout.write(`${out.table()}\n`);
  }
  return out.failed > 0 ? 1 : 0;
}

/** A table's line for a skipped or failed run, e.g. "FAILED: webgpu N=64 online fused: reason". */
export function skipLine(
  s: {
    readonly backend: string;
    readonly n?: number;
    readonly label?: string;
    readonly reason: string;
    readonly error: boolean;
  },
  xName: string,
): string {
  return `${s.error ? 'FAILED' : 'skipped'}: ${s.backend}${s.n ? ` ${xName}=${s.n}` : ''}${s.label ? ` ${s.label}` : ''}: ${s.reason}`;
}

/** A timed kernel beside a copy of the same bytes, as softmax and scan report them. */
export interface CopyComparedResult {
  readonly backend: string;
  readonly n: number;
  readonly label: string;
  readonly medianMs: number;
  readonly wallMedianMs: number;
  readonly gbps: number;
  readonly pctOfCopy?: number;
  readonly timer: string;
  readonly check?: { readonly pass: boolean; readonly maxError: number };
}

/** The table of copy-compared results, one row per backend, size and kernel; `xName` heads the size column. */
export function copyComparedTable(results: readonly CopyComparedResult[], xName: string): string {
  const rows = results.map((r) => [
    r.backend,
    String(r.n),
    r.label,
    fmtMs(r.medianMs),
    fmtMs(r.wallMedianMs),
    r.gbps.toFixed(r.gbps >= 100 ? 0 : r.gbps >= 10 ? 1 : 2),
    r.pctOfCopy === undefined ? '' : `${r.pctOfCopy.toFixed(0)}%`,
    r.timer,
    r.check ? `${r.check.pass ? 'ok' : 'FAIL'} ${fmtError(r.check.maxError)}` : '',
  ]);
  return table(
    [
      'backend',
      ` ${xName}`,
      'kernel',
      ' ms/call',
      ' wall ms',
      ' GB/s',
      ' % copy',
      'timer',
      'check (max err)',
    ],
    rows,
  );
}
