/**
 * gpu.js programs that change the KV cache. A gpu.js kernel writes every element of its
 * output, so "in place" means: the output is the cache tensor itself, each thread returns
 * the new value of its element or the old one (read from the same tensor as an input), and
 * the backend swaps the fresh buffer into the tensor. Portable, and O(cache) per call.
 */
import type { GpuJsProgram, Tensor } from '@longseq/backend';

/** Inverse slot mapping: for each cache row, the index of the new token written there, or -1. */
const slotOwner = `function slotOwner(slots, tokens) {
  const slot = this.thread.x;
  let owner = -1;
  for (let t = 0; t < tokens; t++) {
    if (slots[t] === slot) {
      owner = t;
    }
  }
  return owner;
}`;

const writeRows = `function writeRows(cache, rows, owner, rowLen) {
  const x = this.thread.x;
  const slot = Math.floor(x / rowLen);
  const t = owner[slot];
  if (t < 0) {
    return cache[x];
  }
  return rows[t * rowLen + (x - slot * rowLen)];
}`;

const copyBlocks = `function copyBlocks(dst, src, sourceOf, blockLen) {
  const x = this.thread.x;
  const block = Math.floor(x / blockLen);
  const from = sourceOf[block];
  if (from < 0) {
    return dst[x];
  }
  return src[from * blockLen + (x - block * blockLen)];
}`;

export function slotOwnerProgram(slots: Tensor, owner: Tensor, tokens: number): GpuJsProgram {
  return {
    kind: 'gpujs',
    name: 'slotOwner',
    cacheKey: '',
    kernel: slotOwner,
    inputs: [slots],
    scalars: [tokens],
    output: owner,
  };
}

export function writeRowsProgram(cache: Tensor, rows: Tensor, owner: Tensor, rowSize: number): GpuJsProgram {
  return {
    kind: 'gpujs',
    name: 'writeRows',
    cacheKey: '',
    kernel: writeRows,
    inputs: [cache, rows, owner],
    scalars: [rowSize],
    output: cache,
  };
}

/** `sourceOf[b]` is the source block copied into destination block b, or -1 to keep it. */
export function copyBlocksGpuJsProgram(
  src: Tensor,
  dst: Tensor,
  sourceOf: Tensor,
  blockElems: number,
): GpuJsProgram {
  return {
    kind: 'gpujs',
    name: 'copyBlocks',
    cacheKey: '',
    kernel: copyBlocks,
    inputs: [dst, src, sourceOf],
    scalars: [blockElems],
    output: dst,
  };
}
