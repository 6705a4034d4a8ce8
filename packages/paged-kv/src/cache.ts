/**
 * PagedKvCache: the device half of the paged KV cache. It owns one key and one value tensor
 * per layer, `[numBlocks, blockSize, kvHeads, headDim]`, and a BlockManager that decides
 * which blocks each sequence uses; every bookkeeping change that needs device work (a
 * copy-on-write, a swap) is carried out on all layers before the method returns.
 *
 * A model layer uses it as: `append` (or `add`) tokens -> slots; `write(layer, slots, k, v)`;
 * `attention(layer, q, seqIds)`.
 */
import { ArgumentError, type Backend, ShapeError, type Tensor, checkTensor } from '@longseq/backend';
import { type KvBudget, blocksForBudget } from './allocator';
import { type AddResult, type AppendResult, BlockManager } from './block-manager';
import { OutOfBlocksError } from './errors';
import { type PagedAttentionOptions, copyBlocks, pagedAttention, writeKv } from './ops';

export interface PagedKvCacheOptions {
  /** Tokens per block. */
  readonly blockSize: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Device blocks; or give `budgetBytes` and they are computed (f32 keys and values of every layer). */
  readonly numBlocks?: number;
  readonly budgetBytes?: number;
  /** Host blocks for swapping (default 0). */
  readonly numHostBlocks?: number;
  /** Default true. */
  readonly prefixCaching?: boolean;
}

/** Explicit block tables and lengths, instead of sequence ids. */
export interface BlockTablesInput {
  readonly blockTables: readonly (readonly number[])[];
  readonly contextLens: readonly number[];
}

export class PagedKvCache {
  readonly backend: Backend;
  readonly manager: BlockManager;
  readonly blockSize: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Per layer, [numBlocks, blockSize, kvHeads, headDim]. */
  readonly keys: Tensor[];
  readonly values: Tensor[];
  /** Swapped-out blocks: host block -> [layer 0 keys, layer 0 values, layer 1 keys, ...]. */
  private readonly hostBlocks = new Map<number, Float32Array[]>();
  private disposed = false;

