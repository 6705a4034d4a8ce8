/**
 * Two paged-KV benchmarks:
 * - `bench paged-kv`: the serving simulation of @longseq/paged-kv (CPU only): KV waste,
 *   concurrency and tokens per step of contiguous reservation against the paged cache,
 *   with SVG plots of memory use and running sequences over time.
 * - `bench paged-attention`: the paged decode attention kernel on a GPU backend, its KV read
 *   bandwidth beside a copy of the same bytes in the same run, and the contiguous decode
 *   path of @longseq/flash-attention (one query per sequence) on the same data.
 */
import {
  type Backend,
  type Tensor,
  type WebGpuProgram,
  compareToReference,
  dispatch1d,
} from '@longseq/backend';
import { attentionVarlen } from '@longseq/flash-attention';
import {
  type RunStats,
  type PagedAttentionVariant,
  type SimulationReport,
  pagedAttention,
  pagedAttentionRef,
  seededRandom,
} from '@longseq/paged-kv';
import { type BackendName, createBackend, describeAdapter, timeWork } from '../backends';
import { messageOf } from '../errors';
import { median } from './measure';
import { copyProgram } from './copy';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface Line {
  readonly label: string;
  readonly color: string;
  readonly dash?: string;
  readonly points: readonly (readonly [number, number])[];
}

