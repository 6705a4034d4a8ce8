/**
 * The Vision Mamba benchmark: a Vim of Vim-tiny's shape (224 x 224 images, patch 16, embed
 * 192, 24 blocks, d_state 16, expand 2, middle class token, bimamba v2) with seeded random
 * weights, timed on a backend: images per second of `classify` (the logits read back) at each
 * batch size, median of the repeats after warmup, images already on the device (as the
 * PyTorch reference has them on CUDA).
 *
 * Before timing, a small Vim of the same kind is checked against the float64 reference on the
 * same device, and the big one's logits must be finite and the same for an image alone as in
 * its batch. `--torch FILE` puts the numbers of reference/torch_vim.py (the training script's
 * PyTorch Vim on CUDA, same shape, float32) beside ours.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '@longseq/backend';
import {
  type VimConfig,
  type VimScan,
  VisionMamba,
  vimConfig,
  vimRandomReader,
  vimRef,
} from '@longseq/vision-mamba';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { type BackendName, createBackend, describeAdapter, parseBackends } from '../backends';
import { UsageError } from '../errors';
import { table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { median } from './measure';
import { finishBench, withProgress } from './report';

export interface VimBenchConfig {
  readonly backend: BackendName;
  readonly batches: readonly number[];
  readonly imgSize: number;
  readonly patchSize: number;
  readonly embedDim: number;
  readonly depth: number;
  readonly dState: number;
  readonly scan: VimScan;
  /** Mixer layouts to time (VisionMamba.layout). */
  readonly layouts: readonly ('channels' | 'tokens')[];
  /** Selective-scan algorithms to time (VisionMamba.scanAlgorithm). */
  readonly algorithms: readonly ('auto' | 'sequential' | 'parallel')[];
  readonly repeats: number;
  readonly warmup: number;
  readonly seed: number;
}

export interface VimBenchResult {
  readonly layout: 'channels' | 'tokens';
  readonly algorithm: 'auto' | 'sequential' | 'parallel';
  readonly batch: number;
  readonly imagesPerS: number;
  readonly ms: number;
  readonly samplesMs: number[];
  /** The GPU's kernel time of one call (timestamp queries; WebGPU only). */
  readonly gpuKernelMs?: number;
  /** Logits all finite, and image 0's logits the same in every batch and variant (relative 1e-4). */
  readonly check: { readonly pass: boolean; readonly reason?: string };
}

export interface TorchVimResult {
  readonly batch: number;
  readonly ms: number;
  readonly images_per_s: number;
}

export interface VimBenchReport {
  readonly backend: string;
  readonly adapter?: Record<string, string>;
  readonly model: VimConfig;
  readonly tokens: number;
  /** The small model against vimRef (relative error of the logits). */
  readonly sanity: { readonly pass: boolean; readonly relativeError: number };
  readonly results: VimBenchResult[];
  readonly torch?: { readonly device?: string; readonly torch?: string; readonly results: TorchVimResult[] };
}

function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i]! - expected[i]!) / scale;
    if (!(e <= worst)) worst = Number.isNaN(e) ? Number.POSITIVE_INFINITY : e;
  }
  return worst;
}

function seededImages(count: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: count }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return 2 * (a / 4294967296) - 1;
  });
}

/** A small Vim of the benchmark's kind against the float64 reference, on the benchmark's device. */
async function sanityCheck(
  backend: Backend,
  c: VimBenchConfig,
): Promise<{ pass: boolean; relativeError: number }> {
  const config = vimConfig({
    imgSize: 32,
    patchSize: 8,
    embedDim: 16,
    depth: 2,
    dState: 8,
    numClasses: 10,
    scan: c.scan,
  });
  const read = vimRandomReader(config, c.seed + 1);
  const data = seededImages(2 * 3 * 32 * 32, c.seed + 2);
  const ref = vimRef(config, read, { data, shape: [2, 3, 32, 32] });
  const model = VisionMamba.fromReader(backend, config, read);
  try {
    const logits = await model.classify(data);
    const got = await logits.read();
    logits.dispose();
    const err = relativeError(got, ref.logits);
    return { pass: err <= 1e-4, relativeError: err };
  } finally {
    model.dispose();
  }
}

