/**
 * Kernel contracts of the paged KV cache: names and parsed attributes, shared by the ops
 * (./ops.ts) and both backends' implementations (./webgpu, ./gpujs). The ops have validated
 * every input, so kernels hold no validation.
 */

/** inputs: [q, keyCache, valueCache, blockTables, contextLens, alibiSlopes [heads] (zeros: none)]; returns [out]. */
export const PagedAttention = 'PagedAttention';

export interface PagedAttentionAttrs {
  /** Query rows N = seqs x chunk. */
  readonly rows: number;
  readonly seqs: number;
  readonly chunk: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  /** Block-table width. */
  readonly maxBlocks: number;
  /** Longest context any sequence has (bounds the partitions / the gpu.js score buffer). */
  readonly maxContextLen: number;
  readonly scale: number;
  /** 0 = off. */
  readonly softcap: number;
  /** Keys per partition (WebGPU split-K); partitions = ceil(maxContextLen / partitionSize). */
  readonly partitionSize: number;
  /** WebGPU: lanes of a subgroup sharing one key's dot products (1 = one key per thread). */
  readonly lanesPerKey: number;
  /** WebGPU: threads per partition workgroup; undefined = the default (256 capped by the device). */
  readonly workgroupSize?: number;
}

/** inputs: [k, v, slots]; outputs written in place: keyCache, valueCache (passed as inputs 3, 4). Returns []. */
export const WriteKv = 'WriteKv';

export interface WriteKvAttrs {
  /** New tokens. */
  readonly tokens: number;
  /** Elements per token row: kvHeads x headDim. */
  readonly rowSize: number;
  /** Rows of the cache: numBlocks x blockSize. */
  readonly slots: number;
}

/** inputs: [src, dst]; copies blocks src[pairs[i][0]] -> dst[pairs[i][1]] in place in dst. Returns []. */
export const CopyBlocks = 'CopyBlocks';

export interface CopyBlocksAttrs {
  readonly pairs: readonly (readonly [number, number])[];
  /** Elements per block. */
  readonly blockElems: number;
  readonly dstBlocks: number;
  /** src and dst are the same tensor (copy-on-write within the cache). */
  readonly inPlace: boolean;
}
