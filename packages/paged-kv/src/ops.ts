/**
 * The paged KV ops on tensors: pagedAttention (decode, and prefill of a chunk against the
 * cached prefix), writeKv (scatter new rows into their slots) and copyBlocks. Each validates
 * every input and throws a typed error before any GPU work, then runs the kernel registered
 * for the backend's kind. Semantics: ./reference.ts.
 */
import {
  ArgumentError,
  type Backend,
  DeviceLimitError,
  type KernelConfig,
  ShapeError,
  type Tensor,
  checkBindingSize,
  checkDType,
  checkFiniteNumber,
  checkOneOf,
  checkRank,
  checkSameBackend,
  checkTensor,
  disposeOnError,
  formatShape,
  registerKernelsOnce,
  runKernel,
} from '@longseq/backend';
import {
  CopyBlocks,
  type CopyBlocksAttrs,
  PagedAttention,
  type PagedAttentionAttrs,
  WriteKv,
  type WriteKvAttrs,
} from './contract';
import { copyBlocksGpuJsProgram, slotOwnerProgram, writeRowsProgram } from './gpujs/cache';
import { pagedAttentionPrograms } from './gpujs/paged-attention';
import { copyBlocksProgram, writeKvProgram } from './webgpu/cache';
import {
  attentionWorkgroupSize,
  kvHeadsPerWorkgroup,
  lanesPerKey,
  partitionProgram,
  partitionSharedBytes,
  reduceProgram,
} from './webgpu/paged-attention';

/** gpu.js indexes in float32: tensors must stay below 2^24 elements. */
const GPUJS_MAX_ELEMENTS = 2 ** 24;

export interface PagedAttentionOptions {
  /** Multiplies q . k; default 1 / sqrt(headDim). */
  readonly scale?: number;
  /** If > 0, scores become softcap * tanh(score / softcap). Default 0 (off). */
  readonly softcap?: number;
  /**
   * ALiBi: one slope per query head; after soft-capping, score -= slope_h * (p - t) for the
   * query at position p and key t (flash-attention's convention). Default none.
   */
  readonly alibiSlopes?: ArrayLike<number>;
  /**
   * Queries per sequence: 1 (default) is decode; C > 1 is prefill of a chunk of C new tokens
   * (q rows s*C .. s*C+C-1 belong to sequence s), causal within the chunk and aligned to the
   * end of the sequence: query i sees keys 0 .. contextLen - C + i.
   */
  readonly chunk?: number;
  /**
   * The longest context length in the batch (vLLM's max_seq_len): bounds the partitions
   * (WebGPU) and the score buffer (gpu.js). Default: blockTables width x blockSize.
   * Lengths above it are cut to it.
   */
  readonly maxContextLen?: number;
  /**
   * WebGPU: keys per split-K partition (a power of two, 16..4096). Default: subgroup kernel,
   * the largest of 1024, 512, ..., 64 that gives at least 512 workgroups; thread kernel, 512
   * or less where the group's scores would not fit workgroup memory. gpu.js ignores it.
   */
  readonly partitionSize?: number;
  /**
   * WebGPU score loop. 'subgroup': a few lanes of a subgroup share each key (coalesced
   * loads of whole cache lines, partial dot products summed by shuffles); 'thread': each
   * thread reads whole key rows by itself. 'auto' (default): subgroup where the device has
   * subgroups. gpu.js ignores it.
   */
  readonly variant?: PagedAttentionVariant;
  /**
   * WebGPU: threads per partition workgroup, a power of two up to the device's
   * maxWorkgroupInvocations. Default: 128 for the subgroup kernel (halved while its merge
   * would not fit workgroup memory), 256 for the thread kernel (capped by the device). The
   * subgroup variant needs a multiple of the subgroup size ('auto' then falls back to
   * 'thread'). gpu.js ignores it.
   */
  readonly workgroupSize?: number;
}

export type PagedAttentionVariant = 'auto' | 'subgroup' | 'thread';
const VARIANTS: readonly PagedAttentionVariant[] = ['auto', 'subgroup', 'thread'];