export async function benchVim(
  config: VimBenchConfig,
  onStep: (label: string) => void = () => {},
): Promise<VimBenchReport> {
  const model = vimConfig({
    imgSize: config.imgSize,
    patchSize: config.patchSize,
    embedDim: config.embedDim,
    depth: config.depth,
    dState: config.dState,
    scan: config.scan,
  });
  const backend: Backend = await createBackend(config.backend);
  try {
    const sanity = await sanityCheck(backend, config);
    onStep('sanity check');
    const vim = VisionMamba.fromRandom(backend, model, config.seed);
    const timing = (backend as { time?: (fn: () => unknown) => Promise<{ gpuMs?: number }> }).time;
    const results: VimBenchResult[] = [];
    const perImage = 3 * model.imgSize * model.imgSize;
    let single: Float32Array | undefined;
    const variants = config.layouts.flatMap((layout) =>
      config.algorithms.flatMap((algorithm) =>
        [...config.batches].sort((a, b) => a - b).map((batch) => ({ layout, algorithm, batch })),
      ),
    );
    try {
      for (const { layout, algorithm, batch } of variants) {
        vim.layout = layout;
        vim.scanAlgorithm = algorithm;
        const images = backend.tensor(seededImages(batch * perImage, config.seed), [
          batch,
          3,
          model.imgSize,
          model.imgSize,
        ]);
        try {
          const samples: number[] = [];
          let last: Float32Array | undefined;
          for (let i = 0; i < config.warmup + config.repeats; i++) {
            await backend.sync();
            const start = performance.now();
            const logits = await vim.classify(images);
            last = (await logits.read()) as Float32Array;
            const ms = performance.now() - start;
            logits.dispose();
            if (i >= config.warmup) samples.push(ms);
            onStep(`${layout} ${algorithm} batch ${batch} ${i + 1}/${config.warmup + config.repeats}`);
          }
          let gpuKernelMs: number | undefined;
          if (timing) {
            const timed = await timing.call(backend, async () => {
              const logits = await vim.classify(images);
              await logits.read();
              logits.dispose();
            });
            gpuKernelMs = timed.gpuMs;
          }
          // Image 0 is the same in every batch (same seed): its logits must not depend on the batch.
          const row = last!.subarray(0, model.numClasses);
          let reason: string | undefined;
          if (!last!.every(Number.isFinite)) reason = 'non-finite logits';
          if (single === undefined) single = Float32Array.from(row);
          else if (relativeError(row, single) > 1e-4)
            reason = `image 0's logits differ from the first run's (relative ${relativeError(row, single).toExponential(2)})`;
          const ms = median(samples);
          results.push({
            layout,
            algorithm,
            batch,
            imagesPerS: (1000 * batch) / ms,
            ms,
            samplesMs: samples,
            ...(gpuKernelMs !== undefined ? { gpuKernelMs } : {}),
            check: reason ? { pass: false, reason } : { pass: true },
          });
        } finally {
          images.dispose();
        }
      }
    } finally {
      vim.dispose();
    }
    const adapter = describeAdapter(backend);
    return {
      backend: backend.name,
      ...(adapter ? { adapter } : {}),
      model,
      tokens: (model.imgSize / model.patchSize) ** 2 + 1,
      sanity,
      results,
    };
  } finally {
    backend.dispose();
  }
}

/** Vim-tiny's shape; small repeat counts (each batch-64 call is a whole network). */
const DEFAULTS = {
  batches: [1, 64],
  imgSize: 224,
  patchSize: 16,
  embedDim: 192,
  depth: 24,
  dState: 16,
  repeats: 5,
  warmup: 2,
  seed: 1234,
};

