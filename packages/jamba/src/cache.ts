/**
 * JambaCache: the hybrid cache of a Jamba model. Attention layers keep their keys and values
 * in @longseq/paged-kv's PagedKvCache (block tables over a BlockManager: blocks allocated as
 * a sequence grows, copy-on-write after fork, prefix caching of full blocks); Mamba layers
 * keep a conv state `[D, K-1]` and an SSM state `[D, N]` per sequence, in per-layer pools
 * `[maxSequences, D, K-1]` and `[maxSequences, D, N]` (one slot per live sequence), fixed in
 * size however long the sequence gets.
 *
 * Every method checks what it needs before it changes anything: a context beyond the KV
 * blocks or more sequences than state slots throw CacheBudgetError (no preemption) and leave
 * the cache as it was.
 */
import { ArgumentError, type Backend, type Tensor } from '@longseq/backend';
import { PagedKvCache, UnknownSequenceError, bytesPerBlock, copyBlocks } from '@longseq/paged-kv';
import type { JambaConfig } from './config';
import { CacheBudgetError } from './errors';

export interface JambaCacheOptions {
  /** Sequences the cache holds at once (Mamba state slots); default 1. */
  readonly maxSequences?: number;
  /** Tokens per KV block; default 16. */
  readonly blockSize?: number;
  /**
   * KV blocks shared by all sequences (every attention layer has its own keys and values per
   * block). Or give `budgetBytes` (f32 keys and values of all attention layers) or
   * `maxTokens`; default: room for `maxSequences` sequences of `maxTokens` tokens, plus one
   * block each for a copy-on-write after fork.
   */
  readonly numBlocks?: number;
  readonly budgetBytes?: number;
  /** Tokens per sequence the default block count makes room for; default 2048. */
  readonly maxTokens?: number;
  /** Share full blocks of equal prefixes (default true). */
  readonly prefixCaching?: boolean;
}

/** One layer's share of the cache. */
export interface JambaLayerMemory {
  readonly layer: number;
  readonly kind: 'attention' | 'mamba';
  /** Attention: bytes of the KV blocks in use (K and V of this layer); Mamba: bytes of the live sequences' states. */
  readonly bytesInUse: number;
  /** Attention: bytes of all its blocks; Mamba: bytes of all its state slots. */
  readonly bytesAllocated: number;
}

/**
 * The cache's accounting, from the block allocator's own counts (`kvBlocksInUse` counts each
 * physical block once, however many sequences share it).
 */
export interface JambaCacheMemory {
  readonly blockSize: number;
  /** Bytes of one block across all attention layers (K and V, f32). */
  readonly kvBlockBytes: number;
  readonly kvBlocksTotal: number;
  /** Blocks referenced by a sequence. */
  readonly kvBlocksInUse: number;
  /** Unreferenced full blocks kept for prefix reuse (evictable). */
  readonly kvBlocksCached: number;
  readonly kvBytesInUse: number;
  /** Bytes of every block of every attention layer (what was allocated on the device). */
  readonly kvBytesAllocated: number;
  /** Conv + SSM states of the live sequences, all Mamba layers. */
  readonly mambaStateBytesInUse: number;
  /** Conv + SSM state slots of all Mamba layers (maxSequences of them). */
  readonly mambaStateBytesAllocated: number;
  /** Conv + SSM states of one sequence across all Mamba layers. */
  readonly mambaStateBytesPerSequence: number;
  /** kvBytesInUse + mambaStateBytesInUse. */
  readonly bytesInUse: number;
  /** kvBytesAllocated + mambaStateBytesAllocated. */
  readonly bytesAllocated: number;
  readonly sequences: number;
  /** Tokens held per live sequence, by id. */
  readonly tokens: Readonly<Record<number, number>>;
  readonly layers: readonly JambaLayerMemory[];
}

/** A plain-data copy of the cache's bookkeeping, to compare before and after an operation. */
export interface JambaCacheSnapshot {
  readonly kv: unknown;
  readonly sequences: [number, { kvSeq: number; slot: number; length: number }][];
  readonly freeSlots: number[];
}

interface Sequence {
  /** The sequence's id in the paged KV cache (-1 without attention layers). */
  readonly kvSeq: number;
  /** Its Mamba state slot. */
  readonly slot: number;
  length: number;
}

