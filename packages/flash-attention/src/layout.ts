/**
 * Where each sequence of a call lives in memory, shared by the reference, the op and the
 * kernels of both backends, so the padded form ([batch, heads, n, d], optionally with
 * per-sequence lengths) and the packed form ([totalTokens, heads, d] with cumulative
 * offsets, as `flash_attn_varlen_func`) run through one code path.
 *
 * Element (sequence s, head h, token t, channel e) of q (and of the output) sits at
 *   seq[s].qBase + h * qHeadStride + t * qTokenStride + e
 * and likewise for k and v with kvHead = floor(h / group). The logsumexp of query row t of
 * head h sits at seq[s].lseBase + h * lseHeadStride + t.
 *
 *   padded:  qBase = s * H * Nq * d, qHeadStride = Nq * d, qTokenStride = d
 *            lse [B, H, Nq]: lseBase = s * H * Nq, lseHeadStride = Nq
 *   packed:  qBase = cuSeqlensQ[s] * H * d, qHeadStride = d, qTokenStride = H * d
 *            lse [H, totalQ]: lseBase = cuSeqlensQ[s], lseHeadStride = totalQ
 */
export interface SequenceSpan {
  /** Element offset of token 0, head 0 of this sequence in q (and the output). */
  readonly qBase: number;
  readonly qLen: number;
  /** Element offset of token 0, kv head 0 in k and v. */
  readonly kBase: number;
  readonly kLen: number;
  /** Offset of this sequence's row 0 of head 0 in the logsumexp. */
  readonly lseBase: number;
}

export interface AttentionLayout {
  readonly form: 'padded' | 'packed';
  readonly sequences: readonly SequenceSpan[];
  readonly heads: number;
  readonly kvHeads: number;
  /** heads / kvHeads: query heads sharing one key/value head. */
  readonly group: number;
  /** Head dim. */
  readonly d: number;
  readonly qHeadStride: number;
  readonly qTokenStride: number;
  readonly kHeadStride: number;
  readonly kTokenStride: number;
  readonly lseHeadStride: number;
  /** The longest query and key sequence (grid sizes, loop bounds). */
  readonly maxQLen: number;
  readonly maxKLen: number;
  readonly qShape: readonly number[];
  readonly kShape: readonly number[];
  readonly lseShape: readonly number[];
}

/** Numbers per sequence in the table the kernels read: qBase, qLen, kBase, kLen, lseBase. */
export const SPAN_FIELDS = 5;

/** The per-sequence table the kernels read, flat. */
export function spanTable(layout: AttentionLayout): number[] {
  const out: number[] = [];
  for (const s of layout.sequences) out.push(s.qBase, s.qLen, s.kBase, s.kLen, s.lseBase);
  return out;
}

/** The layout of the padded form; `seqlensQ` / `seqlensK` shorten sequences (rows past them are not attention rows). */
export function paddedLayout(
  qShape: readonly number[],
  kShape: readonly number[],
  seqlensQ?: ArrayLike<number>,
  seqlensK?: ArrayLike<number>,
): AttentionLayout {
  const [batch, heads, nq, d] = qShape as [number, number, number, number];
  const [, kvHeads, nk] = kShape as [number, number, number, number];
  const sequences: SequenceSpan[] = [];
  for (let s = 0; s < batch; s++) {
    sequences.push({
      qBase: s * heads * nq * d,
      qLen: seqlensQ ? seqlensQ[s]! : nq,
      kBase: s * kvHeads * nk * d,
      kLen: seqlensK ? seqlensK[s]! : nk,
      lseBase: s * heads * nq,
    });
  }
  return {
    form: 'padded',
    sequences,
    heads,
    kvHeads,
    group: heads / kvHeads,
    d,
    qHeadStride: nq * d,
    qTokenStride: d,
    kHeadStride: nk * d,
    kTokenStride: d,
    lseHeadStride: nq,
    maxQLen: Math.max(0, ...sequences.map((x) => x.qLen)),
    maxKLen: Math.max(0, ...sequences.map((x) => x.kLen)),
    qShape: [...qShape],
    kShape: [...kShape],
    lseShape: [batch, heads, nq],
  };
}

/** The layout of the packed form: q [totalQ, H, d], k and v [totalK, Hkv, d], lse [H, totalQ]. */
export function packedLayout(
  qShape: readonly number[],
  kShape: readonly number[],
  cuSeqlensQ: ArrayLike<number>,
  cuSeqlensK: ArrayLike<number>,
): AttentionLayout {
  const [totalQ, heads, d] = qShape as [number, number, number];
  const [, kvHeads] = kShape as [number, number, number];
  const sequences: SequenceSpan[] = [];
  for (let s = 0; s + 1 < cuSeqlensQ.length; s++) {
    const q0 = cuSeqlensQ[s]!;
    const k0 = cuSeqlensK[s]!;
    sequences.push({
      qBase: q0 * heads * d,
      qLen: cuSeqlensQ[s + 1]! - q0,
      kBase: k0 * kvHeads * d,
      kLen: cuSeqlensK[s + 1]! - k0,
      lseBase: q0,
    });
  }
  return {
    form: 'packed',
    sequences,
    heads,
    kvHeads,
    group: heads / kvHeads,
    d,
    qHeadStride: d,
    qTokenStride: heads * d,
    kHeadStride: d,
    kTokenStride: kvHeads * d,
    lseHeadStride: totalQ,
    maxQLen: Math.max(0, ...sequences.map((x) => x.qLen)),
    maxKLen: Math.max(0, ...sequences.map((x) => x.kLen)),
    qShape: [...qShape],
    kShape: [...kShape],
    lseShape: [heads, totalQ],
  };
}

/** The visible key range [first, last] of query row i (bottom-right aligned); empty when first > last. */
export function visibleKeys(
  i: number,
  qLen: number,
  kLen: number,
  windowLeft: number,
  windowRight: number,
): [number, number] {
  const p = i + kLen - qLen;
  return [Math.max(0, p - windowLeft), Math.min(kLen - 1, p + windowRight)];
}