/** A plain line chart (linear axes), written by hand so the CLI needs no plotting dependency. */
export function lineChartSvg(
  lines: readonly Line[],
  options: { title: string; subtitle?: string; xLabel: string; yLabel: string; x?: number; y?: number },
): string {
  const m = { left: 70, right: 230, top: 50, bottom: 55 };
  const W = 560 + m.right;
  const H = 380;
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const xs = lines.flatMap((l) => l.points.map((p) => p[0]));
  const ys = lines.flatMap((l) => l.points.map((p) => p[1]));
  const x1 = Math.max(1, ...xs);
  const y1 = Math.max(1, ...ys) * 1.05;
  const xOf = (x: number) => m.left + (x / x1) * pw;
  const yOf = (y: number) => m.top + ph - (y / y1) * ph;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${esc(options.title)}</text>`,
  ];
  if (options.subtitle) out.push(`<text x="${m.left}" y="38" fill="#555">${esc(options.subtitle)}</text>`);
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  for (let i = 0; i <= 4; i++) {
    const yv = (y1 / 1.05) * (i / 4);
    const xv = x1 * (i / 4);
    out.push(
      `<text x="${m.left - 6}" y="${yOf(yv) + 4}" text-anchor="end">${+yv.toPrecision(3)}</text>`,
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${yOf(yv)}" y2="${yOf(yv)}" stroke="#eee"/>`,
      `<text x="${xOf(xv)}" y="${m.top + ph + 16}" text-anchor="middle">${Math.round(xv)}</text>`,
    );
  }
  out.push(
    `<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(options.xLabel)}</text>`,
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}</text>`,
  );
  lines.forEach((l, i) => {
    const pts = l.points.map(([x, y]) => `${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`).join(' ');
    out.push(
      `<polyline fill="none" stroke="${l.color}" stroke-width="1.6"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''} points="${pts}"/>`,
      `<line x1="${m.left + pw + 14}" x2="${m.left + pw + 40}" y1="${m.top + 10 + i * 18}" y2="${m.top + 10 + i * 18}" stroke="${l.color}" stroke-width="2"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/>`,
      `<text x="${m.left + pw + 46}" y="${m.top + 14 + i * 18}">${esc(l.label)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

const PAGED = '#2ca02c';
const CONTIGUOUS = '#d62728';

/** Memory use over time: tokens reserved and tokens actually held, for both schemes. */
export function memorySvg(report: SimulationReport, subtitle: string): string {
  const pts = (s: RunStats, key: 'reserved' | 'used') => s.series.map((p) => [p.step, p[key]] as const);
  return lineChartSvg(
    [
      { label: 'contiguous reserved', color: CONTIGUOUS, points: pts(report.contiguous, 'reserved') },
      { label: 'contiguous used', color: CONTIGUOUS, dash: '5 3', points: pts(report.contiguous, 'used') },
      { label: 'paged reserved', color: PAGED, points: pts(report.paged, 'reserved') },
      { label: 'paged used', color: PAGED, dash: '5 3', points: pts(report.paged, 'used') },
      {
        label: 'budget',
        color: '#555',
        dash: '2 3',
        points: [
          [0, report.budgetTokens],
          [Math.max(report.contiguous.steps, report.paged.steps), report.budgetTokens],
        ],
      },
    ],
    { title: 'KV cache memory over time (tokens)', subtitle, xLabel: 'step', yLabel: 'KV tokens' },
  );
}

/** Sequences running at once over time. */
export function concurrencySvg(report: SimulationReport, subtitle: string): string {
  return lineChartSvg(
    [
      {
        label: 'contiguous',
        color: CONTIGUOUS,
        points: report.contiguous.series.map((p) => [p.step, p.running] as const),
      },
      { label: 'paged', color: PAGED, points: report.paged.series.map((p) => [p.step, p.running] as const) },
    ],
    { title: 'Sequences running at once', subtitle, xLabel: 'step', yLabel: 'sequences' },
  );
}

// ---- paged attention on the GPU --------------------------------------------------------

export interface AttentionBenchConfig {
  readonly backend: BackendName;
  readonly seqs: number;
  readonly context: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly blockSize: number;
  readonly partitionSize?: number;
  readonly repeats: number;
  readonly warmup: number;
  readonly seed: number;
  readonly timer: 'auto' | 'wall';
  /** Also time flash-attention's contiguous decode (default true). */
  readonly contiguous: boolean;
}

export interface AttentionBenchRow {
  readonly kernel: string;
  readonly medianMs: number;
  /** GB/s of the bytes the kernel must move (K and V read; copy: read + write). */
  readonly gbps: number;
  readonly pctOfCopy?: number;
  readonly ratioToPaged?: number;
  readonly timer: 'gpu' | 'wall';
}

export interface AttentionBenchReport {
  readonly adapter?: Record<string, string>;
  readonly kvBytes: number;
  readonly rows: AttentionBenchRow[];
  readonly check: { maxError: number; allowed: number; pass: boolean; against: string };
  readonly skipped: string[];
}

const READ_WG = 256;
const READ_THREADS = 1024 * READ_WG;

/**
 * The read-only ceiling: sums every vec4 of `a` and `b` (the key and value caches, the
 * bytes attention must read) and writes one float per thread (1 MB, under 0.1% of the reads).
 * A fixed grid strides through the buffers, so each thread keeps loads of both in flight.
 */
function readProgram(backend: Backend, a: Tensor, b: Tensor, out: Tensor): WebGpuProgram {
  return {
    kind: 'webgpu',
    name: 'bench_read_kv',
    cacheKey: 'read-kv',
    inputs: [
      { name: 'a', tensor: a, elementType: 'vec4<f32>' },
      { name: 'b', tensor: b, elementType: 'vec4<f32>' },
    ],
    outputs: [{ name: 'sums', tensor: out }],
    uniforms: [{ name: 'count', type: 'u32', value: a.size / 4 }],
    source: /* wgsl */ `
@compute @workgroup_size(${READ_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let first = wid.x * ${READ_WG}u + lid;
  var acc = vec4<f32>(0.0);
  for (var i = first; i < u.count; i += ${READ_THREADS}u) { acc += a[i] + b[i]; }
  sums[first] = acc.x + acc.y + acc.z + acc.w;
}`,
    dispatch: dispatch1d(READ_THREADS / READ_WG, backend.limits.maxWorkgroupsPerDimension),
  };
}

function randomData(size: number, random: () => number, scale = 1): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}

/**
 * Launches per timed sample, back to back in one submission; a sample is their mean. Single
 * launches with a sync between them left the GPU idle between samples and measured the
 * copy 20% slower on an H100 (1.57 against 1.31 ms for 2.1 GB), so every row is timed this way.
 */
const LAUNCHES_PER_SAMPLE = 5;

