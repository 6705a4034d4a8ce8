/**
 * `longseq bench ssm-conv`: the two forms of a batch of diagonal SSMs (S4D: H channels of N
 * complex states, one dt per channel) on the GPU, for each sequence length L:
 *
 * - `recurrence`: `diagonalScan`, one thread per channel walking the L steps;
 * - `fft conv`: `causalConv(u, K)`, the causal convolution through FFTs of length >= 2L,
 *   with K precomputed (what S4 does once per forward pass for all inputs);
 * - `kernel + fft conv`: `ssmKernel` (Vandermonde) and then `causalConv`, the whole
 *   convolutional form from the parameters.
 *
 * It reports median ms per call, the crossover L (the smallest length from which the
 * convolution is faster than the recurrence), and a check of a few channels of both outputs
 * against the float64 recurrence. `--svg` plots time against L with an L log L guide
 * through the FFT series' largest L. The PyTorch reference is reference/torch_ssm_conv.py.
 */
import { type Backend, type Tensor, compareToReference } from '@longseq/backend';
import {
  type DiagonalSsmHost,
  type FftVariant,
  causalConv,
  causalConvFftRef,
  diagonalKernelRef,
  diagonalScan,
  diagonalScanRef,
  s4dInit,
  ssmKernel,
} from '@longseq/ssm-discretize';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { type BackendName, createBackend, describeAdapter, parseBackends, timeWork } from '../backends';
import { UsageError, messageOf } from '../errors';
import { median } from './measure';
import { fmtError, fmtMs, table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { adapterName, countFailures, finishBench, skipLine, withProgress } from './report';
import { DASHES, groupSeries, type PlotSeries, plotSvg } from './svg';

/** Defaults sized for SwiftShader; on the H100: --channels 1024 --lengths 1024,...,65536. */
const DEFAULTS = {
  channels: 4,
  lengths: [256, 1024, 4096],
  states: 32,
  repeats: 5,
  warmup: 2,
  warmupMs: 500,
  seed: 1234,
};

const FORMS = ['recurrence', 'fft conv', 'kernel + fft conv'] as const;

/** gpu.js' recurrence is one thread per output re-running the steps before it. */
const GPUJS_RECURRENCE_MAX = 4096;
type Form = (typeof FORMS)[number];

export interface SsmConvBenchConfig {
  readonly backends: readonly BackendName[];
  readonly channels: number;
  readonly lengths: readonly number[];
  /** Complex states per channel (S4D-Lin modes). */
  readonly states: number;
  readonly fft: FftVariant;
  readonly repeats: number;
  readonly warmup: number;
  /**
   * Warm-up continues (after at least `warmup` calls) until this much wall time has passed: the
   * float64 check before each form leaves the GPU idle for seconds at large L, and its clocks
   * then take a few hundred ms of work to come back (at L = 65536 the first timed calls of the
   * FFT convolution ran 3.5x slower than the rest).
   */
  readonly warmupMs: number;
  readonly seed: number;
  readonly timer: 'auto' | 'wall';
  readonly skipUnavailable: boolean;
}

export interface SsmConvResult {
  readonly backend: string;
  readonly channels: number;
  /** The sequence length L. */
  readonly n: number;
  readonly states: number;
  readonly label: Form;
  readonly medianMs: number;
  readonly minMs: number;
  readonly samplesMs: number[];
  readonly wallMedianMs: number;
  readonly timer: 'gpu' | 'wall';
  /**
   * GPU buffers the backend created per timed call (pool misses; WebGPU only): what the wall
   * time pays for beyond the kernels (allocation and Dawn's zero-fill), which GPU time omits.
   */
  readonly buffersCreatedPerCall?: number;
  /** A few channels of the first call's y against the float64 recurrence, by the test rule. */
  readonly check: {
    readonly channelsChecked: number;
    readonly maxError: number;
    readonly allowed: number;
    readonly pass: boolean;
  };
}

export interface SsmConvReport {
  readonly adapter?: Record<string, string>;
  readonly results: SsmConvResult[];
  /** Per backend: the smallest L from which each convolution form beats the recurrence (null: never). */
  readonly crossover: { backend: string; form: Form; L: number | null }[];
  readonly skipped: { backend: string; n?: number; label?: string; reason: string; error: boolean }[];
}

/** mulberry32 floats in [lo, hi), deterministic per seed. */
function fill(size: number, seed: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(size);
  let a = seed >>> 0;
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (((t ^ (t >>> 14)) >>> 0) / 4294967296) * (hi - lo);
  }
  return out;
}

