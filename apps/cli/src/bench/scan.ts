/**
 * The selective-scan benchmark: for each backend and sequence length L, the sequential and
 * parallel scans (Mamba's shape: B and C [batch, n, L], z, D, dt bias with softplus) against
 * a copy kernel of the same bytes in the same run. The scan is memory-bound at best, so GB/s
 * counts each input read once and y written once:
 *   (u, delta, z: batch d L) + (B, C: batch n L) + (A: d n) + (D, bias: d) + (y: batch d L)
 * floats of 4 bytes, whatever the kernel actually moves. The copy reads and writes half that
 * many bytes each, so "% of copy" is the fraction of the device's practical bandwidth.
 */
import { type Backend, compareToReference, type HostTensor, type Tensor } from '@longseq/backend';
import {
  exp2IsAccurate,
  measureFastExpError,
  type ScanExp,
  selectiveScan,
  type SequentialTuning,
  selectiveScanRef,
  setSequentialTuning,
} from '@longseq/selective-scan';
import { type BackendName, createBackend, describeAdapter } from '../backends';
import { messageOf } from '../errors';
import { copyProgram } from './copy';
import { measureCalls, median } from './measure';
import { inputCopies } from './softmax';

export const SCAN_KERNELS = ['sequential', 'sequential-thread', 'parallel', 'parallel-tree'] as const;
export type ScanKernel = (typeof SCAN_KERNELS)[number];

export interface ScanBenchConfig {
  readonly backends: readonly BackendName[];
  readonly batch: number;
  readonly channels: number;
  readonly lengths: readonly number[];
  readonly states: number;
  /**
   * Kernels to time: 'sequential' (states split over quads where the device has subgroups),
   * 'sequential-thread' (one thread per channel; WebGPU with subgroups only), 'parallel'
   * (subgroup scan where the device has subgroups) and 'parallel-tree' (the parallel kernel
   * with the workgroup-memory tree; WebGPU with subgroups only).
   */
  readonly algorithms: readonly ScanKernel[];
  readonly repeats: number;
  readonly warmup: number;
  /** Kernel calls per measurement; default: enough for ~200 ms, up to 20 (WebGPU) or 2 (gpu.js). */
  readonly dispatches?: number;
  readonly seed: number;
  readonly timer: 'auto' | 'wall';
  readonly skipUnavailable: boolean;
  /** WebGPU's e^(dt A): 'auto' (fast where the exp2 probe passes), 'fast' or 'accurate'. */
  readonly exp: ScanExp;
  /** WebGPU sequential kernels' launch shape (tiles of loads in flight, quad workgroup size). */
  readonly tuning?: Partial<SequentialTuning>;
}

export interface ScanBenchResult {
  readonly backend: string;
  readonly batch: number;
  readonly channels: number;
  /** The sequence length L (named n like the other benchmarks' sizes). */
  readonly n: number;
  readonly states: number;
  readonly kernel: 'copy' | 'scan';
  readonly algorithm?: ScanKernel;
  readonly label: string;
  readonly medianMs: number;
  readonly minMs: number;
  readonly samplesMs: number[];
  readonly wallMedianMs: number;
  readonly timer: 'gpu' | 'wall';
  readonly dispatches: number;
  readonly inputCopies: number;
  /** Bytes counted per call: each input read once and y written once (the copy: the same total). */
  readonly bytes: number;
  readonly gbps: number;
  readonly pctOfCopy?: number;
  /**
   * A few channels of the first call's y against the float64 reference, by the test rule
   * (each channel has its own allowance): the channel nearest to (or furthest past) its
   * allowance, its max error and allowance.
   */
  readonly check?: {
    readonly channelsChecked: number;
    readonly maxError: number;
    readonly allowed: number;
    readonly pass: boolean;
  };
}

export interface ScanBenchSkip {
  readonly backend: string;
  readonly n?: number;
  readonly label?: string;
  readonly reason: string;
  readonly error: boolean;
}

export interface ScanBenchReport {
  readonly adapter?: Record<string, string>;
  /**
   * WebGPU: the fast e^(dt A)'s max relative error on this device (the probe), and whether
   * 'auto' uses it (within 3 ulp); the exp the timed WebGPU kernels ran with.
   */
  readonly exp?: {
    readonly fastExpError: number;
    readonly autoUsesFast: boolean;
    readonly used: 'fast' | 'accurate';
  };
  readonly results: ScanBenchResult[];
  readonly skipped: ScanBenchSkip[];
}