async function measure(
  backend: Backend,
  config: AttentionBenchConfig,
  launch: () => Promise<void>,
): Promise<{ ms: number; timer: 'gpu' | 'wall' }> {
  for (let w = 0; w < config.warmup; w++) await launch();
  const samples: number[] = [];
  let timer: 'gpu' | 'wall' = 'gpu';
  for (let r = 0; r < config.repeats; r++) {
    const t = await timeWork(
      backend,
      async () => {
        for (let b = 0; b < LAUNCHES_PER_SAMPLE; b++) await launch();
      },
      config.timer,
    );
    if (t.gpuMs === undefined) timer = 'wall';
    samples.push((t.gpuMs ?? t.wallMs) / LAUNCHES_PER_SAMPLE);
  }
  return { ms: median(samples), timer };
}

/**
 * Paged decode attention over `seqs` sequences of `context` tokens whose blocks are
 * scattered at random through the cache, timed beside a copy of the key cache (the same
 * bytes: the copy reads K and writes as much as attention reads of V) and beside
 * flash-attention's contiguous path on the same keys and values.
 */
export async function benchPagedAttention(
  config: AttentionBenchConfig,
  onStep: (label: string) => void = () => {},
): Promise<AttentionBenchReport> {
  const backend = await createBackend(config.backend);
  const skipped: string[] = [];
  const tensors: Tensor[] = [];
  const track = <T extends Tensor>(t: T): T => {
    tensors.push(t);
    return t;
  };
  try {
    const { seqs, context, heads, kvHeads, headDim: d, blockSize } = config;
    const perSeq = Math.ceil(context / blockSize);
    const numBlocks = seqs * perSeq;
    const random = seededRandom(config.seed);
    const order = Array.from({ length: numBlocks }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const cacheSize = numBlocks * blockSize * kvHeads * d;
    const kHost = randomData(cacheSize, random);
    const vHost = randomData(cacheSize, random);
    const qHost = randomData(seqs * heads * d, random);
    const keyCache = track(backend.tensor(kHost, [numBlocks, blockSize, kvHeads, d]));
    const valueCache = track(backend.tensor(vHost, [numBlocks, blockSize, kvHeads, d]));
    const q = track(backend.tensor(qHost, [seqs, heads, d]));
    const blockTables = track(backend.tensor(Int32Array.from(order), [seqs, perSeq], 'i32'));
    const contextLens = track(backend.tensor(new Int32Array(seqs).fill(context), [seqs], 'i32'));
    const kvBytes = 2 * seqs * context * kvHeads * d * 4;
    const rows: AttentionBenchRow[] = [];

    // sequence 0 is checked against the float64 reference for every variant
    const table0 = order.slice(0, perSeq);
    const ref = {
      q: { shape: [1, heads, d], data: qHost.subarray(0, heads * d) },
      keyCache: { shape: [numBlocks, blockSize, kvHeads, d], data: kHost },
      valueCache: { shape: [numBlocks, blockSize, kvHeads, d], data: vHost },
      blockTables: { shape: [1, perSeq], data: table0 },
      contextLens: [context],
    };
    const ref64 = pagedAttentionRef(ref).data;
    const ref32 = pagedAttentionRef(ref, { precision: 'f32' }).data;
    const check = { maxError: 0, allowed: 0, pass: true, against: 'float64 reference (sequence 0)' };
    const variants: PagedAttentionVariant[] =
      backend.kind === 'webgpu' && backend.features.has('subgroups') ? ['subgroup', 'thread'] : ['thread'];
    let out: Tensor | undefined;
    let best = Number.POSITIVE_INFINITY;
    for (const variant of variants) {
      onStep(`paged attention (${variant})`);
      const options = {
        maxContextLen: context,
        variant,
        ...(config.partitionSize ? { partitionSize: config.partitionSize } : {}),
      };
      const result = track(await pagedAttention(q, keyCache, valueCache, blockTables, contextLens, options));
      out ??= result;
      const paged = await measure(backend, config, async () => {
        (await pagedAttention(q, keyCache, valueCache, blockTables, contextLens, options)).dispose();
      });
      best = Math.min(best, paged.ms);
      rows.push({
        kernel: backend.kind === 'webgpu' ? `paged decode (${variant})` : 'paged decode',
        medianMs: paged.ms,
        gbps: kvBytes / paged.ms / 1e6,
        timer: paged.timer,
      });
      const c = compareToReference((await result.read()).subarray(0, heads * d), ref64, ref32, {
        atol: 1e-5,
      });
      check.maxError = Math.max(check.maxError, c.maxError);
      check.allowed = c.allowed;
      check.pass &&= c.pass;
    }
    const pagedRows = rows.length;

    if (backend.kind === 'webgpu') {
      onStep('copy');
      const src = track(backend.tensor(kHost, [cacheSize]));
      const dst = track(backend.empty([cacheSize]));
      const copy = await measure(backend, config, () => backend.run(copyProgram(backend, src, dst)));
      const copyGbps = (2 * cacheSize * 4) / copy.ms / 1e6;
      rows.push({ kernel: 'copy (same bytes)', medianMs: copy.ms, gbps: copyGbps, timer: copy.timer });
      if (cacheSize % 4 === 0) {
        onStep('read');
        const sums = track(backend.empty([READ_THREADS]));
        const read = await measure(backend, config, () =>
          backend.run(readProgram(backend, keyCache, valueCache, sums)),
        );
        rows.push({
          kernel: 'read K + V (sum)',
          medianMs: read.ms,
          gbps: kvBytes / read.ms / 1e6,
          timer: read.timer,
        });
      }
      // percentages compare bytes moved per ms: K + V read by attention (and by the read
      // kernel) against the copy's bytes read + written, the same count of bytes
      for (let i = 0; i < rows.length; i++)
        if (i < pagedRows || rows[i]!.kernel.startsWith('read'))
          rows[i] = { ...rows[i]!, pctOfCopy: (100 * rows[i]!.gbps) / copyGbps };
    } else {
      skipped.push('copy: the copy kernel is WGSL (webgpu backend only)');
    }

    if (config.contiguous) {
      onStep('flash-attention contiguous decode');
      try {
        // the same keys and values, gathered per sequence into one packed [seqs x context, KVH, d]
        const row = kvHeads * d;
        const kPacked = new Float32Array(seqs * context * row);
        const vPacked = new Float32Array(seqs * context * row);
        for (let s = 0; s < seqs; s++) {
          for (let t = 0; t < context; t++) {
            const slot = order[s * perSeq + Math.floor(t / blockSize)]! * blockSize + (t % blockSize);
            kPacked.set(kHost.subarray(slot * row, (slot + 1) * row), (s * context + t) * row);
            vPacked.set(vHost.subarray(slot * row, (slot + 1) * row), (s * context + t) * row);
          }
        }
        const k = track(backend.tensor(kPacked, [seqs * context, kvHeads, d]));
        const v = track(backend.tensor(vPacked, [seqs * context, kvHeads, d]));
        const cuSeqlensQ = Array.from({ length: seqs + 1 }, (_, i) => i);
        const cuSeqlensK = Array.from({ length: seqs + 1 }, (_, i) => i * context);
        const flashOptions = { cuSeqlensQ, cuSeqlensK };
        const flashOut = track(await attentionVarlen(q, k, v, flashOptions));
        const flash = await measure(backend, config, async () => {
          (await attentionVarlen(q, k, v, flashOptions)).dispose();
        });
        rows.push({
          kernel: 'flash-attention contiguous (nq = 1)',
          medianMs: flash.ms,
          gbps: kvBytes / flash.ms / 1e6,
          timer: flash.timer,
          ratioToPaged: best / flash.ms,
        });
        const a = await out!.read();
        const b = await flashOut.read();
        let diff = 0;
        for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
        if (!(diff <= 2 * check.allowed + 1e-5)) {
          check.pass = false;
          check.against += `; paged vs contiguous max |diff| ${diff.toExponential(2)}`;
        }
      } catch (err) {
        skipped.push(`flash-attention contiguous: ${messageOf(err)}`);
      }
    }
    return { adapter: describeAdapter(backend), kvBytes, rows, check, skipped };
  } finally {
    for (const t of tensors) t.dispose();
    backend.dispose();
  }
}
