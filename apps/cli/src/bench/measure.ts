/** Timing shared by the benchmarks that launch one kernel many times per measurement. */
import type { Backend } from '@longseq/backend';
import { type Timing, timeWork } from '../backends';

/** The median (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** How `measureCalls` times: warmup calls, measured repeats, the timer, calls per measurement (auto when absent). */
export interface MeasureConfig {
  readonly warmup: number;
  readonly repeats: number;
  readonly timer: 'auto' | 'wall';
  readonly dispatches?: number;
}

/** Wall-clock milliseconds of one measurement's worth of calls, for `dispatches: auto`. */
const AUTO_MEASUREMENT_MS = 200;

/** Times `launch`: warmup, then `repeats` measurements of `dispatches` calls each; per-call GPU (or wall) and wall ms. */
export async function measureCalls(
  backend: Backend,
  config: MeasureConfig,
  launch: () => Promise<void>,
): Promise<{ samples: number[]; wallSamples: number[]; timer: 'gpu' | 'wall'; dispatches: number }> {
  for (let w = 0; w < config.warmup; w++) await launch();
  await backend.sync();
  // Many calls per measurement amortize submit and sync, up to a cap; on a slow device
  // (SwiftShader) fewer, so one measurement stays near AUTO_MEASUREMENT_MS.
  let dispatches = config.dispatches;
  if (dispatches === undefined) {
    const cap = backend.kind === 'webgpu' ? 20 : 2;
    const one = await timeWork(backend, launch, 'wall');
    dispatches = Math.min(cap, Math.max(1, Math.ceil(AUTO_MEASUREMENT_MS / Math.max(one.wallMs, 1e-3))));
  }
  const samples: number[] = [];
  const wallSamples: number[] = [];
  let timer: 'gpu' | 'wall' = 'gpu';
  for (let r = 0; r < config.repeats; r++) {
    const t: Timing = await timeWork(
      backend,
      async () => {
        for (let i = 0; i < dispatches; i++) await launch();
      },
      config.timer,
    );
    if (t.gpuMs === undefined) timer = 'wall';
    samples.push((t.gpuMs ?? t.wallMs) / dispatches);
    wallSamples.push(t.wallMs / dispatches);
  }
  return { samples, wallSamples, timer, dispatches };
}
