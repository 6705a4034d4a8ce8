/**
 * Float64 references for attention, forward and backward, written to be read. They take
 * host arrays in the same layouts as the op and have the same options.
 *
 * Shapes (padded form):              (packed form, `attentionVarlenRef`):
 *   q    [B, H, Nq, d]                 q    [Tq, H, d]     Tq = cuSeqlensQ[S]
 *   k, v [B, Hkv, Nk, d]               k, v [Tk, Hkv, d]   Tk = cuSeqlensK[S]
 *   out  [B, H, Nq, d]                 out  [Tq, H, d]
 *   lse  [B, H, Nq]                    lse  [H, Tq]
 * B batch, H query heads, Hkv key/value heads (H a multiple of Hkv; G = H / Hkv query
 * heads share kv head floor(h / G)), Nq / Nk query / key length, d head dim, S sequences.
 *
 * For query row i of a sequence with qLen queries and kLen keys, and key j:
 *   p      = i + kLen - qLen              (the row's key position: bottom-right alignment)
 *   s_ij   = scale * (q_i . k_j)
 *   s_ij   = softcap * tanh(s_ij / softcap)   when softcap > 0
 *   s_ij   = s_ij - slope_h * |p - j|          with ALiBi slopes
 *   visible(j) = p - left <= j <= p + right   (window [left, right]; causal sets right = 0)
 *   m_i    = max over visible j of s_ij
 *   l_i    = sum over visible j of exp(s_ij - m_i)
 *   out_i  = sum over visible j of exp(s_ij - m_i) / l_i * v_j
 *   lse_i  = m_i + log(l_i)
 * A row with no visible key (and every row past a sequence's qLen in the padded form)
 * has out = 0 and lse = -Infinity. NaN in a visible score makes the row NaN.
 *
 * Backward, from the saved lse (P is recomputed, never stored):
 *   P_ij  = exp(s_ij - lse_i)
 *   D_i   = dO_i . out_i
 *   dP_ij = dO_i . v_j
 *   dS_ij = P_ij (dP_ij - D_i) * (1 - (s'_ij / softcap)^2)   (the last factor only with softcap,
 *           s' the capped score before ALiBi)
 *   dq_i  = scale * sum_j dS_ij k_j,   dk_j = scale * sum_i dS_ij q_i,   dv_j = sum_i P_ij dO_i
 * where dk and dv also sum over the G query heads sharing a kv head.
 */
import type { HostTensor, RefOptions, RefResult, Rounder } from '@longseq/backend';
import { rounderFor } from '@longseq/backend';
import { type AttentionLayout, packedLayout, paddedLayout } from './layout';

export interface AttentionMaskOptions {
  /** Bottom-right aligned causal mask (query i sees keys j <= i + Nk - Nq). */
  readonly causal?: boolean;
  /** [left, right]: keys within `left` before and `right` after the row's position; Infinity = unbounded. */
  readonly window?: readonly [number, number];
  /** Scores become softcap * tanh(score / softcap) when > 0. */
  readonly softcap?: number;
  /** Multiplies q . k; default 1 / sqrt(d). */
  readonly scale?: number;
  /** One slope per query head: score -= slope_h * |p - j|. */
  readonly alibiSlopes?: ArrayLike<number>;
}

export interface AttentionRefOptions extends AttentionMaskOptions, RefOptions {
  /** Padded form: valid query rows per sequence (default Nq). */
  readonly seqlensQ?: ArrayLike<number>;
  /** Padded form: valid keys per sequence (default Nk). */
  readonly seqlensK?: ArrayLike<number>;
}

export interface AttentionVarlenRefOptions extends AttentionMaskOptions, RefOptions {
  readonly cuSeqlensQ: ArrayLike<number>;
  readonly cuSeqlensK: ArrayLike<number>;
}

export interface AttentionRefResult {
  readonly output: RefResult;
  readonly lse: RefResult;
}

export interface AttentionGradRefResult {
  readonly dq: RefResult;
  readonly dk: RefResult;
  readonly dv: RefResult;
}

