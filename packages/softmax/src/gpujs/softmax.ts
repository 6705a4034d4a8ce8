/**
 * gpu.js programs for softmax over the last axis. gpu.js has no workgroup memory, so the
 * reductions are one thread per row, and normalization is one thread per element:
 *
 *   online: stats (one sweep keeping max and rescaled sum), normalize
 *   safe:   max, stats (denominator against the max), normalize
 *   naive:  stats (sum of exp, max taken as 0), normalize
 *
 * Special values follow IEEE semantics explicitly: a NaN or +inf logit (it fails z < inf)
 * sets its row's d to +inf, and such a row is written as NaN; a fully masked row (d = 0)
 * gives zeros and logsumexp -inf.
 *
 * `stats` is [rows, 2] flat: (m, d) per row; its thread x computes row floor(x / 2) and
 * returns m or d by parity (each pair is computed twice; a gpu.js kernel has one output
 * value per thread). Memory beyond input and output: O(rows).
 * Indices are float32 in gpu.js' GL modes: exact while tensors stay under 2^24 elements.
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import type { SoftmaxAlgorithm } from '../reference';
import { type SoftmaxAttrs, type SoftmaxOutputs, softmaxKernel } from '../contract';

/** Large enough for any row a gpu.js binding can hold; GL needs a static loop bound. */
const LOOP_MAX = 1 << 24;

// The kernels are gpu.js sources: JavaScript in its kernel subset, kept as strings because
// gpu.js compiles them from source and an application's minifier would rewrite functions
// into forms it cannot translate. `LOGIT` computes z = x[i] / T (+ mask) for element i;
// `maskCount` is the mask's element count (not `maskSize`: gpu.js' GL backends declare a
// uniform of that name for the array argument `mask`).
const LOGIT = `
    let z = x[i] * invT;
    if (this.constants.hasMask > 0) {
      z = z + mask[i - Math.floor(i / maskCount) * maskCount];
    }`;

/** Safe pass 1: the max of each row. NaN and +inf fail z < inf and stay out of it. */
const rowMax = `function rowMax(x, mask, n, maskCount, invT, inf) {
  const row = this.thread.x;
  let m = -3.4028234e38;
  for (let j = 0; j < n; j++) {
    const i = row * n + j;${LOGIT}
    if (z < inf) {
      m = Math.max(m, z);
    }
  }
  return m;
}`;

/** Online: one sweep keeps the max so far and rescales the sum when it grows; a NaN or +inf logit sets d = inf. */
const onlineStats = `function onlineStats(x, mask, n, maskCount, invT, inf) {
  const row = Math.floor(this.thread.x / 2);
  let m = -3.4028234e38;
  let d = 0;
  for (let j = 0; j < n; j++) {
    const i = row * n + j;${LOGIT}
    if (z < inf) {
      const mNew = Math.max(m, z);
      d = d * Math.exp(m - mNew) + Math.exp(z - mNew);
      m = mNew;
    } else {
      d = inf;
    }
  }
  if (this.thread.x - row * 2 < 0.5) {
    return m;
  }
  return d;
}`;

/** Safe pass 2: the denominator against the row max of pass 1. */
const safeStats = `function safeStats(x, mask, maxes, n, maskCount, invT, inf) {
  const row = Math.floor(this.thread.x / 2);
  const m = maxes[row];
  if (this.thread.x - row * 2 < 0.5) {
    return m;
  }
  let d = 0;
  for (let j = 0; j < n; j++) {
    const i = row * n + j;${LOGIT}
    if (z < inf) {
      d = d + Math.exp(z - m);
    } else {
      d = inf;
    }
  }
  return d;
}`;

/** Naive: the sum of exp(z), the max taken as 0 (overflows past z ~ 88 in float32). */
const naiveStats = `function naiveStats(x, mask, n, maskCount, invT, inf) {
  const row = Math.floor(this.thread.x / 2);
  if (this.thread.x - row * 2 < 0.5) {
    return 0;
  }
  let d = 0;
  for (let j = 0; j < n; j++) {
    const i = row * n + j;${LOGIT}
    if (z < inf) {
      d = d + Math.exp(z);
    } else {
      d = inf;
    }
  }
  return d;
}`;