let registered = false;
/** Registers the paged kernels for both backend kinds (done on first use). */
export function registerPagedKvKernels(): void {
  if (registered) return;
  registerKernelsOnce(KERNELS as never[]);
  registered = true;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** The largest partition (<= 512 keys) whose scores fit the device's workgroup memory. */
export function defaultPartitionSize(
  backend: Backend,
  dims: { heads: number; kvHeads: number; headDim: number },
): number {
  const wg = attentionWorkgroupSize(backend);
  for (let p = 512; p >= 16; p /= 2) {
    if (partitionSharedBytes({ ...dims, partitionSize: p }, wg) <= backend.limits.maxWorkgroupStorageSize)
      return p;
  }
  return 16;
}

/** Threads per workgroup of the subgroup kernel by default. */
const SUBGROUP_WORKGROUP = 128;

/**
 * Keys per partition of the subgroup kernel: the largest of 1024, 512, ..., 64 that still
 * gives 512 workgroups (enough to fill a large GPU several times over), so long contexts pay
 * for few partial outputs and short batches still spread over the device.
 */
function subgroupPartitionSize(rowGroups: number, maxContextLen: number): number {
  let p = 1024;
  while (p > 64 && rowGroups * Math.ceil(maxContextLen / p) < 512) p /= 2;
  return p;
}

/**
 * Attention of each query row against its sequence's keys and values, read through the
 * block table. Shapes: q [N, H, D] with N = seqs x chunk; keyCache and valueCache
 * [numBlocks, blockSize, KVH, D]; blockTables [seqs, maxBlocks] i32; contextLens [seqs] i32.
 * H must be a multiple of KVH (grouped-query attention). Returns [N, H, D].
 */
export async function pagedAttention(
  q: Tensor,
  keyCache: Tensor,
  valueCache: Tensor,
  blockTables: Tensor,
  contextLens: Tensor,
  options: PagedAttentionOptions = {},
): Promise<Tensor> {
  checkTensor(q, 'q');
  checkTensor(keyCache, 'keyCache');
  checkTensor(valueCache, 'valueCache');
  checkTensor(blockTables, 'blockTables');
  checkTensor(contextLens, 'contextLens');
  const backend = q.backend;
  checkSameBackend(backend, { keyCache, valueCache, blockTables, contextLens });
  checkDType(q, 'q', ['f32']);
  checkDType(keyCache, 'keyCache', ['f32']);
  checkDType(valueCache, 'valueCache', ['f32']);
  checkDType(blockTables, 'blockTables', ['i32']);
  checkDType(contextLens, 'contextLens', ['i32']);
  checkRank(q, 'q', 3, 3, '[N, heads, headDim]');
  checkRank(keyCache, 'keyCache', 4, 4, '[numBlocks, blockSize, kvHeads, headDim]');
  checkRank(blockTables, 'blockTables', 2, 2, '[seqs, maxBlocks]');
  checkRank(contextLens, 'contextLens', 1, 1, '[seqs]');
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object', options);
  const [rows, heads, headDim] = q.shape as [number, number, number];
  const [numBlocks, blockSize, kvHeads, cacheDim] = keyCache.shape as [number, number, number, number];
  if (formatShape(valueCache.shape) !== formatShape(keyCache.shape))
    throw new ShapeError(
      'valueCache',
      `the shape of keyCache ${formatShape(keyCache.shape)}`,
      valueCache.shape,
    );
  if (cacheDim !== headDim)
    throw new ShapeError(
      'keyCache',
      `[numBlocks, blockSize, kvHeads, ${headDim}] (q's head dim)`,
      keyCache.shape,
    );
  if (kvHeads < 1 || heads % kvHeads !== 0)
    throw new ShapeError('q', `a head count that is a multiple of keyCache's ${kvHeads} kv heads`, q.shape);
  const [seqs, maxBlocks] = blockTables.shape as [number, number];
  if (contextLens.shape[0] !== seqs)
    throw new ShapeError('contextLens', `[${seqs}] (one length per block-table row)`, contextLens.shape);
  const chunk = options.chunk ?? 1;
  if (!Number.isInteger(chunk) || chunk < 1)
    throw new ArgumentError('options.chunk', 'an integer >= 1', chunk);
  if (rows !== seqs * chunk)
    throw new ShapeError('q', `[${seqs * chunk}, ${heads}, ${headDim}] (seqs x chunk rows)`, q.shape);
  const capacity = maxBlocks * blockSize;
  const maxContextLen = options.maxContextLen ?? capacity;
  if (!Number.isInteger(maxContextLen) || maxContextLen < 0 || maxContextLen > capacity)
    throw new ArgumentError(
      'options.maxContextLen',
      `an integer in [0, ${capacity}] (blockTables width x blockSize)`,
      maxContextLen,
    );
  const scale =
    options.scale === undefined ? 1 / Math.sqrt(headDim) : checkFiniteNumber(options.scale, 'options.scale');
  const softcap = options.softcap === undefined ? 0 : checkFiniteNumber(options.softcap, 'options.softcap');
  if (softcap < 0) throw new ArgumentError('options.softcap', 'a number >= 0', softcap);
  const slopes = options.alibiSlopes;
  if (slopes !== undefined) {
    if (
      slopes === null ||
      typeof slopes !== 'object' ||
      typeof slopes.length !== 'number' ||
      slopes.length !== heads
    )
      throw new ArgumentError('options.alibiSlopes', `${heads} numbers (one per query head)`, slopes);
    for (let i = 0; i < heads; i++) checkFiniteNumber(slopes[i], `options.alibiSlopes[${i}]`);
  }
  const dims = { heads, kvHeads, headDim };
  const columns = headDim % 4 === 0 ? headDim / 4 : headDim;
  const variant = checkOneOf(options.variant ?? 'auto', 'options.variant', VARIANTS);
  const requestedWg = options.workgroupSize;
  if (requestedWg !== undefined && !isPowerOfTwo(requestedWg))
    throw new ArgumentError('options.workgroupSize', 'a power of two', requestedWg);
  if (
    backend.kind === 'webgpu' &&
    requestedWg !== undefined &&
    requestedWg > backend.limits.maxWorkgroupInvocations
  )
    throw new DeviceLimitError(
      'options.workgroupSize',
      'maxWorkgroupInvocations',
      requestedWg,
      backend.limits.maxWorkgroupInvocations,
    );
  let wg = attentionWorkgroupSize(backend, requestedWg);
  let lanes = 1;
  if (backend.kind === 'webgpu' && variant !== 'thread') {
    lanes = lanesPerKey(backend, headDim, wg);
    if (requestedWg === undefined && lanes > 1) {
      // 128 threads measured best on an H100 (two or more workgroups per SM, each holding
      // ~200 registers per thread); smaller still while the merge would not fit
      if (columns <= SUBGROUP_WORKGROUP) wg = Math.min(wg, SUBGROUP_WORKGROUP);
      while (
        partitionSharedBytes({ ...dims, partitionSize: 16 }, wg, lanes) >
          backend.limits.maxWorkgroupStorageSize &&
        wg / 2 >= Math.max(backend.limits.subgroupSize, columns)
      )
        wg /= 2;
    }
    if (variant === 'subgroup' && lanes === 1)
      throw new ArgumentError(
        'options.variant',
        "'auto' or 'thread' (this device or head dim allows no subgroup split)",
        variant,
      );
  }
  const partitionSize =
    options.partitionSize ??
    (lanes > 1
      ? subgroupPartitionSize(rows * (kvHeads / kvHeadsPerWorkgroup(dims, wg, lanes)), maxContextLen)
      : defaultPartitionSize(backend, dims));
  if (!isPowerOfTwo(partitionSize) || partitionSize < 16 || partitionSize > 4096)
    throw new ArgumentError('options.partitionSize', 'a power of two in [16, 4096]', partitionSize);
  for (const [name, t] of Object.entries({ q, keyCache, valueCache, blockTables }))
    checkBindingSize(backend, name, t.size, t.shape);
  if (backend.kind === 'webgpu') {
    const bytes = partitionSharedBytes({ ...dims, partitionSize }, wg, lanes);
    if (bytes > backend.limits.maxWorkgroupStorageSize)
      throw new DeviceLimitError(
        lanes > 1
          ? 'options.workgroupSize (one output row per key group)'
          : 'options.partitionSize (scores of a head group)',
        'maxWorkgroupStorageSize (bytes)',
        bytes,
        backend.limits.maxWorkgroupStorageSize,
      );
    if (headDim / (headDim % 4 === 0 ? 4 : 1) > wg)
      throw new DeviceLimitError(
        'q head dim',
        'columns per workgroup',
        headDim,
        wg * (headDim % 4 === 0 ? 4 : 1),
      );
  } else if (rows * heads * maxContextLen > GPUJS_MAX_ELEMENTS) {
    throw new DeviceLimitError(
      'gpu.js scores [N, heads, maxContextLen]',
      'float32-exact elements',
      rows * heads * maxContextLen,
      GPUJS_MAX_ELEMENTS,
    );
  }
  if (maxContextLen === 0 || rows === 0) {
    // no keys anywhere: every row is zero (and nothing to launch)
    return backend.tensor(new Float32Array(rows * heads * headDim), [rows, heads, headDim]);
  }
  registerPagedKvKernels();
  const attrs: PagedAttentionAttrs = {
    rows,
    seqs,
    chunk,
    heads,
    kvHeads,
    headDim,
    numBlocks,
    blockSize,
    maxBlocks,
    maxContextLen,
    scale,
    softcap,
    partitionSize,
    lanesPerKey: lanes,
    workgroupSize: wg,
  };
  // zeros without ALiBi: subtracting 0 leaves every score exactly as it was
  const alibi = backend.tensor(slopes ? Array.from(slopes) : new Float32Array(heads), [heads]);
  try {
    const result = await runKernel(
      PagedAttention,
      backend,
      [q, keyCache, valueCache, blockTables, contextLens, alibi],
      attrs,
    );
    return Array.isArray(result) ? result[0]! : result;
  } finally {
    alibi.dispose();
  }
}

/**
 * Scatters new key and value rows into the caches (vLLM's reshape_and_cache): row t of
 * `k` and `v` ([T, kvHeads, headDim]) goes to cache row `slots[t]` ([T] i32; slot =
 * block x blockSize + offset) of keyCache and valueCache, in place. A negative slot is
 * skipped (padding). Slots must be distinct.
 */
export async function writeKv(
  k: Tensor,
  v: Tensor,
  slots: Tensor,
  keyCache: Tensor,
  valueCache: Tensor,
): Promise<void> {
  checkTensor(k, 'k');
  checkTensor(v, 'v');
  checkTensor(slots, 'slots');
  checkTensor(keyCache, 'keyCache');
  checkTensor(valueCache, 'valueCache');
  const backend = k.backend;
  checkSameBackend(backend, { v, slots, keyCache, valueCache });
  checkDType(k, 'k', ['f32']);
  checkDType(v, 'v', ['f32']);
  checkDType(slots, 'slots', ['i32']);
  checkDType(keyCache, 'keyCache', ['f32']);
  checkDType(valueCache, 'valueCache', ['f32']);
  checkRank(keyCache, 'keyCache', 4, 4, '[numBlocks, blockSize, kvHeads, headDim]');
  checkRank(k, 'k', 3, 3, '[tokens, kvHeads, headDim]');
  const [numBlocks, blockSize, kvHeads, headDim] = keyCache.shape as [number, number, number, number];
  if (formatShape(valueCache.shape) !== formatShape(keyCache.shape))
    throw new ShapeError(
      'valueCache',
      `the shape of keyCache ${formatShape(keyCache.shape)}`,
      valueCache.shape,
    );
  const tokens = k.shape[0]!;
  if (k.shape[1] !== kvHeads || k.shape[2] !== headDim)
    throw new ShapeError('k', `[tokens, ${kvHeads}, ${headDim}] (keyCache's kv heads and head dim)`, k.shape);
  if (formatShape(v.shape) !== formatShape(k.shape))
    throw new ShapeError('v', `the shape of k ${formatShape(k.shape)}`, v.shape);
  if (slots.rank !== 1 || slots.shape[0] !== tokens)
    throw new ShapeError('slots', `[${tokens}] (one slot per row of k)`, slots.shape);
  if (keyCache === valueCache)
    throw new ArgumentError('valueCache', 'a tensor other than keyCache', 'keyCache');
  checkBindingSize(backend, 'keyCache', keyCache.size, keyCache.shape);
  registerPagedKvKernels();
  const attrs: WriteKvAttrs = { tokens, rowSize: kvHeads * headDim, slots: numBlocks * blockSize };
  await runKernel(WriteKv, backend, [k, v, slots, keyCache, valueCache], attrs);
}

/**
 * Copies whole blocks: for each [s, d] of `pairs`, block d of `dst` takes block s of `src`
 * (blocks are the first axis; src and dst have the same block shape). `src` may be `dst`
 * (copy-on-write inside a cache); then no block may be both a source and a destination.
 * Destinations must be distinct.
 */
export async function copyBlocks(
  src: Tensor,
  dst: Tensor,
  pairs: readonly (readonly [number, number])[],
): Promise<void> {
  checkTensor(src, 'src');
  checkTensor(dst, 'dst');
  checkSameBackend(src.backend, { dst });
  checkDType(src, 'src', ['f32']);
  checkDType(dst, 'dst', ['f32']);
  checkRank(src, 'src', 1, 8, '[blocks, ...]');
  checkRank(dst, 'dst', 1, 8, '[blocks, ...]');
  if (formatShape(src.shape.slice(1)) !== formatShape(dst.shape.slice(1)))
    throw new ShapeError('dst', `[blocks, ${src.shape.slice(1).join(', ')}] (src's block shape)`, dst.shape);
  if (!Array.isArray(pairs)) throw new ArgumentError('pairs', 'an array of [src, dst] block pairs', pairs);
  const srcBlocks = src.shape[0]!;
  const dstBlocks = dst.shape[0]!;
  const destinations = new Set<number>();
  const sources = new Set<number>();
  pairs.forEach((pair, i) => {
    if (!Array.isArray(pair) || pair.length !== 2)
      throw new ArgumentError(`pairs[${i}]`, 'a [src, dst] pair', pair);
    const [s, d] = pair;
    if (!Number.isInteger(s) || s < 0 || s >= srcBlocks)
      throw new ArgumentError(`pairs[${i}][0]`, `a block of src in [0, ${srcBlocks})`, s);
    if (!Number.isInteger(d) || d < 0 || d >= dstBlocks)
      throw new ArgumentError(`pairs[${i}][1]`, `a block of dst in [0, ${dstBlocks})`, d);
    if (destinations.has(d)) throw new ArgumentError(`pairs[${i}][1]`, 'distinct destination blocks', d);
    destinations.add(d);
    sources.add(s);
  });
  const inPlace = src === dst || src.handle === dst.handle;
  if (inPlace) {
    for (const d of destinations) {
      if (sources.has(d))
        throw new ArgumentError('pairs', 'no block both a source and a destination (in place)', d);
    }
  }
  if (pairs.length === 0) return;
  registerPagedKvKernels();
  const attrs: CopyBlocksAttrs = { pairs, blockElems: dst.size / dstBlocks, dstBlocks, inPlace };
  await runKernel(CopyBlocks, src.backend, [src, dst], attrs);
}

// ---- kernels -------------------------------------------------------------------------

const pagedAttentionWebGpu: KernelConfig<PagedAttentionAttrs> = {
  kernelName: PagedAttention,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [q, keyCache, valueCache, blockTables, contextLens, alibiSlopes] = inputs as [
      Tensor,
      Tensor,
      Tensor,
      Tensor,
      Tensor,
      Tensor,
    ];
    const out = backend.empty([attrs.rows, attrs.heads, attrs.headDim]);
    if (out.size === 0) return out;
    const partitions = Math.ceil(attrs.maxContextLen / attrs.partitionSize);
    const partialOut = backend.empty([attrs.rows, attrs.heads, partitions, attrs.headDim]);
    const partialStats = backend.empty([attrs.rows, attrs.heads, partitions, 2]);
    try {
      await disposeOnError([out], async () => {
        await backend.run(
          partitionProgram(backend, attrs, {
            q,
            keyCache,
            valueCache,
            blockTables,
            contextLens,
            alibiSlopes,
            partialOut,
            partialStats,
          }),
        );
        await backend.run(reduceProgram(backend, attrs, { partialOut, partialStats, out }));
      });
    } finally {
      partialOut.dispose();
      partialStats.dispose();
    }
    return out;
  },
};