/** S4D-Lin A for every channel, B = 1, random C, dt log-uniform in [1e-3, 1e-1] (S4D's range). */
function hostSsm(H: number, N: number, seed: number): DiagonalSsmHost {
  const init = s4dInit('lin', N);
  const A = new Float32Array(H * N * 2);
  const B = new Float32Array(H * N * 2);
  for (let h = 0; h < H; h++)
    for (let n = 0; n < N; n++) {
      A[(h * N + n) * 2] = init.A.re[n]!;
      A[(h * N + n) * 2 + 1] = init.A.im[n]!;
      B[(h * N + n) * 2] = 1;
    }
  const logDt = fill(H, seed + 1, Math.log(1e-3), Math.log(1e-1));
  return {
    H,
    N,
    complex: true,
    A,
    B,
    C: fill(H * N * 2, seed + 2, -0.5, 0.5),
    dt: logDt.map(Math.exp),
    method: 'zoh',
    alpha: 0,
  };
}

/** Channels checked against the float64 recurrence: the first and the last. */
function pickChannels(H: number): number[] {
  return H > 1 ? [0, H - 1] : [0];
}

function channelSsm(ssm: DiagonalSsmHost, h: number): DiagonalSsmHost {
  const span = ssm.N * 2;
  return {
    ...ssm,
    H: 1,
    A: Array.from(ssm.A).slice(h * span, (h + 1) * span),
    B: Array.from(ssm.B).slice(h * span, (h + 1) * span),
    C: Array.from(ssm.C).slice(h * span, (h + 1) * span),
    dt: [ssm.dt[h]!],
  };
}

/**
 * y of the picked channels against the float64 recurrence; the float32 baseline is the worse
 * of a float32 recurrence and a float32 (Vandermonde kernel + FFT convolution).
 */
function checkChannels(
  got: ArrayLike<number>,
  ssm: DiagonalSsmHost,
  u: Float32Array,
  L: number,
): SsmConvResult['check'] {
  let maxError = 0;
  let allowed = Number.POSITIVE_INFINITY;
  let pass = true;
  const picks = pickChannels(ssm.H);
  for (const h of picks) {
    const one = channelSsm(ssm, h);
    const uh = u.subarray(h * L, (h + 1) * L);
    const ref64 = diagonalScanRef(one, uh, L);
    const scan32 = diagonalScanRef(one, uh, L, { precision: 'f32' });
    const conv32 = causalConvFftRef(uh, diagonalKernelRef(one, L, { precision: 'f32' }), 1, L, {
      precision: 'f32',
    });
    const baseline = ref64.map((r, i) =>
      Math.abs(scan32[i]! - r) > Math.abs(conv32[i]! - r) ? scan32[i]! : conv32[i]!,
    );
    const row = Array.prototype.slice.call(got, h * L, (h + 1) * L) as number[];
    const cmp = compareToReference(row, ref64, baseline);
    maxError = Math.max(maxError, cmp.maxError);
    allowed = Math.min(allowed, cmp.allowed);
    pass &&= cmp.pass;
  }
  return { channelsChecked: picks.length, maxError, allowed, pass };
}

async function measure(
  backend: Backend,
  config: SsmConvBenchConfig,
  launch: () => Promise<void>,
): Promise<{
  samples: number[];
  wallSamples: number[];
  timer: 'gpu' | 'wall';
  buffersCreatedPerCall?: number;
}> {
  const warmStart = performance.now();
  for (let w = 0; w < config.warmup || performance.now() - warmStart < config.warmupMs; w++) {
    await launch();
    await backend.sync();
  }
  const created = () => (backend as { stats?: () => { buffersCreated: number } }).stats?.().buffersCreated;
  const createdBefore = created();
  const samples: number[] = [];
  const wallSamples: number[] = [];
  let timer: 'gpu' | 'wall' = 'gpu';
  for (let r = 0; r < config.repeats; r++) {
    const t = await timeWork(backend, launch, config.timer);
    if (t.gpuMs === undefined) timer = 'wall';
    samples.push(t.gpuMs ?? t.wallMs);
    wallSamples.push(t.wallMs);
  }
  const createdAfter = created();
  const buffersCreatedPerCall =
    createdBefore === undefined || createdAfter === undefined || config.repeats === 0
      ? undefined
      : (createdAfter - createdBefore) / config.repeats;
  return {
    samples,
    wallSamples,
    timer,
    ...(buffersCreatedPerCall === undefined ? {} : { buffersCreatedPerCall }),
  };
}

