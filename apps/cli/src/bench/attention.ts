/**
 * `longseq bench attention`: FlashAttention (WebGPU tiled / gpu.js row-per-thread) against
 * naive attention (scores materialized, softmax package) as N grows, forward and optionally
 * backward, with TFLOP/s counted as FlashAttention does (forward 4 N^2 d per head, halved
 * when causal; backward 2.5 x forward), a correctness spot-check of the last query rows of
 * head 0 against the float64 reference, and `--memory`: peak bytes beyond inputs and
 * outputs for flash and naive as N doubles, until each no longer fits.
 */
import { type Backend, type Tensor, compareToReference } from '@longseq/backend';
import {
  type AttentionAlgorithm,
  type FlashTile,
  type FlashVariant,
  attention,
  attentionBackward,
  attentionBackwardRef,
  attentionRef,
  subgroupMatrixConfigs,
} from '@longseq/flash-attention';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { type BackendName, createBackend, describeAdapter, parseBackends, timeWork } from '../backends';
import { UsageError, messageOf } from '../errors';
import { fmtError, fmtMs, table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { adapterName, finishBench } from './report';
import { dashPerKey, groupSeries, type PlotSeries, plotSvg } from './svg';

/** Defaults sized for SwiftShader; on a GPU pass e.g. --batch-heads 16 --n 1024,2048,4096 --d 64. */
const DEFAULTS = { batchHeads: 4, n: [64, 128, 256], d: 64, repeats: 3, warmup: 1, seed: 1234, maxN: 2048 };

export interface AttentionBenchResult {
  readonly backend: string;
  readonly n: number;
  readonly causal: boolean;
  readonly algorithm: AttentionAlgorithm;
  readonly pass: 'forward' | 'backward';
  readonly label: string;
  readonly medianMs: number;
  readonly minMs: number;
  readonly timer: 'gpu' | 'wall';
  readonly tflops: number;
  readonly check?: { readonly maxError: number; readonly allowed: number; readonly pass: boolean };
}

export interface MemoryRow {
  readonly backend: string;
  readonly n: number;
  /** Peak bytes beyond inputs and outputs, or the reason it did not run. */
  readonly flash: number | string;
  readonly naive: number | string;
}

interface Config {
  readonly backends: readonly BackendName[];
  readonly batchHeads: number;
  readonly ns: readonly number[];
  readonly d: number;
  readonly causal: readonly boolean[];
  readonly algorithms: readonly AttentionAlgorithm[];
  readonly backward: boolean;
  readonly repeats: number;
  readonly warmup: number;
  readonly seed: number;
  readonly timer: 'auto' | 'wall';
  readonly tile?: Partial<FlashTile>;
  /** Flash forward kernels to time: 'auto' (the default choice) and/or the opt-in 'subgroup-matrix'. */
  readonly variants: readonly FlashVariant[];
  /** A new device for every measured case (`--fresh-device`). */
  readonly freshDevice: boolean;
}

/**
 * Allowed max abs error of the 'subgroup-matrix' forward in the spot check: on devices whose
 * matrix units take f16 inputs (NVIDIA's Vulkan driver offers no f32 configuration) Q, K, V
 * and P are rounded to f16, so the float32 rule does not apply; inputs are uniform in [-1, 1].
 */
const SUBGROUP_MATRIX_ALLOWED = 1e-3;

/** Forward FLOPs as FlashAttention counts them: 2 matmuls of 2 N^2 d per head, half under a causal mask. */
export function attentionFlops(
  batchHeads: number,
  n: number,
  d: number,
  causal: boolean,
  pass: 'forward' | 'backward',
): number {
  const forward = 4 * n * n * d * batchHeads * (causal ? 0.5 : 1);
  return pass === 'forward' ? forward : 2.5 * forward;
}

function randomData(count: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = Math.fround((s / 2 ** 32) * 2 - 1);
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The last `rows` query rows of head 0 against the float64 reference (bottom-right alignment keeps their positions). */
async function spotCheck(
  output: Tensor,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  n: number,
  d: number,
  causal: boolean,
  variant: FlashVariant,
): Promise<{ maxError: number; allowed: number; pass: boolean }> {
  const rows = Math.min(n, 8);
  const got = (await output.read()).subarray((n - rows) * d, n * d);
  const qTail = { data: q.subarray((n - rows) * d, n * d), shape: [1, 1, rows, d] };
  const kHead = { data: k.subarray(0, n * d), shape: [1, 1, n, d] };
  const vHead = { data: v.subarray(0, n * d), shape: [1, 1, n, d] };
  const ref64 = attentionRef(qTail, kHead, vHead, { causal });
  const ref32 = attentionRef(qTail, kHead, vHead, { causal, precision: 'f32' });
  if (variant === 'subgroup-matrix') {
    let maxError = 0;
    for (let i = 0; i < got.length; i++) {
      const e = Math.abs(got[i]! - ref64.output.data[i]!);
      maxError = Number.isNaN(e) ? Number.POSITIVE_INFINITY : Math.max(maxError, e);
    }
    return { maxError, allowed: SUBGROUP_MATRIX_ALLOWED, pass: maxError <= SUBGROUP_MATRIX_ALLOWED };
  }
  const c = compareToReference(got, ref64.output.data, ref32.output.data);
  return { maxError: c.maxError, allowed: c.allowed, pass: c.pass };
}

/** Backward checks only up to this N: the float64 gradients of one head cost O(N^2 d) on the CPU. */
const BACKWARD_CHECK_MAX_N = 512;

/** dq, dk, dv of head 0 against float64 gradients (dOut = the output, as the timed call uses). */
async function backwardCheck(
  grads: { dq: Tensor; dk: Tensor; dv: Tensor },
  output: Tensor,
  data: { q: Float32Array; k: Float32Array; v: Float32Array },
  n: number,
  d: number,
  causal: boolean,
): Promise<{ maxError: number; allowed: number; pass: boolean }> {
  const shape = [1, 1, n, d];
  const head = (x: Float32Array) => ({ data: x.subarray(0, n * d), shape });
  const dOut = head((await output.read()) as Float32Array);
  const args = [head(data.q), head(data.k), head(data.v), dOut] as const;
  const ref64 = attentionBackwardRef(...args, { causal });
  const ref32 = attentionBackwardRef(...args, { causal, precision: 'f32' });
  let worst = { maxError: 0, allowed: 0, pass: true };
  for (const key of ['dq', 'dk', 'dv'] as const) {
    const got = (await grads[key].read()).subarray(0, n * d);
    const c = compareToReference(got, ref64[key].data, ref32[key].data);
    if (!c.pass || (worst.pass && c.maxError / c.allowed > worst.maxError / (worst.allowed || 1)))
      worst = { maxError: c.maxError, allowed: c.allowed, pass: c.pass && worst.pass };
  }
  return worst;
}

async function benchOne(
  backend: Backend,
  config: Config,
  n: number,
  causal: boolean,
  algorithm: AttentionAlgorithm,
  data: { q: Float32Array; k: Float32Array; v: Float32Array },
  variant: FlashVariant = 'auto',
): Promise<AttentionBenchResult[]> {
  const shape = [1, config.batchHeads, n, config.d];
  const q = backend.tensor(data.q, shape);
  const k = backend.tensor(data.k, shape);
  const v = backend.tensor(data.v, shape);
  const options = {
    causal,
    algorithm,
    variant,
    ...(config.tile ? { tile: config.tile } : {}),
  };
  const name = `${algorithm}${variant === 'subgroup-matrix' ? ' sgmat' : ''}`;
  const results: AttentionBenchResult[] = [];
  try {
    const forward = async () => {
      const out = await attention(q, k, v, options);
      out.dispose();
    };
    const first = await attention(q, k, v, options);
    const check = await spotCheck(first, data.q, data.k, data.v, n, config.d, causal, variant);
    first.dispose();
    for (let i = 1; i < config.warmup; i++) await forward();
    const measure = async (
      fn: () => Promise<void>,
      pass: 'forward' | 'backward',
      passCheck: AttentionBenchResult['check'] = pass === 'forward' ? check : undefined,
    ) => {
      const samples: number[] = [];
      let timer: 'gpu' | 'wall' = 'wall';
      for (let r = 0; r < config.repeats; r++) {
        const t = await timeWork(backend, fn, config.timer);
        if (t.gpuMs !== undefined) timer = 'gpu';
        samples.push(t.gpuMs ?? t.wallMs);
      }
      const ms = median(samples);
      results.push({
        backend: backend.name,
        n,
        causal,
        algorithm,
        pass,
        label: `${name}${pass === 'backward' ? ' bwd' : ''}${causal ? ' causal' : ''}`,
        medianMs: ms,
        minMs: Math.min(...samples),
        timer,
        tflops: attentionFlops(config.batchHeads, n, config.d, causal, pass) / (ms * 1e-3) / 1e12,
        ...(passCheck ? { check: passCheck } : {}),
      });
    };
    await measure(forward, 'forward');
    if (config.backward && algorithm === 'flash' && variant === 'auto') {
      const { output, lse } = await attention(q, k, v, { ...options, returnLse: true });
      try {
        const backward = async () => {
          const g = await attentionBackward(q, k, v, output, output, lse, { causal });
          g.dq.dispose();
          g.dk.dispose();
          g.dv.dispose();
        };
        let check: { maxError: number; allowed: number; pass: boolean } | undefined;
        if (n <= BACKWARD_CHECK_MAX_N) {
          const g = await attentionBackward(q, k, v, output, output, lse, { causal });
          try {
            check = await backwardCheck(g, output, data, n, config.d, causal);
          } finally {
            g.dq.dispose();
            g.dk.dispose();
            g.dv.dispose();
          }
        } else {
          await backward();
        }
        await measure(backward, 'backward', check);
      } finally {
        output.dispose();
        lse.dispose();
      }
    }
  } finally {
    q.dispose();
    k.dispose();
    v.dispose();
  }
  return results;
}

/** Peak bytes beyond inputs and outputs of one forward call (outputs: out and lse). */
async function extraBytes(
  backend: Backend,
  n: number,
  d: number,
  algorithm: AttentionAlgorithm,
): Promise<number> {
  const shape = [1, 1, n, d];
  const data = randomData(n * d, n);
  const q = backend.tensor(data, shape);
  try {
    await backend.sync();
    const base = backend.memory().bytes;
    backend.resetPeak();
    const { output, lse } = await attention(q, q, q, { algorithm, returnLse: true });
    await backend.sync();
    const peak = backend.memory().peakBytes - base - (output.size + lse.size) * 4;
    output.dispose();
    lse.dispose();
    return peak;
  } finally {
    q.dispose();
  }
}

export async function benchAttentionCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      'batch-heads': { type: 'string' },
      n: { type: 'string' },
      d: { type: 'string' },
      causal: { type: 'string' },
      algorithm: { type: 'string' },
      backward: { type: 'boolean' },
      repeats: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      timer: { type: 'string' },
      tile: { type: 'string' },
      variant: { type: 'string' },
      memory: { type: 'boolean' },
      'fresh-device': { type: 'boolean' },
      'max-n': { type: 'string' },
      json: { type: 'boolean' },
      svg: { type: 'string' },
    },
    'bench attention',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench attention: unexpected argument '${p.positionals[0]}'`);
  const causalFlag = stringFlag(p, 'causal') ?? 'both';
  if (!['both', 'true', 'false'].includes(causalFlag))
    throw new UsageError(`--causal: expected both, true or false, got '${causalFlag}'`);
  const algorithms = (stringFlag(p, 'algorithm') ?? 'flash,naive').split(',').map((s) => s.trim());
  for (const a of algorithms) {
    if (a !== 'flash' && a !== 'naive')
      throw new UsageError(`--algorithm: expected flash and/or naive, got '${a}'`);
  }
  const timer = stringFlag(p, 'timer') ?? 'auto';
  if (timer !== 'auto' && timer !== 'wall')
    throw new UsageError(`--timer: expected auto or wall, got '${timer}'`);
  const tileFlag = stringFlag(p, 'tile');
  let tile: Partial<FlashTile> | undefined;
  if (tileFlag !== undefined) {
    const parts = tileFlag.split(',').map(Number);
    if (parts.length !== 4 || parts.some((x) => !Number.isInteger(x) || x < 1))
      throw new UsageError(`--tile: expected br,bc,tr,tc (four positive integers), got '${tileFlag}'`);
    tile = { br: parts[0]!, bc: parts[1]!, tr: parts[2]!, tc: parts[3]! };
  }
  const variants = (stringFlag(p, 'variant') ?? 'auto').split(',').map((s) => s.trim());
  for (const v of variants) {
    if (v !== 'auto' && v !== 'subgroup-matrix')
      throw new UsageError(`--variant: expected auto and/or subgroup-matrix, got '${v}'`);
  }
  const config: Config = {
    backends: parseBackends(stringFlag(p, 'backend'), ['webgpu']),
    batchHeads: intFlag(p, 'batch-heads', DEFAULTS.batchHeads),
    ns: intListFlag(p, 'n', DEFAULTS.n),
    d: intFlag(p, 'd', DEFAULTS.d),
    causal: causalFlag === 'both' ? [false, true] : [causalFlag === 'true'],
    algorithms: algorithms as AttentionAlgorithm[],
    backward: boolFlag(p, 'backward'),
    repeats: intFlag(p, 'repeats', DEFAULTS.repeats),
    warmup: intFlag(p, 'warmup', DEFAULTS.warmup),
    seed: intFlag(p, 'seed', DEFAULTS.seed, 0),
    timer,
    ...(tile ? { tile } : {}),
    variants: variants as FlashVariant[],
    freshDevice: boolFlag(p, 'fresh-device'),
  };
  if (boolFlag(p, 'memory')) return memoryCommand(config, intFlag(p, 'max-n', DEFAULTS.maxN), p, io);

  const results: AttentionBenchResult[] = [];
  const failures: string[] = [];
  let adapter: Record<string, string> | undefined;
  for (const name of config.backends) {
    let backend = await createBackend(name);
    adapter ??= describeAdapter(backend);
    if (config.variants.includes('subgroup-matrix')) {
      const configs = subgroupMatrixConfigs(backend);
      io.stderr.write(
        `bench attention: ${name} subgroup-matrix configs: ${
          configs.length === 0
            ? 'none (set LONGSEQ_WEBGPU_SUBGROUP_MATRIX=1 on a device that offers the feature)'
            : configs
                .map((c) => `${c.componentType}->${c.resultComponentType} M${c.M} N${c.N} K${c.K}`)
                .join(', ')
        }\n`,
      );
    }
    try {
      for (const n of config.ns) {
        const count = config.batchHeads * n * config.d;
        const data = {
          q: randomData(count, config.seed),
          k: randomData(count, config.seed + 1),
          v: randomData(count, config.seed + 2),
        };
        for (const causal of config.causal) {
          for (const algorithm of config.algorithms) {
            for (const variant of algorithm === 'flash' ? config.variants : ['auto' as const]) {
              const what = `${algorithm}${variant === 'auto' ? '' : ` ${variant}`}${causal ? ' causal' : ''}`;
              io.stderr.write(`bench attention: ${name} N=${n} ${what}\n`);
              try {
                if (config.freshDevice && results.length + failures.length > 0) {
                  // A device of its own per measurement: one size's large allocations cannot
                  // slow the next (seen on the H100: flash at N 4096 took 16 ms after naive's
                  // buffers in the same device, 2.9 ms alone).
                  backend.dispose();
                  backend = await createBackend(name);
                }
                results.push(...(await benchOne(backend, config, n, causal, algorithm, data, variant)));
              } catch (err) {
                failures.push(`${name} N=${n} ${what}: ${messageOf(err)}`);
              }
            }
          }
        }
      }
    } finally {
      backend.dispose();
    }
  }
  const machine = machineInfo(adapter);
  const { backends: _b, ...shown } = config;
  return finishBench(io, {
    name: 'attention',
    machine,
    json: boolFlag(p, 'json'),
    doc: { config: { ...shown, backends: config.backends }, results, failures },
    table: () => renderTable(results, config, failures),
    svgPath: stringFlag(p, 'svg'),
    svg: () =>
      plotSvg(attentionSeries(results, config), {
        title: `attention time vs N (batch x heads ${config.batchHeads}, d ${config.d}): flash vs naive`,
        subtitle: `${adapterName(adapter)}; ${machine.date.slice(0, 10)}`,
        xLabel: 'sequence length N',
        yLabel: 'median time per call, ms',
        xName: 'N',
        yUnit: 'ms',
      }),
    failed: failures.length + results.filter((r) => r.check && !r.check.pass).length,
  });
}

/**
 * One line per backend x label: flash green, naive red, a dash per backend. The tooltip's
 * GB/s counts the bytes of q, k, v read and out written once.
 */
function attentionSeries(results: readonly AttentionBenchResult[], config: Config): PlotSeries[] {
  const dash = dashPerKey();
  return groupSeries(
    results,
    (r) => `${r.backend} ${r.label}`,
    (r) => {
      const gbps = (4 * 4 * config.batchHeads * r.n * config.d) / (r.medianMs * 1e-3) / 1e9;
      return { x: r.n, y: r.medianMs, note: `${gbps.toPrecision(3)} GB/s` };
    },
    (r) => ({ color: r.algorithm === 'naive' ? '#d62728' : '#2ca02c', dash: dash(r.backend) }),
  );
}

function renderTable(
  results: readonly AttentionBenchResult[],
  config: Config,
  failures: readonly string[],
): string {
  const speedup = (r: AttentionBenchResult): string => {
    if (r.algorithm !== 'flash' || r.pass !== 'forward') return '';
    const naive = results.find(
      (x) => x.algorithm === 'naive' && x.backend === r.backend && x.n === r.n && x.causal === r.causal,
    );
    return naive ? `${(naive.medianMs / r.medianMs).toFixed(2)}x` : '';
  };
  const rows = results.map((r) => [
    r.backend,
    String(r.n),
    r.label,
    fmtMs(r.medianMs),
    r.tflops >= 1 ? r.tflops.toFixed(2) : r.tflops.toPrecision(2),
    speedup(r),
    r.timer,
    r.check ? `${r.check.pass ? 'ok' : 'FAIL'} ${fmtError(r.check.maxError)}` : '',
  ]);
  const lines = [
    `attention, batch x heads ${config.batchHeads}, d ${config.d}, f32; median of ${config.repeats}`,
    'TFLOP/s counts 4 N^2 d per head forward (half when causal), backward 2.5x forward',
    '',
    table(['backend', ' N', 'kernel', ' ms/call', ' TFLOP/s', ' vs naive', 'timer', 'check (max err)'], rows),
  ];
  for (const f of failures) lines.push(`FAILED: ${f}`);
  return lines.join('\n');
}

async function memoryCommand(
  config: Config,
  maxN: number,
  p: ReturnType<typeof parseFlags>,
  io: Io,
): Promise<number> {
  const rows: MemoryRow[] = [];
  let adapter: Record<string, string> | undefined;
  for (const name of config.backends) {
    const backend = await createBackend(name);
    adapter ??= describeAdapter(backend);
    const stopped: Partial<Record<AttentionAlgorithm, string>> = {};
    try {
      for (let n = config.ns[0]!; n <= maxN; n *= 2) {
        const row: Record<AttentionAlgorithm, number | string> = { flash: '', naive: '' };
        for (const algorithm of ['flash', 'naive'] as AttentionAlgorithm[]) {
          if (stopped[algorithm]) {
            row[algorithm] = 'does not fit';
            continue;
          }
          io.stderr.write(`bench attention --memory: ${name} N=${n} ${algorithm}\n`);
          try {
            row[algorithm] = await extraBytes(backend, n, config.d, algorithm);
          } catch (err) {
            // DeviceLimitError (a binding too large) or an allocation failure: the largest N is the previous one.
            stopped[algorithm] = messageOf(err);
            row[algorithm] = `does not fit: ${messageOf(err)}`;
          }
        }
        rows.push({ backend: name, n, flash: row.flash, naive: row.naive });
        if (stopped.flash && stopped.naive) break;
      }
    } finally {
      backend.dispose();
    }
  }
  const fmt = (x: number | string) => (typeof x === 'number' ? String(x) : x);
  return finishBench(io, {
    name: 'attention-memory',
    machine: machineInfo(adapter),
    json: boolFlag(p, 'json'),
    doc: { d: config.d, rows },
    table: () =>
      `attention peak bytes beyond inputs and outputs (1 head, d ${config.d}); flash is O(N), naive O(N^2)\n\n${table(
        ['backend', ' N', ' flash bytes', ' naive bytes'],
        rows.map((r) => [r.backend, String(r.n), fmt(r.flash), fmt(r.naive)]),
      )}`,
    failed: 0,
  });
}