const pagedAttentionGpuJs: KernelConfig<PagedAttentionAttrs> = {
  kernelName: PagedAttention,
  backendKind: 'gpujs',
  async run(backend, inputs, attrs) {
    const [q, keyCache, valueCache, blockTables, contextLens, alibiSlopes] = inputs as [
      Tensor,
      Tensor,
      Tensor,
      Tensor,
      Tensor,
      Tensor,
    ];
    const out = backend.empty([attrs.rows, attrs.heads, attrs.headDim]);
    if (out.size === 0) return out;
    const scores = backend.empty([attrs.rows * attrs.heads * attrs.maxContextLen]);
    const stats = backend.empty([attrs.rows * attrs.heads * 2]);
    try {
      await disposeOnError([out], async () => {
        for (const program of pagedAttentionPrograms(attrs, {
          q,
          keyCache,
          valueCache,
          blockTables,
          contextLens,
          alibiSlopes,
          scores,
          stats,
          out,
        }))
          await backend.run(program);
      });
    } finally {
      scores.dispose();
      stats.dispose();
    }
    return out;
  },
};

const writeKvWebGpu: KernelConfig<WriteKvAttrs> = {
  kernelName: WriteKv,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [k, v, slots, keyCache, valueCache] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor];
    if (attrs.tokens > 0)
      await backend.run(writeKvProgram(backend, { k, v, slots, keyCache, valueCache }, attrs));
    return [];
  },
};

