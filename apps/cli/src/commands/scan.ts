import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { parseBackends } from '../backends';
import {
  benchScan,
  countScanSteps,
  SCAN_KERNELS,
  type ScanBenchConfig,
  type ScanBenchReport,
  type ScanBenchResult,
} from '../bench/scan';
import {
  adapterName,
  copyComparedTable,
  countFailures,
  finishBench,
  skipLine,
  withProgress,
} from '../bench/report';
import { dashPerKey, groupSeries, type PlotSeries, plotSvg } from '../bench/svg';
import { UsageError } from '../errors';
import type { Io } from '../io';
import { machineInfo } from '../machine';

/** Defaults sized for SwiftShader; on a GPU pass --batch 8 --d 2048 --lengths 4096 --n 16. */
const DEFAULTS = { batch: 1, d: 16, lengths: [64, 256, 1024], n: 16, repeats: 5, warmup: 2, seed: 1234 };

/** `longseq bench scan`: the selective scan against a copy of the same bytes, sequential and parallel. */
export async function benchScanCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      batch: { type: 'string' },
      d: { type: 'string' },
      lengths: { type: 'string' },
      n: { type: 'string' },
      algorithms: { type: 'string' },
      repeats: { type: 'string' },
      dispatches: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      timer: { type: 'string' },
      exp: { type: 'string' },
      'tiles-in-flight': { type: 'string' },
      'quad-workgroup': { type: 'string' },
      'quad-blocks': { type: 'string' },
      json: { type: 'boolean' },
      svg: { type: 'string' },
    },
    'bench scan',
  );
  if (p.positionals.length > 0) throw new UsageError(`bench scan: unexpected argument '${p.positionals[0]}'`);
  const backendFlag = stringFlag(p, 'backend');
  const timer = stringFlag(p, 'timer') ?? 'auto';
  if (timer !== 'auto' && timer !== 'wall')
    throw new UsageError(`--timer: expected auto or wall, got '${timer}'`);
  const algorithms = (stringFlag(p, 'algorithms') ?? SCAN_KERNELS.join(',')).split(',');
  for (const a of algorithms) {
    if (!(SCAN_KERNELS as readonly string[]).includes(a))
      throw new UsageError(`--algorithms: expected a list of ${SCAN_KERNELS.join(', ')}, got '${a}'`);
  }
  const exp = stringFlag(p, 'exp') ?? 'auto';
  if (exp !== 'auto' && exp !== 'fast' && exp !== 'accurate')
    throw new UsageError(`--exp: expected auto, fast or accurate, got '${exp}'`);
  const dispatches = stringFlag(p, 'dispatches') === undefined ? undefined : intFlag(p, 'dispatches', 1);
  const config: ScanBenchConfig = {
    backends: parseBackends(backendFlag, ['webgpu']),
    batch: intFlag(p, 'batch', DEFAULTS.batch),
    channels: intFlag(p, 'd', DEFAULTS.d),
    lengths: intListFlag(p, 'lengths', DEFAULTS.lengths),
    states: intFlag(p, 'n', DEFAULTS.n),
    algorithms: algorithms as ScanBenchConfig['algorithms'],
    repeats: intFlag(p, 'repeats', DEFAULTS.repeats),
    warmup: intFlag(p, 'warmup', DEFAULTS.warmup, 0),
    seed: intFlag(p, 'seed', DEFAULTS.seed, 0),
    timer,
    exp,
    skipUnavailable: backendFlag === 'all',
    ...(dispatches === undefined ? {} : { dispatches }),
    tuning: {
      ...(stringFlag(p, 'quad-blocks') === undefined
        ? {}
        : { quadBlocks: stringFlag(p, 'quad-blocks') !== 'off' }),
      ...(stringFlag(p, 'tiles-in-flight') === undefined
        ? {}
        : { tilesInFlight: intFlag(p, 'tiles-in-flight', 2) }),
      ...(stringFlag(p, 'quad-workgroup') === undefined
        ? {}
        : { quadWorkgroup: intFlag(p, 'quad-workgroup', 64) }),
    },
  };

  const report: ScanBenchReport = await withProgress(io, countScanSteps(config), (tick) =>
    benchScan(config, tick),
  );
  const machine = machineInfo(report.adapter);
  const { backends: _b, skipUnavailable: _s, ...shown } = config;
  return finishBench(io, {
    name: 'scan',
    machine,
    json: boolFlag(p, 'json'),
    doc: { config: { ...shown, backends: config.backends }, ...report },
    table: () => renderTable(report, config),
    svgPath: stringFlag(p, 'svg'),
    svg: () =>
      plotSvg(scanSeries(report.results), {
        title: `selective scan, batch ${config.batch}, d ${config.channels}, n ${config.states}: time per call against L`,
        subtitle: `${adapterName(report.adapter)}; ${machine.date.slice(0, 10)}`,
        xLabel: 'sequence length L',
        yLabel: 'median time per call, ms',
        xName: 'L',
        yUnit: 'ms',
      }),
    failed: countFailures(report),
  });
}

/** One line per backend x kernel: a colour per kernel, a dash per backend, the copy grey and dotted. */
function scanSeries(results: readonly ScanBenchResult[]): PlotSeries[] {
  const dash = dashPerKey();
  return groupSeries(
    results,
    (r) => `${r.backend} ${r.label}`,
    (r) => ({ x: r.n, y: r.medianMs, note: `${r.gbps.toPrecision(3)} GB/s` }),
    (r) => {
      const backendDash = dash(r.backend);
      if (r.kernel === 'copy') return { color: '#555555', dash: '1 3' };
      const index = r.algorithm ? SCAN_KERNELS.indexOf(r.algorithm) : -1;
      return { color: KERNEL_COLORS[index % KERNEL_COLORS.length] ?? '#000', dash: backendDash };
    },
  );
}

const KERNEL_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function renderTable(report: ScanBenchReport, config: ScanBenchConfig): string {
  const lines = [
    `selective scan, batch ${config.batch}, d ${config.channels}, n ${config.states}, B and C [batch, n, L], z, D, dt bias + softplus`,
    'GB/s counts each input read once and y written once; the copy moves the same bytes; median of ' +
      `${config.repeats}`,
    ...(report.exp
      ? [
          `WebGPU e^(dt A): ${report.exp.used} (fast exp2 probe: max relative error ${report.exp.fastExpError.toExponential(2)}, ` +
            `${report.exp.autoUsesFast ? 'within' : 'outside'} 3 ulp)`,
        ]
      : []),
    '',
    copyComparedTable(report.results, 'L'),
  ];
  for (const s of report.skipped) lines.push(skipLine(s, 'L'));
  return lines.join('\n');
}
