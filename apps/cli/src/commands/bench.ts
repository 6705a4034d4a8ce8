import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { parseBackends } from '../backends';
import { benchAttentionCommand } from '../bench/attention';
import { benchJambaCommand } from '../bench/jamba';
import { benchJambaMemoryCommand } from '../bench/jamba-memory';
import { benchMambaDecodeCommand } from '../bench/mamba-decode';
import {
  adapterName,
  copyComparedTable,
  countFailures,
  finishBench,
  skipLine,
  withProgress,
} from '../bench/report';
import {
  type BenchConfig,
  type BenchReport,
  type BenchResult,
  benchSoftmax,
  countSteps,
} from '../bench/softmax';
import { benchSsmConvCommand } from '../bench/ssm-conv';
import { benchVimCommand } from '../bench/vim';
import { dashPerKey, groupSeries, type PlotSeries, plotSvg } from '../bench/svg';
import { UsageError } from '../errors';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { benchPagedAttentionCommand, benchPagedKvCommand } from './paged-kv';
import { benchScanCommand } from './scan';

/** Benchmarks by name: `longseq bench <name>`. */
const BENCHMARKS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  softmax: benchSoftmaxCommand,
  'paged-kv': benchPagedKvCommand,
  'paged-attention': benchPagedAttentionCommand,
  'mamba-decode': benchMambaDecodeCommand,
  scan: benchScanCommand,
  attention: benchAttentionCommand,
  'ssm-conv': benchSsmConvCommand,
  vim: benchVimCommand,
  jamba: benchJambaCommand,
  'jamba-memory': benchJambaMemoryCommand,
};

export async function benchCommand(args: string[], io: Io): Promise<number> {
  const [name, ...rest] = args;
  const bench = name === undefined ? undefined : BENCHMARKS[name];
  if (!bench) {
    throw new UsageError(
      `bench: ${name === undefined ? 'expected a benchmark' : `unknown benchmark '${name}'`}; benchmarks: ${Object.keys(BENCHMARKS).join(', ')}`,
    );
  }
  return bench(rest, io);
}

/** Defaults sized for SwiftShader (a CPU pretending to be a GPU); pass real sizes on a GPU. */
const DEFAULTS = { rows: 64, lengths: [64, 256, 1024], repeats: 5, warmup: 3, seed: 1234 };

async function benchSoftmaxCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      rows: { type: 'string' },
      lengths: { type: 'string' },
      repeats: { type: 'string' },
      dispatches: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      timer: { type: 'string' },
      json: { type: 'boolean' },
      svg: { type: 'string' },
    },
    'bench softmax',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench softmax: unexpected argument '${p.positionals[0]}'`);
  const backendFlag = stringFlag(p, 'backend');
  const dispatches = stringFlag(p, 'dispatches') === undefined ? undefined : intFlag(p, 'dispatches', 1);
  const timer = stringFlag(p, 'timer') ?? 'auto';
  if (timer !== 'auto' && timer !== 'wall')
    throw new UsageError(`--timer: expected auto or wall, got '${timer}'`);
  const config: BenchConfig = {
    timer,
    backends: parseBackends(backendFlag, ['webgpu']),
    rows: intFlag(p, 'rows', DEFAULTS.rows),
    lengths: intListFlag(p, 'lengths', DEFAULTS.lengths),
    repeats: intFlag(p, 'repeats', DEFAULTS.repeats),
    warmup: intFlag(p, 'warmup', DEFAULTS.warmup, 0),
    seed: intFlag(p, 'seed', DEFAULTS.seed, 0),
    skipUnavailable: backendFlag === 'all',
    ...(dispatches === undefined ? {} : { dispatches }),
  };

  const report: BenchReport = await withProgress(io, countSteps(config), (tick) =>
    benchSoftmax(config, tick),
  );
  const machine = machineInfo(report.adapter);
  const { backends: _b, skipUnavailable: _s, ...shown } = config;
  return finishBench(io, {
    name: 'softmax',
    machine,
    json: boolFlag(p, 'json'),
    doc: { config: { ...shown, backends: config.backends }, ...report },
    table: () => renderTable(report, config),
    svgPath: stringFlag(p, 'svg'),
    svg: () =>
      plotSvg(softmaxSeries(report.results), {
        title: `softmax over rows of length N (${config.rows} rows)`,
        subtitle: `${adapterName(report.adapter)}; ${machine.date.slice(0, 10)}`,
        xLabel: 'row length N',
        yLabel: 'median time per call, ms',
        xName: 'N',
        yUnit: 'ms',
      }),
    failed: countFailures(report),
  });
}

/** Colour per algorithm, dash per backend and kernel shape, so lines of one algorithm read as a family. */
const ALGORITHM_COLORS: Record<string, string> = {
  naive: '#d62728',
  safe: '#1f77b4',
  online: '#2ca02c',
  copy: '#555555',
};

/** One line per backend x kernel; the copy dotted. */
function softmaxSeries(results: readonly BenchResult[]): PlotSeries[] {
  const dash = dashPerKey();
  return groupSeries(
    results,
    (r) => `${r.backend} ${r.label}`,
    (r) => ({ x: r.n, y: r.medianMs, note: `${r.gbps.toPrecision(3)} GB/s` }),
    (r) => {
      const shape = dash(`${r.backend} ${r.variant ?? ''}`);
      return { color: ALGORITHM_COLORS[r.algorithm ?? 'copy']!, dash: r.kernel === 'copy' ? '1 3' : shape };
    },
  );
}

function renderTable(report: BenchReport, config: BenchConfig): string {
  const lines = [
    `softmax, ${config.rows} rows; GB/s counts one read and one write of the tensor; median of ${config.repeats}`,
    'ms/call is GPU pass time where the timer is gpu; wall ms is submit to queue drained, per call',
    '',
    copyComparedTable(report.results, 'N'),
  ];
  for (const s of report.skipped) lines.push(skipLine(s, 'N'));
  return lines.join('\n');
}