/** `longseq bench vim [...]`. */
export async function benchVimCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      batch: { type: 'string' },
      'img-size': { type: 'string' },
      patch: { type: 'string' },
      embed: { type: 'string' },
      depth: { type: 'string' },
      'd-state': { type: 'string' },
      scan: { type: 'string' },
      layout: { type: 'string' },
      algorithm: { type: 'string' },
      repeats: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      torch: { type: 'string' },
      json: { type: 'boolean' },
    },
    'bench vim',
  );
  if (p.positionals.length > 0) throw new UsageError(`bench vim: unexpected argument '${p.positionals[0]}'`);
  const backends = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  if (backends.length !== 1) throw new UsageError('bench vim: --backend takes one backend');
  const scan = stringFlag(p, 'scan') ?? 'bi';
  if (scan !== 'bi' && scan !== 'cross4')
    throw new UsageError(`--scan: expected bi or cross4, got '${scan}'`);
  const list = <T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] => {
    const v = stringFlag(p, name);
    if (v === undefined) return [...fallback];
    const items = v.split(',').map((s) => s.trim());
    if (items.some((s) => !(allowed as readonly string[]).includes(s)))
      throw new UsageError(`--${name}: expected a comma-separated list of ${allowed.join(', ')}, got '${v}'`);
    return items as T[];
  };
  const config: VimBenchConfig = {
    backend: backends[0]!,
    batches: intListFlag(p, 'batch', DEFAULTS.batches),
    imgSize: intFlag(p, 'img-size', DEFAULTS.imgSize),
    patchSize: intFlag(p, 'patch', DEFAULTS.patchSize),
    embedDim: intFlag(p, 'embed', DEFAULTS.embedDim),
    depth: intFlag(p, 'depth', DEFAULTS.depth, 0),
    dState: intFlag(p, 'd-state', DEFAULTS.dState),
    scan,
    layouts: list('layout', ['channels', 'tokens'] as const, ['channels']),
    // Default: the model's own choice ('parallel').
    algorithms: list('algorithm', ['auto', 'sequential', 'parallel'] as const, ['parallel']),
    repeats: intFlag(p, 'repeats', DEFAULTS.repeats),
    warmup: intFlag(p, 'warmup', DEFAULTS.warmup, 0),
    seed: intFlag(p, 'seed', DEFAULTS.seed, 0),
  };
  if (config.patchSize > config.imgSize)
    throw new UsageError(`--patch: expected at most --img-size (${config.imgSize}), got ${config.patchSize}`);
  let torch: VimBenchReport['torch'];
  const torchFile = stringFlag(p, 'torch');
  if (torchFile !== undefined) {
    try {
      torch = JSON.parse(await readFile(path.resolve(io.cwd ?? process.cwd(), torchFile), 'utf8'));
    } catch (err) {
      throw new UsageError(`--torch: cannot read ${torchFile}: ${err instanceof Error ? err.message : err}`);
    }
  }
  const steps =
    1 +
    config.layouts.length *
      config.algorithms.length *
      config.batches.length *
      (config.warmup + config.repeats);
  const report = await withProgress(io, steps, (tick) => benchVim(config, tick));
  const full: VimBenchReport = torch ? { ...report, torch } : report;
  const failed = full.results.filter((r) => !r.check.pass).length + (full.sanity.pass ? 0 : 1);
  return finishBench(io, {
    name: 'vim',
    machine: machineInfo(full.adapter),
    json: boolFlag(p, 'json'),
    doc: { config, ...full },
    table: () => renderTable(full),
    failed,
  });
}

function renderTable(report: VimBenchReport): string {
  const c = report.model;
  const torchAt = (batch: number) => report.torch?.results.find((r) => r.batch === batch);
  const lines = [
    `vim on ${report.backend}: ${c.imgSize} x ${c.imgSize} images, patch ${c.patchSize}, ${report.tokens} tokens, embed ${c.embedDim}, depth ${c.depth}, d_state ${c.dState}, expand ${c.expand}, scan ${c.scan}, random weights; classify with the logits read back, median`,
    `sanity: a small Vim against the float64 reference on this device, logits relative error ${report.sanity.relativeError.toExponential(2)} (${report.sanity.pass ? 'pass' : 'FAIL'})`,
    '',
    table(
      [
        'layout',
        'scan',
        'batch',
        ' images/s',
        ' ms',
        ' GPU kernel ms',
        ' PyTorch images/s',
        ' PyTorch ms',
        ' x PyTorch',
        ' check',
      ],
      report.results.map((r) => {
        const t = torchAt(r.batch);
        return [
          r.layout,
          r.algorithm,
          String(r.batch),
          r.imagesPerS.toFixed(1),
          r.ms.toFixed(2),
          r.gpuKernelMs === undefined ? '-' : r.gpuKernelMs.toFixed(2),
          t ? t.images_per_s.toFixed(1) : '-',
          t ? t.ms.toFixed(2) : '-',
          t ? (r.imagesPerS / t.images_per_s).toFixed(2) : '-',
          r.check.pass ? 'ok' : `FAIL: ${r.check.reason}`,
        ];
      }),
    ),
  ];
  if (report.torch)
    lines.push(
      '',
      `PyTorch: ${report.torch.torch ?? '?'} on ${report.torch.device ?? '?'} (reference/torch_vim.py)`,
    );
  return lines.join('\n');
}
