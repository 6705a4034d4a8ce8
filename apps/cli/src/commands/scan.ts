import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { parseBackends } from '../backends';
import {
  benchScan,
  countScanSteps,
  SCAN_KERNELS,
  type ScanBenchConfig,
  type ScanBenchReport,
} from '../bench/scan';
import type { BenchResult } from '../bench/softmax';
import { plotSvg } from '../bench/svg';
import { UsageError } from '../errors';
import { fmtError, fmtMs, table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { Progress } from '../progress';
import { jsonNumbers } from './verify';

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

  const progress = new Progress(io.stderr, countScanSteps(config));
  let report: ScanBenchReport;
  try {
    report = await benchScan(config, (label) => progress.tick(label));
  } finally {
    progress.done();
  }
  const machine = machineInfo(report.adapter);

  const svgPath = stringFlag(p, 'svg');
  if (svgPath !== undefined) {
    const adapter = report.adapter
      ? Object.values(report.adapter).filter(Boolean).join(' ')
      : 'no WebGPU adapter';
    // The shared plot draws time per call against "n": here the sequence length L.
    const points = report.results.map(
      (r) =>
        ({
          ...r,
          kernel: r.kernel === 'copy' ? 'copy' : 'softmax',
          algorithm: undefined,
          variant: r.algorithm,
          rows: r.batch * r.channels,
        }) as unknown as BenchResult,
    );
    const svg = plotSvg(points, {
      title: `selective scan, batch ${config.batch}, d ${config.channels}, n ${config.states}: time per call against L`,
      subtitle: `x axis: sequence length L; ${adapter}; ${machine.date.slice(0, 10)}`,
    });
    const file = path.resolve(io.cwd ?? process.cwd(), svgPath);
    await writeFile(file, svg);
    io.stderr.write(`longseq bench scan: wrote ${file}\n`);
  }

  const { backends: _b, skipUnavailable: _s, ...shown } = config;
  if (boolFlag(p, 'json')) {
    const doc = { benchmark: 'scan', machine, config: { ...shown, backends: config.backends }, ...report };
    io.stdout.write(`${JSON.stringify(doc, jsonNumbers, 2)}\n`);
  } else {
    io.stdout.write(`${renderTable(report, config)}\n`);
  }
  const failed =
    report.skipped.filter((s) => s.error).length +
    report.results.filter((r) => r.check && !r.check.pass).length;
  return failed > 0 ? 1 : 0;
}

function renderTable(report: ScanBenchReport, config: ScanBenchConfig): string {
  const rows = report.results.map((r) => [
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
    table(
      ['backend', ' L', 'kernel', ' ms/call', ' wall ms', ' GB/s', ' % copy', 'timer', 'check (max err)'],
      rows,
    ),
  ];
  for (const s of report.skipped) {
    lines.push(
      `${s.error ? 'FAILED' : 'skipped'}: ${s.backend}${s.n ? ` L=${s.n}` : ''}${s.label ? ` ${s.label}` : ''}: ${s.reason}`,
    );
  }
  return lines.join('\n');
}