/** One element per thread: exp(z - m) / d; 0 for a fully masked row (d = 0), NaN (inf - inf) for a poisoned one. */
const normalize = `function normalize(x, mask, stats, n, maskCount, invT, inf) {
  const i = this.thread.x;
  const row = Math.floor(i / n);
  const m = stats[row * 2];
  const d = stats[row * 2 + 1];
  if (d === 0) {
    return 0;
  }
  if (d < inf) {${LOGIT}
    return Math.exp(z - m) / d;
  }
  return inf - inf;
}`;

/** lse = m + log(d); a fully masked row (d = 0) gets -inf, a poisoned one (d = inf) NaN. */
const logSumExp = `function logSumExp(stats, inf) {
  const row = this.thread.x;
  const d = stats[row * 2 + 1];
  if (d === 0) {
    return -inf;
  }
  if (d < inf) {
    return stats[row * 2] + Math.log(d);
  }
  return inf - inf;
}`;

function program(
  name: string,
  kernel: string,
  inputs: Tensor[],
  output: Tensor,
  attrs: SoftmaxAttrs,
  withSizes = true,
): GpuJsProgram {
  const hasMask = attrs.maskSize > 0 ? 1 : 0;
  return {
    kind: 'gpujs',
    name,
    cacheKey: `mask${hasMask}`,
    kernel,
    inputs,
    // Infinity travels as a run-time scalar: gpu.js turns an Infinity literal into FLT_MAX,
    // and shader compilers may assume no infinities in constants. NaN is made as inf - inf.
    scalars: withSizes
      ? [attrs.n, Math.max(attrs.maskSize, 1), attrs.invTemperature, Number.POSITIVE_INFINITY]
      : [Number.POSITIVE_INFINITY],
    output,
    constants: { hasMask },
    loopMaxIterations: LOOP_MAX,
  };
}

/** The one-pass stats kernels; safe runs rowMax and then safeStats instead. */
const STATS: Record<Exclude<SoftmaxAlgorithm, 'safe'>, string> = {
  online: onlineStats,
  naive: naiveStats,
};

async function writeSoftmax(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: SoftmaxAttrs,
  { out, lse }: SoftmaxOutputs,
): Promise<void> {
  if (attrs.rows === 0) return;
  const x = inputs[0]!;
  // Without a mask, x stands in for it so every kernel keeps one signature.
  const mask = inputs[1] ?? x;
  const stats = backend.empty([attrs.rows * 2]);
  try {
    if (attrs.n === 0) {
      // Zero-length rows: d = 0, so outputs are empty and logsumexp is log(0) = -inf.
      const zeros = backend.tensor(new Float32Array(attrs.rows * 2), [attrs.rows * 2]);
      if (lse) await backend.run(program('softmax_lse', logSumExp, [zeros], lse, attrs, false));
      zeros.dispose();
      return;
    }
    if (attrs.algorithm === 'safe') {
      const maxes = backend.empty([attrs.rows]);
      try {
        await backend.run(program('softmax_row_max', rowMax, [x, mask], maxes, attrs));
        await backend.run(program('softmax_safe_stats', safeStats, [x, mask, maxes], stats, attrs));
      } finally {
        maxes.dispose();
      }
    } else {
      await backend.run(
        program(`softmax_${attrs.algorithm}_stats`, STATS[attrs.algorithm], [x, mask], stats, attrs),
      );
    }
    if (out) await backend.run(program('softmax_normalize', normalize, [x, mask, stats], out, attrs));
    if (lse) await backend.run(program('softmax_lse', logSumExp, [stats], lse, attrs, false));
  } finally {
    stats.dispose();
  }
}

export const softmaxGpuJsKernel = softmaxKernel('gpujs', writeSoftmax);