/** The resolved mask parameters every path uses. */
export interface MaskParams {
  readonly scale: number;
  readonly softcap: number;
  readonly windowLeft: number;
  readonly windowRight: number;
  readonly alibiSlopes?: ArrayLike<number>;
}

export function maskParams(options: AttentionMaskOptions, d: number): MaskParams {
  const [left, right] = options.window ?? [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  return {
    scale: options.scale ?? 1 / Math.sqrt(d),
    softcap: options.softcap ?? 0,
    windowLeft: left,
    windowRight: options.causal ? Math.min(right, 0) : right,
    alibiSlopes: options.alibiSlopes,
  };
}

/** Attention in the padded form (see the module comment). */
export function attentionRef(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  options: AttentionRefOptions = {},
): AttentionRefResult {
  const layout = paddedLayout(q.shape, k.shape, options.seqlensQ, options.seqlensK);
  return forward(layout, q.data, k.data, v.data, maskParams(options, layout.d), rounderFor(options));
}

/** Attention in the packed form: sequence s is tokens cuSeqlensQ[s]..cuSeqlensQ[s+1] of q. */
export function attentionVarlenRef(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  options: AttentionVarlenRefOptions,
): AttentionRefResult {
  const layout = packedLayout(q.shape, k.shape, options.cuSeqlensQ, options.cuSeqlensK);
  return forward(layout, q.data, k.data, v.data, maskParams(options, layout.d), rounderFor(options));
}

/** Gradients of sum(out * dOut) with respect to q, k and v, padded form. */
export function attentionBackwardRef(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  dOut: HostTensor,
  options: AttentionRefOptions = {},
): AttentionGradRefResult {
  const layout = paddedLayout(q.shape, k.shape, options.seqlensQ, options.seqlensK);
  return backward(
    layout,
    q.data,
    k.data,
    v.data,
    dOut.data,
    maskParams(options, layout.d),
    rounderFor(options),
  );
}

/** Gradients in the packed form. */
export function attentionVarlenBackwardRef(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  dOut: HostTensor,
  options: AttentionVarlenRefOptions,
): AttentionGradRefResult {
  const layout = packedLayout(q.shape, k.shape, options.cuSeqlensQ, options.cuSeqlensK);
  return backward(
    layout,
    q.data,
    k.data,
    v.data,
    dOut.data,
    maskParams(options, layout.d),
    rounderFor(options),
  );
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, x) => a * x, 1);
}

/** Visits every (sequence, head, query row) with the element offsets of its q row, kv head and lse slot. */
function forEachRow(
  layout: AttentionLayout,
  visit: (s: number, h: number, i: number, qRow: number, kHead: number, lseAt: number) => void,
): void {
  for (let s = 0; s < layout.sequences.length; s++) {
    const seq = layout.sequences[s]!;
    for (let h = 0; h < layout.heads; h++) {
      const kHead = seq.kBase + Math.floor(h / layout.group) * layout.kHeadStride;
      for (let i = 0; i < seq.qLen; i++) {
        const qRow = seq.qBase + h * layout.qHeadStride + i * layout.qTokenStride;
        visit(s, h, i, qRow, kHead, seq.lseBase + h * layout.lseHeadStride + i);
      }
    }
  }
}

/** The scores of one query row against every key (NaN-free -Infinity for keys it cannot see), and s' before ALiBi. */
function rowScores(
  layout: AttentionLayout,
  seqIndex: number,
  h: number,
  i: number,
  qRow: number,
  kHead: number,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  p: MaskParams,
  r: Rounder,
  scores: Float64Array,
  capped: Float64Array,
): boolean {
  const seq = layout.sequences[seqIndex]!;
  const pos = i + seq.kLen - seq.qLen;
  let anyVisible = false;
  for (let j = 0; j < seq.kLen; j++) {
    if (j < pos - p.windowLeft || j > pos + p.windowRight) {
      scores[j] = Number.NEGATIVE_INFINITY;
      continue;
    }
    anyVisible = true;
    const kRow = kHead + j * layout.kTokenStride;
    let dot = 0;
    for (let e = 0; e < layout.d; e++) dot = r(dot + r(q[qRow + e]! * k[kRow + e]!));
    let score = r(dot * r(p.scale));
    if (p.softcap > 0) score = r(p.softcap * r(Math.tanh(r(score / p.softcap))));
    capped[j] = score;
    if (p.alibiSlopes) score = r(score - r(p.alibiSlopes[h]! * Math.abs(pos - j)));
    scores[j] = score;
  }
  return anyVisible;
}