/** Bytes the scan must move at least: every input read once, y written once. */
export function scanBytes(batch: number, d: number, L: number, n: number): number {
  const perSequence = 3 * batch * d * L + 2 * batch * n * L;
  return 4 * (perSequence + d * n + 2 * d + batch * d * L);
}

export function countScanSteps(config: ScanBenchConfig): number {
  let steps = 0;
  for (const name of config.backends)
    steps += config.lengths.length * (config.algorithms.length + (name === 'webgpu' ? 1 : 0));
  return steps;
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

interface HostInputs {
  readonly u: Float32Array;
  readonly delta: Float32Array;
  readonly z: Float32Array;
  readonly A: Float32Array;
  readonly B: Float32Array;
  readonly C: Float32Array;
  readonly D: Float32Array;
  readonly bias: Float32Array;
}

/** Inputs in Mamba's ranges: A = -exp(A_log) negative, dt before softplus around its bend. */
function hostInputs(batch: number, d: number, L: number, n: number, seed: number): HostInputs {
  return {
    u: fill(batch * d * L, seed, -1, 1),
    delta: fill(batch * d * L, seed + 1, -4, 1),
    z: fill(batch * d * L, seed + 2, -3, 3),
    A: fill(d * n, seed + 3, -8, -0.5),
    B: fill(batch * n * L, seed + 4, -1, 1),
    C: fill(batch * n * L, seed + 5, -1, 1),
    D: fill(d, seed + 6, -1, 1),
    bias: fill(d, seed + 7, -1, 1),
  };
}

/** Channels (batch, channel) whose y is checked: the first two and the very last. */
function checkedChannels(batch: number, d: number): [number, number][] {
  const picks: [number, number][] = [[0, 0]];
  if (d > 1) picks.push([0, 1]);
  if (batch * d > 2) picks.push([batch - 1, d - 1]);
  return picks;
}

/** The rows of `y` for a few channels against selectiveScanRef on the same channels. */
async function checkChannels(
  y: Tensor,
  h: HostInputs,
  batch: number,
  d: number,
  L: number,
  n: number,
): Promise<NonNullable<ScanBenchResult['check']>> {
  const got = await y.read();
  let maxError = 0;
  let allowed = 1;
  let pass = true;
  const picks = checkedChannels(batch, d);
  for (const [b, c] of picks) {
    const row = (b * d + c) * L;
    const slice = (a: Float32Array, start: number, count: number): HostTensor => ({
      shape: [1, 1, count],
      data: a.subarray(start, start + count),
    });
    const one = (a: Float32Array, start: number, count: number, shape: number[]): HostTensor => ({
      shape,
      data: a.subarray(start, start + count),
    });
    const options = {
      D: one(h.D, c, 1, [1]),
      z: slice(h.z, row, L),
      deltaBias: one(h.bias, c, 1, [1]),
      deltaSoftplus: true,
    };
    const args = [
      slice(h.u, row, L),
      slice(h.delta, row, L),
      one(h.A, c * n, n, [1, n]),
      one(h.B, b * n * L, n * L, [1, n, L]),
      one(h.C, b * n * L, n * L, [1, n, L]),
    ] as const;
    const ref64 = selectiveScanRef(...args, options);
    const ref32 = selectiveScanRef(...args, { ...options, precision: 'f32' });
    const cmp = compareToReference(got.subarray(row, row + L), ref64.y.data, ref32.y.data);
    // Report the worst channel by error / allowance: the max error of one channel beside the
    // allowance of another would read as a failure that is none (or hide one).
    if (Number.isNaN(cmp.maxError) || cmp.maxError / cmp.allowed > maxError / allowed) {
      maxError = cmp.maxError;
      allowed = cmp.allowed;
    }
    pass &&= cmp.pass;
  }
  return { channelsChecked: picks.length, maxError, allowed, pass };
}

/** Runs the benchmark; `onStep` is called before each timed kernel (for the progress bar). */
export async function benchScan(
  config: ScanBenchConfig,
  onStep: (label: string) => void = () => {},
): Promise<ScanBenchReport> {
  const results: ScanBenchResult[] = [];
  const skipped: ScanBenchSkip[] = [];
  let adapter: Record<string, string> | undefined;
  let expInfo: ScanBenchReport['exp'];
  const { batch, channels: d, states: n } = config;
  const previousTuning = setSequentialTuning(config.tuning ?? {});
  try {
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
        if (name === 'webgpu') {
          adapter = describeAdapter(backend);
          const autoUsesFast = await exp2IsAccurate(backend);
          expInfo = {
            fastExpError: await measureFastExpError(backend),
            autoUsesFast,
            used: config.exp === 'auto' ? (autoUsesFast ? 'fast' : 'accurate') : config.exp,
          };
        }
        for (const L of config.lengths) {
          const bytes = scanBytes(batch, d, L, n);
          const gbps = (ms: number) => bytes / (ms * 1e6);
          const common = { backend: name, batch, channels: d, n: L, states: n, bytes };
          const h = hostInputs(batch, d, L, n, config.seed + L);
          // Small problems cycle through copies of their inputs so calls read from memory, not L2.
          const copies = inputCopies(bytes);
          const made: Tensor[] = [];
          const up = (data: Float32Array, shape: number[]) => {
            const t = backend.tensor(data, shape);
            made.push(t);
            return t;
          };
          let copyGbps: number | undefined;
          try {
            const sets = Array.from({ length: copies }, () => ({
              u: up(h.u, [batch, d, L]),
              delta: up(h.delta, [batch, d, L]),
              z: up(h.z, [batch, d, L]),
              B: up(h.B, [batch, n, L]),
              C: up(h.C, [batch, n, L]),
            }));
            const A = up(h.A, [d, n]);
            const D = up(h.D, [d]);
            const bias = up(h.bias, [d]);
            let call = 0;
            if (backend.kind === 'webgpu') {
              onStep(`${name} L=${L} copy`);
              // A copy moving the same bytes: half read, half written.
              const half = Math.ceil(bytes / 8);
              const srcs = Array.from({ length: copies }, () => backend.empty([half]));
              const dsts = srcs.map(() => backend.empty([half]));
              const programs = srcs.map((s, i) => copyProgram(backend, s, dsts[i]!));
              try {
                const m = await measureCalls(backend, config, () => backend.run(programs[call++ % copies]!));
                const medianMs = median(m.samples);
                copyGbps = (2 * half * 4) / (medianMs * 1e6);
                results.push({
                  ...common,
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
                for (const t of [...srcs, ...dsts]) t.dispose();
              }
            }
            for (const algorithm of config.algorithms) {
              const label = algorithm;
              onStep(`${name} L=${L} ${label}`);
              const withoutSubgroups = algorithm === 'parallel-tree' || algorithm === 'sequential-thread';
              if (withoutSubgroups && !backend.features.has('subgroups')) {
                const reason =
                  backend.kind === 'webgpu'
                    ? `no subgroups on this device: ${algorithm.split('-')[0]} already runs without them`
                    : 'gpu.js has no workgroups or subgroups';
                skipped.push({ backend: name, n: L, label, reason, error: false });
                continue;
              }
              const run = (s: (typeof sets)[number]) =>
                selectiveScan(s.u, s.delta, A, s.B, s.C, {
                  D,
                  z: s.z,
                  deltaBias: bias,
                  deltaSoftplus: true,
                  algorithm: algorithm.startsWith('sequential') ? 'sequential' : 'parallel',
                  subgroups: !withoutSubgroups,
                  exp: config.exp,
                });
              try {
                const first = await run(sets[0]!);
                const check = await checkChannels(first.y, h, batch, d, L, n).finally(() =>
                  first.y.dispose(),
                );
                const m = await measureCalls(backend, config, async () =>
                  (await run(sets[call++ % copies]!)).y.dispose(),
                );
                const medianMs = median(m.samples);
                results.push({
                  ...common,
                  kernel: 'scan',
                  algorithm,
                  label,
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
  } finally {
    setSequentialTuning(previousTuning);
  }
  for (let i = 0; i < results.length; i++) {
    const r = results[i]!;
    if (r.pctOfCopy !== undefined) continue;
    const copy = results.find((c) => c.kernel === 'copy' && c.n === r.n);
    if (copy) results[i] = { ...r, pctOfCopy: (100 * r.gbps) / copy.gbps };
  }
  return { ...(adapter ? { adapter } : {}), ...(expInfo ? { exp: expInfo } : {}), results, skipped };
}