export class JambaCache {
  readonly backend: Backend;
  readonly config: JambaConfig;
  readonly maxSequences: number;
  readonly blockSize: number;
  /** Keys and values of the attention layers (undefined for a model without attention layers). */
  readonly kv: PagedKvCache | undefined;
  /** Per Mamba layer (in layer order), the conv state pool `[maxSequences, D, K-1]`. */
  readonly conv: Tensor[];
  /** Per Mamba layer, the SSM state pool `[maxSequences, D, N]`. */
  readonly ssm: Tensor[];
  /** For each model layer, its index among the attention layers (-1 for Mamba layers). */
  readonly attentionIndex: readonly number[];
  /** For each model layer, its index among the Mamba layers (-1 for attention layers). */
  readonly mambaIndex: readonly number[];
  private readonly sequences = new Map<number, Sequence>();
  private readonly freeSlots: number[] = [];
  private nextId = 0;
  private disposed = false;

  constructor(backend: Backend, config: JambaConfig, options: JambaCacheOptions = {}) {
    if (options === null || typeof options !== 'object')
      throw new ArgumentError('options', 'an object', options);
    const maxSequences = options.maxSequences ?? 1;
    if (!Number.isInteger(maxSequences) || maxSequences < 1)
      throw new ArgumentError('options.maxSequences', 'an integer >= 1', maxSequences);
    const blockSize = options.blockSize ?? 16;
    if (!Number.isInteger(blockSize) || blockSize < 1)
      throw new ArgumentError('options.blockSize', 'an integer >= 1', blockSize);
    const maxTokens = options.maxTokens ?? 2048;
    if (!Number.isInteger(maxTokens) || maxTokens < 1)
      throw new ArgumentError('options.maxTokens', 'an integer >= 1', maxTokens);
    this.backend = backend;
    this.config = config;
    this.maxSequences = maxSequences;
    this.blockSize = blockSize;
    let a = 0;
    let m = 0;
    this.attentionIndex = config.layerTypes.map((t) => (t === 'attention' ? a++ : -1));
    this.mambaIndex = config.layerTypes.map((t) => (t === 'mamba' ? m++ : -1));
    const kvDims = { blockSize, layers: a, kvHeads: config.numKvHeads, headDim: config.headDim };
    this.kv =
      a === 0
        ? undefined
        : new PagedKvCache(backend, {
            ...kvDims,
            ...(options.budgetBytes !== undefined
              ? { budgetBytes: options.budgetBytes }
              : { numBlocks: options.numBlocks ?? maxSequences * (Math.ceil(maxTokens / blockSize) + 1) }),
            prefixCaching: options.prefixCaching ?? true,
          });
    const { dInner: D, dConv: K, dState: N } = config;
    this.conv = [];
    this.ssm = [];
    try {
      for (let i = 0; i < m; i++) {
        this.conv.push(
          backend.tensor(new Float32Array(maxSequences * D * (K - 1)), [maxSequences, D, K - 1]),
        );
        this.ssm.push(backend.tensor(new Float32Array(maxSequences * D * N), [maxSequences, D, N]));
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
    for (let s = maxSequences - 1; s >= 0; s--) this.freeSlots.push(s);
  }

  /** Live sequence ids, oldest first. */
  sequenceIds(): number[] {
    return [...this.sequences.keys()];
  }

  has(seqId: number): boolean {
    return this.sequences.has(seqId);
  }

  /** Tokens the sequence holds. */
  length(seqId: number): number {
    return this.get(seqId, 'seqId').length;
  }

  /** The sequence's Mamba state slot (row of the state pools). */
  slot(seqId: number): number {
    return this.get(seqId, 'seqId').slot;
  }

  /** The sequence's id in `kv` (its block table: `kv.blockTable(kvSequence(id))`). */
  kvSequence(seqId: number): number {
    return this.get(seqId, 'seqId').kvSeq;
  }

  /** Free Mamba state slots (sequences that can still be added or forked). */
  get freeSequenceSlots(): number {
    return this.freeSlots.length;
  }

  /**
   * Checks that prompts of these tokens can be added (state slots and KV blocks), throwing
   * CacheBudgetError otherwise; changes nothing.
   */
  checkAdd(prompts: readonly (readonly number[])[], argument = 'prompt'): void {
    this.checkAlive();
    if (prompts.length > this.freeSlots.length)
      throw new CacheBudgetError(
        argument,
        'sequences',
        prompts.length,
        this.freeSlots.length,
        `maxSequences = ${this.maxSequences}, ${this.sequences.size} live`,
      );
    if (!this.kv) return;
    let needed = 0;
    for (const p of prompts) needed += this.kv.manager.blocksToAdd(p as number[]);
    const available = this.kv.manager.device.available;
    if (needed > available)
      throw new CacheBudgetError(
        argument,
        'KV blocks',
        needed,
        available,
        `${this.kv.numBlocks} blocks of ${this.blockSize} tokens, ${available} free`,
      );
  }

  /**
   * Adds a sequence holding `tokens` (its prompt, whose keys, values and states the caller
   * computes and writes). Returns its id, the KV slots of its tokens (-1 for leading tokens
   * whose KV a cached prefix block already holds), and a zeroed state slot.
   */
  async add(tokens: readonly number[]): Promise<{ seqId: number; slots: number[]; cachedTokens: number }> {
    this.checkAdd([tokens], 'tokens');
    let kvSeq = -1;
    let slots: number[] = tokens.map(() => -1);
    let cachedTokens = 0;
    if (this.kv) {
      const added = await this.kv.add(tokens);
      kvSeq = added.seqId;
      cachedTokens = added.cachedTokens;
      slots = [...new Array<number>(cachedTokens).fill(-1), ...added.slots];
    }
    const slot = this.freeSlots.pop()!;
    const seqId = this.nextId++;
    this.sequences.set(seqId, { kvSeq, slot, length: tokens.length });
    return { seqId, slots, cachedTokens };
  }

  /**
   * Appends one token to each sequence (a decode step): checks the blocks all of them need
   * (copy-on-write of a shared last block included) first, then performs any copies and
   * returns each token's KV slot.
   */
  async append(seqIds: readonly number[], tokens: readonly number[]): Promise<number[]> {
    this.checkAlive();
    this.checkSequences(seqIds, 'seqIds');
    if (!Array.isArray(tokens) || tokens.length !== seqIds.length)
      throw new ArgumentError('tokens', `${seqIds.length} tokens (one per sequence)`, tokens);
    const seqs = seqIds.map((id) => this.sequences.get(id)!);
    if (this.kv) {
      let needed = 0;
      for (const s of seqs) needed += this.kv.manager.blocksToAppend(s.kvSeq, 1);
      const available = this.kv.manager.device.available;
      if (needed > available)
        throw new CacheBudgetError(
          'tokens',
          'KV blocks',
          needed,
          available,
          `${this.kv.numBlocks} blocks of ${this.blockSize} tokens, ${available} free`,
        );
    }
    const slots: number[] = [];
    for (let i = 0; i < seqs.length; i++) {
      const s = seqs[i]!;
      if (this.kv) slots.push(...(await this.kv.append(s.kvSeq, [tokens[i]!])).slots);
      else slots.push(-1);
      s.length += 1;
    }
    return slots;
  }

  /**
   * A new sequence continuing `seqId` (parallel sampling): it shares every KV block (copied
   * on write when one of them appends into a shared partial block) and gets a copy of the
   * Mamba states. Throws CacheBudgetError when no state slot is free.
   */
  async fork(seqId: number): Promise<number> {
    this.checkAlive();
    const parent = this.get(seqId, 'seqId');
    if (this.freeSlots.length === 0)
      throw new CacheBudgetError(
        'seqId',
        'sequences',
        1,
        0,
        `maxSequences = ${this.maxSequences}, ${this.sequences.size} live`,
      );
    const slot = this.freeSlots[this.freeSlots.length - 1]!;
    for (let i = 0; i < this.conv.length; i++) {
      await copyBlocks(this.conv[i]!, this.conv[i]!, [[parent.slot, slot]]);
      await copyBlocks(this.ssm[i]!, this.ssm[i]!, [[parent.slot, slot]]);
    }
    this.freeSlots.pop();
    const kvSeq = this.kv ? this.kv.fork(parent.kvSeq) : -1;
    const id = this.nextId++;
    this.sequences.set(id, { kvSeq, slot, length: parent.length });
    return id;
  }

  /** Releases a sequence: its KV blocks (full ones stay cached for prefix reuse) and its state slot. */
  free(seqId: number): void {
    this.checkAlive();
    const s = this.get(seqId, 'seqId');
    if (this.kv) this.kv.free(s.kvSeq);
    this.sequences.delete(seqId);
    this.freeSlots.push(s.slot);
  }

  /** Bytes of KV blocks in use against allocated, and of the Mamba states; per layer too. */
  memory(): JambaCacheMemory {
    const { dInner: D, dConv: K, dState: N } = this.config;
    const attentionLayers = this.attentionIndex.filter((i) => i >= 0).length;
    const perLayerBlock = 2 * this.blockSize * this.config.numKvHeads * this.config.headDim * 4; // K and V of one layer
    const kvBlockBytes =
      attentionLayers === 0
        ? 0
        : bytesPerBlock({
            blockSize: this.blockSize,
            layers: attentionLayers,
            kvHeads: this.config.numKvHeads,
            headDim: this.config.headDim,
          });
    const manager = this.kv?.manager;
    const kvBlocksTotal = manager?.numBlocks ?? 0;
    const kvBlocksInUse = manager?.device.numReferenced ?? 0;
    const kvBlocksCached = manager ? kvBlocksTotal - manager.device.numFree - kvBlocksInUse : 0;
    const stateBytes = D * (K - 1 + N) * 4; // one sequence, one layer
    const mambaLayers = this.conv.length;
    const live = this.sequences.size;
    const tokens: Record<number, number> = {};
    for (const [id, s] of this.sequences) tokens[id] = s.length;
    const kvBytesInUse = kvBlocksInUse * kvBlockBytes;
    const kvBytesAllocated = kvBlocksTotal * kvBlockBytes;
    const mambaStateBytesInUse = live * stateBytes * mambaLayers;
    const mambaStateBytesAllocated = this.maxSequences * stateBytes * mambaLayers;
    return {
      blockSize: this.blockSize,
      kvBlockBytes,
      kvBlocksTotal,
      kvBlocksInUse,
      kvBlocksCached,
      kvBytesInUse,
      kvBytesAllocated,
      mambaStateBytesInUse,
      mambaStateBytesAllocated,
      mambaStateBytesPerSequence: stateBytes * mambaLayers,
      bytesInUse: kvBytesInUse + mambaStateBytesInUse,
      bytesAllocated: kvBytesAllocated + mambaStateBytesAllocated,
      sequences: live,
      tokens,
      layers: this.config.layerTypes.map((kind, layer) =>
        kind === 'attention'
          ? {
              layer,
              kind,
              bytesInUse: kvBlocksInUse * perLayerBlock,
              bytesAllocated: kvBlocksTotal * perLayerBlock,
            }
          : {
              layer,
              kind,
              bytesInUse: live * stateBytes,
              bytesAllocated: this.maxSequences * stateBytes,
            },
      ),
    };
  }

  snapshot(): JambaCacheSnapshot {
    return {
      kv: this.kv?.manager.snapshot(),
      sequences: [...this.sequences].map(([id, s]) => [id, { ...s }]),
      freeSlots: [...this.freeSlots],
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.kv?.dispose();
    for (const t of [...this.conv, ...this.ssm]) t.dispose();
    this.sequences.clear();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Throws unless every id is a live sequence, distinct. */
  checkSequences(seqIds: readonly number[], argument: string): void {
    if (!Array.isArray(seqIds) || seqIds.length === 0)
      throw new ArgumentError(argument, 'a non-empty array of sequence ids', seqIds);
    const seen = new Set<number>();
    for (const id of seqIds) {
      this.get(id, argument);
      if (seen.has(id)) throw new ArgumentError(argument, 'distinct sequence ids', id);
      seen.add(id);
    }
  }

  private get(seqId: number, argument: string): Sequence {
    const s = this.sequences.get(seqId);
    if (!s) throw new UnknownSequenceError(argument, seqId);
    return s;
  }

  private checkAlive(): void {
    if (this.disposed) throw new ArgumentError('cache', 'a cache that has not been disposed', 'disposed');
  }
}
