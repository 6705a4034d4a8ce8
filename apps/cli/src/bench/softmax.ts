/**
 * The softmax benchmark: for each backend and row length, the three algorithms (and on
 * WebGPU both kernel shapes) against a copy of the same tensor, the bandwidth ceiling.
 * Softmax is memory-bound: a perfect kernel reads the tensor once and writes it once, so
 * GB/s is counted as 2 x rows x N x 4 bytes per call whatever the kernel actually moves.
 */
import { type Backend, type Tensor, compareToReference } from '@longseq/backend';
import {
  type SoftmaxAlgorithm,
  type SoftmaxVariant,
  maxFusedRowLength,
  softmax,
  softmaxRef,
} from '@longseq/softmax';
import { type BackendName, createBackend, describeAdapter } from '../backends';
import { messageOf } from '../errors';
import { copyProgram } from './copy';
import { measureCalls, median } from './measure';

export interface BenchConfig {
  readonly backends: readonly BackendName[];
  readonly rows: number;
  readonly lengths: readonly number[];
  /** Timed measurements per kernel; the median is reported. */
  readonly repeats: number;
  /**
   * Kernel calls per measurement. Default: up to 20 on WebGPU (amortizes submit and sync)
   * and 2 on gpu.js, fewer where one call is slow.
   */
  readonly dispatches?: number;
  /** Untimed calls before timing (compilation, buffer pool, clocks). */
  readonly warmup: number;
  /** Whether an unavailable backend is skipped (with `--backend all`) or an error. */
  readonly skipUnavailable: boolean;
  readonly seed: number;
  /** 'auto': the backend's GPU timestamps when it has them; 'wall': wall clock around submit + sync. */
  readonly timer: 'auto' | 'wall';
}

export interface BenchResult {
  readonly backend: string;
  readonly rows: number;
  readonly n: number;
  readonly kernel: 'copy' | 'softmax';
  readonly algorithm?: SoftmaxAlgorithm;
  readonly variant?: SoftmaxVariant;
  /** e.g. "online fused", "copy". */
  readonly label: string;
  /** Median milliseconds per call. */
  readonly medianMs: number;
  readonly minMs: number;
  readonly samplesMs: number[];
  /**
   * Median wall-clock milliseconds per call (submit to queue drained). Beside GPU time it
   * shows host-side costs the passes do not: allocation, submits, buffer clears.
   */
  readonly wallMedianMs: number;
  /** Where the time came from: GPU timestamps, or wall clock around submit + sync. */
  readonly timer: 'gpu' | 'wall';
  readonly dispatches: number;
  /** Copies of the input the calls cycle through (so small inputs are not served from L2). */
  readonly inputCopies: number;
  /** 2 x rows x N x 4 bytes / median time. */
  readonly gbps: number;
  /** gbps / the WebGPU copy's gbps at the same size, in percent. */
  readonly pctOfCopy?: number;
  /** The first rows of the warm-up output against the float64 reference, by the test rule. */
  readonly check?: {
    readonly rowsChecked: number;
    readonly maxError: number;
    readonly allowed: number;
    readonly pass: boolean;
  };
}

export interface BenchSkip {
  readonly backend: string;
  readonly n?: number;
  readonly label?: string;
  readonly reason: string;
  /** True for an unexpected failure (exit code 1); false for a combination that does not apply. */
  readonly error: boolean;
}

export interface BenchReport {
  readonly adapter?: Record<string, string>;
  readonly results: BenchResult[];
  readonly skipped: BenchSkip[];
}

interface Variant {
  readonly algorithm: SoftmaxAlgorithm;
  readonly variant: SoftmaxVariant;
  /** WebGPU reductions through subgroup operations (where the device has them) or the workgroup-memory tree. */
  readonly subgroups: boolean;
  readonly label: string;
}

const ALGORITHMS: readonly SoftmaxAlgorithm[] = ['naive', 'safe', 'online'];
/** Rows checked against the host reference per kernel (enough to catch a wrong kernel, cheap at any size). */
const ROWS_CHECKED = 4;

/** The kernels timed on a backend at row length n, and the ones that do not apply there. */
function variantsFor(
  backend: Backend,
  n: number,
): { run: Variant[]; skip: { label: string; reason: string }[] } {
  if (backend.kind !== 'webgpu') {
    return {
      run: ALGORITHMS.map((algorithm) => ({
        algorithm,
        variant: 'auto' as const,
        subgroups: false,
        label: algorithm,
      })),
      skip: [],
    };
  }
  const run: Variant[] = [];
  const skip: { label: string; reason: string }[] = [];
  const maxFused = maxFusedRowLength(backend);
  // With subgroups on the device, each kernel runs both ways: subgroup reductions and the tree.
  const reductions = backend.features.has('subgroups') ? [true, false] : [false];
  for (const algorithm of ALGORITHMS) {
    for (const subgroups of reductions) {
      const how = reductions.length > 1 ? (subgroups ? ' +subgroups' : ' +tree') : '';
      if (n <= maxFused)
        run.push({ algorithm, variant: 'fused', subgroups, label: `${algorithm} fused${how}` });
      else
        skip.push({
          label: `${algorithm} fused${how}`,
          reason: `row length ${n} > maxFusedRowLength ${maxFused}`,
        });
      run.push({ algorithm, variant: 'multipass', subgroups, label: `${algorithm} multipass${how}` });
    }
  }
  return { run, skip };
}

/** Bytes the rotated inputs of one size should span: a few times an H100's 50 MB L2. */
const ROTATION_BYTES = 192 * 2 ** 20;
const MAX_INPUT_COPIES = 16;