function forward(
  layout: AttentionLayout,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  p: MaskParams,
  r: Rounder,
): AttentionRefResult {
  const out = new Float64Array(sizeOf(layout.qShape));
  const lse = new Float64Array(sizeOf(layout.lseShape)).fill(Number.NEGATIVE_INFINITY);
  const scores = new Float64Array(layout.maxKLen);
  const capped = new Float64Array(layout.maxKLen);
  const d = layout.d;
  forEachRow(layout, (s, h, i, qRow, kHead, lseAt) => {
    const kLen = layout.sequences[s]!.kLen;
    if (!rowScores(layout, s, h, i, qRow, kHead, q, k, p, r, scores, capped)) return;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < kLen; j++) m = maxNaN(m, scores[j]!);
    if (m === Number.NEGATIVE_INFINITY) return;
    let l = 0;
    const acc = new Float64Array(d);
    for (let j = 0; j < kLen; j++) {
      if (scores[j] === Number.NEGATIVE_INFINITY) continue; // masked keys take no part, even a NaN in v
      const pj = r(Math.exp(r(scores[j]! - m)));
      l = r(l + pj);
      const vRow = kHead + j * layout.kTokenStride;
      for (let e = 0; e < d; e++) acc[e] = r(acc[e]! + r(pj * v[vRow + e]!));
    }
    for (let e = 0; e < d; e++) out[qRow + e] = r(acc[e]! / l);
    lse[lseAt] = r(m + r(Math.log(l)));
  });
  return {
    output: { shape: [...layout.qShape], data: out },
    lse: { shape: [...layout.lseShape], data: lse },
  };
}

function backward(
  layout: AttentionLayout,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dOut: ArrayLike<number>,
  p: MaskParams,
  r: Rounder,
): AttentionGradRefResult {
  const { output, lse } = forward(layout, q, k, v, p, r);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const scores = new Float64Array(layout.maxKLen);
  const capped = new Float64Array(layout.maxKLen);
  const d = layout.d;
  forEachRow(layout, (s, h, i, qRow, kHead, lseAt) => {
    const kLen = layout.sequences[s]!.kLen;
    if (!rowScores(layout, s, h, i, qRow, kHead, q, k, p, r, scores, capped)) return;
    const rowLse = lse.data[lseAt]!;
    if (rowLse === Number.NEGATIVE_INFINITY) return;
    let dRow = 0;
    for (let e = 0; e < d; e++) dRow = r(dRow + r(dOut[qRow + e]! * output.data[qRow + e]!));
    for (let j = 0; j < kLen; j++) {
      if (scores[j] === Number.NEGATIVE_INFINITY) continue;
      const kRow = kHead + j * layout.kTokenStride;
      const pij = r(Math.exp(r(scores[j]! - rowLse)));
      let dp = 0;
      for (let e = 0; e < d; e++) dp = r(dp + r(dOut[qRow + e]! * v[kRow + e]!));
      let ds = r(pij * r(dp - dRow));
      if (p.softcap > 0) {
        const t = r(capped[j]! / p.softcap);
        ds = r(ds * r(1 - r(t * t)));
      }
      const dsScaled = r(ds * r(p.scale));
      for (let e = 0; e < d; e++) {
        dq[qRow + e] = r(dq[qRow + e]! + r(dsScaled * k[kRow + e]!));
        dk[kRow + e] = r(dk[kRow + e]! + r(dsScaled * q[qRow + e]!));
        dv[kRow + e] = r(dv[kRow + e]! + r(pij * dOut[qRow + e]!));
      }
    }
  });
  return {
    dq: { shape: [...layout.qShape], data: dq },
    dk: { shape: [...layout.kShape], data: dk },
    dv: { shape: [...layout.kShape], data: dv },
  };
}

function maxNaN(a: number, b: number): number {
  return Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b);
}
