/**
 * Float64 references for softmax over the last axis, written to be read.
 *
 * Shapes: x is [..., N] (R rows of length N, R = product of the leading dims); mask, if
 * given, has a suffix of x's shape ([N], [Q, N], ... up to x's full shape) and is added to
 * x / temperature before the softmax: entries of -Infinity mask a position out.
 *
 *   z      = x / temperature + mask
 *   m      = max_j z_j                      (the running max of the online form)
 *   d      = sum_j exp(z_j - m)              (the denominator)
 *   out_j  = exp(z_j - m) / d
 *   lse    = m + log(d)                      (logsumexp of z)
 *
 * A fully masked row (every z_j = -Infinity) gives out = 0 and lse = -Infinity. NaN anywhere
 * in a row, or +Infinity, makes the row's outputs NaN, as IEEE arithmetic does.
 */
import type { HostTensor, RefOptions, RefResult } from '@longseq/backend';
import { rounderFor } from '@longseq/backend';

export type SoftmaxAlgorithm = 'online' | 'safe' | 'naive';

export interface SoftmaxRefOptions extends RefOptions {
  /** Which recurrence to follow (they agree in exact arithmetic except 'naive' overflowing). Default 'safe'. */
  readonly algorithm?: SoftmaxAlgorithm;
  readonly mask?: HostTensor;
  readonly temperature?: number;
}

export interface SoftmaxRefResult {
  readonly output: RefResult;
  /** logsumexp per row, shape x.shape[:-1]. */
  readonly lse: RefResult;
}

export function softmaxRef(x: HostTensor, options: SoftmaxRefOptions = {}): SoftmaxRefResult {
  const r = rounderFor(options);
  const algorithm = options.algorithm ?? 'safe';
  const n = x.shape[x.shape.length - 1] ?? 1;
  const rows = n === 0 ? 0 : x.data.length / n;
  const invT = 1 / (options.temperature ?? 1);
  const mask = options.mask;
  const out = new Float64Array(x.data.length);
  const lse = new Float64Array(n === 0 ? sizeOfLeading(x.shape) : rows);
  if (n === 0) lse.fill(Number.NEGATIVE_INFINITY);
  const z = new Float64Array(n);

  for (let row = 0; row < rows; row++) {
    for (let j = 0; j < n; j++) {
      const i = row * n + j;
      const scaled = invT === 1 ? x.data[i]! : r(x.data[i]! * invT);
      z[j] = mask ? r(scaled + mask.data[i % mask.data.length]!) : scaled;
    }
    let m = Number.NEGATIVE_INFINITY;
    let d = 0;
    if (algorithm === 'naive') {
      // exp then sum, no max subtraction: overflows to Infinity once z exceeds ~88 in float32.
      m = 0;
      for (let j = 0; j < n; j++) d = r(d + r(Math.exp(z[j]!)));
    } else if (algorithm === 'safe') {
      for (let j = 0; j < n; j++) m = maxNaN(m, z[j]!);
      for (let j = 0; j < n; j++) d = r(d + r(Math.exp(z[j]! - m)));
    } else {
      // Online: one sweep keeps the max so far and rescales the sum whenever the max grows.
      for (let j = 0; j < n; j++) {
        const mNew = maxNaN(m, z[j]!);
        const scale = m === mNew ? 1 : r(Math.exp(m - mNew));
        d = r(r(d * scale) + r(Math.exp(z[j]! - mNew)));
        m = mNew;
      }
    }
    const allMasked = m === Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      out[row * n + j] = allMasked ? 0 : r(r(Math.exp(z[j]! - m)) / d);
    }
    lse[row] = allMasked ? Number.NEGATIVE_INFINITY : r(m + r(Math.log(d)));
  }
  return {
    output: { shape: [...x.shape], data: out },
    lse: { shape: x.shape.slice(0, -1), data: lse },
  };
}

function maxNaN(a: number, b: number): number {
  return Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b);
}

function sizeOfLeading(shape: readonly number[]): number {
  let s = 1;
  for (let i = 0; i < shape.length - 1; i++) s *= shape[i]!;
  return s;
}