/** How many copies of a tensor of `bytes` the timed calls cycle through. */
export function inputCopies(bytes: number): number {
  return Math.max(1, Math.min(MAX_INPUT_COPIES, Math.ceil(ROTATION_BYTES / Math.max(bytes, 1))));
}

/** Number of timed steps, for the progress bar (an estimate when a backend turns out unavailable). */
export function countSteps(config: BenchConfig): number {
  let steps = 0;
  for (const name of config.backends) steps += config.lengths.length * (name === 'webgpu' ? 13 : 3);
  return steps;
}

/** Deterministic inputs (mulberry32): logits uniform in [-4, 4), the range attention scores live in. */
export function randomLogits(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let a = seed >>> 0;
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 8 - 4;
  }
  return out;
}

/** Checks the first rows of a softmax output against softmaxRef (float64, with the float32 baseline). */
async function checkRows(
  y: Tensor,
  host: Float32Array,
  n: number,
  algorithm: SoftmaxAlgorithm,
): Promise<NonNullable<BenchResult['check']>> {
  const rowsChecked = Math.min(ROWS_CHECKED, host.length / n);
  const x = { shape: [rowsChecked, n], data: host.subarray(0, rowsChecked * n) };
  const got = (await y.read()).subarray(0, rowsChecked * n);
  const ref64 = softmaxRef(x, { algorithm });
  const ref32 = softmaxRef(x, { algorithm, precision: 'f32' });
  const c = compareToReference(got, ref64.output.data, ref32.output.data);
  return { rowsChecked, maxError: c.maxError, allowed: c.allowed, pass: c.pass };
}

/** Runs the benchmark; `onStep` is called before each timed kernel (for the progress bar). */
export async function benchSoftmax(
  config: BenchConfig,
  onStep: (label: string) => void = () => {},
): Promise<BenchReport> {
  const results: BenchResult[] = [];
  const skipped: BenchSkip[] = [];
  let adapter: Record<string, string> | undefined;
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
      for (const n of config.lengths) {
        const bytes = 2 * config.rows * n * 4;
        const gbps = (ms: number) => bytes / (ms * 1e6);
        const host = randomLogits(config.rows * n, config.seed + n);
        // Calls cycle through several copies of a small input, so each call reads from
        // memory rather than from the previous call's L2 (50 MB on an H100).
        const copies = inputCopies(config.rows * n * 4);
        const xs = Array.from({ length: copies }, () => backend.tensor(host, [config.rows, n]));
        const x = xs[0]!;
        let call = 0;
        const next = () => xs[call++ % copies]!;
        let copyGbps: number | undefined;
        try {
          if (backend.kind === 'webgpu') {
            onStep(`${name} N=${n} copy`);
            const dsts = xs.map(() => backend.empty([config.rows, n]));
            const programs = xs.map((src, i) => copyProgram(backend, src, dsts[i]!));
            try {
              const m = await measureCalls(backend, config, () => backend.run(programs[call++ % copies]!));
              const medianMs = median(m.samples);
              copyGbps = gbps(medianMs);
              results.push({
                backend: name,
                rows: config.rows,
                n,
                kernel: 'copy',
                label: 'copy',
                medianMs,
                minMs: Math.min(...m.samples),
                samplesMs: m.samples,
                wallMedianMs: median(m.wallSamples),
                timer: m.timer,
                dispatches: m.dispatches,
                inputCopies: copies,
                gbps: copyGbps,
                pctOfCopy: 100,
              });
            } finally {
              for (const d of dsts) d.dispose();
            }
          }
          const { run, skip } = variantsFor(backend, n);
          for (const s of skip)
            skipped.push({ backend: name, n, label: s.label, reason: s.reason, error: false });
          for (const v of run) {
            onStep(`${name} N=${n} ${v.label}`);
            const options = { algorithm: v.algorithm, variant: v.variant, subgroups: v.subgroups };
            try {
              const first = await softmax(x, options);
              const check = await checkRows(first, host, n, v.algorithm).finally(() => first.dispose());
              const m = await measureCalls(backend, config, async () =>
                (await softmax(next(), options)).dispose(),
              );
              const medianMs = median(m.samples);
              results.push({
                backend: name,
                rows: config.rows,
                n,
                kernel: 'softmax',
                algorithm: v.algorithm,
                variant: v.variant,
                label: v.label,
                medianMs,
                minMs: Math.min(...m.samples),
                samplesMs: m.samples,
                wallMedianMs: median(m.wallSamples),
                timer: m.timer,
                dispatches: m.dispatches,
                inputCopies: copies,
                gbps: gbps(medianMs),
                ...(copyGbps ? { pctOfCopy: (100 * gbps(medianMs)) / copyGbps } : {}),
                check,
              });
            } catch (err) {
              skipped.push({ backend: name, n, label: v.label, reason: messageOf(err), error: true });
            }
          }
        } finally {
          for (const t of xs) t.dispose();
        }
      }
    } finally {
      backend.dispose();
    }
  }
  // gpu.js rows measured against the WebGPU copy of the same size: the same device's ceiling
  // for gpujs-webgpu, a reference point for the CPU modes.
  for (let i = 0; i < results.length; i++) {
    const r = results[i]!;
    if (r.pctOfCopy !== undefined) continue;
    const copy = results.find((c) => c.kernel === 'copy' && c.n === r.n);
    if (copy) results[i] = { ...r, pctOfCopy: (100 * r.gbps) / copy.gbps };
  }
  return { ...(adapter ? { adapter } : {}), results, skipped };
}
