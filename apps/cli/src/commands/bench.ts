import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { parseBackends } from '../backends';
import { benchAttentionCommand } from '../bench/attention';
import { benchMambaDecodeCommand } from '../bench/mamba-decode';
import { type BenchConfig, type BenchReport, benchSoftmax, countSteps } from '../bench/softmax';
import { benchSsmConvCommand } from '../bench/ssm-conv';
import { plotSvg } from '../bench/svg';
import { UsageError } from '../errors';
import { fmtError, fmtMs, table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { Progress } from '../progress';
import { benchPagedAttentionCommand, benchPagedKvCommand } from './paged-kv';
import { benchScanCommand } from './scan';
import { jsonNumbers } from './verify';

/** Benchmarks by name: `longseq bench <name>`. */
const BENCHMARKS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  softmax: benchSoftmaxCommand,
  'paged-kv': benchPagedKvCommand,
  'paged-attention': benchPagedAttentionCommand,
  'mamba-decode': benchMambaDecodeCommand,
  scan: benchScanCommand,
  attention: benchAttentionCommand,
  'ssm-conv': benchSsmConvCommand,
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

  const progress = new Progress(io.stderr, countSteps(config));
  let report: BenchReport;
  try {
    report = await benchSoftmax(config, (label) => progress.tick(label));
  } finally {
    progress.done();
  }
  const machine = machineInfo(report.adapter);

  const svgPath = stringFlag(p, 'svg');
  if (svgPath !== undefined) {
    const adapter = report.adapter
      ? Object.values(report.adapter).filter(Boolean).join(' ')
      : 'no WebGPU adapter';
    const svg = plotSvg(report.results, {
      title: `softmax over rows of length N (${config.rows} rows)`,
      subtitle: `${adapter}; ${machine.date.slice(0, 10)}`,
    });
    const file = path.resolve(io.cwd ?? process.cwd(), svgPath);
    await writeFile(file, svg);
    io.stderr.write(`longseq bench softmax: wrote ${file}\n`);
  }

  const { backends: _b, skipUnavailable: _s, ...shown } = config;
  if (boolFlag(p, 'json')) {
    const doc = { benchmark: 'softmax', machine, config: { ...shown, backends: config.backends }, ...report };
    io.stdout.write(`${JSON.stringify(doc, jsonNumbers, 2)}\n`);
  } else {
    io.stdout.write(`${renderTable(report, config)}\n`);
  }
  const failed =
    report.skipped.filter((s) => s.error).length +
    report.results.filter((r) => r.check && !r.check.pass).length;
  return failed > 0 ? 1 : 0;
}

function renderTable(report: BenchReport, config: BenchConfig): string {
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
    `softmax, ${config.rows} rows; GB/s counts one read and one write of the tensor; median of ${config.repeats}`,
    'ms/call is GPU pass time where the timer is gpu; wall ms is submit to queue drained, per call',
    '',
    table(
      ['backend', ' N', 'kernel', ' ms/call', ' wall ms', ' GB/s', ' % copy', 'timer', 'check (max err)'],
      rows,
    ),
  ];
  for (const s of report.skipped) {
    lines.push(
      `${s.error ? 'FAILED' : 'skipped'}: ${s.backend}${s.n ? ` N=${s.n}` : ''}${s.label ? ` ${s.label}` : ''}: ${s.reason}`,
    );
  }
  return lines.join('\n');
}
