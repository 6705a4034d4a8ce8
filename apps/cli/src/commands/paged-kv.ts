/** `longseq bench paged-kv` (serving simulation) and `longseq bench paged-attention` (GPU kernel). */
import { generateTrace, simulateServing } from '@longseq/paged-kv';
import { boolFlag, intFlag, parseFlags, stringFlag } from '../args';
import { parseBackends } from '../backends';
import { type AttentionBenchReport, benchPagedAttention, concurrencySvg, memorySvg } from '../bench/paged-kv';
import { UsageError } from '../errors';
import { fmtError, fmtMs, table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { adapterName, finishBench, withProgress, writeOutputFile } from '../bench/report';

function numberFlag(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= min)
    throw new UsageError(`--${name}: expected a number > ${min}, got '${value}'`);
  return n;
}

export async function benchPagedKvCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      requests: { type: 'string' },
      rate: { type: 'string' },
      blocks: { type: 'string' },
      'block-size': { type: 'string' },
      'max-len': { type: 'string' },
      n: { type: 'string' },
      beam: { type: 'string' },
      'shared-prefix': { type: 'string' },
      preemption: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      svg: { type: 'string' },
    },
    'bench paged-kv',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench paged-kv: unexpected argument '${p.positionals[0]}'`);
  const preemption = stringFlag(p, 'preemption') ?? 'recompute';
  if (preemption !== 'recompute' && preemption !== 'swap')
    throw new UsageError(`--preemption: expected recompute or swap, got '${preemption}'`);
  const n = intFlag(p, 'n', 1);
  const beamWidth = intFlag(p, 'beam', 1);
  if (n > 1 && beamWidth > 1) throw new UsageError('bench paged-kv: give --n or --beam, not both');
  const trace = {
    requests: intFlag(p, 'requests', 500),
    rate: numberFlag(stringFlag(p, 'rate'), 'rate', 1, 0),
    maxModelLen: intFlag(p, 'max-len', 2048, 2),
    n,
    beamWidth,
    sharedPrefix: intFlag(p, 'shared-prefix', 0, 0),
    seed: intFlag(p, 'seed', 1, 0),
  };
  const sim = {
    numBlocks: intFlag(p, 'blocks', 1000),
    blockSize: intFlag(p, 'block-size', 16),
    preemption: preemption as 'recompute' | 'swap',
    seed: trace.seed,
  };
  const requests = generateTrace(trace);
  const report = simulateServing(requests, sim);
  const describe = `${trace.requests} requests, ${trace.rate}/step, budget ${report.budgetTokens} tokens (${sim.numBlocks} x ${sim.blockSize})${n > 1 ? `, n = ${n}` : ''}${beamWidth > 1 ? `, beam ${beamWidth}` : ''}`;
  const svgBase = stringFlag(p, 'svg');
  if (svgBase !== undefined) {
    const stem = svgBase.replace(/\.svg$/, '');
    const memory = await writeOutputFile(io, `${stem}.svg`, memorySvg(report, describe));
    await writeOutputFile(io, `${stem}-concurrency.svg`, concurrencySvg(report, describe));
    const wrote = memory.replace(/\.svg$/, '');
    io.stderr.write(`longseq bench paged-kv: wrote ${wrote}.svg and ${wrote}-concurrency.svg\n`);
  }
  const strip = (s: typeof report.paged) => {
    const { series, ...rest } = s;
    return { ...rest, series };
  };
  const row = (s: typeof report.paged) => [
    s.name,
    `${s.wastePct.toFixed(1)}%`,
    `${s.utilizationPct.toFixed(0)}%`,
    String(s.maxConcurrent),
    s.meanConcurrent.toFixed(1),
    s.tokensPerStep.toFixed(1),
    s.requestsPerKStep.toFixed(1),
    String(s.steps),
    String(s.preemptions),
    s.name === 'paged' ? `${s.sharingSavedPct.toFixed(1)}%` : '',
  ];
  const render = () =>
    [
      `paged-kv serving simulation: ${describe}`,
      'prompt/output lengths log-normal (ShareGPT-like: means 161 / 338 tokens); contiguous reserves prompt + max new tokens (model max length) per sequence',
      '',
      table(
        [
          'scheme',
          ' waste',
          ' budget used',
          ' max seqs',
          ' mean seqs',
          ' tokens/step',
          ' req/1k steps',
          ' steps',
          ' preempted',
          ' shared saved',
        ],
        [row(report.contiguous), row(report.paged)],
      ),
      '',
      `paged vs contiguous: ${report.concurrencyGain.toFixed(1)}x max concurrent sequences (${(report.paged.meanConcurrent / Math.max(report.contiguous.meanConcurrent, 1e-9)).toFixed(1)}x on average), ${report.throughputGain.toFixed(1)}x requests per step` +
        (report.paged.prefixCachedTokens > 0
          ? `; ${report.paged.prefixCachedTokens} prompt tokens from the prefix cache`
          : ''),
    ].join('\n');
  return finishBench(io, {
    name: 'paged-kv',
    machine: machineInfo(),
    json: boolFlag(p, 'json'),
    doc: {
      config: { trace, simulation: sim },
      ...report,
      contiguous: strip(report.contiguous),
      paged: strip(report.paged),
    },
    table: render,
    failed: 0,
  });
}

export async function benchPagedAttentionCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      seqs: { type: 'string' },
      context: { type: 'string' },
      heads: { type: 'string' },
      'kv-heads': { type: 'string' },
      'head-dim': { type: 'string' },
      'block-size': { type: 'string' },
      partition: { type: 'string' },
      repeats: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      timer: { type: 'string' },
      'no-contiguous': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    'bench paged-attention',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench paged-attention: unexpected argument '${p.positionals[0]}'`);
  const backends = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  if (backends.length !== 1) throw new UsageError('bench paged-attention: give one --backend');
  const timer = stringFlag(p, 'timer') ?? 'auto';
  if (timer !== 'auto' && timer !== 'wall')
    throw new UsageError(`--timer: expected auto or wall, got '${timer}'`);
  const heads = intFlag(p, 'heads', 8);
  const kvHeads = intFlag(p, 'kv-heads', 2);
  if (heads % kvHeads !== 0)
    throw new UsageError(`--heads ${heads} must be a multiple of --kv-heads ${kvHeads}`);
  const partition = stringFlag(p, 'partition');
  const config = {
    backend: backends[0]!,
    seqs: intFlag(p, 'seqs', 4),
    context: intFlag(p, 'context', 512),
    heads,
    kvHeads,
    headDim: intFlag(p, 'head-dim', 64),
    blockSize: intFlag(p, 'block-size', 16),
    ...(partition === undefined ? {} : { partitionSize: intFlag(p, 'partition', 256) }),
    repeats: intFlag(p, 'repeats', 5),
    warmup: intFlag(p, 'warmup', 2, 0),
    seed: intFlag(p, 'seed', 1234, 0),
    timer: timer as 'auto' | 'wall',
    contiguous: !boolFlag(p, 'no-contiguous'),
  };
  const report: AttentionBenchReport = await withProgress(io, 3, (tick) => benchPagedAttention(config, tick));
  const adapter = adapterName(report.adapter, config.backend);
  const render = () =>
    [
      `paged decode attention on ${adapter}: ${config.seqs} seqs x ${config.context} context, ${config.heads} heads / ${config.kvHeads} kv heads, d = ${config.headDim}, block ${config.blockSize}, f32`,
      `GB/s counts the K and V bytes read (${(report.kvBytes / 1e6).toFixed(1)} MB); the copy moves the same bytes (reads half, writes half); median of ${config.repeats}`,
      '',
      table(
        ['kernel', ' ms', ' GB/s', ' % copy', ' paged / this', 'timer'],
        report.rows.map((r) => [
          r.kernel,
          fmtMs(r.medianMs),
          r.gbps.toFixed(r.gbps >= 100 ? 0 : 1),
          r.pctOfCopy === undefined ? '' : `${r.pctOfCopy.toFixed(0)}%`,
          r.ratioToPaged === undefined ? '' : `${r.ratioToPaged.toFixed(2)}x`,
          r.timer,
        ]),
      ),
      '',
      `check: ${report.check.pass ? 'ok' : 'FAIL'} (max error ${fmtError(report.check.maxError)}, allowed ${fmtError(report.check.allowed)}; ${report.check.against})`,
      ...report.skipped.map((s) => `skipped: ${s}`),
    ].join('\n');
  return finishBench(io, {
    name: 'paged-attention',
    machine: machineInfo(report.adapter),
    json: boolFlag(p, 'json'),
    doc: { config, ...report },
    table: render,
    failed: report.check.pass ? 0 : 1,
  });
}