export async function benchSsmConv(
  config: SsmConvBenchConfig,
  onStep: (label: string) => void = () => {},
): Promise<SsmConvReport> {
  const results: SsmConvResult[] = [];
  const skipped: SsmConvReport['skipped'] = [];
  let adapter: Record<string, string> | undefined;
  const H = config.channels;
  const N = config.states;
  for (const name of config.backends) {
    let backend: Backend;
    try {
      backend = await createBackend(name);
    } catch (err) {
      if (!config.skipUnavailable) throw err;
      skipped.push({ backend: name, reason: messageOf(err), error: false });
      continue;
    }
    try {
      if (name === 'webgpu') adapter = describeAdapter(backend);
      for (const L of config.lengths) {
        const host = hostSsm(H, N, config.seed);
        const u = fill(H * L, config.seed + L, -1, 1);
        const made: Tensor[] = [];
        const up = (data: Float32Array, shape: number[]) => {
          const t = backend.tensor(data, shape);
          made.push(t);
          return t;
        };
        try {
          const ssm = {
            A: up(host.A as Float32Array, [H, N, 2]),
            B: up(host.B as Float32Array, [H, N, 2]),
            C: up(host.C as Float32Array, [H, N, 2]),
            dt: up(Float32Array.from(host.dt), [H]),
          };
          const ut = up(u, [H, L]);
          const K = await ssmKernel(ssm, L);
          made.push(K);
          const runs: Record<Form, () => Promise<Tensor>> = {
            recurrence: () => diagonalScan(ssm, ut),
            'fft conv': () => causalConv(ut, K, { fft: config.fft }),
            'kernel + fft conv': async () => {
              const k = await ssmKernel(ssm, L);
              try {
                return await causalConv(ut, k, { fft: config.fft });
              } finally {
                k.dispose();
              }
            },
          };
          for (const label of FORMS) {
            onStep(`${name} L=${L} ${label}`);
            if (label === 'recurrence' && backend.kind === 'gpujs' && L > GPUJS_RECURRENCE_MAX) {
              // gpu.js re-runs the recurrence per output (O(L^2 N)): a cross-check, not a contender.
              skipped.push({
                backend: name,
                n: L,
                label,
                reason: `gpu.js recurrence is O(L^2 N); run up to L = ${GPUJS_RECURRENCE_MAX}`,
                error: false,
              });
              continue;
            }
            try {
              const first = await runs[label]();
              const got = await first.read().finally(() => first.dispose());
              const check = checkChannels(got, host, u, L);
              const m = await measure(backend, config, async () => (await runs[label]()).dispose());
              results.push({
                backend: name,
                channels: H,
                n: L,
                states: N,
                label,
                medianMs: median(m.samples),
                minMs: Math.min(...m.samples),
                samplesMs: m.samples,
                wallMedianMs: median(m.wallSamples),
                timer: m.timer,
                ...(m.buffersCreatedPerCall === undefined
                  ? {}
                  : { buffersCreatedPerCall: m.buffersCreatedPerCall }),
                check,
              });
            } catch (err) {
              skipped.push({ backend: name, n: L, label, reason: messageOf(err), error: true });
            }
          }
        } finally {
          for (const t of made) t.dispose();
        }
      }
    } finally {
      backend.dispose();
    }
  }
  return { ...(adapter ? { adapter } : {}), results, crossover: crossovers(results), skipped };
}

/** The smallest L from which a convolution form stays faster than the recurrence. */
function crossovers(results: readonly SsmConvResult[]): SsmConvReport['crossover'] {
  const out: SsmConvReport['crossover'] = [];
  for (const backend of new Set(results.map((r) => r.backend))) {
    for (const form of ['fft conv', 'kernel + fft conv'] as const) {
      const Ls = [...new Set(results.filter((r) => r.backend === backend).map((r) => r.n))].sort(
        (a, b) => a - b,
      );
      let found: number | null = null;
      for (const L of Ls) {
        const at = (label: Form) =>
          results.find((r) => r.backend === backend && r.n === L && r.label === label);
        const conv = at(form);
        const rec = at('recurrence');
        if (!conv || !rec) continue;
        if (conv.medianMs < rec.medianMs) found ??= L;
        else found = null;
      }
      out.push({ backend, form, L: found });
    }
  }
  return out;
}

const COLORS: Record<Form, string> = {
  recurrence: '#d62728',
  'fft conv': '#2ca02c',
  'kernel + fft conv': '#1f77b4',
};

/**
 * Time against L on log-log axes, one line per backend and form, and a dashed L log L guide
 * through the 'fft conv' point at the largest L (so the FFT path can be seen to follow it).
 */
