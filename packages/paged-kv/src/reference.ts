/**
 * Float64 references of the paged kernels, written to be read. `precision: 'f32'` rounds
 * every intermediate to float32, the "straightforward float32 computation" of the test rule.
 *
 * Letters: N query rows (S sequences x C chunk queries), S sequences, H query heads,
 * KVH key/value heads (H a multiple of KVH; query head h reads kv head floor(h / (H / KVH))),
 * D head dim, B physical blocks, BS tokens per block, M block-table width (max blocks).
 *
 *   q            [N, H, D]
 *   keyCache     [B, BS, KVH, D]   (valueCache alike): token slot = block * BS + offset
 *   blockTables  [S, M]            logical block -> physical block, per sequence
 *   contextLens  [S]               tokens of each sequence, the chunk's included
 */
import { type HostTensor, type RefOptions, rounderFor } from '@longseq/backend';

export interface PagedAttentionRefInputs {
  readonly q: HostTensor;
  readonly keyCache: HostTensor;
  readonly valueCache: HostTensor;
  readonly blockTables: HostTensor;
  readonly contextLens: ArrayLike<number>;
}

export interface PagedAttentionRefOptions extends RefOptions {
  /** Multiplies q.k; default 1 / sqrt(D). */
  readonly scale?: number;
  /** If > 0, scores become softcap * tanh(score / softcap) (Gemma 2, Grok). Default 0 (off). */
  readonly softcap?: number;
  /** One slope per query head (ALiBi): score -= slope_h * (p - t) for the query at position p. */
  readonly alibiSlopes?: ArrayLike<number>;
  /**
   * Queries per sequence (default 1: decode). Query i of a chunk of C sits at position
   * contextLen - C + i and sees keys 0..that position (causal, bottom-right aligned).
   */
  readonly chunk?: number;
}

/**
 * Paged attention: for query row r of sequence s = floor(r / C) at position p (see `chunk`),
 * out[r, h] = sum_{t <= p} softmax_t(score(t)) v_t, score(t) = scale * q[r, h] . k_t, where
 * k_t is read at slot blockTables[s, floor(t / BS)] * BS + t % BS of kv head floor(h / G).
 * Soft-capping, then ALiBi, apply to the scaled score. A row with no keys (p < 0) is zero.
 */
export function pagedAttentionRef(
  inputs: PagedAttentionRefInputs,
  options: PagedAttentionRefOptions = {},
): { shape: number[]; data: Float64Array } {
  const r = rounderFor(options);
  const { q, keyCache, valueCache, blockTables, contextLens } = inputs;
  const [n, heads, d] = q.shape as [number, number, number];
  const [, blockSize, kvHeads] = keyCache.shape as [number, number, number, number];
  const maxBlocks = blockTables.shape[1]!;
  const group = heads / kvHeads;
  const chunk = options.chunk ?? 1;
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const softcap = options.softcap ?? 0;
  const out = new Float64Array(n * heads * d);
  for (let row = 0; row < n; row++) {
    const seq = Math.floor(row / chunk);
    const length = contextLens[seq]! - (chunk - 1 - (row % chunk));
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const qBase = (row * heads + h) * d;
      // the slot of every key the query sees, through the block table
      const slots: number[] = [];
      for (let t = 0; t < length; t++) {
        const block = blockTables.data[seq * maxBlocks + Math.floor(t / blockSize)]!;
        slots.push(block * blockSize + (t % blockSize));
      }
      const scores = slots.map((slot, j) => {
        const kBase = (slot * kvHeads + kvh) * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot = r(dot + r(q.data[qBase + i]! * keyCache.data[kBase + i]!));
        let s = r(dot * scale);
        if (softcap > 0) s = r(softcap * r(Math.tanh(r(s / softcap))));
        if (options.alibiSlopes) s = r(s - r(options.alibiSlopes[h]! * (length - 1 - j)));
        return s;
      });
      const max = Math.max(...scores);
      const weights = scores.map((s) => r(Math.exp(r(s - max))));
      let sum = 0;
      for (const w of weights) sum = r(sum + w);
      for (let i = 0; i < d; i++) {
        let acc = 0;
        slots.forEach((slot, j) => {
          acc = r(acc + r(weights[j]! * valueCache.data[(slot * kvHeads + kvh) * d + i]!));
        });
        out[qBase + i] = slots.length === 0 ? 0 : r(acc / sum);
      }
    }
  }
  return { shape: [n, heads, d], data: out };
}

/**
 * Contiguous attention with the same semantics as pagedAttentionRef, on keys and values
 * laid out per sequence: k[s] is [L_s, KVH, D]. The cross-check of the paging: gather a
 * sequence's blocks into a contiguous array, and the two must agree.
 */
export function contiguousAttentionRef(
  q: HostTensor,
  keys: readonly HostTensor[],
  values: readonly HostTensor[],
  options: PagedAttentionRefOptions = {},
): { shape: number[]; data: Float64Array } {
  const [n, heads, d] = q.shape as [number, number, number];
  const chunk = options.chunk ?? 1;
  const out = new Float64Array(n * heads * d);
  for (let row = 0; row < n; row++) {
    const seq = Math.floor(row / chunk);
    const k = keys[seq]!;
    const v = values[seq]!;
    const [length, kvHeads] = k.shape as [number, number, number];
    const one = pagedAttentionRef(
      {
        q: { shape: [1, heads, d], data: Array.from(q.data).slice(row * heads * d, (row + 1) * heads * d) },
        keyCache: { shape: [1, Math.max(length, 1), kvHeads, d], data: k.data },
        valueCache: { shape: [1, Math.max(length, 1), kvHeads, d], data: v.data },
        blockTables: { shape: [1, 1], data: [0] },
        contextLens: [length - (chunk - 1 - (row % chunk))],
      },
      { ...options, chunk: 1 },
    );
    out.set(one.data, row * heads * d);
  }
  return { shape: [n, heads, d], data: out };
}

/** reshape_and_cache: cache rows at `slots` take the new keys (negative slot: skipped). Returns a new array. */
export function writeKvRef(cache: HostTensor, rows: HostTensor, slots: ArrayLike<number>): Float64Array {
  const rowSize = rows.shape.slice(1).reduce((a, b) => a * b, 1);
  const out = Float64Array.from(cache.data);
  for (let t = 0; t < slots.length; t++) {
    const slot = slots[t]!;
    if (slot < 0) continue;
    for (let e = 0; e < rowSize; e++) out[slot * rowSize + e] = rows.data[t * rowSize + e]!;
  }
  return out;
}

/** Block copies [src, dst] from `src` into (a copy of) `dst`; all reads happen before any write. */
export function copyBlocksRef(
  src: HostTensor,
  dst: HostTensor,
  pairs: readonly (readonly [number, number])[],
): Float64Array {
  const blockElems = src.shape.slice(1).reduce((a, b) => a * b, 1);
  const out = Float64Array.from(dst.data);
  for (const [s, t] of pairs) {
    for (let e = 0; e < blockElems; e++) out[t * blockElems + e] = src.data[s * blockElems + e]!;
  }
  return out;
}