const writeKvGpuJs: KernelConfig<WriteKvAttrs> = {
  kernelName: WriteKv,
  backendKind: 'gpujs',
  async run(backend, inputs, attrs) {
    const [k, v, slots, keyCache, valueCache] = inputs as [Tensor, Tensor, Tensor, Tensor, Tensor];
    if (attrs.tokens === 0) return [];
    const owner = backend.empty([attrs.slots], 'i32');
    try {
      await backend.run(slotOwnerProgram(slots, owner, attrs.tokens));
      await backend.run(writeRowsProgram(keyCache, k, owner, attrs.rowSize));
      await backend.run(writeRowsProgram(valueCache, v, owner, attrs.rowSize));
    } finally {
      owner.dispose();
    }
    return [];
  },
};

const copyBlocksWebGpu: KernelConfig<CopyBlocksAttrs> = {
  kernelName: CopyBlocks,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [src, dst] = inputs as [Tensor, Tensor];
    const pairs = backend.tensor(attrs.pairs.flat(), [attrs.pairs.length, 2], 'i32');
    try {
      await backend.run(
        copyBlocksProgram(
          backend,
          { src, dst, pairs },
          { pairs: attrs.pairs.length, blockElems: attrs.blockElems, inPlace: attrs.inPlace },
        ),
      );
    } finally {
      pairs.dispose();
    }
    return [];
  },
};

const copyBlocksGpuJs: KernelConfig<CopyBlocksAttrs> = {
  kernelName: CopyBlocks,
  backendKind: 'gpujs',
  async run(backend, inputs, attrs) {
    const [src, dst] = inputs as [Tensor, Tensor];
    const sourceOf = new Int32Array(attrs.dstBlocks).fill(-1);
    for (const [s, d] of attrs.pairs) sourceOf[d] = s;
    const table = backend.tensor(sourceOf, [attrs.dstBlocks], 'i32');
    try {
      await backend.run(copyBlocksGpuJsProgram(src, dst, table, attrs.blockElems));
    } finally {
      table.dispose();
    }
    return [];
  },
};

const KERNELS = [
  pagedAttentionWebGpu,
  pagedAttentionGpuJs,
  writeKvWebGpu,
  writeKvGpuJs,
  copyBlocksWebGpu,
  copyBlocksGpuJs,
];