export function plotSsmConv(results: readonly SsmConvResult[], title: string, subtitle: string): string {
  const Ls = [...new Set(results.map((r) => r.n))].sort((a, b) => a - b);
  const backends = [...new Set(results.map((r) => r.backend))];
  const guide: PlotSeries[] = [];
  for (const backend of backends) {
    const fft = results
      .filter((r) => r.backend === backend && r.label === 'fft conv')
      .sort((a, b) => a.n - b.n);
    const last = fft[fft.length - 1];
    if (!last || last.medianMs <= 0) continue;
    const c = last.medianMs / (last.n * Math.log2(2 * last.n));
    guide.push({
      label: `${backend} c L log L`,
      points: Ls.map((L) => ({ x: L, y: c * L * Math.log2(2 * L) })),
    });
  }
  const series = groupSeries(
    results,
    (r) => `${r.backend} ${r.label}`,
    (r) => ({ x: r.n, y: r.medianMs }),
    (r) => ({ color: COLORS[r.label], dash: DASHES[backends.indexOf(r.backend) % 3]! }),
  );
  return plotSvg(series, {
    title,
    subtitle,
    xLabel: 'sequence length L',
    yLabel: 'median ms per call',
    xName: 'L',
    yUnit: 'ms',
    logY: true,
    guide,
    width: 600,
  });
}

/** `longseq bench ssm-conv`. */
export async function benchSsmConvCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      channels: { type: 'string' },
      lengths: { type: 'string' },
      states: { type: 'string' },
      fft: { type: 'string' },
      repeats: { type: 'string' },
      warmup: { type: 'string' },
      'warmup-ms': { type: 'string' },
      seed: { type: 'string' },
      timer: { type: 'string' },
      json: { type: 'boolean' },
      svg: { type: 'string' },
    },
    'bench ssm-conv',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench ssm-conv: unexpected argument '${p.positionals[0]}'`);
  const timer = stringFlag(p, 'timer') ?? 'auto';
  if (timer !== 'auto' && timer !== 'wall')
    throw new UsageError(`--timer: expected auto or wall, got '${timer}'`);
  const fft = stringFlag(p, 'fft') ?? 'auto';
  if (fft !== 'auto' && fft !== 'workgroup' && fft !== 'global')
    throw new UsageError(`--fft: expected auto, workgroup or global, got '${fft}'`);
  const backendFlag = stringFlag(p, 'backend');
  const config: SsmConvBenchConfig = {
    backends: parseBackends(backendFlag, ['webgpu']),
    channels: intFlag(p, 'channels', DEFAULTS.channels),
    lengths: intListFlag(p, 'lengths', DEFAULTS.lengths),
    states: intFlag(p, 'states', DEFAULTS.states),
    fft,
    repeats: intFlag(p, 'repeats', DEFAULTS.repeats),
    warmup: intFlag(p, 'warmup', DEFAULTS.warmup, 0),
    warmupMs: intFlag(p, 'warmup-ms', DEFAULTS.warmupMs, 0),
    seed: intFlag(p, 'seed', DEFAULTS.seed, 0),
    timer,
    skipUnavailable: backendFlag === 'all',
  };
  const report: SsmConvReport = await withProgress(
    io,
    config.backends.length * config.lengths.length * FORMS.length,
    (tick) => benchSsmConv(config, tick),
  );
  const machine = machineInfo(report.adapter);
  const { backends, skipUnavailable: _s, ...shown } = config;
  return finishBench(io, {
    name: 'ssm-conv',
    machine,
    json: boolFlag(p, 'json'),
    doc: { config: { ...shown, backends }, ...report },
    table: () => renderTable(report, config),
    svgPath: stringFlag(p, 'svg'),
    svg: () =>
      plotSsmConv(
        report.results,
        `SSM convolution vs recurrence (${config.channels} channels, ${config.states} complex states)`,
        `${adapterName(report.adapter)}; ${machine.date.slice(0, 10)}`,
      ),
    failed: countFailures(report),
  });
}

function renderTable(report: SsmConvReport, config: SsmConvBenchConfig): string {
  const rows = report.results.map((r) => [
    r.backend,
    String(r.n),
    r.label,
    fmtMs(r.medianMs),
    fmtMs(r.wallMedianMs),
    r.timer,
    r.buffersCreatedPerCall === undefined ? '-' : String(+r.buffersCreatedPerCall.toFixed(2)),
    `${r.check.pass ? 'ok' : 'FAIL'} ${fmtError(r.check.maxError)}`,
  ]);
  const lines = [
    `SSM forms, ${config.channels} channels x ${config.states} complex states (S4D-Lin, ZOH); median of ${config.repeats}`,
    '',
    table(
      ['backend', ' L', 'form', ' ms/call', ' wall ms', 'timer', 'new bufs/call', 'check (max err)'],
      rows,
    ),
    '',
    'ms/call: with timer gpu, the summed GPU time of the kernels (timestamp queries); wall ms: from the call until',
    'the GPU is idle, including buffer allocation and zero-fill (new bufs/call: pool misses), encoding and submission.',
    ...report.crossover.map(
      (c) =>
        `crossover (${c.backend}, ${c.form} faster than recurrence from): ${c.L === null ? 'not within the lengths run' : `L = ${c.L}`}`,
    ),
    ...report.skipped.map((s) => skipLine(s, 'L')),
  ];
  return lines.join('\n');
}