  constructor(backend: Backend, options: PagedKvCacheOptions) {
    if (options === null || typeof options !== 'object')
      throw new ArgumentError('options', 'an object', options);
    let numBlocks = options.numBlocks;
    if (numBlocks === undefined) {
      if (options.budgetBytes === undefined)
        throw new ArgumentError('options', 'numBlocks or budgetBytes', options);
      const budget: KvBudget = { ...options, bytes: options.budgetBytes, dtypeBytes: 4 };
      numBlocks = blocksForBudget(budget);
    }
    if (!Number.isInteger(numBlocks) || numBlocks < 1)
      throw new ArgumentError('options.numBlocks', 'an integer >= 1', numBlocks);
    for (const key of ['layers', 'kvHeads', 'headDim'] as const) {
      if (!Number.isInteger(options[key]) || options[key] < 1)
        throw new ArgumentError(`options.${key}`, 'an integer >= 1', options[key]);
    }
    this.backend = backend;
    this.manager = new BlockManager({
      numBlocks,
      blockSize: options.blockSize,
      numHostBlocks: options.numHostBlocks ?? 0,
      prefixCaching: options.prefixCaching ?? true,
    });
    this.blockSize = options.blockSize;
    this.layers = options.layers;
    this.kvHeads = options.kvHeads;
    this.headDim = options.headDim;
    const shape = [numBlocks, this.blockSize, this.kvHeads, this.headDim];
    this.keys = [];
    this.values = [];
    try {
      for (let l = 0; l < this.layers; l++) {
        // zeros, so a slot never written reads as 0 rather than stale memory
        this.keys.push(
          backend.tensor(new Float32Array(numBlocks * this.blockSize * this.kvHeads * this.headDim), shape),
        );
        this.values.push(
          backend.tensor(new Float32Array(numBlocks * this.blockSize * this.kvHeads * this.headDim), shape),
        );
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  get numBlocks(): number {
    return this.manager.numBlocks;
  }

  /** Adds a sequence (its prompt tokens); returns its id and the slots of the tokens not served by the prefix cache. */
  async add(tokens: readonly number[]): Promise<AddResult> {
    const result = this.manager.add(tokens);
    await this.copyOnDevice(result.copies);
    return result;
  }

  /** Appends tokens; performs any copy-on-write on every layer; returns the slots to write. */
  async append(seqId: number, tokens: readonly number[]): Promise<AppendResult> {
    const result = this.manager.append(seqId, tokens);
    await this.copyOnDevice(result.copies);
    return result;
  }

  fork(seqId: number): number {
    return this.manager.fork(seqId);
  }

  free(seqId: number): void {
    this.manager.free(seqId);
    for (const b of [...this.hostBlocks.keys()])
      if (!this.manager.host.isReferenced(b)) this.hostBlocks.delete(b);
  }

  blockTable(seqId: number): readonly number[] {
    return this.manager.blockTable(seqId);
  }

  slotMapping(seqId: number, start?: number, end?: number): number[] {
    return this.manager.slotMapping(seqId, start, end);
  }

  length(seqId: number): number {
    return this.manager.length(seqId);
  }

  /** Writes rows of keys and values ([T, kvHeads, headDim]) of one layer into `slots` (negative: skipped). */
  async write(layer: number, slots: readonly number[], k: Tensor, v: Tensor): Promise<void> {
    this.checkLayer(layer);
    checkTensor(k, 'k');
    if (!Array.isArray(slots) || slots.length !== k.shape[0])
      throw new ShapeError(
        'slots',
        `${k.shape[0]} slots (one per row of k)`,
        `${Array.isArray(slots) ? slots.length : typeof slots}`,
      );
    const capacity = this.numBlocks * this.blockSize;
    slots.forEach((s, i) => {
      if (!Number.isInteger(s) || s >= capacity)
        throw new ArgumentError(`slots[${i}]`, `an integer slot < ${capacity}`, s);
    });
    const t = this.backend.tensor(slots, [slots.length], 'i32');
    try {
      await writeKv(k, v, t, this.keys[layer]!, this.values[layer]!);
    } finally {
      t.dispose();
    }
  }

  /**
   * Paged attention of `q` ([seqs x chunk, heads, headDim]) for one layer, over the given
   * sequences (their current lengths) or explicit block tables (checked: every block must be
   * allocated, else FreedBlockError).
   */
  async attention(
    layer: number,
    q: Tensor,
    sequences: readonly number[] | BlockTablesInput,
    options: PagedAttentionOptions = {},
  ): Promise<Tensor> {
    this.checkLayer(layer);
    let tables: (readonly number[])[];
    let lengths: number[];
    if (Array.isArray(sequences)) {
      tables = sequences.map((id) => this.manager.blockTable(id));
      lengths = sequences.map((id) => this.manager.length(id));
    } else {
      const input = sequences as BlockTablesInput;
      if (
        !Array.isArray(input?.blockTables) ||
        !Array.isArray(input.contextLens) ||
        input.blockTables.length !== input.contextLens.length
      )
        throw new ArgumentError(
          'sequences',
          'sequence ids, or { blockTables, contextLens } of equal length',
          sequences,
        );
      input.blockTables.forEach((table, i) => {
        this.manager.checkBlockTable(table, `blockTables[${i}]`);
        const length = input.contextLens[i]!;
        if (!Number.isInteger(length) || length < 0 || length > table.length * this.blockSize)
          throw new ArgumentError(
            `contextLens[${i}]`,
            `an integer in [0, ${table.length * this.blockSize}] (its table's capacity)`,
            length,
          );
      });
      tables = input.blockTables.map((t) => [...t]);
      lengths = [...input.contextLens];
    }
    const width = Math.max(1, ...tables.map((t) => t.length));
    const flat = new Int32Array(tables.length * width);
    tables.forEach((t, i) => {
      flat.set(t, i * width);
    });
    const blockTables = this.backend.tensor(flat, [tables.length, width], 'i32');
    const contextLens = this.backend.tensor(lengths, [lengths.length], 'i32');
    try {
      return await pagedAttention(q, this.keys[layer]!, this.values[layer]!, blockTables, contextLens, {
        maxContextLen: Math.max(0, ...lengths),
        ...options,
      });
    } finally {
      blockTables.dispose();
      contextLens.dispose();
    }
  }

  /** Moves sequences' blocks to host memory (read back from every layer). */
  async swapOut(seqIds: readonly number[]): Promise<void> {
    // read the blocks before the manager hands them out again
    const needed = this.manager.blocksToSwapIn(seqIds);
    if (needed > this.manager.host.available)
      throw new OutOfBlocksError('seqIds', needed, this.manager.host.available, 'free host blocks');
    const { copies } = this.manager.swapOut(seqIds);
    const data = await this.readBlocks(copies.map(([d]) => d));
    copies.forEach(([, h], i) => {
      this.hostBlocks.set(h, data[i]!);
    });
  }

  /** Brings swapped sequences back into new device blocks. */
  async swapIn(seqIds: readonly number[]): Promise<void> {
    const { copies } = this.manager.swapIn(seqIds);
    if (copies.length === 0) return;
    const blockElems = this.blockSize * this.kvHeads * this.headDim;
    for (let l = 0; l < this.layers; l++) {
      for (const [which, target] of [
        [0, this.keys[l]!],
        [1, this.values[l]!],
      ] as const) {
        const staged = new Float32Array(copies.length * blockElems);
        copies.forEach(([h], i) => {
          staged.set(this.hostBlocks.get(h)![2 * l + which]!, i * blockElems);
        });
        const src = this.backend.tensor(staged, [copies.length, this.blockSize, this.kvHeads, this.headDim]);
        try {
          await copyBlocks(
            src,
            target,
            copies.map(([, d], i) => [i, d] as const),
          );
        } finally {
          src.dispose();
        }
      }
    }
    for (const [h] of copies) if (!this.manager.host.isReferenced(h)) this.hostBlocks.delete(h);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.keys, ...this.values]) t.dispose();
    this.hostBlocks.clear();
  }

  private checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers)
      throw new ArgumentError('layer', `an integer in [0, ${this.layers})`, layer);
  }

  private async copyOnDevice(copies: readonly (readonly [number, number])[]): Promise<void> {
    if (copies.length === 0) return;
    for (let l = 0; l < this.layers; l++) {
      await copyBlocks(this.keys[l]!, this.keys[l]!, copies);
      await copyBlocks(this.values[l]!, this.values[l]!, copies);
    }
  }

  /** Each block's contents on every layer: [layer 0 keys, layer 0 values, ...]. */
  private async readBlocks(blocks: readonly number[]): Promise<Float32Array[][]> {
    const result: Float32Array[][] = blocks.map(() => []);
    if (blocks.length === 0) return result;
    const blockElems = this.blockSize * this.kvHeads * this.headDim;
    for (let l = 0; l < this.layers; l++) {
      for (const source of [this.keys[l]!, this.values[l]!]) {
        const gathered = this.backend.empty([blocks.length, this.blockSize, this.kvHeads, this.headDim]);
        try {
          await copyBlocks(
            source,
            gathered,
            blocks.map((b, i) => [b, i] as const),
          );
          const data = (await gathered.read()) as Float32Array;
          blocks.forEach((_, i) => {
            result[i]!.push(data.slice(i * blockElems, (i + 1) * blockElems));
          });
        } finally {
          gathered.dispose();
        }
      }
    }
    return result;
  }
}
